"""The gateway's inbound side: take one message off the transport and hand it to its owner.

Presence goes into the run's record of who is online (and tells the open evaluation and
secure round); update, evaluation and secure-aggregation chunks go through the
:class:`gateway.intake.Intake` (per-site budgets, reassembly) and, once whole, to the plain
round, the federated evaluation or the secure round. A message that fails a check is
logged with its reason and counted against the round it was for; it never stops the
gateway.
"""

from __future__ import annotations

import logging

from gateway.evaluation import FederatedEvaluation
from gateway.intake import Intake
from gateway.plain_driver import PlainRounds
from gateway.rounds import GatewayRun
from gateway.secure_driver import SecureRounds
from gateway.transport import GatewayTransport, InboundError
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.messages import Presence
from privadx.common.wire.topics import Channel

log = logging.getLogger(__name__)

POLL = 0.2
"""Seconds to wait for a message before doing the clock's work (expiring partial messages)."""


class InboundRouter:
    """Routes each inbound message to the part of the gateway that owns it."""

    def __init__(
        self,
        *,
        transport: GatewayTransport,
        intake: Intake,
        evaluation: FederatedEvaluation,
        plain: PlainRounds,
        secure: SecureRounds,
    ) -> None:
        self.transport = transport
        self.intake = intake
        self.evaluation = evaluation
        self.plain = plain
        self.secure = secure

    def process_one(self, state: GatewayRun) -> None:
        """Handle the next message, if one arrives within :data:`POLL` seconds."""
        source = None
        try:
            msg = self.transport.receive(POLL)
            if msg is None:
                self.intake.expire()  # partial messages expire on the clock, not on traffic
                return
            source = msg.site
            if msg.channel is Channel.PRESENCE:
                self._on_presence(msg.site, msg.env, state)
            elif msg.channel is Channel.UPDATE:
                self._on_update_chunk(msg.site, msg.env, state)
            elif msg.channel is Channel.SECAGG:
                self._on_secagg_chunk(msg.site, msg.env, msg.nbytes)
            elif msg.channel is Channel.EVALUATION:
                self._on_evaluation_chunk(msg.site, msg.env)
        except WireError as exc:
            self._count_rejected(exc, source)

    def _count_rejected(self, exc: WireError, source: str | None) -> None:
        where = exc.source if isinstance(exc, InboundError) else source
        label = exc.label if isinstance(exc, InboundError) else "malformed"
        if label is None:
            log.debug("dropped a message from %s: %s", where, exc)
            return
        log.warning("rejected a message from %s: %s", where, exc)
        if isinstance(exc, InboundError) and exc.channel is Channel.EVALUATION:
            self.evaluation.count_rejected(label)
            return
        if self.plain.current is not None:
            self.plain.current.rejected[label] += 1
        if self.secure.current is not None:
            self.secure.current.rejected[label] += 1

    def _on_presence(self, site: str, env: Envelope, state: GatewayRun) -> None:
        if env.kind is not Kind.PRESENCE or env.sender != site:
            raise WireError(
                f"presence message from {site} claims to be {env.kind} from {env.sender}"
            )
        previous = state.online.get(site, {}).get("state")
        state.online[site] = dict(env.meta)
        if env.meta.get("state") == Presence.ONLINE:
            if env.meta.get("evaluates") is True:
                self.evaluation.site_online(site)
            if self.plain.current is not None:  # joined during the round: it gets its chance
                self.plain.current.expected.add(site)
        else:
            self.evaluation.site_offline(site)
            if self.secure.current is not None:
                self.secure.current.site_offline(site)
        if previous != env.meta.get("state"):
            log.info("site %s is %s", site, env.meta.get("state"))

    def _on_update_chunk(self, site: str, env: Envelope, state: GatewayRun) -> None:
        whole = self.intake.add(site, Channel.UPDATE, env)
        if whole is not None:
            self.plain.on_update(site, whole, state)

    def _on_evaluation_chunk(self, site: str, env: Envelope) -> None:
        whole = self.intake.add(site, Channel.EVALUATION, env)
        if whole is None:
            return
        reason = self.evaluation.offer(whole, site)
        if reason is None:
            log.debug("round %d: evaluation report from %s accepted", whole.round, site)
        elif reason == "late":
            log.info(
                "round %d: evaluation report from %s arrived after it closed", whole.round, site
            )
        elif reason != "duplicate":
            log.warning(
                "evaluation report from %s for round %d rejected: %s", site, whole.round, reason
            )

    def _on_secagg_chunk(self, site: str, env: Envelope, nbytes: int) -> None:
        secure = self.secure.current
        if secure is not None:
            secure.nbytes[site] += nbytes  # every byte the site sent, chunk headers included
        whole = self.intake.add(site, Channel.SECAGG, env)
        if whole is None:
            return
        if secure is None:
            log.info("secure-aggregation message from %s while no secure round is open", site)
            return
        reason = secure.offer(whole, site)
        if reason in (None, "duplicate", "late"):
            log.debug(
                "round %d: %s from %s: %s", secure.number, whole.meta.get("step"), site, reason
            )
        else:
            secure.rejected[reason.split(":")[0]] += 1
            log.warning(
                "round %d: secure-aggregation message from %s rejected: %s",
                secure.number,
                site,
                reason,
            )
