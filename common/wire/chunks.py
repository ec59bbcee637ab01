"""Split large payloads into MQTT-sized chunks and reassemble them with bounded memory.

Every chunk is an :class:`~common.wire.envelope.Envelope` with the same message id and meta,
plus ``meta["chunk"] = {index, count, sha256, total_sha256, total_size}``. Reassembly checks
each chunk's hash on arrival and the whole payload's hash at the end, refuses payloads larger
than a limit, and keeps at most a bounded number of partial payloads (oldest evicted first).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from common.wire.envelope import Envelope, WireError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256 * 1024
"""Payload bytes per chunk: well under Mosquitto's and rumqttd's packet limits as configured."""
ENVELOPE_OVERHEAD = 2048
"""Upper bound on envelope header bytes added to a chunk."""
MAX_PACKET = 1024 * 1024
"""Largest MQTT packet any PrivaDx client accepts or sends (``max_packet_size`` in the shipped
Mosquitto config); chunk sizes must leave room for the envelope below it."""


def split(env: Envelope, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[Envelope]:
    """Cut ``env.payload`` into chunks of at most ``chunk_size`` bytes (at least one chunk)."""
    if not 1 <= chunk_size <= MAX_PACKET - ENVELOPE_OVERHEAD - 1024:
        raise ValueError(f"chunk_size must lie in [1, {MAX_PACKET - ENVELOPE_OVERHEAD - 1024}]")
    payload = env.payload
    total_sha = hashlib.sha256(payload).hexdigest()
    count = max(1, -(-len(payload) // chunk_size))
    chunks = []
    for index in range(count):
        part = payload[index * chunk_size : (index + 1) * chunk_size]
        info = {
            "index": index,
            "count": count,
            "sha256": hashlib.sha256(part).hexdigest(),
            "total_sha256": total_sha,
            "total_size": len(payload),
        }
        chunks.append(replace(env, payload=part, meta={**env.meta, "chunk": info}))
    return chunks


@dataclass
class _Partial:
    count: int
    total_sha: str
    total_size: int
    first: Envelope
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    started: float = field(default_factory=time.monotonic)


class Reassembler:
    """Collects chunks per message id and returns whole envelopes once complete and verified."""

    def __init__(self, *, max_payload: int, max_partial: int = 64, timeout: float = 600.0) -> None:
        self.max_payload = max_payload
        self.max_partial = max_partial
        self.timeout = timeout
        self._partial: OrderedDict[str, _Partial] = OrderedDict()

    @property
    def buffered_bytes(self) -> int:
        """Bytes currently held in partial payloads."""
        return sum(p.size for p in self._partial.values())

    def add(self, chunk: Envelope) -> Envelope | None:
        """Add one chunk; return the whole message when its last chunk arrives.

        Raises:
            WireError: Malformed, corrupt, oversized or inconsistent chunk (the partial
                message it belongs to is dropped).
        """
        index, count, sha, total_sha, total_size = _chunk_info(chunk)
        if total_size > self.max_payload:
            raise WireError(
                f"payload of {total_size} bytes exceeds the limit of {self.max_payload}"
            )
        if hashlib.sha256(chunk.payload).hexdigest() != sha:
            self._partial.pop(chunk.message_id, None)
            raise WireError(f"chunk {index}/{count} of {chunk.message_id} fails its SHA-256")
        self._expire()
        partial = self._partial.get(chunk.message_id)
        if partial is None:
            partial = _Partial(count, total_sha, total_size, chunk)
            self._partial[chunk.message_id] = partial
            while len(self._partial) > self.max_partial:
                dropped, _ = self._partial.popitem(last=False)
                log.warning("dropped incomplete message %s (too many partial messages)", dropped)
        elif (partial.count, partial.total_sha, partial.total_size) != (
            count,
            total_sha,
            total_size,
        ):
            self._partial.pop(chunk.message_id, None)
            raise WireError(f"chunk {index} of {chunk.message_id} disagrees with earlier chunks")
        if index in partial.parts:
            return None  # a duplicate delivery (QoS 1): already have it
        if partial.size + len(chunk.payload) > total_size:
            self._partial.pop(chunk.message_id, None)
            raise WireError(f"chunks of {chunk.message_id} exceed the announced size")
        partial.parts[index] = chunk.payload
        partial.size += len(chunk.payload)
        if len(partial.parts) < count:
            return None
        del self._partial[chunk.message_id]
        payload = b"".join(partial.parts[i] for i in range(count))
        if len(payload) != total_size or hashlib.sha256(payload).hexdigest() != total_sha:
            raise WireError(f"reassembled {chunk.message_id} fails its whole-payload SHA-256")
        meta = {k: v for k, v in partial.first.meta.items() if k != "chunk"}
        return replace(partial.first, payload=payload, meta={**meta, "sha256": total_sha})

    def discard(self, message_id: str) -> None:
        """Forget a partial message."""
        self._partial.pop(message_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for mid in [m for m, p in self._partial.items() if now - p.started > self.timeout]:
            log.warning("dropped incomplete message %s (timed out)", mid)
            del self._partial[mid]


def _chunk_info(chunk: Envelope) -> tuple[int, int, str, str, int]:
    info = chunk.meta.get("chunk")
    try:
        index, count = int(info["index"]), int(info["count"])  # type: ignore[index]
        sha, total_sha = str(info["sha256"]), str(info["total_sha256"])  # type: ignore[index]
        total_size = int(info["total_size"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"message {chunk.message_id} has no valid chunk information") from exc
    if not 0 <= index < count or count > 100_000 or total_size < 0:
        raise WireError(f"chunk {index}/{count} of {chunk.message_id} is out of range")
    return index, count, sha, total_sha, total_size
