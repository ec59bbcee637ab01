"""The bookkeeping of one federated round: which updates were accepted, and why others weren't.

Pure logic, no MQTT and no TensorFlow: the service feeds it decoded updates and asks whether
the round can close. Duplicates (QoS 1 redelivery, or a site sending twice) are counted once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from privadx.common.errors import ExitCode, PrivadxError
from privadx.common.trust.pki import TrustError
from privadx.common.trust.signing import SIGNATURE_KEY, Verifier
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import RUN_NONCE
from privadx.common.wire.tensors import TensorFormatError, from_bytes
from privadx.common.wire.update_codec import Encoding, decode_update

Verify = Callable[[Envelope, str], "str | None"]
"""Checks an update's signature: ``None`` if it passes, else the reason."""


class ServerStep(Protocol):
    """The server's half of a round (TFF's :class:`tff_core.aggregation.FedAvgServer`)."""

    last_measurements: dict[str, Any]

    def aggregate(
        self,
        global_weights: dict[str, np.ndarray],
        updates: list[tuple[dict[str, np.ndarray], int]],
    ) -> dict[str, np.ndarray]:
        """New global weights from ``(update, examples)`` of each site (update: trained - base)."""
        ...  # pragma: no cover

    def state_arrays(self) -> list[np.ndarray]:
        """Its state as arrays, for the checkpoint."""
        ...  # pragma: no cover

    def restore(self, arrays: list[np.ndarray]) -> None:
        """Continue from :meth:`state_arrays`."""
        ...  # pragma: no cover


ServerFactory = Callable[[dict[str, np.ndarray]], ServerStep]
"""Builds the server step for a run's initial weights."""


def signature_check(verifier: Verifier | None, *, allow_unsigned: bool) -> Verify | None:
    """The gateway's check of site signatures (``None``: no identity, nothing to check with).

    A signed update must verify against the CA with the sending site's own certificate (the
    signature binds run, round and sender, so replays and forgeries fail); an unsigned one
    passes only with ``allow_unsigned``.
    """
    if verifier is None:
        return None

    def check(env: Envelope, site: str) -> str | None:
        if SIGNATURE_KEY not in env.meta:
            return None if allow_unsigned else "unsigned: update carries no signature"
        try:
            verifier.verify_envelope(env, site)
        except TrustError as exc:
            return f"bad signature: {exc}"
        return None

    return check


def chunk_check(verifier: Verifier | None, *, allow_unsigned: bool) -> Verify | None:
    """The check of a chunk's header before any of its bytes are kept (``None``: no identity).

    Every chunk carries its message's signature, which covers the whole payload's SHA-256;
    checked against the hash the chunk declares, it proves the sending site made a message of
    that content before the gateway buffers a byte of it. (The content itself is checked
    against that hash once complete.)
    """
    if verifier is None:
        return None

    def check(chunk: Envelope, site: str) -> str | None:
        if SIGNATURE_KEY not in chunk.meta:
            return None if allow_unsigned else "unsigned: message carries no signature"
        info = chunk.meta.get("chunk")
        declared = info.get("total_sha256") if isinstance(info, dict) else None
        if not isinstance(declared, str):
            return "malformed: no chunk information"
        try:
            verifier.verify_envelope(chunk, site, payload_sha256=declared)
        except TrustError as exc:
            return f"bad signature: {exc}"
        return None

    return check


@dataclass
class GatewayRun:
    """Mutable state of a run: the global model and who is online."""

    weights: dict[str, np.ndarray]
    model_sha256: str = ""
    round: int = 0
    online: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_nonce: str = ""
    """The run's random value (``privadx.common.wire.messages.RUN_NONCE``), kept across a resume."""


class QuorumError(PrivadxError):
    """A round could not gather enough updates, even after retries."""

    exit_code = ExitCode.QUORUM


@dataclass(frozen=True)
class AcceptedUpdate:
    """One site's contribution to a round."""

    site: str
    update: dict[str, np.ndarray]
    """``trained - base`` per tensor (float32; emptied once the update is on disk)."""
    examples: int
    metrics: dict[str, float]
    nbytes: int


@dataclass
class RoundState:
    """The open round: what was announced and what has arrived."""

    run: str
    number: int
    model_sha256: str
    deadline: float
    min_updates: int
    expected: set[str]
    accepted: dict[str, AcceptedUpdate] = field(default_factory=dict)
    seen_messages: set[str] = field(default_factory=set)
    rejected: Counter[str] = field(default_factory=Counter)
    opened: float = field(default_factory=time.time)
    run_nonce: str = ""
    """The run's random value (``privadx.common.wire.messages.RUN_NONCE``); empty: not checked."""

    def offer(
        self,
        env: Envelope,
        site: str,
        reference: dict[str, np.ndarray],
        *,
        verify: Verify | None = None,
    ) -> str | None:
        """Validate and record an update; return ``None`` if accepted, else the reason.

        ``verify(env, site)`` checks the update's signature (``None`` if it passes, else why).
        """
        reason = self._check(env, site, reference)
        if reason is None and verify is not None:
            reason = verify(env, site)
        if reason is None:
            try:
                update = decode_update(from_bytes(env.payload), reference, _encoding(env))
            except TensorFormatError as exc:
                reason = str(exc)
            else:
                self.accepted[site] = AcceptedUpdate(
                    site,
                    update,
                    int(env.meta["examples"]),
                    {
                        k: float(v)
                        for k, v in env.meta.get("metrics", {}).items()
                        if isinstance(v, int | float)
                    },
                    len(env.payload),
                )
        if reason is not None and reason != "duplicate":
            self.rejected[reason.split(":")[0]] += 1
        self.seen_messages.add(env.message_id)
        return reason

    def _check(self, env: Envelope, site: str, reference: dict[str, np.ndarray]) -> str | None:
        if env.message_id in self.seen_messages or site in self.accepted:
            return "duplicate"
        problem = routing_problem(env, site, Kind.UPDATE, self.run)
        if problem is not None:
            return problem
        if env.round != self.number:
            return f"wrong round: update for round {env.round} arrived during round {self.number}"
        if env.meta.get("base_model") != self.model_sha256:
            return "stale model: update was trained from another global model"
        if self.run_nonce and env.meta.get(RUN_NONCE) != self.run_nonce:
            return "stale run: update was made in another run with the same id"
        examples = env.meta.get("examples")
        if not isinstance(examples, int) or isinstance(examples, bool) or not 0 < examples < 10**9:
            return f"bad example count: {examples!r}"
        return None

    def ready(self, now: float | None = None) -> bool:
        """Whether to close: every expected site reported, or the deadline passed with quorum."""
        now = time.time() if now is None else now
        if (
            self.expected
            and self.expected <= set(self.accepted)
            and len(self.accepted) >= self.min_updates
        ):
            return True
        return now >= self.deadline and len(self.accepted) >= self.min_updates

    def expired_without_quorum(self, now: float | None = None) -> bool:
        """The deadline passed and too few updates arrived: the round must be retried."""
        now = time.time() if now is None else now
        return now >= self.deadline and len(self.accepted) < self.min_updates

    def summary(self) -> dict[str, Any]:
        """Facts of the round for the metrics log."""
        return {
            "updates": len(self.accepted),
            "expected": len(self.expected),
            "examples": sum(u.examples for u in self.accepted.values()),
            "rejected": dict(self.rejected),
            "update_bytes": {u.site: u.nbytes for u in self.accepted.values()},
            "site_metrics": {u.site: u.metrics for u in self.accepted.values()},
        }


def routing_problem(env: Envelope, site: str, kind: Kind, run: str) -> str | None:
    """Why a site's message is not ``kind`` from ``site`` in ``run``, or ``None``."""
    if env.kind is not kind:
        return f"wrong kind: {env.kind}"
    if env.sender != site:
        return f"sender mismatch: envelope says {env.sender!r}, topic says {site!r}"
    if env.run != run:
        return f"wrong run: {kind} for run {env.run} during run {run}"
    return None


def _encoding(env: Envelope) -> Encoding:
    value = env.meta.get("encoding", Encoding.FLOAT32)
    try:
        return Encoding(value)
    except ValueError:
        raise TensorFormatError(f"unknown encoding: {value!r}") from None
