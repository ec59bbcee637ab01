"""The gateway's side of federated evaluation: collect the sites' reports, sum, score.

After publishing the model of round ``r`` the gateway opens its evaluation for the sites online
then. Each site scores its held-out images and sends one signed report
(:mod:`privadx.common.evaluation.report`); the evaluation closes when every expected site
reported or at its deadline, with those that did, and its record says who reported and who did not.
Reports arrive while the sites train the next round, so this is off the rounds' critical path.

Pure bookkeeping: no MQTT and no TensorFlow, so it is tested with plain envelopes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.rounds import Verify, routing_problem
from privadx.common.evaluation.federated import score_reports
from privadx.common.evaluation.report import SCHEME, EvaluationReport, ReportError, sum_reports
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import RUN_NONCE
from privadx.common.wire.tensors import TensorFormatError, from_bytes

log = logging.getLogger(__name__)

UNCOUNTED = ("duplicate", "late")
"""Reasons a report is not kept that are no fault of the sender: a report sent again (a site
resends it when a restarted gateway publishes the model again) or after its evaluation closed."""


@dataclass
class OpenEvaluation:
    """The evaluation of one global model: who is expected and what arrived."""

    round: int
    model_sha256: str
    expected: set[str]
    deadline: float
    reports: dict[str, EvaluationReport] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)

    def complete(self) -> bool:
        """Every expected site reported."""
        return bool(self.expected) and self.expected <= set(self.reports)


class FederatedEvaluation:
    """Open evaluations by round; turns the reports of a closed one into its record."""

    def __init__(
        self,
        *,
        run: str,
        num_classes: int,
        positive_class: int,
        timeout: float,
        verify: Verify | None,
        clock: Callable[[], float] = time.time,
        run_nonce: str = "",
        channels: int = 1,
    ) -> None:
        self.run = run
        self.channels = channels
        self.run_nonce = run_nonce
        """The run's random value; set once the run starts (empty: not checked)."""
        self.num_classes = num_classes
        self.positive_class = positive_class
        self.scored = 1 if num_classes == 2 else num_classes
        self.timeout = timeout
        self.verify = verify
        self.clock = clock
        self.open: dict[int, OpenEvaluation] = {}
        self.closed: set[int] = set()
        """Rounds whose evaluation has closed: a report for one is late, not malformed."""

    def start(self, round_num: int, model_sha256: str, expected: set[str]) -> None:
        """Open the evaluation of round ``round_num``'s model (replacing an older one)."""
        self.open[round_num] = OpenEvaluation(
            round_num, model_sha256, set(expected), self.clock() + self.timeout
        )

    def site_offline(self, site: str) -> None:
        """A site that went offline is no longer waited for."""
        for evaluation in self.open.values():
            if site not in evaluation.reports:
                evaluation.expected.discard(site)

    def site_online(self, site: str) -> None:
        """A site that came online is expected by the evaluation of the newest model."""
        if self.open:
            self.open[max(self.open)].expected.add(site)

    def offer(self, env: Envelope, site: str) -> str | None:
        """Validate and keep a report; ``None`` if accepted, else the reason (counted)."""
        evaluation = self.open.get(env.round)
        reason = self._check(env, site, evaluation)
        report = None
        if reason is None and self.verify is not None:
            reason = self.verify(env, site)
        if reason is None:
            try:
                report = EvaluationReport.from_tensors(
                    from_bytes(env.payload), self.num_classes, self.scored, self.channels
                )
            except (TensorFormatError, ReportError) as exc:
                reason = f"malformed report: {exc}"
        if reason is None and evaluation is not None and report is not None:
            evaluation.reports[site] = report
            return None
        if reason is not None and reason not in UNCOUNTED:
            self.count_rejected(reason.split(":")[0], evaluation)
        return reason

    def count_rejected(self, reason: str, evaluation: OpenEvaluation | None = None) -> None:
        """Count a rejected report in its evaluation, else in the newest open one."""
        target = evaluation or (self.open[max(self.open)] if self.open else None)
        if target is not None:
            target.rejected[reason] += 1

    def _check(self, env: Envelope, site: str, evaluation: OpenEvaluation | None) -> str | None:
        problem = routing_problem(env, site, Kind.EVALUATION, self.run)
        if problem is not None:
            return problem
        if evaluation is None:
            if env.round in self.closed:
                return "late"
            return f"wrong round: no evaluation of round {env.round}'s model is open"
        if site in evaluation.reports:
            return "duplicate"
        if env.meta.get("base_model") != evaluation.model_sha256:
            return "stale model: report is of another global model"
        if self.run_nonce and env.meta.get(RUN_NONCE) != self.run_nonce:
            return "stale run: report was made in another run with the same id"
        if env.meta.get("scheme") != SCHEME:
            return f"wrong scheme: {env.meta.get('scheme')!r}, expected {SCHEME!r}"
        return None

    def due(self) -> list[int]:
        """Rounds whose evaluation can close: complete, expecting no site, or past the deadline.

        An evaluation no site was expected for (none holds images back) closes at once: the
        gateway does not wait out the evaluation timeout for reports nobody will send.
        """
        now = self.clock()
        return sorted(
            r for r, e in self.open.items() if e.complete() or not e.expected or now >= e.deadline
        )

    def close(self, round_num: int) -> dict[str, Any]:
        """Close round ``round_num``'s evaluation; its record (``federated``, ``sites``).

        ``ood_sums`` holds the summed out-of-distribution sums (not for the record as such).
        """
        evaluation = self.open.pop(round_num)
        self.closed.add(round_num)
        reported = sorted(evaluation.reports)
        record: dict[str, Any] = {
            "sites_reported": reported,
            "sites_missing": sorted(evaluation.expected - set(reported)),
            "rejected": dict(evaluation.rejected),
        }
        record["federated"], record["sites"] = score_reports(
            evaluation.reports, positive_class=self.positive_class
        )
        record["ood_sums"] = (
            sum_reports(list(evaluation.reports.values())).ood if evaluation.reports else None
        )
        return record
