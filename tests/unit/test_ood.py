"""The out-of-distribution reference: embedding, federated sums, threshold, metadata, real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.photos import ordinary_photographs
from privadx.common.errors import ModelError
from privadx.common.evaluation.report import (
    EvaluationReport,
    ReportError,
    build_report,
    sum_reports,
)
from privadx.common.model_info import ModelInfo
from privadx.common.ood import (
    DISTANCE_EDGES,
    MIN_IMAGES,
    Moments,
    OodSums,
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
    q99 = np.quantile(held, 0.99)
    assert q99 <= with_cut.threshold < 1.03 * q99  # that edge, within one bin (2.7% wide)
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


def _report_with_ood(seed: int, reference: Reference | None) -> EvaluationReport:
    from edge.evaluation import SiteOod
    from privadx.common.data.arrays import LabeledImages

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    report = build_report(rng.normal(size=(40, 2)), labels, num_classes=2)
    train = LabeledImages(_images(60, seed + 100), rng.integers(0, 2, 60), ("a", "b"))
    held = LabeledImages(_images(40, seed + 200), labels, ("a", "b"))
    return replace(report, ood=SiteOod(train, held).sums(reference))


def test_reports_carry_ood_sums_that_add_up_and_are_validated() -> None:
    ref = reference_of_sites([_images(60, 100)], [])
    a, b = _report_with_ood(1, ref), _report_with_ood(2, None)
    back = EvaluationReport.from_tensors(a.to_tensors(), 2, 1)
    assert back.ood is not None and back.ood.moments.count == 60 and back.ood.hist.sum() == 40
    total = sum_reports([a, b])
    assert total.ood is not None and total.ood.moments.count == 120
    assert total.ood.hist.sum() == 40  # b's model carried no reference: no distances
    tensors = a.to_tensors()
    for name, bad, message in [
        ("ood_total", np.full(96, 99.0), "outside"),
        ("ood_outer", np.triu(np.ones((96, 96))), "symmetric"),
        ("ood_hist", np.zeros(5, np.uint32), "expected shape"),
        ("ood_count", np.array([-1], np.int64), "non-negative"),
        ("ood_hist", np.ones(DISTANCE_EDGES.size + 1, np.uint32), "more images than"),
    ]:
        with pytest.raises(ReportError, match=message):
            EvaluationReport.from_tensors({**tensors, name: bad}, 2, 1)
    partial = {k: v for k, v in tensors.items() if k != "ood_outer"}
    with pytest.raises(ReportError, match="ood_outer"):
        EvaluationReport.from_tensors(partial, 2, 1)


def test_the_secure_sum_carries_the_ood_sums() -> None:
    from privadx.common.evaluation.secure_sum import ReportEncoding

    ref = reference_of_sites([_images(60, 100)], [])
    reports = [_report_with_ood(3, ref), _report_with_ood(4, ref), build_report(
        np.zeros((5, 2)), np.array([0, 1, 0, 1, 0]), num_classes=2)]  # fmt: skip
    encoding = ReportEncoding(2, channels=1)
    total = np.sum([encoding.encode(r) for r in reports], axis=0, dtype=np.uint64)
    decoded = encoding.decode(total, 3).ood
    plain = sum_reports(reports).ood
    assert decoded is not None and plain is not None
    assert decoded.moments.count == plain.moments.count == 120
    np.testing.assert_array_equal(decoded.hist, plain.hist)
    np.testing.assert_allclose(decoded.moments.outer, plain.moments.outer, atol=3 * 2.0**-24)
    none = encoding.encode(reports[2])
    assert encoding.decode(none, 1).ood is None


def test_the_gateway_fixes_the_reference_then_sets_the_threshold() -> None:
    from gateway.ood_reference import OodReference

    train, held = [_images(60, 10), _images(80, 11)], [_images(30, 12), _images(30, 13)]
    builder = OodReference()
    assert builder.absorb(None, 1) is None and builder.reference is None
    first = [Moments.of(embed(t)) for t in train]
    hist0 = np.zeros(DISTANCE_EDGES.size + 1, np.int64)
    assert builder.absorb(OodSums(first[0] + first[1], hist0), 1) == {
        "training_images": 140, "reference": "fixed"}  # fmt: skip
    fixed = builder.reference
    assert fixed is not None and fixed.threshold is None
    hist = sum(distance_histogram(fixed.distances(embed(h))) for h in held)
    record = builder.absorb(OodSums(first[0] + first[1], hist), 2)
    want = reference_of_sites(train, held)
    assert want is not None and builder.reference is not None
    assert record == {"held_out_images": 60, "threshold": want.threshold}
    np.testing.assert_array_equal(builder.reference.mean, want.mean)
    small = OodReference()
    assert small.absorb(OodSums(Moments.of(embed(_images(5, 1))), hist0), 1) == {
        "training_images": 5, "reference": "not enough images"}  # fmt: skip
