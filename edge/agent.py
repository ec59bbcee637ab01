"""The edge agent: joins the federation, trains on the site's images, keeps the newest model.

The agent never sends an image: only model weights, the number of local examples, local
training metrics and, for each new global model, an evaluation report of sums over the
site's held-out images (:mod:`edge.evaluation`) leave the device. Training needs TensorFlow
(the ``train`` extra); nothing here imports TensorFlow Federated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from edge.config import EdgeConfig
from edge.evaluation import log_own_figures, report_envelope
from edge.local_work import LocalWork
from edge.secure_participant import SecureParticipant
from edge.store import ONNX_FILE, ModelStore
from models.settings import LocalTraining
from privadx.common.data.medmnist import resolve_dataset
from privadx.common.errors import DataError, InputError, ModelError, PrivadxError
from privadx.common.evaluation.report import EvaluationReport, ReportError, build_report
from privadx.common.evaluation.secure_sum import ReportEncoding
from privadx.common.model_info import ModelInfo
from privadx.common.mqtt_link import LinkConfig, MqttLink
from privadx.common.secagg.protocol import SecAggError
from privadx.common.secagg.vector import flatten_update
from privadx.common.trust.identity import Identity
from privadx.common.trust.manifest import check_signed
from privadx.common.trust.pki import GATEWAY_IDENTITY, TrustError
from privadx.common.wire import envelope as wire
from privadx.common.wire import tensors
from privadx.common.wire.chunks import Reassembler, split
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.messages import (
    GATEWAY_SENDER,
    RUN_NONCE,
    Phase,
    Presence,
    RoundAnnouncement,
    presence_envelope,
    update_envelope,
)
from privadx.common.wire.secure import Step
from privadx.common.wire.topics import Topics
from privadx.common.wire.update_codec import model_update

log = logging.getLogger(__name__)

POLL = 0.2
EVAL_GRACE = 1.0
"""Seconds a new model is held before it is evaluated while no announcement names it yet: the
next round's announcement follows the model at once, and training comes first."""
MAX_MODEL_BYTES = 512 * 1024 * 1024
TrainingResult = tuple[dict[str, np.ndarray], int, dict[str, float]]
"""The update (``trained - base``), local example count, local metrics."""


@dataclass
class GlobalModel:
    """The newest global model received."""

    sha256: str
    round: int
    run: str
    weights: dict[str, np.ndarray]
    info: ModelInfo
    run_nonce: str = ""
    """The run's random value, echoed in this site's update and report of the model."""

    @property
    def key(self) -> tuple[str, int, str]:
        """(run, round, hash): a run with the same seed and data can reach the same weights."""
        return (self.run, self.round, self.sha256)


class EdgeAgent:
    """One site's participant in the federation."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self._stopping = threading.Event()
        self.topics = Topics(config.federation)
        self.store = ModelStore(config.model_dir)
        self.reassembler = Reassembler(max_payload=MAX_MODEL_BYTES, max_partial=8)
        self.model: GlobalModel | None = None
        self.announcement: RoundAnnouncement | None = None
        self.onnx_sha: str | None = None
        self._skipped: str | None = None
        """The announcement this agent decided not to train for."""
        self.work = LocalWork(config)
        """The site's images, and the training and scoring done on them."""
        self._evaluated: set[tuple[str, int, str]] = set()
        """Global models (run, round, hash) this site has reported on or given up evaluating.
        The run matters: a run with the same seed and data can reach the same weights."""
        self._model_since = 0.0
        self._last_report: tuple[tuple[str, int, str], Envelope] | None = None
        """The last plain report sent and its model: sent again if a restarted gateway
        publishes that model again (the gateway's evaluation of it was cut short)."""
        self._joined: set[str] = set()
        """Secure evaluations (announcement ids) this site has joined or let pass."""
        self.identity = Identity.load(config.identity) if config.identity else None
        if self.identity is not None and self.identity.name != config.site_id:
            raise InputError(
                f"identity {config.identity} belongs to {self.identity.name!r}, "
                f"not to site {config.site_id!r}"
            )
        self.verifier = self.identity.verifier() if self.identity else None
        self.secure = SecureParticipant(config.site_id, self.verifier)
        self._trained: tuple[tuple[str, int, str], TrainingResult] | None = None
        """The last local training: (run, round, base model) and its result, kept so a
        retried secure round reuses it instead of training again."""
        offline = presence_envelope(Kind.PRESENCE, config.site_id, Presence.OFFLINE)
        self.link = MqttLink(
            LinkConfig(
                broker=config.broker,
                client_id=f"privadx-site-{config.site_id}",
                version=config.mqtt_version,
                tls=self.identity.tls_files if self.identity else None,
                insecure=config.insecure,
                will=(self.topics.presence(config.site_id), wire.to_bytes(offline)),
                subscriptions=(
                    self.topics.round,
                    self.topics.model("#"),
                    self.topics.onnx("#"),
                    self.topics.secagg,
                    self.topics.inbox(config.site_id),
                ),
            ),
            on_connect=self._announce_online,
        )

    def _announce_online(self) -> None:
        """On every (re)connection, once the site is ready to train (see :meth:`_on_model`)."""
        if self.model is not None:
            self._publish_presence(Presence.ONLINE, wait=None)

    def _publish_presence(self, state: Presence, *, wait: float | None) -> None:
        evaluates = self.config.eval_fraction > 0 or self.config.eval_data is not None
        env = presence_envelope(Kind.PRESENCE, self.config.site_id, state, evaluates=evaluates)
        self.link.publish(
            self.topics.presence(self.config.site_id), wire.to_bytes(env), retain=True, wait=wait
        )

    # --- main loop ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the message it is handling (from any thread)."""
        self._stopping.set()

    def run(self, max_seconds: float | None = None) -> int:
        """Serve until stopped (or, with ``once``, until the run's ONNX model is saved).

        Raises:
            DataError: The site's training data is missing (checked before connecting).
        """
        resolve_dataset(self.config.data, fetch=False)
        if self.config.eval_data is not None:
            resolve_dataset(self.config.eval_data, fetch=False)
        self.link.start(timeout=120.0)
        started = time.monotonic()
        try:
            while True:
                self._process_one()
                self._maybe_train()
                self._maybe_evaluate()
                if self.config.once and self._finished():
                    log.info("run finished; model.onnx saved in %s", self.store.root)
                    return 0
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    return 0
                if self._stopping.is_set():
                    return 0
        finally:
            self.store.flush()
            self.store.save_state()
            self._leave()

    def _leave(self) -> None:
        """Say offline (the last will covers only a lost connection), then disconnect."""
        if self.link.connected.is_set():
            try:
                self._publish_presence(Presence.OFFLINE, wait=5.0)
            except PrivadxError as exc:
                log.warning("could not announce going offline: %s", exc)
        self.link.stop()

    def _finished(self) -> bool:
        """A run this site took part in is over and this site holds its exported model.

        A finished run without this site (say, the previous run's retained announcement seen
        before the gateway of the next run clears it) does not end the agent.
        """
        a = self.announcement
        if a is None or a.phase is not Phase.FINISHED or a.run not in self.store.state["submitted"]:
            return False
        return a.onnx_sha256 is None or a.onnx_sha256 == self.onnx_sha

    def _process_one(self) -> None:
        try:
            topic, payload, _ = self.link.inbox.get(timeout=POLL)
        except queue.Empty:
            return
        self.store.state["bytes_received"] += len(payload)
        if not payload:
            return
        try:
            env = wire.from_bytes(payload)
            if topic == self.topics.round:
                self._check_gateway(env)
                self.announcement = RoundAnnouncement.from_envelope(env)
            elif topic.startswith(self.topics.model("")):
                self._on_chunk(env, Kind.MODEL)
            elif topic.startswith(self.topics.onnx("")):
                self._on_chunk(env, Kind.ONNX)
            elif topic in (self.topics.secagg, self.topics.inbox(self.config.site_id)):
                self._on_chunk(env, Kind.SECAGG)
        except (WireError, DataError, InputError, TrustError) as exc:
            log.warning("ignored a message on %s: %s", topic, exc)
        except SecAggError as exc:
            log.warning("secure aggregation attempt abandoned: %s", exc)
        except Exception:  # a fault in one message must not end a service that runs for months
            log.exception("a message on %s could not be handled; dropped", topic)

    def _check_gateway(self, env: Envelope) -> None:
        """Refuse a message the federation's gateway did not sign (unless running unsigned)."""
        if self.verifier is not None:
            self.verifier.verify_envelope(env, GATEWAY_IDENTITY)

    def _on_chunk(self, env: Envelope, kind: Kind) -> None:
        if env.kind is not kind or env.sender != GATEWAY_SENDER:
            raise WireError(
                f"expected a {kind} chunk from the gateway, got {env.kind} from {env.sender}"
            )
        whole = self.reassembler.add(env)
        if whole is None:
            return
        self._check_gateway(whole)
        if kind is Kind.MODEL:
            self._on_model(whole)
        elif kind is Kind.ONNX:
            self._on_onnx(whole)
        else:
            self._on_secagg(whole)

    def _on_secagg(self, env: Envelope) -> None:
        reply = self.secure.on_message(env)
        if reply is None:
            return
        self._send(self._sign(reply), self.topics.site_secagg(self.config.site_id))
        at = self.secure.attempt
        training = at is not None and at.announcement.phase is Phase.TRAINING
        if training and reply.meta.get("step") == Step.MASKED:
            self.store.mark_submitted(reply.run, reply.round)

    def _on_onnx(self, env: Envelope) -> None:
        signed = env.meta.get("manifest")
        if self.verifier is not None:
            check_signed(signed, env.payload, ONNX_FILE, self.verifier)
        elif signed is None:
            log.warning("the federation's model.onnx is unsigned (running with --allow-unsigned)")
        self.store.save_onnx(
            env.payload,
            str(env.meta.get("onnx_sha256")),
            manifest=signed if isinstance(signed, dict) else None,
            ca_pem=self.identity.ca_file.read_bytes() if self.identity else None,
        )
        self.onnx_sha = str(env.meta["onnx_sha256"])
        log.info("saved the federation's model.onnx (%d bytes)", len(env.payload))

    def _on_model(self, env: Envelope) -> None:
        if env.meta.get("model_sha256") != env.meta.get("sha256"):
            raise WireError("global model hash does not match its content")
        weights = tensors.from_bytes(env.payload)
        try:
            info = ModelInfo.from_meta(env.meta)
        except ModelError as exc:
            raise WireError(f"global model message: {exc}") from None
        nonce = env.meta.get(RUN_NONCE, "")
        if not isinstance(nonce, str):
            raise WireError("global model message: malformed run nonce")
        model = GlobalModel(env.meta["sha256"], env.round, env.run, weights, info, nonce)
        self.store.save_global(weights, info.to_meta())
        log.info("received global model of round %d (run %s)", env.round, env.run)
        # A site says it is online once it has prepared for the first model (TensorFlow
        # started, model built, images loaded), so a round the gateway starts for it times
        # training, not start-up. Prepared or not: a problem is reported when training.
        self._prepare(model)
        first, self.model = self.model is None, model
        self._model_since = time.monotonic()
        if first:
            self._publish_presence(Presence.ONLINE, wait=None)
        if self._last_report is not None and self._last_report[0] == model.key:
            self._send(self._last_report[1], self.topics.evaluation(self.config.site_id))
            log.info("round %d model published again; sent this site's report again", model.round)

    def _prepare(self, m: GlobalModel) -> None:
        """Load the local images and build the Keras model before the round's clock runs.

        Both steps are cached (once per run); a problem is only logged here: training tries
        again when a round starts, and reports what still fails.
        """
        try:
            self.work.prepare(m.info)
        except Exception as exc:  # the round's training tries again
            log.warning("could not prepare local training yet: %s", exc, exc_info=_unforeseen(exc))

    # --- evaluation -------------------------------------------------------------------------
    def _maybe_evaluate(self) -> None:
        """Report on the current global model once nothing more urgent is waiting."""
        m, a = self.model, self.announcement
        if m is None or m.round < 1:
            return
        if a is not None and a.secure is not None:
            self._join_secure_evaluation(a, m)
            return
        key = m.key
        if key in self._evaluated or not self.link.inbox.empty() or self._training_due():
            return
        named = a is not None and a.model_sha256 == m.sha256
        if not named and time.monotonic() - self._model_since < EVAL_GRACE:
            return
        self._evaluated.add(key)
        report = self._held_out_report(m)
        if report is None:
            return
        env = self._sign(
            report_envelope(
                site=self.config.site_id,
                run=m.run,
                round_num=m.round,
                model_sha256=m.sha256,
                report=report,
                run_nonce=m.run_nonce,
            )
        )
        self._send(env, self.topics.evaluation(self.config.site_id))
        self._last_report = (key, env)

    def _join_secure_evaluation(self, a: RoundAnnouncement, m: GlobalModel) -> None:
        """Put this site's report on the announced model into the evaluation's secure sum."""
        if a.phase is not Phase.EVALUATION or a.model_sha256 != m.sha256:
            return
        if a.announcement in self._joined or not self.link.inbox.empty():
            return
        self._joined.add(a.announcement)
        if time.time() > a.deadline:
            log.warning("round %d model: the secure evaluation closed before this site", a.round)
            return
        report = self._held_out_report(m)
        if report is None:
            return
        encoding = ReportEncoding(len(m.info.class_names), m.info.preprocess.channels)
        try:
            x = encoding.encode(report)
        except ReportError as exc:
            log.warning("round %d model: cannot join the secure evaluation: %s", m.round, exc)
            return
        env = self.secure.begin_input(a, x, encoding)
        self._send(self._sign(env), self.topics.site_secagg(self.config.site_id))
        log.info("round %d model: report joining the secure evaluation", m.round)

    def _held_out_report(self, m: GlobalModel) -> EvaluationReport | None:
        """The report of ``m`` on this site's held-out images (logged); ``None``: none here."""
        try:
            logits = self.work.score_held_out(m.info, m.weights)
            if logits is None:
                return None
            held_out = self.work.held_out
            assert held_out is not None
            report = build_report(
                logits,
                held_out.labels,
                num_classes=held_out.num_classes,
                positive_class=m.info.positive_class,
            )
            report = replace(report, ood=self.work.ood_sums(m.info.ood))
        except Exception as exc:  # not fatal: the next round's model is evaluated again
            log.warning(
                "round %d model: could not evaluate it here: %s", m.round, exc,
                exc_info=_unforeseen(exc),
            )  # fmt: skip
            return None
        log_own_figures(report, m.round, m.info.positive_class)
        return report

    def _training_due(self) -> bool:
        """The current announcement asks this site to train on the current model, not done."""
        a, m = self.announcement, self.model
        if a is None or m is None or a.phase is not Phase.TRAINING:
            return False
        if a.model_sha256 != m.sha256 or a.announcement == self._skipped:
            return False
        if a.secure is not None:
            return self.secure.attempt_id != a.announcement
        return not self.store.submitted(a.run, a.round) and time.time() <= a.deadline

    # --- training ---------------------------------------------------------------------------
    def _maybe_train(self) -> None:
        a, m = self.announcement, self.model
        if a is None or m is None or a.phase is not Phase.TRAINING:
            return
        if a.secure is None and self.store.submitted(a.run, a.round):
            self._maybe_resend(a)
            return
        if a.model_sha256 != m.sha256 or a.announcement == self._skipped:
            return
        if a.secure is not None and self.secure.attempt_id == a.announcement:
            return  # this attempt is under way
        # Skipping is per announcement, not per round: a stale announcement (say, queued in
        # this site's session while it was down) must not cost it the round's retry.
        if time.time() > a.deadline:
            log.warning("round %d: deadline passed before this site could train", a.round)
            self._skipped = a.announcement
            return
        try:
            settings = LocalTraining.from_dict(a.training)
        except InputError as exc:
            log.warning("round %d: unusable training settings, round skipped: %s", a.round, exc)
            self._skipped = a.announcement
            return
        try:
            update, examples, metrics = self._trained_update(m, a, settings)
        except Exception as exc:  # the round's retry or the next round tries again
            log.error(
                "round %d: cannot train here, round skipped: %s", a.round, exc,
                exc_info=_unforeseen(exc),
            )  # fmt: skip
            self._skipped = a.announcement
            return
        if a.secure is not None:
            flat = flatten_update(update, m.weights)
            env = self.secure.begin(a, flat, examples, np.random.default_rng())
            self._send(self._sign(env), self.topics.site_secagg(self.config.site_id))
            log.info("round %d: trained; joining secure aggregation", a.round)
            return
        env = update_envelope(
            run=a.run,
            round_num=a.round,
            site=self.config.site_id,
            update=update,
            encoding=settings.encoding,
            examples=examples,
            metrics=metrics,
            base_model=m.sha256,
            run_nonce=m.run_nonce,
        )
        env = self._sign(env)
        self._send(env, self.topics.update(self.config.site_id))
        # Kept until the round is over: a gateway that lost it asks again (see _maybe_resend).
        # Written after sending, off the round's critical path: a crash before the write
        # leaves the round unsubmitted, and the restarted site trains the same update again
        # (it depends on the global model, the data and the seed only).
        self.store.record_sent(wire.to_bytes(env), a.run, a.round, a.announcement)
        log.info(
            "round %d: sent update (%d examples, loss %.4f)", a.round, examples, metrics["loss"]
        )

    def _trained_update(
        self, m: GlobalModel, a: RoundAnnouncement, settings: LocalTraining
    ) -> TrainingResult:
        """Train on the global model once per (run, round, model); a retry reuses it."""
        key = (a.run, a.round, m.sha256)
        if self._trained is None or self._trained[0] != key:
            self._trained = (key, self._train(m, a, settings))
        return self._trained[1]

    def _sign(self, env: Envelope) -> Envelope:
        return self.identity.signer.sign_envelope(env) if self.identity is not None else env

    def _send(self, env: Envelope, topic: str) -> None:
        for chunk in split(env, self.config.chunk_size):
            data = wire.to_bytes(chunk)
            self.link.publish(topic, data)
            self.store.state["bytes_sent"] += len(data)

    def _maybe_resend(self, a: RoundAnnouncement) -> None:
        """Send the kept update again if a new announcement of its round does not list it."""
        if self.config.site_id in a.accepted:
            return
        data = self.store.outbox_for(a.run, a.round, a.announcement)
        if data is None:
            return
        self.store.mark_resent(a.announcement)
        try:
            self._send(wire.from_bytes(data), self.topics.update(self.config.site_id))
        except WireError as exc:
            log.error("round %d: the kept update is unreadable (%s); not resent", a.round, exc)
            return
        log.info("round %d: the gateway does not hold this site's update; sent it again", a.round)

    def _train(
        self, m: GlobalModel, a: RoundAnnouncement, settings: LocalTraining
    ) -> TrainingResult:
        from models.settings import local_seed

        data = self.work.training_images(m.info)
        log.info("round %d: training on %d local images", a.round, len(data))
        seed = local_seed(a.seed, a.round, self.config.site_id)
        t0 = time.monotonic()
        trained, metrics = self.work.train(m.info, m.weights, settings, seed=seed)
        metrics["seconds"] = round(time.monotonic() - t0, 3)
        return model_update(trained, m.weights), len(data), metrics


def _unforeseen(exc: BaseException) -> bool:
    """A fault outside the project's own errors (log its trace): a bug, not bad input."""
    return not isinstance(exc, PrivadxError)
