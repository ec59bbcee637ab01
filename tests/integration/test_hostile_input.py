"""A site with a valid certificate floods its own update topic with broken and forged messages
during a run: each is rejected with a counted reason, and the run completes as if they had
not been sent."""

from __future__ import annotations

import hashlib
import itertools
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
from harness.federation import run_federation, split_sites, start_broker
from harness.mosquitto import Mosquitto, ProbeClient
from models.settings import LocalTraining
from privadx.common.trust.identity import Identity
from privadx.common.wire import envelope as wire
from privadx.common.wire.chunks import DEFAULT_CHUNK_SIZE, split
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import RUN_NONCE, RoundAnnouncement, update_envelope
from privadx.common.wire.topics import Topics
from privadx.common.wire.update_codec import Encoding, model_update

pytest.importorskip("tensorflow_federated")

FEDERATION = "hostile"


def _attack_messages(broker: Mosquitto, round_env: Envelope) -> list[bytes]:
    """What the attacker sends on site-1's topic, each a different way of being wrong."""
    a = RoundAnnouncement.from_envelope(round_env)
    assert broker.pki is not None
    me = Identity.load(broker.pki / "sites" / "site-1")
    base = {"w": np.zeros(3, np.float32)}

    def update(site: str, **meta: object) -> Envelope:
        env = update_envelope(run=a.run, round_num=a.round, site=site,
                              update=model_update(base, base),
                              encoding=Encoding.FLOAT32, examples=10, metrics={},
                              base_model=a.model_sha256)  # fmt: skip
        return env.with_meta(**meta) if meta else env

    signed = me.signer.sign_envelope(update("site-1"))
    oversize = {**signed.meta, "chunk": {"index": 0, "count": 1, "sha256": "0", "total_sha256":
                "0", "total_size": 10**12}}  # fmt: skip
    return [
        b"\x00garbage that is no envelope",
        b"PDX\x09" + b"\x00" * 40,  # unknown schema version
        *(wire.to_bytes(c) for c in split(update("site-1"), 64)),  # unsigned
        *(wire.to_bytes(c) for c in split(me.signer.sign_envelope(update("site-0")), 64)),
        *(wire.to_bytes(c) for c in split(signed, 64)[:-1]),  # truncated: never completes
        wire.to_bytes(
            Envelope(kind=Kind.UPDATE, run=a.run, round=a.round, sender="site-1", meta=oversize)
        ),
    ]


def _federate_under_attack(
    tmp_path: Path,
    breast_npz: Path,
    *,
    watch: str,
    fires: Callable[[str, bytes], bool],
    messages: Callable[[Mosquitto, Envelope], list[bytes]],
    target: str,
    join_delay: float,
    attacker_site: str = "site-1",
    identities: int = 2,
    until_done: bool = False,
    chunk: int = DEFAULT_CHUNK_SIZE,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 2-site, 1-round run in which ``attacker_site``'s key, once a message on ``watch``
    ``fires``, also publishes ``messages`` on ``target`` (with ``until_done``, batch after
    batch until the run has finished, and the run must finish while it still floods). The
    honest sites send in chunks of ``chunk`` bytes. Returns the round record and the
    summary."""
    sites = split_sites(breast_npz, 2, alpha=1.0, seed=2)
    broker = start_broker(tmp_path / "broker", identities)
    attacker = ProbeClient.of(broker, attacker_site)
    sent, done = threading.Event(), threading.Event()
    flooding_at_the_end: list[bool] = []

    def attack() -> None:
        attacker.connected.wait(10)
        attacker.sub(watch)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            hits = [p for t, p in list(attacker.got) if p and fires(t, p)]
            if hits:
                while True:
                    for message in messages(broker, wire.from_bytes(hits[0])):
                        attacker.pub(target, message)
                    sent.set()
                    if not until_done or done.is_set() or time.monotonic() > deadline:
                        flooding_at_the_end.append(done.is_set())
                        return
                    time.sleep(0.05)
            time.sleep(0.02)

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        result = run_federation(
            broker, tmp_path, sites, dataset=str(breast_npz), rounds=1, seed=0,
            federation=FEDERATION, training=LocalTraining(local_epochs=1), export_onnx=False,
            join_delay=join_delay, agent_class=lambda c: EdgeAgent(replace(c, chunk_size=chunk)),
        )  # fmt: skip
        done.set()
        thread.join(60)
    finally:
        done.set()
        attacker.close()
        broker.stop()
    assert sent.is_set()
    assert flooding_at_the_end == [until_done]  # with until_done, the flood outlasted the run
    (record,) = [
        json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    return record, result.summary


@pytest.mark.slow
def test_broken_and_forged_messages_are_counted_and_harmless(
    tmp_path: Path, breast_npz: Path
) -> None:
    topics = Topics(FEDERATION)
    record, _ = _federate_under_attack(
        tmp_path,
        breast_npz,
        watch=topics.round,
        fires=lambda topic, _: topic == topics.round,
        messages=_attack_messages,
        target=topics.update("site-1"),
        join_delay=4.0,
    )
    assert record["updates"] == 2
    assert record["rejected"] == {"malformed": 3, "unsigned": 1, "sender mismatch": 1}


def _bad_reports(broker: Mosquitto, model_env: Envelope) -> list[bytes]:
    """Evaluation reports site-1's key can sign, each wrong in its own way."""
    from privadx.common.evaluation.report import SCHEME, build_report
    from privadx.common.wire.messages import evaluation_envelope

    assert broker.pki is not None
    me = Identity.load(broker.pki / "sites" / "site-1")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    good = build_report(rng.normal(size=(40, 2)), labels, num_classes=2).to_tensors()
    meta = {
        "base_model": model_env.meta["model_sha256"],
        "scheme": SCHEME,
        "examples": 40,
        RUN_NONCE: model_env.meta[RUN_NONCE],
    }

    def report(tensors: dict, *, round_num: int = 1, site: str = "site-1", sign: bool = True):  # type: ignore[no-untyped-def]
        env = evaluation_envelope(run=model_env.run, round_num=round_num, site=site,
                                  report=tensors, meta=meta)  # fmt: skip
        env = me.signer.sign_envelope(env) if sign else env
        return b"".join(wire.to_bytes(c) for c in split(env))

    return [
        b"\x00not an envelope",
        report({**good, "hist": good["hist"][:, :, :100]}),  # wrong bins
        report({**good, "confusion": good["confusion"].astype(np.int32) - 30}),  # negative
        report({**good, "nll": np.full_like(good["nll"], np.nan)}),  # NaN
        report(good, round_num=0),  # wrong round
        report(good, sign=False),  # unsigned
        report(good, site="site-0"),  # another site's name on site-1's topic
    ]


@pytest.mark.slow
def test_malformed_evaluation_reports_are_counted_and_the_evaluation_completes(
    tmp_path: Path, breast_npz: Path
) -> None:
    topics = Topics(FEDERATION)

    def round_1_model(topic: str, payload: bytes) -> bool:  # before the honest reports
        return topic.startswith(topics.model("")) and wire.from_bytes(payload).round == 1

    record, summary = _federate_under_attack(
        tmp_path,
        breast_npz,
        watch=topics.model("#"),
        fires=round_1_model,
        messages=_bad_reports,
        target=topics.evaluation("site-1"),
        join_delay=1.0,
    )
    assert record["evaluation"]["sites_reported"] == ["site-0", "site-1"]
    assert record["evaluation"]["rejected"] == {
        "malformed": 1,
        "malformed report": 3,
        "wrong round": 1,
        "unsigned": 1,
        "sender mismatch": 1,
    }
    assert summary["federated"]["sites_reported"] == 2


def _flood(broker: Mosquitto, round_env: Envelope) -> list[bytes]:
    """One batch of site-2's flood of its own update topic: 20 chunks each declaring a 400 MB
    update, then the first chunks of 30 signed updates it never completes (each batch with
    fresh message ids)."""
    a = RoundAnnouncement.from_envelope(round_env)
    assert broker.pki is not None
    me = Identity.load(broker.pki / "sites" / "site-2")
    batch = next(_batches)
    out = []
    for i in range(20):
        env = Envelope(kind=Kind.UPDATE, run=a.run, round=a.round, sender="site-2",
                       payload=b"\0" * 64, message_id=f"huge-{batch}-{i}")  # fmt: skip
        info = {"index": 0, "count": 2, "sha256": hashlib.sha256(b"\0" * 64).hexdigest(),
                "total_sha256": "0" * 64, "total_size": 400_000_000}  # fmt: skip
        out.append(wire.to_bytes(me.signer.sign_envelope(env).with_meta(chunk=info)))
    for i in range(30):
        env = Envelope(kind=Kind.UPDATE, run=a.run, round=a.round, sender="site-2",
                       payload=bytes([i]) * 4096, message_id=f"partial-{batch}-{i}")  # fmt: skip
        first = split(me.signer.sign_envelope(env.with_meta(examples=10)), 1024)[0]
        out.append(wire.to_bytes(first))
    return out


_batches = itertools.count()


@pytest.mark.slow
def test_a_flood_of_partial_messages_is_bounded_per_site_and_the_round_completes(
    tmp_path: Path, breast_npz: Path
) -> None:
    """Site-2's key floods for the whole run while both honest sites send their updates and
    reports in 4 KiB chunks: the declared 400 MB messages are refused before a byte is kept
    (an update cannot be larger than the model) and the small ones evict only site-2's own
    partial messages, so every honest multi-chunk message completes."""
    topics = Topics(FEDERATION)
    record, summary = _federate_under_attack(
        tmp_path,
        breast_npz,
        watch=topics.round,
        fires=lambda topic, _: topic == topics.round,
        messages=_flood,
        target=topics.update("site-2"),
        join_delay=4.0,
        attacker_site="site-2",
        identities=3,
        until_done=True,
        chunk=4096,
    )
    # Only the oversized chunks are counted; the evicted partial messages are site-2's own.
    assert set(record["rejected"]) == {"malformed"} and record["rejected"]["malformed"] >= 20
    assert record["updates"] == 2 and summary["federated"]["sites_reported"] == 2
    assert max(record["update_bytes"].values()) > 4 * 4096  # the honest updates were chunked
