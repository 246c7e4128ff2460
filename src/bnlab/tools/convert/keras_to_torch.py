"""A Keras model as a ``torch.nn.Module`` and its exported program (``torch.export``), layer by
layer: the inverse of ``torch_to_keras`` (the table in ``bnlab.tools.convert``).

The module takes PyTorch's layout, (N, C, H, W) for images; its submodules are named after the
Keras layers (dots and slashes as underscores). BN: Keras momentum m is PyTorch's 1 − m, ε the
same; ``trainable=False`` becomes a module in eval mode inside the training export, and
``BatchStatisticsOnly`` (or a call with ``training=True``) ``track_running_stats=False``. The
program is exported in training mode (every BN and dropout op carries ``training=True``; bnlab
flips them for inference, as ``verify`` does).
"""

import math

import keras
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bnlab.tools import findings
from bnlab.tools.convert.errors import UnsupportedOp
from bnlab.tools.convert.keras_layers import BatchStatisticsOnly
from bnlab.tools.precise import is_batch_norm

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
               "elu": F.elu, "linear": None, "softmax": lambda x: torch.softmax(x, -1)}


def to_torch(model):
    """(module, [(Keras BN layer, module path)]); raises ``UnsupportedOp``."""
    graph = _Graph(model)
    return graph.module, graph.bn_buffers


def export(model, batch=4):
    """The Keras model as a training-mode ``torch.export`` program (batch size dynamic, ≥ 2)."""
    module, pairs = to_torch(model)
    shape = tuple(model.inputs[0].shape[1:])
    shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 and _is_image(model) else shape
    example = torch.zeros((batch, *shape))
    dims = ({0: torch.export.Dim("batch", min=2)},)
    program = torch.export.export(module, (example,), dynamic_shapes=dims)
    return program, pairs


def _is_image(model):
    return len(model.inputs[0].shape) == 4


def _name(layer):
    return layer.name.replace(".", "_").replace("/", "_")


class Converted(nn.Module):
    """Runs the Keras graph's steps in order: each ``(output, function, inputs)``."""

    def __init__(self, steps, output):
        super().__init__()
        self.layers = nn.ModuleDict()
        self.steps, self.output = steps, output

    def forward(self, x):
        env = {"input": x}
        for out, function, inputs in self.steps:
            env[out] = function(self, *[env[i] for i in inputs])
        return env[self.output]


class _Graph:
    def __init__(self, model):
        self.model = model
        self.nodes = findings.graph_nodes(model)
        self.steps, self.bn_buffers, self.done, self.layout, self.frozen = [], [], {}, {}, []
        self.module = Converted(self.steps, None)
        inputs = model.inputs
        if len(inputs) != 1 or len(model.outputs) != 1:
            raise UnsupportedOp("the conversion covers Keras models of one input and one output")
        self.done[id(inputs[0])] = "input"
        self.layout["input"] = "nchw" if len(inputs[0].shape) == 4 else "same"
        self.module.output = self.tensor(model.outputs[0])
        for layer in self.module.layers.values():
            layer.train()
        for name in self.frozen:
            self.module.layers[name].eval()

    def tensor(self, t):
        """The step that computes Keras tensor ``t`` (converting what it depends on first)."""
        if id(t) in self.done:
            return self.done[id(t)]
        layer, node_index, _ = t._keras_history
        node = layer._inbound_nodes[node_index]
        if isinstance(layer, keras.Model):
            raise UnsupportedOp(f"nested model {layer.name}: flatten it into one model first")
        inputs = [self.tensor(i) for i in node.input_tensors]
        name = f"t{len(self.steps)}"
        function, layout = self.convert(layer, node, inputs)
        self.steps.append((name, function, inputs))
        self.layout[name] = layout
        self.done[id(t)] = name
        return name

    def register(self, layer, module):
        key = _name(layer)
        if key not in self.module.layers:
            self.module.layers[key] = module
        return key

    def convert(self, layer, node, inputs):
        layout = self.layout[inputs[0]] if inputs else "same"
        rank = len(node.input_tensors[0].shape) if node.input_tensors else 0
        where = f"layer {layer.name} ({layer.__class__.__name__})"
        handler = _batch_norm if is_batch_norm(layer) else next(
            (h for cls, h in _HANDLERS.items() if isinstance(layer, cls)), None)
        if handler is None:
            raise UnsupportedOp(f"unsupported {where}; supported: see bnlab.tools.convert")
        return handler(self, layer, node, rank, layout, where)


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


def _dense(g, layer, node, rank, layout, where):
    if rank != 2:
        raise UnsupportedOp(f"unsupported {where}: Dense is covered on (N, features) inputs")
    kernel, *bias = layer.get_weights()
    module = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bool(bias))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(kernel.T.copy()))
        if bias:
            module.bias.copy_(torch.from_numpy(bias[0]))
    key = g.register(layer, module)
    act = _activation_of(layer, where)
    return (lambda self, x: act(self.layers[key](x))), "same"


def _same_padding(size, k, s, d):
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _conv(g, layer, node, rank, layout, where):
    if layer.data_format != "channels_last":
        raise UnsupportedOp(f"unsupported {where}: only channels_last")
    kernel, *bias = layer.get_weights()
    kh, kw, cin, cout = kernel.shape
    stride, dilation = layer.strides, layer.dilation_rate
    pads = (0, 0, 0, 0)
    if layer.padding == "same":
        h, w = node.input_tensors[0].shape[1:3]
        (top, bottom), (left, right) = (_same_padding(h, kh, stride[0], dilation[0]),
                                        _same_padding(w, kw, stride[1], dilation[1]))
        pads = (left, right, top, bottom)
    symmetric = pads[0] == pads[1] and pads[2] == pads[3]
    module = nn.Conv2d(cin * layer.groups, cout, (kh, kw), stride=stride,
                       padding=(pads[2], pads[0]) if symmetric else 0, dilation=dilation,
                       groups=layer.groups, bias=bool(bias))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        if bias:
            module.bias.copy_(torch.from_numpy(bias[0]))
    key = g.register(layer, module)
    act = _activation_of(layer, where)
    if symmetric:
        return (lambda self, x: act(self.layers[key](x))), "nchw"
    return (lambda self, x: act(self.layers[key](F.pad(x, pads)))), "nchw"


def _zero_padding(g, layer, node, rank, layout, where):
    (top, bottom), (left, right) = layer.padding
    return (lambda self, x: F.pad(x, (left, right, top, bottom))), "nchw"


def _batch_norm(g, layer, node, rank, layout, where):
    if getattr(layer, "renorm", False) or getattr(layer, "virtual_batch_size", None):
        raise UnsupportedOp(f"unsupported {where}: renorm and virtual batches have no PyTorch "
                            "BatchNorm")
    if layer.axis not in (-1, rank - 1, [rank - 1]):
        raise UnsupportedOp(f"unsupported {where}: BN over axis {layer.axis}, not the channels")
    weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
    channels = len(weights["moving_mean"])
    forced = isinstance(layer, BatchStatisticsOnly) or node.arguments.kwargs.get("training")
    cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    momentum = None if layer.momentum is None else 1.0 - float(layer.momentum)
    affine = layer.scale or layer.center
    module = cls(channels, eps=float(layer.epsilon), momentum=momentum, affine=affine,
                 track_running_stats=not forced)
    with torch.no_grad():
        if affine:
            module.weight.copy_(torch.from_numpy(weights.get("gamma", np.ones(channels, "f4"))))
            module.bias.copy_(torch.from_numpy(weights.get("beta", np.zeros(channels, "f4"))))
            module.weight.requires_grad_(bool(layer.scale))
            module.bias.requires_grad_(bool(layer.center))
        if not forced:
            module.running_mean.copy_(torch.from_numpy(weights["moving_mean"]))
            module.running_var.copy_(torch.from_numpy(weights["moving_variance"]))
    key = g.register(layer, module)
    if not forced:
        g.bn_buffers.append((layer, f"layers.{key}"))
    if not layer.trainable:
        g.frozen.append(key)
    return (lambda self, x: self.layers[key](x)), layout


def _norm(kind):
    def handler(g, layer, node, rank, layout, where):
        weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
        if kind == "group":
            if layer.axis not in (-1, rank - 1):
                raise UnsupportedOp(f"unsupported {where}: groups over axis {layer.axis}")
            channels = node.input_tensors[0].shape[-1]
            module = nn.GroupNorm(layer.groups, channels, eps=float(layer.epsilon))
        else:
            axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple))
                                             else [layer.axis]))
            if getattr(layer, "rms_scaling", False) or axes != list(range(rank - len(axes), rank)) \
                    and axes != [1, 2, 3]:
                raise UnsupportedOp(f"unsupported {where}: LayerNormalization over axes {axes}")
            shape = [int(node.input_tensors[0].shape[a]) for a in axes]
            if layout == "nchw":
                if axes not in ([3], [1, 2, 3]):
                    raise UnsupportedOp(f"unsupported {where}: LayerNormalization over axes "
                                        f"{axes} of an image")
                shape = [shape[-1]] + shape[:-1] if len(axes) == 3 else shape
            module = nn.LayerNorm(shape, eps=float(layer.epsilon))
        with torch.no_grad():
            for name, param in (("gamma", module.weight), ("beta", module.bias)):
                value = weights.get(name)
                if value is not None:
                    if kind == "layer" and layout == "nchw" and value.ndim == 3:
                        value = value.transpose(2, 0, 1)
                    param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        key = g.register(layer, module)
        if kind == "layer" and layout == "nchw" and len(module.normalized_shape) == 1:
            return (lambda self, x: self.layers[key](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                    ), layout
        return (lambda self, x: self.layers[key](x)), layout
    return handler


def _activation_layer(g, layer, node, rank, layout, where):
    act = _activation_of(layer, where)
    if act is ACTIVATIONS["softmax"] and layout == "nchw":
        raise UnsupportedOp(f"unsupported {where}: softmax over an image's channels")
    return (lambda self, x: act(x)), layout


def _relu(g, layer, node, rank, layout, where):
    if layer.max_value is not None or layer.threshold or layer.negative_slope:
        raise UnsupportedOp(f"unsupported {where}: ReLU with max_value, threshold or slope")
    return (lambda self, x: torch.relu(x)), layout


def _leaky(g, layer, node, rank, layout, where):
    slope = float(layer.negative_slope)
    return (lambda self, x: F.leaky_relu(x, slope)), layout


def _elu(g, layer, node, rank, layout, where):
    alpha = float(layer.alpha)
    return (lambda self, x: F.elu(x, alpha)), layout


def _softmax(g, layer, node, rank, layout, where):
    if rank != 2:
        raise UnsupportedOp(f"unsupported {where}: softmax is covered on (N, features)")
    return (lambda self, x: torch.softmax(x, -1)), layout


def _pool(kind):
    def handler(g, layer, node, rank, layout, where):
        if layer.padding != "valid" or layer.data_format != "channels_last":
            raise UnsupportedOp(f"unsupported {where}: pooling is covered with padding 'valid'")
        size, stride = tuple(layer.pool_size), tuple(layer.strides)
        function = F.max_pool2d if kind == "max" else F.avg_pool2d
        return (lambda self, x: function(x, size, stride)), "nchw"
    return handler


def _global_pool(g, layer, node, rank, layout, where):
    if layer.keepdims:
        return (lambda self, x: F.adaptive_avg_pool2d(x, 1)), "nchw"
    return (lambda self, x: torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), "same"


def _permute(g, layer, node, rank, layout, where):
    if layout == "nchw" and tuple(layer.dims) == (3, 1, 2):
        return (lambda self, x: x), "same"  # the PyTorch tensor is that (N, C, H, W) already
    raise UnsupportedOp(f"unsupported {where}: Permute is covered as (3, 1, 2) before Flatten")


def _flatten(g, layer, node, rank, layout, where):
    if layout == "nchw":  # Keras flattens (H, W, C)
        return (lambda self, x: torch.flatten(x.permute(0, 2, 3, 1), 1)), "same"
    return (lambda self, x: torch.flatten(x, 1)), "same"


def _dropout(g, layer, node, rank, layout, where):
    module = nn.Dropout(float(layer.rate))
    key = g.register(layer, module)
    return (lambda self, x: self.layers[key](x)), layout


def _add(g, layer, node, rank, layout, where):
    def add(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out
    return add, layout


_HANDLERS = {
    keras.layers.Dense: _dense, keras.layers.Conv2D: _conv,
    keras.layers.ZeroPadding2D: _zero_padding,
    keras.layers.GroupNormalization: _norm("group"),
    keras.layers.LayerNormalization: _norm("layer"),
    keras.layers.Activation: _activation_layer, keras.layers.ReLU: _relu,
    keras.layers.LeakyReLU: _leaky, keras.layers.ELU: _elu, keras.layers.Softmax: _softmax,
    keras.layers.MaxPooling2D: _pool("max"), keras.layers.AveragePooling2D: _pool("avg"),
    keras.layers.GlobalAveragePooling2D: _global_pool,
    keras.layers.Permute: _permute, keras.layers.Flatten: _flatten,
    keras.layers.Dropout: _dropout, keras.layers.Add: _add,
}
