"""A site's own images as a training set: class folders, a CSV manifest, or a ``.npz``.

- A folder with one sub-folder per class (``normal/``, ``pneumonia/``) holding PNG, JPEG or
  DICOM files; class names are the sub-folder names in sorted order unless given.
- A CSV manifest with a header row and the columns ``file`` and ``label`` (a class name or
  index); relative file paths are taken from the manifest's folder.
- A MedMNIST-format ``.npz`` (its train split).

Unreadable files are skipped and counted, never fatal; their names are returned to the caller
and never logged, since file names of patient images can identify patients.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from privadx.common.data.arrays import LabeledImages
from privadx.common.data.images import is_supported, read_image
from privadx.common.errors import DataError, InputError
from privadx.common.fileio import write_atomic
from privadx.common.preprocess import PreprocessSpec, fit_image, fit_images

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """Result of loading a site's images: the usable set and what was skipped."""

    data: LabeledImages
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(file name, reason)`` of every file that could not be used."""


def load_local_dataset(
    path: Path, spec: PreprocessSpec, class_names: tuple[str, ...] | None = None
) -> LoadReport:
    """Load a site's training images from a class folder, CSV manifest or ``.npz`` file."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, spec, class_names)
    if path.suffix.lower() == ".csv":
        return load_csv_manifest(path, spec, class_names)
    if path.suffix.lower() == ".npz":
        train = load_site_npz(path, class_names)
        fitted = fit_images(train.images, spec)
        return LoadReport(LabeledImages(fitted, train.labels, train.class_names))
    raise InputError(f"{path}: expected a class folder, a .csv manifest or a .npz file")


def save_site_npz(path: Path, data: LabeledImages) -> None:
    """Write a site's images as the ``images``/``labels`` ``.npz`` :func:`load_site_npz` reads.

    Class names are not stored: whoever reads the file names the classes (a task does).
    """
    buffer = io.BytesIO()
    np.savez(buffer, images=data.images, labels=data.labels)
    write_atomic(Path(path), buffer.getvalue())


def load_site_npz(path: Path, class_names: tuple[str, ...] | None = None) -> LabeledImages:
    """Images of a site ``.npz``: ``images``/``labels`` or a MedMNIST file's train split."""
    from privadx.common.data.medmnist import load_npz

    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"images", "labels"} <= keys:
                images, labels = npz["images"], npz["labels"]
            elif {"train_images", "train_labels"} <= keys and "test_images" not in keys:
                images, labels = npz["train_images"], npz["train_labels"]
            else:
                images = labels = None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path.name}: unreadable .npz ({exc})") from exc
    if images is None or labels is None:
        train = load_npz(path).train
        return LabeledImages(train.images, train.labels, class_names or train.class_names)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(
            f"{path.name}: images must be uint8 (N, H, W[, C]), got {images.dtype} {images.shape}"
        )
    images = images[..., np.newaxis] if images.ndim == 3 else images
    labels = labels.reshape(-1).astype(np.int64)
    names = class_names or tuple(f"class_{i}" for i in range(int(labels.max(initial=0)) + 1))
    return LabeledImages(images, labels, names)


def load_image_folder(
    root: Path, spec: PreprocessSpec, class_names: tuple[str, ...] | None = None
) -> LoadReport:
    """Load ``root/<class>/<image>`` files (searched recursively inside each class folder)."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = class_names or tuple(folders)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the classes {list(names)}")
    if not folders:
        raise DataError(f"{root}: no class sub-folders (expected e.g. {root}/normal/*.png)")
    entries = [
        (file, names.index(folder))
        for folder in folders
        for file in sorted((root / folder).rglob("*"))
        if file.is_file() and not file.name.startswith(".") and is_supported(file)
    ]
    return _decode_all(entries, spec, names, str(root))


def load_csv_manifest(
    manifest: Path, spec: PreprocessSpec, class_names: tuple[str, ...] | None = None
) -> LoadReport:
    """Load the images listed in a ``file,label`` CSV manifest."""
    rows = _manifest_rows(manifest)
    raw_labels = [r["label"].strip() for r in rows]
    names = class_names or _names_from_labels(raw_labels)
    entries = []
    for line, (row, raw) in enumerate(zip(rows, raw_labels, strict=True), start=2):
        entries.append((manifest.parent / row["file"].strip(), _label_index(raw, names, line)))
    return _decode_all(entries, spec, names, str(manifest))


def read_manifest_labels(manifest: Path) -> tuple[str, ...]:
    """The class names a ``file,label`` manifest implies (no image is opened)."""
    return _names_from_labels([r["label"].strip() for r in _manifest_rows(manifest)])


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: unreadable CSV manifest ({exc})") from exc
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DataError(f"{manifest}: a manifest needs a header with the columns 'file,label'")
    return rows


def _names_from_labels(raw: list[str]) -> tuple[str, ...]:
    if all(r.isdigit() for r in raw):
        return tuple(f"class_{i}" for i in range(max(int(r) for r in raw) + 1))
    return tuple(sorted(set(raw)))


def _label_index(raw: str, names: tuple[str, ...], line: int) -> int:
    if raw in names:
        return names.index(raw)
    if raw.isdigit() and int(raw) < len(names):
        return int(raw)
    raise DataError(f"manifest line {line}: label {raw!r} is not one of {list(names)}")


def _decode_all(
    entries: list[tuple[Path, int]], spec: PreprocessSpec, names: tuple[str, ...], where: str
) -> LoadReport:
    images, labels, skipped = [], [], []
    for file, label in entries:
        try:
            images.append(fit_image(read_image(file), spec))
            labels.append(label)
        except DataError as exc:
            skipped.append((file.name, str(exc)))
    if skipped:
        log.warning(
            "%d of %d image files could not be read and were skipped", len(skipped), len(entries)
        )
    if not images:
        raise DataError(f"{where}: no readable images ({len(skipped)} files skipped)")
    data = LabeledImages(np.stack(images), np.asarray(labels, dtype=np.int64), names)
    return LoadReport(data, skipped)
