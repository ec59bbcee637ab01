"""Evaluation reports as whole numbers, so they can join a secure sum and come out exact.

Under secure aggregation a site's report must not reach the gateway on its own: it goes into
a masked sum (:mod:`privadx.common.secagg.protocol`) like a model update, and the gateway
learns only the total over the sites that took part. Masks cancel modulo ``2^MODULUS_BITS``,
so every coordinate must be a non-negative integer and no sum may wrap:

- counts (histograms, confusion matrix, reliability counts and hits, the out-of-distribution
  image count and distance histogram) go as they are;
- summed losses, summed confidences and the embedding moments go in fixed point,
  ``round(x * 2^FRACTION_BITS)`` (an error below ``2^-(FRACTION_BITS + 1)`` per site and
  value, 3e-8); a report without out-of-distribution sums contributes zeros there;
- one last coordinate is 1: the total says how many sites' reports it holds.

Each coordinate of one site's input is below ``2^COORDINATE_BITS`` (a site whose sums are
larger cannot join) and at most ``MAX_SITES`` inputs are summed, so the total stays below
``2^MODULUS_BITS``. A total that does not decode into a consistent report (say, a site sent
numbers that are not a report) is refused as a whole: the secure sum cannot say whose it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privadx.common.evaluation.report import (
    BINS,
    RELIABILITY_BINS,
    TEMPERATURES,
    EvaluationReport,
    ReportError,
)
from privadx.common.ood import DISTANCE_EDGES, Moments, OodError, OodSums, dimension

MODULUS_BITS = 62
"""The masks and sums live modulo 2^62 (uint64 on the wire, every intermediate exact)."""
MAX_SITES = 1 << 10
COORDINATE_BITS = MODULUS_BITS - 10
FRACTION_BITS = 24
_SCALE = float(1 << FRACTION_BITS)


@dataclass(frozen=True)
class ReportEncoding:
    """The integer form of an :class:`EvaluationReport` for a task of ``num_classes``."""

    num_classes: int
    channels: int = 1
    """Of the task's images: sizes the out-of-distribution moments."""

    @property
    def scored(self) -> int:
        """Score rows of the histogram: the positive class (binary) or every class."""
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def modulus_bits(self) -> int:
        """k: inputs and sums are numbers modulo 2^k."""
        return MODULUS_BITS

    @property
    def wire_dtype(self) -> np.dtype:
        """The masked input's type on the wire."""
        return np.dtype(np.uint64)

    def _sizes(self) -> list[tuple[str, tuple[int, ...]]]:
        k, g, m = self.num_classes, TEMPERATURES.size, RELIABILITY_BINS
        d = dimension(self.channels)
        return [
            ("hist", (k, self.scored, BINS)),
            ("confusion", (k, k)),
            ("rel_count", (g, m)),
            ("rel_correct", (g, m)),
            ("ood_count", (1,)),
            ("ood_hist", (DISTANCE_EDGES.size + 1,)),
            ("cross_entropy", (1,)),
            ("nll", (g,)),
            ("rel_confidence", (g, m)),
            ("ood_total", (d,)),
            ("ood_outer", (d, d)),
        ]

    @property
    def length(self) -> int:
        """Coordinates of one site's input (the report and the site count)."""
        return sum(int(np.prod(shape)) for _, shape in self._sizes()) + 1

    def encode(self, report: EvaluationReport) -> np.ndarray:
        """One site's input to the secure sum (uint64).

        Raises:
            ReportError: The report is of another task, or its sums are too large to join.
        """
        if report.num_classes != self.num_classes or report.hist.shape[1] != self.scored:
            raise ReportError(
                f"report of {report.num_classes} classes for a task of {self.num_classes}"
            )
        ood = report.ood if report.ood is not None else OodSums.empty(self.channels)
        if ood.moments.total.size != dimension(self.channels):
            raise ReportError(f"out-of-distribution sums not of {self.channels}-channel images")
        parts = [
            np.asarray(report.hist, np.float64).ravel(),
            np.asarray(report.confusion, np.float64).ravel(),
            np.asarray(report.rel_count, np.float64).ravel(),
            np.asarray(report.rel_correct, np.float64).ravel(),
            np.array([ood.moments.count], np.float64),
            np.asarray(ood.hist, np.float64),
            np.round(np.array([report.cross_entropy]) * _SCALE),
            np.round(np.asarray(report.nll, np.float64) * _SCALE),
            np.round(np.asarray(report.rel_confidence, np.float64).ravel() * _SCALE),
            np.round(ood.moments.total * _SCALE),
            np.round(ood.moments.outer.ravel() * _SCALE),
            np.ones(1),
        ]
        values = np.concatenate(parts)
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ReportError("a report for the secure sum needs finite, non-negative sums")
        if values.max() >= 2.0**COORDINATE_BITS:
            raise ReportError(
                f"the report's sums are too large for the secure sum (limit "
                f"{2.0 ** (COORDINATE_BITS - FRACTION_BITS):.3g} for losses)"
            )
        return values.astype(np.uint64)

    def decode(self, total: np.ndarray, sites: int) -> EvaluationReport:
        """The summed report of ``sites`` sites' inputs.

        Raises:
            ReportError: The total is not the sum of ``sites`` valid reports of this task.
        """
        total = np.asarray(total, np.uint64)
        if total.shape != (self.length,):
            raise ReportError(f"summed report has {total.size} values, expected {self.length}")
        if int(total[-1]) != sites:
            raise ReportError(f"the sum holds {int(total[-1])} reports, not {sites}")
        if not 1 <= sites <= MAX_SITES:
            raise ReportError(f"{sites} reports; a secure sum holds 1 to {MAX_SITES}")
        out: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self._sizes():
            size = int(np.prod(shape))
            out[name] = total[offset : offset + size].reshape(shape)
            offset += size
        report = EvaluationReport(
            hist=out["hist"].astype(np.int64),
            confusion=out["confusion"].astype(np.int64),
            cross_entropy=float(out["cross_entropy"][0]) / _SCALE,
            nll=out["nll"].astype(np.float64) / _SCALE,
            rel_count=out["rel_count"].astype(np.int64),
            rel_confidence=out["rel_confidence"].astype(np.float64) / _SCALE,
            rel_correct=out["rel_correct"].astype(np.int64),
            ood=_ood(out),
        )
        report.check()
        return report


def _ood(out: dict[str, np.ndarray]) -> OodSums | None:
    """The decoded out-of-distribution sums (``None`` when no site sent any)."""
    count, hist = int(out["ood_count"][0]), out["ood_hist"].astype(np.int64)
    if count == 0 and not hist.any():
        return None
    moments = Moments(
        count,
        out["ood_total"].astype(np.float64) / _SCALE,
        out["ood_outer"].astype(np.float64) / _SCALE,
    )
    sums = OodSums(moments, hist)
    try:
        sums.check()
    except OodError as exc:
        raise ReportError(str(exc)) from None
    return sums
