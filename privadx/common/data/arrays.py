"""In-memory labelled image sets: the one shape every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privadx.common.errors import DataError


@dataclass(frozen=True)
class LabeledImages:
    """Images with integer class labels.

    Attributes:
        images: ``uint8`` array of shape ``(N, H, W, C)`` with ``C`` 1 (gray) or 3 (RGB).
        labels: ``int64`` array of shape ``(N,)`` with values in ``[0, len(class_names))``.
        class_names: Human-readable name of each class index.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise DataError(f"images must have shape (N, H, W, 1|3), got {self.images.shape}")
        if self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )
        if self.labels.size and (
            self.labels.min() < 0 or self.labels.max() >= len(self.class_names)
        ):
            raise DataError(
                f"labels must lie in [0, {len(self.class_names)}), "
                f"got [{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def subset(self, indices: np.ndarray) -> LabeledImages:
        """The images at ``indices`` (a copy), with the same class names."""
        return LabeledImages(self.images[indices], self.labels[indices], self.class_names)

    def class_counts(self) -> list[int]:
        """How many images each class has."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(int).tolist()


@dataclass(frozen=True)
class SplitDataset:
    """A dataset with its official train, validation and test splits."""

    name: str
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes, shared by the three splits."""
        return self.train.class_names

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of every image."""
        _, h, w, c = self.train.images.shape
        return int(h), int(w), int(c)
