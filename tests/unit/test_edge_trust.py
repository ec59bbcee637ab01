"""The edge agent trains on and keeps only what the federation's gateway signed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from harness.federation import SiteCrashError
from privadx.common.data.arrays import LabeledImages
from privadx.common.errors import DataError, ModelError
from privadx.common.mqtt_link import BrokerAddress
from privadx.common.task import task_from_dataset
from privadx.common.trust.federation import FederationPki, init_federation
from privadx.common.trust.identity import Identity
from privadx.common.trust.manifest import build_manifest
from privadx.common.wire import envelope as wire
from privadx.common.wire.chunks import split
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import GATEWAY_SENDER, model_envelope
from privadx.common.wire.topics import Topics

INFO = task_from_dataset("pneumoniamnist").model_info().to_meta()
WEIGHTS = {"w": np.ones((2, 2), np.float32)}


@pytest.fixture
def pki(tmp_path: Path) -> FederationPki:
    return init_federation(tmp_path / "pki", federation="default", hosts=["h"], port=1,
                           sites=["s1", "s2"])  # fmt: skip


def _agent(pki: FederationPki, tmp_path: Path) -> EdgeAgent:
    config = EdgeConfig(
        broker=BrokerAddress.parse("mqtts://localhost:1"),
        identity=pki.site("s1"),
        site_id="s1",
        data=str(tmp_path / "none.npz"),
        model_dir=tmp_path / "model",
    )
    return EdgeAgent(config)


def _deliver(agent: EdgeAgent, topic_of, env: Envelope) -> None:  # type: ignore[no-untyped-def]
    for chunk in split(env, 64):
        agent.link.inbox.put((topic_of(chunk.meta["chunk"]["index"]), wire.to_bytes(chunk), True))
        agent._process_one()


def test_model_signed_by_a_site_is_ignored(pki: FederationPki, tmp_path: Path) -> None:
    agent = _agent(pki, tmp_path)
    forged = Identity.load(pki.site("s2")).signer.sign_envelope(
        model_envelope("r", 1, WEIGHTS, INFO)
    )
    _deliver(agent, Topics().model, forged)
    agent.store.flush()
    assert agent.model is None and not (tmp_path / "model" / "global.npz").exists()
    _deliver(agent, Topics().model, model_envelope("r", 1, WEIGHTS, INFO))  # unsigned
    assert agent.model is None
    genuine = Identity.load(pki.gateway).signer.sign_envelope(model_envelope("r", 1, WEIGHTS, INFO))
    _deliver(agent, Topics().model, genuine)
    agent.store.flush()
    assert agent.model is not None and (tmp_path / "model" / "global.npz").exists()


def test_onnx_must_match_its_signed_manifest(pki: FederationPki, tmp_path: Path) -> None:
    agent = _agent(pki, tmp_path)
    gateway = Identity.load(pki.gateway).signer
    manifest = gateway.sign_document(
        build_manifest(file_name="model.onnx", data=b"real model", provenance={"round": 3})
    )

    def onnx(data: bytes) -> Envelope:
        env = Envelope(kind=Kind.ONNX, run="r", round=3, sender=GATEWAY_SENDER, payload=data,
                       meta={"onnx_sha256": hashlib.sha256(data).hexdigest(),
                             "manifest": manifest})  # fmt: skip
        return gateway.sign_envelope(env)

    _deliver(agent, Topics().onnx, onnx(b"swapped model"))  # signed envelope, wrong manifest
    assert not (tmp_path / "model" / "model.onnx").exists()
    _deliver(agent, Topics().onnx, onnx(b"real model"))
    assert (tmp_path / "model" / "model.onnx").read_bytes() == b"real model"
    assert (tmp_path / "model" / "model.onnx.manifest.json").exists()
    assert (tmp_path / "model" / "ca.pem").exists()


@pytest.mark.parametrize(
    "fault",
    [
        ModelError("weights do not fit the model"),
        DataError("site images: no such file"),
        SystemError("AST constructor recursion depth mismatch (before=60, after=56)"),
    ],
    ids=["model", "data", "interpreter"],
)
def test_a_failed_training_skips_the_round_not_the_agent(
    pki: FederationPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception
) -> None:
    """Weights that do not fit the announced architecture, images that cannot be loaded, a
    fault of the interpreter (seen once under ten agent threads): each costs the round only."""
    import time

    from edge.agent import GlobalModel
    from models.settings import LocalTraining
    from privadx.common.wire.messages import RoundAnnouncement

    agent = _agent(pki, tmp_path)
    agent.model = GlobalModel("sha", 1, "r", WEIGHTS, INFO)
    agent.announcement = RoundAnnouncement(
        run="r", round=2, model_sha256="sha", deadline=time.time() + 60, min_updates=1,
        training=LocalTraining().to_dict(), seed=0,
    )  # fmt: skip
    calls = []

    def refuse(*args: object) -> None:
        calls.append(args)
        raise fault

    monkeypatch.setattr(agent, "_train", refuse)
    agent._maybe_train()
    agent._maybe_train()  # the skipped announcement is not tried again
    assert len(calls) == 1
    assert agent._skipped == agent.announcement.announcement
    assert not agent.store.submitted("r", 2)


def test_a_site_is_online_once_it_has_prepared_for_the_model(
    pki: FederationPki, tmp_path: Path
) -> None:
    """Connected is not ready: the presence goes out after the first global model was taken
    in (so a round's clock does not run on the site's start-up), then on every reconnect."""
    from privadx.common.wire.messages import Presence

    agent = _agent(pki, tmp_path)
    sent: list[tuple[str, str]] = []
    agent.link.publish = lambda topic, payload, **kw: sent.append(  # type: ignore[method-assign]
        (topic, wire.from_bytes(payload).meta["state"])
    )
    presence = Topics().presence("s1")
    agent._announce_online()  # connected, no model yet
    assert sent == []
    genuine = Identity.load(pki.gateway).signer.sign_envelope(model_envelope("r", 0, WEIGHTS, INFO))
    _deliver(agent, Topics().model, genuine)  # preparing fails here (no data): still online
    assert sent == [(presence, Presence.ONLINE)]
    _deliver(agent, Topics().model, genuine)
    agent._announce_online()  # reconnected
    assert sent == [(presence, Presence.ONLINE)] * 2
    agent.store.flush()
    agent.link.connected.set()
    agent._leave()  # a clean exit says so (the last will only covers a lost connection)
    assert sent[-1] == (presence, Presence.OFFLINE)


def test_a_fault_while_preparing_or_handling_a_message_does_not_end_the_agent(
    pki: FederationPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The images are loaded again when the round starts, and the site trains its update."""
    import time

    from models.settings import LocalTraining
    from privadx.common.wire.messages import RoundAnnouncement

    agent = _agent(pki, tmp_path)
    sent: list[str] = []
    agent.link.publish = lambda topic, payload, **kw: sent.append(topic)  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    images = LabeledImages(
        rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
        np.arange(40) % 2,
        ("normal", "pneumonia"),
    )
    loads: list[str] = []

    def load(source: str, info: object) -> LabeledImages:
        loads.append(source)
        if len(loads) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=60, after=56)")
        return images

    def train(info, weights, settings, *, seed):  # type: ignore[no-untyped-def]
        return {k: v + 1 for k, v in weights.items()}, {"loss": 0.5}

    monkeypatch.setattr(agent.work, "_load", load)
    monkeypatch.setattr(agent.work, "train", train)
    genuine = Identity.load(pki.gateway).signer.sign_envelope(model_envelope("r", 1, WEIGHTS, INFO))
    _deliver(agent, Topics().model, genuine)
    assert agent.model is not None and sent == [Topics().presence("s1")]  # online all the same

    def broken(env: Envelope, kind: Kind) -> None:
        raise SystemError("a fault handling one message")

    monkeypatch.setattr(agent, "_on_chunk", broken)
    _deliver(agent, Topics().model, genuine)  # dropped, logged; the loop goes on
    agent.announcement = RoundAnnouncement(
        run="r", round=2, model_sha256=agent.model.sha256, deadline=time.time() + 60,
        min_updates=1, training=LocalTraining().to_dict(), seed=0,
    )  # fmt: skip
    agent._maybe_train()
    assert len(loads) == 2 and agent.store.submitted("r", 2)
    assert sent[-1] == Topics().update("s1")

    def crash(env: Envelope, kind: Kind) -> None:
        raise SiteCrashError

    monkeypatch.setattr(agent, "_on_chunk", crash)
    with pytest.raises(SiteCrashError):  # the harness's simulated crash still ends the agent
        _deliver(agent, Topics().model, genuine)
