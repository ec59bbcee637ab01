"""The out-of-distribution reference: embedding, federated sums, threshold, metadata, real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.photos import ordinary_photographs
from privadx.common.errors import ModelError
from privadx.common.model_info import ModelInfo
from privadx.common.ood import (
    DISTANCE_EDGES,
    MIN_IMAGES,
    Moments,
    Reference,
    dimension,
    distance_histogram,
    embed,
    reference_of_sites,
)
from privadx.common.preprocess import PreprocessSpec
from privadx.common.task import task_from_dataset


def _images(n: int, seed: int, shape: tuple[int, int, int] = (28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_embedding_of_a_flat_image_is_its_level_everywhere() -> None:
    image = np.full((1, 28, 28, 1), 200, np.uint8)
    e = embed(image)[0]
    assert e.shape == (dimension(1),) == (96,)
    np.testing.assert_allclose(e[:64], 200 / 255)  # layout: the level in every cell
    assert e[64 + 200 * 16 // 256] == 1.0 and e[64:80].sum() == 1.0  # one intensity bin
    assert not e[80:].any()  # no texture
    assert embed(_images(3, 0, (64, 48, 3))).shape == (3, dimension(3)) == (3, 256)
    with pytest.raises(ModelError, match="smaller than the 8x8"):
        embed(np.zeros((1, 4, 4, 1), np.uint8))


def test_sites_moments_add_up_to_the_pooled_reference() -> None:
    a, b = _images(50, 1), _images(70, 2)
    ref = Reference.from_moments(Moments.of(embed(a)) + Moments.of(embed(b)), shrink=0.05)
    pooled = np.concatenate([embed(a), embed(b)])
    np.testing.assert_allclose(ref.mean, pooled.mean(axis=0), atol=1e-12)
    cov = np.cov(pooled, rowvar=False)
    d = cov.shape[0]
    shrunk = 0.95 * cov + 0.05 * np.trace(cov) / d * np.eye(d)
    z = pooled[:5] - pooled.mean(axis=0)
    want = np.sqrt(np.einsum("ij,jk,ik->i", z, np.linalg.inv(shrunk), z))
    np.testing.assert_allclose(ref.distances(pooled[:5]), want, rtol=1e-8)
    assert ref.images == 120


def test_threshold_is_the_held_out_quantile() -> None:
    ref = Reference.from_moments(Moments.of(embed(_images(200, 3))))
    held = ref.distances(embed(_images(1000, 4)))
    with_cut = ref.with_threshold(distance_histogram(held))
    assert with_cut.held_out == 1000 and with_cut.threshold is not None
    beyond = float(np.mean(held > with_cut.threshold))
    assert beyond <= 0.01  # the upper edge of the quantile's bin: at most 1% beyond
    assert beyond >= 0.01 - 0.03  # and not far inside (bins are 2.7% wide)
    assert with_cut.threshold / np.quantile(held, 0.99) < 1.03
    _, flagged = with_cut.flags(embed(_images(10, 5)))
    assert flagged.dtype == bool
    with pytest.raises(ModelError, match="distance histogram"):
        ref.with_threshold(np.zeros(DISTANCE_EDGES.size + 1))


def test_reference_round_trips_through_model_metadata() -> None:
    ref = reference_of_sites([_images(40, 6), _images(40, 7)], [_images(30, 8)])
    assert ref is not None and ref.images == 80 and ref.held_out == 30
    info = replace(task_from_dataset("pneumoniamnist").model_info(), ood=ref)
    props = info.to_onnx_props()
    back = ModelInfo.from_onnx_props(props, "m.onnx").ood
    assert back is not None and back.threshold == ref.threshold
    x = embed(_images(20, 9))
    np.testing.assert_allclose(back.distances(x), ref.distances(x), rtol=1e-4)
    assert ModelInfo.from_meta(json.loads(json.dumps(info.to_meta()))).ood is not None
    assert task_from_dataset("pneumoniamnist").model_info().to_meta()["ood"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheme": "other/v9"}, "ood scheme"),
        ({"mean": "AAAA"}, "ood.mean holds 3 bytes, not whole float32 values"),
        ({"mean": "AAAAAA=="}, "ood.mean has 1 values; embeddings have 96 .gray. or 256 .RGB."),
        ({"precision": "AAAAAA=="}, r"ood.precision has 1 values, expected 96\^2"),
        ({"precision": "not base64!"}, "ood.precision is not base64"),
        ({"threshold": -1}, "ood.threshold"),
        ({"images": "80"}, "whole numbers"),
    ],
)
def test_a_bad_reference_is_refused_naming_the_field(change: dict, message: str) -> None:
    ref = reference_of_sites([_images(40, 6)], [_images(30, 8)])
    assert ref is not None
    with pytest.raises(ModelError, match=message):
        Reference.from_dict({**ref.to_dict(), **change})
    nan = ref.to_dict() | {
        "mean": Reference(np.full(96, np.nan), ref.precision, 1).to_dict()["mean"]
    }
    with pytest.raises(ModelError, match="NaN"):
        Reference.from_dict(nan)


def test_small_sites_describe_nothing() -> None:
    assert reference_of_sites([_images(MIN_IMAGES - 1, 1)], [_images(30, 2)]) is None
    ref = reference_of_sites([_images(MIN_IMAGES - 1, 1), _images(MIN_IMAGES, 2)], [])
    assert ref is not None and ref.images == MIN_IMAGES and ref.threshold is None


def test_on_real_images_the_pneumonia_reference_knows_its_own(
    pneumonia_npz: Path, breast_npz: Path
) -> None:
    """The issue's targets, on the official splits (scripts/bench_ood.py measures per seed)."""
    pn, br = np.load(pneumonia_npz), np.load(breast_npz)
    train = pn["train_images"][..., None]
    sites = np.array_split(train, 5)
    held = [s[: len(s) // 5] for s in sites]
    ref = reference_of_sites([s[len(s) // 5 :] for s in sites], held)
    assert ref is not None
    rate = {
        "pneumonia test": ref.flags(embed(pn["test_images"][..., None]))[1].mean(),
        "breast": ref.flags(embed(br["test_images"][..., None]))[1].mean(),
        "photographs": ref.flags(embed(ordinary_photographs(PreprocessSpec())[0]))[1].mean(),
    }
    print(rate)
    assert rate["pneumonia test"] <= 0.05
    assert rate["breast"] >= 0.90 and rate["photographs"] >= 0.90
