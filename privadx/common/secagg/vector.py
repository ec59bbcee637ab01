"""Model updates as one flat vector, the form secure aggregation sums.

Both sides order the tensors as the global model message lists them, so a flat position means
the same weight at every site and at the gateway.
"""

from __future__ import annotations

import numpy as np

from privadx.common.errors import InputError


def flatten_delta(base: dict[str, np.ndarray], trained: dict[str, np.ndarray]) -> np.ndarray:
    """``base - trained`` (TFF's client delta) of every tensor, concatenated (float64)."""
    if list(base) != list(trained):
        raise InputError("trained weights do not have the global model's tensors")
    parts = []
    for name, b in base.items():
        t = trained[name]
        if t.shape != b.shape:
            raise InputError(f"tensor {name}: shape {t.shape}, expected {b.shape}")
        parts.append((np.asarray(b, np.float64) - np.asarray(t, np.float64)).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def vector_length(reference: dict[str, np.ndarray]) -> int:
    """Coordinates of a flattened update of ``reference``'s tensors."""
    return int(sum(v.size for v in reference.values()))


def unflatten(vector: np.ndarray, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``vector`` cut back into float32 tensors shaped like ``reference``'s."""
    if vector.size != vector_length(reference):
        raise InputError(f"vector has {vector.size} values, the model {vector_length(reference)}")
    out, offset = {}, 0
    for name, ref in reference.items():
        out[name] = vector[offset : offset + ref.size].reshape(ref.shape).astype(np.float32)
        offset += ref.size
    return out
