"""What the studies measure beyond accuracy, on both training paths (``bnlab.lab.train``'s fit and
``bnlab.lab.multiseed``'s seeds together). The activation probe, which both record during
training, is ``bnlab.tools.probe`` (config key ``probe``).

``scores_test_curve(config)`` — whether a step trial also scores the test split at each
validation point (the extra ``"test_curve"``; ``test_loss`` and ``test_accuracy`` in those history
rows), as the ``ioffe-fig1`` study's test accuracy against steps needs.

``after(model, config, arrays)`` — for configs with the extra ``"precise_bn"``: how stale the EMA
statistics are and the test accuracy with population statistics instead (Wu & Johnson 2021).
For each BN layer, with (μ, σ²) the population statistics PreciseBN computes and (μ̂, σ̂²) the
moving ones, ``bnlab.tools.precise.staleness`` gives, at worst over the channels,
|μ̂ − μ| / √(σ² + ε) and |σ̂² − σ²| / (σ² + ε); the results keep the worst layer. It changes the
model's moving statistics, so it runs last; ``after_wanted(config)`` says whether it measures
anything (the seeds-together path then puts each seed's state into a Keras model for it).
The literature studies' extras (``bnlab.lab.literature.measures`` and ``.extras``) run through
the same ``after``.
"""

from bnlab.lab.literature import extras as literature_extras
from bnlab.lab.literature import measures as literature_measures
from bnlab.tools import precise

PRECISE_BATCHES = 100  # PreciseBN's batches of the trial's batch size (3,200 images at 32)
EVAL_BATCH_SIZE = 500


def _accuracy(model, x, y):
    return float(model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)[1])


def scores_test_curve(config):
    return "test_curve" in config.get("extras", ())


def after_wanted(config):
    return any(extra in AFTER for extra in config.get("extras", ()))


def after(model, config, arrays):
    """Every ``AFTER`` measurement the config's extras name, in their order."""
    results = {}
    for extra in config.get("extras", ()):
        if extra in AFTER:
            results.update(AFTER[extra](model, config, arrays))
    return results


def _precise_bn(model, config, arrays):
    x, _ = arrays["train"]
    batches = min(PRECISE_BATCHES, len(x) // config["batch_size"])
    found = precise.precise_bn(model, x, batch_size=config["batch_size"], num_batches=batches,
                               progress=False)
    return {"ema_mean_error": max(f["mean_shift"] for f in found),
            "ema_variance_error": max(f["variance_error"] for f in found),
            "precise_batches": batches,
            "precise_test_accuracy": _accuracy(model, *arrays["test"])}



# extra -> fn(model, config, arrays) -> results; the literature studies' own are in
# bnlab.lab.literature.measures and bnlab.lab.literature.extras
AFTER = {"precise_bn": _precise_bn, **literature_measures.AFTER, **literature_extras.AFTER}
