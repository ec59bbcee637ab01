"""Heat maps from class activation maps: where the evidence for the predicted class lies.

The exported graph outputs one map per class (models/onnx_graph.py). The heat map shown for a
prediction ``k`` is its *evidence map*: class ``k``'s map minus the mean of the other classes'
maps, so that it shows where the image pushes the decision towards ``k`` rather than where
every class responds (for a binary model, the map of the logit difference). Its positive part
is scaled to ``[0, 1]`` by its maximum; an image with no positive evidence anywhere gets an
all-zero map.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

# Anchors of the colour scale from no evidence (dark blue) to the most (dark red).
_ANCHORS = np.array(
    [[0, 0, 96], [0, 64, 255], [0, 224, 224], [255, 240, 0], [255, 64, 0], [160, 0, 0]],
    dtype=np.float64,
)


def evidence_map(maps: np.ndarray, predicted: int) -> np.ndarray:
    """The ``(h, w)`` evidence map in ``[0, 1]`` of class ``predicted`` from ``(K, h, w)``."""
    maps = np.asarray(maps, dtype=np.float64)
    others = np.delete(maps, predicted, axis=0)
    contrast = maps[predicted] - (others.mean(axis=0) if others.size else 0.0)
    positive = np.maximum(contrast, 0.0)
    top = float(positive.max())
    if not np.isfinite(top) or top <= 0.0:
        return np.zeros(positive.shape, np.float32)
    return (positive / top).astype(np.float32)


def colourise(heat: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in ``[0, 1]`` as ``(H, W, 3)`` uint8 colours of the scale."""
    position = np.clip(heat, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(position.astype(np.int64), len(_ANCHORS) - 2)
    frac = (position - low)[..., None]
    rgb = _ANCHORS[low] * (1.0 - frac) + _ANCHORS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image as ``(H, W, 3)``."""
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def panels(image: np.ndarray, heat: np.ndarray | None, size: int) -> tuple[PILImage, PILImage]:
    """The input as the model saw it and the heat-map overlay, each ``size`` pixels square.

    The input is enlarged without smoothing (its pixels stay visible); the map is
    interpolated bilinearly and blended in proportion to its value, so where there is no
    evidence the image shows through unchanged. Without a map the overlay is the input.
    """
    from PIL import Image

    base = Image.fromarray(as_rgb(image)).resize((size, size), Image.Resampling.NEAREST)
    if heat is None:
        return base, base.copy()
    smooth = Image.fromarray(np.asarray(heat, np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    value = np.clip(np.asarray(smooth, np.float64), 0.0, 1.0)
    alpha = (0.6 * value)[..., None]
    mixed = np.asarray(base, np.float64) * (1.0 - alpha) + colourise(value) * alpha
    return base, Image.fromarray(np.round(mixed).astype(np.uint8))


def figure_png(
    image: np.ndarray, heat: np.ndarray | None, lines: list[str], *, size: int = 224
) -> bytes:
    """A PNG: the input and its overlay side by side, then ``lines`` of text below them."""
    from PIL import Image, ImageDraw, ImageFont

    pad, line_height = 8, 16
    left, right = panels(image, heat, size)
    canvas = Image.new(
        "RGB", (2 * size + 3 * pad, size + 2 * pad + line_height * len(lines) + pad), "white"
    )
    canvas.paste(left, (pad, pad))
    canvas.paste(right, (2 * pad + size, pad))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, line in enumerate(lines):
        draw.text((pad, size + 2 * pad + i * line_height), line, fill="black", font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()
