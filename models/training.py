"""Pure TensorFlow training pieces: input pipelines and local training, deterministic by seed.

These functions know nothing about federation: the TFF simulation feeds the same pipelines to
its client work, and edge devices train with :func:`train_weights` without TFF.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from models.augment import Augmentation, augment_example
from models.optim import OptimizerSpec
from models.settings import LocalTraining
from privadx.common.data.arrays import LabeledImages
from privadx.common.deps import require
from privadx.common.errors import ModelError
from privadx.common.preprocess import PreprocessSpec, to_model_input

if TYPE_CHECKING:
    import tensorflow as tf


def make_client_dataset(
    data: LabeledImages,
    spec: PreprocessSpec,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    augmentation: Augmentation = Augmentation.SHIFT,
    shuffle: bool = True,
    repeat_label_offset: int = 0,
    logit_offsets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of ``{"x": float32 images, "y": int32 labels}`` for ``epochs`` local epochs.

    The order is reshuffled every epoch by a NumPy generator seeded with ``seed`` alone (not
    TensorFlow's process-wide seed, so the simulation and a device draw the same order); every
    image is then augmented as ``augmentation`` asks (:func:`models.augment.augment_example`,
    stateless draws seeded by ``seed`` and the example's position), so a run is repeatable.

    ``repeat_label_offset`` is added to the label of every element after the first epoch:
    the TFF simulation marks repeats so that its FedAvg counts each of a site's images once
    when sites train different numbers of epochs (:mod:`tff_core.fedavg` decodes the
    labels). Devices leave it at 0.

    ``logit_offsets`` (float32 ``(K,)``), when given, is added to every element as ``"o"``:
    the TFF simulation's model adds it to the logits in the loss (logit adjustment, the same
    for all of a site's elements); a device's trainer holds it in a variable instead.
    """
    tf = require("tensorflow")
    images = tf.constant(to_model_input(data.images, spec))
    labels = tf.constant(data.labels.astype("int32"))
    rng = np.random.default_rng(seed)
    whole = np.arange(len(data))
    order = np.concatenate([rng.permutation(whole) if shuffle else whole for _ in range(epochs)])
    offsets = np.where(np.arange(order.size) < len(data), 0, repeat_label_offset).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((order, offsets)).map(
        lambda i, k: collections.OrderedDict(x=tf.gather(images, i), y=tf.gather(labels, i) + k)
    )
    if augmentation is not Augmentation.NONE:
        ds = ds.enumerate().map(lambda i, e: augment_example(e, augmentation, spec, seed, i))
    if logit_offsets is not None:
        offsets = tf.constant(np.asarray(logit_offsets, np.float32))
        ds = ds.map(lambda e: collections.OrderedDict(x=e["x"], y=e["y"], o=offsets))
    return ds.batch(batch_size)


def round_dataset(
    data: LabeledImages,
    spec: PreprocessSpec,
    settings: LocalTraining,
    *,
    seed: int,
    repeat_label_offset: int = 0,
    logit_offsets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """What a site trains on in one round: :func:`make_client_dataset` as ``settings`` ask.

    Its number of epochs is ``settings.epochs_for(len(data))``. Devices
    (:func:`train_weights`) and the TFF simulation (:func:`tff_core.fedavg.client_dataset`,
    which marks repeats) both build their batches here.
    """
    return make_client_dataset(
        data,
        spec,
        batch_size=settings.batch_size,
        epochs=settings.epochs_for(len(data)),
        seed=seed,
        augmentation=settings.augmentation,
        shuffle=settings.shuffle,
        repeat_label_offset=repeat_label_offset,
        logit_offsets=logit_offsets,
    )


def element_spec(
    spec: PreprocessSpec, num_classes: int | None = None
) -> collections.OrderedDict[str, tf.TensorSpec]:
    """The type of one batch produced by :func:`make_client_dataset`.

    With ``num_classes``, the batch also carries the logit offsets ``"o"`` (``(None, K)``).
    """
    tf = require("tensorflow")
    batch = collections.OrderedDict(
        x=tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32),
        y=tf.TensorSpec((None,), tf.int32),
    )
    if num_classes is not None:
        batch["o"] = tf.TensorSpec((None, num_classes), tf.float32)
    return batch


_TRAINING_LOCK = threading.Lock()
"""Serialises local training within one process (trainers share TensorFlow's thread pools and
the trainer cache; a training's result depends on its seed only)."""


def train_locally(
    model: tf.keras.Model,
    data: LabeledImages,
    spec: PreprocessSpec,
    settings: LocalTraining,
    *,
    seed: int,
) -> dict[str, float]:
    """Train ``model`` in place on a site's images; return the mean loss and accuracy.

    :func:`train_weights` on the model's own weights, assigned back to it.
    """
    from models.weights import get_weights, set_weights

    trained, metrics = train_weights(model, get_weights(model), data, spec, settings, seed=seed)
    set_weights(model, trained)
    return metrics


def train_weights(
    model: tf.keras.Model,
    weights: dict[str, np.ndarray],
    data: LabeledImages,
    spec: PreprocessSpec,
    settings: LocalTraining,
    *,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train ``weights`` on a site's images; return the trained weights, mean loss, accuracy.

    ``weights`` are named and ordered as :func:`models.weights.get_weights` gives ``model``'s.

    ``model`` gives the architecture only; its own variables are left as they are.

    Uses the same input pipeline and update rule as TFF's client work in the simulation, so a
    device without TFF computes the update the simulation would. The random state (the
    dropout masks) is seeded from ``seed`` too, so the update depends only on the weights,
    the data and the seed, not on what the process did before: a restarted device
    recomputes the update it would have sent.

    The traced training step, its copy of the model and its optimizer are kept with
    ``model`` (:class:`_Trainer`) and reused in later rounds: building them costs about
    seven times a round of local training on a few hundred images.

    Raises:
        ModelError: ``weights`` do not fit ``model``, or the model has a layer or variable
            the trainer does not support.
    """
    with _TRAINING_LOCK:
        started = time.monotonic()
        trainer = _TRAINERS.get(model)
        # The learning rate may change every round (a schedule): it is set per run, not built in.
        optimizer = replace(settings.optimizer, learning_rate=1.0)
        key = (optimizer, spec.height, spec.width, spec.channels)
        if trainer is None or trainer.key != key:
            trainer = _TRAINERS[model] = _Trainer(model, spec, settings.optimizer, key)
        trained, metrics = trainer.run(weights, data, spec, settings, seed)
        metrics["train_seconds"] = round(time.monotonic() - started, 3)  # not the turn's wait
        return trained, metrics


class _Trainer:
    """A training copy of a model, its optimizer and its traced step, reused across rounds.

    Every round starts from the same state as a fresh copy would: the global weights are
    assigned, the optimizer's variables (step count, moments) are restored to their values
    right after it was built, and the dropout layers' seeds are set from the round's seed.
    """

    def __init__(
        self, model: tf.keras.Model, spec: PreprocessSpec, optimizer: OptimizerSpec, key: Any
    ) -> None:
        tf = require("tensorflow")
        self.key = key
        from models.weights import weight_names

        self.model, self.seeds = _training_clone(model)
        others = [
            w for w in self.model.non_trainable_weights if all(w is not v for v in self.seeds)
        ]
        if others:
            raise ModelError(
                f"non-trainable variables are not supported in local training: {others[0].name}"
            )
        self.names = weight_names(model)
        self.weights = self.model.trainable_weights
        self.optimizer = optimizer.to_keras()
        variables = self.model.trainable_variables
        self.optimizer.build(variables)
        self.initial_state = [v.numpy() for v in self.optimizer.variables]
        # FedProx: the round's global weights and the strength of the pull toward them.
        self.anchors = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.mu = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        # Logit adjustment: tau * log(prior) added to the logits in the loss (0: none).
        classes = int(self.model.output_shape[-1])
        self.offsets = tf.Variable(tf.zeros((classes,)), trainable=False, dtype=tf.float32)
        loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        net, opt, anchors, mu, offsets = (
            self.model,
            self.optimizer,
            self.anchors,
            self.mu,
            self.offsets,
        )

        # One shape-polymorphic graph for every batch (as TFF's client work has): a graph
        # retraced for a short last batch may round differently.
        @tf.function(
            input_signature=[
                tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32),
                tf.TensorSpec((None,), tf.int32),
            ]
        )
        def step(x: Any, y: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                logits = net(x, training=True)
                loss = loss_fn(y, logits + offsets)  # as tff_core.fedavg's model adds them
            grads = tape.gradient(loss, variables)
            # mu (w - w_global), added as tff_core.proximal adds it (0 when mu is 0).
            grads = [g + mu * (v - a) for g, v, a in zip(grads, variables, anchors, strict=True)]
            opt.apply_gradients(zip(grads, variables, strict=True))
            correct = tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32)
            )
            return loss * tf.cast(tf.shape(y)[0], tf.float32), correct

        self.step = step

    def run(
        self,
        weights: dict[str, np.ndarray],
        data: LabeledImages,
        spec: PreprocessSpec,
        settings: LocalTraining,
        seed: int,
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        from models.weights import check_weights

        check_weights(self.names, [tuple(v.shape) for v in self.weights], weights)
        pairs = zip(self.weights, self.anchors, weights.values(), strict=True)
        for variable, anchor, value in pairs:
            variable.assign(value)
            anchor.assign(value)
        self.mu.assign(settings.proximal_mu)
        self.offsets.assign(settings.logit_offsets(data.labels, int(self.offsets.shape[0])))
        for variable, value in zip(self.optimizer.variables, self.initial_state, strict=True):
            variable.assign(value)
        self.optimizer.learning_rate.assign(settings.optimizer.learning_rate)
        for index, variable in enumerate(self.seeds):
            variable.assign([seed, index << 32])
        dataset = round_dataset(data, spec, settings, seed=seed)
        total_loss = total_correct = 0.0
        seen = 0
        for batch in dataset:
            loss, correct = self.step(batch["x"], batch["y"])
            total_loss += float(loss)
            total_correct += float(correct)
            seen += int(batch["y"].shape[0])
        trained = {
            n: np.asarray(v.numpy(), np.float32)
            for n, v in zip(self.names, self.weights, strict=True)
        }
        return trained, {
            "loss": total_loss / max(seen, 1),
            "accuracy": total_correct / max(seen, 1),
            "examples_seen": seen,
        }


def _training_clone(model: tf.keras.Model) -> tuple[tf.keras.Model, list[Any]]:
    """A copy of ``model`` whose dropout layers take their masks from a seed it can reset.

    Keras's Dropout draws from a stateful random op whose seed is fixed when the step is
    traced, so a reused step would continue one random stream across rounds and an update
    would depend on the rounds trained before it. The copy's dropout layers are
    :class:`_SeededDropout` instead (the same inverted dropout, from a stateless generator).

    Returns:
        The copy and its dropout layers' seed variables.
    """
    tf = require("tensorflow")
    seeds: list[Any] = []

    def clone(layer: Any) -> Any:
        if type(layer) is tf.keras.layers.Dropout:
            if layer.noise_shape is not None:
                raise ModelError(f"{layer.name}: dropout with a noise shape is not supported")
            seeded = _seeded_dropout_class()(layer.rate, name=layer.name)
            seeds.append(seeded)
            return seeded
        if hasattr(layer, "_random_generator"):  # Keras's random layers keep one
            raise ModelError(f"{layer.name}: random layer {type(layer).__name__} unsupported")
        return layer.__class__.from_config(layer.get_config())

    copy = tf.keras.models.clone_model(model, clone_function=clone)
    return copy, [layer.seed for layer in seeds]


@functools.cache
def _seeded_dropout_class() -> type:
    """:class:`_SeededDropout`, defined on first use (it subclasses a Keras layer)."""
    tf = require("tensorflow")

    class _SeededDropout(tf.keras.layers.Layer):  # type: ignore[name-defined]
        """Inverted dropout with masks from ``stateless_uniform(seed)``.

        Every call advances the seed's counter; the trainer sets the seed each round.
        """

        def __init__(self, rate: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.rate = float(rate)
            self.seed = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="seed")

        def call(self, inputs: Any, training: Any = None) -> Any:
            if not training or self.rate == 0:
                return tf.identity(inputs)
            uniform = tf.random.stateless_uniform(tf.shape(inputs), seed=self.seed)
            self.seed.assign_add(tf.constant([0, 1], tf.int64))
            keep = tf.cast(uniform >= self.rate, inputs.dtype)
            return inputs * keep / (1.0 - self.rate)

    return _SeededDropout


_TRAINERS: weakref.WeakKeyDictionary[Any, _Trainer] = weakref.WeakKeyDictionary()
"""Each model's trainer (dropped with the model)."""
