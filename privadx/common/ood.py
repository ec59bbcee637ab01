"""Is an image like those the model was trained on? A distance to the training images.

Each image, as the model sees it, is summarised by a fixed embedding that needs no model: its
layout (the mean of each channel over an 8x8 grid), its intensities (a 16-bin histogram per
channel) and its texture (the mean gradient magnitude over a 4x4 grid), every value in
``[0, 1]``. The training images'
embeddings are described by their mean and covariance; an image's out-of-distribution score
is its Mahalanobis distance to them (Mahalanobis 1936; with the covariance shrunk towards a
scaled identity, Ledoit and Wolf 2004, as the histograms make it singular). The threshold is
a high quantile of the distances of held-out images, never of the images the mean and
covariance came from.

Everything a federation needs is a sum, so no image leaves a site: the training images'
:class:`Moments` (count, sum, sum of outer products) add up across sites to the pooled ones,
and the held-out distances travel as a histogram in fixed bins (:data:`DISTANCE_EDGES`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from privadx.common.errors import ModelError

SCHEME = "grid8-hist16-grad4/v1"
"""Names the embedding; a reference made with another one is refused."""
GRID, LEVELS, TEXTURE = 8, 16, 4
SHRINK = 0.01
"""Weight of the scaled identity in the shrunk covariance."""
QUANTILE = 0.99
"""The held-out images' distance quantile that becomes the threshold."""
DISTANCE_EDGES = np.geomspace(0.5, 2.0e4, 401)
"""Inner edges of the distance histogram (2.7% wide in ratio); two open bins at the ends."""
MIN_IMAGES = 20
"""Fewest training images a site describes (fewer: too close to describing one image)."""


def dimension(channels: int) -> int:
    """Length of the embedding of a ``channels``-channel image."""
    return (GRID * GRID + LEVELS) * channels + TEXTURE * TEXTURE


def embed(images: np.ndarray) -> np.ndarray:
    """Embeddings ``(N, D)`` of uint8 images ``(N, H, W, C)`` at the model's size.

    Raises:
        ModelError: Images smaller than the grid, or not uint8 ``(N, H, W, C)``.
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ModelError(f"expected uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    if h < GRID or w < GRID:
        raise ModelError(f"images of {h}x{w} are smaller than the {GRID}x{GRID} embedding grid")
    x = images.astype(np.float64) / 255.0
    layout = _grid_means(x, GRID).reshape(n, -1)
    levels = np.stack([_levels(images[..., k]) for k in range(c)], axis=1).reshape(n, -1)
    gray = x.mean(axis=3)
    gradient = np.zeros_like(gray)
    gradient[:, :-1, :] += np.abs(np.diff(gray, axis=1))
    gradient[:, :, :-1] += np.abs(np.diff(gray, axis=2))
    texture = _grid_means(gradient[..., None] / 2.0, TEXTURE).reshape(n, -1)  # in [0, 1]
    return np.concatenate([layout, levels, texture], axis=1)


def _grid_means(x: np.ndarray, cells: int) -> np.ndarray:
    """Means of ``(N, H, W, C)`` over a ``cells`` x ``cells`` grid: ``(N, cells, cells, C)``."""
    rows = np.linspace(0, x.shape[1], cells + 1).round().astype(int)
    cols = np.linspace(0, x.shape[2], cells + 1).round().astype(int)
    out = np.empty((x.shape[0], cells, cells, x.shape[3]))
    for i in range(cells):
        band = x[:, rows[i] : rows[i + 1]]
        for j in range(cells):
            out[:, i, j] = band[:, :, cols[j] : cols[j + 1]].mean(axis=(1, 2))
    return out


def _levels(channel: np.ndarray) -> np.ndarray:
    """Each image's share of pixels in each of :data:`LEVELS` equal intensity bins."""
    n = channel.shape[0]
    bins = (channel.reshape(n, -1).astype(np.int64) * LEVELS) // 256
    counts = np.zeros((n, LEVELS))
    np.add.at(counts, (np.repeat(np.arange(n), bins.shape[1]), bins.ravel()), 1.0)
    return counts / bins.shape[1]


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of outer products of embeddings: what sites add up."""

    count: int
    total: np.ndarray
    outer: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray) -> Moments:
        """The moments of ``(N, D)`` embeddings."""
        e = np.asarray(embeddings, np.float64)
        return cls(int(e.shape[0]), e.sum(axis=0), e.T @ e)

    def __add__(self, other: Moments) -> Moments:
        if self.total.shape != other.total.shape:
            raise ModelError(f"cannot add moments of {self.total.size} and {other.total.size}")
        return Moments(self.count + other.count, self.total + other.total, self.outer + other.outer)


@dataclass(frozen=True)
class Reference:
    """The training images' mean and shrunk precision, and the distance threshold."""

    mean: np.ndarray
    precision: np.ndarray
    images: int
    """Training images the mean and covariance describe."""
    threshold: float | None = None
    held_out: int = 0
    """Held-out images the threshold was chosen on."""

    @classmethod
    def from_moments(cls, moments: Moments, *, shrink: float = SHRINK) -> Reference:
        """Mean and shrunk precision of the pooled embeddings ``moments`` sums.

        Raises:
            ModelError: Too few images to describe.
        """
        n = moments.count
        if n < 2:
            raise ModelError(f"{n} training images cannot describe a distribution")
        mean = moments.total / n
        cov = (moments.outer - n * np.outer(mean, mean)) / (n - 1)
        cov = (cov + cov.T) / 2
        scale = max(float(np.trace(cov)) / cov.shape[0], 1e-12)
        shrunk = (1.0 - shrink) * cov + shrink * scale * np.eye(cov.shape[0])
        return cls(mean=mean, precision=np.linalg.inv(shrunk), images=n)

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding to the training images."""
        z = np.asarray(embeddings, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, self.precision, z), 0.0))

    def with_threshold(self, histogram: np.ndarray, *, quantile: float = QUANTILE) -> Reference:
        """This reference with the threshold at ``quantile`` of held-out distances.

        ``histogram`` counts held-out distances in the bins of :func:`distance_histogram`;
        the threshold is the upper edge of the bin the quantile falls in.

        Raises:
            ModelError: An empty or malformed histogram.
        """
        counts = np.asarray(histogram, np.float64)
        if counts.shape != (DISTANCE_EDGES.size + 1,) or counts.min() < 0 or counts.sum() < 1:
            raise ModelError("a distance histogram of held-out images is needed for a threshold")
        position = int(np.searchsorted(np.cumsum(counts), quantile * counts.sum()))
        edge = DISTANCE_EDGES[min(position, DISTANCE_EDGES.size - 1)]
        return replace(self, threshold=float(edge), held_out=int(counts.sum()))

    def flags(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, flagged)``: which images lie beyond the threshold."""
        d = self.distances(embeddings)
        if self.threshold is None:
            return d, np.zeros(d.shape, bool)
        return d, d > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a model's metadata (arrays as base64 little-endian float32)."""
        return {
            "scheme": SCHEME,
            "images": self.images,
            "held_out": self.held_out,
            "quantile": QUANTILE,
            "threshold": self.threshold,
            "mean": _b64(self.mean),
            "precision": _b64(self.precision),
        }

    @property
    def channels(self) -> int:
        """Channels of the images this reference describes."""
        return next(c for c in (1, 3) if dimension(c) == self.mean.size)

    @classmethod
    def from_dict(cls, value: object) -> Reference:
        """Read :meth:`to_dict`'s form (of 1- or 3-channel images).

        Raises:
            ModelError: Naming what is wrong.
        """
        if not isinstance(value, dict):
            raise ModelError("ood is not an object")
        if value.get("scheme") != SCHEME:
            raise ModelError(f"ood scheme {value.get('scheme')!r} is not {SCHEME!r}")
        mean = _from_b64(value.get("mean"), "ood.mean")
        if mean.size not in (dimension(1), dimension(3)):
            raise ModelError(
                f"ood.mean has {mean.size} values; embeddings have {dimension(1)} (gray) or "
                f"{dimension(3)} (RGB)"
            )
        precision = _from_b64(value.get("precision"), "ood.precision")
        if precision.size != mean.size**2:
            raise ModelError(f"ood.precision has {precision.size} values, expected {mean.size}^2")
        threshold = value.get("threshold")
        if threshold is not None and not (
            isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0
        ):
            raise ModelError(f"ood.threshold {threshold!r} is not a positive number")
        counts = [value.get(k) for k in ("images", "held_out")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ModelError("ood.images and ood.held_out must be whole numbers")
        return cls(
            mean=mean,
            precision=precision.reshape(mean.size, mean.size),
            images=int(value["images"]),
            threshold=None if threshold is None else float(threshold),
            held_out=int(value["held_out"]),
        )


def distance_histogram(distances: np.ndarray) -> np.ndarray:
    """Counts of ``distances`` in the fixed bins of :data:`DISTANCE_EDGES` (int64)."""
    index = np.searchsorted(DISTANCE_EDGES, np.asarray(distances, np.float64), side="right")
    return np.bincount(index, minlength=DISTANCE_EDGES.size + 1).astype(np.int64)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.asarray(array, "<f4").tobytes()).decode("ascii")


def _from_b64(text: object, name: str) -> np.ndarray:
    if not isinstance(text, str):
        raise ModelError(f"{name} is missing")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ModelError(f"{name} is not base64 ({exc})") from exc
    if not raw or len(raw) % 4:
        raise ModelError(f"{name} holds {len(raw)} bytes, not whole float32 values")
    array = np.frombuffer(raw, "<f4").astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ModelError(f"{name} has NaN or infinite values")
    return array


def site_moments(images: np.ndarray) -> Moments | None:
    """What one site contributes to the reference: the moments of its training images.

    ``None`` for a site with fewer than :data:`MIN_IMAGES` (their mean would come too close
    to describing single images).
    """
    return Moments.of(embed(images)) if len(images) >= MIN_IMAGES else None


def reference_of_sites(train: list[np.ndarray], held_out: list[np.ndarray]) -> Reference | None:
    """The reference the sites' sums give, as a federation would compute it.

    Moments of the training images of each site that has enough, the threshold from every
    site's held-out distances. ``None`` when no site has enough images.
    """
    parts = [m for m in map(site_moments, train) if m is not None]
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    reference = Reference.from_moments(total)
    counts = [distance_histogram(reference.distances(embed(h))) for h in held_out if len(h)]
    return reference.with_threshold(np.sum(counts, axis=0)) if counts else reference


class OodError(ModelError):
    """The out-of-distribution sums of a report are malformed."""


@dataclass(frozen=True)
class OodSums:
    """What a site's evaluation report adds for the reference: moments and distances.

    ``moments``: of the site's training images (count 0 for a site with too few);
    ``hist``: its held-out images' distances to the reference the evaluated model carried
    (all zero when it carried none).
    """

    moments: Moments
    hist: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> OodSums:
        """No images described, no distances."""
        d = dimension(channels)
        return cls(
            Moments(0, np.zeros(d), np.zeros((d, d))), np.zeros(DISTANCE_EDGES.size + 1, np.int64)
        )

    def __add__(self, other: OodSums) -> OodSums:
        return OodSums(self.moments + other.moments, self.hist + other.hist)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The report's ``ood_*`` tensors."""
        return {
            "ood_count": np.array([self.moments.count], np.uint32),
            "ood_total": self.moments.total.astype(np.float64),
            "ood_outer": self.moments.outer.astype(np.float64),
            "ood_hist": self.hist.astype(np.uint32),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], channels: int) -> OodSums:
        """Validate the ``ood_*`` tensors of a report for ``channels``-channel images.

        Raises:
            OodError: Wrong shapes or types, or sums no set of embeddings can have.
        """
        d = dimension(channels)
        shapes = {"ood_count": (1,), "ood_total": (d,), "ood_outer": (d, d)}
        shapes["ood_hist"] = (DISTANCE_EDGES.size + 1,)
        for name, shape in shapes.items():
            if name not in tensors or tensors[name].shape != shape:
                got = list(tensors[name].shape) if name in tensors else "nothing"
                raise OodError(f"report tensor {name}: expected shape {list(shape)}, got {got}")
        for name in ("ood_count", "ood_hist"):
            if tensors[name].dtype.kind not in "iu" or np.any(tensors[name] < 0):
                raise OodError(f"report tensor {name} must hold whole non-negative counts")
        for name in ("ood_total", "ood_outer"):
            if tensors[name].dtype.kind != "f" or not np.all(np.isfinite(tensors[name])):
                raise OodError(f"report tensor {name} must hold finite numbers")
        sums = cls(
            Moments(
                int(tensors["ood_count"][0]),
                tensors["ood_total"].astype(np.float64),
                tensors["ood_outer"].astype(np.float64),
            ),
            tensors["ood_hist"].astype(np.int64),
        )
        sums.check()
        return sums

    def check(self) -> None:
        """Raise :class:`OodError` unless embeddings in ``[0, 1]`` could have these sums."""
        n, total, outer = self.moments.count, self.moments.total, self.moments.outer
        slack = 1e-6 * (1 + n)
        if n == 0 and (np.abs(total).max() > slack or np.abs(outer).max() > slack):
            raise OodError("moments of no images must be zero")
        if np.any(total < -slack) or np.any(total > n + slack):
            raise OodError("embedding sums outside [0, count]")
        if np.any(outer < -slack) or np.any(outer > n + slack):
            raise OodError("sums of embedding products outside [0, count]")
        if not np.allclose(outer, outer.T, atol=slack):
            raise OodError("sums of embedding products are not symmetric")
