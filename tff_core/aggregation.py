"""The server half of FedAvg as TFF computations, for the gateway to run on received updates.

The gateway gets each site's trained weights and example count over MQTT. It turns them into
the same quantities TFF's ``build_weighted_fed_avg`` forms (client delta = global - trained,
weighted by examples), aggregates them with ``tff.aggregators.MeanFactory`` (the default model
aggregator of ``build_weighted_fed_avg``) and applies the TFF server optimizer, so one round
through MQTT reproduces one round of the simulation.
"""

from __future__ import annotations

import logging

import numpy as np

from common.deps import require
from models.optim import OptimizerSpec
from tff_core.fedavg import build_tff_optimizer

log = logging.getLogger(__name__)


class FedAvgServer:
    """Weighted mean of client deltas (a TFF aggregation process) plus the server optimizer."""

    def __init__(self, reference: dict[str, np.ndarray], server_optimizer: OptimizerSpec) -> None:
        tff = require("tensorflow_federated")
        tf = require("tensorflow")
        self.names = list(reference)
        value_type = tff.to_type([(np.float32, v.shape) for v in reference.values()])
        self._mean = tff.aggregators.MeanFactory().create(value_type, tff.TensorType(np.float32))
        self._mean_state = self._mean.initialize()
        self._optimizer = build_tff_optimizer(server_optimizer)
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in reference.values()]
        self._opt_state = self._optimizer.initialize(specs)

    def aggregate(
        self,
        global_weights: dict[str, np.ndarray],
        updates: list[tuple[dict[str, np.ndarray], int]],
    ) -> dict[str, np.ndarray]:
        """New global weights from ``(trained weights, examples)`` of each contributing site."""
        tf = require("tensorflow")
        if not updates:
            raise ValueError("cannot aggregate zero updates")
        base = [global_weights[n] for n in self.names]
        deltas = [[b - w[n] for b, n in zip(base, self.names, strict=True)] for w, _ in updates]
        counts = [np.float32(n) for _, n in updates]
        output = self._mean.next(self._mean_state, deltas, counts)
        self._mean_state = output.state
        mean_delta = [tf.constant(np.asarray(d, np.float32)) for d in output.result]
        variables = [tf.constant(b) for b in base]
        self._opt_state, new = self._optimizer.next(self._opt_state, variables, mean_delta)
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self.names, new, strict=True)}
