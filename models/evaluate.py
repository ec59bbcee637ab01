"""Evaluate a classifier on labelled images with the shared metrics.

The classifier is a Keras model, or :class:`OnnxLogits`: the same weights as the ONNX graph
sites diagnose with, under ONNX Runtime, which is several times faster than Keras on the CPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from privadx.common.data.arrays import LabeledImages, SplitDataset
from privadx.common.metrics import evaluate, softmax, youden_threshold
from privadx.common.preprocess import PreprocessSpec, to_model_input

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)


class OnnxLogits:
    """A Keras model's current weights as its direct ONNX graph in an ONNX Runtime session.

    Built anew for every set of weights (writing the graph and opening the session take
    milliseconds for PrivaDx's models). The session's threads do not spin between calls: the
    gateway evaluates while sites may train on the same cores.

    Raises:
        models.onnx_graph.UnsupportedModelError: A layer the direct writer does not handle
            (evaluate the Keras model instead).
    """

    def __init__(self, model: tf.keras.Model) -> None:
        from models.onnx_export import direct_graph
        from models.spec import INPUT_NAME
        from privadx.common.onnx_session import inference_session

        self.session = inference_session(direct_graph(model).SerializeToString(), spin=False)
        self.input_name = INPUT_NAME

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits of a preprocessed float32 batch ``(N, H, W, C)``."""
        (out,) = self.session.run(None, {self.input_name: x})
        return np.asarray(out, np.float32)


def fast_scorer(model: tf.keras.Model) -> tf.keras.Model | OnnxLogits:
    """The fastest way to score ``model``'s current weights.

    :class:`OnnxLogits` of them, or ``model`` itself when its graph cannot be written
    directly.
    """
    from models.onnx_graph import UnsupportedModelError

    try:
        return OnnxLogits(model)
    except UnsupportedModelError as exc:
        log.debug("evaluating with Keras: %s", exc)
        return model


def predict_logits(
    model: tf.keras.Model | OnnxLogits,
    images: np.ndarray,
    spec: PreprocessSpec,
    batch_size: int = 256,
) -> np.ndarray:
    """Logits for uint8 images, in batches, without Keras' ``predict`` overhead."""
    score = model if isinstance(model, OnnxLogits) else lambda x: model(x, training=False)
    outputs = [
        np.asarray(score(to_model_input(images[i : i + batch_size], spec)))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def choose_threshold(
    model: tf.keras.Model | OnnxLogits,
    val: LabeledImages,
    spec: PreprocessSpec,
    positive_class: int,
) -> float | None:
    """Youden threshold on the validation split for binary tasks, ``None`` otherwise."""
    if val.num_classes != 2:
        return None
    probs = softmax(predict_logits(model, val.images, spec))
    return youden_threshold(val.labels == positive_class, probs[:, positive_class])


def evaluate_split(
    model: tf.keras.Model | OnnxLogits,
    data: LabeledImages,
    spec: PreprocessSpec,
    *,
    positive_class: int,
    threshold: float | None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``data`` at ``threshold`` (binary) or argmax (multi-class)."""
    probs = softmax(predict_logits(model, data.images, spec))
    return evaluate(
        data.labels, probs, data.class_names, positive_class=positive_class, threshold=threshold
    )


def evaluate_model(
    model: tf.keras.Model, dataset: SplitDataset, spec: PreprocessSpec, *, positive_class: int
) -> dict[str, Any]:
    """Test metrics of ``model``'s current weights at the validation split's threshold.

    Scored by :func:`fast_scorer`.
    """
    scorer = fast_scorer(model)
    threshold = choose_threshold(scorer, dataset.val, spec, positive_class)
    return evaluate_split(
        scorer, dataset.test, spec, positive_class=positive_class, threshold=threshold
    )
