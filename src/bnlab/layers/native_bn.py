"""A BN layer's training call computed by ``native.batch_norm``'s C++ kernels (JAX on a CPU).

    applies(layer, x) -> bool     whether ``train_call`` computes exactly what ``layer`` would
    train_call(layer, x) -> y

``train_call`` is ``layer(x, training=True)`` for a plain BN: Keras's ``BatchNormalization`` or
bnlab's ``BatchNorm``, normalizing the last axis over every other, in float32, without renorm,
synchronized statistics or a mask; bnlab's Ghost BN too where its k divides the batch (its
virtual batches are the kernels' groups). Its y, its gradient and the layer's new moving
statistics are the layer's own up to float32 round-off (tests/test_native_bn.py); only the number
of XLA kernels changes: two calls of C++ (forward, backward) in place of about ten reductions and
elementwise loops (bench/bn.py). Call it where the layer's variables are those of the current
scope, as inside ``model.stateless_call``'s ``StatelessScope`` (``lab.folded_input``): it reads
γ, β and the moving statistics there and assigns the new moving statistics there.
"""

import keras
from keras import ops

from bnlab.layers import native
from bnlab.layers.batchnorm import BatchNorm


def applies(layer, x):
    """Whether ``layer`` is a plain BN (module docstring) and ``x`` a float32 input it takes."""
    rank = len(x.shape)
    if not (isinstance(layer, (keras.layers.BatchNormalization, BatchNorm)) and layer.trainable
            and rank >= 2 and layer.compute_dtype == "float32"
            and getattr(x, "_keras_mask", None) is None):
        return False
    if isinstance(layer, BatchNorm):
        return layer._kernels_apply(x)
    return (not layer.renorm and not layer.synchronized and layer.axis in (-1, rank - 1)
            and native.applies(x))


def train_call(layer, x):
    """``layer(x, training=True)`` by the C++ kernels, where ``applies(layer, x)``; the layer's
    absent γ or β (``scale``/``center`` False) are 1 and 0."""
    if isinstance(layer, BatchNorm):  # its own moving statistics' rule, momentum=None included
        return layer._kernels_call(x)
    channels = x.shape[-1]
    gamma = layer.gamma.value if layer.scale else ops.ones((channels,), x.dtype)
    beta = layer.beta.value if layer.center else ops.zeros((channels,), x.dtype)
    y, mean, variance = native.batch_norm_channels_last(x, gamma, beta, layer.epsilon)
    mean, variance = ops.stop_gradient(mean), ops.stop_gradient(variance)
    momentum = layer.momentum  # Keras's BatchNormalization.call, verbatim
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return y
