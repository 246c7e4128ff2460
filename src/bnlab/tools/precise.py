"""PreciseBN: replace BN's moving statistics with population statistics.

The moving statistics are an exponential moving average (EMA) of batch statistics taken while the
weights moved; after few updates at momentum 0.99 they are stale (keras#7177). PreciseBN (Wu &
Johnson 2021, "Rethinking 'Batch' in BatchNorm"; fvcore's ``update_bn_stats``) recomputes them with
the weights fixed, over ``B`` training-mode batches of ``n`` values per channel each (n = batch
size, or batch size · H · W for images). With μ_b and σ²_b the batch mean and biased batch
variance of batch b, per channel::

    μ               = 1/B · Σ_b μ_b                                  (both estimators)
    "pooled"        σ² = 1/B · Σ_b (σ²_b + (μ_b − μ)²)               the biased variance of all
                                                                     B·n values pooled (fvcore)
    "batch_mean"    σ² = 1/B · Σ_b σ²_b                               Ioffe & Szegedy 2015, Alg. 2
    unbiased=True   σ² · N/(N − 1), N = n ("batch_mean", Alg. 2's m/(m−1)) or B·n ("pooled")

Every batch is full (the same n), so weighting by count is weighting equally. The first
equals the law of total variance; the second leaves out the spread between batch means.

Each BN layer's inputs are those the model feeds it in training mode (earlier BN layers
normalizing with their batch statistics), captured for all BN layers at once by one sub-model.
Only the BN layers' moving statistics change: the weights, the optimizer and every other state
are as they were (the capture's side effects on them are undone).
"""

import keras
import numpy as np
from tqdm.auto import tqdm

from bnlab.errors import UserError
from bnlab.layers import BatchNorm
from bnlab.tools import forward

ESTIMATORS = ("pooled", "batch_mean")
BN_TYPES = (keras.layers.BatchNormalization, BatchNorm)


def is_batch_norm(layer):
    """True for Keras's ``BatchNormalization`` and bnlab's ``BatchNorm`` (and their subclasses)."""
    return isinstance(layer, BN_TYPES)


def bn_layers(model):
    """The model's BN layers in the order the model lists them (nested models' layers included)."""
    found = []
    for layer in model.layers:
        if is_batch_norm(layer):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(bn_layers(layer))
    return found


def input_model(model, layers):
    """A sub-model from the model's input to the input tensor of each of ``layers`` (its outputs:
    see ``as_list``)."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [layer.input for layer in layers])


def as_list(outputs):
    """An ``input_model``'s outputs as a list: Keras gives a one-layer sub-model's as a tensor."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def layer_inputs(model, probe, x, *, training):
    """The outputs of ``probe = input_model(model, layers)`` on ``x``, as NumPy arrays; the run's
    side effects on the model's state (moving statistics, random generators) are undone."""
    outputs = as_list(forward.outputs(probe, x, training=training))
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def channel_axis(layer, rank):
    return layer.axis % rank if isinstance(layer.axis, int) else layer.axis[0] % rank


def batch_moments(layer, x):
    """(μ_b, σ²_b, n): the batch's per-channel mean, biased variance (two-pass) and values per
    channel, in float64."""
    x = np.asarray(x, dtype=np.float64)
    axis = channel_axis(layer, x.ndim)
    axes = tuple(a for a in range(x.ndim) if a != axis)
    mean = x.mean(axis=axes)
    variance = ((x - np.expand_dims(mean, axes)) ** 2).mean(axis=axes)
    return mean, variance, x.size // x.shape[axis]


def population_statistics(batch_means, batch_variances, n, estimator="pooled", unbiased=False):
    """(μ, σ²) from B batches' (μ_b, σ²_b) of shape (B, C), each of n values per channel."""
    if estimator not in ESTIMATORS:
        raise UserError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
    means, variances = np.asarray(batch_means), np.asarray(batch_variances)
    mean = means.mean(axis=0)
    if estimator == "pooled":
        variance = (variances + (means - mean) ** 2).mean(axis=0)
        count = n * len(means)
    else:
        variance = variances.mean(axis=0)
        count = n
    if unbiased:
        variance = variance * count / max(count - 1, 1)
    return mean, variance


def moving_statistics(layer):
    return (keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64),
            keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64))


def staleness(layer, mean, variance):
    """How far the layer's moving statistics are from (μ, σ²), per channel, at worst:

        mean_shift     = max_c |μ_moving − μ| / √(σ² + ε)      in the population's standard deviations
        variance_error = max_c |σ²_moving − σ²| / (σ² + ε)     relative
    """
    old_mean, old_variance = moving_statistics(layer)
    scale = variance + layer.epsilon
    return {"mean_shift": float(np.max(np.abs(old_mean - mean) / np.sqrt(scale))),
            "variance_error": float(np.max(np.abs(old_variance - variance) / scale))}


def collect(model, x, *, batch_size, num_batches=None, estimator="pooled", unbiased=False,
            progress=True):
    """Population statistics of every BN layer's training-mode inputs; the model is unchanged.

    Returns [(layer, μ, σ²)] in the order of ``bn_layers(model)``.
    """
    if estimator not in ESTIMATORS:
        raise UserError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
    layers = bn_layers(model)
    if not layers:
        raise UserError("model has no BatchNormalization or bnlab BatchNorm layer")
    batch_size = int(batch_size)
    if batch_size < 2:
        raise UserError(f"batch_size must be at least 2, not {batch_size}")
    available = len(x) // batch_size
    num_batches = available if num_batches is None else int(num_batches)
    if not 1 <= num_batches <= available:
        raise UserError(f"num_batches must be between 1 and {available} (full batches of "
                         f"{batch_size} in {len(x)} examples), not {num_batches}")
    probe = input_model(model, layers)
    sums = [([], []) for _ in layers]
    counts = [0] * len(layers)
    for b in tqdm(range(num_batches), desc="precise_bn", unit="batch", leave=False, delay=2,
                  disable=not progress):
        inputs = layer_inputs(model, probe, x[b * batch_size:(b + 1) * batch_size],
                              training=True)
        for i, (layer, values) in enumerate(zip(layers, inputs)):
            mean, variance, counts[i] = batch_moments(layer, values)
            sums[i][0].append(mean)
            sums[i][1].append(variance)
    return [(layer, *population_statistics(means, variances, n, estimator, unbiased))
            for layer, (means, variances), n in zip(layers, sums, counts)]


def assign_statistics(layer, mean, variance):
    """Set the moving statistics (and, with renorm, the moving σ = √(σ² + ε) they derive from)."""
    layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
    layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    if getattr(layer, "renorm", False):
        layer.moving_stddev.assign(
            np.sqrt(variance + layer.epsilon).astype(layer.moving_stddev.dtype))


def precise_bn(model, x, *, batch_size, num_batches=None, estimator="pooled", unbiased=False,
               progress=True):
    """Replace every BN layer's moving statistics with population statistics over ``num_batches``
    consecutive full batches of ``x`` (default: every full batch); see the module docstring.

    Returns one dict per BN layer: its name and ``staleness`` of the old statistics against the
    new ones (how far they moved). Raises UserError for a model without BN, a bad estimator,
    batch size or number of batches; nothing is changed then.
    """
    found = collect(model, x, batch_size=batch_size, num_batches=num_batches,
                    estimator=estimator, unbiased=unbiased, progress=progress)
    summary = [{"layer": layer.name, **staleness(layer, mean, variance)}
               for layer, mean, variance in found]
    for layer, mean, variance in found:
        assign_statistics(layer, mean, variance)
    return summary
