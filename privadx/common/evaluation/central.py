"""The same figures computed centrally on pooled held-out images, for comparison only.

Federated evaluation never pools images; benchmarks and tests do, to show how far the
federated figures (from binned sums) are from those of the exact scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privadx.common.evaluation.report import RELIABILITY_BINS, class_log_odds, log_softmax
from privadx.common.metrics import roc_auc


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Top-label ECE of ``softmax(logits / temperature)`` in equal-width confidence bins."""
    probs = np.exp(log_softmax(np.asarray(logits, np.float64) / temperature))
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.clip((confidence * RELIABILITY_BINS).astype(np.int64), 0, RELIABILITY_BINS - 1)
    gap = sum(
        abs(float(correct[bins == b].sum()) - float(confidence[bins == b].sum()))
        for b in range(RELIABILITY_BINS)
    )
    return gap / labels.size


def central_figures(
    logits: np.ndarray, labels: np.ndarray, *, positive_class: int, temperature: float
) -> dict[str, Any]:
    """Exact AUC (binary, or macro one-vs-rest) and ECE before and after ``temperature``."""
    k = logits.shape[1]
    classes = [positive_class] if k == 2 else list(range(k))
    aucs = [roc_auc(labels == c, class_log_odds(logits, c)) for c in classes]
    valid = [a for a in aucs if np.isfinite(a)]
    return {
        "examples": int(labels.size),
        "auc": float(np.mean(valid)) if valid else float("nan"),
        "ece": expected_calibration_error(logits, labels, 1.0),
        "ece_calibrated": expected_calibration_error(logits, labels, temperature),
    }
