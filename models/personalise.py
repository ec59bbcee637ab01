"""Personalisation: a site refits the global model's classifier head to its own images.

The global model's features (the output of its global average pooling) stay as federated
training left them; only the final dense layer is refit, on the site's training images, by
full-batch gradient descent on the cross-entropy, starting from the global head and pulled
toward it by an L2 penalty (so a small site moves little). The step is ``1 / L``, where ``L``
bounds the curvature of the penalised loss (the softmax cross-entropy's Hessian in the
logits is at most 1/2), so the descent converges without a tuned learning rate. The personal
head is then scored against the global one on the site's held-out images, which neither
federated training nor the refit saw: what a site would gain from its own head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from privadx.common.data.arrays import LabeledImages
from privadx.common.deps import require
from privadx.common.errors import InputError
from privadx.common.metrics import evaluate, softmax
from privadx.common.preprocess import PreprocessSpec, to_model_input

if TYPE_CHECKING:
    import tensorflow as tf

FEATURES_LAYER = "gap"
"""The layer whose output the head reads (both architectures pool globally before it)."""


@dataclass(frozen=True, kw_only=True)
class HeadFit:
    """How a site refits the head."""

    steps: int = 200
    """Full-batch gradient steps."""
    pull: float = 1e-3
    """Strength of the L2 penalty toward the global head."""

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 100_000:
            raise InputError(f"head refit steps must lie in [1, 100000], got {self.steps}")
        if not 0.0 <= self.pull < float("inf"):
            raise InputError(f"head refit pull must be finite and >= 0, got {self.pull}")


def head_features(model: tf.keras.Model, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The features ``model``'s head reads for uint8 ``images``, float64 ``(N, F)``."""
    tf = require("tensorflow")
    extractor = tf.keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
    batches = [
        np.asarray(extractor(to_model_input(images[i : i + 256], spec), training=False))
        for i in range(0, len(images), 256)
    ]
    return np.concatenate(batches).astype(np.float64) if batches else np.zeros((0, 0))


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    fit: HeadFit,
) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(kernel (F, K), bias (K,))`` refit to ``features`` and integer ``labels``."""
    n = len(labels)
    if n == 0:
        return kernel.copy(), bias.copy()
    x = np.hstack([features, np.ones((n, 1))])  # the bias as a last feature
    start = np.vstack([kernel, bias[None, :]]).astype(np.float64)
    onehot = np.eye(kernel.shape[1])[labels]
    curvature = 0.5 * float(np.linalg.eigvalsh(x.T @ x / n)[-1]) + fit.pull
    step = 1.0 / curvature
    w = start.copy()
    for _ in range(fit.steps):
        grad = x.T @ (softmax(x @ w) - onehot) / n + fit.pull * (w - start)
        w -= step * grad
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


def personalise(
    model: tf.keras.Model,
    sites: list[LabeledImages],
    held_out: list[LabeledImages],
    spec: PreprocessSpec,
    *,
    class_names: tuple[str, ...],
    positive_class: int,
    fit: HeadFit,
) -> dict[str, Any]:
    """Each site's held-out figures with the global head and with its own refit head.

    Accuracy is at the argmax (0.5 for two classes) for both heads, so it compares the heads
    and not two thresholds; AUC is ``None`` where a site holds out one class only.
    """
    from models.spec import OUTPUT_NAME

    kernel, bias = (np.asarray(w) for w in model.get_layer(OUTPUT_NAME).get_weights())
    rows = []
    for index, (train, held) in enumerate(zip(sites, held_out, strict=True)):
        if len(held) == 0:
            continue
        own_kernel, own_bias = fit_head(
            head_features(model, train.images, spec), train.labels, kernel, bias, fit
        )
        held_features = head_features(model, held.images, spec)
        row: dict[str, Any] = {
            "site": index,
            "train_examples": len(train),
            "held_out_examples": len(held),
        }
        for name, (k, b) in (("global", (kernel, bias)), ("personal", (own_kernel, own_bias))):
            probs = softmax(held_features @ k.astype(np.float64) + b)
            metrics = evaluate(held.labels, probs, class_names, positive_class=positive_class)
            auc = metrics["auc"]
            row[f"{name}_accuracy"] = metrics["accuracy"]
            row[f"{name}_auc"] = None if np.isnan(auc) else auc
        rows.append(row)
    return {"fit": asdict(fit), "sites": rows, **gains(rows)}


def gains(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per-site gain of the personal head and how many sites it helped or hurt."""
    out: dict[str, Any] = {}
    for metric in ("accuracy", "auc"):
        deltas = [
            r[f"personal_{metric}"] - r[f"global_{metric}"]
            for r in rows
            if r[f"personal_{metric}"] is not None and r[f"global_{metric}"] is not None
        ]
        out[f"mean_gain_{metric}"] = float(np.mean(deltas)) if deltas else None
        out[f"sites_better_{metric}"] = sum(d > 0 for d in deltas)
        out[f"sites_worse_{metric}"] = sum(d < 0 for d in deltas)
    return out
