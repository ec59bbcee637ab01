"""The gateway's aggregation rules on real TFF processes: what one scaled-up update does."""

from __future__ import annotations

import numpy as np
import pytest

from models.optim import OptimizerName, OptimizerSpec
from tff_core.robust import AggregationRule

pytest.importorskip("tensorflow_federated")

SGD1 = OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0)
BASE = {"w": np.zeros((20, 10), np.float32), "b": np.zeros(10, np.float32)}


def _updates(attack_scale: float | None) -> list[tuple[dict[str, np.ndarray], int]]:
    """Ten sites' updates (trained - global) near 0.1; the last one scaled by ``attack_scale``."""
    rng = np.random.default_rng(0)
    updates = []
    for i in range(10):
        w = {k: (0.1 + 0.01 * rng.normal(size=v.shape)).astype(np.float32) for k, v in BASE.items()}
        if attack_scale is not None and i == 9:
            w = {k: v * attack_scale for k, v in w.items()}
        updates.append((w, 50 + i))
    return updates


def _aggregate(rule: AggregationRule, attack: float | None) -> dict[str, np.ndarray]:
    from tff_core.aggregation import FedAvgServer
    from tff_core.runtime import tff_runtime

    with tff_runtime():
        return FedAvgServer(BASE, SGD1, rule).aggregate(BASE, _updates(attack))


def test_mean_is_the_example_weighted_mean() -> None:
    updates = _updates(None)
    total = sum(n for _, n in updates)
    expected = sum(w["w"] * n for w, n in updates) / total
    np.testing.assert_allclose(_aggregate(AggregationRule.MEAN, None)["w"], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "rule", [AggregationRule.NORM_BOUND, AggregationRule.MEDIAN, AggregationRule.TRIMMED_MEAN]
)
def test_defences_hold_against_a_scaled_update(rule: AggregationRule) -> None:
    clean = _aggregate(AggregationRule.MEAN, None)["w"]
    attacked_mean = _aggregate(AggregationRule.MEAN, 100.0)["w"]
    defended = _aggregate(rule, 100.0)["w"]
    assert np.abs(attacked_mean - clean).max() > 0.5  # the attack works on the plain mean
    assert np.abs(defended - clean).max() < 0.05, rule


@pytest.mark.parametrize(
    "rule", [AggregationRule.NORM_BOUND, AggregationRule.MEDIAN, AggregationRule.MEAN]
)
def test_server_state_survives_a_restart(rule: AggregationRule) -> None:
    """A server restored from its state arrays continues exactly like the one that ran on."""
    from tff_core.aggregation import FedAvgServer
    from tff_core.runtime import tff_runtime

    adam = OptimizerSpec(name=OptimizerName.ADAM, learning_rate=0.1)  # stateful on purpose
    with tff_runtime():
        running = FedAvgServer(BASE, adam, rule)
        weights = running.aggregate(BASE, _updates(None))
        weights = running.aggregate(weights, _updates(5.0))
        saved = running.state_arrays()
        restored = FedAvgServer(BASE, adam, rule)
        restored.restore(saved)
        expected = running.aggregate(weights, _updates(None))
        got = restored.aggregate(weights, _updates(None))
        for k in BASE:
            np.testing.assert_array_equal(got[k], expected[k])
        fresh = FedAvgServer(BASE, adam, rule).aggregate(weights, _updates(None))
        assert not np.array_equal(fresh["w"], expected["w"])  # the state matters


@pytest.mark.parametrize("rule", [AggregationRule.NORM_BOUND, AggregationRule.MEAN])
def test_flat_aggregation_equals_tff_on_the_weight_structure(rule: AggregationRule) -> None:
    """The gateway hands TFF one flat vector per site; TFF on the list of tensors agrees.

    Three rounds with one scaled update each: every update is above the initial clipping
    norm, the 1000x one above the zeroing norm, and both norms adapt.
    """
    import tensorflow_federated as tff

    from privadx.common.runlog import json_ready
    from tff_core.aggregation import FedAvgServer
    from tff_core.robust import tff_model_aggregator
    from tff_core.runtime import tff_runtime

    with tff_runtime():
        server = FedAvgServer(BASE, SGD1, rule)
        value_type = tff.to_type([(np.float32, v.shape) for v in BASE.values()])
        process = tff_model_aggregator(rule).create(value_type, tff.TensorType(np.float32))
        state = process.initialize()
        weights = expected = BASE
        zeroed = []
        for scale in (3.0, 1000.0, 3.0):
            updates = _updates(scale)
            deltas = [[-u[k] for k in BASE] for u, _ in updates]  # TFF's delta: global - trained
            out = process.next(state, deltas, [np.float32(n) for _, n in updates])
            state = out.state
            expected = {
                k: expected[k] - np.asarray(d) for k, d in zip(BASE, out.result, strict=True)
            }
            weights = server.aggregate(weights, updates)
            for k in BASE:
                np.testing.assert_allclose(weights[k], expected[k], rtol=1e-6, atol=1e-7)
            zeroed.append(server.last_measurements.get("zeroed_count"))
            assert server.last_measurements == json_ready(out.measurements)
        if rule is AggregationRule.NORM_BOUND:
            assert zeroed[1] == 1  # the 1000x update was zeroed: the bound was at work


def test_norm_bound_matches_tffs_robust_aggregator_until_an_update_is_zeroed() -> None:
    """Same clipping and zeroing decisions as ``tff.learning.robust_aggregator``; the only
    difference is that a zeroed update's example count leaves the mean too."""
    import tensorflow_federated as tff

    from tff_core.robust import tff_model_aggregator
    from tff_core.runtime import tff_runtime

    value_type = tff.TensorType(np.float32, [4])
    weight_type = tff.TensorType(np.float32)
    ours_f = tff_model_aggregator(AggregationRule.NORM_BOUND)
    tffs_f = tff.learning.robust_aggregator(zeroing=True, clipping=True, weighted=True)
    honest = np.full(4, 0.5, np.float32)
    with tff_runtime():
        ours, tffs = ours_f.create(value_type, weight_type), tffs_f.create(value_type, weight_type)
        s_ours, s_tffs = ours.initialize(), tffs.initialize()
        for scale in (1.0, 3.0, 0.5):  # nothing zeroed: identical results and norms
            values, weights = [honest * scale, -honest], [np.float32(30), np.float32(10)]
            a, b = ours.next(s_ours, values, weights), tffs.next(s_tffs, values, weights)
            s_ours, s_tffs = a.state, b.state
            np.testing.assert_allclose(a.result, b.result, rtol=1e-6)
            assert a.measurements["zeroing_norm"] == pytest.approx(b.measurements["zeroing_norm"])
            assert a.measurements["zeroed_count"] == b.measurements["zeroed_count"] == 0
        # One site sends 1e30 with a huge count: TFF's zeroing keeps its weight and the honest
        # step shrinks by the attacker's share; here the honest update is the whole mean.
        values = [honest, np.full(4, 1e30, np.float32)]
        weights = [np.float32(10), np.float32(1000)]
        a, b = ours.next(s_ours, values, weights), tffs.next(s_tffs, values, weights)
        assert a.measurements["zeroed_count"] == b.measurements["zeroed_count"] == 1
        clipped = np.asarray(b.result) * (1010 / 10)  # TFF's: honest/clip * 10/1010
        np.testing.assert_allclose(a.result, clipped, rtol=1e-5)
        assert np.linalg.norm(b.result) < 0.011 * np.linalg.norm(a.result)
        # A NaN update is dropped too, and a round in which every update is zeroed makes no step.
        nan = ours.next(a.state, [np.full(4, np.nan, np.float32), honest], weights)
        assert nan.measurements["zeroed_count"] == 1 and np.isfinite(nan.result).all()
        none = ours.next(nan.state, [np.full(4, 1e30, np.float32)], [np.float32(5)])
        assert none.measurements["zeroed_count"] == 1
        assert np.isfinite(none.measurements["zeroing_norm"])  # the NaN did not reach the norm
        np.testing.assert_array_equal(none.result, np.zeros(4, np.float32))
