"""The depth-at-init study's section (``bnlab.lab.literature.depth_at_init``): ln ‖∂L/∂W₁‖ at
initialization against depth with and without BN, beside the ReLU rate; ln ‖∂L/∂W_l‖ layer by
layer in the deepest net (the shape of Yang et al. 2019's gradient-explosion figures); and what
the trained nets reached.

    section(arms, save, confidence) -> [blocks]      (``rate``: the paper's slope per layer)
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.stats import fmt_ci, mean_ci

PAPER = ("Yang et al. 2019 (ICLR), a mean-field theory of BN: at initialization the gradients "
         "of a fully connected BN net without skip connections grow exponentially with depth, "
         "whatever the initial weight variance; for ReLU, by √(π/(π − 1)) ≈ 1.21 a layer (the "
         "rate as Luther 2020 derives it: the paper's own statement of the ReLU value could not "
         "be retrieved here); nets deeper than about 50 layers did not train (Fig. 3, MNIST).")


def _per_depth(arm):
    """{depth: [ln ‖∂L/∂W₁‖ per seed]} from the arm's trials."""
    found = {}
    for trial in arm.trials:
        for key, value in trial.results.items():
            if key.startswith("log_init_gradient_first_d"):
                found.setdefault(int(key.rsplit("d", 1)[1]), []).append(value)
    return dict(sorted(found.items()))


def section(arms, save, confidence=0.95, rate=None):
    measured = [a for a in arms if a.trials and _per_depth(a)]
    if not measured:
        return []
    deepest = {}
    for arm in measured:  # each norm's deepest arm carries the whole depth sweep
        if arm.x >= deepest.get(arm.group, arm).x:
            deepest[arm.group] = arm
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    rows = []
    for group, arm in deepest.items():
        per = _per_depth(arm)
        depths = np.array(list(per))
        stats = [mean_ci(v, confidence) for v in per.values()]
        mean = np.array([m for m, _ in stats])
        half = np.array([0 if math.isnan(h) else h for _, h in stats])
        label = arm.label.split(",")[0]
        axes[0].errorbar(depths, mean, yerr=half, marker="o", capsize=3, label=label)
        slopes = [np.polyfit(depths, [per[d][i] for d in depths], 1)[0]
                  for i in range(min(len(v) for v in per.values()))] if len(depths) > 1 else []
        fit = np.polyfit(depths, mean, 1) if len(depths) > 1 else None
        r2 = (1 - np.sum((mean - np.polyval(fit, depths)) ** 2)
              / max(np.sum((mean - mean.mean()) ** 2), 1e-30)) if fit is not None else math.nan
        layers = np.array([t.results["init_gradient_norms"][:-1] for t in arm.trials])
        axes[1].plot(np.arange(1, layers.shape[1] + 1), np.log(layers).mean(0), label=label)
        rows.append([label, str(len(arm.trials)), ", ".join(map(str, depths)),
                     fmt_ci(*mean_ci(slopes, confidence), 4), f"{r2:.3f}"])
    if rate is not None and "bn" in deepest:
        per = _per_depth(deepest["bn"])
        d0 = min(per)
        d = np.array(list(per))
        axes[0].plot(d, np.mean(per[d0]) + rate * (d - d0), "k:",
                     label=f"ReLU rate {rate:.3f} a layer")
    axes[0].set(xlabel="depth (hidden layers)", ylabel="ln ‖∂L/∂W₁‖ at initialization",
                title=f"(a) first layer's gradient vs depth (mean ± {confidence:.0%} CI)")
    axes[1].set(xlabel="layer l (1 = next to the input)", ylabel="ln ‖∂L/∂W_l‖",
                title="(b) layer by layer in the deepest net (mean over seeds)")
    trained = [a for a in arms if a.trials]
    for i, arm in enumerate(trained):
        m, h = mean_ci(arm.final("test_accuracy"), confidence)
        axes[2].bar(i, m, yerr=0 if math.isnan(h) else h, capsize=4)
    axes[2].set_xticks(range(len(trained)), [a.label for a in trained], fontsize=7, rotation=20)
    axes[2].axhline(0.5, color="grey", ls="--", lw=1)
    axes[2].set(ylabel="test accuracy after training", title="(c) after the short training")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    trained_text = "; ".join(f"{a.label}: {fmt_ci(*mean_ci(a.final('test_accuracy'), confidence))}"
                             for a in trained)
    deep = {a.group: a for a in trained if a.x == max(t.x for t in trained)}
    caveat = ""
    if "none" in deep and "bn" in deep:
        bn_acc, none_acc = (np.mean(deep[g].final("test_accuracy")) for g in ("bn", "none"))
        if none_acc < 0.5:
            caveat = (" Without BN the net of the same depth did not clear the bar either "
                      f"({none_acc:.3f} against BN's {bn_acc:.3f}): at this depth and budget the "
                      "failure to train is not shown to be BN's; the gradient explosion at "
                      "initialization, panels (a, b), is.")
    return [("h2", "Study: gradients at initialization against depth"),
            ("list", ["paper: " + PAPER,
                      "ours: Fashion-MNIST, 256 units a layer, one batch of 64 at "
                      "initialization for the gradients (the same seed's nets at every depth); "
                      "the dashed line in (c) is the 50 % bar of 'trains'; time and load of the "
                      "committed run: docs/studies/RUN.txt"]),
            ("img", save(fig, "gradient_vs_depth.png"), "gradient norm at init against depth"),
            ("table", ["net", "seeds", "depths measured",
                       f"slope of ln ‖∂L/∂W₁‖ per layer (mean ± {confidence:.0%} CI)",
                       "R² of a line through the means"], rows),
            ("p", f"Test accuracy after the short training (mean ± {confidence:.0%} CI): "
                  f"{trained_text}.{caveat}")]
