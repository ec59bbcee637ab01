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

from enum import StrEnum

import numpy as np

from common.wire.tensors import TensorFormatError

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


def decode_update(
    tensors: dict[str, np.ndarray], base: dict[str, np.ndarray], encoding: Encoding
) -> dict[str, np.ndarray]:
    """Float32 weights from received tensors; raises :class:`TensorFormatError` if malformed."""
    expected = {Encoding.FLOAT32: np.float32, Encoding.FLOAT16: np.float16, Encoding.INT8: np.int8}
    names = list(base)
    wanted = (
        names if encoding is not Encoding.INT8 else [*names, *(n + SCALE_SUFFIX for n in names)]
    )
    if sorted(tensors) != sorted(wanted):
        missing = sorted(set(wanted) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(wanted))[:3]
        raise TensorFormatError(f"{encoding} update: missing {missing}, unexpected {extra}")
    out = {}
    for name in names:
        t = tensors[name]
        if t.shape != base[name].shape or t.dtype != expected[encoding]:
            raise TensorFormatError(
                f"{encoding} update: tensor {name} is {t.dtype}{list(t.shape)}, expected "
                f"{np.dtype(expected[encoding])}{list(base[name].shape)}"
            )
        if encoding is Encoding.FLOAT32:
            out[name] = t
        elif encoding is Encoding.FLOAT16:
            out[name] = base[name] + t.astype(np.float32)
        else:
            scale = tensors[name + SCALE_SUFFIX]
            if scale.shape != (1,) or scale.dtype != np.float32 or not 0 < scale[0] < 1e6:
                raise TensorFormatError(f"int8 update: bad scale for {name}")
            out[name] = base[name] + t.astype(np.float32) * scale[0]
    return out
