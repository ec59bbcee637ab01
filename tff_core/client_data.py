"""Pure TensorFlow input pipelines: one ``tf.data.Dataset`` per site, deterministic by seed.

These functions know nothing about federation; they are the first of TFF's three layers and
are tested on their own.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from common.data.arrays import LabeledImages
from common.deps import require
from common.preprocess import PreprocessSpec, to_model_input

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
    ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True).repeat(epochs)
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


def element_spec(spec: PreprocessSpec) -> collections.OrderedDict[str, tf.TensorSpec]:
    """The type of one batch produced by :func:`make_client_dataset`."""
    tf = require("tensorflow")
    return collections.OrderedDict(
        x=tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32),
        y=tf.TensorSpec((None,), tf.int32),
    )
