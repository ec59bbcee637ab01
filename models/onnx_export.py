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

from models.spec import CAM_NAME, INPUT_NAME, OUTPUT_NAME
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


def to_onnx(model: tf.keras.Model, *, class_maps: bool = True) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (opset 17, dynamic batch).

    PrivaDx's own architectures are written directly (models/onnx_graph.py: 42 nodes for the
    CNN against tf2onnx's 335), with the class activation maps as a second output when
    ``class_maps``; any other Keras model goes through tf2onnx, without maps.
    """
    from models.onnx_graph import UnsupportedModelError

    if class_maps:
        try:
            return direct_graph(model, class_maps=True)
        except UnsupportedModelError as exc:
            log.warning("exporting without class activation maps (%s)", exc)
    try:
        return direct_graph(model)
    except UnsupportedModelError as exc:
        log.info("converting with tf2onnx (%s)", exc)
    return tf2onnx_graph(model)


def direct_graph(model: tf.keras.Model, *, class_maps: bool = False) -> onnx.ModelProto:
    """``model`` written by PrivaDx's own writer (models/onnx_graph.py).

    With the export's opset and tensor names (and the maps output when ``class_maps``);
    raises :class:`models.onnx_graph.UnsupportedModelError` for a layer it does not handle.
    """
    from models.onnx_graph import keras_to_onnx

    return keras_to_onnx(
        model,
        opset=OPSET,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        cam_name=CAM_NAME if class_maps else None,
    )


def tf2onnx_graph(model: tf.keras.Model) -> onnx.ModelProto:
    """``model`` converted by tf2onnx (opset 17, dynamic batch)."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    shape = (None, *model.input_shape[1:])
    signature = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    return proto


def export_onnx(
    model: tf.keras.Model, meta: dict[str, Any], out: Path, *, class_maps: bool = True
) -> str:
    """Write ``model`` as ONNX at ``out`` (:func:`to_onnx`) with metadata; check it, hash it.

    ``class_maps``: add the class activation maps output (for heat maps at diagnosis).

    Returns:
        The SHA-256 of the written file (also written to ``out.sha256``).
    """
    onnx = require("onnx")
    proto = to_onnx(model, class_maps=class_maps)
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
    """Max absolute difference between Keras and ONNX Runtime outputs on ``images``.

    The logits, and the class activation maps when the graph has them
    (:func:`models.class_maps.keras_class_maps` is the reference).

    Raises:
        ModelError: A difference exceeds :data:`PARITY_TOLERANCE`.
    """
    from privadx.common.onnx_session import inference_session

    x = to_model_input(images, spec)
    session = inference_session(str(onnx_path))  # as the sites will run it
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    diff = _max_diff(model(x, training=False).numpy(), outputs[OUTPUT_NAME], "logit")
    if CAM_NAME in outputs:
        from models.class_maps import keras_class_maps

        diff = max(diff, _max_diff(keras_class_maps(model, x), outputs[CAM_NAME], "class map"))
    log.info("ONNX parity on %d images: max |difference| %.2e", len(images), diff)
    return diff


def _max_diff(keras: np.ndarray, onnx_out: np.ndarray, what: str) -> float:
    diff = float(np.max(np.abs(keras - onnx_out)))
    if not diff <= PARITY_TOLERANCE:
        raise ModelError(
            f"ONNX Runtime and Keras disagree: max |{what} difference| {diff:.2e} > "
            f"{PARITY_TOLERANCE:.0e}"
        )
    return diff
