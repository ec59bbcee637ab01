from __future__ import annotations

import numpy as np
import pytest

from privadx.common.errors import DataError
from privadx.common.preprocess import PreprocessSpec, fit_image, to_model_input


def test_normalisation_maps_0_255_to_minus1_1() -> None:
    x = to_model_input(
        np.array([0, 255], np.uint8).reshape(2, 1, 1, 1), PreprocessSpec(height=1, width=1)
    )
    assert x.dtype == np.float32 and x.ravel().tolist() == [-1.0, 1.0]


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(DataError, match="expected images of shape"):
        to_model_input(np.zeros((1, 32, 32, 1), np.uint8), PreprocessSpec())


def test_fit_image_channels_and_size() -> None:
    rgb = np.zeros((64, 48, 3), np.uint8)
    rgb[..., 0] = 255
    gray = fit_image(rgb, PreprocessSpec())
    assert gray.shape == (28, 28, 1) and int(gray[0, 0, 0]) == 76  # 0.299 * 255
    assert fit_image(np.full((28, 28), 9, np.uint8), PreprocessSpec(channels=3)).shape == (
        28,
        28,
        3,
    )
    with pytest.raises(DataError):
        fit_image(np.zeros((4, 4, 2), np.uint8), PreprocessSpec())


def test_spec_json_roundtrip_and_malformed() -> None:
    spec = PreprocessSpec(height=64, width=64, channels=3)
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    with pytest.raises(DataError):
        PreprocessSpec.from_json('{"height": 1}')
