"""Diagnose image files at the site with an exported model: PNG, JPEG, DICOM or ``.npz``.

Each input is decoded and brought to the model's size with the same preprocessing the model
was trained with; a file that cannot be read is reported with its reason and the others still
run. Images are classified in batches.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.onnx_model import OnnxClassifier
from privadx.common.data.images import DEFAULT_MAX_PIXELS, is_supported, read_image
from privadx.common.errors import DataError, InputError
from privadx.common.preprocess import fit_image

log = logging.getLogger(__name__)

BATCH = 64


@dataclass(frozen=True)
class Diagnosis:
    """The outcome for one image: a prediction, or the reason there is none."""

    source: str
    predicted: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether a prediction was made."""
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        if self.ok:
            return {
                "source": self.source,
                "prediction": self.predicted,
                "probabilities": self.probabilities,
            }
        return {"source": self.source, "error": self.error}


def collect_inputs(paths: list[Path]) -> list[Path]:
    """Expand folders (recursively) into supported files; keep explicitly named files as is.

    Raises:
        InputError: A named path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not p.name.startswith(".")
                and (p.suffix.lower() == ".npz" or is_supported(p))
            )
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def _npz_images(path: Path) -> np.ndarray:
    """Images of an ``.npz``: its ``images`` array, else a MedMNIST file's test split."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in ("images", "test_images"):
                if key in npz.files:
                    images = npz[key]
                    break
            else:
                raise DataError(f"{path.name}: no 'images' or 'test_images' array")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path.name}: unreadable .npz ({exc})") from exc
    if images.dtype != np.uint8 or images.ndim not in (2, 3, 4):
        raise DataError(f"{path.name}: expected uint8 images, got {images.dtype} {images.shape}")
    return images[np.newaxis] if images.ndim == 2 else images


def iter_images(
    files: list[Path], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Yield ``(source, image, None)`` per decodable image or ``(source, None, reason)``."""
    for file in files:
        try:
            if file.suffix.lower() == ".npz":
                for i, image in enumerate(_npz_images(file)):
                    yield f"{file}[{i}]", image, None
            else:
                yield str(file), read_image(file, max_pixels=max_pixels), None
        except DataError as exc:
            yield str(file), None, str(exc)


def diagnose(
    model: OnnxClassifier,
    paths: list[Path],
    *,
    threshold: float | None = None,
    max_pixels: int | None = None,
) -> list[Diagnosis]:
    """Classify every image found in ``paths``; failures become error entries, in order.

    ``threshold``: a site's own decision threshold instead of the model's (binary models).
    ``max_pixels``: the largest image decoded (default :data:`DEFAULT_MAX_PIXELS`).
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    results: list[Diagnosis | None] = []
    pending: list[tuple[int, str, np.ndarray]] = []
    names = model.info.class_names

    def flush() -> None:
        probs, predicted = model.predict(
            np.stack([img for _, _, img in pending]), threshold=threshold
        )
        for (slot, source, _), p, k in zip(pending, probs, predicted, strict=True):
            if not np.all(np.isfinite(p)):
                results[slot] = Diagnosis(
                    source, error="the model gave no finite probabilities for it: no diagnosis"
                )
                continue
            results[slot] = Diagnosis(
                source,
                names[int(k)],
                {n: round(float(v), 6) for n, v in zip(names, p, strict=True)},
            )
        pending.clear()

    for source, image, error in iter_images(collect_inputs(paths), max_pixels=limit):
        results.append(None)
        if error is not None or image is None:
            results[-1] = Diagnosis(source, error=error)
            continue
        try:
            fitted = fit_image(image, model.info.preprocess)
        except DataError as exc:
            results[-1] = Diagnosis(source, error=str(exc))
            continue
        except MemoryError:
            results[-1] = Diagnosis(source, error="not enough memory to resize this image")
            continue
        pending.append((len(results) - 1, source, fitted))
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    return [r for r in results if r is not None]
