"""Evaluate a Keras classifier on labelled images with the shared metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from common.data.arrays import LabeledImages
from common.metrics import evaluate, softmax, youden_threshold
from common.preprocess import PreprocessSpec, to_model_input

if TYPE_CHECKING:
    import tensorflow as tf


def predict_logits(
    model: tf.keras.Model, images: np.ndarray, spec: PreprocessSpec, batch_size: int = 256
) -> np.ndarray:
    """Logits for uint8 images, in batches, without Keras' ``predict`` overhead."""
    outputs = [
        model(to_model_input(images[i : i + batch_size], spec), training=False).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def choose_threshold(
    model: tf.keras.Model, val: LabeledImages, spec: PreprocessSpec, positive_class: int
) -> float | None:
    """Youden threshold on the validation split for binary tasks, ``None`` otherwise."""
    if val.num_classes != 2:
        return None
    probs = softmax(predict_logits(model, val.images, spec))
    return youden_threshold(val.labels == positive_class, probs[:, positive_class])


def evaluate_split(
    model: tf.keras.Model,
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
