"""The Keras layers ``keras_to_torch`` converts: one handler per layer class,
``handler(graph, layer, node, rank, layout, where)`` -> (function of the module and the input
tensors, layout of the output); ``NEAREST``: the supported layer nearest to one outside the
table."""

import math

import keras
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bnlab.tools.convert import layout
from bnlab.tools.convert.errors import UnsupportedOp
from bnlab.tools.convert.keras_layers import BatchStatisticsOnly

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
               "elu": F.elu, "linear": None, "softmax": lambda x: torch.softmax(x, -1),
               "silu": F.silu, "swish": F.silu, "gelu": F.gelu, "relu6": F.relu6,
               "hard_silu": F.hardswish, "hard_swish": F.hardswish,
               "hard_sigmoid": F.hardsigmoid, "hard_tanh": F.hardtanh}
ONE_D = (keras.layers.Conv1D, keras.layers.MaxPooling1D, keras.layers.AveragePooling1D,
         keras.layers.GlobalAveragePooling1D, keras.layers.ZeroPadding1D)


def module_key(layer):
    return layer.name.replace(".", "_").replace("/", "_")


def _act(function):
    if function is None:
        return lambda y: y
    return function


def _activation_of(layer, where):
    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else name.get("config", name.get("class_name"))
    if name not in ACTIVATIONS:
        raise UnsupportedOp(f"unsupported activation {name!r} of {where}")
    return _act(ACTIVATIONS[name])


def _copy(param, value):
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _dense(g, layer, node, rank, lay, where):
    if lay != layout.SAME:
        raise UnsupportedOp(f"unsupported {where}: Dense is covered on (N, ..., features), not "
                            "on the channels of a convolution's output (flatten or pool first)")
    kernel, *bias = layer.get_weights()
    module = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bool(bias))
    _copy(module.weight, kernel.T)
    if bias:
        _copy(module.bias, bias[0])
    key = g.register(layer, module)
    act = _activation_of(layer, where)
    return (lambda self, x: act(self.layers[key](x))), layout.SAME


def _same_padding(size, k, s, d):
    """Keras's (TensorFlow's) "same": total = max((⌈size/s⌉ − 1)·s + (k − 1)·d + 1 − size, 0),
    the smaller half before, the rest after (asymmetric for an even total, e.g. stride 2)."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _conv(g, layer, node, rank, lay, where):
    if layer.data_format != "channels_last":
        raise UnsupportedOp(f"unsupported {where}: only channels_last")
    if layer.padding == "causal":
        raise UnsupportedOp(f"unsupported {where}: padding 'causal'; nearest: ZeroPadding1D(("
                            "(k - 1) * dilation, 0)) before a 'valid' Conv1D")
    kernel, *bias = layer.get_weights()
    dims = kernel.ndim - 2
    cin, cout = kernel.shape[-2:]
    stride, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    pairs = [(0, 0)] * dims
    if layer.padding == "same":
        sizes = node.input_tensors[0].shape[1:1 + dims]
        pairs = [_same_padding(n, k, s, d) for n, k, s, d in
                 zip(sizes, kernel.shape[:dims], stride, dilation)]
    symmetric = all(a == b for a, b in pairs)
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    module = cls(cin * layer.groups, cout, kernel.shape[:dims], stride=stride,
                 padding=tuple(a for a, _ in pairs) if symmetric else 0, dilation=dilation,
                 groups=layer.groups, bias=bool(bias))
    _copy(module.weight, kernel.transpose(dims + 1, dims, *range(dims)))
    if bias:
        _copy(module.bias, bias[0])
    key = g.register(layer, module)
    act = _activation_of(layer, where)
    if symmetric:
        return (lambda self, x: act(self.layers[key](x))), layout.CF
    pads = tuple(p for pair in reversed(pairs) for p in pair)  # F.pad: the last axis first
    return (lambda self, x: act(self.layers[key](F.pad(x, pads)))), layout.CF


def _zero_padding(g, layer, node, rank, lay, where):
    padding = layer.padding
    pairs = [tuple(padding)] if isinstance(layer, keras.layers.ZeroPadding1D) else \
        [tuple(p) for p in padding]
    pads = tuple(int(p) for pair in reversed(pairs) for p in pair)
    return (lambda self, x: F.pad(x, pads)), layout.CF


def batch_norm(g, layer, node, rank, lay, where):
    if getattr(layer, "renorm", False) or getattr(layer, "virtual_batch_size", None):
        raise UnsupportedOp(f"unsupported {where}: renorm and virtual batches have no PyTorch "
                            "BatchNorm; nearest: bnlab BatchNorm without them")
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) and len(layer.axis) == 1 \
        else layer.axis
    axis = axis % rank if isinstance(axis, int) else axis
    # PyTorch's BN normalizes axis 1: a cf tensor's channels (Keras's last axis), or (N, C, L)
    if lay == layout.CF and axis == rank - 1 or rank == 2 and axis == 1 or \
            lay == layout.SAME and rank == 3 and axis == 1:
        permute = False
    elif lay == layout.SAME and rank == 3 and axis == 2:  # (N, T, F): over the features
        permute = True
    else:
        raise UnsupportedOp(f"unsupported {where}: BN over axis {layer.axis} of a rank-{rank} "
                            "tensor; covered: the channels (the last axis of a convolution's "
                            "output, the features of (N, F) or (N, T, F), axis 1 of (N, C, L))")
    weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
    channels = len(weights["moving_mean"])
    forced = isinstance(layer, BatchStatisticsOnly) or node.arguments.kwargs.get("training")
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank]
    momentum = None if layer.momentum is None else 1.0 - float(layer.momentum)
    affine = layer.scale or layer.center
    module = cls(channels, eps=float(layer.epsilon), momentum=momentum, affine=affine,
                 track_running_stats=not forced)
    if affine:
        _copy(module.weight, weights.get("gamma", np.ones(channels, "f4")))
        _copy(module.bias, weights.get("beta", np.zeros(channels, "f4")))
        module.weight.requires_grad_(bool(layer.scale))
        module.bias.requires_grad_(bool(layer.center))
    if not forced:
        _copy(module.running_mean, weights["moving_mean"])
        _copy(module.running_var, weights["moving_variance"])
        if momentum is None:
            module.num_batches_tracked.fill_(int(weights["num_batches_tracked"]))
    key = g.register(layer, module)
    if not forced:
        g.bn_buffers.append((layer, f"layers.{key}"))
    if not layer.trainable:
        g.frozen.append(key)
    if permute:
        return (lambda self, x: self.layers[key](x.permute(0, 2, 1)).permute(0, 2, 1)), lay
    return (lambda self, x: self.layers[key](x)), lay


def _group_norm(g, layer, node, rank, lay, where):
    if lay != layout.CF or layer.axis not in (-1, rank - 1):
        raise UnsupportedOp(f"unsupported {where}: GroupNormalization is covered over the "
                            "channels of a convolution's output")
    module = nn.GroupNorm(layer.groups, node.input_tensors[0].shape[-1],
                          eps=float(layer.epsilon), affine=layer.scale or layer.center)
    key = _norm_weights(g, layer, module, lambda v: v)
    return (lambda self, x: self.layers[key](x)), lay


def _norm_weights(g, layer, module, arrange):
    weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
    for name, param, default in (("gamma", module.weight, 1.0), ("beta", module.bias, 0.0)):
        if param is not None:
            value = weights.get(name)
            _copy(param, arrange(value) if value is not None
                  else np.full(tuple(param.shape), default, "float32"))
    key = g.register(layer, module)
    return key


def _layer_norm(g, layer, node, rank, lay, where):
    """LayerNormalization over Keras axes A. PyTorch's LayerNorm normalizes the last axes: if
    A's PyTorch axes are the last ones (W; H, W; C, H, W of an image) it is that LayerNorm (the
    weight's axes reordered); if A are Keras's last axes (C; W, C) the tensor is made
    channels-last around it; other axes are refused."""
    axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple))
                                     else [layer.axis]))
    if getattr(layer, "rms_scaling", False):
        raise UnsupportedOp(f"unsupported {where}: rms_scaling (nearest: nn.RMSNorm is not "
                            "covered)")
    shape = [int(node.input_tensors[0].shape[a]) for a in axes]
    torch_axes = [layout.torch_axis(a, rank, lay) for a in axes]
    affine = layer.scale or layer.center
    if sorted(torch_axes) == list(range(rank - len(axes), rank)):
        order = sorted(range(len(axes)), key=lambda i: torch_axes[i])
        module = nn.LayerNorm([shape[i] for i in order], eps=float(layer.epsilon),
                              elementwise_affine=affine)
        key = _norm_weights(g, layer, module, lambda v: v.reshape(shape).transpose(order))
        return (lambda self, x: self.layers[key](x)), lay
    if lay == layout.CF and axes == list(range(rank - len(axes), rank)):
        module = nn.LayerNorm(shape, eps=float(layer.epsilon), elementwise_affine=affine)
        key = _norm_weights(g, layer, module, lambda v: v.reshape(shape))
        to_last, to_first = (0, *range(2, rank), 1), (0, rank - 1, *range(1, rank - 1))
        return (lambda self, x: self.layers[key](x.permute(*to_last)).permute(*to_first)), lay
    raise UnsupportedOp(f"unsupported {where}: LayerNormalization over axes {axes}; covered: "
                        "the last axes (PyTorch's or Keras's)")


def _activation_layer(g, layer, node, rank, lay, where):
    act = _activation_of(layer, where)
    if act is ACTIVATIONS["softmax"] and lay == layout.CF:
        raise UnsupportedOp(f"unsupported {where}: softmax over a convolution's channels")
    return (lambda self, x: act(x)), lay


def _relu(g, layer, node, rank, lay, where):
    if layer.threshold or layer.negative_slope:
        raise UnsupportedOp(f"unsupported {where}: ReLU with threshold or slope (nearest: "
                            "LeakyReLU)")
    if layer.max_value is not None:
        high = float(layer.max_value)
        return (lambda self, x: F.hardtanh(x, 0.0, high)), lay
    return (lambda self, x: torch.relu(x)), lay


def _leaky(g, layer, node, rank, lay, where):
    slope = float(layer.negative_slope)
    return (lambda self, x: F.leaky_relu(x, slope)), lay


def _elu(g, layer, node, rank, lay, where):
    alpha = float(layer.alpha)
    return (lambda self, x: F.elu(x, alpha)), lay


def _softmax(g, layer, node, rank, lay, where):
    if lay == layout.CF or layer.axis not in (-1, rank - 1, [-1], [rank - 1]):
        raise UnsupportedOp(f"unsupported {where}: softmax is covered over the last axis of "
                            "(N, ..., features)")
    return (lambda self, x: torch.softmax(x, -1)), lay


def _pool(kind):
    def handler(g, layer, node, rank, lay, where):
        if layer.padding != "valid" or layer.data_format != "channels_last":
            raise UnsupportedOp(f"unsupported {where}: pooling is covered with padding 'valid' "
                                "(nearest: ZeroPadding before an AveragePooling with 'valid')")
        size, stride = tuple(layer.pool_size), tuple(layer.strides)
        function = getattr(F, f"{kind}_pool{len(size)}d")
        return (lambda self, x: function(x, size, stride)), layout.CF
    return handler


def _global_pool(g, layer, node, rank, lay, where):
    axes = tuple(range(2, rank))
    if layer.keepdims:
        return (lambda self, x: x.mean(axes, keepdim=True)), layout.CF
    return (lambda self, x: x.mean(axes)), layout.SAME


def _permute(g, layer, node, rank, lay, where):
    dims = tuple(layer.dims)
    if lay == layout.CF and dims == (rank - 1, *range(1, rank - 1)):
        return (lambda self, x: x), layout.SAME  # the PyTorch tensor is that (N, C, ...) already
    raise UnsupportedOp(f"unsupported {where}: Permute is covered as ({rank - 1}, 1, ...) "
                        "before Flatten")


def _flatten(g, layer, node, rank, lay, where):
    if lay == layout.CF:  # Keras flattens (*S, C)
        order = (0, *range(2, rank), 1)
        return (lambda self, x: torch.flatten(x.permute(*order), 1)), layout.SAME
    return (lambda self, x: torch.flatten(x, 1)), layout.SAME


def _dropout(g, layer, node, rank, lay, where):
    module = nn.Dropout(float(layer.rate))
    key = g.register(layer, module)
    return (lambda self, x: self.layers[key](x)), lay


def _merge(kind):
    def handler(g, layer, node, rank, lay, where):
        def merge(self, *xs):
            out = xs[0]
            for x in xs[1:]:
                out = out * x if kind == "mul" else out + x
            return out

        def subtract(self, a, b):
            return a - b
        return (subtract if kind == "sub" else merge), lay
    return handler


def _concatenate(g, layer, node, rank, lay, where):
    axis = layout.torch_axis(layer.axis % rank, rank, lay)
    return (lambda self, *xs: torch.cat(xs, axis)), lay


def _rescaling(g, layer, node, rank, lay, where):
    scale, offset = layer.scale, layer.offset
    if not all(isinstance(v, (int, float)) for v in (scale, offset)):
        raise UnsupportedOp(f"unsupported {where}: Rescaling by arrays (numbers are covered)")
    scale, offset = float(scale), float(offset)
    return (lambda self, x: x * scale + offset), lay


HANDLERS = {
    keras.layers.Dense: _dense,
    **{cls: _conv for cls in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)},
    **{cls: _zero_padding for cls in (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D,
                                      keras.layers.ZeroPadding3D)},
    keras.layers.GroupNormalization: _group_norm,
    keras.layers.LayerNormalization: _layer_norm,
    keras.layers.Activation: _activation_layer, keras.layers.ReLU: _relu,
    keras.layers.LeakyReLU: _leaky, keras.layers.ELU: _elu, keras.layers.Softmax: _softmax,
    **{cls: _pool("max") for cls in (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D,
                                     keras.layers.MaxPooling3D)},
    **{cls: _pool("avg") for cls in (keras.layers.AveragePooling1D,
                                     keras.layers.AveragePooling2D,
                                     keras.layers.AveragePooling3D)},
    **{cls: _global_pool for cls in (keras.layers.GlobalAveragePooling1D,
                                     keras.layers.GlobalAveragePooling2D,
                                     keras.layers.GlobalAveragePooling3D)},
    keras.layers.Permute: _permute, keras.layers.Flatten: _flatten,
    keras.layers.Dropout: _dropout, keras.layers.Add: _merge("add"),
    keras.layers.Subtract: _merge("sub"), keras.layers.Multiply: _merge("mul"),
    keras.layers.Concatenate: _concatenate, keras.layers.Rescaling: _rescaling,
}
NEAREST = {  # the supported layer nearest to one outside the table, by class name
    "Conv2DTranspose": "nearest: UpSampling is not covered either; ",
    "DepthwiseConv2D": "nearest: Conv2D(groups=channels); ",
    "SeparableConv2D": "nearest: Conv2D(groups=channels) followed by a 1x1 Conv2D; ",
    "GlobalMaxPooling2D": "nearest: GlobalAveragePooling2D or MaxPooling2D; ",
    "Reshape": "nearest: Flatten; ",
}
