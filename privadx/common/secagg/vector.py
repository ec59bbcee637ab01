"""Model updates as one flat vector, the form secure aggregation sums.

Both sides order the tensors as the global model message lists them, so a flat position means
the same weight at every site and at the gateway.
"""

from __future__ import annotations

import numpy as np

from privadx.common.errors import InputError


def flatten_update(update: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> np.ndarray:
    """An update (``trained - base``) as one float64 vector, in ``reference``'s tensor order."""
    if sorted(update) != sorted(reference):
        raise InputError("the update does not have the global model's tensors")
    parts = []
    for name, ref in reference.items():
        u = update[name]
        if u.shape != ref.shape:
            raise InputError(f"tensor {name}: shape {u.shape}, expected {ref.shape}")
        parts.append(np.asarray(u, np.float64).ravel())
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
