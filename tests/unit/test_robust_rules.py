"""Coordinate-wise median and trimmed mean: the math, and that one outlier cannot move them."""

from __future__ import annotations

import numpy as np
import pytest

from privadx.common.errors import InputError
from tff_core.robust import coordinate_median, trimmed_mean


def _sites(n: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
            for _ in range(n)]  # fmt: skip


def test_median_and_trimmed_mean_match_their_definitions() -> None:
    sites = _sites(10)
    stacked = [np.stack([s[i] for s in sites]) for i in range(2)]
    for got, ref in zip(coordinate_median(sites), stacked, strict=True):
        np.testing.assert_allclose(got, np.median(ref, axis=0), rtol=1e-6)
    for got, ref in zip(trimmed_mean(sites, 0.2), stacked, strict=True):
        expected = np.sort(ref, axis=0)[2:8].mean(axis=0)  # 2 dropped at each end of 10
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    for got, ref in zip(trimmed_mean(sites, 0.0), stacked, strict=True):
        np.testing.assert_allclose(got, ref.mean(axis=0), rtol=1e-5)


def test_one_huge_update_does_not_move_robust_rules() -> None:
    honest = _sites(9)
    attacked = [*honest, [w * 1e4 for w in honest[0]]]
    mean_shift = np.abs(np.mean([s[0] for s in attacked], axis=0)).max()
    for rule in (coordinate_median, lambda d: trimmed_mean(d, 0.1)):
        result = rule(attacked)[0]
        honest_range = np.ptp(np.stack([s[0] for s in honest]), axis=0)
        assert np.all(np.abs(result) <= np.abs(np.stack([s[0] for s in honest])).max(axis=0))
        assert np.abs(result).max() < mean_shift / 100
        assert honest_range.max() > 0


def test_bad_trim_and_empty_input() -> None:
    with pytest.raises(InputError):
        trimmed_mean(_sites(3), 0.5)
    with pytest.raises(ValueError):
        coordinate_median([])
