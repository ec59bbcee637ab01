"""Read MedMNIST ``.npz`` files safely, verify them, and find or fetch them by name."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from privadx.common.data.arrays import LabeledImages, SplitDataset
from privadx.common.data.catalog import CATALOG, DatasetInfo, Task, dataset_info
from privadx.common.data.checksum import file_md5
from privadx.common.data.download import fetch_dataset
from privadx.common.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "PRIVADX_DATA"
SPLITS = ("train", "val", "test")


def default_data_dir() -> Path:
    """Where datasets live: ``$PRIVADX_DATA``, else ``$XDG_DATA_HOME/privadx``."""
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "privadx"


def catalog_entry_for(path: Path) -> tuple[DatasetInfo, int] | None:
    """The catalog entry and image size an official file name stands for, if any."""
    stem = path.name.removesuffix(".npz")
    name, _, size = stem.partition("_")
    if name in CATALOG and (not size or size.isdigit()):
        image_size = int(size) if size else 28
        if image_size in CATALOG[name].md5:
            return CATALOG[name], image_size
    return None


def verify_md5(path: Path, expected: str) -> None:
    """Raise :class:`DataError` unless ``path`` has MD5 ``expected``."""
    actual = file_md5(path)
    if actual != expected:
        raise DataError(
            f"{path.name}: MD5 {actual} does not match the official {expected}; the file is "
            "corrupt or not the official release (delete it and fetch it again)"
        )


def load_npz(path: Path, *, verify: bool = True) -> SplitDataset:
    """Load a MedMNIST-format ``.npz`` (official or self-made) without unpickling anything.

    Args:
        path: File with ``{train,val,test}_{images,labels}`` arrays.
        verify: Check the MD5 when the file name is an official MedMNIST name.

    Raises:
        DataError: Missing, unreadable, corrupt, inconsistent or checksum-failing file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    entry = catalog_entry_for(path)
    if entry is not None and verify:
        verify_md5(path, entry[0].md5[entry[1]])
    arrays = _read_arrays(path)
    info: DatasetInfo | None = entry[0] if entry else None
    if info is not None and info.task is Task.MULTI_LABEL:
        raise DataError(f"{info.name} is multi-label; PrivaDx trains single-label classifiers")
    class_names = _class_names(info, arrays)
    splits = {s: _split(arrays, s, class_names, path) for s in SPLITS}
    shapes = {s: splits[s].images.shape[1:] for s in SPLITS}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{path.name}: splits have different image shapes {shapes}")
    name = info.name if info else path.stem
    return SplitDataset(name=name, train=splits["train"], val=splits["val"], test=splits["test"])


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    wanted = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in wanted if k not in npz.files]
            if missing:
                raise DataError(f"{path.name}: not a MedMNIST file, missing arrays {missing}")
            return {k: npz[k] for k in wanted}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path.name}: unreadable .npz file ({exc})") from exc


def _class_names(info: DatasetInfo | None, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    if info is not None:
        return info.class_names
    top = max(int(arrays[f"{s}_labels"].max(initial=0)) for s in SPLITS)
    return tuple(f"class_{i}" for i in range(top + 1))


def _split(
    arrays: dict[str, np.ndarray], split: str, class_names: tuple[str, ...], path: Path
) -> LabeledImages:
    images = arrays[f"{split}_images"]
    labels = arrays[f"{split}_labels"]
    if images.dtype != np.uint8:
        raise DataError(f"{path.name}: {split}_images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path.name}: {split}_labels must be integer class indices of shape (N,) or "
            f"(N, 1), got {labels.dtype} {labels.shape}"
        )
    return LabeledImages(images, labels.astype(np.int64), class_names)


def resolve_dataset(name_or_path: str, data_dir: Path | None = None, *, fetch: bool = True) -> Path:
    """Turn a dataset name or a path into the path of a local dataset file or folder.

    An existing path is used as it is. A MedMNIST name is looked up in ``data_dir`` (default:
    :func:`default_data_dir`) and downloaded there if missing and ``fetch`` is true.

    Raises:
        InputError: Unknown name.
        DataError: File missing and not fetched.
        DownloadError: Fetch failed.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate
    if candidate.suffix in (".npz", ".csv") or len(candidate.parts) > 1:
        raise DataError(f"{candidate}: no such dataset file or folder")
    info = dataset_info(name_or_path)
    folder = data_dir or default_data_dir()
    path = folder / info.file_name()
    if path.is_file():
        return path
    if not fetch:
        raise DataError(f"{path} is missing; run: privadx data fetch {info.name}")
    return fetch_dataset(info, folder)
