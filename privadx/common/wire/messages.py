"""The message kinds of the round protocol and the fields each one carries.

- ``ROUND`` (gateway, retained): run, round, the SHA-256 of the global model to start from, the
  local training settings, the deadline, the quorum, and the phase (training or finished).
  Every announcement has its own id and lists the sites whose update the gateway already
  holds: when a round is announced again (retry below quorum, or a restarted gateway), a
  site that sent its update but is not listed sends it again, so an update lost in transit
  or in a crash is recovered without retraining.
- ``MODEL`` (gateway, retained chunks): global weights as tensors plus what is needed to build
  the model (model spec, preprocessing, class names).
- ``UPDATE`` (site, chunks): the update (trained - base), example count, local metrics, base
  model hash.
- ``ONNX`` (gateway, retained chunks): the exported model file.
- ``SECAGG``: the steps of a secure round (:mod:`privadx.common.wire.secure`); a round announced
  with ``secure`` settings gets no plain ``UPDATE``.
- ``EVALUATION`` (site, chunks): the site's evaluation report of one global model on its
  held-out images (:mod:`privadx.common.evaluation.report`: sums only, no per-image value), the
  model's hash and the report's binning scheme.
- ``PRESENCE`` / ``STATUS`` (retained, also the last will): online/offline.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privadx.common.compat import StrEnum
from privadx.common.wire import tensors
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.secure import SecureSettings
from privadx.common.wire.update_codec import Encoding, encode_update

GATEWAY_SENDER = "gateway"
RUN_NONCE = "run_nonce"
"""Meta key of the run's random value: drawn by the gateway when a run starts (kept when it
resumes), sent with every global model and echoed, signed, in every update and report a site
makes of it. A message captured from an earlier run that had the same run id and the same
models carries another value and is refused."""


class Phase(StrEnum):
    """State of a run as announced on the round topic."""

    TRAINING = "training"
    EVALUATION = "evaluation"
    """Secure aggregation only: the sites sum their reports on the announced model."""
    FINISHED = "finished"


class Presence(StrEnum):
    """Online state of a participant."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, kw_only=True)
class RoundAnnouncement:
    """What the gateway asks of the sites in one round."""

    run: str
    round: int
    model_sha256: str
    deadline: float
    min_updates: int
    training: dict[str, Any]
    seed: int
    phase: Phase = Phase.TRAINING
    onnx_sha256: str | None = None
    announcement: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Id of this announcement (a new one for every retry or resume of the round)."""
    accepted: tuple[str, ...] = ()
    """Sites whose update for this round the gateway already holds."""
    secure: SecureSettings | None = None
    """Set when the round's updates are summed by secure aggregation (no plain update)."""

    def to_envelope(self) -> Envelope:
        """The ``ROUND`` message."""
        return Envelope(
            kind=Kind.ROUND,
            run=self.run,
            round=self.round,
            sender=GATEWAY_SENDER,
            meta={
                "model_sha256": self.model_sha256,
                "deadline": self.deadline,
                "min_updates": self.min_updates,
                "training": self.training,
                "seed": self.seed,
                "phase": str(self.phase),
                "onnx_sha256": self.onnx_sha256,
                "announcement": self.announcement,
                "accepted": list(self.accepted),
                "secure": self.secure.to_dict() if self.secure else None,
            },
        )

    @classmethod
    def from_envelope(cls, env: Envelope) -> RoundAnnouncement:
        """Parse a ``ROUND`` message; raises :class:`WireError`."""
        if env.kind is not Kind.ROUND:
            raise WireError(f"expected a round announcement, got {env.kind}")
        m = env.meta
        try:
            return cls(
                run=env.run,
                round=env.round,
                model_sha256=str(m["model_sha256"]),
                deadline=float(m["deadline"]),
                min_updates=int(m["min_updates"]),
                training=dict(m["training"]),
                seed=int(m["seed"]),
                phase=Phase(m["phase"]),
                onnx_sha256=m.get("onnx_sha256"),
                announcement=str(m["announcement"]),
                accepted=tuple(str(s) for s in m.get("accepted", [])),
                secure=SecureSettings.from_dict(m["secure"]) if m.get("secure") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"malformed round announcement: {exc}") from exc


def model_envelope(
    run: str,
    round_num: int,
    weights: dict[str, np.ndarray],
    info: dict[str, Any],
    *,
    run_nonce: str = "",
) -> Envelope:
    """The ``MODEL`` message for global ``weights``; ``meta["sha256"]`` identifies the model.

    ``run_nonce``: the run's random value, which sites echo in everything they send about
    this model (see :data:`RUN_NONCE`).
    """
    payload = tensors.to_bytes(weights)
    return Envelope(
        kind=Kind.MODEL,
        run=run,
        round=round_num,
        sender=GATEWAY_SENDER,
        payload=payload,
        meta={
            **info,
            "model_sha256": hashlib.sha256(payload).hexdigest(),
            RUN_NONCE: run_nonce,
        },
    )


def update_envelope(
    *,
    run: str,
    round_num: int,
    site: str,
    update: dict[str, np.ndarray],
    encoding: Encoding,
    examples: int,
    metrics: dict[str, float],
    base_model: str,
    run_nonce: str = "",
) -> Envelope:
    """A site's ``UPDATE`` message: its update (``trained - base``) in the run's encoding."""
    return Envelope(
        kind=Kind.UPDATE,
        run=run,
        round=round_num,
        sender=site,
        payload=tensors.to_bytes(encode_update(update, encoding)),
        meta={
            "examples": examples,
            "metrics": metrics,
            "base_model": base_model,
            "encoding": str(encoding),
            RUN_NONCE: run_nonce,
        },
    )


def evaluation_envelope(
    *, run: str, round_num: int, site: str, report: dict[str, np.ndarray], meta: dict[str, Any]
) -> Envelope:
    """A site's ``EVALUATION`` message: its report's tensors and ``meta`` (model, scheme)."""
    return Envelope(
        kind=Kind.EVALUATION,
        run=run,
        round=round_num,
        sender=site,
        payload=tensors.to_bytes(report),
        meta=meta,
    )


def presence_envelope(kind: Kind, sender: str, state: Presence, **extra: Any) -> Envelope:
    """A ``PRESENCE`` (site) or ``STATUS`` (gateway) message."""
    return Envelope(kind=kind, run="-", round=0, sender=sender, meta={"state": str(state), **extra})
