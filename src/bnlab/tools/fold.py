"""Folding BN into the neighbouring Dense or Conv2D for inference.

In inference mode a BN layer is a per-channel affine map of its input x::

    BN(x) = a · x + c,    a = γ / √(σ²_moving + ε),    c = β − a · μ_moving        (C,)

and an affine map next to a linear layer L(x) = x W + b (Dense kernel W: (in, out); Conv2D kernel
W: (kh, kw, in, out)) merges into it:

- BN after L (the "before the activation" placement, L without activation)::

      BN(L(x)) = x (W · a) + (a · b + c)            a scales W's output axis

- BN before L (the "after the activation" placement), possibly through a ``Flatten`` (a and c
  tiled over the flattened positions), a ``Dropout`` (the identity in inference) or a max
  pooling (which commutes with x ↦ a·x + c only when every a > 0)::

      L(BN(x)) = x (a · W) + (c W + b)              a scales W's input axis

  For a Conv2D this holds only with ``padding="valid"``: a zero-padded convolution sees the
  shift c inside the image but not on the padding, so its borders differ.

Everything else stays in place and is reported with its reason: a BN after a layer with a
non-linear activation and not followed (through the layers above) by a Dense/Conv2D, a BN before a
zero-padded convolution or before max pooling with some a ≤ 0, a BN that is the last layer,
channels-first layouts. Models are ``keras.Sequential``; the folded model is a new one (the
original is not changed) with the same outputs up to float32 rounding. The arithmetic is in
float64.
"""

import keras
import numpy as np

from bnlab.tools.precise import is_batch_norm

LINEAR = (keras.layers.Dense, keras.layers.Conv2D)
PASS_THROUGH = (keras.layers.Flatten, keras.layers.Dropout, keras.layers.MaxPooling2D)


def bn_affine(layer):
    """(a, c) of the BN layer in inference mode, float64, shape (C,)."""
    mean = _numpy(layer.moving_mean)
    variance = _numpy(layer.moving_variance)
    gamma = _numpy(layer.gamma) if layer.gamma is not None else np.ones_like(mean)
    beta = _numpy(layer.beta) if layer.beta is not None else np.zeros_like(mean)
    a = gamma / np.sqrt(variance + layer.epsilon)
    return a, beta - a * mean


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


class _Spec:
    """A layer of the folded model before it is made: class, config and (for Dense/Conv2D) its
    kernel and bias as float64 arrays that the folding updates."""

    def __init__(self, layer):
        self.layer = layer
        self.config = layer.get_config()
        self.linear = isinstance(layer, LINEAR)
        if self.linear:
            self.kernel = _numpy(layer.kernel)
            self.bias = (_numpy(layer.bias) if layer.use_bias
                         else np.zeros(self.kernel.shape[-1]))

    def make(self):
        config = dict(self.config)
        if self.linear:
            config["use_bias"] = True
        return self.layer.__class__.from_config(config)


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _bn_last_axis(bn):
    rank = len(bn.input.shape)
    axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    return axis % rank == rank - 1


def _into_previous(spec, bn, a, c):
    """Fold into the layer just before; None if done, else why not."""
    if spec is None or not spec.linear:
        return "not after a Dense/Conv2D"
    if spec.config.get("activation") not in ("linear", None):
        return f"after {spec.layer.name}'s {spec.config['activation']} activation"
    if not _channels_last(spec.layer):
        return "channels-first convolution"
    spec.kernel = spec.kernel * a
    spec.bias = spec.bias * a + c
    return None


def _into_next(specs, start, bn, a, c):
    """Fold into the next Dense/Conv2D (from ``specs[start]`` on); None if done, else why not."""
    tile = 1
    for spec in specs[start:]:
        layer = spec.layer
        if isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, keras.layers.MaxPooling2D):
            if np.any(a <= 0):
                return f"before max pooling {layer.name} with some γ ≤ 0"
            if not _channels_last(layer):
                return "channels-first pooling"
            continue
        if isinstance(layer, keras.layers.Flatten):
            if not _channels_last(layer):
                return "channels-first flatten"
            tile = int(np.prod(layer.input.shape[1:])) // len(a)
            continue
        if isinstance(layer, keras.layers.Conv2D):
            if spec.config["padding"] != "valid" or not _channels_last(layer):
                return (f"before {layer.name}, a zero-padded ('{spec.config['padding']}') "
                        "convolution: a shift is not foldable at its borders")
            spec.bias = spec.bias + np.einsum("hwio,i->o", spec.kernel, c)
            spec.kernel = spec.kernel * a[:, None]
            return None
        if isinstance(layer, keras.layers.Dense):
            a_in, c_in = np.tile(a, tile), np.tile(c, tile)
            spec.bias = spec.bias + c_in @ spec.kernel
            spec.kernel = spec.kernel * a_in[:, None]
            return None
        return f"followed by {layer.name} ({layer.__class__.__name__}), not a Dense/Conv2D"
    return "the last layer"


def fold(model, *, return_report=False):
    """A new ``keras.Sequential`` with every foldable BN merged into its Dense/Conv2D neighbour.

    With ``return_report=True`` returns ``(folded, report)``: one dict per BN layer, ``layer``,
    ``into`` (the layer it merged into, or None) and ``reason`` (why not, or None).
    """
    if not isinstance(model, keras.Sequential):
        raise ValueError(f"model must be a keras.Sequential, not {model.__class__.__name__}")
    specs = [_Spec(layer) for layer in model.layers]
    kept, report = [], []
    for i, spec in enumerate(specs):
        if not is_batch_norm(spec.layer):
            kept.append(spec)
            continue
        bn = spec.layer
        a, c = bn_affine(bn)
        if not _bn_last_axis(bn):
            reason, into = "channel axis is not the last", None
        else:
            reason = _into_previous(kept[-1] if kept else None, bn, a, c)
            into = kept[-1].layer.name if reason is None else None
            if reason is not None:
                after = reason
                reason = _into_next(specs, i + 1, bn, a, c)
                into = next((s.layer.name for s in specs[i + 1:] if s.linear), None)
                if reason is not None:
                    reason = f"{after}; {reason}"
                    into = None
        if reason is not None:
            kept.append(spec)
        report.append({"layer": bn.name, "into": into, "reason": reason})
    folded = _build(model, kept)
    return (folded, report) if return_report else folded


def _build(model, specs):
    inputs = model.inputs[0]
    layers = [spec.make() for spec in specs]
    folded = keras.Sequential([keras.Input(inputs.shape[1:], dtype=inputs.dtype)] + layers,
                              name=f"{model.name}_folded")
    for spec, layer in zip(specs, layers):
        if spec.linear:
            layer.kernel.assign(spec.kernel.astype(layer.kernel.dtype))
            layer.bias.assign(spec.bias.astype(layer.bias.dtype))
        else:
            layer.set_weights(spec.layer.get_weights())
    return folded
