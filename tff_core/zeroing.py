"""Adaptive zeroing in which a zeroed update also loses its weight.

TFF's ``robust_aggregator`` wraps the weighted mean in ``tff.aggregators.zeroing_factory``,
which replaces an update whose norm is far above those seen with zeros but still passes the
site's example count to the mean: with two sites, one zeroed update halves the honest step,
and a site can shrink every round's step by sending garbage with a large count. Here the
same decision (L-infinity norm above the adaptive zeroing norm, or not finite) sets the
update *and its weight* to zero, so a zeroed site weighs nothing; the norm estimate, its
parameters and the state and measurement names are TFF's. When every update of a round is
zeroed the mean is zero (no step), not a division by zero.

The factory is built from ``tff.aggregators`` and ``tff.templates`` and used by the simulation
and by the gateway alike, so both still agree.
"""

from __future__ import annotations

import collections
import math
from typing import Any

from privadx.common.deps import require


def _zeroing_norm() -> Any:
    """TFF's default adaptive zeroing norm (as in ``tff.learning.robust_aggregator``)."""
    tff = require("tensorflow_federated")
    return tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0,
        target_quantile=0.98,
        learning_rate=math.log(10.0),
        multiplier=2.0,
        increment=1.0,
    )


def robust_weighted_mean() -> Any:
    """Adaptive zeroing (weight included) of adaptive clipping of the weighted mean."""
    tff = require("tensorflow_federated")
    clipping_norm = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=1.0, target_quantile=0.8, learning_rate=0.2
    )
    inner = tff.aggregators.clipping_factory(
        clipping_norm, tff.aggregators.MeanFactory(no_nan_division=True)
    )
    return weight_zeroing_factory(_zeroing_norm(), inner)


def weight_zeroing_factory(zeroing_norm: Any, inner: Any) -> Any:
    """A weighted factory that zeroes both value and weight of updates above ``zeroing_norm``.

    Args:
        zeroing_norm: A ``tff.templates.EstimationProcess`` of the norm (TFF's quantile
            estimation), reporting the threshold and updated with each round's norms.
        inner: The ``tff.aggregators.WeightedAggregationFactory`` that receives the result.
    """
    tff = require("tensorflow_federated")
    tf = require("tensorflow")
    np = require("numpy")

    class _WeightZeroingFactory(tff.aggregators.WeightedAggregationFactory):  # type: ignore[name-defined]
        def create(self, value_type: Any, weight_type: Any) -> Any:
            inner_process = inner.create(value_type, weight_type)
            count = tff.aggregators.SumFactory().create(tff.TensorType(np.int32))
            norm_type = tff.TensorType(np.float32)

            @tff.tensorflow.computation(value_type, weight_type, norm_type)
            def zero(value: Any, weight: Any, threshold: Any) -> Any:
                parts = tf.nest.flatten(value)
                norm = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(p)) for p in parts]))
                finite = tf.reduce_all(
                    tf.stack([tf.reduce_all(tf.math.is_finite(p)) for p in parts])
                )
                drop = tf.logical_or(tf.logical_not(finite), norm > threshold)
                kept = tf.nest.map_structure(lambda t: tf.where(drop, tf.zeros_like(t), t), value)
                return (
                    kept,
                    tf.where(drop, tf.zeros_like(weight), weight),
                    norm,
                    tf.cast(drop, tf.int32),
                )

            @tff.federated_computation()
            def init() -> Any:
                return tff.federated_zip(
                    collections.OrderedDict(
                        zeroing_norm=zeroing_norm.initialize(),
                        inner_agg=inner_process.initialize(),
                        zeroed_count_agg=count.initialize(),
                    )
                )

            @tff.federated_computation(
                init.type_signature.result,
                tff.FederatedType(value_type, tff.CLIENTS),
                tff.FederatedType(weight_type, tff.CLIENTS),
            )
            def next_fn(state: Any, value: Any, weight: Any) -> Any:
                threshold = zeroing_norm.report(state.zeroing_norm)
                kept, kept_weight, norm, dropped = tff.federated_map(
                    zero, (value, weight, tff.federated_broadcast(threshold))
                )
                inner_out = inner_process.next(state.inner_agg, kept, kept_weight)
                counted = count.next(state.zeroed_count_agg, dropped)
                new_state = collections.OrderedDict(
                    zeroing_norm=zeroing_norm.next(state.zeroing_norm, norm),
                    inner_agg=inner_out.state,
                    zeroed_count_agg=counted.state,
                )
                measurements = collections.OrderedDict(
                    zeroing=inner_out.measurements,
                    zeroing_norm=threshold,
                    zeroed_count=counted.result,
                )
                return tff.templates.MeasuredProcessOutput(
                    state=tff.federated_zip(new_state),
                    result=inner_out.result,
                    measurements=tff.federated_zip(measurements),
                )

            return tff.templates.AggregationProcess(init, next_fn)

    return _WeightZeroingFactory()
