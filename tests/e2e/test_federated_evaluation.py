"""A gateway that holds no image: task file only, federated evaluation by the sites.

The real commands as processes over a mutual-TLS Mosquitto: `privadx task init` writes the
task from the dataset's name alone, the gateway runs where no dataset exists (its data folder
is empty) with every file its Python opens recorded, and three edge agents train on
PneumoniaMNIST shards and report on their held-out images. The federated figures are then
recomputed centrally, from the exported model, on the union of the sites' held-out images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.onnx_model import OnnxClassifier
from harness.federation import split_sites
from harness.mosquitto import GATEWAY_USER, configure_tls
from models.settings import site_name
from privadx.common.data.local import load_site_npz, save_site_npz
from privadx.common.evaluation.central import expected_calibration_error
from privadx.common.evaluation.holdout import split_holdout
from privadx.common.evaluation.report import log_softmax
from privadx.common.metrics import binary_metrics, roc_auc
from privadx.common.ood import reference_of_sites
from tests.conftest import REPO, run_cli
from tests.processes import _link, start_edge, stop

pytest.importorskip("tensorflow_federated")

SITES = 3
IMAGE_SUFFIXES = (".npz", ".png", ".jpg", ".jpeg", ".dcm", ".csv")


@pytest.mark.slow
def test_gateway_without_images_reports_federated_metrics(
    tmp_path: Path, pneumonia_npz: Path
) -> None:
    names = [site_name(i) for i in range(SITES)]
    broker = configure_tls(tmp_path / "broker", names)
    broker.start()
    site_files = []
    for name, site in zip(names, split_sites(pneumonia_npz, SITES, alpha=0.5, seed=1), strict=True):
        site_files.append(tmp_path / "sites" / f"{name}.npz")
        site_files[-1].parent.mkdir(exist_ok=True)
        save_site_npz(site_files[-1], site)
    empty = tmp_path / "no-data"
    empty.mkdir()
    no_data = {"PRIVADX_DATA": str(empty)}
    task = tmp_path / "task.toml"
    made = run_cli("task", "init", "--from", "pneumoniamnist", "--out", str(task), env=no_data)
    assert made.returncode == 0, made.stderr
    out, audit = tmp_path / "run", tmp_path / "opened.txt"
    edges = [
        start_edge(broker, n, f, tmp_path / f"model-{n}")
        for n, f in zip(names, site_files, strict=True)
    ]
    gateway_args = [*_link(broker, GATEWAY_USER), "--task", str(task), "--rounds", "2"]
    gateway_args += ["--min-sites", str(SITES), "--local-epochs", "1", "--out", str(out)]
    audited = [sys.executable, str(REPO / "tests" / "open_audit.py"), str(audit), "gateway"]
    try:
        gateway = subprocess.run(
            [*audited, *gateway_args],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, **no_data, "TF_CPP_MIN_LOG_LEVEL": "2"},
            check=False,
        )
        assert gateway.returncode == 0, gateway.stderr[-3000:]
        for edge in edges:
            assert edge.wait(120) == 0
    finally:
        for edge in edges:
            stop(edge)
        broker.stop()

    # The gateway opened no image file and nothing of the sites' data.
    opened = [Path(line.split("\t")[0]) for line in audit.read_text().splitlines()]
    assert len(opened) > 10  # the audit hook saw the run
    for path in opened:
        resolved = path.resolve() if path.is_absolute() else (tmp_path / path).resolve()
        assert tmp_path / "sites" not in resolved.parents, path
        assert pneumonia_npz.parent not in resolved.parents, path
        if resolved.suffix.lower() in IMAGE_SUFFIXES:
            assert out in resolved.parents, path  # its own checkpoint and weights files only

    summary = json.loads((out / "summary.json").read_text())
    fed = summary["federated"]
    assert fed["sites_reported"] == SITES and set(summary["sites"]) == set(names)
    assert summary["figures_from"] == "federated evaluation" and summary["auc"] == fed["auc"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["evaluation"]["sites_reported"] for r in records] == [names, names]
    assert all("test" not in r for r in records)  # no public benchmark was given
    assert (out / "federated.png").stat().st_size > 10_000
    assert f"{SITES} sites reported" in gateway.stderr or "3 of 3 sites" in gateway.stderr

    # Recomputed centrally on the union of the sites' held-out images, from model.onnx.
    held = [split_holdout(load_site_npz(f, ("normal", "pneumonia")), 0.2)[1] for f in site_files]
    images = np.concatenate([h.images for h in held])
    labels = np.concatenate([h.labels for h in held])
    assert fed["examples"] == labels.size == sum(s["examples"] for s in summary["sites"].values())
    model = OnnxClassifier(out / "model.onnx")
    assert model.info.temperature == fed["temperature"]
    logits = model.logits(images)
    positive = labels == 1
    exact_auc = roc_auc(positive, logits[:, 1] - logits[:, 0])
    print(f"federated AUC {fed['auc']:.4f}, central {exact_auc:.4f}, bound {fed_bound(records)}")
    assert abs(fed["auc"] - exact_auc) <= fed_bound(records) + 1e-3
    probs, predicted = model.predict(images)  # calibrated, at the model's threshold
    assert np.allclose(probs, np.exp(log_softmax(logits / fed["temperature"])), atol=1e-6)
    at = binary_metrics(labels, np.exp(log_softmax(logits)), threshold=fed["threshold"])
    one = 1.0 / min(positive.sum(), (~positive).sum())
    for key in ("sensitivity", "specificity", "accuracy"):
        assert abs(fed[key] - at[key]) <= one, key
    assert abs(float(np.mean((predicted == 1) == positive)) - fed["accuracy"]) <= one
    t = fed["temperature"]
    assert abs(fed["ece"] - expected_calibration_error(logits, labels, 1.0)) <= 0.01
    assert abs(fed["ece_calibrated"] - expected_calibration_error(logits, labels, t)) <= 0.01
    # Temperature scaling lowers the calibration error on the held-out images.
    print(f"ECE {fed['ece']:.4f} -> {fed['ece_calibrated']:.4f} at T={fed['temperature']}")
    assert fed["ece_calibrated"] < fed["ece"]

    # The out-of-distribution reference came from the sites' sums alone, and is the one the
    # sites' images give when pooled (round 1's reports fix it, round 2's set the threshold).
    assert records[0]["ood"]["reference"] == "fixed"
    assert records[1]["ood"]["held_out_images"] == labels.size
    trained = [split_holdout(load_site_npz(f, ("normal", "pneumonia")), 0.2)[0] for f in site_files]
    pooled = reference_of_sites([t.images for t in trained], [h.images for h in held])
    ood = model.info.ood
    assert ood is not None and pooled is not None and ood.threshold is not None
    assert ood.images == pooled.images == sum(len(t) for t in trained)
    np.testing.assert_allclose(ood.mean, pooled.mean, atol=1e-6)
    assert ood.threshold / pooled.threshold == pytest.approx(1.0, abs=0.03)  # at most a bin
    data = np.load(pneumonia_npz)
    own = model.unusual(data["test_images"][..., None])[1].mean()
    breast = np.load(pneumonia_npz.with_name("breastmnist.npz"))["test_images"][..., None]
    foreign = model.unusual(breast)[1].mean()
    print(f"deployed model refuses {own:.4f} of its test images and {foreign:.4f} of BreastMNIST")
    assert own <= 0.05 and foreign >= 0.9


def fed_bound(records: list[dict]) -> float:
    return float(records[-1]["federated"]["auc_binning_bound"])
