"""What the studies measure beyond accuracy, on both training paths (``bnlab.lab.train``'s fit and
``bnlab.lab.multiseed``'s seeds together). The activation probe, which both record during
training, is ``bnlab.tools.probe`` (config key ``probe``).

``scores_test_curve(config)`` — whether a step trial also scores the test split at each
validation point (the extra ``"test_curve"``; ``test_loss`` and ``test_accuracy`` in those history
rows), as the ``ioffe-fig1`` study's test accuracy against steps needs.

``after(model, config, arrays)`` — after training, for a model with BN layers, the test accuracy
with other statistics than the EMA's, each evaluated on the same trained weights:

- extra ``"batch_statistics"``: ``batch_test_accuracy``, the test images in training mode, in
  batches of the trial's batch size, so each BN layer normalizes with the statistics of the test
  batch (of each group of ``virtual_batch_size`` in Ghost BN) as it did in training; nothing
  the model keeps changes (Wu & He 2018's "small batch" effect, without the EMA's staleness).
- extra ``"debiased_ema"``: ``debiased_test_accuracy``, the EMA with its initial value's weight
  removed (Adam's bias correction): after t steps at momentum m, from (0, 1),
  μ̂ = moving_mean / (1 − mᵗ) and σ̂² = (moving_variance − mᵗ) / (1 − mᵗ): what is left of the EMA's
  error is its lag.
- extra ``"precise_bn"``: PreciseBN (Wu & Johnson 2021; ``bnlab.tools.precise``) over
  ``PRECISE_BATCHES`` training batches: ``precise_test_accuracy``, and how stale the EMA was:
  for each BN layer, with (μ, σ²) the population statistics and (μ̂, σ̂²) the moving ones, at
  worst over the channels, |μ̂ − μ| / √(σ² + ε) (``ema_mean_error``) and |σ̂² − σ²| / (σ² + ε)
  (``ema_variance_error``); the results keep the worst layer. ``config["precise_samples"]``
  (default: ``PRECISE_BATCHES`` batches) is how many training images it reads; a second and
  further entries S add ``precise_test_accuracy_S`` from the first S images.

The literature studies' extras (``LITERATURE``: ``bnlab.lab.literature.measures`` and
``.extras``, each ``fn(model, config, arrays) -> results``) run first, in the config's order.
``during(configs, arrays)`` — the record a step trial keeps *during* training, when its extras
name one (``LITERATURE_DURING``: the smoothness study's ``Smoothness``), else None: the loop calls
its ``record(step, model_of)`` at step 0 and after every chunk, and puts ``results(i)`` into seed
i's results.

It restores the model's moving statistics except PreciseBN's, which it leaves last;
``after_wanted(config)`` says whether it measures anything (the seeds-together path then puts each
seed's state into a Keras model for it).
"""

import keras
import numpy as np

from bnlab.lab import recipe
from bnlab.lab.literature import extras as literature_extras
from bnlab.lab.literature import measures as literature_measures
from bnlab.tools import precise

PRECISE_BATCHES = 100  # PreciseBN's batches of the trial's batch size (3,200 images at 32)
BATCH_EVAL_IMAGES = 800  # the batch-statistics evaluation's chunk: a multiple of every group size
AFTER = ("precise_bn", "batch_statistics", "debiased_ema")
LITERATURE = {**literature_measures.AFTER, **literature_extras.AFTER}
LITERATURE_DURING = literature_measures.DURING


def _accuracy(model, x, y):
    return float(model.evaluate(x, y, batch_size=recipe.EVAL_BATCH_SIZE, verbose=0)[1])


def scores_test_curve(config):
    return "test_curve" in config.get("extras", ())


def after_wanted(config):
    return any(extra in config.get("extras", ()) for extra in (*AFTER, *LITERATURE))


def during(configs, arrays):
    wanted = [e for e in configs[0].get("extras", ()) if e in LITERATURE_DURING]
    if len(wanted) > 1:
        raise ValueError(f"one record during training at a time, not {', '.join(wanted)}")
    return LITERATURE_DURING[wanted[0]](configs, arrays) if wanted else None


def training_chunk(model, batch_size, images=BATCH_EVAL_IMAGES):
    """How many images one training-mode call may take and still normalize as training did:
    the trial's batch size for plain BN (it normalizes over the whole call); for Ghost BN, whose
    groups of k are the same at any call size that k divides, the largest multiple of k up to
    ``images`` (one call instead of many)."""
    groups = {getattr(layer, "virtual_batch_size", None) for layer in precise.bn_layers(model)}
    if None in groups or len(groups) != 1:
        return batch_size
    (k,) = groups
    return max(k, min(images, BATCH_EVAL_IMAGES) // k * k)


def batch_statistics_accuracy(model, x, y, batch_size):
    """Accuracy on the full chunks of ``x`` in training mode (module docstring; ``training_chunk``
    images a call); the model's variables are restored afterwards."""
    chunk = training_chunk(model, batch_size, len(x))
    n = len(x) // chunk * chunk
    saved = [v.numpy() for v in model.non_trainable_variables]
    correct = 0
    try:
        for start in range(0, n, chunk):
            p = keras.ops.convert_to_numpy(model(x[start:start + chunk], training=True))
            correct += int((np.argmax(p, axis=-1) == y[start:start + chunk]).sum())
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    return correct / max(n, 1)


def debiased_accuracy(model, x, y, steps):
    """Test accuracy with each BN layer's EMA bias-corrected for ``steps`` updates (module
    docstring); the moving statistics are restored."""
    layers = [layer for layer in precise.bn_layers(model) if not getattr(layer, "renorm", False)]
    saved = [(layer, *precise.moving_statistics(layer)) for layer in layers]
    try:
        for layer, mean, variance in saved:
            weight = layer.momentum ** steps
            precise.assign_statistics(layer, mean / (1 - weight),
                                      np.maximum((variance - weight) / (1 - weight), 0.0))
        return _accuracy(model, x, y)
    finally:
        for layer, mean, variance in saved:
            precise.assign_statistics(layer, mean, variance)


def after(model, config, arrays):
    out = {}
    for extra in config.get("extras", ()):
        if extra in LITERATURE:
            out.update(LITERATURE[extra](model, config, arrays))
    return {**out, **_statistics(model, config, arrays)}


def _statistics(model, config, arrays):
    extras = config.get("extras", ())
    if not any(extra in extras for extra in AFTER) or not precise.bn_layers(model):
        return {}
    (x, _), (xt, yt) = arrays["train"], arrays["test"]
    out = {}
    if "batch_statistics" in extras:
        out["batch_test_accuracy"] = batch_statistics_accuracy(model, xt, yt,
                                                               config["batch_size"])
    if "debiased_ema" in extras:
        out["debiased_test_accuracy"] = debiased_accuracy(model, xt, yt, config["steps"])
    if "precise_bn" not in extras:
        return out
    first, *more = config.get("precise_samples") or [PRECISE_BATCHES * config["batch_size"]]
    for samples in more:
        found = _collect(model, x, config["batch_size"], samples)
        moving = [(layer, *precise.moving_statistics(layer)) for layer, _, _ in found]
        for layer, mean, variance in found:
            precise.assign_statistics(layer, mean, variance)
        out[f"precise_test_accuracy_{samples}"] = _accuracy(model, xt, yt)
        for layer, mean, variance in moving:
            precise.assign_statistics(layer, mean, variance)
    found = _collect(model, x, config["batch_size"], first)
    stale = [precise.staleness(layer, mean, variance) for layer, mean, variance in found]
    for layer, mean, variance in found:
        precise.assign_statistics(layer, mean, variance)
    return {**out, "ema_mean_error": max(f["mean_shift"] for f in stale),
            "ema_variance_error": max(f["variance_error"] for f in stale),
            "precise_images": _images(model, x, config["batch_size"], first),
            "precise_test_accuracy": _accuracy(model, xt, yt)}


def _images(model, x, batch_size, samples):
    chunk = training_chunk(model, batch_size, min(len(x), samples))
    return min(len(x), samples) // chunk * chunk


def _collect(model, x, batch_size, samples):
    """PreciseBN's population statistics over the first ``samples`` training images (full
    ``training_chunk`` calls)."""
    chunk = training_chunk(model, batch_size, min(len(x), samples))
    return precise.collect(model, x, batch_size=chunk,
                           num_batches=_images(model, x, batch_size, samples) // chunk,
                           progress=False)
