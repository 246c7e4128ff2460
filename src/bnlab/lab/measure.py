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
"""

import keras
import numpy as np

from bnlab.lab import recipe
from bnlab.tools import gradients, precise, scale_invariance

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


TRACE_POINTS = 100  # the ‖w‖² curve kept per trial: this many evenly spaced steps
PREDICTED_IMAGES = 1000  # the test images whose predicted classes a trial keeps


def _weight_norms(model, config, arrays):
    """The scale-invariance study's record (``bnlab.tools.scale_invariance``): per step, how far
    ‖w_{t+1}‖² − ‖w_t‖² is from η²‖g_t‖² on the scale-invariant kernels; their summed ‖w‖² over
    training; its growth over the second half; the effective learning rate η/‖w‖² at the end;
    and the classes predicted for the first test images (to compare arms image by image)."""
    recorded = scale_invariance.trace(model.optimizer)
    invariant = np.array([inv for _, inv in scale_invariance.kernels(model)])
    steps = min(config["steps"], recorded["w_squared"].shape[0])
    residual = np.abs(scale_invariance.identity_residual(recorded)[:steps, invariant])
    w_squared = recorded["w_squared"][:steps, invariant].sum(axis=1)
    kernel_w = np.array([float(np.sum(np.square(layer.kernel.value)))
                         for layer, inv in scale_invariance.kernels(model) if inv])
    curve = np.append(w_squared, kernel_w.sum())
    at = np.unique(np.linspace(0, steps, TRACE_POINTS + 1).round().astype(int))
    x_test, _ = arrays["test"]
    predicted = np.argmax(np.asarray(model.predict(x_test[:PREDICTED_IMAGES], verbose=0)), -1)
    return {
        "identity_residual_median": float(np.median(residual)),
        "identity_residual_p99": float(np.percentile(residual, 99)),
        "identity_residual_max": float(np.max(residual)),
        "w_squared_steps": at.tolist(),
        "w_squared": curve[at].tolist(),
        "w_growth_second_half": float(curve[-1] / curve[steps // 2] - 1),
        "effective_lr_final": float(np.mean(recorded["learning_rates"][invariant] / kernel_w)),
        "test_predicted": predicted.tolist(),
    }


def _init_gradients(model, config, arrays):
    """The depth-at-init study's measurement (``bnlab.tools.gradients``): ‖∂L/∂W_l‖ of every
    kernel of the trial's network *at initialization* (rebuilt from the config: the same seed
    gives the same initial weights) on the trial's first training batch."""
    keras.utils.set_random_seed(config["seed"])
    initial = recipe.compile_model(config)
    x, y = arrays["train"]
    first = recipe.step_order(len(x), config["batch_size"], 1, config["seed"])[0]
    loss_fn, _ = recipe.loss_and_metric(config)
    norms = gradients.kernel_gradient_norms(initial, loss_fn, np.asarray(x[first], "float32"),
                                            y[first])
    return {"init_gradient_norms": norms, "init_gradient_first": norms[0],
            "log_init_gradient_first": float(np.log(norms[0]))}


# The measurements a config's extras ask for after training, by name.
AFTER = {"precise_bn": _precise_bn, "weight_norms": _weight_norms,
         "init_gradients": _init_gradients}
