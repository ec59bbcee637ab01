"""Export trained Keras weights to ONNX with the metadata diagnosis needs.

The ONNX file carries, as ``metadata_props``: the model and preprocessing specs, class names,
the positive class, the decision threshold and the softmax temperature that calibrates the
probabilities (from federated evaluation, when the gateway had reports), and the provenance
of the training run, so that a site holding only the ``.onnx`` file can diagnose exactly as
the model was validated. A
``sha256sum``-format file is written beside it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.architectures import INPUT_NAME, OUTPUT_NAME
from privadx.common.deps import require
from privadx.common.errors import ModelError
from privadx.common.fileio import write_atomic
from privadx.common.model_info import ModelInfo
from privadx.common.preprocess import PreprocessSpec, to_model_input

if TYPE_CHECKING:
    import onnx
    import tensorflow as tf

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_onnx(model: tf.keras.Model) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (opset 17, dynamic batch).

    PrivaDx's own architectures are written directly (models/onnx_graph.py: 42 nodes for the
    CNN against tf2onnx's 335; the README's benchmark table has the speed-up); any other
    Keras model goes through tf2onnx.
    """
    from models.onnx_graph import UnsupportedModelError

    try:
        return direct_graph(model)
    except UnsupportedModelError as exc:
        log.info("converting with tf2onnx (%s)", exc)
    return tf2onnx_graph(model)


def direct_graph(model: tf.keras.Model) -> onnx.ModelProto:
    """``model`` written by PrivaDx's own writer (models/onnx_graph.py).

    With the export's opset and tensor names; raises
    :class:`models.onnx_graph.UnsupportedModelError` for a layer it does not handle.
    """
    from models.onnx_graph import keras_to_onnx

    return keras_to_onnx(model, opset=OPSET, input_name=INPUT_NAME, output_name=OUTPUT_NAME)


def tf2onnx_graph(model: tf.keras.Model) -> onnx.ModelProto:
    """``model`` converted by tf2onnx (opset 17, dynamic batch)."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    shape = (None, *model.input_shape[1:])
    signature = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    return proto


def export_onnx(model: tf.keras.Model, meta: dict[str, Any], out: Path) -> str:
    """Write ``model`` as ONNX at ``out`` (:func:`to_onnx`) with metadata; check it, hash it.

    Returns:
        The SHA-256 of the written file (also written to ``out.sha256``).
    """
    onnx = require("onnx")
    proto = to_onnx(model)
    proto.doc_string = "PrivaDx classifier; inputs are preprocessed as privadx.preprocess says"
    for key, value in ModelInfo.from_meta(meta).to_onnx_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"exported ONNX model fails onnx.checker: {exc}") from exc
    out = Path(out)
    write_atomic(out, proto.SerializeToString())
    digest = sha256_file(out)
    write_atomic(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n".encode())
    log.info("exported %s (%d bytes, sha256 %s)", out.name, out.stat().st_size, digest[:16])
    return digest


def verify_parity(
    model: tf.keras.Model, onnx_path: Path, images: np.ndarray, spec: PreprocessSpec
) -> float:
    """Max absolute difference between Keras and ONNX Runtime logits on ``images``.

    Raises:
        ModelError: The difference exceeds :data:`PARITY_TOLERANCE`.
    """
    from privadx.common.onnx_session import inference_session

    x = to_model_input(images, spec)
    keras_logits = model(x, training=False).numpy()
    session = inference_session(str(onnx_path))  # as the sites will run it
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x})
    diff = float(np.max(np.abs(keras_logits - onnx_logits)))
    if not diff <= PARITY_TOLERANCE:
        raise ModelError(
            f"ONNX Runtime and Keras disagree: max |logit difference| {diff:.2e} > "
            f"{PARITY_TOLERANCE:.0e}"
        )
    log.info("ONNX parity on %d images: max |logit diff| %.2e", len(images), diff)
    return diff
