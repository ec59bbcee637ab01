"""Augmentation levels on real images: what each does to a site's batches, by seed alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.augment import MAX_BRIGHTNESS, MAX_CONTRAST, Augmentation
from models.training import make_client_dataset
from privadx.common.data.medmnist import load_npz
from privadx.common.preprocess import PreprocessSpec, to_model_input

tf = pytest.importorskip("tensorflow")

SPEC = PreprocessSpec()


@pytest.fixture(scope="module")
def site(breast_npz: Path):
    """200 real BreastMNIST training images (ultrasound: no two halves alike)."""
    return load_npz(breast_npz).train.subset(list(range(200)))


def _images(site, level: Augmentation, seed: int) -> np.ndarray:
    batches = make_client_dataset(
        site, SPEC, batch_size=64, epochs=1, seed=seed, augmentation=level, shuffle=False
    )
    return np.concatenate([b["x"].numpy() for b in batches])


def _affine_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and largest residual of ``target ~ slope * source + intercept``."""
    a = np.stack([source.ravel(), np.ones(source.size)], axis=1).astype(np.float64)
    (slope, intercept), *_ = np.linalg.lstsq(a, target.ravel().astype(np.float64), rcond=None)
    return slope, intercept, float(np.abs(a @ [slope, intercept] - target.ravel()).max())


def test_none_leaves_the_model_input_as_it_is(site) -> None:
    assert np.array_equal(_images(site, Augmentation.NONE, 3), to_model_input(site.images, SPEC))


def test_the_shift_moves_images_by_at_most_two_pixels(site) -> None:
    plain, shifted = to_model_input(site.images, SPEC), _images(site, Augmentation.SHIFT, 3)
    assert np.array_equal(shifted, _images(site, Augmentation.SHIFT, 3))  # the seed decides
    assert not np.array_equal(shifted, _images(site, Augmentation.SHIFT, 4))
    moved = 0
    for before, after in zip(plain, shifted, strict=True):
        # the centre 24 x 24 of the shifted image is a window of the original at offset <= 2
        windows = [
            np.array_equal(after[2:26, 2:26], before[2 + dy : 26 + dy, 2 + dx : 26 + dx])
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        assert any(windows)
        moved += not windows[12]  # offset (0, 0)
    assert moved > 150  # 24 of the 25 offsets move the image


def test_strong_mirrors_and_rescales_the_shifted_image(site) -> None:
    """Each strong image is the shift's image, mirrored or not, under ``a * x + b`` with the
    contrast factor ``a`` within 1 +- MAX_CONTRAST (contrast and brightness are affine)."""
    shifted, strong = _images(site, Augmentation.SHIFT, 3), _images(site, Augmentation.STRONG, 3)
    assert np.array_equal(strong, _images(site, Augmentation.STRONG, 3))
    mirrored, slopes, offsets = 0, [], []
    for base, image in zip(shifted, strong, strict=True):
        fits = [_affine_fit(base, image), _affine_fit(base[:, ::-1], image)]
        best = min(range(2), key=lambda i: fits[i][2])
        slope, intercept, residual = fits[best]
        assert residual < 1e-4
        assert fits[1 - best][2] > 0.05  # the other orientation does not fit
        mirrored += best
        slopes.append(slope)
        # brightness: the intercept less what contrast about the image's mean adds
        offsets.append(intercept - base.mean() * (1 - slope) if best == 0 else None)
    assert 60 < mirrored < 140  # half the time: 200 draws, 5.7 sd either side
    assert (
        1 - MAX_CONTRAST - 1e-6 <= min(slopes) < 0.85
        and 1.15 < max(slopes) <= 1 + 1e-6 + MAX_CONTRAST
    )
    shifts = np.array([o for o in offsets if o is not None])
    bound = MAX_BRIGHTNESS / SPEC.std
    assert np.abs(shifts).max() <= bound + 1e-4 and np.abs(shifts).max() > bound / 2
