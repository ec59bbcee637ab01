"""Split large payloads into MQTT-sized chunks and reassemble them with bounded memory.

Every chunk is an :class:`~privadx.common.wire.envelope.Envelope` with the same message id and meta,
plus ``meta["chunk"] = {index, count, sha256, total_sha256, total_size}``. Reassembly checks
each chunk's hash on arrival and the whole payload's hash at the end, refuses payloads larger
than a limit (per kind of message, where the receiver knows one), and budgets partial payloads
per sender (a sender's oldest evicted first, never another sender's).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from privadx.common.wire.envelope import Envelope, WireError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256 * 1024
"""Payload bytes per chunk: well under Mosquitto's and rumqttd's packet limits as configured."""
ENVELOPE_OVERHEAD = 2048
"""Upper bound on envelope header bytes added to a chunk."""
MAX_PACKET = 1024 * 1024
"""Largest MQTT packet any PrivaDx client accepts or sends (``max_packet_size`` in the shipped
Mosquitto config); chunk sizes must leave room for the envelope below it."""

MAX_CHUNK_SIZE = MAX_PACKET - ENVELOPE_OVERHEAD - 1024
"""The largest chunk payload that still fits a packet with its envelope."""


def split(env: Envelope, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[Envelope]:
    """Cut ``env.payload`` into chunks of at most ``chunk_size`` bytes (at least one chunk)."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must lie in [1, {MAX_CHUNK_SIZE}]")
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
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Collects chunks per sender and message id; returns whole envelopes once verified.

    Memory is budgeted per sender, so one sender (say, a site whose topic the broker's ACL
    confines it to) cannot crowd out another's messages or make the receiver hold more than
    ``max_partial`` partial messages reserving ``max_sender_bytes`` declared bytes in all:
    a new message that does not fit evicts that sender's own oldest partial messages, never
    another sender's. Message ids are scoped by sender, so a chunk reusing another sender's
    id starts a message of its own. Partial messages expire ``timeout`` seconds after their
    first chunk (checked on every chunk and by :meth:`expire`).
    """

    def __init__(
        self,
        *,
        max_payload: int,
        max_partial: int = 64,
        max_sender_bytes: int | None = None,
        timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_payload = max_payload
        self.max_partial = max_partial
        """Partial messages one sender may have at a time."""
        self.max_sender_bytes = max_payload if max_sender_bytes is None else max_sender_bytes
        """Declared bytes one sender's partial messages may reserve together."""
        self.timeout = timeout
        self.clock = clock
        self._partial: OrderedDict[tuple[str, str], _Partial] = OrderedDict()
        self._reserved: Counter[str] = Counter()

    @property
    def buffered_bytes(self) -> int:
        """Bytes currently held in partial payloads."""
        return sum(p.size for p in self._partial.values())

    def reserved_by(self, sender: str) -> int:
        """Declared bytes of ``sender``'s partial messages (what it can make this hold)."""
        return self._reserved[sender]

    def add(
        self,
        chunk: Envelope,
        *,
        source: str | None = None,
        max_size: int | None = None,
        admit: Callable[[Envelope], None] | None = None,
    ) -> Envelope | None:
        """Add one chunk; return the whole message when its last chunk arrives.

        ``source``: who sent it as the transport knows it (a site's topic), by default the
        envelope's sender. ``max_size``: the largest payload this kind of message can have
        (below ``max_payload``). ``admit``: a last check before any byte is kept (say, the
        signature of the chunk's header); it raises :class:`WireError` to refuse the chunk.

        Raises:
            WireError: Malformed, corrupt, oversized or inconsistent chunk (the partial
                message it belongs to is dropped).
        """
        index, count, sha, total_sha, total_size = _chunk_info(chunk)
        limit = min(self.max_payload, self.max_sender_bytes)
        limit = limit if max_size is None else min(max_size, limit)
        if total_size > limit:
            raise WireError(f"payload of {total_size} bytes exceeds the limit of {limit}")
        sender = chunk.sender if source is None else source
        key = (sender, chunk.message_id)
        if hashlib.sha256(chunk.payload).hexdigest() != sha:
            self._drop(key)
            raise WireError(f"chunk {index}/{count} of {chunk.message_id} fails its SHA-256")
        if admit is not None:
            admit(chunk)
        self.expire()
        partial = self._partial.get(key)
        if partial is None:
            self._make_room(sender, total_size)
            partial = _Partial(count, total_sha, total_size, chunk, self.clock())
            self._partial[key] = partial
            self._reserved[sender] += total_size
        elif (partial.count, partial.total_sha, partial.total_size) != (
            count,
            total_sha,
            total_size,
        ):
            self._drop(key)
            raise WireError(f"chunk {index} of {chunk.message_id} disagrees with earlier chunks")
        if index in partial.parts:
            return None  # a duplicate delivery (QoS 1): already have it
        if partial.size + len(chunk.payload) > total_size:
            self._drop(key)
            raise WireError(f"chunks of {chunk.message_id} exceed the announced size")
        partial.parts[index] = chunk.payload
        partial.size += len(chunk.payload)
        if len(partial.parts) < count:
            return None
        self._drop(key)
        payload = b"".join(partial.parts[i] for i in range(count))
        if len(payload) != total_size or hashlib.sha256(payload).hexdigest() != total_sha:
            raise WireError(f"reassembled {chunk.message_id} fails its whole-payload SHA-256")
        meta = {k: v for k, v in partial.first.meta.items() if k != "chunk"}
        return replace(partial.first, payload=payload, meta={**meta, "sha256": total_sha})

    def discard(self, message_id: str, sender: str) -> None:
        """Forget a partial message."""
        self._drop((sender, message_id))

    def expire(self) -> None:
        """Drop partial messages older than the timeout."""
        now = self.clock()
        for key in [k for k, p in self._partial.items() if now - p.started > self.timeout]:
            log.warning("dropped incomplete message %s from %s (timed out)", key[1], key[0])
            self._drop(key)

    def _make_room(self, sender: str, size: int) -> None:
        """Evict ``sender``'s oldest partial messages until one more of ``size`` fits."""
        own = [k for k in self._partial if k[0] == sender]
        while own and (
            len(own) >= self.max_partial or self._reserved[sender] + size > self.max_sender_bytes
        ):
            key = own.pop(0)
            log.warning(
                "dropped incomplete message %s from %s (its partial messages are over budget)",
                key[1],
                sender,
            )
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        partial = self._partial.pop(key, None)
        if partial is not None:
            self._reserved[key[0]] -= partial.total_size
            if self._reserved[key[0]] <= 0:
                del self._reserved[key[0]]


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
