"""Pure TensorFlow training pieces: input pipelines and local training, deterministic by seed.

These functions know nothing about federation: the TFF simulation feeds the same pipelines to
its client work, and edge devices train with :func:`train_locally` without TFF.
"""

from __future__ import annotations

import collections
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.data.arrays import LabeledImages
from common.deps import require
from common.errors import InputError
from common.preprocess import PreprocessSpec, to_model_input
from common.wire.update_codec import Encoding
from models.optim import OptimizerName, OptimizerSpec

if TYPE_CHECKING:
    import tensorflow as tf


def make_client_dataset(
    data: LabeledImages,
    spec: PreprocessSpec,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    augment: bool = True,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of ``{"x": float32 images, "y": int32 labels}`` for ``epochs`` local epochs.

    The order is reshuffled every epoch from ``seed``; with ``augment`` every image is shifted
    by up to :data:`MAX_SHIFT` pixels (reflect padding and a stateless random crop seeded by
    ``seed`` and the example's position), so a run is repeatable.
    """
    tf = require("tensorflow")
    features = collections.OrderedDict(
        x=to_model_input(data.images, spec), y=data.labels.astype("int32")
    )
    ds = tf.data.Dataset.from_tensor_slices(features)
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat(epochs)
    if augment:
        ds = ds.enumerate().map(lambda i, e: _shift(e, spec, seed, i))
    return ds.batch(batch_size)


MAX_SHIFT = 2
"""Largest random translation, in pixels, applied by training-time augmentation."""


def _shift(
    example: collections.OrderedDict[str, tf.Tensor],
    spec: PreprocessSpec,
    seed: int,
    index: tf.Tensor,
) -> collections.OrderedDict[str, tf.Tensor]:
    tf = require("tensorflow")
    pad = [[MAX_SHIFT, MAX_SHIFT], [MAX_SHIFT, MAX_SHIFT], [0, 0]]
    padded = tf.pad(example["x"], pad, mode="REFLECT")
    shifted = tf.image.stateless_random_crop(
        padded,
        (spec.height, spec.width, spec.channels),
        seed=tf.stack([tf.constant(seed % (2**31), tf.int64), tf.cast(index, tf.int64)]),
    )
    return collections.OrderedDict(x=shifted, y=example["y"])


def local_seed(seed: int, round_num: int, site_id: str) -> int:
    """The seed of a site's shuffling and augmentation in a round (same in simulation and MQTT)."""
    return seed * 1_000_003 + round_num * 1009 + zlib.crc32(site_id.encode()) % 1000


def site_name(index: int) -> str:
    """The id of simulated site ``index`` (``site-0``, ...), as the demo's edge agents use."""
    return f"site-{index}"


def element_spec(spec: PreprocessSpec) -> collections.OrderedDict[str, tf.TensorSpec]:
    """The type of one batch produced by :func:`make_client_dataset`."""
    tf = require("tensorflow")
    return collections.OrderedDict(
        x=tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32),
        y=tf.TensorSpec((None,), tf.int32),
    )


@dataclass(frozen=True, kw_only=True)
class LocalTraining:
    """How a site trains in one round (sent by the gateway in the round announcement)."""

    local_epochs: int = 2
    batch_size: int = 32
    optimizer: OptimizerSpec = field(
        default_factory=lambda: OptimizerSpec(name=OptimizerName.ADAM, learning_rate=1e-3)
    )
    augment: bool = True
    shuffle: bool = True
    encoding: Encoding = Encoding.FLOAT32
    """How sites send their update (see :mod:`common.wire.update_codec`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "augment": self.augment,
            "shuffle": self.shuffle,
            "encoding": str(self.encoding),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalTraining:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on bad values."""
        try:
            epochs, batch = int(data["local_epochs"]), int(data["batch_size"])
            optimizer = OptimizerSpec.from_dict(data["optimizer"])
            augment, shuffle = bool(data.get("augment", True)), bool(data.get("shuffle", True))
            encoding = Encoding(data.get("encoding", Encoding.FLOAT32))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed training settings: {exc}") from exc
        if not (1 <= epochs <= 100 and 1 <= batch <= 4096):
            raise InputError(f"training settings out of range: {epochs} epochs, batch {batch}")
        return cls(
            local_epochs=epochs,
            batch_size=batch,
            optimizer=optimizer,
            augment=augment,
            shuffle=shuffle,
            encoding=encoding,
        )


_GLOBAL_SEED = threading.Lock()
"""Serialises local training within one process (the global TF seed is shared)."""


def train_locally(
    model: tf.keras.Model,
    data: LabeledImages,
    spec: PreprocessSpec,
    settings: LocalTraining,
    *,
    seed: int,
) -> dict[str, float]:
    """Train ``model`` in place on a site's images; return the mean loss and accuracy.

    Uses the same input pipeline and update rule as TFF's client work in the simulation, so a
    device without TFF computes the update the simulation would. The TF random state (dropout
    masks) is seeded from ``seed`` too, so the update depends only on the global model, the
    data and the seed, not on what the process did before: a restarted device recomputes the
    update it would have sent.
    """
    with _GLOBAL_SEED:  # TF's seed is per process: trainers sharing one take turns
        started = time.monotonic()
        metrics = _train_seeded(model, data, spec, settings, seed)
        metrics["train_seconds"] = round(time.monotonic() - started, 3)  # not the turn's wait
        return metrics


def _train_seeded(
    model: tf.keras.Model,
    data: LabeledImages,
    spec: PreprocessSpec,
    settings: LocalTraining,
    seed: int,
) -> dict[str, float]:
    tf = require("tensorflow")
    tf.random.set_seed(seed)
    # Keras draws a layer's dropout seed on its first call: fresh layers after set_seed make
    # the masks depend on ``seed`` alone (measured: reusing the layers moved weights by 1.04e-2).
    target, model = model, tf.keras.models.clone_model(model)
    model.set_weights(target.get_weights())
    dataset = make_client_dataset(
        data,
        spec,
        batch_size=settings.batch_size,
        epochs=settings.local_epochs,
        seed=seed,
        augment=settings.augment,
        shuffle=settings.shuffle,
    )
    optimizer = settings.optimizer.to_keras()
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    # One shape-polymorphic graph for every batch (as TFF's client work has): a graph retraced
    # for a short last batch may round differently.
    @tf.function(
        input_signature=[
            tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def step(x: Any, y: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32)
        )
        return loss * tf.cast(tf.shape(y)[0], tf.float32), correct

    total_loss = total_correct = 0.0
    seen = 0
    for batch in dataset:
        loss, correct = step(batch["x"], batch["y"])
        total_loss += float(loss)
        total_correct += float(correct)
        seen += int(batch["y"].shape[0])
    target.set_weights(model.get_weights())
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": total_correct / max(seen, 1),
        "examples_seen": seen,
    }
