"""Driving a plain round: announce, collect signed updates to the quorum, retry, aggregate.

The bookkeeping of one round is :class:`gateway.rounds.RoundState`; this driver announces
the round (again, for a retry, keeping the updates accepted so far), pumps the gateway's
inbox until the quorum or the deadline, stores every accepted update before counting it,
and runs the server step on the updates in site order. The server step is whatever the
service was given (TFF's in deployment), so the round logic runs in tests without TFF or a
broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.checkpoint import RunCheckpoint
from gateway.config import GatewayConfig
from gateway.rounds import (
    AcceptedUpdate,
    GatewayRun,
    QuorumError,
    RoundState,
    Verify,
)
from gateway.streaming import StreamingMean
from privadx.common.weighting import cap_example_counts
from privadx.common.wire.envelope import Envelope
from privadx.common.wire.messages import RoundAnnouncement

log = logging.getLogger(__name__)

Announce = Callable[..., tuple[RoundAnnouncement, set[str]]]
"""Publishes round ``number``'s announcement (``accepted=`` the sites already held)."""


class PlainRounds:
    """Runs rounds whose updates the gateway sees one by one (FedAvg, robust rules, DP)."""

    def __init__(
        self,
        config: GatewayConfig,
        checkpoint: RunCheckpoint,
        *,
        announce: Announce,
        pump: Callable[[Any], None],
        verify: Verify | None,
        streams: bool,
    ) -> None:
        self.config = config
        self.checkpoint = checkpoint
        self.announce = announce
        self.pump = pump
        """Handles one inbound message (or waits briefly) for a run state."""
        self.verify = verify
        self.streams = streams
        """Fold updates one at a time from disk (plain FedAvg: memory independent of the
        number of sites); TFF's robust and DP aggregators need every update at once."""
        self.current: RoundState | None = None
        """The open round, if any (inbound updates go to it)."""
        self._mean: StreamingMean | None = None

    def run_round(
        self, state: GatewayRun, server: Any, number: int, pending: dict[str, AcceptedUpdate]
    ) -> tuple[int, dict[str, Any]]:
        """Collect updates until the quorum; aggregate them. Returns (attempts, facts).

        Raises:
            QuorumError: The quorum was not reached in ``max_retries + 1`` attempts.
        """
        accepted = dict(pending)  # accepted updates carry over to a retry of the round
        try:
            for attempt in range(1, self.config.max_retries + 2):
                round_state = self._open(state, number, accepted)
                self.current = round_state
                while not round_state.ready():
                    if round_state.expired_without_quorum():
                        break
                    self.pump(state)
                accepted = round_state.accepted
                if round_state.ready():
                    break
                log.warning(
                    "round %d: %d of %d required updates by the deadline (attempt %d); retrying",
                    number,
                    len(round_state.accepted),
                    round_state.min_updates,
                    attempt,
                )
            else:
                raise QuorumError(
                    f"round {number} gathered fewer than {self.config.min_sites} updates in "
                    f"{self.config.max_retries + 1} attempts"
                )
        finally:
            self.current = None
        return attempt, self._aggregate(state, server, number, round_state)

    def _aggregate(
        self, state: GatewayRun, server: Any, number: int, round_state: RoundState
    ) -> dict[str, Any]:
        # Sorted by site: the aggregate must not depend on the order updates happened to arrive.
        ordered = sorted(round_state.accepted.items())
        counts = cap_example_counts(
            {s: u.examples for s, u in ordered}, self.config.max_weight_ratio
        )
        capped = {s: u.examples for s, u in ordered if counts[s] < u.examples}
        if capped:
            log.warning("round %d: example counts capped for %s", number, sorted(capped))
        if self.streams:
            if self._mean is None:
                self._mean = StreamingMean(state.weights)
            mean = self._mean
            mean.reset()
            for s, _ in ordered:
                mean.add(self.checkpoint.pending_update(number, s), counts[s])  # from disk
            updates = [(mean.mean_update(), int(mean.weight))]
        else:
            updates = [(u.update, counts[s]) for s, u in ordered]
        state.weights = server.aggregate(state.weights, updates)
        return {**round_state.summary(), "capped_examples": capped}

    def _open(
        self, state: GatewayRun, number: int, accepted: dict[str, AcceptedUpdate]
    ) -> RoundState:
        a, expected = self.announce(state, number, accepted=tuple(sorted(accepted)))
        return RoundState(
            run=self.config.run_id,
            number=number,
            model_sha256=state.model_sha256,
            deadline=a.deadline,
            min_updates=self.config.min_sites,
            expected=expected,
            accepted=dict(accepted),
            run_nonce=state.run_nonce,
        )

    def on_update(self, site: str, whole: Envelope, state: GatewayRun) -> None:
        """Offer a reassembled update to the open round; keep it on disk if accepted."""
        round_state = self.current
        if round_state is None:
            log.warning(
                "update from %s for round %d arrived while no round is open", site, whole.round
            )
            return
        reason = round_state.offer(whole, site, state.weights, verify=self.verify)
        if reason is None:
            try:
                self.checkpoint.save_pending(round_state.number, round_state.accepted[site])
            except OSError as exc:  # not durable, so not accepted: the site will resend it
                del round_state.accepted[site]
                log.error(
                    "round %d: could not store the update from %s: %s",
                    round_state.number,
                    site,
                    exc,
                )
                return
            if self.streams:  # it is on disk now; read back one at a time when the round closes
                update = round_state.accepted[site]
                round_state.accepted[site] = replace(update, update={})
            log.info(
                "round %d: update from %s accepted (%d/%d)",
                round_state.number,
                site,
                len(round_state.accepted),
                max(len(round_state.expected), round_state.min_updates),
            )
        elif reason != "duplicate":
            log.warning("round %d: update from %s rejected: %s", round_state.number, site, reason)
