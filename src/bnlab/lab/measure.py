"""What the studies measure beyond accuracy, called by ``bnlab.lab.train`` on the trained model.

``during(model, config, arrays)`` — at each validation point of a step trial whose config has a
``unit_probe`` ({"activation": i, "unit": j, "images": n}): the test accuracy, and the 15th, 50th and
85th percentiles of the input of unit j of the model's i-th Activation layer (1-based) over the
first n test images, in inference mode (Ioffe & Szegedy 2015, Fig. 1(b, c)). This is the smallest
code that does it; the tools' ActivationProbe can replace it.

``after(model, config, arrays)`` — for configs with the extra ``"precise_bn"``: how stale the EMA
statistics are and the test accuracy with population statistics instead (Wu & Johnson 2021).
For each BN layer, with (μ, σ²) the population statistics PreciseBN computes and (μ̂, σ̂²) the
moving ones, ``bnlab.tools.precise.staleness`` gives, at worst over the channels,
|μ̂ − μ| / √(σ² + ε) and |σ̂² − σ²| / (σ² + ε); the results keep the worst layer.
"""

import keras
import numpy as np

from bnlab.tools import precise

PERCENTILES = (15, 50, 85)
PRECISE_BATCHES = 100  # PreciseBN's batches of the trial's batch size (3,200 images at 32)
EVAL_BATCH_SIZE = 500


def _accuracy(model, x, y):
    return float(model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)[1])


def during(model, config, arrays):
    probe = config.get("unit_probe")
    if not probe:
        return {}
    x, y = arrays["test"]
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    layer = activations[probe["activation"] - 1]
    values = precise.input_model(model, [layer]).predict(
        x[: probe["images"]], batch_size=EVAL_BATCH_SIZE, verbose=0)[..., probe["unit"]]
    row = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}
    return {"test_accuracy": _accuracy(model, x, y), **row}


def after(model, config, arrays):
    if "precise_bn" not in config.get("extras", ()):
        return {}
    x, _ = arrays["train"]
    batches = min(PRECISE_BATCHES, len(x) // config["batch_size"])
    found = precise.precise_bn(model, x, batch_size=config["batch_size"], num_batches=batches,
                               progress=False)
    return {"ema_mean_error": max(f["mean_shift"] for f in found),
            "ema_variance_error": max(f["variance_error"] for f in found),
            "precise_batches": batches,
            "precise_test_accuracy": _accuracy(model, *arrays["test"])}
