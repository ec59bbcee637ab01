"""The one preprocessing definition used by training, ONNX export and diagnosis.

Training feeds :func:`to_model_input` with uint8 images; export writes the
:class:`PreprocessSpec` into the ONNX metadata; diagnosis reads it back and calls the same
functions, so a site's prediction sees exactly the numbers the model was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from privadx.common.errors import DataError


@dataclass(frozen=True, kw_only=True)
class PreprocessSpec:
    """Input geometry and intensity normalisation of a model.

    ``x = (pixel / 255 - mean) / std`` per channel, images resized to ``height x width``.
    """

    height: int = 28
    width: int = 28
    channels: int = 1
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self) -> None:
        for name in ("height", "width", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1024:
                raise DataError(
                    f"preprocessing {name} must be a whole number in [1, 1024]: {value!r}"
                )
        if self.channels not in (1, 3):
            raise DataError(f"preprocessing channels must be 1 or 3, got {self.channels}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not np.isfinite(value)
            ):
                raise DataError(f"preprocessing {name} must be a finite number, got {value!r}")
        if not self.std > 0:
            raise DataError(f"preprocessing std must be positive, got {self.std!r}")

    def to_json(self) -> str:
        """Serialise for model metadata."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        """Inverse of :meth:`to_json`; raises :class:`DataError` on malformed input."""
        try:
            fields = json.loads(text)
            return cls(**{k: fields[k] for k in ("height", "width", "channels", "mean", "std")})
        except (ValueError, KeyError, TypeError, DataError) as exc:
            raise DataError(f"malformed preprocessing spec {text!r}: {exc}") from exc


def to_model_input(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Normalise a batch of uint8 images ``(N, H, W, C)`` already at the model's size.

    Returns:
        ``float32`` array of the same shape.
    """
    expected = (spec.height, spec.width, spec.channels)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise DataError(f"expected images of shape (N, {expected}), got {images.shape}")
    scaled = images.astype(np.float32) * np.float32(1.0 / 255.0)
    return (scaled - np.float32(spec.mean)) / np.float32(spec.std)


def fit_image(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Bring one uint8 image ``(H, W)`` or ``(H, W, C)`` to the model's size and channels.

    Gray images are repeated to RGB for 3-channel models and RGB images are converted to
    luminance (ITU-R 601) for 1-channel models; other sizes are resized with bilinear
    interpolation (PIL).
    """
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise DataError(f"expected a gray or RGB image, got an array of shape {image.shape}")
    image = image[..., :3] if image.shape[-1] == 4 else image
    if image.shape[-1] == 3 and spec.channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        image = np.clip(np.rint(image.astype(np.float32) @ weights), 0, 255).astype(np.uint8)
        image = image[..., np.newaxis]
    elif image.shape[-1] == 1 and spec.channels == 3:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[:2] != (spec.height, spec.width):
        image = _resize(image, spec.height, spec.width)
    return np.ascontiguousarray(image, dtype=np.uint8)


def fit_images(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """:func:`fit_image` for every image of a stack, as one ``(N, H, W, C)`` uint8 array."""
    return np.stack([fit_image(image, spec) for image in images])


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    resized = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return resized[..., np.newaxis] if channels == 1 else resized
