"""Named arrays plus JSON metadata in one ``.npz`` file: the container PrivaDx writes to disk.

Weights files (:mod:`privadx.common.weights_io`) and the gateway's checkpoints
(:mod:`gateway.checkpoint`) are both this container; they differ in the name of the entry
that holds the metadata (each keeps the one its files have always had) and in what they
check on top. Writing is atomic (:func:`privadx.common.fileio.write_atomic`); reading never
unpickles (``allow_pickle=False``), so a file from elsewhere cannot run code.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.fileio import write_atomic


class NpzFileError(ValueError):
    """The file is missing, unreadable, not an ``.npz`` or has no readable metadata."""


class MissingMetadataError(NpzFileError):
    """A readable ``.npz`` without the metadata entry: some other program's file."""


def save_npz_file(
    path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, meta_key: str
) -> None:
    """Write ``arrays`` and ``meta`` (JSON-ready) to ``path`` atomically."""
    if meta_key in arrays:
        raise ValueError(f"an array may not be named {meta_key!r}: that entry is the metadata")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[meta_key] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    write_atomic(Path(path), buffer.getvalue())


def load_npz_file(path: Path, *, meta_key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays in stored order, metadata)`` of a file written by :func:`save_npz_file`.

    Raises:
        NpzFileError: With a message that names the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise NpzFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if meta_key not in npz.files:
                raise MissingMetadataError(f"{path.name}: no metadata entry ({meta_key})")
            meta = json.loads(npz[meta_key].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != meta_key}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        if isinstance(exc, NpzFileError):
            raise
        raise NpzFileError(f"{path.name}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise NpzFileError(f"{path.name}: the metadata is not a JSON object")
    return arrays, meta
