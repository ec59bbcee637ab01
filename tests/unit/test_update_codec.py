from __future__ import annotations

import numpy as np
import pytest

from privadx.common.wire import tensors
from privadx.common.wire.tensors import TensorFormatError
from privadx.common.wire.update_codec import (
    Encoding,
    decode_update,
    encode_update,
    model_update,
)

RNG = np.random.default_rng(0)
BASE = {
    "k": RNG.standard_normal((64, 32)).astype(np.float32),
    "b": RNG.standard_normal(32).astype(np.float32),
}
TRAINED = {k: v + 0.01 * RNG.standard_normal(v.shape).astype(np.float32) for k, v in BASE.items()}
UPDATE = model_update(TRAINED, BASE)


def _roundtrip(encoding: Encoding) -> tuple[dict[str, np.ndarray], int]:
    payload = tensors.to_bytes(encode_update(UPDATE, encoding))
    return decode_update(tensors.from_bytes(payload), BASE, encoding), len(payload)


def test_an_update_is_trained_minus_base_and_float32_carries_it_exactly() -> None:
    assert all(np.array_equal(UPDATE[k], TRAINED[k] - BASE[k]) for k in BASE)
    got, _ = _roundtrip(Encoding.FLOAT32)
    assert all(got[k].dtype == np.float32 and np.array_equal(got[k], UPDATE[k]) for k in BASE)
    # TFF's client delta (global - trained) is the update negated, bit for bit.
    assert all(np.array_equal(-got[k], BASE[k] - TRAINED[k]) for k in BASE)


def test_float16_and_int8_error_bounds_and_sizes() -> None:
    _, size32 = _roundtrip(Encoding.FLOAT32)
    half, size16 = _roundtrip(Encoding.FLOAT16)
    quarter, size8 = _roundtrip(Encoding.INT8)
    for k in BASE:
        delta = UPDATE[k]
        assert np.max(np.abs(half[k] - delta)) <= np.max(np.abs(delta)) * 2**-10
        step = np.max(np.abs(delta)) / 127
        assert np.max(np.abs(quarter[k] - delta)) <= step / 2 + 1e-7
    assert size16 < 0.51 * size32 + 200
    assert size8 < 0.26 * size32 + 200


def test_zero_update_encodes_cleanly() -> None:
    zero = model_update(BASE, BASE)
    got = decode_update(encode_update(zero, Encoding.INT8), BASE, Encoding.INT8)
    assert all(np.array_equal(got[k], np.zeros_like(BASE[k])) for k in BASE)


@pytest.mark.parametrize("encoding", [Encoding.FLOAT16, Encoding.INT8])
def test_wrong_dtype_shape_or_missing_scale(encoding: Encoding) -> None:
    sent = encode_update(UPDATE, encoding)
    bad = dict(sent)
    bad["k"] = sent["k"].astype(np.float32)
    with pytest.raises(TensorFormatError, match="tensor k"):
        decode_update(bad, BASE, encoding)
    with pytest.raises(TensorFormatError):
        decode_update({k: v for k, v in sent.items() if k != "b"}, BASE, encoding)
    if encoding is Encoding.INT8:
        bad = dict(sent)
        bad["k#scale"] = np.array([-1.0], np.float32)
        with pytest.raises(TensorFormatError, match="bad scale"):
            decode_update(bad, BASE, encoding)
