"""This site's side of a secure round: the gateway's steps in, this site's replies out.

In a training round the site quantizes ``examples * clip(update)`` (plus its example count)
once per attempt; in an evaluation it encodes its report on the announced model
(:mod:`privadx.common.evaluation.secure_sum`). Then it follows the steps of
:mod:`privadx.common.wire.secure`. The input never leaves the device in the clear: the gateway
receives it only added to pseudo-random masks that cancel in the sum.
Before sharing its secrets a site checks every peer's public keys against that peer's
certificate (so the gateway cannot slip in keys of its own) and that the threshold is a
majority of the sites, as :meth:`SecureSettings.threshold` demands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from privadx.common.secagg.protocol import SecAggClient, SecAggError
from privadx.common.secagg.quantize import quantize
from privadx.common.trust.signing import Verifier
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.messages import RoundAnnouncement
from privadx.common.wire.secure import (
    SecureSettings,
    Step,
    SumModulus,
    advertisement_fields,
    ciphertexts_payload,
    masked_payload,
    meta_value,
    read_advertisement,
    read_advertisements,
    read_ciphertexts,
    secagg_envelope,
    site_list,
    step_of,
    unmask_payload,
)

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    announcement: RoundAnnouncement
    settings: SecureSettings
    modulus: SumModulus
    client: SecAggClient
    x: np.ndarray
    done: set[Step]


class SecureParticipant:
    """Runs the site's steps of every secure attempt it takes part in."""

    def __init__(self, site: str, verifier: Verifier | None) -> None:
        self.site = site
        self.verifier = verifier
        self.attempt: _Attempt | None = None

    @property
    def attempt_id(self) -> str | None:
        """The announcement id of the attempt under way."""
        return self.attempt.announcement.announcement if self.attempt else None

    def begin(
        self, a: RoundAnnouncement, update: np.ndarray, examples: int, rng: np.random.Generator
    ) -> Envelope:
        """Start training attempt ``a`` with this site's update; return its ``advertise``."""
        settings = _settings(a)
        spec = settings.quant_spec
        weight = min(examples, spec.max_weight) if settings.weighted else 1
        if settings.weighted and weight < examples:
            log.warning("round %d: example count capped at %d for the secure sum", a.round, weight)
        return self._begin(a, quantize(update, spec, rng, weight=weight), spec)

    def begin_input(self, a: RoundAnnouncement, x: np.ndarray, modulus: SumModulus) -> Envelope:
        """Start attempt ``a`` with an input already encoded for ``modulus`` (a report)."""
        return self._begin(a, np.asarray(x, np.uint64), modulus)

    def _begin(self, a: RoundAnnouncement, x: np.ndarray, modulus: SumModulus) -> Envelope:
        settings = _settings(a)
        client = SecAggClient(
            self.site, a.run, a.round, settings.min_threshold, modulus.modulus_bits
        )
        self.attempt = _Attempt(a, settings, modulus, client, x, {Step.ADVERTISE})
        ad = client.advertise()
        return self._reply(Step.ADVERTISE, meta=advertisement_fields(ad))

    def on_message(self, env: Envelope) -> Envelope | None:
        """This site's reply to a gateway step (``None``: nothing to send).

        Raises:
            WireError, TrustError, SecAggError: The message is unusable or the attempt
                cannot go on; the attempt is then abandoned (the gateway retries the round).
        """
        at = self.attempt
        step = step_of(env)
        if at is None or env.meta.get("attempt") != at.announcement.announcement:
            return None  # another attempt's step (say, retained from before): not ours
        if step in at.done:
            return None  # redelivered
        if (env.run, env.round) != (at.announcement.run, at.announcement.round):
            raise WireError("secure-aggregation step for another run or round")
        try:
            reply = self._answer(at, step, env)
        except SecAggError:
            self.attempt = None
            raise
        at.done.add(step)
        return reply

    def _answer(self, at: _Attempt, step: Step, env: Envelope) -> Envelope | None:
        if step is Step.KEYS:
            return self._share_keys(at, env)
        if step is Step.SHARES:
            u2 = site_list(env, "u2")
            bad = at.client.receive_shares(read_ciphertexts(env))
            if bad:
                raise SecAggError(f"shares from {sorted(bad)} do not decrypt")
            y = at.client.masked_input(at.x, u2)
            log.info("round %d: sending the masked update", at.announcement.round)
            return self._reply(Step.MASKED, payload=masked_payload(y, at.modulus))
        if step is Step.UNMASK:
            answer = at.client.unmask(site_list(env, "u3"))
            return self._reply(Step.UNMASK, payload=unmask_payload(answer))
        return None

    def _share_keys(self, at: _Attempt, env: Envelope) -> Envelope:
        threshold = meta_value(env, "threshold", int)
        ads = {}
        for ad in read_advertisements(env):
            if (
                ad.kind is not Kind.SECAGG
                or ad.meta.get("step") != Step.ADVERTISE
                or ad.meta.get("attempt") != at.announcement.announcement
                or (ad.run, ad.round) != (at.announcement.run, at.announcement.round)
            ):
                raise WireError(f"advertisement of {ad.sender} is not for this attempt")
            if self.verifier is not None:  # the peer's own keys, not the gateway's
                self.verifier.verify_envelope(ad, ad.sender)
            ads[ad.sender] = read_advertisement(ad)
        if threshold < at.settings.threshold(len(ads)):
            raise SecAggError(
                f"threshold {threshold} is below {at.settings.threshold(len(ads))} for "
                f"{len(ads)} sites: refusing to share"
            )
        at.client.threshold = threshold
        shares = at.client.share_keys(ads)
        return self._reply(Step.SHARES, payload=ciphertexts_payload(shares))

    def _reply(
        self, step: Step, *, payload: bytes = b"", meta: dict[str, str] | None = None
    ) -> Envelope:
        at = self.attempt
        assert at is not None
        return secagg_envelope(
            step,
            run=at.announcement.run,
            round_num=at.announcement.round,
            sender=self.site,
            attempt=at.announcement.announcement,
            payload=payload,
            **(meta or {}),
        )


def _settings(a: RoundAnnouncement) -> SecureSettings:
    if a.secure is None:
        raise ValueError("round is not a secure round")
    return a.secure
