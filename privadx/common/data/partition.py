"""Split a dataset across simulated sites: IID or Dirichlet label skew.

The Dirichlet scheme is the one of Hsu, Qi and Brown, "Measuring the Effects of Non-Identical
Data Distribution for Federated Visual Classification" (2019): for every class, the share of
its images that each site receives is drawn from Dirichlet(alpha). Small alpha gives sites
dominated by one class; large alpha approaches IID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError


class Scheme(StrEnum):
    """How images are dealt out to sites."""

    IID = "iid"
    DIRICHLET = "dirichlet"


@dataclass(frozen=True, kw_only=True)
class PartitionSpec:
    """How to partition: scheme, number of sites, concentration and seed."""

    scheme: Scheme = Scheme.DIRICHLET
    sites: int = 10
    alpha: float = 0.5
    seed: int = 0
    min_site_size: int = 10
    """Dirichlet draws are repeated until every site has at least this many images."""

    def __post_init__(self) -> None:
        if self.sites < 1:
            raise InputError(f"the number of sites must be at least 1, got {self.sites}")
        if self.scheme is Scheme.DIRICHLET and not self.alpha > 0:
            raise InputError(f"the Dirichlet alpha must be positive, got {self.alpha}")


def partition(labels: np.ndarray, spec: PartitionSpec) -> list[np.ndarray]:
    """Deal the indices of ``labels`` out to ``spec.sites`` sites.

    Every index goes to exactly one site; the result depends only on ``labels`` and ``spec``.

    Returns:
        One sorted ``int64`` index array per site.

    Raises:
        InputError: More sites than images, or no Dirichlet draw satisfies the minimum size.
    """
    labels = np.asarray(labels)
    if spec.sites > labels.size:
        raise InputError(f"cannot split {labels.size} images across {spec.sites} sites")
    rng = np.random.default_rng(spec.seed)
    if spec.scheme is Scheme.IID:
        return [np.sort(part) for part in np.array_split(rng.permutation(labels.size), spec.sites)]
    return _dirichlet(labels, spec, rng)


def _dirichlet(
    labels: np.ndarray, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    minimum = min(spec.min_site_size, labels.size // spec.sites)
    for _attempt in range(1000):
        parts: list[list[np.ndarray]] = [[] for _ in range(spec.sites)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(spec.sites, spec.alpha))
            cuts = (np.cumsum(shares)[:-1] * idx.size).astype(int)
            for site, chunk in enumerate(np.split(idx, cuts)):
                parts[site].append(chunk)
        sites = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(s.size for s in sites) >= minimum:
            return sites
    raise InputError(
        f"no Dirichlet(alpha={spec.alpha}) split gives all {spec.sites} sites at least "
        f"{minimum} images; use fewer sites or a larger alpha"
    )


def class_counts(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Matrix ``(sites, classes)`` of how many images of each class every site holds."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
