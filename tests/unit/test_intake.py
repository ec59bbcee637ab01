"""What one sender can make a receiver hold: per-sender budgets, scoped ids, kind limits, expiry.

The hostile cases measured against the old intake (one pool of 256 partial messages shared by
all sites, ids shared across sites, a timeout checked only when chunks arrive) each have a
test here, and a property test feeds random chunk sequences from hostile senders between an
honest sender's chunks.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.intake import MessageLimits
from privadx.common.wire.chunks import Reassembler, split
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.topics import Channel


def _env(sender: str, payload: bytes, message_id: str | None = None) -> Envelope:
    env = Envelope(kind=Kind.UPDATE, run="r", round=1, sender=sender, payload=payload)
    return replace(env, message_id=message_id) if message_id else env


def _declaring(sender: str, size: int, message_id: str) -> Envelope:
    """The first chunk of a message that declares ``size`` bytes and is never completed."""
    whole = _env(sender, b"x" * size, message_id)
    return split(whole, chunk_size=max(1, size // 4))[0]


def test_a_sender_flooding_partial_messages_cannot_evict_another_senders() -> None:
    r = Reassembler(max_payload=1000, max_partial=2, max_sender_bytes=2000)
    honest = split(_env("site-0", b"h" * 900), chunk_size=300)
    assert r.add(honest[0], source="site-0") is None
    for i in range(300):  # 300 tiny partial messages in a burst
        r.add(_declaring("site-1", 8, f"m{i}"), source="site-1")
        assert r.reserved_by("site-1") <= 2000
    for chunk in honest[1:-1]:
        assert r.add(chunk, source="site-0") is None
    whole = r.add(honest[-1], source="site-0")
    assert whole is not None and whole.payload == b"h" * 900
    assert len([k for k in r._partial if k[0] == "site-1"]) <= 2


def test_a_flood_of_large_declared_messages_stays_within_the_senders_budget() -> None:
    r = Reassembler(max_payload=1 << 20, max_partial=4, max_sender_bytes=1 << 21)
    for i in range(50):
        r.add(_declaring("site-1", 1 << 20, f"big{i}"), source="site-1")
    assert r.reserved_by("site-1") <= 1 << 21
    assert r.buffered_bytes <= 1 << 21


def test_message_ids_are_scoped_by_sender() -> None:
    r = Reassembler(max_payload=1000)
    honest = split(_env("site-0", b"a" * 100, "same"), chunk_size=50)
    assert r.add(honest[0], source="site-0") is None
    forged = split(_env("site-0", b"b" * 120, "same"), chunk_size=50)
    # The attacker reuses the id (and even the sender field) on its own topic: before, its
    # disagreeing chunk dropped the honest partial message; now it starts one of its own.
    assert r.add(forged[1], source="site-1") is None
    whole = r.add(honest[1], source="site-0")
    assert whole is not None and whole.payload == b"a" * 100


def test_the_declared_size_is_checked_against_the_kind_before_buffering() -> None:
    r = Reassembler(max_payload=1 << 20)
    with pytest.raises(WireError, match="exceeds the limit of 100"):
        r.add(_declaring("site-1", 400, "m"), source="site-1", max_size=100)
    assert r.buffered_bytes == 0 and r.reserved_by("site-1") == 0


def test_partial_messages_expire_on_the_clock_without_further_chunks() -> None:
    now = [0.0]
    r = Reassembler(max_payload=1000, timeout=10.0, clock=lambda: now[0])
    r.add(_declaring("site-1", 400, "m"), source="site-1")
    assert r.buffered_bytes > 0
    now[0] = 11.0
    r.expire()
    assert r.buffered_bytes == 0 and r.reserved_by("site-1") == 0


def test_limits_follow_the_model_and_task() -> None:
    weights = {"w": np.zeros((100, 10), np.float32), "b": np.zeros(10, np.float32)}
    limits = MessageLimits.for_run(weights, num_classes=2)
    assert limits.of(Channel.UPDATE) >= 4 * 1010
    assert limits.of(Channel.UPDATE) < 4 * 1010 + 100 * 1024
    assert limits.sender_bytes == 2 * max(limits.update, limits.secagg, limits.evaluation)
    many = MessageLimits.for_run(weights, num_classes=11)
    assert many.evaluation > limits.evaluation


hostile_chunk = st.tuples(
    st.sampled_from(["site-1", "site-2"]),
    st.integers(0, 5),  # message id
    st.integers(1, 5000),  # declared size
    st.integers(0, 7),  # chunk index to send
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    noise=st.lists(hostile_chunk, max_size=60),
    honest_sizes=st.lists(st.integers(0, 900), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_random_hostile_chunks_never_exceed_the_budget_and_honest_messages_complete(
    noise: list[tuple[str, int, int, int]], honest_sizes: list[int], seed: int
) -> None:
    budget, partial = 4000, 3
    r = Reassembler(max_payload=2000, max_partial=partial, max_sender_bytes=budget)
    rng = np.random.default_rng(seed)
    honest = [
        split(_env("site-0", rng.bytes(n), f"h{i}"), chunk_size=200)
        for i, n in enumerate(honest_sizes)
    ]
    noise_iter = iter(noise)
    for i, chunks in enumerate(honest):
        done = None
        for chunk in chunks:
            for _ in range(int(rng.integers(0, 4))):  # hostile chunks in between
                item = next(noise_iter, None)
                if item is None:
                    break
                sender, mid, size, index = item
                forged = split(_env(sender, b"z" * size, f"x{mid}"), chunk_size=max(1, size // 8))
                with contextlib.suppress(WireError):
                    r.add(forged[min(index, len(forged) - 1)], source=sender)
                for s in ("site-1", "site-2"):
                    assert r.reserved_by(s) <= budget
                    assert len([k for k in r._partial if k[0] == s]) <= partial
                assert r.buffered_bytes <= 3 * budget
            done = r.add(chunk, source="site-0")
        assert done is not None and done.payload == b"".join(c.payload for c in chunks), i
