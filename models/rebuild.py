"""Rebuild a Keras model from a weights file's arrays and metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models.architectures import build_model
from models.weights import set_weights
from privadx.common.model_info import ModelInfo
from privadx.common.preprocess import PreprocessSpec

if TYPE_CHECKING:
    import tensorflow as tf


def model_from_weights(
    weights: dict[str, np.ndarray], meta: dict[str, Any]
) -> tuple[tf.keras.Model, PreprocessSpec]:
    """The model and preprocessing a weights file describes, with its weights assigned."""
    info = ModelInfo.from_meta(meta)
    model = build_model(info.model_spec)
    set_weights(model, weights)
    return model, info.preprocess
