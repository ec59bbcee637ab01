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
    """Ten sites whose trained weights lie near 0.1; the last one scaled by ``attack_scale``."""
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

    from common.runlog import json_ready
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
            deltas = [[expected[k] - w[k] for k in BASE] for w, _ in updates]
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
