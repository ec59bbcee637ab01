"""Federated averaging built from ``tff.learning``: the federated wiring layer.

FedAvg as in McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data" (AISTATS 2017), weighted by each site's number of examples. A server
optimizer other than plain SGD with learning rate 1 gives the adaptive variants of Reddi et
al., "Adaptive Federated Optimization" (ICLR 2021): FedAdam and FedYogi.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.architectures import build_model
from models.optim import OptimizerName, OptimizerSpec
from models.spec import ModelSpec
from models.training import element_spec
from privadx.common.deps import require
from privadx.common.preprocess import PreprocessSpec

if TYPE_CHECKING:
    import tensorflow as tf


def build_tff_optimizer(spec: OptimizerSpec) -> Any:
    """The ``tff.learning.optimizers`` optimizer ``spec`` describes."""
    tff = require("tensorflow_federated")
    opt = tff.learning.optimizers
    if spec.name is OptimizerName.SGD:
        return opt.build_sgdm(learning_rate=spec.learning_rate, momentum=spec.momentum or None)
    if spec.name is OptimizerName.ADAM:
        return opt.build_adam(learning_rate=spec.learning_rate, epsilon=spec.epsilon)
    return opt.build_yogi(learning_rate=spec.learning_rate, epsilon=spec.epsilon)


def keras_loss() -> tf.keras.losses.Loss:
    """The training loss: cross-entropy on logits with integer labels."""
    tf = require("tensorflow")
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tff_model_fn(model_spec: ModelSpec, preprocess: PreprocessSpec, seed: int) -> Callable[[], Any]:
    """A no-argument function building a fresh ``tff.learning`` model, as TFF requires."""
    tff = require("tensorflow_federated")
    tf = require("tensorflow")

    def model_fn() -> Any:
        return tff.learning.models.from_keras_model(
            build_model(model_spec, seed=seed),
            loss=keras_loss(),
            input_spec=element_spec(preprocess),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    return model_fn


def build_fedavg(
    model_spec: ModelSpec,
    preprocess: PreprocessSpec,
    *,
    client_optimizer: OptimizerSpec,
    server_optimizer: OptimizerSpec,
    seed: int,
    model_aggregator: Any = None,
) -> Any:
    """The weighted FedAvg learning process (``initialize`` / ``next`` / ``get_model_weights``).

    Args:
        model_spec: Architecture to train.
        preprocess: Input geometry (fixes the batch type).
        client_optimizer: Local optimizer on each site.
        server_optimizer: Optimizer applied to the averaged update (SGD 1.0 = plain FedAvg).
        seed: Seed of the initial weights.
        model_aggregator: A ``tff.aggregators`` factory; the default is the weighted mean. An
            unweighted factory (differential privacy) gives unweighted FedAvg.
    """
    tff = require("tensorflow_federated")
    kwargs = {} if model_aggregator is None else {"model_aggregator": model_aggregator}
    if isinstance(model_aggregator, tff.aggregators.UnweightedAggregationFactory):
        # Differential privacy: every site counts the same, whatever it reports.
        return tff.learning.algorithms.build_unweighted_fed_avg(
            tff_model_fn(model_spec, preprocess, seed),
            client_optimizer_fn=build_tff_optimizer(client_optimizer),
            server_optimizer_fn=build_tff_optimizer(server_optimizer),
            **kwargs,
        )
    return tff.learning.algorithms.build_weighted_fed_avg(
        tff_model_fn(model_spec, preprocess, seed),
        client_optimizer_fn=build_tff_optimizer(client_optimizer),
        server_optimizer_fn=build_tff_optimizer(server_optimizer),
        client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES,
        **kwargs,
    )
