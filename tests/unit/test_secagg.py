"""Secure aggregation: exact sums despite dropouts, uniform masked inputs, clean refusals."""

from __future__ import annotations

import numpy as np
import pytest

from privadx.common.errors import InputError
from privadx.common.secagg import shamir
from privadx.common.secagg.protocol import SecAggClient, SecAggError, SecAggServer
from privadx.common.secagg.quantize import QuantSpec, dequantize_sum, quantize

SPEC = QuantSpec(clip=1.0, bits=16, max_weight=16)
LENGTH = 2000


def _updates(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(scale=0.01, size=LENGTH) for _ in range(n)]


def _setup(n: int, threshold: int, round_num: int = 1):  # type: ignore[no-untyped-def]
    names = [f"site-{i}" for i in range(n)]
    clients = {s: SecAggClient(s, "run", round_num, threshold, SPEC.modulus_bits) for s in names}
    server = SecAggServer(threshold, SPEC.modulus_bits, LENGTH + 1)  # + the weight
    server.advertised = {s: c.advertise() for s, c in clients.items()}
    return clients, server


def _share(clients, senders):  # type: ignore[no-untyped-def]
    sent = {s: clients[s].share_keys({p: clients[p].advertise() for p in clients}) for s in senders}
    for name, client in clients.items():
        if name in senders:
            assert client.receive_shares({s: sent[s][name] for s in senders}) == []


def test_sum_survives_dropouts_before_and_after_masking() -> None:
    clients, server = _setup(10, threshold=5)
    xs = _updates(10)
    rng = np.random.default_rng(2)
    quantized = {s: quantize(x, SPEC, rng) for s, x in zip(clients, xs, strict=True)}
    u2 = sorted(clients)
    _share(clients, u2)
    before = {"site-1", "site-6"}  # drop before sending their masked input
    after = {"site-0", "site-4", "site-9"}  # send masked input, then drop
    masked = {s: clients[s].masked_input(quantized[s], u2) for s in u2 if s not in before}
    u3 = sorted(masked)
    responses = {s: clients[s].unmask(u3) for s in u3 if s not in after}
    total = server.unmask(masked, u2, responses)
    plain = sum(quantized[s].astype(np.int64) for s in u3)
    np.testing.assert_array_equal(total.astype(np.int64), plain)  # exact: no wrap-around
    recovered, weight = dequantize_sum(total, SPEC)
    assert weight == len(u3)
    truth = sum(x for s, x in zip(clients, xs, strict=True) if s in masked)
    assert np.abs(recovered - truth).max() <= len(u3) * SPEC.step


def _chi_square_uniform(values: np.ndarray, bits: int) -> float:
    bins = np.bincount((values >> np.uint64(bits - 4)).astype(np.int64), minlength=16)
    expected = values.size / 16
    return float(((bins - expected) ** 2 / expected).sum())


def test_a_masked_input_looks_uniform_and_an_unmasked_one_does_not() -> None:
    clients, _ = _setup(3, threshold=2)
    u2 = sorted(clients)
    _share(clients, u2)
    x = quantize(_updates(1)[0], SPEC, np.random.default_rng(3))
    y = clients["site-0"].masked_input(x, u2)
    critical = 37.7  # chi-square, 15 degrees of freedom, p = 0.001
    assert _chi_square_uniform(y, SPEC.modulus_bits) < critical
    assert _chi_square_uniform(x, SPEC.modulus_bits) > 100 * critical


def test_fewer_than_threshold_survivors_fail_cleanly() -> None:
    clients, server = _setup(5, threshold=4)
    u2 = sorted(clients)
    _share(clients, u2)
    x = np.zeros(LENGTH + 1, np.uint64)
    masked = {s: clients[s].masked_input(x, u2) for s in u2[:3]}
    with pytest.raises(SecAggError, match="need 4"):
        clients["site-0"].unmask(sorted(masked))
    responses = {s: clients[s].unmask(u2[:4]) for s in u2[:2]}
    with pytest.raises(SecAggError, match="need 4"):
        server.unmask(masked, u2, responses)


def test_share_for_another_round_or_site_is_rejected() -> None:
    old, _ = _setup(3, threshold=2, round_num=5)
    new = {
        s: SecAggClient(s, "run", 6, 2, SPEC.modulus_bits, _c=old[s]._c, _s=old[s]._s) for s in old
    }  # same keys, next round
    ads = {s: c.advertise() for s, c in new.items()}
    replayed = old["site-1"].share_keys(ads)
    new["site-0"].share_keys(ads)
    assert new["site-0"].receive_shares({"site-1": replayed["site-0"]}) == ["site-1"]
    assert new["site-0"].receive_shares({"site-1": replayed["site-2"]}) == ["site-1"]
    fresh = new["site-1"].share_keys(ads)
    assert new["site-0"].receive_shares({"site-1": fresh["site-0"]}) == []


def test_unmasking_never_reveals_both_secrets_of_a_site() -> None:
    clients, _ = _setup(4, threshold=3)
    u2 = sorted(clients)
    _share(clients, u2)
    for s in u2[:3]:
        clients[s].masked_input(np.zeros(LENGTH + 1, np.uint64), u2)
    answer = clients["site-0"].unmask(u2[:3])
    assert {p: kind for p, (kind, _, _) in answer.items()} == {
        "site-0": "b", "site-1": "b", "site-2": "b", "site-3": "s"
    }  # fmt: skip


def test_shamir_threshold_and_quantization_bounds() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5])
    assert shamir.combine({x: shares[x] for x in (2, 4, 5)}, 3, 32) == secret
    with pytest.raises(InputError):
        shamir.combine({1: shares[1], 2: shares[2]}, 3, 32)
    top = np.full(4, SPEC.levels, np.uint64) * np.uint64(SPEC.max_weight)
    assert int(top.max()) < 1 << SPEC.modulus_bits  # inputs of total weight max_weight cannot wrap
    with pytest.raises(InputError):
        QuantSpec(clip=1.0, bits=32, max_weight=1 << 40)


def test_weighted_inputs_sum_to_the_weighted_mean_without_wrapping() -> None:
    spec = QuantSpec(clip=1.0, bits=16, max_weight=1 << 16)
    assert spec.modulus_bits == 32 and spec.wire_dtype == np.uint32
    rng = np.random.default_rng(4)
    weights = [30_000, 20_000, 15_536]  # total exactly max_weight, every value at the top
    top = np.zeros(LENGTH)
    top[0] = spec.clip  # a coordinate at +clip maps to weight * levels, the largest input
    inputs = [quantize(top, spec, rng, weight=w) for w in weights]
    total = sum(x for x in inputs) & np.uint64((1 << spec.modulus_bits) - 1)
    assert int(total[0]) == spec.levels * sum(weights) < 1 << spec.modulus_bits  # not wrapped
    values, weight = dequantize_sum(total, spec)
    assert weight == sum(weights)
    assert np.abs(values / weight - top).max() <= len(weights) * spec.step / weight
    xs = _updates(3)
    mixed = [quantize(x, spec, rng, weight=w) for x, w in zip(xs, (100, 7, 40), strict=True)]
    values, weight = dequantize_sum(sum(x for x in mixed), spec)
    mean = sum(w * x for x, w in zip(xs, (100, 7, 40), strict=True)) / 147
    assert weight == 147
    assert np.abs(values / weight - mean).max() <= 3 * spec.step / 147
    with pytest.raises(InputError, match="weight"):
        quantize(xs[0], spec, rng, weight=0)
    with pytest.raises(InputError, match="NaN"):
        quantize(np.array([np.nan]), spec, rng)
