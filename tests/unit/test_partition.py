from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privadx.common.data.partition import PartitionSpec, Scheme, class_counts, partition
from privadx.common.errors import InputError


def _labels(n: int = 4708, pos: float = 0.74, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < pos).astype(np.int64)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(20, 600),
    classes=st.integers(2, 6),
    sites=st.integers(1, 12),
    alpha=st.floats(0.05, 50),
    seed=st.integers(0, 2**31),
    iid=st.booleans(),
)
def test_every_image_goes_to_exactly_one_site(n, classes, sites, alpha, seed, iid) -> None:
    labels = np.random.default_rng(seed).integers(0, classes, n)
    scheme = Scheme.IID if iid else Scheme.DIRICHLET
    spec = PartitionSpec(scheme=scheme, sites=sites, alpha=alpha, seed=seed, min_site_size=1)
    try:
        parts = partition(labels, spec)
    except InputError as exc:  # allowed only when no Dirichlet draw leaves every site an image
        assert not iid and "no Dirichlet" in str(exc)
        return
    assert len(parts) == sites
    combined = np.concatenate(parts)
    assert np.array_equal(np.sort(combined), np.arange(n))


def test_deterministic_by_seed_and_different_across_seeds() -> None:
    labels = _labels()
    spec = PartitionSpec(sites=10, alpha=0.5, seed=3)
    a, b = partition(labels, spec), partition(labels, spec)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = partition(labels, PartitionSpec(sites=10, alpha=0.5, seed=4))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between site label mix and the global mix."""
    counts = class_counts(labels, parts, 2).astype(float)
    mix = counts / counts.sum(axis=1, keepdims=True)
    overall = np.bincount(labels, minlength=2) / labels.size
    return float(np.mean(np.abs(mix - overall).sum(axis=1) / 2))


def test_smaller_alpha_means_more_label_skew() -> None:
    labels = _labels()
    skews = [
        np.mean(
            [
                _skew(labels, partition(labels, PartitionSpec(sites=10, alpha=a, seed=s)))
                for s in range(5)
            ]
        )
        for a in (0.1, 0.5, 100.0)
    ]
    assert skews[0] > skews[1] > skews[2]
    iid = partition(labels, PartitionSpec(scheme=Scheme.IID, sites=10, seed=0))
    assert _skew(labels, iid) < 0.05
    assert max(p.size for p in iid) - min(p.size for p in iid) <= 1


def test_minimum_site_size_is_respected() -> None:
    parts = partition(_labels(), PartitionSpec(sites=10, alpha=0.5, seed=0, min_site_size=50))
    assert min(p.size for p in parts) >= 50


def test_class_counts_matrix() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    counts = class_counts(labels, [np.array([0, 1]), np.array([2, 3, 4])], 2)
    assert counts.tolist() == [[1, 1], [1, 2]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sites": 0}, "at least 1"), ({"alpha": 0.0}, "positive"), ({"alpha": -1.0}, "positive")],
)
def test_invalid_specs(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        PartitionSpec(**kwargs)


def test_more_sites_than_images() -> None:
    with pytest.raises(InputError, match="cannot split 3 images across 5 sites"):
        partition(np.array([0, 1, 0]), PartitionSpec(sites=5))
