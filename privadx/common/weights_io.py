"""A safe on-disk format for model weights: ``.npz`` of float32 arrays plus JSON metadata.

Loading never unpickles (``allow_pickle=False``), so a weights file from elsewhere cannot run
code. The metadata records what is needed to rebuild and use the model: the model spec, the
preprocessing spec, the class names and where the weights came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.errors import ModelError
from privadx.common.npz_file import MissingMetadataError, NpzFileError, load_npz_file, save_npz_file

_META_KEY = "__privadx_meta__"
_PREFIX = "w/"
FORMAT_VERSION = 1


def save_weights(path: Path, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``weights`` and ``meta`` atomically (temporary file, fsync, rename)."""
    arrays = {f"{_PREFIX}{k}": np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    meta_full = {"format_version": FORMAT_VERSION, "order": list(weights), **meta}
    save_npz_file(path, arrays, meta_full, meta_key=_META_KEY)


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
        stored, meta = load_npz_file(path, meta_key=_META_KEY)
    except MissingMetadataError as exc:
        raise ModelError(f"{path.name}: not a PrivaDx weights file (no metadata)") from exc
    except NpzFileError as exc:
        raise ModelError(f"{path.name}: unreadable weights file ({exc})") from exc
    arrays = {k[len(_PREFIX) :]: v for k, v in stored.items() if k.startswith(_PREFIX)}
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
