"""Evaluation reports as secure-sum inputs: exact counts, fixed-point sums, refused totals."""

from __future__ import annotations

import numpy as np
import pytest

from privadx.common.evaluation.report import ReportError, build_report, sum_reports
from privadx.common.evaluation.secure_sum import FRACTION_BITS, MODULUS_BITS, ReportEncoding


def _reports(num_classes: int, sites: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(sites):
        labels = rng.integers(0, num_classes, size=30 + 7 * i)
        logits = rng.normal(size=(labels.size, num_classes)) * 3
        logits[np.arange(labels.size), labels] += 2.0
        out.append(build_report(logits, labels, num_classes=num_classes, positive_class=0))
    return out


@pytest.mark.parametrize("num_classes", [2, 4])
def test_the_sum_of_encoded_reports_decodes_to_the_sum_of_reports(num_classes: int) -> None:
    encoding = ReportEncoding(num_classes)
    reports = _reports(num_classes, 6)
    mask = np.uint64((1 << MODULUS_BITS) - 1)
    total = np.zeros(encoding.length, np.uint64)
    for r in reports:
        x = encoding.encode(r)
        assert x.shape == (encoding.length,) and x.dtype == np.uint64
        total = (total + x) & mask
    got, want = encoding.decode(total, len(reports)), sum_reports(reports)
    for name in ("hist", "confusion", "rel_count", "rel_correct"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    bound = len(reports) * 2.0 ** -(FRACTION_BITS + 1)  # rounding per site and value
    assert np.abs(got.nll - want.nll).max() <= bound
    assert np.abs(got.rel_confidence - want.rel_confidence).max() <= bound
    assert abs(got.cross_entropy - want.cross_entropy) <= bound


def test_totals_that_are_not_reports_are_refused() -> None:
    encoding = ReportEncoding(2)
    reports = _reports(2, 3)
    total = sum(encoding.encode(r) for r in reports)
    with pytest.raises(ReportError, match="holds 3 reports, not 2"):
        encoding.decode(total, 2)
    noisy = total.copy()
    noisy[5] += np.uint64(7)  # a site added counts that its confusion matrix does not have
    with pytest.raises(ReportError, match="disagree"):
        encoding.decode(noisy, 3)
    rng = np.random.default_rng(1)  # a "report" of random numbers
    junk = total + rng.integers(0, 1 << 40, size=total.size, dtype=np.uint64)
    junk[-1] = np.uint64(3)
    with pytest.raises(ReportError):
        encoding.decode(junk, 3)
    with pytest.raises(ReportError, match="values"):
        encoding.decode(total[:-1], 3)


def test_reports_of_another_task_or_too_large_cannot_join() -> None:
    (report,) = _reports(3, 1)
    with pytest.raises(ReportError, match="3 classes"):
        ReportEncoding(2).encode(report)
    huge = build_report(
        np.array([[0.0, 1e9], [0.0, -1e9]]), np.array([0, 1]), num_classes=2, positive_class=1
    )
    with pytest.raises(ReportError, match="too large"):
        ReportEncoding(2).encode(huge)
