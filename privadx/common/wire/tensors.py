"""A safe, self-describing encoding of named numpy tensors (no pickle).

Layout: ``u32 header length | JSON header | raw little-endian tensor bytes``. The header lists
``{"name", "dtype", "shape"}`` per tensor, in order; only plain numeric dtypes are accepted,
sizes must add up exactly, and NaN or infinite values are refused on decode.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from privadx.common.errors import InputError

ALLOWED_DTYPES = frozenset(
    {"float64", "float32", "float16", "int8", "uint8", "int32", "int64", "uint32", "uint64"}
)
_LEN = struct.Struct("<I")


class TensorFormatError(InputError):
    """A tensor payload is malformed, truncated or of an unexpected type."""


def to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Encode named tensors."""
    header = []
    blobs = []
    for name, array in tensors.items():
        arr = np.ascontiguousarray(array)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise TensorFormatError(f"tensor {name}: dtype {arr.dtype} cannot be sent")
        header.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        blobs.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    head = json.dumps({"tensors": header}, separators=(",", ":")).encode()
    return b"".join([_LEN.pack(len(head)), head, *blobs])


def from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Decode named tensors; raises :class:`TensorFormatError` on any inconsistency."""
    if len(data) < _LEN.size:
        raise TensorFormatError("tensor payload is shorter than its header length field")
    (head_len,) = _LEN.unpack_from(data)
    if _LEN.size + head_len > len(data):
        raise TensorFormatError("tensor header runs past the end of the payload")
    try:
        header = json.loads(data[_LEN.size : _LEN.size + head_len])
        entries = header["tensors"]
        if not isinstance(entries, list):
            raise TypeError("'tensors' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise TensorFormatError(f"malformed tensor header: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    offset = _LEN.size + head_len
    for entry in entries:
        name, dtype, shape = _entry(entry)
        if name in out:
            raise TensorFormatError(f"tensor {name} appears twice")
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if offset + nbytes > len(data):
            raise TensorFormatError(f"tensor {name} is truncated")
        arr = np.frombuffer(
            data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset
        )
        arr = arr.astype(dtype).reshape(shape)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise TensorFormatError(f"tensor {name} contains NaN or infinite values")
        out[name] = arr
        offset += nbytes
    if offset != len(data):
        raise TensorFormatError(f"{len(data) - offset} unexpected bytes after the last tensor")
    return out


def _entry(entry: object) -> tuple[str, str, tuple[int, ...]]:
    try:
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]  # type: ignore[index]
    except (KeyError, TypeError) as exc:
        raise TensorFormatError(f"malformed tensor entry {entry!r}") from exc
    if not isinstance(name, str) or dtype not in ALLOWED_DTYPES:
        raise TensorFormatError(f"tensor entry {entry!r}: bad name or dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d < 2**31 for d in shape):
        raise TensorFormatError(f"tensor {name}: bad shape {shape!r}")
    return name, dtype, tuple(shape)


def check_like(
    tensors: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    what: str,
    dtype: np.dtype | type | None = None,
) -> None:
    """Raise unless ``tensors`` has the names, shapes and dtypes of ``reference``.

    With ``dtype``, every tensor must have that dtype instead of the reference's.
    """
    if list(tensors) != list(reference):
        missing = sorted(set(reference) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(reference))[:3]
        raise TensorFormatError(
            f"{what}: tensor names differ (missing {missing}, unexpected {extra})"
        )
    for name, ref in reference.items():
        got = tensors[name]
        want = np.dtype(dtype) if dtype is not None else ref.dtype
        if got.shape != ref.shape or got.dtype != want:
            raise TensorFormatError(
                f"{what}: tensor {name} is {got.dtype}{list(got.shape)}, expected "
                f"{want}{list(ref.shape)}"
            )
