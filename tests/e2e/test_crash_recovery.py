"""Nothing lost: real gateway and edge processes over a mutual-TLS Mosquitto, disturbed.

Each disturbance happens in round 2 of a 3-round run of 3 sites on BreastMNIST; the run must
finish, and where the disturbance loses no update its final model must equal the undisturbed
run's (same seed: local training is deterministic per site and round, and the gateway
aggregates in site order).

- gateway ``kill -9`` after accepting two of three updates, while the third site is paused
  (it then sends into the dead gateway's persistent session): the restarted gateway resumes;
- broker restart in the middle of the round;
- a device killed in the round with a quorum of 3: the round is retried at its deadline, not
  averaged over two sites, and the restarted device completes it;
- a straggler with a quorum of 2: the round closes at its deadline with two updates, and the
  late update is rejected in the next round with its reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from harness.federation import split_sites
from harness.mosquitto import Mosquitto, configure_tls
from models.settings import site_name
from privadx.common.data.local import save_site_npz
from privadx.common.weights_io import load_weights
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


@dataclass
class Federation:
    broker: Mosquitto
    root: Path
    dataset: Path
    sites: list[Path]
    out: Path = Path()
    gateway_args: tuple[str, ...] = ()
    gateway: subprocess.Popen[bytes] | None = None
    edges: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_edge(self, i: int) -> subprocess.Popen[bytes]:
        return start_edge(self.broker, site_name(i), self.sites[i], self.out.parent / f"m{i}")

    def start_gateway(self, log_name: str = "gateway.log") -> None:
        self.gateway = start_gateway(
            self.broker, self.out, self.dataset, *self.gateway_args, log_name=log_name
        )

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.out.parent.glob("run-*.log")))

    def records(self) -> list[dict]:
        lines = (self.out / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def _args(*, min_sites: int = SITES, timeout: int = 300, epochs: int = 1) -> tuple[str, ...]:
    return ("--rounds", str(ROUNDS), "--min-sites", str(min_sites), "--local-epochs",
            str(epochs), "--round-timeout", str(timeout), "--seed", "0")  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, medmnist_dir: Path) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("crash")
    broker = configure_tls(root / "broker", [site_name(i) for i in range(SITES)])
    broker.start()
    dataset = medmnist_dir / "breastmnist.npz"
    sites = []
    for i, site in enumerate(split_sites(dataset, SITES, alpha=1.0, seed=3)):
        sites.append(root / f"{site_name(i)}.npz")
        save_site_npz(sites[-1], site)
    yield Federation(broker, root, dataset, sites)
    broker.stop()


def run(setup: Federation, name: str, disturb: Callable[[Federation], None] | None = None,
        args: tuple[str, ...] = _args()) -> Federation:  # fmt: skip
    fed = Federation(setup.broker, setup.root / name, setup.dataset, setup.sites)
    fed.out, fed.gateway_args = fed.root / "run", (*args, "--run-id", name)
    fed.edges = [fed.start_edge(i) for i in range(SITES)]
    fed.start_gateway()
    try:
        if disturb is not None:
            disturb(fed)
        assert fed.gateway is not None
        assert fed.gateway.wait(600) == 0, fed.log()[-3000:]
        for edge in fed.edges:
            assert edge.wait(120) == 0
    finally:
        for proc in [fed.gateway, *fed.edges]:
            if proc is not None:
                stop(proc)
    return fed


@pytest.fixture(scope="module")
def calm(setup: Federation) -> Federation:
    return run(setup, "calm")


def assert_same_model(a: Federation, b: Federation) -> None:
    wa, _ = load_weights(a.out / "weights.npz")
    wb, _ = load_weights(b.out / "weights.npz")
    diff = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)
    assert diff <= 1e-6, f"disturbed run differs from the undisturbed one by {diff:.2e}"
    sa, sb = (json.loads((f.out / "summary.json").read_text()) for f in (a, b))
    assert (sa["accuracy"], sa["auc"]) == (sb["accuracy"], sb["auc"])


def _round_1_done_pause_site_2(fed: Federation) -> None:
    wait_for(lambda: committed_round(fed.out) == 1, 180, "round 1 to be committed")
    os.kill(fed.edges[2].pid, signal.SIGSTOP)  # site-2 cannot send its round-2 update yet
    wait_for(lambda: len(pending_updates(fed.out, 2)) == 2, 180, "two round-2 updates")
    assert committed_round(fed.out) == 1 and pending_updates(fed.out, 2) == ["site-0", "site-1"]


@pytest.mark.slow
def test_gateway_killed_mid_round_resumes_and_loses_nothing(
    setup: Federation, calm: Federation
) -> None:
    def crash(fed: Federation) -> None:
        _round_1_done_pause_site_2(fed)
        assert fed.gateway is not None
        kill_hard(fed.gateway)
        assert committed_round(fed.out) == 1, "round 2 must still be open at the crash"
        os.kill(fed.edges[2].pid, signal.SIGCONT)  # it sends while no gateway is connected
        fed.start_gateway(log_name="resumed.log")

    hit = run(setup, "gateway-kill", crash)
    assert [r["round"] for r in hit.records()] == [1, 2, 3]  # none lost, none repeated
    assert all(r["updates"] == SITES for r in hit.records())
    assert "resuming run gateway-kill after round 1 with 2 accepted updates" in hit.log()
    assert_same_model(calm, hit)
    # Round 1's model was evaluated after the checkpoint was written (while round 2 trained):
    # the resumed gateway evaluates it again, so every round still has its test metrics.
    for resumed, undisturbed in zip(hit.records(), calm.records(), strict=True):
        assert resumed["test"]["auc"] == pytest.approx(undisturbed["test"]["auc"], abs=1e-3)
    # Round 1's federated evaluation was open at the crash (site-2, paused, had not reported):
    # the resumed gateway opens it again for the same three sites, the two that had reported
    # send their kept reports again, and its figures are the undisturbed run's.
    assert "round 1 model: its evaluation was interrupted; opening it again" in hit.log()
    resent = "round 1 model published again; sent this site's report again"
    assert any(resent in (hit.out.parent / f"m{i}.log").read_text() for i in range(2))
    names = [site_name(i) for i in range(SITES)]
    for resumed, undisturbed in zip(hit.records(), calm.records(), strict=True):
        assert resumed["evaluation"]["sites_reported"] == names
        fed, want = resumed["federated"], undisturbed["federated"]
        assert fed["examples"] == want["examples"]
        assert fed["auc"] == pytest.approx(want["auc"], abs=1e-3)


@pytest.mark.slow
def test_broker_restart_mid_round(setup: Federation, calm: Federation) -> None:
    def restart(fed: Federation) -> None:
        _round_1_done_pause_site_2(fed)
        fed.broker.stop()
        os.kill(fed.edges[2].pid, signal.SIGCONT)  # trains and queues its update offline
        fed.broker.start()

    hit = run(setup, "broker-restart", restart)
    assert [r["updates"] for r in hit.records()] == [SITES] * ROUNDS
    assert_same_model(calm, hit)


@pytest.mark.slow  # 82 s in CI
def test_device_killed_below_quorum_round_is_retried(setup: Federation, calm: Federation) -> None:
    def kill_device(fed: Federation) -> None:
        _round_1_done_pause_site_2(fed)
        kill_hard(fed.edges[2])
        retry = "round 2: 2 of 3 required updates by the deadline (attempt 1); retrying"
        wait_for(lambda: retry in fed.log(), 120, "round 2 to be retried at its deadline")
        assert committed_round(fed.out) == 1  # not averaged over the two sites left
        fed.edges[2] = fed.start_edge(2)  # the device comes back (same model folder)

    # Deadlines long enough for round 1 (the processes start TensorFlow on 2 shared cores).
    hit = run(setup, "device-kill", kill_device, _args(timeout=40))
    assert [r["updates"] for r in hit.records()] == [SITES] * ROUNDS
    assert hit.records()[1]["attempts"] == 2
    assert_same_model(calm, hit)


@pytest.mark.slow  # 102 s alone
def test_straggler_update_is_rejected_after_the_deadline(setup: Federation) -> None:
    def straggle(fed: Federation) -> None:
        site_log = fed.out.parent / "m2.log"
        wait_for(
            lambda: "round 2: training" in site_log.read_text(), 180, "site-2 to train round 2"
        )
        os.kill(fed.edges[2].pid, signal.SIGSTOP)  # paused in the middle of its training
        wait_for(lambda: "round 3/3 announced" in fed.log(), 150, "round 2 to close")
        os.kill(fed.edges[2].pid, signal.SIGCONT)  # its round-2 update arrives in round 3

    # 5 local epochs make a site's training last about a second (one epoch of its 222 images
    # takes a fraction of one), so the pause (polled every 0.05 s) lands in the middle of it.
    # The deadline must also hold round 1, which includes tracing the training step (sites
    # start TensorFlow and build their model before they say they are online).
    hit = run(setup, "straggler", straggle, _args(min_sites=2, timeout=40, epochs=5))
    first, second, third = hit.records()
    assert (first["updates"], second["updates"]) == (3, 2)
    assert second["attempts"] == 1 and third["rejected"].get("wrong round") == 1
    assert third["updates"] == 3  # the straggler trains round 3 and is counted there
