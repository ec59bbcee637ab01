"""Ordinary photographs to feed a medical model: scikit-image's sample images, and crops.

They are what a clinician's folder should never hold and a model must not classify with
confidence. Each whole picture and its four quarter crops (each itself an ordinary
photograph) are brought to the model's input size with the diagnosis path's own
preprocessing. scikit-image is a development dependency; its sample images ship inside it.
"""

from __future__ import annotations

import numpy as np

from privadx.common.preprocess import PreprocessSpec, fit_image

SAMPLES = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip
"""The bundled 8-bit sample images (the binary and synthetic ones left out)."""


def ordinary_photographs(spec: PreprocessSpec) -> tuple[np.ndarray, list[str]]:
    """``(images (N, H, W, C) uint8 at the model's size, names)``: each sample and its quarters."""
    import skimage.data

    images, names = [], []
    for name in SAMPLES:
        picture = np.asarray(getattr(skimage.data, name)())
        picture = picture[..., :3] if picture.ndim == 3 else picture
        h, w = picture.shape[:2]
        crops = {
            "": picture,
            "-top-left": picture[: h // 2, : w // 2],
            "-top-right": picture[: h // 2, w // 2 :],
            "-bottom-left": picture[h // 2 :, : w // 2],
            "-bottom-right": picture[h // 2 :, w // 2 :],
        }
        for suffix, crop in crops.items():
            images.append(fit_image(np.ascontiguousarray(crop, dtype=np.uint8), spec))
            names.append(name + suffix)
    return np.stack(images), names
