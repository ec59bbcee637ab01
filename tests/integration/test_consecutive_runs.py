"""The edge agent is a service: the same agent processes serve one gateway run after another.

Two gateway runs with different run ids, one after the other, on one broker with the same two
agents (not restarted, not in ``once`` mode): both runs complete with both sites, the first
run's model stays in the site's folder and diagnoses until the second run's replaces it,
and the agents are still serving afterwards. One of the agents runs in low-memory mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.agent import EdgeAgent
from edge.diagnose import diagnose
from edge.onnx_model import OnnxClassifier
from gateway.service import Gateway
from harness.federation import (
    edge_config,
    gateway_config,
    save_sites,
    split_sites,
    start_broker,
    task_for,
)
from harness.mosquitto import Mosquitto
from models.settings import LocalTraining

pytest.importorskip("tensorflow_federated")


@pytest.mark.slow
def test_the_same_agents_serve_two_consecutive_runs(tmp_path: Path, breast_npz: Path) -> None:
    sites = split_sites(breast_npz, 2, alpha=1.0, seed=4)
    broker = start_broker(tmp_path / "broker", 2)
    names = save_sites(tmp_path, sites)
    # site-1 trains and scores in a child process each round (--low-memory).
    agents = [
        EdgeAgent(replace(edge_config(broker, tmp_path, n, "service", once=False,
                                      eval_fraction=0.2), low_memory=(i == 1)))
        for i, n in enumerate(names)
    ]  # fmt: skip
    threads = [threading.Thread(target=a.run, kwargs={"max_seconds": 1200}, daemon=True)
               for a in agents]  # fmt: skip
    for t in threads:
        t.start()
    common: dict[str, Any] = {"federation": "service", "rounds": 1, "seed": 0,
              "training": LocalTraining(local_epochs=1), "dataset": str(breast_npz)}  # fmt: skip
    onnx = [tmp_path / f"model-{n}" / "model.onnx" for n in names]
    try:
        first = _run(broker, tmp_path / "run-a", "run-a", **common)
        _wait_for(lambda: all(p.exists() for p in onnx))
        a_bytes = [p.read_bytes() for p in onnx]
        a_run = OnnxClassifier(onnx[0]).info.provenance.get("run")
        assert a_run == "run-a"
        second = _run(broker, tmp_path / "run-b", "run-b", **common)
        _wait_for(lambda: all(p.read_bytes() != b for p, b in zip(onnx, a_bytes, strict=True)))
        assert all(t.is_alive() for t in threads)  # served both runs, still serving
    finally:
        for a in agents:
            a.stop()
        for t in threads:
            t.join(60)
        broker.stop()
    assert not any(t.is_alive() for t in threads)
    for summary, run in ((first, "run-a"), (second, "run-b")):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        (record,) = [json.loads(x) for x in lines]
        assert record["updates"] == 2 and summary["federated"]["sites_reported"] == 2
    model = OnnxClassifier(onnx[0])
    assert model.info.provenance.get("run") == "run-b"
    images = tmp_path / "images.npz"
    np.savez(images, images=sites[0].images[:4])
    assert all(r.ok for r in diagnose(model, [images]))


def _run(broker: Mosquitto, out: Path, run_id: str, **kw: Any) -> dict[str, Any]:
    dataset = str(kw.pop("dataset"))
    config = gateway_config(
        broker, out, 2, run_id=run_id, task=task_for(dataset), eval_data=dataset, **kw
    )
    return Gateway(config).run()


def _wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")
