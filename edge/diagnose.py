"""Diagnose image files at the site with an exported model: PNG, JPEG, DICOM or ``.npz``.

Each input is decoded and brought to the model's size with the same preprocessing the model
was trained with; a file that cannot be read is reported with its reason and the others still
run. Images are classified in batches. An :data:`Explainer` given to :func:`diagnose` sees
each diagnosed image as the model saw it with its evidence map (edge/heatmap.py) as the batch
is classified, so heat maps and reports are written on the way and no image is kept.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.heatmap import evidence_map
from edge.onnx_model import OnnxClassifier
from privadx.common.data.images import DEFAULT_MAX_PIXELS, is_supported, read_image
from privadx.common.errors import DataError, InputError
from privadx.common.preprocess import fit_image

log = logging.getLogger(__name__)

BATCH = 64


@dataclass(frozen=True)
class Diagnosis:
    """The outcome for one image: a prediction, or the reason there is none.

    An image read and scored but unlike the training images (``unusual``) gets no class and
    no probabilities: a confident class for an image the model knows nothing about would
    mislead.
    """

    source: str
    predicted: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    heatmap: str | None = None
    """Where its heat-map figure was written, when one was asked for."""
    ood_distance: float | None = None
    """Its distance to the training images, when the model carries their reference."""
    unusual: bool = False
    """Farther from the training images than the model's threshold."""

    @property
    def ok(self) -> bool:
        """Whether the image was read and scored (classified, or found unusual)."""
        return self.error is None

    @property
    def classified(self) -> bool:
        """Whether it got a class."""
        return self.ok and not self.unusual and self.predicted is not None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        out: dict[str, object] = {"source": self.source}
        if not self.ok:
            out["error"] = self.error
        else:
            out["prediction"] = self.predicted
            if self.probabilities is not None:
                out["probabilities"] = self.probabilities
            out["unusual"] = self.unusual
        if self.ood_distance is not None:
            out["ood_distance"] = round(self.ood_distance, 4)
        if self.heatmap is not None:
            out["heatmap"] = self.heatmap
        return out


Explainer = Callable[[int, Diagnosis, "np.ndarray | None", "np.ndarray | None"], Diagnosis]
"""Called once per input, in order: ``(index, result, image, evidence) -> result``.

``image`` is the input as the model saw it (uint8, the model's size), ``evidence`` its
evidence map for the predicted class in ``[0, 1]`` (``None`` when the model has no class
maps); both are ``None`` for an input that could not be diagnosed. It returns the result to
keep (for example with the path of a figure it wrote).
"""


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
    explain: Explainer | None = None,
) -> list[Diagnosis]:
    """Classify every image found in ``paths``; failures become error entries, in order.

    ``threshold``: a site's own decision threshold instead of the model's (binary models).
    ``max_pixels``: the largest image decoded (default :data:`DEFAULT_MAX_PIXELS`).
    ``explain``: called with every result as it is made (see :data:`Explainer`).
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    results: list[Diagnosis] = []
    pending: list[tuple[str, np.ndarray]] = []
    names = model.info.class_names

    def keep(result: Diagnosis, image: np.ndarray | None, heat: np.ndarray | None) -> None:
        if explain is not None:
            result = explain(len(results), result, image, heat)
        results.append(result)

    def flush() -> None:
        batch = np.stack([img for _, img in pending])
        probs, predicted, maps = model.classify(
            batch, threshold=threshold, maps=explain is not None
        )
        distances, unusual = model.unusual(batch)
        for i, (source, image) in enumerate(pending):
            p, k = probs[i], int(predicted[i])
            d = None if distances is None else float(distances[i])
            if not np.all(np.isfinite(p)):
                error = "the model gave no finite probabilities for it: no diagnosis"
                keep(Diagnosis(source, error=error), None, None)
            elif unusual[i]:
                keep(Diagnosis(source, ood_distance=d, unusual=True), image, None)
            else:
                rounded = {n: round(float(v), 6) for n, v in zip(names, p, strict=True)}
                heat = None if maps is None else evidence_map(maps[i], k)
                keep(Diagnosis(source, names[k], rounded, ood_distance=d), image, heat)
        pending.clear()

    def fail(source: str, reason: str | None) -> None:
        if pending:  # results stay in input order
            flush()
        keep(Diagnosis(source, error=reason), None, None)

    for source, image, error in iter_images(collect_inputs(paths), max_pixels=limit):
        if error is not None or image is None:
            fail(source, error)
            continue
        try:
            fitted = fit_image(image, model.info.preprocess)
        except DataError as exc:
            fail(source, str(exc))
            continue
        except MemoryError:
            fail(source, "not enough memory to resize this image")
            continue
        pending.append((source, fitted))
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    return results
