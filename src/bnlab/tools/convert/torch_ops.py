"""The ATen ops ``torch_to_keras`` converts: one handler per op, ``handler(converter, node)`` ->
(Keras tensor, layout); ``NEAREST``: the supported form nearest to an op outside the table."""

import numpy as np
import torch

from bnlab.tools.convert import layout
from bnlab.tools.convert.keras_layers import BatchStatisticsOnly

ATEN = torch.ops.aten
BN_OPS = (ATEN.batch_norm.default,)
DROPOUT_OPS = (ATEN.dropout.default,)


def module_path(node):
    """The innermost PyTorch module the op was called in ('' for the model itself)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def baked(node, mode):
    """A BN op that does not follow the model's mode: "batch" (batch statistics always),
    "frozen" (moving statistics always), or None."""
    if node.args[3] is None or (bool(node.args[5]) and not mode):
        return "batch"
    if not bool(node.args[5]) and mode:
        return "frozen"
    return None


def cumulative(node, mode):
    """A BN op of PyTorch's ``momentum=None`` (the cumulative average of all batches): an eval
    export writes its factor as 0.0 (a training export cannot trace 1/num_batches_tracked)."""
    return not mode and node.args[3] is not None and not bool(node.args[5]) \
        and float(node.args[6]) == 0.0


def _linear(c, node):
    x, where = c.tensor(node, node.args[0])
    if where != layout.SAME:
        raise c.unsupported(node, "Linear is covered on (N, ..., features), not on a "
                                  "channels-first tensor")
    w, b = c.value(node.args[1]), c.value(node.args[2] if len(node.args) > 2 else None)
    key = (node.args[1].name,)
    layer, new = c.layer(node, lambda n: c.L.Dense(w.shape[0], use_bias=b is not None, name=n),
                         key)
    y = layer(x)
    if new:
        c.weights.append((layer, [w.T] + ([b] if b is not None else [])))
    return y, layout.SAME


def _ints(v, n):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(int(a) for a in (v * n if len(v) == 1 else v))


def _conv(c, node):
    dims = CONV_DIMS[node.target]
    x, _ = c.spatial(node, node.args[0], dims)
    args = list(node.args) + [None] * (7 - len(node.args))
    w, b = c.value(args[1]), c.value(args[2])
    stride, dilation = _ints(args[3] or 1, dims), _ints(args[5] or 1, dims)
    padding = args[4] if args[4] is not None else 0
    groups = int(args[6] or 1)
    if isinstance(padding, str):  # PyTorch allows "same" only with stride 1: Keras's "same" then
        mode = padding
    else:
        padding, mode = _ints(padding, dims), "valid"
        if any(padding):
            pad = getattr(c.L, f"ZeroPadding{dims}D")
            x = pad(padding[0] if dims == 1 else padding, name=c.name(node) + ".pad")(x)
    key = (args[1].name,)
    conv = getattr(c.L, f"Conv{dims}D")
    layer, new = c.layer(node, lambda n: conv(
        w.shape[0], w.shape[2:], strides=stride, padding=mode, dilation_rate=dilation,
        groups=groups, use_bias=b is not None, name=n), key)
    y = layer(x)
    if new:  # (out, in/groups, *k) -> (*k, in/groups, out)
        kernel = w.transpose(*range(2, 2 + dims), 1, 0)
        c.weights.append((layer, [kernel] + ([b] if b is not None else [])))
    return y, layout.CF


def _batch_norm(c, node):
    from bnlab.layers import BatchNorm

    x, where = c.tensor(node, node.args[0])
    weight, bias, mean, variance = (c.value(a) for a in node.args[1:5])
    momentum, eps = float(node.args[6]), float(node.args[7])
    kind = baked(node, c.mode)
    # PyTorch's channels are axis 1: the last Keras axis of a cf tensor, axis 1 of (N, C, L)
    axis = -1 if where == layout.CF or len(x.shape) == 2 else 1
    options = dict(axis=axis, epsilon=eps, center=bias is not None, scale=weight is not None,
                   unbiased_moving_variance=True)
    key = tuple(a.name for a in node.args[1:5] if a is not None) or (node.name,)
    counting = cumulative(node, c.mode)

    def make(name):
        if kind == "batch":
            return BatchStatisticsOnly(name=name, **options)
        return BatchNorm(momentum=None if counting else 1.0 - momentum,
                         trainable=kind != "frozen", name=name, **options)

    layer, new = c.layer(node, make, key)
    y = layer(x)
    if new:
        channels = x.shape[axis]
        mean = np.zeros(channels, "float32") if mean is None else mean
        variance = np.ones(channels, "float32") if variance is None else variance
        weights = [v for v in (weight, bias) if v is not None] + [mean, variance]
        if node.args[3] is not None:
            prefix = c.targets[node.args[3].name].rsplit(".", 1)[0]
            c.bn_buffers.append((layer, prefix))
            if counting:
                count = c.state.get(prefix + ".num_batches_tracked")
                weights.append(np.asarray(0 if count is None else int(count), "int32"))
                c.notes.append(f"{prefix or 'the model'}: momentum 0 in an eval export is "
                               "PyTorch's momentum=None (cumulative average): converted to "
                               f"BatchNorm(momentum=None), {int(weights[-1])} batches counted")
        c.weights.append((layer, weights))
    return y, where


def _group_norm(c, node):
    x, where = c.tensor(node, node.args[0])
    if where != layout.CF:
        raise c.unsupported(node, "GroupNorm is covered on channels-first tensors")
    groups, weight, bias, eps = node.args[1], c.value(node.args[2]), c.value(node.args[3]), \
        float(node.args[4])
    key = tuple(a.name for a in node.args[2:4] if a is not None) or None
    layer, new = c.layer(node, lambda n: c.L.GroupNormalization(
        int(groups), axis=-1, epsilon=eps, center=bias is not None, scale=weight is not None,
        name=n), key)
    y = layer(x)
    if new:
        c.weights.append((layer, [v for v in (weight, bias) if v is not None]))
    return y, where


def _layer_norm(c, node):
    """LayerNorm over the last len(shape) PyTorch axes: the same axes of the Keras tensor, its
    weight's axes in Keras's order ((C, H, W) -> (H, W, C))."""
    x, where = c.tensor(node, node.args[0])
    shape = list(node.args[1])
    weight, bias = c.value(node.args[2]), c.value(node.args[3])
    eps = float(node.args[4])
    rank = len(x.shape)
    torch_axes = list(range(rank - len(shape), rank))
    axes = sorted(layout.keras_axis(a, rank, where) for a in torch_axes)
    order = [torch_axes.index(layout.torch_axis(a, rank, where)) for a in axes]
    weight = None if weight is None else weight.transpose(order)
    bias = None if bias is None else bias.transpose(order)
    key = tuple(a.name for a in node.args[2:4] if a is not None) or None
    layer, new = c.layer(node, lambda n: c.L.LayerNormalization(
        axis=axes, epsilon=eps, center=bias is not None, scale=weight is not None, name=n), key)
    y = layer(x)
    if new:
        c.weights.append((layer, [v for v in (weight, bias) if v is not None]))
    return y, where


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


def _gelu(c, node):
    if node.kwargs.get("approximate", "none") != "none":
        raise c.unsupported(node, "GELU(approximate='tanh'); GELU() (exact) is covered")
    return _activation("gelu")(c, node)


def _hardtanh(c, node):
    low = float(node.args[1]) if len(node.args) > 1 else -1.0
    high = float(node.args[2]) if len(node.args) > 2 else 1.0
    if (low, high) == (-1.0, 1.0):
        return _activation("hard_tanh")(c, node)
    if low == 0.0 and high > 0:
        return c.elementwise(node, lambda name: c.L.ReLU(max_value=high, name=name))
    raise c.unsupported(node, f"Hardtanh({low:g}, {high:g}); covered: (-1, 1) and (0, max) "
                              "(ReLU6)")


def _softmax(c, node):
    x, where = c.tensor(node, node.args[0])
    if int(node.args[1]) % len(x.shape) != len(x.shape) - 1 or where == layout.CF:
        raise c.unsupported(node, "softmax is covered over the last axis of (N, ..., features)")
    return c.elementwise(node, lambda name: c.L.Softmax(name=name))


def _pool(kind):
    def handler(c, node):
        dims = POOL_DIMS[node.target]
        x, _ = c.spatial(node, node.args[0], dims)
        args = list(node.args) + [None] * (7 - len(node.args))
        size = _ints(args[1], dims)
        stride = _ints(args[2], dims) if args[2] else size
        if args[3] and any(_ints(args[3], dims)):
            raise c.unsupported(node, "pooling with padding")
        if kind == "max" and (args[4] and set(_ints(args[4], dims)) != {1} or args[5]):
            raise c.unsupported(node, "max pooling with dilation or ceil_mode")
        if kind == "avg" and (args[4] or args[6] is not None):
            raise c.unsupported(node, "average pooling with ceil_mode or divisor_override")
        cls = getattr(c.L, f"{'Max' if kind == 'max' else 'Average'}Pooling{dims}D")
        return cls(size, stride, name=c.name(node))(x), layout.CF
    return handler


def _global_pool(c, node):
    """Adaptive average pooling to 1, or a mean over all spatial axes."""
    if node.target == ATEN.mean.dim:
        x, where = c.tensor(node, node.args[0])
        rank = len(x.shape)
        keep = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
        if where != layout.CF or sorted(d % rank for d in node.args[1]) != list(range(2, rank)):
            raise c.unsupported(node, "mean is covered over all spatial axes of a channels-first "
                                      "tensor (global average pooling)")
    else:
        x, _ = c.spatial(node, node.args[0], POOL_DIMS[node.target])
        keep = True
        if set(_ints(node.args[1], len(x.shape) - 2)) != {1}:
            raise c.unsupported(node, "adaptive average pooling to other sizes than 1")
    cls = getattr(c.L, f"GlobalAveragePooling{len(x.shape) - 2}D")
    return cls(keepdims=keep, name=c.name(node))(x), layout.CF if keep else layout.SAME


def _flatten(c, node):
    x, where = c.tensor(node, node.args[0])
    rank = len(x.shape)
    start = int(node.args[1]) if len(node.args) > 1 else 0
    end = int(node.args[2]) if len(node.args) > 2 else -1
    if start != 1 or end % rank != rank - 1:
        raise c.unsupported(node, "flatten is covered from axis 1 to the last")
    if where == layout.CF:  # PyTorch flattens (C, *S): put the channels first, then flatten
        x = c.L.Permute((rank - 1, *range(1, rank - 1)), name=c.name(node) + ".cf")(x)
    return c.L.Flatten(name=c.name(node))(x), layout.SAME


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
    """The two permutations between channels-first and channels-last: the Keras tensor stays,
    its layout changes."""
    x, where = c.tensor(node, node.args[0])
    rank, order = len(x.shape), [int(d) % len(x.shape) for d in node.args[1]]
    if where == layout.CF and order == [0, *range(2, rank), 1]:
        return x, layout.SAME  # the Keras tensor is already channels-last
    if where == layout.SAME and rank >= 3 and order == [0, rank - 1, *range(1, rank - 1)]:
        return x, layout.CF
    raise c.unsupported(node, "permute is covered between channels-first and channels-last "
                              "((0, 2, .., 1) and back)")


def _dropout(c, node):
    rate = float(node.args[1])
    return c.elementwise(node, lambda name: c.L.Dropout(rate, name=name))


def _binary(c, node):
    """a + b, a − b, a · b of two tensors (Add, Subtract, Multiply; broadcasting as in an SE
    block), or of a tensor and a number (Rescaling: x · scale + offset)."""
    op = BINARY[node.target]
    other = node.args[1] if len(node.args) > 1 else None
    if node.kwargs.get("alpha", 1) != 1:
        raise c.unsupported(node, "add/sub with alpha")
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        scale, offset = {"add": (1.0, other), "sub": (1.0, -other), "mul": (other, 0.0),
                         "div": (1.0 / other if other else None, 0.0)}[op]
        if scale is None:
            raise c.unsupported(node, "division by 0")
        return c.elementwise(node, lambda name: c.L.Rescaling(float(scale), float(offset),
                                                              name=name))
    if op == "div" or not hasattr(other, "name"):
        raise c.unsupported(node, "covered: a + b, a - b, a * b of two tensors, and + - * / by "
                                  "a number")
    (a, la), (b, lb) = c.tensor(node, node.args[0]), c.tensor(node, other)
    if la != lb:
        raise c.unsupported(node, "combines tensors of different layouts")
    cls = {"add": c.L.Add, "sub": c.L.Subtract, "mul": c.L.Multiply}[op]
    return cls(name=c.name(node))([a, b]), la


def _cat(c, node):
    parts = [c.tensor(node, a) for a in node.args[0]]
    dim = int(node.args[1]) if len(node.args) > 1 else 0
    layouts = {where for _, where in parts}
    rank = len(parts[0][0].shape)
    if len(layouts) != 1 or dim % rank == 0:
        raise c.unsupported(node, "concatenation of tensors of one layout, not along the batch")
    where = layouts.pop()
    axis = layout.keras_axis(dim % rank, rank, where)
    return c.L.Concatenate(axis=axis, name=c.name(node))([x for x, _ in parts]), where


def _pad(c, node):
    x, dims = c.spatial(node, node.args[0])
    pad = [int(p) for p in node.args[1]]
    if node.target == ATEN.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    else:
        mode, value = "constant", node.args[2] if len(node.args) > 2 else 0
    value = 0.0 if value is None else float(value)
    if mode != "constant" or value != 0.0 or len(pad) != 2 * dims or min(pad) < 0:
        raise c.unsupported(node, "zero padding of every spatial axis is covered")
    # PyTorch lists the last axis first: (W_left, W_right, H_top, H_bottom, ...)
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(dims))]
    cls = getattr(c.L, f"ZeroPadding{dims}D")
    return cls(pairs[0] if dims == 1 else tuple(pairs), name=c.name(node))(x), layout.CF


CONV_DIMS = {ATEN.conv1d.default: 1, ATEN.conv1d.padding: 1, ATEN.conv2d.default: 2,
             ATEN.conv2d.padding: 2, ATEN.conv3d.default: 3, ATEN.conv3d.padding: 3}
POOL_DIMS = {ATEN.max_pool1d.default: 1, ATEN.max_pool2d.default: 2, ATEN.max_pool3d.default: 3,
             ATEN.avg_pool1d.default: 1, ATEN.avg_pool2d.default: 2, ATEN.avg_pool3d.default: 3,
             ATEN.adaptive_avg_pool1d.default: 1, ATEN.adaptive_avg_pool2d.default: 2,
             ATEN.adaptive_avg_pool3d.default: 3}
ONE_D = (ATEN.conv1d.default, ATEN.conv1d.padding, ATEN.max_pool1d.default,
         ATEN.avg_pool1d.default, ATEN.adaptive_avg_pool1d.default)
BINARY = {ATEN.add.Tensor: "add", ATEN.add_.Tensor: "add", ATEN.sub.Tensor: "sub",
          ATEN.mul.Tensor: "mul", ATEN.div.Tensor: "div"}
_DECOMPOSED = ("the program was decomposed to core ATen (run_decompositions): save the program "
               "that torch.export.export returns, before decompositions")
NEAREST = {  # the supported form nearest to an op outside the table
    ATEN._native_batch_norm_legit_no_training.default: _DECOMPOSED,
    ATEN._native_batch_norm_legit_functional.default: _DECOMPOSED,
    ATEN.convolution.default: _DECOMPOSED, ATEN.addmm.default: _DECOMPOSED,
    ATEN.native_layer_norm.default: _DECOMPOSED,
    ATEN.upsample_nearest2d.vec: "nearest: a strided or transposed convolution is not covered "
                                 "either; export the part before the upsampling",
    ATEN.matmul.default: "nearest: nn.Linear (weights as a module, not a matmul)",
    ATEN.adaptive_max_pool2d.default: "nearest: AdaptiveAvgPool2d(1) or MaxPool2d",
}

HANDLERS = {
    ATEN.linear.default: _linear,
    **{op: _conv for op in CONV_DIMS},
    ATEN.batch_norm.default: _batch_norm,
    ATEN.group_norm.default: _group_norm,
    ATEN.layer_norm.default: _layer_norm,
    ATEN.relu.default: _activation("relu"), ATEN.relu_.default: _activation("relu"),
    ATEN.sigmoid.default: _activation("sigmoid"), ATEN.tanh.default: _activation("tanh"),
    ATEN.silu.default: _activation("silu"), ATEN.gelu.default: _gelu,
    ATEN.hardswish.default: _activation("hard_silu"),
    ATEN.hardsigmoid.default: _activation("hard_sigmoid"),
    ATEN.hardtanh.default: _hardtanh,
    ATEN.relu6.default: lambda c, node: c.elementwise(
        node, lambda name: c.L.ReLU(max_value=6.0, name=name)),
    ATEN.leaky_relu.default: _leaky_relu, ATEN.elu.default: _elu,
    ATEN.softmax.int: _softmax,
    **{op: _pool("max") for op in (ATEN.max_pool1d.default, ATEN.max_pool2d.default,
                                   ATEN.max_pool3d.default)},
    **{op: _pool("avg") for op in (ATEN.avg_pool1d.default, ATEN.avg_pool2d.default,
                                   ATEN.avg_pool3d.default)},
    ATEN.adaptive_avg_pool1d.default: _global_pool, ATEN.adaptive_avg_pool2d.default: _global_pool,
    ATEN.adaptive_avg_pool3d.default: _global_pool, ATEN.mean.dim: _global_pool,
    ATEN.flatten.using_ints: _flatten,
    ATEN.view.default: _view, ATEN.reshape.default: _view,
    ATEN.permute.default: _permute,
    ATEN.dropout.default: _dropout,
    **{op: _binary for op in BINARY},
    ATEN.cat.default: _cat,
    ATEN.pad.default: _pad, ATEN.constant_pad_nd.default: _pad,
}
