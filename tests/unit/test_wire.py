from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privadx.common.wire import envelope as wire
from privadx.common.wire import tensors
from privadx.common.wire.chunks import Reassembler, split
from privadx.common.wire.envelope import SCHEMA_VERSION, Envelope, Kind, WireError
from privadx.common.wire.messages import Phase, RoundAnnouncement, model_envelope
from privadx.common.wire.topics import Topics


def _env(payload: bytes = b"", **meta) -> Envelope:
    return Envelope(
        kind=Kind.UPDATE, run="run-1", round=3, sender="site-a", meta=meta, payload=payload
    )


def test_envelope_roundtrip() -> None:
    env = _env(b"\x00\x01binary", examples=12, metrics={"loss": 0.5})
    back = wire.from_bytes(wire.to_bytes(env))
    assert back == env


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b"XYZ" + b[3:], "bad magic"),
        (lambda b: b[:3] + bytes([99]) + b[4:], "schema version 99 is not supported"),
        # Version 1 sent a float32 update as weights, not as trained - base: never reread.
        (lambda b: b[:3] + bytes([1]) + b[4:], "schema version 1 is not supported"),
        (lambda b: b[:8], "out of bounds"),
        (lambda b: b[:2], "too short"),
    ],
)
def test_envelope_rejections(mutate, match) -> None:
    with pytest.raises(WireError, match=match):
        wire.from_bytes(mutate(wire.to_bytes(_env(b"abc"))))


def _raw(**changes) -> bytes:
    header = {
        "kind": "update",
        "run": "r",
        "round": 1,
        "sender": "s",
        "message_id": "m",
        "created_at": 1.0,
        "meta": {},
        **changes,
    }
    head = json.dumps(header).encode()
    return struct.pack("<3sBI", b"PDX", SCHEMA_VERSION, len(head)) + head


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"round": -1}, "round"),
        ({"round": True}, "round"),
        ({"kind": "pickle"}, "pickle"),
        ({"sender": ""}, "string"),
        ({"meta": []}, "meta"),
        ({"run": "x" * 200}, "string"),
    ],
)
def test_envelope_rejects_bad_fields(changes, match) -> None:
    assert wire.from_bytes(_raw()).round == 1
    with pytest.raises(WireError, match=match):
        wire.from_bytes(_raw(**changes))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_envelope_decoder_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(WireError):
        wire.from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200), st.binary(max_size=8))
def test_envelope_decoder_survives_mutations(prefix: bytes, cut: int, junk: bytes) -> None:
    data = wire.to_bytes(_env(prefix, examples=3))
    mutated = data[:cut] + junk + data[cut + len(junk) :]
    with contextlib.suppress(WireError):
        wire.from_bytes(mutated)


def test_tensor_roundtrip_exact() -> None:
    rng = np.random.default_rng(0)
    t = {
        "a/kernel": rng.standard_normal((3, 3, 1, 8)).astype(np.float32),
        "b": np.arange(5, dtype=np.int64),
    }
    back = tensors.from_bytes(tensors.to_bytes(t))
    assert list(back) == list(t)
    assert all(np.array_equal(back[k], t[k]) and back[k].dtype == t[k].dtype for k in t)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (np.array([1.0, np.nan], np.float32), "NaN"),
        (np.array([np.inf], np.float32), "NaN or infinite"),
    ],
)
def test_tensor_rejects_non_finite(payload, match) -> None:
    with pytest.raises(tensors.TensorFormatError, match=match):
        tensors.from_bytes(tensors.to_bytes({"w": payload}))


def test_tensor_rejects_object_dtype_and_truncation() -> None:
    with pytest.raises(tensors.TensorFormatError):
        tensors.to_bytes({"w": np.array([object()])})
    data = tensors.to_bytes({"w": np.zeros(10, np.float32)})
    with pytest.raises(tensors.TensorFormatError, match="truncated"):
        tensors.from_bytes(data[:-4])
    with pytest.raises(tensors.TensorFormatError, match="unexpected bytes"):
        tensors.from_bytes(data + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_tensor_decoder_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(tensors.TensorFormatError):
        tensors.from_bytes(data)


def test_check_like_names_shapes_dtypes() -> None:
    ref = {"a": np.zeros((2, 2), np.float32)}
    tensors.check_like({"a": np.ones((2, 2), np.float32)}, ref, "u")
    for bad in (
        {"b": np.zeros((2, 2), np.float32)},
        {"a": np.zeros(4, np.float32)},
        {"a": np.zeros((2, 2), np.float16)},
    ):
        with pytest.raises(tensors.TensorFormatError):
            tensors.check_like(bad, ref, "u")


def test_chunks_reassemble_in_any_order_with_duplicates() -> None:
    payload = np.random.default_rng(1).bytes(10_000)
    chunks = split(_env(payload, examples=5), chunk_size=999)
    assert len(chunks) == 11
    r = Reassembler(max_payload=1 << 20)
    order = [5, 0, 10, 5, 3, 1, 2, 4, 6, 7, 8, 9]
    results = [r.add(chunks[i]) for i in order[:-1]]
    assert all(x is None for x in results)
    whole = r.add(chunks[order[-1]])
    assert whole is not None and whole.payload == payload
    assert whole.meta["examples"] == 5 and "chunk" not in whole.meta
    assert whole.meta["sha256"] == hashlib.sha256(payload).hexdigest()
    assert r.buffered_bytes == 0


def test_empty_payload_is_one_chunk() -> None:
    chunks = split(_env(b""), chunk_size=10)
    assert len(chunks) == 1
    assert Reassembler(max_payload=10).add(chunks[0]).payload == b""


def test_corrupt_chunk_is_rejected() -> None:
    chunks = split(_env(b"x" * 100), chunk_size=40)
    r = Reassembler(max_payload=1000)
    r.add(chunks[0])
    with pytest.raises(WireError, match="SHA-256"):
        r.add(replace(chunks[1], payload=b"y" * 40))


def test_oversized_payload_is_refused_before_buffering() -> None:
    chunks = split(_env(b"x" * 5000), chunk_size=1000)
    r = Reassembler(max_payload=4000)
    with pytest.raises(WireError, match="exceeds the limit"):
        r.add(chunks[0])
    assert r.buffered_bytes == 0


def test_partial_messages_are_bounded() -> None:
    r = Reassembler(max_payload=1 << 20, max_partial=3)
    for i in range(10):
        env = replace(_env(bytes([i]) * 100), message_id=f"m{i}")
        r.add(split(env, chunk_size=10)[0])
    assert len(r._partial) == 3
    assert r.buffered_bytes == 30


def test_inconsistent_chunk_headers() -> None:
    a = split(_env(b"a" * 100), chunk_size=50)
    b = split(replace(_env(b"b" * 120), message_id=a[0].message_id), chunk_size=50)
    r = Reassembler(max_payload=1000)
    r.add(a[0])
    with pytest.raises(WireError, match="disagrees"):
        r.add(b[1])


def test_topics_confine_sites_to_one_level() -> None:
    t = Topics("fed1")
    assert t.update("site-3") == "privadx/fed1/site/site-3/update"
    assert t.site_of("privadx/fed1/site/site-3/update") == "site-3"
    assert t.site_of("privadx/fed1/site/a/b/update") is None
    assert t.site_of("privadx/other/site/a/update") is None
    assert t.chunk_index(t.model(7)) == 7
    from privadx.common.errors import InputError

    for bad in ("a/b", "+", "#", "", "x" * 65):
        with pytest.raises(InputError):
            Topics(bad)


def test_round_announcement_roundtrip() -> None:
    a = RoundAnnouncement(
        run="r",
        round=2,
        model_sha256="ab",
        deadline=1.5,
        min_updates=3,
        training={"local_epochs": 1},
        seed=4,
        phase=Phase.FINISHED,
        onnx_sha256="cd",
    )
    assert RoundAnnouncement.from_envelope(wire.from_bytes(wire.to_bytes(a.to_envelope()))) == a
    with pytest.raises(WireError):
        RoundAnnouncement.from_envelope(_env())


def test_model_envelope_hash_identifies_weights() -> None:
    w = {"k": np.ones(3, np.float32)}
    a = model_envelope("r", 0, w, {})
    b = model_envelope("r", 1, {"k": np.full(3, 2, np.float32)}, {})
    assert a.meta["model_sha256"] == hashlib.sha256(a.payload).hexdigest()
    assert a.meta["model_sha256"] != b.meta["model_sha256"]


def test_names_start_with_a_letter_or_digit_and_site_ids_are_not_reserved() -> None:
    from privadx.common.errors import InputError
    from privadx.common.trust.pki import GATEWAY_IDENTITY
    from privadx.common.wire.messages import GATEWAY_SENDER
    from privadx.common.wire.topics import RESERVED_SITE_IDS, check_name, check_site_id

    assert {GATEWAY_IDENTITY, GATEWAY_SENDER} <= RESERVED_SITE_IDS
    for good in ("site-0", "0site", "Clinic_7.b"):
        assert check_site_id(good) == good
    for bad in (".", "..", "-x", "_x", "", "a/b", "a+", "#", "x" * 65):
        with pytest.raises(InputError, match="must start with a letter or digit"):
            check_name("federation name", bad)
    for reserved in ("gateway", "Gateway", "privadx-gateway", "broker", "ca", "sites", "a.revoked"):
        with pytest.raises(InputError, match="reserved"):
            check_site_id(reserved)
    t = Topics("fed1")
    assert t.site_of("privadx/fed1/site/../update") is None
    assert t.site_of("privadx/fed1/site/gateway/update") is None
