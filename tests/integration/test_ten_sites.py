"""10 edge agents x 5 rounds over a real Mosquitto (repository config) against the simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.federation import run_federation, split_sites, start_broker
from privadx.common.data.partition import PartitionSpec

pytest.importorskip("tensorflow_federated")

SITES, ROUNDS, EPOCHS = 10, 5, 1


@pytest.mark.slow
def test_ten_sites_five_rounds_match_the_simulation(tmp_path: Path, pneumonia_npz: Path) -> None:
    from models.settings import LocalTraining
    from tff_core.config import SimulationConfig
    from tff_core.simulation import run_simulation

    spec = PartitionSpec(sites=SITES, alpha=0.5, seed=0)
    sites = split_sites(pneumonia_npz, SITES, alpha=spec.alpha, seed=spec.seed)
    broker = start_broker(tmp_path / "broker", SITES)
    try:
        mqtt = run_federation(
            broker,
            tmp_path,
            sites,
            dataset=str(pneumonia_npz),
            rounds=ROUNDS,
            seed=0,
            federation="ten",
            training=LocalTraining(local_epochs=EPOCHS),
            export_onnx=False,
        )
    finally:
        broker.stop()
    sim = run_simulation(
        SimulationConfig(
            dataset=str(pneumonia_npz),
            out=tmp_path / "sim",
            partition=spec,
            rounds=ROUNDS,
            local_epochs=EPOCHS,
            seed=0,
            export_onnx=False,
        )
    )
    # The plain simulation ran with op determinism; it must not leave it on for the process (a
    # DP aggregator built later here would fail on TFF's unseeded noise).
    from tensorflow.python.framework import config

    assert not config.is_op_determinism_enabled()
    records = [json.loads(line) for line in (mqtt.out / "metrics.jsonl").read_text().splitlines()]
    assert [r["updates"] for r in records] == [SITES] * ROUNDS
    print(
        f"MQTT accuracy {mqtt.summary['accuracy']:.4f} AUC {mqtt.summary['auc']:.4f}; "
        f"simulation accuracy {sim['accuracy']:.4f} AUC {sim['auc']:.4f}"
    )
    assert abs(mqtt.summary["accuracy"] - sim["accuracy"]) <= 0.01
    assert abs(mqtt.summary["auc"] - sim["auc"]) <= 0.01
    assert mqtt.summary["auc"] > 0.9
