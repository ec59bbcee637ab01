"""The versioned message envelope every PrivaDx MQTT message travels in.

Binary layout: ``b"PDX" | u8 schema version | u32 header length | JSON header | payload``.
The JSON header holds the envelope fields (kind, run, round, sender, message id, created-at)
and kind-specific ``meta``; the payload is opaque bytes (tensors, ONNX, or nothing).
An unknown schema version is refused explicitly rather than guessed at.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError

MAGIC = b"PDX"
SCHEMA_VERSION = 2
"""2: an update's tensors are always ``trained - base`` (in 1 a float32 update held weights)."""
_HEAD = struct.Struct("<3sBI")
MAX_HEADER = 64 * 1024


class Kind(StrEnum):
    """What a message is."""

    ROUND = "round"
    MODEL = "model"
    UPDATE = "update"
    ONNX = "onnx"
    PRESENCE = "presence"
    STATUS = "status"
    SECAGG = "secagg"
    EVALUATION = "evaluation"


class WireError(InputError):
    """A message violates the wire format; it is dropped with this reason."""


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """One message: routing facts, kind-specific metadata and an opaque payload."""

    kind: Kind
    run: str
    round: int
    sender: str
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""
    schema: int = SCHEMA_VERSION

    def with_meta(self, **extra: Any) -> Envelope:
        """A copy with ``extra`` merged into ``meta``."""
        return replace(self, meta={**self.meta, **extra})


def routing_fields(env: Envelope) -> dict[str, Any]:
    """The envelope's header fields other than ``meta``, as they go on the wire."""
    return {
        "kind": str(env.kind),
        "run": env.run,
        "round": env.round,
        "sender": env.sender,
        "message_id": env.message_id,
        "created_at": env.created_at,
    }


def to_bytes(env: Envelope) -> bytes:
    """Serialise an envelope."""
    header = json.dumps(
        {**routing_fields(env), "meta": env.meta}, separators=(",", ":"), sort_keys=True
    ).encode()
    return _HEAD.pack(MAGIC, env.schema, len(header)) + header + env.payload


def from_bytes(data: bytes) -> Envelope:
    """Parse and validate an envelope; raises :class:`WireError` with the reason."""
    if len(data) < _HEAD.size:
        raise WireError(f"message of {len(data)} bytes is too short for an envelope")
    magic, version, head_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise WireError("not a PrivaDx message (bad magic)")
    if version != SCHEMA_VERSION:
        raise WireError(
            f"schema version {version} is not supported (this side speaks {SCHEMA_VERSION})"
        )
    if head_len > MAX_HEADER or _HEAD.size + head_len > len(data):
        raise WireError(f"header length {head_len} is out of bounds")
    try:
        h = json.loads(data[_HEAD.size : _HEAD.size + head_len])
        env = Envelope(
            kind=Kind(h["kind"]),
            run=_text(h["run"]),
            round=_round(h["round"]),
            sender=_text(h["sender"]),
            message_id=_text(h["message_id"]),
            created_at=float(h["created_at"]),
            meta=_meta(h["meta"]),
            payload=bytes(data[_HEAD.size + head_len :]),
            schema=version,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed envelope header: {exc}") from exc
    return env


def _text(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise TypeError(f"expected a short non-empty string, got {value!r}")
    return value


def _round(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"round must be a non-negative integer, got {value!r}")
    return value


def _meta(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("meta must be an object")
    return value
