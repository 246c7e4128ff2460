"""A PyTorch exported program (``torch.export``) as a Keras model, op by op.

Each ATen op of the graph becomes a Keras layer (the table in ``bnlab.tools.convert``); a module
called twice (the same weights) becomes one Keras layer called twice. Layer names are the PyTorch
modules' paths (``layer1.0.bn1``), so that the Keras model's findings name what the user wrote.

Training flags: ``torch.export`` writes each BN and dropout op's ``training`` into the graph. The
flag most of them carry is the mode the program was exported in, and becomes Keras's mode (the
``training`` of the call); a BN op with the other flag was a module left in its own mode: in
training mode in an eval export (or without running statistics) it becomes
``BatchStatisticsOnly``, in eval mode in a training export a ``trainable=False`` BN layer.
"""

import numpy as np
import torch

from bnlab.errors import UserError
from bnlab.tools.convert.errors import UnsupportedOp
from bnlab.tools.convert.keras_layers import BatchStatisticsOnly

ATEN = torch.ops.aten
BN_OPS = (ATEN.batch_norm.default,)
DROPOUT_OPS = (ATEN.dropout.default,)


def load_program(path):
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # any failure to read it means: not a file torch.export wrote
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{path} is not a PyTorch exported program (.pt2 from "
                         f"torch.export.save) ({reason})") from None


def load_pt2(path):
    """(Keras model, {Keras layer name: PyTorch module}) from a ``torch.export.save`` file."""
    model, names, _ = to_keras(load_program(path))
    return model, names


def module_path(node):
    """The innermost PyTorch module the op was called in ('' for the model itself)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def export_mode(graph):
    """True if most BN/dropout ops carry training=True (the program was exported in train mode)."""
    flags = [bool(n.args[5]) for n in graph.nodes if n.target in BN_OPS and n.args[3] is not None]
    flags += [bool(n.args[2]) for n in graph.nodes if n.target in DROPOUT_OPS]
    return sum(flags) * 2 >= len(flags) if flags else True


def baked(node, mode):
    """A BN op that does not follow the model's mode: "batch" (batch statistics always),
    "frozen" (moving statistics always), or None."""
    if node.args[3] is None or (bool(node.args[5]) and not mode):
        return "batch"
    if not bool(node.args[5]) and mode:
        return "frozen"
    return None


def to_keras(program):
    """(Keras model, {layer name: module path}, [(BN layer, running-stat buffer prefix)]) of an
    exported program. Raises ``UnsupportedOp`` for an op outside the table."""
    import keras

    graph = program.graph
    state = {**program.state_dict, **program.constants}
    targets = {spec.arg.name: spec.target for spec in program.graph_signature.input_specs
               if spec.target is not None}
    converter = _Converter(keras, state, targets, export_mode(graph))
    inputs = [n for n in graph.nodes if n.op == "placeholder" and n.name not in targets]
    if len(inputs) != 1:
        raise UnsupportedOp(f"the program takes {len(inputs)} inputs; the conversion covers "
                            "models of one input tensor")
    for node in graph.nodes:
        if node.op == "placeholder":
            converter.placeholder(node)
        elif node.op == "call_function":
            converter.call(node)
        elif node.op == "output":
            outputs = node.args[0]
    if len(outputs) != 1:
        raise UnsupportedOp(f"the program returns {len(outputs)} outputs; the conversion covers "
                            "models of one output tensor")
    output = converter.env[outputs[0].name]
    model = keras.Model(converter.input, output[0], name="converted")
    for layer, weights in converter.weights:
        layer.set_weights(weights)
    return model, converter.names, converter.bn_buffers


class _Converter:
    def __init__(self, keras, state, targets, mode):
        self.keras, self.L, self.state, self.targets, self.mode = keras, keras.layers, state, \
            targets, mode
        self.env = {}  # node name -> (Keras tensor, layout): "nchw" for rank-4 torch tensors
        self.layers = {}  # weight targets -> layer (a module called twice: one layer)
        self.names, self.weights, self.bn_buffers, self.used = {}, [], [], set()
        self.input = None

    # -- helpers -----------------------------------------------------------------------------

    def value(self, arg):
        """A weight or buffer as a NumPy array (None stays None)."""
        if arg is None:
            return None
        return self.state[self.targets[arg.name]].detach().cpu().numpy()

    def tensor(self, node, arg):
        if not hasattr(arg, "name") or arg.name not in self.env:
            raise UnsupportedOp(f"op {node.target} at node {node.name} (module "
                                f"{module_path(node) or 'the model'}) takes {arg!r}, not a "
                                "tensor the conversion computes")
        return self.env[arg.name]

    def name(self, node, key=None):
        path = module_path(node)
        name = path if key is not None and path else node.name
        if name in self.used:
            name = f"{name}.{node.name}"
        self.used.add(name)
        self.names[name] = path or node.name
        return name

    def layer(self, node, make, key=None):
        """One layer per set of weights (``key``): a module called twice shares it."""
        if key is not None and key in self.layers:
            return self.layers[key], False
        layer = make(self.name(node, key))
        if key is not None:
            self.layers[key] = layer
        return layer, True

    def unsupported(self, node, why=""):
        return UnsupportedOp(f"unsupported op {node.target} at node {node.name} (module "
                             f"{module_path(node) or 'the model'}){': ' + why if why else ''}; "
                             "supported: see bnlab.tools.convert")

    def image(self, node, arg):
        x, layout = self.tensor(node, arg)
        if layout != "nchw":
            raise self.unsupported(node, "it wants an (N, C, H, W) image tensor")
        return x

    # -- graph nodes ---------------------------------------------------------------------------

    def placeholder(self, node):
        if node.name in self.targets:
            return
        shape = tuple(node.meta["val"].shape[1:])
        shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        self.input = self.keras.Input(tuple(int(s) for s in shape), name="input")
        self.env[node.name] = (self.input, "nchw" if len(shape) == 3 else "same")

    def call(self, node):
        target = node.target
        if target == ATEN.add_.Tensor and node.args[0].name in self.targets:
            return  # num_batches_tracked += 1: bnlab counts only with momentum=None
        handler = _HANDLERS.get(target)
        if handler is None:
            raise self.unsupported(node)
        out = handler(self, node)
        self.env[node.name] = out

    def elementwise(self, node, layer_factory):
        x, layout = self.tensor(node, node.args[0])
        return layer_factory(name=self.name(node))(x), layout


def _linear(c, node):
    x, layout = c.tensor(node, node.args[0])
    if len(x.shape) != 2:
        raise c.unsupported(node, "Linear is covered on (N, features) inputs")
    w, b = c.value(node.args[1]), c.value(node.args[2] if len(node.args) > 2 else None)
    key = (node.args[1].name,)
    layer, new = c.layer(node, lambda n: c.L.Dense(w.shape[0], use_bias=b is not None, name=n),
                         key)
    y = layer(x)
    if new:
        c.weights.append((layer, [w.T] + ([b] if b is not None else [])))
    return y, "same"


def _pairs(v, n=2):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(int(a) for a in (v * n if len(v) == 1 else v))


def _conv(c, node):
    x = c.image(node, node.args[0])
    args = list(node.args) + [None] * (7 - len(node.args))
    w, b = c.value(args[1]), c.value(args[2])
    stride, padding, dilation = (_pairs(args[3] or 1), args[4] if args[4] is not None else 0,
                                 _pairs(args[5] or 1))
    groups = int(args[6] or 1)
    if isinstance(padding, str):
        mode = padding
        if mode == "same" and stride != (1, 1):
            raise c.unsupported(node, "padding='same' with a stride")
    else:
        padding, mode = _pairs(padding), "valid"
        if padding != (0, 0):
            x = c.L.ZeroPadding2D(padding, name=c.name(node) + ".pad")(x)
    key = (args[1].name,)
    layer, new = c.layer(node, lambda n: c.L.Conv2D(
        w.shape[0], w.shape[2:], strides=stride, padding=mode, dilation_rate=dilation,
        groups=groups, use_bias=b is not None, name=n), key)
    y = layer(x)
    if new:
        c.weights.append((layer, [w.transpose(2, 3, 1, 0)] + ([b] if b is not None else [])))
    return y, "nchw"


def _batch_norm(c, node):
    from bnlab.layers import BatchNorm

    x, layout = c.tensor(node, node.args[0])
    weight, bias, mean, variance = (c.value(a) for a in node.args[1:5])
    momentum, eps = float(node.args[6]), float(node.args[7])
    kind = baked(node, c.mode)
    options = dict(axis=-1, epsilon=eps, center=bias is not None, scale=weight is not None,
                   unbiased_moving_variance=True)
    key = tuple(a.name for a in node.args[1:5] if a is not None) or (node.name,)

    def make(name):
        if kind == "batch":
            return BatchStatisticsOnly(name=name, **options)
        return BatchNorm(momentum=1.0 - momentum, trainable=kind != "frozen", name=name,
                         **options)

    layer, new = c.layer(node, make, key)
    y = layer(x)
    if new:
        channels = x.shape[-1]
        mean = np.zeros(channels, "float32") if mean is None else mean
        variance = np.ones(channels, "float32") if variance is None else variance
        c.weights.append((layer, [v for v in (weight, bias) if v is not None] + [mean, variance]))
        if node.args[3] is not None:
            c.bn_buffers.append((layer, c.targets[node.args[3].name].rsplit(".", 1)[0]))
    return y, layout


def _group_norm(c, node):
    x, layout = c.tensor(node, node.args[0])
    groups, weight, bias, eps = node.args[1], c.value(node.args[2]), c.value(node.args[3]), \
        float(node.args[4])
    key = tuple(a.name for a in node.args[2:4] if a is not None) or None
    layer, new = c.layer(node, lambda n: c.L.GroupNormalization(
        int(groups), axis=-1, epsilon=eps, center=bias is not None, scale=weight is not None,
        name=n), key)
    y = layer(x)
    if new:
        c.weights.append((layer, [v for v in (weight, bias) if v is not None]))
    return y, layout


def _layer_norm(c, node):
    x, layout = c.tensor(node, node.args[0])
    shape = list(node.args[1])
    weight, bias = c.value(node.args[2]), c.value(node.args[3])
    eps = float(node.args[4])
    rank = len(x.shape)
    torch_axes = list(range(rank - len(shape), rank))
    if layout == "nchw":  # torch axis -> Keras axis for (N, C, H, W) -> (N, H, W, C)
        to_keras = {0: 0, 1: 3, 2: 1, 3: 2}
        axes = sorted(to_keras[a] for a in torch_axes)
        order = [torch_axes.index({3: 1, 1: 2, 2: 3}[a]) for a in axes]
        weight = None if weight is None else weight.transpose(order)
        bias = None if bias is None else bias.transpose(order)
    else:
        axes = torch_axes
    key = tuple(a.name for a in node.args[2:4] if a is not None) or None
    layer, new = c.layer(node, lambda n: c.L.LayerNormalization(
        axis=axes, epsilon=eps, center=bias is not None, scale=weight is not None, name=n), key)
    y = layer(x)
    if new:
        c.weights.append((layer, [v for v in (weight, bias) if v is not None]))
    return y, layout


def _activation(kind):
    def handler(c, node):
        return c.elementwise(node, lambda name: c.L.Activation(kind, name=name))
    return handler


def _leaky_relu(c, node):
    slope = float(node.args[1]) if len(node.args) > 1 else 0.01
    return c.elementwise(node, lambda name: c.L.LeakyReLU(negative_slope=slope, name=name))


def _elu(c, node):
    alpha = float(node.args[1]) if len(node.args) > 1 else 1.0
    if any(float(a) != 1.0 for a in node.args[2:]):
        raise c.unsupported(node, "ELU with scale or input_scale other than 1 (SELU/CELU)")
    return c.elementwise(node, lambda name: c.L.ELU(alpha=alpha, name=name))


def _softmax(c, node):
    x, layout = c.tensor(node, node.args[0])
    if int(node.args[1]) % len(x.shape) != len(x.shape) - 1 or layout == "nchw":
        raise c.unsupported(node, "softmax is covered over the last axis of (N, features)")
    return c.elementwise(node, lambda name: c.L.Softmax(name=name))


def _pool(kind):
    def handler(c, node):
        x = c.image(node, node.args[0])
        args = list(node.args) + [None] * (7 - len(node.args))
        size = _pairs(args[1])
        stride = _pairs(args[2]) if args[2] else size
        if args[3] and _pairs(args[3]) != (0, 0):
            raise c.unsupported(node, "pooling with padding")
        if kind == "max" and (args[4] and _pairs(args[4]) != (1, 1) or args[5]):
            raise c.unsupported(node, "max pooling with dilation or ceil_mode")
        if kind == "avg" and (args[4] or args[6] is not None):
            raise c.unsupported(node, "average pooling with ceil_mode or divisor_override")
        layer = (c.L.MaxPooling2D if kind == "max" else c.L.AveragePooling2D)(
            size, stride, name=c.name(node))
        return layer(x), "nchw"
    return handler


def _global_pool(c, node):
    x = c.image(node, node.args[0])
    if node.target == ATEN.adaptive_avg_pool2d.default:
        if _pairs(node.args[1]) != (1, 1):
            raise c.unsupported(node, "adaptive average pooling to other sizes than 1x1")
    elif sorted(d % 4 for d in node.args[1]) != [2, 3] or not (
            len(node.args) > 2 and node.args[2]):
        raise c.unsupported(node, "mean over other axes than H and W with keepdim")
    return c.L.GlobalAveragePooling2D(keepdims=True, name=c.name(node))(x), "nchw"


def _flatten(c, node):
    x, layout = c.tensor(node, node.args[0])
    start = int(node.args[1]) if len(node.args) > 1 else 0
    end = int(node.args[2]) if len(node.args) > 2 else -1
    if start != 1 or end % len(x.shape) != len(x.shape) - 1:
        raise c.unsupported(node, "flatten is covered from axis 1 to the last")
    if layout == "nchw":  # PyTorch flattens (C, H, W): put the channels first, then flatten
        x = c.L.Permute((3, 1, 2), name=c.name(node) + ".nchw")(x)
    return c.L.Flatten(name=c.name(node))(x), "same"


def _view(c, node):
    x, _ = c.tensor(node, node.args[0])
    shape = list(node.args[1])
    if len(shape) == 2 and (shape[1] == -1 or int(shape[1]) == int(np.prod(x.shape[1:]))):
        return _flatten(c, _Flat(node))
    raise c.unsupported(node, "reshape is covered as (N, -1), a flatten")


class _Flat:
    """A view/reshape to (N, -1) read as flatten(x, 1)."""

    def __init__(self, node):
        self.args, self.name, self.target, self.meta = (node.args[0], 1, -1), node.name, \
            node.target, node.meta


def _permute(c, node):
    x, layout = c.tensor(node, node.args[0])
    if layout == "nchw" and list(node.args[1]) == [0, 2, 3, 1]:
        return x, "same"  # the Keras tensor is already (N, H, W, C)
    raise c.unsupported(node, "permute is covered as (0, 2, 3, 1) before a flatten")


def _dropout(c, node):
    rate = float(node.args[1])
    return c.elementwise(node, lambda name: c.L.Dropout(rate, name=name))


def _add(c, node):
    if len(node.args) < 2 or not hasattr(node.args[1], "name") or node.kwargs.get("alpha", 1) != 1:
        raise c.unsupported(node, "addition of two tensors (a residual) is covered")
    (a, la), (b, lb) = c.tensor(node, node.args[0]), c.tensor(node, node.args[1])
    if la != lb:
        raise c.unsupported(node, "adds tensors of different layouts")
    return c.L.Add(name=c.name(node))([a, b]), la


def _pad(c, node):
    x = c.image(node, node.args[0])
    pad = [int(p) for p in node.args[1]]
    if node.target == ATEN.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    else:
        mode, value = "constant", node.args[2] if len(node.args) > 2 else 0
    value = 0.0 if value is None else float(value)
    if mode != "constant":
        value = None
    if len(pad) != 4 or value not in (0.0,) or min(pad) < 0:
        raise c.unsupported(node, "zero padding of H and W is covered")
    left, right, top, bottom = pad
    return c.L.ZeroPadding2D(((top, bottom), (left, right)), name=c.name(node))(x), "nchw"


_HANDLERS = {
    ATEN.linear.default: _linear,
    ATEN.conv2d.default: _conv, ATEN.conv2d.padding: _conv,
    ATEN.batch_norm.default: _batch_norm,
    ATEN.group_norm.default: _group_norm,
    ATEN.layer_norm.default: _layer_norm,
    ATEN.relu.default: _activation("relu"), ATEN.relu_.default: _activation("relu"),
    ATEN.sigmoid.default: _activation("sigmoid"), ATEN.tanh.default: _activation("tanh"),
    ATEN.leaky_relu.default: _leaky_relu, ATEN.elu.default: _elu,
    ATEN.softmax.int: _softmax,
    ATEN.max_pool2d.default: _pool("max"), ATEN.avg_pool2d.default: _pool("avg"),
    ATEN.adaptive_avg_pool2d.default: _global_pool, ATEN.mean.dim: _global_pool,
    ATEN.flatten.using_ints: _flatten,
    ATEN.view.default: _view, ATEN.reshape.default: _view,
    ATEN.permute.default: _permute,
    ATEN.dropout.default: _dropout,
    ATEN.add.Tensor: _add, ATEN.add_.Tensor: _add,
    ATEN.pad.default: _pad, ATEN.constant_pad_nd.default: _pad,
}
