"""Run-to-run statistics for the benchmark scripts: every figure is a mean and a spread."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from privadx.common.figures import truncate


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for a single value).

    Raises:
        ValueError: ``values`` is empty.
    """
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no values to summarise")
    return statistics.fmean(data), statistics.stdev(data) if len(data) > 1 else 0.0


def mean_sd_text(values: Iterable[float], digits: int) -> str:
    """``"mean ± sd"``, both truncated (never rounded up) to ``digits`` decimals."""
    m, sd = mean_sd(values)
    return f"{truncate(m, digits)} ± {truncate(sd, digits)}"
