"""What the scale-invariance and depth-at-init studies measure after training (and the smoothness
study during it: ``Smoothness``, ``DURING``), hooked like
``bnlab.lab.measure``'s ``precise_bn``: ``AFTER[extra](model, config, arrays) -> results`` for a
trial whose config lists ``extra``; ``arrays`` holds the labelled splits. Both training paths call
them with the trained Keras model (the seeds-together path puts each seed's state, optimizer
variables included, into one first).

``weight_norms`` (scale-invariance; ``bnlab.tools.scale_invariance``, optimizer ``TracedSGD``):
    ``identity_residual_median``, ``_p99``, ``_max``  over all steps and scale-invariant kernels,
        |Δ‖w‖² − η²‖g‖² (− decay)| / η²‖g‖², the per-step identity's relative error
    ``w_squared``, ``w_squared_steps``   Σ‖w‖² of the scale-invariant kernels over training
    ``w_growth_second_half``   Σ‖w_T‖² / Σ‖w_{T/2}‖² − 1 (0: levelled off)
    ``effective_lr_final``     the mean over those kernels of η/‖w_T‖²
    ``test_predicted``         the classes predicted for the first ``PREDICTED_IMAGES`` test images
``init_gradients`` (depth-at-init; ``bnlab.tools.gradients``), at initialization, on the trial's
first training batch, in training mode:
    ``init_gradient_norms``    ‖∂L/∂W_l‖ of every kernel of the trial's own network
    ``log_init_gradient_first_dD``  ln ‖∂L/∂W_1‖ of the same network built D hidden layers deep,
        for every D of ``DEPTHS`` up to the trial's depth (same seed, same batch)
"""

import numpy as np

from bnlab.lab import recipe
from bnlab.tools import gradients, scale_invariance

TRACE_POINTS = 100  # the ‖w‖² curve kept per trial: this many evenly spaced steps
PREDICTED_IMAGES = 1000  # the test images whose predicted classes a trial keeps


def weight_norms(model, config, arrays):
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


def init_gradients(model, config, arrays):
    """The depth-at-init study's measurement (``bnlab.tools.gradients``): ‖∂L/∂W_l‖ of every
    kernel of the trial's network *at initialization* (rebuilt from the config: the same seed
    gives the same initial weights), and ‖∂L/∂W_1‖ of the same network at every depth of
    ``DEPTHS`` up to the trial's, all on the trial's first training batch."""
    x, y = arrays["train"]
    first = recipe.step_order(len(x), config["batch_size"], 1, config["seed"])[0]
    x, y = np.asarray(x[first], "float32"), y[first]
    loss_fn, _ = recipe.loss_and_metric(config)
    depth = config["model"]["depth"]
    results = {}
    for d in [d for d in DEPTHS if d < depth] + [depth]:
        initial = recipe.compile_model({**config, "model": {**config["model"], "depth": d}})
        norms = gradients.kernel_gradient_norms(initial, loss_fn, x, y)
        results[f"log_init_gradient_first_d{d}"] = float(np.log(norms[0]))
    results["init_gradient_norms"] = norms
    return results


# The depths at which each depth-at-init trial also measures its network's first-layer gradient
DEPTHS = (5, 10, 20, 30, 40, 50, 60)

AFTER = {"weight_norms": weight_norms, "init_gradients": init_gradients}


class Smoothness:
    """The smoothness study's record *during* training (Santurkar et al. 2018, Fig. 4;
    ``bnlab.tools.gradients.gradient_step_scan``), for the K seeds a loop trains together:
    ``record(step, model_of)`` at step 0 and after every chunk of ``log_every["batch"]`` steps
    measures each seed's model (``model_of(i)``, used before the next is asked for: the
    seeds-together engine puts every seed into one Keras model) on one fixed batch, the first
    ``SMOOTHNESS_IMAGES`` training images, at the step sizes η = η₀ · ``STEP_MULTIPLES`` (η₀
    the trial's learning rate).
    ``results(i)`` is seed i's:

    ``smoothness_steps``            the steps measured
    ``smoothness_step_sizes``, ``smoothness_images``  the η measured at, the batch's size
    ``loss_band_low``, ``_high``    min and max over η of L(w − η·g) at each step (the band)
    ``gradient_change``             max over η of ‖g(w) − g(w − η·g)‖ at each step
    ``loss_band_width_mean``        mean over the steps of high − low
    ``log_loss_band_width_mean``    mean over the steps of ln(high − low) (what claims compare:
                                    the widths span decades early in training)
    ``gradient_change_mean``, ``log_gradient_change_mean``  the same for the gradient change
    """

    def __init__(self, configs, arrays):
        x, y = arrays["train"]
        self.x = np.asarray(x[:SMOOTHNESS_IMAGES], "float32")
        self.y = y[:SMOOTHNESS_IMAGES]
        self.loss_fn, _ = recipe.loss_and_metric(configs[0])
        self.step_sizes = [configs[0]["optimizer"]["learning_rate"] * m for m in STEP_MULTIPLES]
        self.steps, self.points = [], [[] for _ in configs]

    def record(self, step, model_of):
        self.steps.append(int(step))
        for i, points in enumerate(self.points):
            points.append(gradients.gradient_step_scan(model_of(i), self.loss_fn, self.x, self.y,
                                                       self.step_sizes))

    def results(self, i):
        low = np.array([min(p["losses"]) for p in self.points[i]])
        high = np.array([max(p["losses"]) for p in self.points[i]])
        change = np.array([max(p["gradient_changes"]) for p in self.points[i]])
        width = np.maximum(high - low, TINY)
        return {"smoothness_steps": self.steps, "smoothness_step_sizes": self.step_sizes,
                "smoothness_images": len(self.x), "loss_band_low": low.tolist(),
                "loss_band_high": high.tolist(), "gradient_change": change.tolist(),
                "loss_band_width_mean": float(np.mean(high - low)),
                "log_loss_band_width_mean": float(np.mean(np.log(width))),
                "gradient_change_mean": float(np.mean(change)),
                "log_gradient_change_mean": float(np.mean(np.log(np.maximum(change, TINY))))}


SMOOTHNESS_IMAGES = 128
STEP_MULTIPLES = (0.5, 1.0, 2.0, 4.0)  # η/η₀ of the smoothness scan: around the step training takes
TINY = 1e-12  # a floor under the logs (a band of width 0)
DURING = {"smoothness": Smoothness}
