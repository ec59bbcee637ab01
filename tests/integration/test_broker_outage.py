"""A broker restart in the middle of a run: gateway and sites reconnect and the run finishes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from harness.federation import run_federation, split_sites, start_broker
from models.settings import LocalTraining

pytest.importorskip("tensorflow_federated")


@pytest.mark.slow
def test_run_survives_a_broker_restart(tmp_path: Path, breast_npz: Path) -> None:
    sites = split_sites(breast_npz, 2, alpha=1.0, seed=1)
    broker = start_broker(tmp_path / "broker", 2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    restarted = threading.Event()

    def restart_after_first_round() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text().count("\n") >= 1:
                broker.stop()  # all clients lose their connection
                time.sleep(3)
                broker.start()  # same port, persistent sessions kept on disk
                restarted.set()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=restart_after_first_round, daemon=True)
    watcher.start()
    try:
        result = run_federation(
            broker,
            tmp_path,
            sites,
            dataset=str(breast_npz),
            rounds=3,
            seed=0,
            federation="outage",
            training=LocalTraining(local_epochs=1),
            export_onnx=True,
        )
    finally:
        broker.stop()
    assert restarted.is_set()
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3]
    assert all(r["updates"] == 2 for r in records)
    for d in result.site_dirs:
        assert (d / "model.onnx").exists()
    log = (tmp_path / "broker" / "mosquitto.log").read_text()
    for client in ("privadx-gateway-outage", "privadx-site-site-0", "privadx-site-site-1"):
        assert log.count(f"as {client} ") >= 2, f"{client} did not reconnect"
