"""Driving a secure-aggregation round: announce, step through the protocol, retry, aggregate.

The bookkeeping of one attempt is :class:`gateway.secure_round.SecureRound`; this driver
publishes each step's messages, pumps the gateway's inbox until the step completes or times
out, announces the round again when an attempt fails, and runs the server step on the sum.

After each round it sums the sites' evaluation reports of the new model the same way
(:meth:`SecureRounds.evaluate`): announced in the ``evaluation`` phase, one attempt, and the
gateway learns the summed report of the sites that took part, never one site's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.config import GatewayConfig
from gateway.rounds import GatewayRun, QuorumError, Verify
from gateway.secure_round import SecureRound
from gateway.transport import GatewayTransport
from privadx.common.evaluation.federated import federated_metrics
from privadx.common.evaluation.report import ReportError
from privadx.common.evaluation.secure_sum import ReportEncoding
from privadx.common.secagg.protocol import SecAggError
from privadx.common.secagg.vector import unflatten, vector_length
from privadx.common.wire.messages import Phase, RoundAnnouncement

log = logging.getLogger(__name__)


Announce = Callable[[Any, int], tuple[RoundAnnouncement, set[str]]]
"""Publishes round ``number``'s announcement for a run state; returns it and the sites online."""


class SecureRounds:
    """Runs rounds whose updates are summed by secure aggregation (Bonawitz et al. 2017)."""

    def __init__(
        self,
        config: GatewayConfig,
        transport: GatewayTransport,
        *,
        announce: Announce,
        pump: Callable[[Any], None],
        verify: Verify | None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.announce = announce
        self.pump = pump
        """Handles one inbound message (or waits briefly) for a run state."""
        self.verify = verify
        self.current: SecureRound | None = None
        """The open attempt, if any (inbound secure-aggregation messages go to it)."""
        self._noise = np.random.default_rng()
        """Source of the DP noise added to secure sums (fresh entropy, never seeded)."""

    def run_round(self, state: GatewayRun, server: Any, number: int) -> tuple[int, dict[str, Any]]:
        """Secure aggregation until one attempt recovers the sum; then the server step.

        The gateway learns ``sum_i n_i * clip(update_i)`` and ``sum_i n_i`` over the sites
        whose masked input arrived, i.e. the weighted mean of their clipped updates, and runs
        the TFF server step (mean of one, server optimizer) on it.
        """
        failures: list[str] = []
        for attempt in range(1, self.config.max_retries + 2):
            secure = self._open(state, number)
            self.current = secure
            try:
                values, weight = self._steps(secure, state)
                break
            except SecAggError as exc:
                failures.append(str(exc))
                log.warning(
                    "round %d: secure aggregation attempt %d failed: %s; announcing it again",
                    number,
                    attempt,
                    exc,
                )
            finally:
                self.current = None
        else:
            raise QuorumError(
                f"round {number}: secure aggregation failed {self.config.max_retries + 1} "
                f"times: {failures[-1]}"
            )
        if self.config.dp is not None:  # values: the unweighted sum of clipped updates
            from tff_core.privacy import noised_mean

            mean = unflatten(noised_mean(values, self.config.dp, self._noise), state.weights)
        else:
            mean = unflatten(values / weight, state.weights)
        state.weights = server.aggregate(state.weights, [(mean, weight)])
        u3 = sorted(secure.masked)
        return attempt, {
            "updates": len(u3),
            "expected": len(secure.expected),
            "examples": weight,
            "rejected": dict(secure.rejected),
            "update_bytes": {s: secure.nbytes[s] for s in u3},
            "secure_aggregation": {**secure.summary(), "failed_attempts": failures},
        }

    def _open(self, state: GatewayRun, number: int) -> SecureRound:
        a, expected = self.announce(state, number)
        assert self.config.secure is not None
        return SecureRound(
            run=self.config.run_id,
            number=number,
            attempt=a.announcement,
            settings=self.config.secure,
            length=vector_length(state.weights) + 1,
            modulus=self.config.secure.quant_spec,
            min_updates=self.config.min_sites,
            expected=expected,
            deadline=a.deadline,
            verify=self.verify,
        )

    def evaluate(
        self,
        state: GatewayRun,
        number: int,
        expected: set[str],
        *,
        num_classes: int,
        positive_class: int,
        channels: int = 1,
    ) -> dict[str, Any]:
        """Sum the sites' reports on round ``number``'s model; the record's evaluation fields.

        ``expected``: the online sites that hold images back. The evaluation closes with the
        sites whose masked report arrived; the record names them and the ones missing, and
        carries no per-site figure (the gateway has none). ``ood_sums`` holds the summed
        out-of-distribution sums.
        """
        settings = self.config.secure
        assert settings is not None
        if not expected:
            return {}  # no online site holds images back
        encoding = ReportEncoding(num_classes, channels)
        a = RoundAnnouncement(
            run=self.config.run_id,
            round=number,
            model_sha256=state.model_sha256,
            deadline=time.time() + self.config.evaluation_timeout,
            min_updates=settings.min_threshold,
            training=self.config.training_for(number).to_dict(),
            seed=self.config.seed,
            phase=Phase.EVALUATION,
            secure=settings,
        )
        self.transport.publish_round(a.to_envelope())
        secure = SecureRound(
            run=self.config.run_id,
            number=number,
            attempt=a.announcement,
            settings=settings,
            length=encoding.length,
            modulus=encoding,
            min_updates=settings.min_threshold,
            expected=set(expected),
            deadline=a.deadline,
            verify=self.verify,
        )
        self.current = secure
        federated, failure, ood = None, None, None
        try:
            self._drive(secure, state)
            report = encoding.decode(secure.total(), len(secure.masked))
            ood = report.ood
            federated = federated_metrics(
                report, positive_class=positive_class, sites_reported=len(secure.masked)
            )
        except (SecAggError, ReportError) as exc:
            failure = str(exc)
            log.warning("round %d model: the secure evaluation failed: %s", number, exc)
        finally:
            self.current = None
        reported = sorted(secure.masked) if failure is None else []
        if federated is not None:
            log.info(
                "round %d model: federated AUC %s from the secure sum of %d sites' reports",
                number,
                f"{federated['auc']:.4f}" if federated.get("auc") is not None else "n/a",
                len(reported),
            )
        return {
            "federated": federated,
            "ood_sums": ood,
            "sites": {},
            "evaluation": {
                "sites_reported": reported,
                "sites_missing": sorted(secure.expected - set(reported)),
                "rejected": dict(secure.rejected),
                "secure_aggregation": secure.summary(),
                "failed": failure,
                "closed_at": round(time.time(), 3),
            },
        }

    def _steps(self, secure: SecureRound, state: GatewayRun) -> tuple[np.ndarray, int]:
        """Drive one attempt through its steps; raises SecAggError when it cannot finish."""
        self._drive(secure, state)
        return secure.result()

    def _drive(self, secure: SecureRound, state: GatewayRun) -> None:
        """Drive one attempt up to its unmasking; raises SecAggError if it cannot get there."""
        topics = self.transport.topics
        self._collect(secure, state)
        self.transport.publish_secagg(topics.secagg, secure.close_advertising())
        log.info("round %d: %d sites advertised keys", secure.number, len(secure.u1))
        self._collect(secure, state)
        for site, env in secure.close_sharing().items():
            self.transport.publish_secagg(topics.inbox(site), env)
        self._collect(secure, state)
        self.transport.publish_secagg(topics.secagg, secure.close_masking())
        log.info("round %d: %d masked inputs arrived", secure.number, len(secure.masked))
        self._collect(secure, state)

    def _collect(self, secure: SecureRound, state: GatewayRun) -> None:
        while not secure.complete() and not secure.expired():
            self.pump(state)
