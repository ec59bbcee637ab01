"""Classification metrics computed with numpy alone: AUC, accuracy, sensitivity, specificity.

Binary tasks are scored at a decision threshold chosen on the validation split by Youden's J
statistic (sensitivity + specificity - 1; Youden, "Index for rating diagnostic tests",
Cancer 3, 1950), because argmax accuracy depends on a test split's class balance.
Multi-class tasks report accuracy at argmax, macro one-vs-rest AUC and per-class figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [values.size]))
    ranks = np.empty(values.size, dtype=np.float64)
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), NaN if only one class is present."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def youden_threshold(positive: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity (0.5 if undefined)."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return 0.5
    candidates = np.unique(scores)
    order = np.argsort(scores)
    sorted_scores, sorted_pos = scores[order], positive[order]
    # For threshold t: predicted positive when score >= t.
    below = np.searchsorted(sorted_scores, candidates, side="left")
    pos_below = np.concatenate(([0], np.cumsum(sorted_pos)))[below]
    neg_below = below - pos_below
    sens = 1.0 - pos_below / positive.sum()
    spec = neg_below / (~positive).sum()
    return float(candidates[int(np.argmax(sens + spec))])


def binary_metrics(
    labels: np.ndarray, probs: np.ndarray, *, positive_class: int = 1, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, AUC, sensitivity and specificity of a binary classifier.

    Args:
        labels: True class indices ``(N,)``.
        probs: Class probabilities ``(N, 2)``.
        positive_class: The class whose detection is "positive".
        threshold: Predict positive when its probability is at least this.
    """
    positive = np.asarray(labels) == positive_class
    score = probs[:, positive_class]
    predicted = score >= threshold
    return {
        "accuracy": float(np.mean(predicted == positive)),
        "auc": roc_auc(positive, score),
        "sensitivity": _ratio(np.sum(predicted & positive), np.sum(positive)),
        "specificity": _ratio(np.sum(~predicted & ~positive), np.sum(~positive)),
        "threshold": float(threshold),
    }


def multiclass_metrics(
    labels: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Argmax accuracy, macro one-vs-rest AUC and per-class metrics of a K-class classifier."""
    labels = np.asarray(labels)
    predicted = probs.argmax(axis=1)
    per_class = {}
    aucs = []
    for k, name in enumerate(class_names):
        truth, hit = labels == k, predicted == k
        auc = roc_auc(truth, probs[:, k])
        aucs.append(auc)
        per_class[name] = {
            "auc": auc,
            "sensitivity": _ratio(np.sum(hit & truth), np.sum(truth)),
            "specificity": _ratio(np.sum(~hit & ~truth), np.sum(~truth)),
            "precision": _ratio(np.sum(hit & truth), np.sum(hit)),
            "support": int(truth.sum()),
        }
    valid = [a for a in aucs if not np.isnan(a)]
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "auc": float(np.mean(valid)) if valid else float("nan"),
        "sensitivity": float(np.nanmean([c["sensitivity"] for c in per_class.values()])),
        "specificity": float(np.nanmean([c["specificity"] for c in per_class.values()])),
        "per_class": per_class,
    }


def evaluate(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: tuple[str, ...],
    *,
    positive_class: int = 1,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Metrics for a binary or multi-class classifier, picking the right family."""
    if probs.shape[1] == 2:
        return binary_metrics(
            labels,
            probs,
            positive_class=positive_class,
            threshold=0.5 if threshold is None else threshold,
        )
    return multiclass_metrics(labels, probs, class_names)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable probabilities."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ratio(num: Any, den: Any) -> float:
    return float(num) / float(den) if den else float("nan")


def decide(
    probs: np.ndarray, *, positive_class: int = 1, threshold: float | None = None
) -> np.ndarray:
    """Predicted class per row: the positive class at ``threshold`` (binary), else argmax.

    This is the one decision rule used by evaluation, export checks and diagnosis.
    """
    if probs.shape[1] == 2 and threshold is not None:
        negative = 1 - positive_class
        return np.where(probs[:, positive_class] >= threshold, positive_class, negative)
    return probs.argmax(axis=1)
