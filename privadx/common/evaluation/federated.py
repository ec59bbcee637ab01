"""Federated metrics from summed evaluation reports: the figures no single party could see.

From the summed histograms (:mod:`privadx.common.evaluation.report`):

- ROC AUC, binary or macro one-vs-rest, counting a positive and a negative in the same bin as
  a tie (half a pair). ``auc_binning_bound`` is the largest amount by which the AUC of the
  unbinned scores can differ: half the fraction of positive-negative pairs sharing a bin.
- Its 95% confidence interval by DeLong et al. (Biometrics 44, 1988) on the binned scores
  (for macro AUC, the one-vs-rest AUCs are treated as independent).
- Binary tasks: the decision threshold at the largest Youden J (Youden, Cancer 3, 1950) of the
  ROC over the bin edges, and accuracy, sensitivity and specificity there (exact counts: the
  threshold is a bin edge). Multi-class: argmax accuracy and macro sensitivity/specificity
  from the confusion matrix.
- The expected calibration error (top-label, equal-width bins) and the reliability diagram,
  and the temperature with the smallest summed NLL (temperature scaling, Guo et al. 2017)
  with the ECE at it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from privadx.common.evaluation.report import EDGES, TEMPERATURES, EvaluationReport, sum_reports

Z95 = 1.959963984540054
SUMMARY_KEYS = (
    "auc",
    "auc_ci",
    "accuracy",
    "sensitivity",
    "specificity",
    "threshold",
    "ece",
    "ece_calibrated",
    "temperature",
    "examples",
    "sites_reported",
)
"""The federated figures of ``summary.json`` (round records carry more)."""


def summary_figures(federated: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``federated`` entry of a summary from a round's full figures."""
    return {k: federated.get(k) for k in SUMMARY_KEYS} if federated else None


def sigmoid(x: float) -> float:
    """The probability of a log-odds value."""
    return 1.0 / (1.0 + math.exp(-x))


def auc_from_bins(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float, float]:
    """``(AUC, DeLong variance, binning bound)`` of binned scores; NaNs if a class is absent."""
    p, n = float(pos.sum()), float(neg.sum())
    if p == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    neg_below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))
    pos_above = np.concatenate((np.cumsum(pos[::-1])[::-1][1:], [0.0]))
    v10 = (neg_below + 0.5 * neg) / n  # per positive in bin b: share of negatives it beats
    v01 = (pos_above + 0.5 * pos) / p  # per negative in bin b: share of positives above it
    auc = float((pos * v10).sum() / p)
    s10 = float((pos * (v10 - auc) ** 2).sum() / (p - 1)) if p > 1 else float("nan")
    s01 = float((neg * (v01 - auc) ** 2).sum() / (n - 1)) if n > 1 else float("nan")
    bound = float(0.5 * (pos * neg).sum() / (p * n))
    return auc, s10 / p + s01 / n, bound


def youden_cut(pos: np.ndarray, neg: np.ndarray) -> int:
    """The bin ``j`` (1 to ``len(EDGES)``) maximising Youden's J when bins ``>= j`` are positive.

    The threshold is then ``EDGES[j - 1]`` in log-odds; the lowest such edge on ties.
    """
    p, n = pos.sum(), neg.sum()
    if p == 0 or n == 0:
        return int(np.searchsorted(EDGES, 0.0, side="left")) + 1  # probability 0.5
    tp = np.cumsum(pos[::-1])[::-1]  # tp[j]: positives in bins >= j
    fp = np.cumsum(neg[::-1])[::-1]
    j_stat = tp / p - fp / n
    cuts = np.arange(1, EDGES.size + 1)
    return int(cuts[np.argmax(j_stat[cuts])])


def _interval(auc: float, var: float) -> list[float] | None:
    if not (math.isfinite(auc) and math.isfinite(var)):
        return None
    half = Z95 * math.sqrt(max(var, 0.0))
    return [max(0.0, auc - half), min(1.0, auc + half)]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def calibration(report: EvaluationReport, t: int) -> dict[str, Any]:
    """ECE and reliability diagram at temperature index ``t``."""
    count = report.rel_count[t].astype(np.float64)
    conf, correct = report.rel_confidence[t], report.rel_correct[t].astype(np.float64)
    n = count.sum()
    ece = float(np.abs(correct - conf).sum() / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "ece": ece,
            "reliability": {
                "count": count.astype(int).tolist(),
                "confidence": np.where(count > 0, conf / count, np.nan).tolist(),
                "accuracy": np.where(count > 0, correct / count, np.nan).tolist(),
            },
        }


def temperature_index(report: EvaluationReport) -> int:
    """The grid temperature with the smallest summed NLL."""
    return int(np.argmin(report.nll))


def binary_figures(
    report: EvaluationReport, positive_class: int, threshold_logit: float | None = None
) -> dict[str, Any]:
    """AUC, CI and, at the Youden threshold (or ``threshold_logit``), the decision figures.

    ``own_threshold`` is the probability threshold these images alone would choose.
    """
    pos = report.hist[positive_class, 0, :].astype(np.float64)
    neg = report.hist[:, 0, :].sum(axis=0) - pos
    auc, var, bound = auc_from_bins(pos, neg)
    own = youden_cut(pos, neg)
    cut = own if threshold_logit is None else int(np.searchsorted(EDGES, threshold_logit)) + 1
    tp, fp = pos[cut:].sum(), neg[cut:].sum()
    p, n = pos.sum(), neg.sum()
    return {
        "auc": auc,
        "auc_ci": _interval(auc, var),
        "auc_binning_bound": bound,
        "threshold_logit": float(EDGES[cut - 1]),
        "threshold": sigmoid(float(EDGES[cut - 1])),
        "own_threshold": sigmoid(float(EDGES[own - 1])),
        "accuracy": _ratio(tp + (n - fp), p + n),
        "sensitivity": _ratio(tp, p),
        "specificity": _ratio(n - fp, n),
    }


def multiclass_figures(report: EvaluationReport) -> dict[str, Any]:
    """Macro one-vs-rest AUC with CI, argmax accuracy, macro sensitivity and specificity."""
    k = report.num_classes
    aucs, variances, bounds = [], [], []
    for c in range(k):
        pos = report.hist[c, c, :].astype(np.float64)
        neg = report.hist[:, c, :].sum(axis=0) - pos
        auc, var, bound = auc_from_bins(pos, neg)
        if math.isfinite(auc):
            aucs.append(auc)
            variances.append(var)
            bounds.append(bound)
    conf = report.confusion.astype(np.float64)
    n = conf.sum()
    hits = np.diag(conf)
    truth, predicted = conf.sum(axis=1), conf.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = hits / truth
        spec = (n - truth - predicted + hits) / (n - truth)
    macro = float(np.mean(aucs)) if aucs else float("nan")
    var = float(np.sum(variances)) / len(aucs) ** 2 if aucs else float("nan")
    return {
        "auc": macro,
        "auc_ci": _interval(macro, var),
        "auc_binning_bound": float(np.mean(bounds)) if bounds else float("nan"),
        "accuracy": float(hits.sum() / n),
        "sensitivity": float(np.nanmean(sens)) if np.any(truth > 0) else float("nan"),
        "specificity": float(np.nanmean(spec)) if np.any(n - truth > 0) else float("nan"),
        "threshold": None,
    }


def federated_metrics(
    report: EvaluationReport,
    *,
    positive_class: int,
    sites_reported: int,
    threshold_logit: float | None = None,
) -> dict[str, Any]:
    """The federated figures of a summed report (``threshold_logit``: use that cut instead).

    ``threshold`` applies to the uncalibrated probabilities, ``threshold_calibrated`` to the
    probabilities at ``temperature`` (the same decision: a binary task's log-odds are only
    divided by the temperature).
    """
    figures = (
        binary_figures(report, positive_class, threshold_logit)
        if report.num_classes == 2
        else multiclass_figures(report)
    )
    figures.pop("own_threshold", None)
    t = temperature_index(report)
    one = int(np.argmin(np.abs(TEMPERATURES - 1.0)))
    before, after = calibration(report, one), calibration(report, t)
    temperature = float(TEMPERATURES[t])
    if figures.get("threshold") is not None:
        figures["threshold_calibrated"] = sigmoid(figures["threshold_logit"] / temperature)
    return {
        **figures,
        "examples": report.examples,
        "sites_reported": sites_reported,
        "cross_entropy": report.cross_entropy / report.examples,
        "ece": before["ece"],
        "ece_calibrated": after["ece"],
        "temperature": temperature,
        "nll": float(report.nll[one] / report.examples),
        "nll_calibrated": float(report.nll[t] / report.examples),
        "reliability": before["reliability"],
        "reliability_calibrated": after["reliability"],
    }


def site_metrics(
    report: EvaluationReport, *, positive_class: int, threshold_logit: float | None
) -> dict[str, Any]:
    """One site's figures at the federated threshold, and the threshold it would choose."""
    if report.num_classes == 2:
        f = binary_figures(report, positive_class, threshold_logit)
        return {
            "examples": report.examples,
            "auc": f["auc"],
            "sensitivity": f["sensitivity"],
            "specificity": f["specificity"],
            "own_threshold": f["own_threshold"],
        }
    f = multiclass_figures(report)
    return {
        "examples": report.examples,
        "auc": f["auc"],
        "sensitivity": f["sensitivity"],
        "specificity": f["specificity"],
        "own_threshold": None,
    }


def score_reports(
    reports: dict[str, EvaluationReport], *, positive_class: int
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """``(federated figures, per-site figures)`` of the sites' reports (``None``: none).

    The one place where reports become metrics, for the gateway and the simulation alike.
    """
    if not reports:
        return None, {}
    total = sum_reports([reports[s] for s in sorted(reports)])
    federated = federated_metrics(total, positive_class=positive_class, sites_reported=len(reports))
    sites = {
        s: site_metrics(
            r, positive_class=positive_class, threshold_logit=federated.get("threshold_logit")
        )
        for s, r in sorted(reports.items())
    }
    return federated, sites
