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
