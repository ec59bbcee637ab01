"""Write the ONNX graph of a PrivaDx Keras model directly, layer by layer, in NCHW.

tf2onnx converts the TensorFlow graph op by op. For Keras's GroupNormalization that graph
computes its group shapes at run time from the dynamic batch dimension, and tf2onnx turns
every step of that arithmetic into ONNX nodes (Shape, Gather, Concat, Cast, ...): for the
CNN about two thirds of the 335 nodes, which ONNX Runtime runs on every call and which cost
more than the convolutions at batch 1. The layers PrivaDx's architectures use all have a
direct ONNX form, so this module writes it:

- the NHWC input is transposed to NCHW once (a reshape for one channel); convolutions keep
  ONNX's native layout;
- Group Normalization (Wu and He 2018) is ``Reshape(N, G, -1)`` -> ``InstanceNormalization``
  (per-group mean and biased variance, the layer's epsilon) -> ``Reshape(N, C, H, W)`` ->
  the per-channel affine map (gamma, beta) written as a ``BatchNormalization`` with mean 0,
  variance 1 and epsilon 0; the ``0`` in the reshape shapes copies the batch dimension, so
  no shape arithmetic runs per call;
- TensorFlow's ``same`` padding is written as explicit (possibly asymmetric) pads, since the
  spatial size is static.

A model that ends in global average pooling and a dense layer can also output its class
activation maps (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR
2016): the dense layer's weights applied at every position of the last feature maps, written as
a 1x1 ``Conv`` of those maps (no gradients, no bias), output ``(N, K, h, w)``. The spatial mean
of class ``k``'s map plus the dense bias is class ``k``'s logit.

A model with a layer or option not listed here raises :class:`UnsupportedModelError`, and the
caller falls back to tf2onnx. Parity with Keras is checked after every export
(``models.onnx_export.verify_parity``).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from privadx.common.deps import require

if TYPE_CHECKING:
    import onnx
    import tensorflow as tf


class UnsupportedModelError(Exception):
    """The model uses a layer or option the direct writer does not handle."""


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``same`` padding of one spatial axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Graph:
    """Accumulates nodes and initializers while walking the layers."""

    def __init__(self) -> None:
        self.helper = require("onnx").helper
        self.numpy_helper = require("onnx").numpy_helper
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def _spatial_pads(layer: Any, in_hw: tuple[int, int], kernel: tuple[int, int]) -> list[int]:
    strides = tuple(layer.strides)
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    if layer.padding != "same":
        raise UnsupportedModelError(f"{layer.name}: padding {layer.padding!r}")
    (top, bottom), (left, right) = (_same_pads(in_hw[i], kernel[i], strides[i]) for i in range(2))
    return [top, left, bottom, right]


def _params(layer: Any) -> list[np.ndarray]:
    """A layer's weights as float32 arrays (kernel first, then the bias if it has one)."""
    return [np.asarray(w, np.float32) for w in layer.get_weights()]


def _check_plain(layer: Any) -> None:
    config = layer.get_config()
    if config.get("activation", "linear") != "linear":
        raise UnsupportedModelError(f"{layer.name}: fused activation {config['activation']!r}")
    if tuple(config.get("dilation_rate", (1, 1))) != (1, 1):
        raise UnsupportedModelError(f"{layer.name}: dilated convolution")
    if config.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedModelError(f"{layer.name}: data_format {config['data_format']!r}")


def _conv(g: _Graph, layer: Any, x: str, in_shape: tuple[int, ...], depthwise: bool) -> str:
    _check_plain(layer)
    kernel, *bias = _params(layer)
    kh, kw = kernel.shape[:2]
    if depthwise:
        channels, multiplier = kernel.shape[2:]
        w = kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
        group = channels
    else:
        w, group = kernel.transpose(3, 2, 0, 1), 1
    inputs = [x, g.const(f"{layer.name}/W", w)] + [g.const(f"{layer.name}/B", b) for b in bias]
    return g.node(
        "Conv", inputs, layer.name,
        kernel_shape=[kh, kw], strides=list(layer.strides), group=group,
        pads=_spatial_pads(layer, (in_shape[1], in_shape[2]), (kh, kw)),
    )  # fmt: skip


def _group_norm(g: _Graph, layer: Any, x: str, out_shape: tuple[int, ...]) -> str:
    if layer.axis not in (-1, 3):
        raise UnsupportedModelError(f"{layer.name}: normalizes axis {layer.axis}")
    _, height, width, channels = out_shape
    groups = channels if layer.groups == -1 else layer.groups
    params = iter(_params(layer))
    gamma = next(params) if layer.scale else np.ones(channels, np.float32)
    beta = next(params) if layer.center else np.zeros(channels, np.float32)
    n = layer.name
    grouped = g.node(
        "Reshape", [x, g.const(f"{n}/grouped_shape", np.array([0, groups, -1]))], f"{n}/grouped"
    )
    normed = g.node(
        "InstanceNormalization",
        [grouped, g.const(f"{n}/ones", np.ones(groups, np.float32)),
         g.const(f"{n}/zeros", np.zeros(groups, np.float32))],
        f"{n}/normalized", epsilon=float(layer.epsilon),
    )  # fmt: skip
    shape = np.array([0, channels, height, width])
    y = g.node("Reshape", [normed, g.const(f"{n}/shape", shape)], f"{n}/ungrouped")
    # gamma * y + beta as one per-channel op: BatchNormalization with mean 0, variance 1
    # and epsilon 0 is exactly that affine map (ONNX Runtime runs it as one kernel).
    affine = [
        g.const(f"{n}/gamma", gamma), g.const(f"{n}/beta", beta),
        g.const(f"{n}/mean0", np.zeros(channels, np.float32)),
        g.const(f"{n}/var1", np.ones(channels, np.float32)),
    ]  # fmt: skip
    return g.node("BatchNormalization", [y, *affine], n, epsilon=0.0)


def _relu(g: _Graph, layer: Any, x: str) -> str:
    if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        raise UnsupportedModelError(f"{layer.name}: leaky or thresholded ReLU")
    if layer.max_value is None:
        return g.node("Relu", [x], layer.name)
    top = g.const(f"{layer.name}/max", np.array(float(layer.max_value), np.float32))
    return g.node("Clip", [x, g.const(f"{layer.name}/min", np.array(0.0, np.float32)), top],
                  layer.name)  # fmt: skip


def _max_pool(g: _Graph, layer: Any, x: str, in_shape: tuple[int, ...]) -> str:
    pool = tuple(layer.pool_size)
    return g.node(
        "MaxPool", [x], layer.name, kernel_shape=list(pool), strides=list(layer.strides),
        pads=_spatial_pads(layer, (in_shape[1], in_shape[2]), pool),
    )  # fmt: skip


def _dense(g: _Graph, layer: Any, x: str) -> str:
    _check_plain(layer)
    kernel, *bias = _params(layer)
    inputs = [x, g.const(f"{layer.name}/W", kernel)] + [g.const(f"{layer.name}/B", b) for b in bias]
    return g.node("Gemm", inputs, layer.name)


def _class_maps(
    g: _Graph, layers: list[Any], pooled_from: tuple[Any, str, tuple[int, ...]] | None, name: str
) -> onnx.ValueInfoProto:
    """Add the class activation maps ``(N, K, h, w)`` as output ``name``; its value info.

    ``pooled_from`` is the last global pooling layer with the maps it pooled; after it only
    dropout and the final dense layer may follow.
    """
    tf = require("tensorflow")
    onnx = require("onnx")
    tail = layers[layers.index(pooled_from[0]) + 1 :] if pooled_from else []
    if not (
        tail
        and type(tail[-1]) is tf.keras.layers.Dense
        and all(type(layer) is tf.keras.layers.Dropout for layer in tail[:-1])
    ):
        raise UnsupportedModelError("no class activation maps: the model does not end in "
                                    "global average pooling and a dense layer")  # fmt: skip
    assert pooled_from is not None
    _, maps, (_, h, w, channels) = pooled_from
    kernel = _params(tail[-1])[0]  # (C, K)
    weights = np.ascontiguousarray(kernel.T.reshape(kernel.shape[1], channels, 1, 1))
    g.node("Conv", [maps, g.const(f"{name}/W", weights)], name, kernel_shape=[1, 1])
    return onnx.helper.make_tensor_value_info(
        name, onnx.TensorProto.FLOAT, ["batch", kernel.shape[1], h, w]
    )


def _chain(model: tf.keras.Model) -> list[Any]:
    """The model's layers after its input, checked to form a single chain."""
    layers = list(model.layers)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError("the model has several inputs or outputs")
    for previous, layer in itertools.pairwise(layers):
        inbound = layer._inbound_nodes  # Keras keeps a layer's wiring only here
        if len(inbound) != 1 or inbound[0].inbound_layers is not previous:
            raise UnsupportedModelError(f"{layer.name}: not a simple chain of layers")
    return layers[1:]


def keras_to_onnx(
    model: tf.keras.Model,
    *,
    opset: int,
    input_name: str,
    output_name: str,
    cam_name: str | None = None,
) -> onnx.ModelProto:
    """The ONNX model of ``model`` (dynamic batch), or :class:`UnsupportedModelError`.

    With ``cam_name``, a second output of that name holds the class activation maps (see the
    module docstring); a model that does not end in pooling and a dense layer then raises
    :class:`UnsupportedModelError`.
    """
    tf = require("tensorflow")
    onnx = require("onnx")
    layers_ = tf.keras.layers
    g = _Graph()
    _, height, width, channels = model.input_shape
    if channels == 1:  # NHWC and NCHW hold one channel's values in the same order
        nchw = g.const("nchw_shape", np.array([0, 1, height, width]))
        x = g.node("Reshape", [input_name, nchw], "to_nchw")
    else:
        x = g.node("Transpose", [input_name], "to_nchw", perm=[0, 3, 1, 2])
    layers = _chain(model)
    pooled_from: tuple[Any, str, tuple[int, ...]] | None = None  # last pooling and its maps
    for layer in layers:
        in_shape, out_shape = tuple(layer.input_shape), tuple(layer.output_shape)
        kind = type(layer)
        if kind is layers_.DepthwiseConv2D:
            x = _conv(g, layer, x, in_shape, depthwise=True)
        elif kind is layers_.Conv2D:
            x = _conv(g, layer, x, in_shape, depthwise=False)
        elif kind is layers_.GroupNormalization:
            x = _group_norm(g, layer, x, out_shape)
        elif kind is layers_.ReLU:
            x = _relu(g, layer, x)
        elif kind is layers_.MaxPooling2D:
            x = _max_pool(g, layer, x, in_shape)
        elif kind is layers_.GlobalAveragePooling2D and not layer.keepdims:
            pooled_from = (layer, x, in_shape)
            pooled = g.node("GlobalAveragePool", [x], f"{layer.name}/pool")
            x = g.node("Flatten", [pooled], layer.name)
        elif kind is layers_.Dropout:
            continue
        elif kind is layers_.Dense and len(in_shape) == 2:
            x = _dense(g, layer, x)
        else:
            raise UnsupportedModelError(f"{layer.name}: {kind.__name__} is not handled")
    g.nodes[-1].output[0] = output_name  # the last node's output feeds nothing else
    h = onnx.helper
    outputs = [h.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT,
                                        ["batch", model.output_shape[-1]])]  # fmt: skip
    if cam_name is not None:
        outputs.append(_class_maps(g, layers, pooled_from, cam_name))
    graph = h.make_graph(
        g.nodes,
        model.name,
        [h.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT,
                                  ["batch", height, width, channels])],
        outputs,
        initializer=g.initializers,
    )  # fmt: skip
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="privadx")
    proto.ir_version = 8
    return proto
