"""Federated evaluation of a real multi-class model on real images equals pooled evaluation.

A three-class task built from the data at hand (BreastMNIST images; the class is the official
label plus whether the image is brighter than the median, so three labels occur: the figures
must hold for any labels), a real CNN trained on part of it, and three sites holding out the
rest. Their reports go through the wire format and the gateway's collector; the federated
figures are then compared with the same images pooled and scored exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.evaluation import FederatedEvaluation
from models.evaluate import predict_logits
from models.settings import LocalTraining
from models.training import train_locally
from privadx.common.data.arrays import LabeledImages
from privadx.common.data.medmnist import load_npz
from privadx.common.evaluation.central import central_figures
from privadx.common.evaluation.holdout import split_holdout
from privadx.common.evaluation.report import SCHEME, build_report
from privadx.common.preprocess import PreprocessSpec
from privadx.common.wire.messages import evaluation_envelope

pytest.importorskip("tensorflow")

NAMES = ("malignant", "benign dark", "benign bright")


def _three_classes(npz: Path) -> LabeledImages:
    train = load_npz(npz).train
    bright = train.images.reshape(len(train), -1).mean(axis=1) > np.median(train.images)
    labels = np.where(train.labels == 0, 0, np.where(bright, 2, 1))
    return LabeledImages(train.images, labels.astype(np.int64), NAMES)


@pytest.mark.slow
def test_multiclass_federated_figures_equal_the_pooled_ones(breast_npz: Path) -> None:
    from models.architectures import build_model
    from models.spec import ModelSpec

    data = _three_classes(breast_npz)
    assert min(data.class_counts()) > 50  # every class is well represented
    pre = PreprocessSpec()
    model = build_model(ModelSpec(num_classes=3, dropout=0.0), seed=0)
    sites = [data.subset(np.arange(i, len(data), 3)) for i in range(3)]
    parts = [split_holdout(s, 0.3) for s in sites]
    for train, _ in parts:
        train_locally(model, train, pre, LocalTraining(local_epochs=3), seed=0)
    collector = FederatedEvaluation(
        run="mc", num_classes=3, positive_class=1, timeout=60.0, verify=None
    )
    collector.start(1, "sha", {"site-0", "site-1", "site-2"})
    logits, labels = [], []
    for i, (_, held) in enumerate(parts):
        z = predict_logits(model, held.images, pre)
        report = build_report(z, held.labels, num_classes=3)
        env = evaluation_envelope(
            run="mc", round_num=1, site=f"site-{i}", report=report.to_tensors(),
            meta={"base_model": "sha", "scheme": SCHEME, "examples": len(held)},
        )  # fmt: skip
        assert collector.offer(env, f"site-{i}") is None
        logits.append(z)
        labels.append(held.labels)
    fed = collector.close(1)["federated"]
    z, y = np.concatenate(logits), np.concatenate(labels)
    pooled = central_figures(z, y, positive_class=1, temperature=fed["temperature"])
    print(f"macro AUC federated {fed['auc']:.5f}, pooled {pooled['auc']:.5f}")
    assert 0.5 < fed["auc"] < 1.0  # a real, imperfect model
    assert abs(fed["auc"] - pooled["auc"]) <= fed["auc_binning_bound"] + 1e-12
    predicted = z.argmax(axis=1)
    assert fed["accuracy"] == pytest.approx(float(np.mean(predicted == y)))
    sens = np.mean([np.mean(predicted[y == c] == c) for c in range(3)])
    spec = np.mean([np.mean(predicted[y != c] != c) for c in range(3)])
    assert fed["sensitivity"] == pytest.approx(sens) and fed["specificity"] == pytest.approx(spec)
    assert fed["ece"] == pytest.approx(pooled["ece"], abs=1e-9)
    assert fed["ece_calibrated"] == pytest.approx(pooled["ece_calibrated"], abs=1e-9)
    assert fed["examples"] == y.size and fed["sites_reported"] == 3
