"""Named weight arrays of a Keras model, in the model's own order."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from privadx.common.errors import ModelError

if TYPE_CHECKING:
    import tensorflow as tf


def weight_names(model: tf.keras.Model) -> list[str]:
    """Stable names of the model's trainable weights (``layer/kernel`` without ``:0``)."""
    return [w.name.removesuffix(":0") for w in model.trainable_weights]


def get_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """The model's trainable weights as ``{name: float32 array}``, in model order."""
    return {
        name: np.asarray(w.numpy(), dtype=np.float32)
        for name, w in zip(weight_names(model), model.trainable_weights, strict=True)
    }


def check_weights(
    names: list[str], shapes: list[tuple[int, ...]], weights: dict[str, np.ndarray]
) -> None:
    """Check that ``weights`` has exactly ``names``, in order, with ``shapes``.

    Raises:
        ModelError: The names or shapes do not match.
    """
    if list(weights) != names:
        missing = sorted(set(names) - set(weights))
        extra = sorted(set(weights) - set(names))
        raise ModelError(
            f"weights do not fit the model: missing {missing[:5]}, unexpected {extra[:5]}"
            if missing or extra
            else "weights are in a different order than the model's"
        )
    for name, shape in zip(names, shapes, strict=True):
        if tuple(shape) != weights[name].shape:
            raise ModelError(
                f"weight {name}: model expects shape {tuple(shape)}, got {weights[name].shape}"
            )


def set_weights(model: tf.keras.Model, weights: dict[str, np.ndarray]) -> None:
    """Assign ``weights`` to the model, checking names and shapes first.

    Raises:
        ModelError: The names or shapes do not match the model.
    """
    variables = model.trainable_weights
    check_weights(weight_names(model), [tuple(v.shape) for v in variables], weights)
    for var, value in zip(variables, weights.values(), strict=True):
        var.assign(value)
