"""How a site's update travels.

An update is always ``trained - base``: the difference between the weights a site trained and
the global model it started from, per tensor, in float32.

- ``float32``: the difference as it is.
- ``float16``: the difference in half precision (relative error <= 2^-11 of each value).
- ``int8``: the difference per tensor as int8 with one float32 scale (``max|d| / 127``),
  symmetric rounding, so the error of each value is at most half a scale step.

The gateway decodes every update to the float32 difference, checked against the shapes of the
global model the site trained from (its hash is checked first), so aggregation never sees
the encoding and never sees weights: it averages differences
(:mod:`gateway.streaming`, :mod:`tff_core.aggregation`).
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


def model_update(
    trained: dict[str, np.ndarray], base: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The update of ``trained`` weights that started from ``base``: ``trained - base``."""
    return {
        name: np.asarray(w, np.float32) - np.asarray(base[name], np.float32)
        for name, w in trained.items()
    }


def encode_update(update: dict[str, np.ndarray], encoding: Encoding) -> dict[str, np.ndarray]:
    """The tensors to send for an ``update`` (:func:`model_update`)."""
    if encoding is Encoding.FLOAT32:
        return {k: np.asarray(v, np.float32) for k, v in update.items()}
    out: dict[str, np.ndarray] = {}
    for name, delta in update.items():
        delta = np.asarray(delta, np.float32)
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
    """The float32 update (``trained - base``) in received tensors, shaped like ``base``.

    Raises:
        TensorFormatError: Tensors missing, extra, misshapen, of the wrong type, or a bad scale.
    """
    values = {k: v for k, v in received.items() if not k.endswith(SCALE_SUFFIX)}
    scales = {
        k.removesuffix(SCALE_SUFFIX): v for k, v in received.items() if k.endswith(SCALE_SUFFIX)
    }
    what = f"{encoding} update"
    check_like(dict(sorted(values.items())), dict(sorted(base.items())), what, _DTYPE[encoding])
    if encoding is not Encoding.INT8 and scales:
        raise TensorFormatError(f"{what}: unexpected scales {sorted(scales)[:3]}")
    if encoding is not Encoding.INT8:
        return {name: values[name].astype(np.float32) for name in base}
    if sorted(scales) != sorted(base):
        raise TensorFormatError(f"{what}: missing scales {sorted(set(base) - set(scales))[:3]}")
    out = {}
    for name in base:
        scale = scales[name]
        if scale.shape != (1,) or scale.dtype != np.float32 or not 0 < scale[0] < 1e6:
            raise TensorFormatError(f"int8 update: bad scale for {name}")
        out[name] = values[name].astype(np.float32) * scale[0]
    return out
