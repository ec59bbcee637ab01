"""Nothing lost: the real gateway and edge processes over a mutual-TLS Mosquitto, disturbed.

The gateway is killed with SIGKILL in the middle of round 2, after it accepted two of three
updates and while the third site is paused; the paused site then sends its update into the
dead gateway's persistent session. The restarted gateway resumes from its checkpoint, and the
run's final model is compared with an undisturbed run of the same seed.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from common.weights_io import load_weights
from models.training import site_name
from tests.federation import split_sites
from tests.mosquitto import Mosquitto, configure_tls
from tests.processes import (
    committed_round,
    kill_hard,
    pending_updates,
    start_edge,
    start_gateway,
    stop,
    wait_for,
)

pytest.importorskip("tensorflow_federated")

SITES = 3
ROUNDS = 3
GATEWAY_ARGS = (
    "--rounds", str(ROUNDS), "--min-sites", str(SITES), "--local-epochs", "1",
    "--round-timeout", "300", "--seed", "0",
)  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = configure_tls(tmp_path / "broker", [site_name(i) for i in range(SITES)])
    b.start()
    yield b
    b.stop()


def _site_files(root: Path, breast_npz: Path) -> list[Path]:
    paths = []
    for i, site in enumerate(split_sites(breast_npz, SITES, alpha=1.0, seed=3)):
        path = root / f"{site_name(i)}.npz"
        np.savez(path, images=site.images, labels=site.labels)
        paths.append(path)
    return paths


def _run(broker: Mosquitto, root: Path, breast_npz: Path, sites: list[Path], run_id: str,
         disturb: bool) -> Path:  # fmt: skip
    out = root / "run"
    edges = [
        start_edge(broker, site_name(i), path, root / f"model-{site_name(i)}")
        for i, path in enumerate(sites)
    ]
    gateway = start_gateway(broker, out, breast_npz, *GATEWAY_ARGS, "--run-id", run_id)
    try:
        if disturb:
            wait_for(lambda: committed_round(out) == 1, 180, "round 1 to be committed")
            os.kill(edges[2].pid, signal.SIGSTOP)  # site-2 cannot send its round-2 update yet
            wait_for(lambda: len(pending_updates(out, 2)) == 2, 180, "two round-2 updates")
            kill_hard(gateway)
            assert committed_round(out) == 1, "round 2 must still be open at the crash"
            assert pending_updates(out, 2) == ["site-0", "site-1"]
            os.kill(edges[2].pid, signal.SIGCONT)  # it sends while no gateway is connected
            gateway = start_gateway(broker, out, breast_npz, *GATEWAY_ARGS, log_name="resumed.log")
        assert gateway.wait(600) == 0, (root / "run-gateway.log").read_text()[-3000:]
        for edge in edges:
            assert edge.wait(120) == 0
    finally:
        for proc in [gateway, *edges]:
            stop(proc)
    return out


def test_gateway_killed_mid_round_resumes_and_loses_nothing(
    broker: Mosquitto, tmp_path: Path, breast_npz: Path
) -> None:
    sites = _site_files(tmp_path, breast_npz)
    calm = _run(broker, tmp_path / "calm", breast_npz, sites, "calm-run", disturb=False)
    hit = _run(broker, tmp_path / "hit", breast_npz, sites, "hit-run", disturb=True)
    records = [json.loads(x) for x in (hit / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))  # none lost or repeated
    assert all(r["updates"] == SITES for r in records)
    calm_w, _ = load_weights(calm / "weights.npz")
    hit_w, _ = load_weights(hit / "weights.npz")
    diff = max(float(np.max(np.abs(calm_w[k] - hit_w[k]))) for k in calm_w)
    assert diff <= 1e-6, f"disturbed run differs from the undisturbed one by {diff:.2e}"
    calm_sum = json.loads((calm / "summary.json").read_text())
    hit_sum = json.loads((hit / "summary.json").read_text())
    assert hit_sum["accuracy"] == calm_sum["accuracy"] and hit_sum["auc"] == calm_sum["auc"]
