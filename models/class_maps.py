"""Class activation maps of a Keras model, computed from its layers (the reference for ONNX).

For a model ending in global average pooling and a dense layer, class ``k``'s map at position
``(i, j)`` is ``sum_c W[c, k] * F[i, j, c]`` over the last feature maps ``F`` (Zhou et al.
2016). The exported ONNX graph computes the same maps as a second output
(models/onnx_graph.py); :func:`models.onnx_export.verify_parity` compares the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from privadx.common.deps import require
from privadx.common.errors import ModelError

if TYPE_CHECKING:
    import tensorflow as tf


def keras_class_maps(model: tf.keras.Model, x: np.ndarray) -> np.ndarray:
    """Maps ``(N, K, h, w)`` of ``model`` on model inputs ``x`` (already preprocessed).

    Raises:
        ModelError: The model does not end in global average pooling and a dense layer.
    """
    tf = require("tensorflow")
    pools = [
        layer for layer in model.layers if isinstance(layer, tf.keras.layers.GlobalAveragePooling2D)
    ]
    dense = model.layers[-1]
    if not pools or not isinstance(dense, tf.keras.layers.Dense):
        raise ModelError(f"{model.name}: no global average pooling followed by a dense layer")
    features = tf.keras.Model(model.inputs, pools[-1].input)
    maps = features(x, training=False).numpy()  # (N, h, w, C)
    kernel = np.asarray(dense.kernel.numpy(), np.float32)  # (C, K)
    return np.einsum("nhwc,ck->nkhw", maps, kernel).astype(np.float32)
