"""Keras model builders: a compact CNN and a small MobileNet-style network.

Both are BatchNorm-free: they use Group Normalization (Wu and He, "Group Normalization",
ECCV 2018), whose statistics are computed per image, so there are no running statistics that
federated averaging would mix across sites with different data (Hsieh et al., "The Non-IID
Data Quagmire of Decentralized Machine Learning", ICML 2020). Every weight is trainable and
is averaged like any other. Models output logits; softmax happens in the loss and at
diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.spec import INPUT_NAME, OUTPUT_NAME, Architecture, ModelSpec
from privadx.common.deps import require

if TYPE_CHECKING:
    import tensorflow as tf


def build_model(spec: ModelSpec, *, seed: int = 0) -> tf.keras.Model:
    """Build the Keras model ``spec`` describes, initialised deterministically from ``seed``."""
    tf = require("tensorflow")
    tf.keras.utils.set_random_seed(seed)
    if spec.arch is Architecture.CNN:
        return _cnn(spec)
    return _mobilenet(spec)


def _conv_block(x: tf.Tensor, filters: int, name: str) -> tf.Tensor:
    tf = require("tensorflow")
    layers = tf.keras.layers
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=8, name=f"{name}_gn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _scaled(filters: int, multiplier: float) -> int:
    """``filters`` times the width multiplier, a multiple of 8 (GroupNorm's 8 groups)."""
    return max(8, round(filters * multiplier / 8) * 8)


def _cnn(spec: ModelSpec) -> tf.keras.Model:
    tf = require("tensorflow")
    layers = tf.keras.layers
    inputs = tf.keras.Input((spec.height, spec.width, spec.channels), name=INPUT_NAME)
    x = inputs
    for stage, base in enumerate((16, 32, 64)):
        filters = _scaled(base, spec.width_multiplier)
        x = _conv_block(x, filters, f"s{stage}a")
        x = _conv_block(x, filters, f"s{stage}b")
        if stage < 2:
            x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(spec.dropout, seed=1, name="dropout")(x)
    outputs = layers.Dense(spec.num_classes, name=OUTPUT_NAME)(x)
    return tf.keras.Model(inputs, outputs, name="privadx_cnn")


def _separable_block(x: tf.Tensor, filters: int, stride: int, name: str) -> tf.Tensor:
    tf = require("tensorflow")
    layers = tf.keras.layers
    x = layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw"
    )(x)
    x = layers.GroupNormalization(groups=1, name=f"{name}_dw_gn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.GroupNormalization(groups=8, name=f"{name}_pw_gn")(x)
    return layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def _mobilenet(spec: ModelSpec) -> tf.keras.Model:
    tf = require("tensorflow")
    layers = tf.keras.layers

    inputs = tf.keras.Input((spec.height, spec.width, spec.channels), name=INPUT_NAME)
    stem = _scaled(32, spec.width_multiplier)
    x = layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.GroupNormalization(groups=8, name="stem_gn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    plan = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))
    for i, (filters, stride) in enumerate(plan):
        x = _separable_block(x, _scaled(filters, spec.width_multiplier), stride, f"b{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(spec.dropout, seed=1, name="dropout")(x)
    outputs = layers.Dense(spec.num_classes, name=OUTPUT_NAME)(x)
    return tf.keras.Model(inputs, outputs, name="privadx_mobilenet")
