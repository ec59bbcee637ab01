"""Federated averaging built from ``tff.learning``: the federated wiring layer.

FedAvg as in McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data" (AISTATS 2017), weighted by each site's number of examples. A server
optimizer other than plain SGD with learning rate 1 gives the adaptive variants of Reddi et
al., "Adaptive Federated Optimization" (ICLR 2021): FedAdam and FedYogi.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.architectures import build_model
from models.optim import OptimizerName, OptimizerSpec
from models.settings import LocalTraining
from models.spec import ModelSpec
from models.training import element_spec, round_dataset
from privadx.common.data.arrays import LabeledImages
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
        rate, eps = spec.learning_rate, spec.epsilon
        if spec.weight_decay:
            return opt.build_adamw(learning_rate=rate, epsilon=eps, weight_decay=spec.weight_decay)
        return opt.build_adam(learning_rate=rate, epsilon=eps)
    return opt.build_yogi(learning_rate=spec.learning_rate, epsilon=spec.epsilon)


def keras_loss() -> tf.keras.losses.Loss:
    """The training loss: cross-entropy on logits with integer labels."""
    tf = require("tensorflow")
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tff_model_fn(model_spec: ModelSpec, preprocess: PreprocessSpec, seed: int) -> Callable[[], Any]:
    """A no-argument function building a fresh ``tff.learning`` model, as TFF requires.

    Its batches come from :func:`client_dataset`, where a label ``y + num_classes`` is ``y``
    seen again in a later epoch. The loss and the accuracy read ``y mod num_classes`` (the
    values a device computes), and the model counts only first-epoch elements as its
    examples: TFF's weighted FedAvg then weighs a site by its number of images, as a gateway
    weighs a device's reported count, however many epochs the site trained. Each batch also
    carries the site's logit offsets ``"o"``, which the training loss adds to the logits
    (zeros unless the round asks for logit adjustment), as a device's trainer does.
    """
    tff = require("tensorflow_federated")
    tf = require("tensorflow")
    classes = model_spec.num_classes

    class DecodedLoss(tf.keras.losses.SparseCategoricalCrossentropy):  # type: ignore[name-defined]
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return super().call(tf.math.floormod(y_true, classes), y_pred)

    class DecodedAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):  # type: ignore[name-defined]
        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            return super().update_state(tf.math.floormod(y_true, classes), y_pred, sample_weight)

    def model_fn() -> Any:
        inner = tff.learning.models.from_keras_model(
            build_model(model_spec, seed=seed),
            loss=DecodedLoss(from_logits=True),
            input_spec=element_spec(preprocess),
            metrics=[DecodedAccuracy(name="accuracy")],
        )
        return _images_counted_class()(
            inner, classes, element_spec(preprocess, classes), DecodedLoss(from_logits=True)
        )

    return model_fn


@functools.cache
def _images_counted_class() -> type:
    """``ImagesCounted``, defined on first use (it subclasses a TFF class)."""
    tff = require("tensorflow_federated")
    tf = require("tensorflow")

    class ImagesCounted(tff.learning.models.VariableModel):  # type: ignore[name-defined]
        """A TFF model whose batches report their first-epoch elements as their examples.

        Its batches carry the logit offsets ``"o"``; the loss it trains on is the decoded
        cross-entropy of ``logits + o`` (the inner model's metrics see the plain logits).
        """

        def __init__(self, inner: Any, classes: int, input_spec: Any, loss: Any) -> None:
            self._inner = inner
            self._classes = classes
            self._input_spec = input_spec
            self._loss = loss

        @property
        def trainable_variables(self) -> Any:
            return self._inner.trainable_variables

        @property
        def non_trainable_variables(self) -> Any:
            return self._inner.non_trainable_variables

        @property
        def local_variables(self) -> Any:
            return self._inner.local_variables

        @property
        def input_spec(self) -> Any:
            return self._input_spec

        @tf.function
        def forward_pass(self, batch_input: Any, training: bool = True) -> Any:
            images, labels = batch_input["x"], batch_input["y"]
            output = self._inner.forward_pass(
                collections.OrderedDict(x=images, y=labels), training=training
            )
            loss = self._loss(labels, output.predictions + batch_input["o"])
            first = tf.reduce_sum(tf.cast(labels < self._classes, tf.int32))
            return tff.learning.models.BatchOutput(
                loss=loss, predictions=output.predictions, num_examples=first
            )

        @tf.function
        def predict_on_batch(self, x: Any, training: bool = True) -> Any:
            return self._inner.predict_on_batch(x, training=training)

        @tf.function
        def report_local_unfinalized_metrics(self) -> Any:
            return self._inner.report_local_unfinalized_metrics()

        def metric_finalizers(self) -> Any:
            return self._inner.metric_finalizers()

        @tf.function
        def reset_metrics(self) -> None:
            self._inner.reset_metrics()

    return ImagesCounted


def client_dataset(
    data: LabeledImages,
    preprocess: PreprocessSpec,
    training: LocalTraining,
    *,
    seed: int,
    num_classes: int,
) -> tf.data.Dataset:
    """A site's batches for one round of TFF client work: what a device trains on.

    The same order, augmentation and number of epochs as
    :func:`models.training.train_weights` uses for ``training`` on a device, with repeats
    marked for :func:`tff_model_fn`.
    """
    return round_dataset(
        data,
        preprocess,
        training,
        seed=seed,
        repeat_label_offset=num_classes,
        logit_offsets=training.logit_offsets(data.labels, num_classes),
    )


def build_fedavg(
    model_spec: ModelSpec,
    preprocess: PreprocessSpec,
    *,
    client_optimizer: OptimizerSpec,
    server_optimizer: OptimizerSpec,
    seed: int,
    model_aggregator: Any = None,
    proximal_mu: float = 0.0,
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
        proximal_mu: FedProx strength of the sites' local steps (0: plain FedAvg); see
            :mod:`tff_core.proximal`.
    """
    tff = require("tensorflow_federated")
    client = build_tff_optimizer(client_optimizer)
    if proximal_mu > 0:
        from tff_core.proximal import proximal_optimizer

        client = proximal_optimizer(client, proximal_mu)
    kwargs = {} if model_aggregator is None else {"model_aggregator": model_aggregator}
    if isinstance(model_aggregator, tff.aggregators.UnweightedAggregationFactory):
        # Differential privacy: every site counts the same, whatever it reports.
        return tff.learning.algorithms.build_unweighted_fed_avg(
            tff_model_fn(model_spec, preprocess, seed),
            client_optimizer_fn=client,
            server_optimizer_fn=build_tff_optimizer(server_optimizer),
            **kwargs,
        )
    return tff.learning.algorithms.build_weighted_fed_avg(
        tff_model_fn(model_spec, preprocess, seed),
        client_optimizer_fn=client,
        server_optimizer_fn=build_tff_optimizer(server_optimizer),
        client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES,
        **kwargs,
    )
