"""The gateway service: announce rounds, collect updates, aggregate with TFF, publish models.

One thread runs the protocol; paho's network thread only enqueues raw messages
(:class:`privadx.common.mqtt_link.MqttLink`). Every inbound message is decoded, validated and
routed by :class:`gateway.inbound.InboundRouter` on that thread; a bad one is logged with its
reason and counted, never allowed to stop the service.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import numpy as np

from gateway.benchmark import BenchmarkScoring, load_benchmark
from gateway.checkpoint import Progress, RunCheckpoint
from gateway.config import GatewayConfig
from gateway.evaluation import FederatedEvaluation
from gateway.final_model import RunFacts, export_signed, weights_meta
from gateway.inbound import InboundRouter
from gateway.intake import Intake
from gateway.ood_reference import OodReference
from gateway.outcome import (
    affordable_rounds_of,
    federated_summary,
    final_record,
    headline,
    privacy_facts,
    privacy_guarantee,
)
from gateway.plain_driver import PlainRounds
from gateway.plots import plot_federated
from gateway.rounds import (
    AcceptedUpdate,
    GatewayRun,
    QuorumError,
    ServerFactory,
    ServerStep,
    chunk_check,
    signature_check,
)
from gateway.run_registry import RunRegistry
from gateway.secure_driver import SecureRounds
from gateway.transport import GatewayTransport
from privadx.common.evaluation.decision import decision
from privadx.common.runlog import RunFolder, json_ready
from privadx.common.trust.identity import Identity
from privadx.common.weights_io import save_weights
from privadx.common.wire.messages import (
    Phase,
    Presence,
    RoundAnnouncement,
    model_envelope,
)
from privadx.common.wire.topics import Channel
from tff_core.robust import AggregationRule

log = logging.getLogger(__name__)


class Gateway:
    """Runs one federated training run over MQTT."""

    def __init__(
        self,
        config: GatewayConfig,
        transport: GatewayTransport | None = None,
        *,
        server: tuple[dict[str, np.ndarray], ServerFactory] | None = None,
    ) -> None:
        """A gateway for ``config``.

        ``transport``: over MQTT unless given. ``server``: initial weights and the server step
        to use instead of TFF's; the gateway then builds no Keras model (so cannot export).
        """
        self.config = config
        self._server = server
        self.model: Any = None
        """The Keras model (its graph exports the ONNX model and scores --eval-data)."""
        self.task = config.task
        self.preprocess = self.task.preprocess()
        self.model_spec = self.task.model_spec()
        self.positive_class = self.task.positive_class
        self.benchmark = load_benchmark(config)
        """The public benchmark of --eval-data, if given; otherwise no image file is opened."""
        self.scoring = BenchmarkScoring(config, self.benchmark)
        self.folder = RunFolder(config.out)
        self.checkpoint = RunCheckpoint(config.out / "checkpoint")
        self.records: list[dict[str, Any]] = []
        self.rounds = affordable_rounds_of(config)
        """Rounds this run trains: all asked for, or as many as --target-epsilon affords."""
        self.identity = Identity.load(config.identity) if config.identity else None
        verifier = self.identity.verifier() if self.identity else None
        self.verify_update = signature_check(verifier, allow_unsigned=config.allow_unsigned)
        self.intake = Intake(chunk_check(verifier, allow_unsigned=config.allow_unsigned))
        self.evaluation = FederatedEvaluation(
            run=config.run_id,
            num_classes=self.task.num_classes,
            positive_class=self.positive_class,
            timeout=config.evaluation_timeout,
            verify=self.verify_update,
            channels=self.preprocess.channels,
        )
        self.ood = OodReference()
        self.transport = transport or GatewayTransport(config, self.identity)
        self.topics = self.transport.topics
        self.plain = PlainRounds(
            config,
            self.checkpoint,
            announce=self._announce_round,
            pump=self._process_one,
            verify=self.verify_update,
            streams=config.aggregation is AggregationRule.MEAN and config.dp is None,
        )
        self.secure = SecureRounds(
            config,
            self.transport,
            announce=self._announce_round,
            pump=self._process_one,
            verify=self.verify_update,
        )
        self.inbound = InboundRouter(
            transport=self.transport,
            intake=self.intake,
            evaluation=self.evaluation,
            plain=self.plain,
            secure=self.secure,
        )

    # --- the run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every round, export, publish the ONNX model; return the summary."""
        started = time.monotonic()
        state = GatewayRun(weights=self._initial_weights())
        self.intake.configure(state.weights, self.task.num_classes, self.preprocess.channels)
        progress = self.checkpoint.load(self.config.run_id, self.config.resume_settings())
        if progress is None and self.config.identity is not None:
            RunRegistry(self.config.identity).claim(self.config.run_id, self.config.out)
        state.run_nonce = (progress.run_nonce if progress else "") or secrets.token_hex(16)
        self.evaluation.run_nonce = state.run_nonce
        self.folder.write("config.json", self.config.record())
        self.transport.start()  # also clears a previous run's "finished" announcement
        try:
            with self._runtime():
                server = self._server_step(state.weights)
                pending = self._resume(progress, state, server)
                self._publish_model(state)
                self._reopen_evaluation(state)
                if progress is None:
                    self._wait_for_sites(state)
                for number in range(state.round + 1, self.rounds + 1):
                    self._run_round(state, server, number, pending)
                    pending = {}
                self._evaluate_pending()
                self._await_evaluations(state)
                self._commit(state, server)  # the last round's metrics are durable too
            summary = self._finish(state, time.monotonic() - started)
        finally:
            self.transport.stop()
        return summary

    def _initial_weights(self) -> dict[str, np.ndarray]:
        if self._server is not None:
            return dict(self._server[0])
        from models.architectures import build_model
        from models.weights import get_weights

        self.model = build_model(self.model_spec, seed=self.config.seed)
        return get_weights(self.model)

    def _runtime(self) -> AbstractContextManager[Any]:
        if self._server is not None:
            return nullcontext()
        from tff_core.runtime import tff_runtime

        return tff_runtime()

    def _server_step(self, weights: dict[str, np.ndarray]) -> ServerStep:
        if self._server is not None:
            return self._server[1](weights)
        from tff_core.aggregation import FedAvgServer

        return FedAvgServer(
            weights,
            self.config.server_optimizer,
            self.config.aggregation,
            trim=self.config.trim,
            # On a secure sum the gateway adds the noise itself (gateway.secure_driver).
            dp=self.config.dp if self.config.secure is None else None,
        )

    def _resume(
        self, progress: Progress | None, state: GatewayRun, server: Any
    ) -> dict[str, AcceptedUpdate]:
        """Continue from the checkpoint, or commit round 0 of a fresh run."""
        if progress is None:
            self._commit(state, server)
            return {}
        state.weights = progress.weights
        state.round = progress.round
        server.restore(progress.server_state)
        self.records = progress.records
        if self.records and "evaluated_at" not in self.records[-1]:
            self.scoring.due(len(self.records) - 1, progress.weights)
        self.folder.write_metrics(self.records)
        log.info(
            "resuming run %s after round %d with %d accepted updates of round %d",
            self.config.run_id,
            progress.round,
            len(progress.pending),
            progress.round + 1,
        )
        return progress.pending

    def _commit(self, state: GatewayRun, server: Any) -> None:
        self.checkpoint.commit_round(
            run_id=self.config.run_id,
            round_num=state.round,
            weights=state.weights,
            server_state=server.state_arrays(),
            records=self.records,
            settings=self.config.resume_settings(),
            run_nonce=state.run_nonce,
        )

    def _run_round(
        self,
        state: GatewayRun,
        server: Any,
        number: int,
        pending: dict[str, AcceptedUpdate],
    ) -> None:
        """Run round ``number`` up to publishing its model; its evaluation waits (see below).

        The round's model is evaluated on the test split while the sites train the next round
        (:meth:`_evaluate_pending`, called once the next round is announced), so evaluation
        is off the critical path of every round but the last.
        """
        t0, started_at = time.monotonic(), time.time()
        if self.config.secure is None:
            attempts, facts = self.plain.run_round(state, server, number, pending)
        else:
            attempts, facts = self.secure.run_round(state, server, number)
        state.round = number
        record: dict[str, Any] = {
            "series": "mqtt",
            "round": number,
            "attempts": attempts,
            "seconds": round(time.monotonic() - t0, 2),
            "started_at": round(started_at, 3),
            "closed_at": round(time.time(), 3),
            **facts,
            "aggregation": {"rule": str(self.config.aggregation), **server.last_measurements},
            # who the model's evaluation waits for, kept so a restarted gateway waits again
            "evaluating": sorted(_evaluating(state)),
        }
        if self.config.dp is not None:
            record["privacy"] = privacy_guarantee(self.config, number)
        self.records.append(json_ready(record))
        self.scoring.due(len(self.records) - 1, state.weights)
        self._commit(state, server)  # the round is durable from here on
        self.folder.write_metrics(self.records)
        log.info(
            "round %d/%d closed: %d updates (%d examples) in %.1f s%s",
            number,
            self.rounds,
            record["updates"],
            record["examples"],
            record["seconds"],
            f", epsilon {record['privacy']['epsilon']:.3f}" if "privacy" in record else "",
        )
        if number == self.rounds and self.ood.reference is None and self.evaluation.open:
            log.info("waiting for the last evaluation: the final model should carry its reference")
            self._await_evaluations(state)
        self._publish_model(state)
        self._open_evaluation(state, set(record["evaluating"]))

    def _open_evaluation(self, state: GatewayRun, expected: set[str]) -> None:
        """Evaluate the newest model (``state.round``'s) on the sites' held-out images.

        Plain: reports arrive while the sites train the next round. Secure aggregation: the
        reports are summed securely now, before the next round.
        """
        if self.config.secure is None:
            self.evaluation.start(state.round, state.model_sha256, expected)
            return
        fields = self.secure.evaluate(
            state,
            state.round,
            expected,
            num_classes=self.task.num_classes,
            positive_class=self.positive_class,
            channels=self.preprocess.channels,
        )
        if fields:
            fields["ood"] = self.ood.absorb(fields.pop("ood_sums"), state.round)
            self.records[-1].update(json_ready(fields))
            self.folder.write_metrics(self.records)

    def _reopen_evaluation(self, state: GatewayRun) -> None:
        """After a restart: evaluate again the last round's model if its evaluation was cut.

        The sites expected then are expected again; a site that had reported sends its kept
        report once it sees the model published again.
        """
        last = self.records[-1] if self.records else None
        if last is None or "evaluation" in last or last.get("round") != state.round:
            return
        log.info("round %d model: its evaluation was interrupted; opening it again", state.round)
        self._open_evaluation(state, set(last.get("evaluating", [])))

    def _close_evaluations(self) -> None:
        """Write every federated evaluation that can close into its round's record."""
        for number in self.evaluation.due():
            result = self.evaluation.close(number)
            record = next(r for r in reversed(self.records) if r["round"] == number)
            record["ood"] = self.ood.absorb(result.pop("ood_sums"), number)
            record["federated"] = json_ready(result.pop("federated"))
            record["sites"] = json_ready(result.pop("sites"))
            record["evaluation"] = {**result, "closed_at": round(time.time(), 3)}
            self.folder.write_metrics(self.records)
            fed = record["federated"] or {}
            log.info(
                "round %d/%d model: federated AUC %s, accuracy %s (%d of %d sites reported)",
                number,
                self.rounds,
                _fmt(fed.get("auc")),
                _fmt(fed.get("accuracy")),
                len(result["sites_reported"]),
                len(result["sites_reported"]) + len(result["sites_missing"]),
            )

    def _await_evaluations(self, state: GatewayRun) -> None:
        """Wait until the sites reported on the final model (or its evaluation timed out)."""
        while self.evaluation.open:
            self._process_one(state)

    def _evaluate_pending(self) -> None:
        """Score the last closed round's model on the public benchmark, if not done yet."""
        if self.scoring.score_pending(self.model, self.records, self.rounds):
            self.folder.write_metrics(self.records)

    def _announce_round(
        self, state: GatewayRun, number: int, *, accepted: tuple[str, ...] = ()
    ) -> tuple[RoundAnnouncement, set[str]]:
        """Publish round ``number``'s announcement; return it and the sites online now."""
        announcement = RoundAnnouncement(
            run=self.config.run_id,
            round=number,
            model_sha256=state.model_sha256,
            deadline=time.time() + self.config.round_timeout,
            min_updates=self.config.min_sites,
            training=self.config.training_for(number).to_dict(),
            seed=self.config.seed,
            accepted=accepted,
            secure=self.config.secure,
        )
        self.transport.publish_round(announcement.to_envelope())
        self._evaluate_pending()  # the previous round's model, while the sites train
        expected = _online(state)
        log.info(
            "round %d/%d announced to %d online sites (deadline in %.0f s%s)",
            number,
            self.rounds,
            len(expected),
            self.config.round_timeout,
            ", secure aggregation" if self.config.secure else "",
        )
        return announcement, expected

    def _wait_for_sites(self, state: GatewayRun) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        log.info("waiting for %d sites to come online", self.config.min_sites)
        while len(_online(state)) < self.config.min_sites:
            if time.monotonic() > deadline:
                raise QuorumError(
                    _start_shortfall(state, self.config.min_sites, self.config.start_timeout)
                )
            self._process_one(state)

    # --- inbound messages -------------------------------------------------------------------
    def _process_one(self, state: GatewayRun) -> None:
        """Close what evaluations can close, then handle the next message (if any)."""
        self._close_evaluations()
        self.inbound.process_one(state)

    # --- outbound messages -----------------------------------------------------------------
    def _publish_model(self, state: GatewayRun) -> None:
        env = model_envelope(
            self.config.run_id,
            state.round,
            state.weights,
            replace(self.task.model_info(), ood=self.ood.reference).to_meta(),
            run_nonce=state.run_nonce,
        )
        state.model_sha256 = env.meta["model_sha256"]
        self.transport.publish_chunked(Channel.MODEL, env)

    # --- evaluation and the end of the run --------------------------------------------------
    def _finish(self, state: GatewayRun, seconds: float) -> dict[str, Any]:
        rule = decision(self.records)
        head = headline(self.records, benchmark=self.benchmark is not None)
        fed = federated_summary(self.records)
        facts = RunFacts(
            config=self.config,
            task=self.task,
            benchmark=self.benchmark,
            records=self.records,
            rounds=self.rounds,
            round=state.round,
            sites_online=sorted(state.online),
            model_sha256=state.model_sha256,
            privacy=privacy_facts(self.config, state.round),
            ood=self.ood.reference,
        )
        meta = weights_meta(facts, rule, head, fed["federated"])
        save_weights(self.config.out / "weights.npz", state.weights, meta)
        summary: dict[str, Any] = {
            **head,
            **fed,
            "decision": rule.to_dict(),
            "rounds": self.rounds,
            "sites_online": len(state.online),
            "task": self.task.name,
            "benchmark": self.benchmark.name if self.benchmark else None,
            "run": self.config.run_id,
            "seconds": round(seconds, 1),
            "test": final_record(self.records).get("test"),
            "gateway_bytes_published": self.transport.bytes_published,
            "privacy": facts.privacy,
        }
        onnx_sha = None
        if self.config.export_onnx:
            path, onnx_sha, signed = export_signed(
                self.model, state.weights, meta, facts, self.identity, self.preprocess
            )
            self.transport.publish_onnx(self.rounds, path.read_bytes(), onnx_sha, signed)
            summary["onnx"] = {"path": path.name, "sha256": onnx_sha}
        done = RoundAnnouncement(
            run=self.config.run_id,
            round=self.rounds,
            model_sha256=state.model_sha256,
            deadline=time.time(),
            min_updates=self.config.min_sites,
            training=self.config.training_for(self.rounds).to_dict(),
            seed=self.config.seed,
            phase=Phase.FINISHED,
            onnx_sha256=onnx_sha,
        )
        self.transport.publish_round(done.to_envelope())
        self.folder.write("summary.json", summary)
        self.folder.plot()
        plot_federated(self.folder.root, self.records)
        return summary


def _online(state: GatewayRun) -> set[str]:
    return {s for s, p in state.online.items() if p.get("state") == Presence.ONLINE}


def _evaluating(state: GatewayRun) -> set[str]:
    """Online sites that hold images back for evaluation (they say so when online)."""
    return {s for s in _online(state) if state.online[s].get("evaluates") is True}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def _start_shortfall(state: GatewayRun, needed: int, waited: float) -> str:
    """Why the run cannot start: how many sites are online, and which were seen and left."""
    online = _online(state)
    gone = sorted(set(state.online) - online)
    said = f" ({', '.join(gone)} came and went offline)" if gone else ""
    return (
        f"only {len(online)} of the {needed} required sites came online within {waited:.0f} s{said}"
    )
