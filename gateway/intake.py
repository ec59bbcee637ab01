"""How much any one site can make the gateway hold: size limits per kind of message.

A site's message is reassembled from chunks before its signature can be checked, so its
declared size is checked first against what that kind of message can be for this run's model
and task, and every site's partial messages share one budget of their own
(:class:`privadx.common.wire.chunks.Reassembler`). The gateway then holds at most
``sites * sender_bytes`` of partial messages, whatever any site sends.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gateway.rounds import Verify
from gateway.transport import InboundError
from privadx.common.evaluation.report import BINS, RELIABILITY_BINS, TEMPERATURES
from privadx.common.evaluation.secure_sum import ReportEncoding
from privadx.common.ood import DISTANCE_EDGES, dimension
from privadx.common.wire.chunks import Reassembler
from privadx.common.wire.envelope import Envelope
from privadx.common.wire.topics import Channel

OVERHEAD = 64 * 1024
"""Room for tensor headers and JSON fields beyond the arrays themselves."""
SHARES_ROOM = 1024 * 1024
"""Room for a secure-aggregation step's keys and encrypted shares (about 250 bytes per site
of U1: a thousand sites fit)."""
PARTIAL_PER_SITE = 4
"""Partial messages one site may have at a time (an update, a retry, an evaluation, a step)."""
REFUSED_MEMORY = 4096
"""Refused messages remembered, so their further chunks are dropped without a count."""


@dataclass(frozen=True)
class MessageLimits:
    """Largest payload of each kind of site message, and one site's budget for partials."""

    update: int
    secagg: int
    evaluation: int

    @classmethod
    def for_run(
        cls, weights: dict[str, np.ndarray], num_classes: int, channels: int = 1
    ) -> MessageLimits:
        """Limits for a run's model (float32 updates are the largest encoding) and task."""
        values = sum(int(np.asarray(w).size) for w in weights.values())
        scored = 1 if num_classes == 2 else num_classes
        g, m = TEMPERATURES.size, RELIABILITY_BINS
        d = dimension(channels)
        ood_values = 1 + d + d * d + DISTANCE_EDGES.size + 1
        report_values = num_classes * scored * BINS + num_classes**2 + 1 + g + 3 * g * m
        report_values += ood_values
        masked = 8 * max(values + 1, ReportEncoding(num_classes, channels).length)
        return cls(
            update=4 * values + OVERHEAD,
            secagg=masked + SHARES_ROOM,
            evaluation=8 * report_values + OVERHEAD,
        )

    def of(self, channel: Channel) -> int:
        """The limit for messages on a site channel."""
        if channel is Channel.UPDATE:
            return self.update
        if channel is Channel.SECAGG:
            return self.secagg
        return self.evaluation

    @property
    def sender_bytes(self) -> int:
        """Declared bytes one site's partial messages may reserve together.

        Room for its largest message twice (a resend while the first is incomplete).
        """
        return 2 * max(self.update, self.secagg, self.evaluation)


class Intake:
    """Reassembles the sites' chunks within the run's limits, checking each chunk first."""

    def __init__(self, verify_chunk: Verify | None) -> None:
        self.verify_chunk = verify_chunk
        """The chunk-header signature check (``None``: no identity to check with)."""
        self.limits = MessageLimits(update=0, secagg=0, evaluation=0)
        self.reassembler = Reassembler(max_payload=0)
        """Replaced for the run's model by :meth:`configure`."""
        self._refused: OrderedDict[tuple[str, str], None] = OrderedDict()
        """Messages (site, id) whose chunk header failed: their other chunks are dropped
        uncounted, so one bad message counts once."""

    def configure(
        self, weights: dict[str, np.ndarray], num_classes: int, channels: int = 1
    ) -> None:
        """Set the limits for a run's model and task."""
        self.limits = MessageLimits.for_run(weights, num_classes, channels)
        self.reassembler = Reassembler(
            max_payload=max(self.limits.update, self.limits.secagg, self.limits.evaluation),
            max_partial=PARTIAL_PER_SITE,
            max_sender_bytes=self.limits.sender_bytes,
        )

    def add(self, site: str, channel: Channel, env: Envelope) -> Envelope | None:
        """A site's whole message once its last chunk is in; each chunk bounded and checked.

        Raises:
            InboundError: The chunk is refused (``label`` says how it is counted).
            WireError: The chunk is malformed, too large or inconsistent.
        """

        def admit(chunk: Envelope) -> None:
            key = (site, chunk.message_id)
            if key in self._refused:
                raise InboundError(site, "chunk of a refused message", channel, label=None)
            reason = self.verify_chunk(chunk, site) if self.verify_chunk else None
            if reason is not None:
                self._refused[key] = None
                while len(self._refused) > REFUSED_MEMORY:
                    self._refused.popitem(last=False)
                raise InboundError(site, reason, channel, label=reason.split(":")[0])

        return self.reassembler.add(env, source=site, max_size=self.limits.of(channel), admit=admit)

    def expire(self) -> None:
        """Drop partial messages past their timeout."""
        self.reassembler.expire()
