"""The gateway's round logic without a broker or TFF: a fake link and an injected server step.

The gateway runs as in deployment (real transport: envelopes, chunks, retained models; real
round and evaluation bookkeeping; real checkpoint), but its link is an in-memory queue whose
scripted sites answer what the gateway publishes, and its server step is a weighted mean
written here. So every figure the test checks can be computed by hand.
"""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.evaluation import report_envelope
from gateway.config import GatewayConfig
from gateway.rounds import QuorumError
from gateway.service import Gateway
from gateway.transport import GatewayTransport
from privadx.common.evaluation.report import build_report
from privadx.common.mqtt_link import BrokerAddress
from privadx.common.task import task_from_dataset
from privadx.common.weights_io import load_weights
from privadx.common.wire import envelope as wire
from privadx.common.wire.chunks import Reassembler, split
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import (
    RUN_NONCE,
    Phase,
    Presence,
    RoundAnnouncement,
    presence_envelope,
    update_envelope,
)
from privadx.common.wire.tensors import from_bytes
from privadx.common.wire.topics import Topics
from privadx.common.wire.update_codec import Encoding, model_update
from tff_core.robust import AggregationRule

SITES = ("site-0", "site-1", "site-2")
EXAMPLES = {"site-0": 10, "site-1": 30, "site-2": 60}
INITIAL = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}


def _trained(site: str, round_num: int, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a site "trains": a step that depends only on the site and the round."""
    i = SITES.index(site) + 1
    return {k: (v + np.float32(i * round_num)).astype(np.float32) for k, v in base.items()}


class MeanServer:
    """FedAvg's server step with SGD at learning rate 1: the global model plus the weighted
    mean of the updates, i.e. the weighted mean of the sites' trained weights."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.last_measurements: dict[str, Any] = {}
        self.calls: list[list[tuple[dict[str, np.ndarray], int]]] = []

    def aggregate(
        self,
        global_weights: dict[str, np.ndarray],
        updates: list[tuple[dict[str, np.ndarray], int]],
    ) -> dict[str, np.ndarray]:
        self.calls.append(updates)
        total = sum(n for _, n in updates)
        out = {}
        for k, base in global_weights.items():
            acc = np.zeros(base.shape, np.float64)
            for u, n in updates:
                acc += u[k].astype(np.float64) * n
            out[k] = (base.astype(np.float64) + acc / total).astype(np.float32)
        return out

    def state_arrays(self) -> list[np.ndarray]:
        return []

    def restore(self, arrays: list[np.ndarray]) -> None:
        assert arrays == []


class ScriptedLink:
    """An in-memory broker with three sites that answer announcements and models at once."""

    def __init__(
        self, federation: str, behave: Callable[[str, int], str] = lambda site, rnd: "train"
    ) -> None:
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.topics = Topics(federation)
        self.behave = behave
        """``(site, round)`` -> ``"train"``, ``"silent"``, ``"garbage"`` (an unreadable
        message on the update topic before the real update) or ``"replay"`` (the update as
        if captured from an earlier run with the same id, then the real one)."""
        self.models = Reassembler(max_payload=1 << 24)
        self.model: Envelope | None = None
        self.announcements: list[RoundAnnouncement] = []

    def start(self) -> None:
        for site in SITES:
            env = presence_envelope(Kind.PRESENCE, site, Presence.ONLINE, evaluates=True)
            self._send(self.topics.presence(site), env)

    def stop(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if not payload:
            return
        if topic.startswith(self.topics.model("")):
            whole = self.models.add(wire.from_bytes(payload))
            if whole is not None:
                self.model = whole
                self._report_on(whole)
        elif topic == self.topics.round:
            a = RoundAnnouncement.from_envelope(wire.from_bytes(payload))
            self.announcements.append(a)
            if a.phase is Phase.TRAINING:
                self._train(a)

    def _send(self, topic: str, env: Envelope) -> None:
        for chunk in split(env, 4096):
            self.inbox.put((topic, wire.to_bytes(chunk), False))

    def _train(self, a: RoundAnnouncement) -> None:
        assert self.model is not None and self.model.meta["model_sha256"] == a.model_sha256
        base = from_bytes(self.model.payload)
        for site in SITES:
            what = self.behave(site, a.round)
            if what == "silent" or site in a.accepted:
                continue
            if what == "garbage":
                self.inbox.put((self.topics.update(site), b"not an envelope", False))
            env = update_envelope(
                run=a.run,
                round_num=a.round,
                site=site,
                update=model_update(_trained(site, a.round, base), base),
                encoding=Encoding.FLOAT32,
                examples=EXAMPLES[site],
                metrics={"loss": 0.5},
                base_model=a.model_sha256,
                run_nonce=self.model.meta[RUN_NONCE],
            )
            if what == "replay":  # first the same update as captured from an earlier run
                old = env.with_meta(**{RUN_NONCE: "0" * 32})
                self._send(self.topics.update(site), replace(old, message_id="captured"))
            self._send(self.topics.update(site), env)

    def _report_on(self, model: Envelope) -> None:
        if model.round < 1:
            return
        for i, site in enumerate(SITES):
            rng = np.random.default_rng(100 * model.round + i)
            labels = rng.integers(0, 2, size=20 + 10 * i)
            logits = np.stack([np.zeros(labels.size), 3 * labels + rng.normal(size=labels.size)], 1)
            report = build_report(logits, labels, num_classes=2, positive_class=1)
            env = report_envelope(
                site=site,
                run=model.run,
                round_num=model.round,
                model_sha256=model.meta["model_sha256"],
                report=report,
                run_nonce=model.meta[RUN_NONCE],
            )
            self._send(self.topics.evaluation(site), env)


def _config(out: Path, **change: Any) -> GatewayConfig:
    settings: dict[str, Any] = {
        "broker": BrokerAddress.parse("mqtt://localhost:1"),
        "out": out,
        "task": task_from_dataset("breastmnist"),
        "federation": "unit",
        "run_id": "run-unit",
        "insecure": True,
        "allow_unsigned": True,
        "rounds": 2,
        "min_sites": 3,
        "round_timeout": 5.0,
        "eval_timeout": 5.0,
        "start_timeout": 5.0,
        "max_retries": 1,
        "aggregation": AggregationRule.MEAN,
        "export_onnx": False,
        **change,
    }
    return GatewayConfig(**settings)


def _gateway(config: GatewayConfig, link: ScriptedLink) -> tuple[Gateway, list[MeanServer]]:
    servers: list[MeanServer] = []

    def factory(weights: dict[str, np.ndarray]) -> MeanServer:
        servers.append(MeanServer(weights))
        return servers[-1]

    transport = GatewayTransport(config, None, link)
    return Gateway(config, transport, server=(INITIAL, factory)), servers


@pytest.mark.parametrize("rule", [AggregationRule.MEAN, AggregationRule.NORM_BOUND])
def test_rounds_aggregate_in_site_order_count_bad_input_and_evaluate(
    tmp_path: Path, rule: AggregationRule
) -> None:
    link = ScriptedLink("unit", lambda site, rnd: "garbage" if site == "site-2" else "train")
    gateway, servers = _gateway(_config(tmp_path, aggregation=rule), link)
    summary = gateway.run()
    # By hand: each round moves the mean by the round number times sum_i i * n_i / sum_i n_i.
    step = sum((SITES.index(s) + 1) * n for s, n in EXAMPLES.items()) / sum(EXAMPLES.values())
    expected = {k: v.astype(np.float64) + (1 + 2) * step for k, v in INITIAL.items()}
    (server,) = servers
    # Plain FedAvg folds the stored updates into one streamed mean; other rules get each
    # update, in site order whatever the arrival order.
    per_call = [[100]] if rule is AggregationRule.MEAN else [[10, 30, 60]]
    assert [[n for _, n in call] for call in server.calls] == per_call * 2
    final, _ = load_weights(tmp_path / "weights.npz")
    for k in INITIAL:
        np.testing.assert_allclose(final[k], expected[k], rtol=1e-6)
    records = gateway.records
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["updates"] == 3 and r["rejected"].get("malformed") == 1 for r in records)
    for r in records:
        assert r["evaluating"] == list(SITES)
        assert r["evaluation"]["sites_reported"] == list(SITES)
        assert r["federated"]["examples"] == 20 + 30 + 40
        assert sorted(r["sites"]) == list(SITES)
    assert summary["decision"]["source"] == "federated"
    assert summary["federated"]["sites_reported"] == 3
    finished = link.announcements[-1]
    assert finished.phase is Phase.FINISHED and finished.round == 2


def test_a_round_below_quorum_is_announced_again_then_fails(tmp_path: Path) -> None:
    link = ScriptedLink(
        "unit", lambda site, rnd: "silent" if (site, rnd) == ("site-2", 2) else "train"
    )
    gateway, _ = _gateway(_config(tmp_path, round_timeout=0.5), link)
    with pytest.raises(QuorumError, match="round 2 gathered fewer than 3 updates in 2 attempts"):
        gateway.run()
    second = [a for a in link.announcements if a.round == 2 and a.phase is Phase.TRAINING]
    assert len(second) == 2  # the retry lists the updates already held: they are not resent
    assert second[0].accepted == () and second[1].accepted == ("site-0", "site-1")
    assert [r["round"] for r in gateway.records] == [1]


def test_a_run_that_cannot_start_names_the_sites_that_went_offline(tmp_path: Path) -> None:
    class TwoComeOneLeaves(ScriptedLink):
        def start(self) -> None:
            for site, state in [
                ("site-0", Presence.ONLINE),
                ("site-1", Presence.ONLINE),
                ("site-1", Presence.OFFLINE),
            ]:
                env = presence_envelope(Kind.PRESENCE, site, state, evaluates=True)
                self._send(self.topics.presence(site), env)

    gateway, _ = _gateway(_config(tmp_path, start_timeout=1.0), TwoComeOneLeaves("unit"))
    expected = r"only 1 of the 3 required sites came online within 1 s \(site-1 came and went"
    with pytest.raises(QuorumError, match=expected):
        gateway.run()


def test_the_round_logic_needs_neither_tensorflow_nor_tff(tmp_path: Path) -> None:
    code = "\n".join(
        [
            "import sys",
            "from pathlib import Path",
            "import tests.unit.test_gateway_rounds as t",
            "t.test_rounds_aggregate_in_site_order_count_bad_input_and_evaluate(",
            f"    Path({str(tmp_path)!r}), t.AggregationRule.MEAN)",
            "heavy = ('tensorflow', 'tensorflow_federated', 'keras')",
            "heavy = [m for m in heavy if m in sys.modules]",
            "print(heavy)",
            "sys.exit(1 if heavy else 0)",
        ]
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_an_update_from_an_earlier_run_with_the_same_id_is_refused(tmp_path: Path) -> None:
    link = ScriptedLink("unit", lambda site, rnd: "replay" if site == "site-1" else "train")
    gateway, _ = _gateway(_config(tmp_path, rounds=1), link)
    gateway.run()
    (record,) = gateway.records
    assert record["updates"] == 3 and record["rejected"] == {"stale run": 1}


def test_a_fresh_run_cannot_reuse_a_run_id_this_identity_signed(tmp_path: Path) -> None:
    from privadx.common.errors import InputError
    from privadx.common.trust.federation import init_federation

    pki = init_federation(tmp_path / "pki", federation="unit", hosts=["h"], port=1, sites=SITES)
    signed = {"identity": pki.gateway, "rounds": 1}
    first, _ = _gateway(_config(tmp_path / "a", **signed), ScriptedLink("unit"))
    first.run()
    again, _ = _gateway(_config(tmp_path / "b", **signed), ScriptedLink("unit"))
    with pytest.raises(InputError, match="run id 'run-unit' was started by this gateway before"):
        again.run()
    resumed, _ = _gateway(_config(tmp_path / "a", **{**signed, "rounds": 2}), ScriptedLink("unit"))
    resumed.run()  # the same run, continued from its checkpoint: not a reuse
    assert [r["round"] for r in resumed.records] == [1, 2]
