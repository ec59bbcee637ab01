"""A safe on-disk format for model weights: ``.npz`` of float32 arrays plus JSON metadata.

Loading never unpickles (``allow_pickle=False``), so a weights file from elsewhere cannot run
code. The metadata records what is needed to rebuild and use the model: the model spec, the
preprocessing spec, the class names and where the weights came from.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.errors import ModelError
from privadx.common.fileio import write_atomic

_META_KEY = "__privadx_meta__"
_PREFIX = "w/"
FORMAT_VERSION = 1


def save_weights(path: Path, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``weights`` and ``meta`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {f"{_PREFIX}{k}": np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    meta_full = {"format_version": FORMAT_VERSION, "order": list(weights), **meta}
    payload[_META_KEY] = np.frombuffer(json.dumps(meta_full).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    write_atomic(path, buffer.getvalue())


def load_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a weights file written by :func:`save_weights`.

    Returns:
        ``(weights in their saved order, metadata)``.

    Raises:
        ModelError: Missing, corrupt, foreign or unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise ModelError(f"{path.name}: not a PrivaDx weights file (no metadata)")
            meta = json.loads(npz[_META_KEY].tobytes().decode())
            arrays = {k[len(_PREFIX) :]: npz[k] for k in npz.files if k.startswith(_PREFIX)}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name}: unreadable weights file ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path.name}: weights format version {meta.get('format_version')!r} is not "
            f"supported (this PrivaDx reads version {FORMAT_VERSION})"
        )
    order = meta.get("order", [])
    if sorted(order) != sorted(arrays):
        raise ModelError(f"{path.name}: the weight list does not match the stored arrays")
    for name in order:
        if arrays[name].dtype != np.float32 or not np.all(np.isfinite(arrays[name])):
            raise ModelError(f"{path.name}: weight {name} is not finite float32")
    return {k: arrays[k] for k in order}, meta
