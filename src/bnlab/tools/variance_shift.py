"""Dropout's variance shift at BN (Li et al. 2019, "Understanding the disharmony between dropout
and batch normalization by variance shift").

In training, Dropout at rate p keeps a unit with probability 1 − p and scales it by 1/(1 − p),
so a unit x that Dropout feeds forward has, in training and at inference::

    Var_train = E[x²] / (1 − p) − E[x]²        Var_test = E[x²] − E[x]² = Var(x)

and a BN after it (through a Dense layer) learns its moving variance σ²_moving from Var_train,
then normalizes test-time inputs, whose variance is Var_test, with it. Per BN layer and channel::

    shift_c = σ²_moving,c / Var_test,c          (1 when training and inference agree)

``variance_shift(model, x)``: per BN layer, the mean over channels of shift_c, with Var_test the
biased variance of the layer's inference-mode inputs on ``x`` (dropout off, every earlier BN on
its moving statistics), computed in float64.

``dropout_off(model)``: a context in which every Dropout layer passes its input through in
training mode too, for PreciseBN "in inference-dropout mode" (Li et al.'s remedy: recompute
the statistics with dropout off, the weights fixed).
"""

import contextlib

import keras
import numpy as np

from bnlab.tools import precise


def variance_shift(model, x, batch_size=500):
    """[{"layer": name, "shift": mean_c σ²_moving / Var_test}] in ``bn_layers`` order."""
    layers = precise.bn_layers(model)
    probe = precise.input_model(model, layers)
    chunks = [precise.layer_inputs(model, probe, x[s:s + batch_size], training=False)
              for s in range(0, len(x), batch_size)]
    found = []
    for i, layer in enumerate(layers):
        values = np.concatenate([c[i] for c in chunks]).astype(np.float64)
        axis = precise.channel_axis(layer, values.ndim)
        axes = tuple(a for a in range(values.ndim) if a != axis)
        test_variance = values.var(axis=axes)
        _, moving_variance = precise.moving_statistics(layer)
        found.append({"layer": layer.name,
                      "shift": float(np.mean(moving_variance / test_variance))})
    return found


def _dropouts(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from _dropouts(layer)


@contextlib.contextmanager
def dropout_off(model):
    """Every Dropout of ``model`` at rate 0 inside the context (Keras's Dropout is the identity
    at rate 0 whatever ``training`` says); the rates come back afterwards."""
    layers = list(_dropouts(model))
    rates = [layer.rate for layer in layers]
    try:
        for layer in layers:
            layer.rate = 0.0
        yield model
    finally:
        for layer, rate in zip(layers, rates):
            layer.rate = rate
