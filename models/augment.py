"""Training-time augmentation: which (:class:`Augmentation`, light) and how (TensorFlow, lazy).

A round's settings name the level; :func:`augment_example` applies it to one element of a
site's dataset, seeded by the round's seed and the element's position, so a device and the
TFF simulation draw the same transforms (:func:`models.training.make_client_dataset`).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from privadx.common.compat import StrEnum
from privadx.common.deps import require
from privadx.common.preprocess import PreprocessSpec

if TYPE_CHECKING:
    import tensorflow as tf


class Augmentation(StrEnum):
    """How much a site perturbs its training images."""

    NONE = "none"
    SHIFT = "shift"
    """Translate by up to :data:`MAX_SHIFT` pixels (reflect padding)."""
    STRONG = "strong"
    """The shift, then a mirror image half the time, contrast scaled by a factor in
    ``1 +- MAX_CONTRAST`` and brightness moved by up to ``MAX_BRIGHTNESS`` of the pixel range."""


MAX_SHIFT = 2
"""Largest random translation, in pixels."""
MAX_CONTRAST = 0.2
"""Largest relative change of an image's contrast (``strong``)."""
MAX_BRIGHTNESS = 0.1
"""Largest change of an image's brightness, as a share of the pixel range 0-255 (``strong``)."""

_DRAWS = 4
"""Independent random draws per element: the shift, the mirror, contrast, brightness."""


def augment_example(
    example: collections.OrderedDict[str, tf.Tensor],
    level: Augmentation,
    spec: PreprocessSpec,
    seed: int,
    index: tf.Tensor,
) -> collections.OrderedDict[str, tf.Tensor]:
    """Element ``index`` of a dataset seeded ``seed``, augmented as ``level`` asks.

    ``example["x"]`` is a model input (``(H, W, C)``, normalised as ``spec`` says); the
    label and any other entry pass through. The shift's draw is the one the ``shift`` level
    has always made, so ``strong`` transforms the very image ``shift`` would give.
    """
    if level is Augmentation.NONE:
        return example
    tf = require("tensorflow")
    base = tf.constant(seed % (2**31), tf.int64)
    position = tf.cast(index, tf.int64)

    def draw(k: int) -> Any:  # the k-th independent seed of this element (a tf.Tensor)
        return tf.stack([base, position]) if k == 0 else tf.stack([base, -(position * _DRAWS + k)])

    pad = [[MAX_SHIFT, MAX_SHIFT], [MAX_SHIFT, MAX_SHIFT], [0, 0]]
    x = tf.image.stateless_random_crop(
        tf.pad(example["x"], pad, mode="REFLECT"),
        (spec.height, spec.width, spec.channels),
        seed=draw(0),
    )
    if level is Augmentation.STRONG:
        x = tf.image.stateless_random_flip_left_right(x, seed=draw(1))
        x = tf.image.stateless_random_contrast(x, 1 - MAX_CONTRAST, 1 + MAX_CONTRAST, seed=draw(2))
        # brightness in model units: a share of the pixel range over the normalisation's std
        x = tf.image.stateless_random_brightness(x, MAX_BRIGHTNESS / spec.std, seed=draw(3))
    out = collections.OrderedDict(example)
    out["x"] = x
    return out
