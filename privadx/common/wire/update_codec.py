"""How a site's update travels: full float32 weights, or a compressed difference to the base.

- ``float32``: the trained weights themselves (exact).
- ``float16``: the difference trained - base in half precision (relative error <= 2^-11 of
  each difference value).
- ``int8``: the difference per tensor as int8 with one float32 scale (``max|d| / 127``),
  symmetric rounding, so the error of each value is at most half a scale step.

The gateway decodes every update to float32 weights against the global model the site trained
from (its hash is checked first), so aggregation never sees the encoding.
"""

from __future__ import annotations

import numpy as np

from privadx.common.compat import StrEnum
from privadx.common.wire.tensors import TensorFormatError, check_like

SCALE_SUFFIX = "#scale"


class Encoding(StrEnum):
    """Update encodings a run can use."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"


def encode_update(
    weights: dict[str, np.ndarray], base: dict[str, np.ndarray], encoding: Encoding
) -> dict[str, np.ndarray]:
    """The tensors to send for trained ``weights`` that started from ``base``."""
    if encoding is Encoding.FLOAT32:
        return {k: np.asarray(v, np.float32) for k, v in weights.items()}
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        delta = np.asarray(w, np.float32) - base[name]
        if encoding is Encoding.FLOAT16:
            out[name] = delta.astype(np.float16)
            continue
        peak = float(np.max(np.abs(delta))) if delta.size else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        out[name] = np.clip(np.rint(delta / scale), -127, 127).astype(np.int8)
        out[name + SCALE_SUFFIX] = np.array([scale], np.float32)
    return out


_DTYPE = {Encoding.FLOAT32: np.float32, Encoding.FLOAT16: np.float16, Encoding.INT8: np.int8}


def decode_update(
    received: dict[str, np.ndarray], base: dict[str, np.ndarray], encoding: Encoding
) -> dict[str, np.ndarray]:
    """Float32 weights from received tensors; raises :class:`TensorFormatError` if malformed."""
    values = {k: v for k, v in received.items() if not k.endswith(SCALE_SUFFIX)}
    scales = {
        k.removesuffix(SCALE_SUFFIX): v for k, v in received.items() if k.endswith(SCALE_SUFFIX)
    }
    what = f"{encoding} update"
    check_like(dict(sorted(values.items())), dict(sorted(base.items())), what, _DTYPE[encoding])
    if encoding is not Encoding.INT8 and scales:
        raise TensorFormatError(f"{what}: unexpected scales {sorted(scales)[:3]}")
    if encoding is Encoding.FLOAT32:
        return {name: values[name] for name in base}
    if encoding is Encoding.FLOAT16:
        return {name: base[name] + values[name].astype(np.float32) for name in base}
    if sorted(scales) != sorted(base):
        raise TensorFormatError(f"{what}: missing scales {sorted(set(base) - set(scales))[:3]}")
    out = {}
    for name in base:
        scale = scales[name]
        if scale.shape != (1,) or scale.dtype != np.float32 or not 0 < scale[0] < 1e6:
            raise TensorFormatError(f"int8 update: bad scale for {name}")
        out[name] = base[name] + values[name].astype(np.float32) * scale[0]
    return out
