"""Aggregation rules that bound what one broken or malicious site can do to the global model.

- ``mean``: FedAvg's example-weighted mean of client deltas (``tff.aggregators.MeanFactory``).
- ``norm-bound`` (the default): TFF's ``tff.learning.robust_aggregator`` with one change:
  adaptive zeroing of updates whose norm is far above the norms seen (estimated quantile 0.98,
  x2 + 1), adaptive clipping to the estimated 0.8 quantile of the norms (Andrew et al.,
  "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021), then the weighted
  mean. A scaled-up update is zeroed or clipped to an ordinary norm, and a zeroed update also
  loses its weight (:mod:`tff_core.zeroing`; TFF's zeroing keeps it).
- ``median``: coordinate-wise median of the deltas (Yin et al., "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", ICML 2018). Unweighted.
- ``trimmed-mean``: coordinate-wise mean after dropping the ``beta`` fraction of largest and of
  smallest values (same paper). Unweighted.

TFF has no median or trimmed mean (see shared NOTES), so those two are numpy here, applied by
the gateway before the TFF server optimizer. They need every site's update in the clear, so
they are not available with secure aggregation; the TFF rules are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privadx.common.compat import StrEnum
from privadx.common.deps import require
from privadx.common.errors import InputError

DEFAULT_TRIM = 0.1


class AggregationRule(StrEnum):
    """How client deltas are combined."""

    MEAN = "mean"
    NORM_BOUND = "norm-bound"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed-mean"

    @property
    def in_tff(self) -> bool:
        """Whether TFF defines this rule (usable in the simulation and with secure sums)."""
        return self in (AggregationRule.MEAN, AggregationRule.NORM_BOUND)


def tff_model_aggregator(rule: AggregationRule) -> Any:
    """The ``tff.aggregators`` factory of a TFF-defined rule."""
    tff = require("tensorflow_federated")
    if rule is AggregationRule.MEAN:
        return tff.aggregators.MeanFactory()
    if rule is AggregationRule.NORM_BOUND:
        from tff_core.zeroing import robust_weighted_mean

        return robust_weighted_mean()
    raise InputError(f"aggregation rule {rule} is not a TFF aggregator")


def coordinate_median(deltas: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Coordinate-wise median of per-site deltas (each a list of tensors)."""
    if not deltas:
        raise ValueError("cannot aggregate zero updates")
    return [
        np.median(np.stack(parts), axis=0).astype(np.float32) for parts in zip(*deltas, strict=True)
    ]


def trimmed_mean(deltas: list[list[np.ndarray]], beta: float = DEFAULT_TRIM) -> list[np.ndarray]:
    """Coordinate-wise mean after dropping ``floor(beta * n)`` largest and smallest values.

    With fewer than three sites nothing can be trimmed and this is the plain mean.
    """
    if not deltas:
        raise ValueError("cannot aggregate zero updates")
    if not 0 <= beta < 0.5:
        raise InputError(f"trim fraction must lie in [0, 0.5), got {beta}")
    n = len(deltas)
    k = int(np.floor(beta * n))
    result = []
    for parts in zip(*deltas, strict=True):
        stacked = np.sort(np.stack(parts), axis=0)
        result.append(stacked[k : n - k].mean(axis=0, dtype=np.float64).astype(np.float32))
    return result
