"""What the literature studies measure after training, hooked like ``bnlab.lab.measure``'s
``precise_bn``: ``AFTER[extra](model, config, arrays) -> results`` for a trial whose config
lists ``extra``; ``arrays`` holds the labelled splits. Both training paths call them with the
trained Keras model (the seeds-together path puts each seed's state into one first).

``variance_shift`` (dropout-variance-shift; Li et al. 2019):
    ``variance_shift``        the last BN layer's mean_c σ²_train / Var_test on the test images
                              (``bnlab.tools.variance_shift``; 1 = no shift), with σ²_train the
                              population variance PreciseBN measures with dropout as in training
                              (so the EMA's staleness is not part of it)
    ``ema_variance_shift``    the same with the EMA's moving variance as σ²_train
    ``log_variance_shift``    its natural log (0 = no shift), what the claim's interval is on
    ``variance_shifts``       every BN layer's, in order
    ``precise_test_accuracy`` test accuracy after PreciseBN with dropout as in training
    ``precise_nodrop_test_accuracy``  ... after PreciseBN with dropout off (Li et al.'s remedy)
``gamma`` (only-bn-trainable; Frankle et al. 2021):
    ``gamma_near_zero``       the share of all BN layers' γ with |γ| < ``GAMMA_NEAR_ZERO``
    ``gamma_abs_median``      the median |γ|
    ``gamma_abs``             every |γ| (for the report's histogram)
"""

import math

import numpy as np

from bnlab.results.literature.only_bn_trainable import GAMMA_NEAR_ZERO  # the report draws it too
from bnlab.tools import precise
from bnlab.tools.variance_shift import dropout_off, variance_shift

PRECISE_BATCHES = 100
SHIFT_IMAGES = 2000
EVAL_BATCH_SIZE = 500


def _accuracy(model, x, y):
    return float(model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)[1])


def _precise_accuracy(model, config, arrays):
    x, _ = arrays["train"]
    batches = min(PRECISE_BATCHES, len(x) // config["batch_size"])
    precise.precise_bn(model, x, batch_size=config["batch_size"], num_batches=batches,
                       progress=False)
    return _accuracy(model, *arrays["test"])


def _shifts(model, arrays):
    return [f["shift"] for f in variance_shift(model, arrays["test"][0][:SHIFT_IMAGES])]


def measure_variance_shift(model, config, arrays):
    ema = _shifts(model, arrays)
    results = {"ema_variance_shift": ema[-1],
               "precise_test_accuracy": _precise_accuracy(model, config, arrays)}
    shifts = _shifts(model, arrays)  # population statistics now: dropout's shift alone
    results.update(variance_shift=shifts[-1], log_variance_shift=math.log(shifts[-1]),
                   variance_shifts=shifts)
    with dropout_off(model):
        results["precise_nodrop_test_accuracy"] = _precise_accuracy(model, config, arrays)
    return results


def measure_gamma(model, config, arrays):
    gammas = np.concatenate([np.abs(np.asarray(layer.gamma)).ravel()
                             for layer in precise.bn_layers(model)])
    return {"gamma_near_zero": float(np.mean(gammas < GAMMA_NEAR_ZERO)),
            "gamma_abs_median": float(np.median(gammas)),
            "gamma_abs": [round(float(g), 4) for g in gammas]}


AFTER = {"variance_shift": measure_variance_shift, "gamma": measure_gamma}
