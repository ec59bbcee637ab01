"""The secure round's message flow in process: edge participants against the gateway's
bookkeeping, signed as in deployment; the sum, the refusals and the checks sites make."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from edge.secure_participant import SecureParticipant
from gateway.rounds import signature_check
from gateway.secure_round import SecureRound
from privadx.common.evaluation.federated import score_reports
from privadx.common.evaluation.report import build_report, sum_reports
from privadx.common.evaluation.secure_sum import ReportEncoding
from privadx.common.secagg.protocol import SecAggError
from privadx.common.trust.federation import FederationPki, init_federation
from privadx.common.trust.identity import Identity
from privadx.common.trust.pki import GATEWAY_IDENTITY, TrustError
from privadx.common.wire import envelope as wire
from privadx.common.wire.chunks import Reassembler, split
from privadx.common.wire.envelope import Envelope
from privadx.common.wire.messages import RoundAnnouncement
from privadx.common.wire.secure import SecureSettings, Step, b64, json_payload, read_json, unb64

SITES = [f"s{i}" for i in range(5)]
LENGTH = 300
SETTINGS = SecureSettings(clip=1.0, step_timeout=5.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPki:
    return init_federation(
        tmp_path_factory.mktemp("pki"),
        federation="unit",
        hosts=["localhost"],
        port=8883,
        sites=SITES,
    )


def _identity(pki: FederationPki, name: str) -> Identity:
    return Identity.load(pki.gateway if name == GATEWAY_IDENTITY else pki.site(name))


class Federation:
    """Participants and the gateway's round, passing signed, chunked messages by hand."""

    def __init__(
        self,
        pki: FederationPki,
        round_num: int = 1,
        *,
        encoding: ReportEncoding | None = None,
    ) -> None:
        self.ids = {s: _identity(pki, s) for s in SITES}
        gateway = _identity(pki, GATEWAY_IDENTITY)
        self.gateway_signer = gateway.signer
        self.announcement = RoundAnnouncement(
            run="run",
            round=round_num,
            model_sha256="m",
            deadline=time.time() + 60,
            min_updates=3,
            training={},
            seed=0,
            secure=SETTINGS,
        )
        self.sites = {s: SecureParticipant(s, self.ids[s].verifier()) for s in SITES}
        self.round = SecureRound(
            run="run",
            number=round_num,
            attempt=self.announcement.announcement,
            settings=SETTINGS,
            length=encoding.length if encoding else LENGTH + 1,
            modulus=encoding or SETTINGS.quant_spec,
            min_updates=3,
            expected=set(SITES),
            deadline=self.announcement.deadline,
            verify=signature_check(gateway.verifier(), allow_unsigned=False),
        )
        rng = np.random.default_rng(0)
        self.deltas = {s: rng.normal(scale=0.01, size=LENGTH) for s in SITES}
        self.examples = {s: 10 * (i + 1) for i, s in enumerate(SITES)}

    def to_gateway(self, site: str, env: Envelope | None) -> str | None:
        assert env is not None
        whole = None
        reassembler = Reassembler(max_payload=1 << 24)
        for chunk in split(self.ids[site].signer.sign_envelope(env), 1024):
            whole = reassembler.add(wire.from_bytes(wire.to_bytes(chunk)))
        assert whole is not None
        return self.round.offer(whole, site)

    def to_site(self, site: str, env: Envelope) -> Envelope | None:
        signed = self.gateway_signer.sign_envelope(env)
        return self.sites[site].on_message(wire.from_bytes(wire.to_bytes(signed)))

    def advertise(self, sites: list[str]) -> None:
        rng = np.random.default_rng(1)
        for s in sites:
            env = self.sites[s].begin(self.announcement, self.deltas[s], self.examples[s], rng)
            assert self.to_gateway(s, env) is None


def test_the_gateway_learns_the_weighted_sum_despite_dropouts(pki: FederationPki) -> None:
    fed = Federation(pki)
    fed.advertise(SITES)
    assert fed.round.complete()
    keys = fed.round.close_advertising()
    assert fed.round.threshold == 3  # a majority of 5
    for s in SITES[:4]:  # s4 drops before sharing
        assert fed.to_gateway(s, fed.to_site(s, keys)) is None
    inbox = fed.round.close_sharing()
    assert sorted(inbox) == SITES[:4]
    for s in SITES[:4]:
        masked = fed.to_site(s, inbox[s])
        assert masked is not None and masked.meta["step"] == Step.MASKED
        assert fed.to_gateway(s, masked) is None
    unmask = fed.round.close_masking()
    for s in SITES[:3]:  # s3 drops after sending its masked input
        assert fed.to_gateway(s, fed.to_site(s, unmask)) is None
    assert fed.round.complete()
    values, weight = fed.round.result()
    u3 = SITES[:4]
    assert weight == sum(fed.examples[s] for s in u3)
    truth = sum(fed.examples[s] * fed.deltas[s] for s in u3)
    assert np.abs(values - truth).max() <= len(u3) * SETTINGS.quant_spec.step
    assert fed.round.summary()["u3"] == u3


def test_wrong_round_attempt_sender_and_step_are_rejected(pki: FederationPki) -> None:
    fed = Federation(pki)
    rng = np.random.default_rng(2)
    env = fed.sites["s0"].begin(fed.announcement, fed.deltas["s0"], 10, rng)
    assert fed.to_gateway("s0", replace(env, round=2)) == "wrong round"
    assert fed.to_gateway("s0", env.with_meta(attempt="other")) == "wrong attempt"
    assert fed.to_gateway("s1", env) == "sender mismatch"
    assert fed.to_gateway("s0", env) is None
    assert fed.to_gateway("s0", env) == "duplicate"
    early = env.with_meta(step=str(Step.MASKED))
    assert str(fed.to_gateway("s0", replace(early, message_id="x"))).startswith("unexpected")
    unsigned = replace(env, sender="s1", meta={**env.meta})
    fed.round.verify = signature_check(_identity(pki, "s1").verifier(), allow_unsigned=False)
    reason = fed.round.offer(unsigned, "s1")  # not signed at all
    assert reason is not None and reason.startswith("unsigned")


def test_a_share_for_the_wrong_round_is_rejected(pki: FederationPki) -> None:
    """Shares sent in round 1 replayed into round 2's inbox do not decrypt: the site refuses."""
    old, new = Federation(pki, round_num=1), Federation(pki, round_num=2)
    for fed in (old, new):
        fed.advertise(SITES)
        keys = fed.round.close_advertising()
        for s in SITES:
            fed.to_gateway(s, fed.to_site(s, keys))
    replayed = old.round.close_sharing()["s0"]
    genuine = new.round.close_sharing()["s0"]
    forged = replace(genuine, payload=replayed.payload)  # round 1's ciphertexts, round 2's frame
    with pytest.raises(SecAggError, match="do not decrypt"):
        new.to_site("s0", forged)
    assert new.sites["s0"].attempt is None  # the attempt is abandoned, not half-run


def test_sites_refuse_a_low_threshold_and_substituted_keys(pki: FederationPki) -> None:
    fed = Federation(pki)
    fed.advertise(SITES)
    keys = fed.round.close_advertising()
    low = keys.with_meta(threshold=2)  # 2 of 5 would let two groups unmask separately
    with pytest.raises(SecAggError, match="below 3"):
        fed.to_site("s0", low)
    fed = Federation(pki)
    fed.advertise(SITES)
    keys = fed.round.close_advertising()
    ads = read_json(keys, list)
    s1 = wire.from_bytes(unb64(ads[1]))
    forged = s1.with_meta(c="00" * 32)  # the gateway swaps s1's channel key for its own
    ads[1] = b64(wire.to_bytes(forged))
    with pytest.raises(TrustError):
        fed.to_site("s0", replace(keys, payload=json_payload(ads)))


def test_too_few_unmasking_answers_fail_the_attempt(pki: FederationPki) -> None:
    fed = Federation(pki)
    fed.advertise(SITES)
    keys = fed.round.close_advertising()
    for s in SITES:
        fed.to_gateway(s, fed.to_site(s, keys))
    inbox = fed.round.close_sharing()
    for s in SITES:
        fed.to_gateway(s, fed.to_site(s, inbox[s]))
    unmask = fed.round.close_masking()
    for s in SITES[:2]:
        fed.to_gateway(s, fed.to_site(s, unmask))
    assert not fed.round.complete()
    with pytest.raises(SecAggError, match="need 3"):
        fed.round.result()
    fed.round.responses.clear()
    fed.round.masked = dict(list(fed.round.masked.items())[:2])
    with pytest.raises(SecAggError, match="need 3"):
        fed.round.close_masking()


def test_a_secure_evaluation_gives_the_summed_report_and_no_site_alone(
    pki: FederationPki,
) -> None:
    """Reports in the secure sum: the gateway gets the total of U3, equal to the plain sum."""
    encoding = ReportEncoding(2)
    fed = Federation(pki, encoding=encoding)
    rng = np.random.default_rng(3)
    reports = {}
    for i, s in enumerate(SITES):
        labels = rng.integers(0, 2, size=40 + 10 * i)
        logits = np.stack([np.zeros(labels.size), 2.0 * labels + rng.normal(size=labels.size)], 1)
        reports[s] = build_report(logits, labels, num_classes=2, positive_class=1)
    for s in SITES:
        env = fed.sites[s].begin_input(fed.announcement, encoding.encode(reports[s]), encoding)
        assert fed.to_gateway(s, env) is None
    keys = fed.round.close_advertising()
    for s in SITES:
        fed.to_gateway(s, fed.to_site(s, keys))
    inbox = fed.round.close_sharing()
    for s in SITES[:4]:  # s4 drops before masking: its report is not in the sum
        masked = fed.to_gateway(s, fed.to_site(s, inbox[s]))
        assert masked is None
    one = fed.round.masked["s0"]
    assert not np.array_equal(one, encoding.encode(reports["s0"]))  # masked, not readable
    unmask = fed.round.close_masking()
    for s in SITES[:3]:
        fed.to_gateway(s, fed.to_site(s, unmask))
    total = encoding.decode(fed.round.total(), len(fed.round.masked))
    plain = sum_reports([reports[s] for s in SITES[:4]])
    assert np.array_equal(total.hist, plain.hist)
    assert np.array_equal(total.confusion, plain.confusion)
    assert np.array_equal(total.rel_count, plain.rel_count)
    assert np.abs(total.nll - plain.nll).max() <= 4 * 2.0**-25
    assert abs(total.cross_entropy - plain.cross_entropy) <= 4 * 2.0**-25
    secure_auc = score_reports({"all": total}, positive_class=1)[0]
    plain_auc = score_reports({s: reports[s] for s in SITES[:4]}, positive_class=1)[0]
    assert secure_auc is not None and plain_auc is not None
    for key in ("auc", "threshold", "sensitivity", "specificity", "temperature", "examples"):
        assert secure_auc[key] == pytest.approx(plain_auc[key], abs=1e-12), key
