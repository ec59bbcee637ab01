"""Rebuild a Keras model from a weights file's arrays and metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import ModelError
from common.preprocess import PreprocessSpec
from models.architectures import build_model
from models.spec import ModelSpec
from models.weights import set_weights

if TYPE_CHECKING:
    import tensorflow as tf


def model_from_weights(
    weights: dict[str, np.ndarray], meta: dict[str, Any]
) -> tuple[tf.keras.Model, PreprocessSpec]:
    """The model and preprocessing a weights file describes, with its weights assigned."""
    try:
        spec = ModelSpec.from_json(meta["model_spec"])
        preprocess = PreprocessSpec.from_json(meta["preprocess"])
    except KeyError as exc:
        raise ModelError(f"weights metadata lacks {exc}") from exc
    model = build_model(spec)
    set_weights(model, weights)
    return model, preprocess
