"""Federated evaluation: reports summed across sites give the figures computed centrally.

The federated AUC differs from the AUC of the union's exact scores by at most the binning
bound the report states (half the share of positive-negative pairs sharing a bin); sensitivity,
specificity and accuracy at the federated threshold are exact (the threshold is a bin edge);
the ECE, the NLL and the chosen temperature are exact (same bins and grid as computed
centrally); Youden's J at the federated threshold is within the largest one-bin share of
positives plus negatives of the best J of the exact scores.
"""

from __future__ import annotations

import numpy as np
import pytest

from privadx.common.data.arrays import LabeledImages
from privadx.common.evaluation.central import expected_calibration_error
from privadx.common.evaluation.federated import federated_metrics, sigmoid, site_metrics
from privadx.common.evaluation.holdout import split_holdout
from privadx.common.evaluation.report import (
    EDGES,
    TEMPERATURES,
    EvaluationReport,
    ReportError,
    bin_index,
    build_report,
    class_log_odds,
    log_softmax,
    sum_reports,
)
from privadx.common.metrics import binary_metrics, roc_auc, softmax, youden_threshold
from privadx.common.wire import tensors


def _sites(
    k: int, sizes: list[int], seed: int, skew: float = 1.5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic logits of a classifier of some skill at sites of different label mixes."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(sizes):
        prior = rng.dirichlet(np.full(k, 2.0))
        labels = rng.choice(k, size=n, p=prior)
        logits = rng.normal(0, 1.0, size=(n, k)) * (1 + 0.3 * i)
        logits[np.arange(n), labels] += skew
        out.append((logits * 2.2, labels))  # over-confident: temperature > 1 helps
    return out


def _central_ece(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return expected_calibration_error(logits, labels, temperature)


@pytest.mark.parametrize("positive_class", [0, 1])
def test_binary_federated_equals_central_within_binning(positive_class: int) -> None:
    sites = _sites(2, [40, 300, 900, 75], seed=positive_class)
    reports = [build_report(z, y, num_classes=2, positive_class=positive_class) for z, y in sites]
    fed = federated_metrics(
        sum_reports(reports), positive_class=positive_class, sites_reported=len(sites)
    )
    logits = np.concatenate([z for z, _ in sites])
    labels = np.concatenate([y for _, y in sites])
    positive = labels == positive_class
    score = class_log_odds(logits, positive_class)
    exact_auc = roc_auc(positive, score)
    assert abs(fed["auc"] - exact_auc) <= fed["auc_binning_bound"] + 1e-12
    assert 0 < fed["auc_binning_bound"] < 0.01
    lo, hi = fed["auc_ci"]
    assert lo < fed["auc"] < hi and hi - lo < 0.1
    # At the federated threshold every decision figure is exact.
    probs = softmax(logits)
    at = binary_metrics(labels, probs, positive_class=positive_class, threshold=fed["threshold"])
    for key in ("accuracy", "sensitivity", "specificity"):
        assert fed[key] == pytest.approx(at[key], abs=1e-12)
    # Youden's J there is within one bin's share of the best J of the exact scores.
    best = youden_threshold(positive, probs[:, positive_class])
    exact = binary_metrics(labels, probs, positive_class=positive_class, threshold=best)
    pos_hist = np.bincount(bin_index(score[positive]), minlength=EDGES.size + 1)
    neg_hist = np.bincount(bin_index(score[~positive]), minlength=EDGES.size + 1)
    one_bin = float(np.max(pos_hist / positive.sum() + neg_hist / (~positive).sum()))
    j_fed = fed["sensitivity"] + fed["specificity"]
    assert exact["sensitivity"] + exact["specificity"] - j_fed <= one_bin + 1e-12
    assert j_fed <= exact["sensitivity"] + exact["specificity"] + 1e-12
    # ... and it is the best J over all bin edges, counted on the exact scores.
    j_edges = [np.mean(score[positive] >= e) + np.mean(score[~positive] < e) for e in EDGES]
    assert j_fed == pytest.approx(max(j_edges), abs=1e-12)
    # Calibration is exact: same bins, same grid.
    t = TEMPERATURES[
        int(
            np.argmin(
                [
                    -log_softmax(logits / T)[np.arange(labels.size), labels].sum()
                    for T in TEMPERATURES
                ]
            )
        )
    ]
    assert fed["temperature"] == t > 1.0
    assert fed["ece"] == pytest.approx(_central_ece(logits, labels, 1.0), abs=1e-9)
    assert fed["ece_calibrated"] == pytest.approx(_central_ece(logits, labels, t), abs=1e-9)
    assert fed["ece_calibrated"] < fed["ece"]
    # The calibrated threshold takes the same decisions on calibrated probabilities.
    calibrated = np.exp(log_softmax(logits / t))[:, positive_class]
    assert np.array_equal(
        calibrated >= fed["threshold_calibrated"], probs[:, positive_class] >= fed["threshold"]
    )
    assert fed["examples"] == labels.size
    assert fed["cross_entropy"] == pytest.approx(
        -log_softmax(logits)[np.arange(labels.size), labels].mean()
    )


def test_multiclass_federated_equals_central_within_binning() -> None:
    k = 4
    sites = _sites(k, [120, 500, 60], seed=7)
    total = sum_reports([build_report(z, y, num_classes=k) for z, y in sites])
    fed = federated_metrics(total, positive_class=1, sites_reported=3)
    logits = np.concatenate([z for z, _ in sites])
    labels = np.concatenate([y for _, y in sites])
    exact = np.mean([roc_auc(labels == c, class_log_odds(logits, c)) for c in range(k)])
    assert abs(fed["auc"] - exact) <= fed["auc_binning_bound"] + 1e-12
    predicted = logits.argmax(axis=1)
    assert fed["accuracy"] == pytest.approx(float(np.mean(predicted == labels)))
    sens = np.mean([np.mean(predicted[labels == c] == c) for c in range(k)])
    spec = np.mean([np.mean(predicted[labels != c] != c) for c in range(k)])
    assert fed["sensitivity"] == pytest.approx(sens)
    assert fed["specificity"] == pytest.approx(spec)
    assert fed["threshold"] is None
    assert fed["ece"] == pytest.approx(_central_ece(logits, labels, 1.0), abs=1e-9)
    assert np.array_equal(total.confusion.sum(axis=1), np.bincount(labels, minlength=k))


def test_site_metrics_report_the_sites_own_threshold() -> None:
    (z, y), other = _sites(2, [400, 400], seed=3)
    fed_total = build_report(z, y, num_classes=2) + build_report(*other, num_classes=2)
    fed = federated_metrics(fed_total, positive_class=1, sites_reported=2)
    site = site_metrics(
        build_report(z, y, num_classes=2), positive_class=1, threshold_logit=fed["threshold_logit"]
    )
    probs = softmax(z)
    at = binary_metrics(y, probs, threshold=fed["threshold"])
    assert site["sensitivity"] == pytest.approx(at["sensitivity"])
    assert site["examples"] == 400
    own = np.log(site["own_threshold"] / (1 - site["own_threshold"]))
    assert np.min(np.abs(EDGES - own)) < 1e-9  # a bin edge
    assert sigmoid(0.0) == 0.5


def test_report_round_trips_and_rejects_malformed() -> None:
    ((z, y),) = _sites(2, [50], seed=1)
    report = build_report(z, y, num_classes=2)
    again = EvaluationReport.from_tensors(
        tensors.from_bytes(tensors.to_bytes(report.to_tensors())), 2, 1
    )
    assert np.array_equal(again.hist, report.hist) and again.cross_entropy == report.cross_entropy

    def bad(**change: np.ndarray) -> str:
        t = {**report.to_tensors(), **change}
        with pytest.raises(ReportError) as info:
            EvaluationReport.from_tensors(t, 2, 1)
        return str(info.value)

    t = report.to_tensors()
    assert "shape" in bad(hist=t["hist"][:, :, :-1])
    assert "negative" in bad(confusion=t["confusion"].astype(np.int32) - 100)
    assert "NaN" in bad(nll=np.full_like(t["nll"], np.nan))
    inflated = t["confusion"].copy()
    inflated[0, 0] += 5
    assert "disagree" in bad(confusion=inflated)
    assert "outside" in bad(rel_confidence=t["rel_confidence"] * 3)
    assert "must hold whole counts" in bad(hist=t["hist"].astype(np.float64))
    with pytest.raises(ReportError, match="tensors"):
        EvaluationReport.from_tensors({"hist": t["hist"]}, 2, 1)
    with pytest.raises(ReportError, match="3 classes"):
        EvaluationReport.from_tensors(t, 3, 3)


def test_holdout_is_stratified_deterministic_and_disjoint() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [1] * 9 + [2] * 1)
    images = rng.integers(0, 255, size=(60, 4, 4, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(60)  # each image identifiable
    data = LabeledImages(images, labels, ("a", "b", "c"))
    train, held = split_holdout(data, 0.2)
    assert held.class_counts() == [10, 2, 0] and train.class_counts() == [40, 7, 1]
    ids = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert ids(train).isdisjoint(ids(held)) and len(ids(train) | ids(held)) == 60
    _, held2 = split_holdout(data, 0.2)
    assert np.array_equal(held.images, held2.images)
    none_train, none_held = split_holdout(data, 0.0)
    assert len(none_held) == 0 and len(none_train) == 60
