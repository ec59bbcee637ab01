"""The server half of FedAvg as TFF computations, for the gateway to run on received updates.

The gateway gets each site's update (``trained - global``, PrivaDx's one convention) and
example count over MQTT. Here, at TFF's door, an update becomes what TFF's
``build_weighted_fed_avg`` forms (its client delta is ``global - trained``: the update
negated, exactly, since IEEE subtraction is sign-symmetric), weighted by examples; the
run's model aggregator combines them (a TFF aggregation
process: ``MeanFactory``, the default of ``build_weighted_fed_avg``, or TFF's robust
aggregator; or a coordinate-wise rule from :mod:`tff_core.robust`) and applies the TFF server
optimizer, so one round through MQTT reproduces one round of the simulation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from models.optim import OptimizerSpec
from privadx.common.deps import require
from privadx.common.runlog import json_ready
from privadx.common.secagg.vector import unflatten, vector_length
from tff_core.fedavg import build_tff_optimizer
from tff_core.privacy import DpSpec, tff_dp_aggregator
from tff_core.robust import AggregationRule, coordinate_median, tff_model_aggregator, trimmed_mean

log = logging.getLogger(__name__)


class FedAvgServer:
    """Aggregation of client deltas (TFF process or robust rule) plus the server optimizer."""

    def __init__(
        self,
        reference: dict[str, np.ndarray],
        server_optimizer: OptimizerSpec,
        rule: AggregationRule = AggregationRule.NORM_BOUND,
        *,
        trim: float = 0.1,
        dp: DpSpec | None = None,
    ) -> None:
        tff = require("tensorflow_federated")
        tf = require("tensorflow")
        self.names = list(reference)
        self.rule = rule
        self.trim = trim
        self._process: Any = None
        self._agg_state: Any = None
        self.dp = dp
        self.reference = reference
        # The aggregator sees each delta as one flat vector: every rule here is coordinate-wise
        # or uses the update's global L2 norm, so the result is the same as on the list of
        # tensors, and TFF's runtime moves one tensor per site instead of one per layer
        # (10 sites: 76 ms instead of 126 ms per round for the CNN's 20 tensors).
        value_type = tff.TensorType(np.float32, [vector_length(reference)])
        if dp is not None:  # DP-FedAvg: TFF's clipping and noise, unweighted
            self._process = tff_dp_aggregator(dp).create(value_type)
        elif rule.in_tff:
            factory = tff_model_aggregator(rule)
            self._process = factory.create(value_type, tff.TensorType(np.float32))
        if self._process is not None:
            self._agg_state = self._process.initialize()
        self._optimizer = build_tff_optimizer(server_optimizer)
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in reference.values()]
        self._opt_state = self._optimizer.initialize(specs)
        self.last_measurements: dict[str, Any] = {}

    def aggregate(
        self,
        global_weights: dict[str, np.ndarray],
        updates: list[tuple[dict[str, np.ndarray], int]],
    ) -> dict[str, np.ndarray]:
        """New global weights from ``(update, examples)`` of each contributing site.

        An update is ``trained - global`` per tensor (:mod:`privadx.common.wire.update_codec`).
        """
        tf = require("tensorflow")
        if not updates:
            raise ValueError("cannot aggregate zero updates")
        base = [global_weights[n] for n in self.names]
        # TFF's client delta is global - trained: the update negated (exact in float32).
        deltas = [-self._flatten([u[n] for n in self.names]) for u, _ in updates]
        combined = self._combine(deltas, [np.float32(n) for _, n in updates])
        mean_delta = [tf.constant(d) for d in unflatten(combined, self.reference).values()]
        variables = [tf.constant(b) for b in base]
        self._opt_state, new = self._optimizer.next(self._opt_state, variables, mean_delta)
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self.names, new, strict=True)}

    def _flatten(self, tensors: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(t, np.float32).reshape(-1) for t in tensors])

    def state_arrays(self) -> list[np.ndarray]:
        """The aggregator's and server optimizer's state as arrays (for a checkpoint)."""
        tf = require("tensorflow")
        return [np.asarray(v) for v in tf.nest.flatten(self._state_structure())]

    def restore(self, arrays: list[np.ndarray]) -> None:
        """Continue from :meth:`state_arrays` of an earlier server with the same settings.

        Raises:
            ValueError: The arrays do not fit this server's state.
        """
        tf = require("tensorflow")
        template = self._state_structure()
        flat = tf.nest.flatten(template)
        if len(flat) != len(arrays):
            raise ValueError(f"checkpoint holds {len(arrays)} state arrays, expected {len(flat)}")
        values = [_like(t, a) for a, t in zip(arrays, flat, strict=True)]
        restored = tf.nest.pack_sequence_as(template, values)
        if self._process is not None:
            self._agg_state, self._opt_state = restored
        else:
            (self._opt_state,) = restored

    def _state_structure(self) -> tuple[Any, ...]:
        if self._process is not None:
            return (self._agg_state, self._opt_state)
        return (self._opt_state,)

    def _combine(self, deltas: list[np.ndarray], counts: list[np.float32]) -> np.ndarray:
        """The aggregate of the sites' flat deltas, as one flat vector."""
        if self._process is None:  # a coordinate-wise rule of tff_core.robust
            if self.rule is AggregationRule.MEDIAN:
                (flat,) = coordinate_median([[d] for d in deltas])
            else:
                (flat,) = trimmed_mean([[d] for d in deltas], self.trim)
            return flat
        # DP-FedAvg's process is unweighted: it takes no example counts.
        weights = () if self.dp is not None else (counts,)
        output = self._process.next(self._agg_state, deltas, *weights)
        self._agg_state = output.state
        self.last_measurements = json_ready(output.measurements)
        return np.asarray(output.result, np.float32)


def _like(template: Any, array: np.ndarray) -> Any:
    """``array`` as the same kind of value as ``template`` (tensor, numpy, Python scalar).

    The server optimizer computes with exactly the types it created, so a restored server
    continues bit for bit like the one that was saved.
    """
    tf = require("tensorflow")
    value = np.asarray(array, dtype=np.asarray(template).dtype).reshape(np.shape(template))
    if isinstance(template, tf.Tensor):
        return tf.constant(value, dtype=template.dtype)
    if isinstance(template, bool | int | float):
        return type(template)(value.item())
    if isinstance(template, np.generic):
        return value[()]
    return value
