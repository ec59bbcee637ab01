"""How much any one site can make the gateway hold: size limits per kind of message.

A site's message is reassembled from chunks before its signature can be checked, so its
declared size is checked first against what that kind of message can be for this run's model
and task, and every site's partial messages share one budget of their own
(:class:`common.wire.chunks.Reassembler`). The gateway then holds at most
``sites * sender_bytes`` of partial messages, whatever any site sends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.evaluation.report import BINS, RELIABILITY_BINS, TEMPERATURES
from common.evaluation.secure_sum import ReportEncoding
from common.wire.topics import Channel

OVERHEAD = 64 * 1024
"""Room for tensor headers and JSON fields beyond the arrays themselves."""
SHARES_ROOM = 1024 * 1024
"""Room for a secure-aggregation step's keys and encrypted shares (about 250 bytes per site
of U1: a thousand sites fit)."""
PARTIAL_PER_SITE = 4
"""Partial messages one site may have at a time (an update, a retry, an evaluation, a step)."""


@dataclass(frozen=True)
class MessageLimits:
    """Largest payload of each kind of site message, and one site's budget for partials."""

    update: int
    secagg: int
    evaluation: int

    @classmethod
    def for_run(cls, weights: dict[str, np.ndarray], num_classes: int) -> MessageLimits:
        """Limits for a run's model (float32 updates are the largest encoding) and task."""
        values = sum(int(np.asarray(w).size) for w in weights.values())
        scored = 1 if num_classes == 2 else num_classes
        g, m = TEMPERATURES.size, RELIABILITY_BINS
        report_values = num_classes * scored * BINS + num_classes**2 + 1 + g + 3 * g * m
        masked = 8 * max(values + 1, ReportEncoding(num_classes).length)
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
