"""smoothness's section (``bnlab.lab.literature.smoothness``): Santurkar et al. 2018's Fig. 4
in this lab's form. Per arm, over the measured steps, (a) the loss band: the range [min, max]
over the step sizes η of L(w − η·g), and (b) gradient predictiveness: the largest
‖g(w) − g(w − η·g)‖ over η; each drawn as the band between the seeds' means of its low and high
ends (a) or as the mean over seeds with its min-max over seeds (b). A table gives each arm's
accuracy and the per-trial summaries the claims compare.

    section(arms, save, confidence) -> [blocks]
"""

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.host import machine
from bnlab.results.literature.common import by_name, cell

SANTURKAR_2018 = ("Santurkar, Tsipras, Ilyas & Madry 2018 (NeurIPS), VGG on CIFAR-10: BN with "
                  "a random scale and shift injected after it, new at every step (so each "
                  "layer's input distribution keeps moving), trains as well as BN (Fig. 2); BN "
                  "makes the loss change less along the gradient over a range of step sizes "
                  "and the gradient change less (Fig. 4: 'loss landscape', 'gradient "
                  "predictiveness').")
NAMES = ("bn", "none", "noisy-bn")
COLOURS = {"bn": "tab:red", "none": "tab:blue", "noisy-bn": "tab:orange"}


def _series(arm, key):
    """(steps, values seeds × steps) of a per-step list in the trials' results."""
    trials = [t for t in arm.trials if t.results.get(key)]
    if not trials:
        return None, None
    n = min(len(t.results[key]) for t in trials)
    steps = np.asarray(trials[0].results["smoothness_steps"][:n])
    return steps, np.array([t.results[key][:n] for t in trials], dtype=float)


def figure(arms):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name in NAMES:
        if name not in arms:
            continue
        arm, colour = arms[name], COLOURS[name]
        steps, low = _series(arm, "loss_band_low")
        if steps is None:
            continue
        _, high = _series(arm, "loss_band_high")
        left.fill_between(steps, low.mean(0), high.mean(0), color=colour, alpha=0.35,
                          label=arm.label)
        _, change = _series(arm, "gradient_change")
        right.fill_between(steps, change.min(0), change.max(0), color=colour, alpha=0.3)
        right.plot(steps, change.mean(0), color=colour, lw=1.2, label=arm.label)
    left.set(xlabel="training step", ylabel="loss L(w − η·g)", yscale="log",
             title="(a) loss landscape: range over η (mean over seeds)")
    right.set(xlabel="training step", ylabel="max over η of ‖g(w) − g(w − η·g)‖",
              yscale="log", title="(b) gradient predictiveness (mean; min-max over seeds)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def section(arms, save, confidence):
    arms = by_name(arms)
    present = [n for n in NAMES if n in arms]
    if "bn" not in present:
        return []
    first = arms[present[0]].trials[0]
    steps = first.results.get("smoothness_steps") or []
    sizes = ", ".join(f"{eta:g}" for eta in first.results.get("smoothness_step_sizes", []))
    rows = [[arms[n].label, str(len(arms[n].trials)),
             cell(arms[n].final("test_accuracy"), confidence),
             cell(arms[n].final("loss_band_width_mean"), confidence),
             cell(arms[n].final("log_loss_band_width_mean"), confidence, 3),
             cell(arms[n].final("gradient_change_mean"), confidence),
             cell(arms[n].final("log_gradient_change_mean"), confidence, 3)] for n in present]
    setting = (f"every {steps[1] - steps[0] if len(steps) > 1 else '—'} steps ({len(steps)} "
               f"points, step 0 included), on one fixed batch (the first "
               f"{first.results.get('smoothness_images')} training images) in training mode, "
               f"at η ∈ {{{sizes}}} (the training learning rate is "
               f"{first.config['optimizer']['learning_rate']:g}); noisy BN is measured with "
               "one noise draw shared by every η")
    return [
        ("h2", "Study: how does BN help optimization? (Santurkar et al. 2018)"),
        ("list", [machine(), "paper: " + SANTURKAR_2018,
                  "ours: Fashion-MNIST, the study CNN (3 conv layers) instead of VGG, plain "
                  "SGD at one learning rate for every arm; measured " + setting]),
        ("img", save(figure(arms), "smoothness.png"),
         "loss band and gradient change along the gradient over training, per arm"),
        ("table", ["arm", "seeds", f"test accuracy (mean ± {confidence:.0%} CI)",
                   "loss band width (mean over steps)", "mean ln width",
                   "gradient change (mean over steps)", "mean ln change"], rows),
    ]
