from __future__ import annotations

import itertools

import numpy as np
import pytest

from privadx.common.metrics import (
    average_ranks,
    binary_metrics,
    decide,
    multiclass_metrics,
    roc_auc,
    softmax,
    youden_threshold,
)


def _auc_by_pairs(pos: np.ndarray, score: np.ndarray) -> float:
    wins = 0.0
    pairs = 0
    for i, j in itertools.product(np.flatnonzero(pos), np.flatnonzero(~pos)):
        pairs += 1
        wins += 1.0 if score[i] > score[j] else 0.5 if score[i] == score[j] else 0.0
    return wins / pairs


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos = rng.random(60) < 0.4
    score = np.round(rng.random(60) + pos * 0.3, 1)  # rounding makes ties
    assert roc_auc(pos, score) == pytest.approx(_auc_by_pairs(pos, score))


def test_auc_extremes_and_undefined() -> None:
    pos = np.array([0, 0, 1, 1], bool)
    assert roc_auc(pos, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(pos, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert np.isnan(roc_auc(np.ones(3, bool), np.array([0.1, 0.2, 0.3])))


def test_average_ranks() -> None:
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_youden_threshold_separates_perfectly() -> None:
    pos = np.array([0, 0, 0, 1, 1], bool)
    score = np.array([0.1, 0.3, 0.35, 0.6, 0.9])
    t = youden_threshold(pos, score)
    assert 0.35 < t <= 0.6
    m = binary_metrics(pos.astype(int), np.stack([1 - score, score], 1), threshold=t)
    assert m["sensitivity"] == m["specificity"] == m["accuracy"] == 1.0


def test_binary_metrics_with_positive_class_zero() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m = binary_metrics(labels, probs, positive_class=0, threshold=0.5)
    assert m["sensitivity"] == 0.5  # one of the two class-0 images found
    assert m["specificity"] == 1.0
    assert m["auc"] == 1.0


def test_multiclass_metrics_per_class() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = softmax(np.array([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [0, 5, 0]]))
    m = multiclass_metrics(labels, probs, ("a", "b", "c"))
    assert m["accuracy"] == 0.75
    assert m["per_class"]["c"]["sensitivity"] == 0.5
    assert m["per_class"]["b"]["precision"] == 0.5


def test_decide_uses_threshold_for_binary_and_argmax_otherwise() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert decide(probs, threshold=0.25).tolist() == [1, 1]
    assert decide(probs, positive_class=0, threshold=0.25).tolist() == [0, 1]
    assert decide(probs).tolist() == [0, 1]
    assert decide(np.array([[0.1, 0.5, 0.4]]), threshold=0.01).tolist() == [1]


def test_softmax_rows_sum_to_one() -> None:
    p = softmax(np.array([[1000.0, 1000.0], [0.0, -1000.0]]))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0].tolist() == [0.5, 0.5]
