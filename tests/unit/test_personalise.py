"""A site's head refit: the loss it minimises falls, the pull holds it, the gains are counted."""

from __future__ import annotations

import numpy as np
import pytest

from models.personalise import HeadFit, fit_head, gains
from privadx.common.errors import InputError
from privadx.common.metrics import softmax


def _loss(features, labels, kernel, bias) -> float:  # type: ignore[no-untyped-def]
    probs = softmax(features @ kernel + bias)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def _site(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features where class 1 sits along the first axis at this site (unlike the global head)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    features = rng.normal(size=(200, 8)) + 2.0 * labels[:, None] * np.eye(8)[0]
    return features, labels


def test_the_refit_head_fits_the_site_better_than_the_global_head() -> None:
    features, labels = _site()
    kernel = np.zeros((8, 2), np.float32)
    kernel[1] = [-1.0, 1.0]  # the global head reads class 1 off another feature
    bias = np.zeros(2, np.float32)
    own_kernel, own_bias = fit_head(features, labels, kernel, bias, HeadFit(steps=300))
    assert own_kernel.shape == (8, 2) and own_bias.shape == (2,)
    assert own_kernel.dtype == np.float32
    before, after = (
        _loss(features, labels, kernel, bias),
        _loss(features, labels, own_kernel, own_bias),
    )
    assert after < 0.6 * before, (before, after)
    # It found the site's own axis: the first feature now separates the classes.
    assert own_kernel[0, 1] - own_kernel[0, 0] > 0.5


def test_a_strong_pull_keeps_the_global_head_and_no_images_change_nothing() -> None:
    features, labels = _site(1)
    kernel = np.full((8, 2), 0.1, np.float32)
    bias = np.array([0.2, -0.2], np.float32)
    held, held_bias = fit_head(features, labels, kernel, bias, HeadFit(pull=1e6))
    assert np.max(np.abs(held - kernel)) < 1e-3 and np.max(np.abs(held_bias - bias)) < 1e-3
    same, same_bias = fit_head(features[:0], labels[:0], kernel, bias, HeadFit())
    assert np.array_equal(same, kernel) and np.array_equal(same_bias, bias)


def test_gains_count_only_sites_with_both_figures() -> None:
    rows = [
        {"global_accuracy": 0.8, "personal_accuracy": 0.9, "global_auc": 0.9, "personal_auc": 0.95},
        {
            "global_accuracy": 0.9,
            "personal_accuracy": 0.85,
            "global_auc": None,
            "personal_auc": None,
        },
    ]
    g = gains(rows)
    assert g["mean_gain_accuracy"] == pytest.approx(0.025)
    assert (g["sites_better_accuracy"], g["sites_worse_accuracy"]) == (1, 1)
    assert g["mean_gain_auc"] == pytest.approx(0.05) and g["sites_better_auc"] == 1
    assert gains([])["mean_gain_auc"] is None


@pytest.mark.parametrize(("steps", "pull"), [(0, 1e-3), (10, -1.0), (10, float("nan"))])
def test_impossible_refits_are_refused(steps: int, pull: float) -> None:
    with pytest.raises(InputError, match="head refit"):
        HeadFit(steps=steps, pull=pull)
