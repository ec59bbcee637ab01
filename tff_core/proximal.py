"""FedProx's proximal step as a ``tff.learning`` client optimizer.

FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020) adds
``mu/2 ||w - w_global||^2`` to each site's loss: every local step adds ``mu * (w - w_global)``
to the gradient, so a larger ``mu`` keeps a site's update nearer the round's global model.
TFF 0.87's ``build_weighted_fed_prox`` adds ``mu * (w_global - w)`` instead, which pushes the
update away (``scripts/check_tff_fedprox.py`` measures it), so PrivaDx wraps the client
optimizer: the wrapper keeps the weights of its first step (the round's global model, which
TFF's client work assigns before training) and adds the proximal term to every gradient
before the inner optimizer's step. The edge agent's trainer
(:func:`models.training.train_weights`) adds the same term in the same order, so a site's
update is the simulation's.
"""

from __future__ import annotations

import collections
from typing import Any

from privadx.common.deps import require


def proximal_optimizer(inner: Any, mu: float) -> Any:
    """``inner`` (a ``tff.learning.optimizers.Optimizer``) with FedProx's pull of strength ``mu``.

    Hyper-parameters (the learning rate a schedule sets each round) are ``inner``'s.
    """
    tff = require("tensorflow_federated")
    tf = require("tensorflow")

    class ProximalOptimizer(tff.learning.optimizers.Optimizer):  # type: ignore[name-defined]
        def initialize(self, specs: Any) -> Any:
            return collections.OrderedDict(
                inner=inner.initialize(specs),
                anchor=tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), specs),
                started=tf.constant(False),
            )

        def next(self, state: Any, weights: Any, gradients: Any) -> tuple[Any, Any]:
            started = state["started"]
            anchor = tf.nest.map_structure(
                lambda a, w: tf.where(started, a, w), state["anchor"], weights
            )
            pulled = tf.nest.map_structure(
                lambda g, w, a: g + tf.cast(mu, g.dtype) * (w - a), gradients, weights, anchor
            )
            inner_state, updated = inner.next(state["inner"], weights, pulled)
            return (
                collections.OrderedDict(
                    inner=inner_state, anchor=anchor, started=tf.constant(True)
                ),
                updated,
            )

        def get_hparams(self, state: Any) -> Any:
            return inner.get_hparams(state["inner"])

        def set_hparams(self, state: Any, hparams: Any) -> Any:
            return collections.OrderedDict(
                inner=inner.set_hparams(state["inner"], hparams),
                anchor=state["anchor"],
                started=state["started"],
            )

    return ProximalOptimizer()
