"""The scale-invariance study's section (``bnlab.lab.literature.scale_invariance``): Σ‖w‖² of
the scale-invariant kernels over training for every η with and without weight decay (the shape
of van Laarhoven 2017's and Hoffer et al. 2018's weight-norm curves), the per-step identity
‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖², and the rescaled arm's predictions image by image.

    section(arms, save, confidence) -> [blocks]
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.stats import fmt_ci, mean_ci

PAPERS = ("van Laarhoven 2017 and Hoffer et al. 2018: with BN, the weights in front of it are "
          "scale-invariant, so SGD's effective learning rate is η/‖w‖² and weight decay acts only "
          "by holding ‖w‖ down; Arora et al. 2019 (Lemma 2.4): ‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖² "
          "exactly, so BN nets train at any η (auto rate-tuning).")


def _ci(values, confidence, digits=4):
    return fmt_ci(*mean_ci(values, confidence), digits)


def _matching(a, b):
    """Per seed both arms ran: the share of the first test images both predict alike."""
    theirs = {t.seed: t.results.get("test_predicted") for t in b.trials}
    return [float(np.mean(np.equal(t.results["test_predicted"], theirs[t.seed])))
            for t in a.trials if t.results.get("test_predicted") and theirs.get(t.seed)]


def section(arms, save, confidence=0.95):
    traced = [a for a in arms if a.trials and a.trials[0].results.get("w_squared")]
    if not traced:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = dict(zip(sorted({a.x for a in traced if a.group != "rescaled"}),
                       ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for arm in traced:
        steps = np.asarray(arm.trials[0].results["w_squared_steps"])
        curves = np.array([t.results["w_squared"] for t in arm.trials])
        style = {"rescaled": ":", "weight decay": "--"}.get(arm.group, "-")
        colour = "black" if arm.group == "rescaled" else colours.get(arm.x)
        axes[0].plot(steps, curves.mean(0), ls=style, color=colour, label=arm.label)
        residual = [t.results["identity_residual_median"] for t in arm.trials]
        axes[1].bar(arm.label, np.mean(residual), color=colour, hatch="//" if style != "-" else "")
    axes[0].set(yscale="log", xlabel="step", ylabel="Σ‖w‖² of the scale-invariant kernels",
                title="(a) weight norm over training (mean over seeds)")
    axes[0].legend(fontsize=7)
    axes[1].set(yscale="log", ylabel="median over steps of |Δ‖w‖² − η²‖g‖²| / η²‖g‖²",
                title="(b) the per-step identity's relative error")
    axes[1].tick_params(axis="x", labelrotation=60, labelsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    rows = [[a.label, str(len(a.trials)), _ci(a.final("test_accuracy"), confidence),
             _ci(a.final("identity_residual_median"), confidence, 5),
             _ci(a.final("identity_residual_p99"), confidence, 4),
             _ci(a.final("w_growth_second_half"), confidence, 3),
             _ci(a.final("effective_lr_final"), confidence, 6)] for a in traced]
    out = [("h2", "Study: the weight norm in front of BN"),
           ("list", ["papers: " + PAPERS,
                     "ours: Fashion-MNIST, the seeds' 300-100 MLP with BN before each relu, "
                     "plain SGD, batch 32; Δ‖w‖² measured at every step from the weights before "
                     "and after it, as ⟨w_(t+1) − w_t, w_(t+1) + w_t⟩ (no float32 cancellation); "
                     "time and load of the committed run: docs/studies/RUN.txt"]),
           ("img", save(fig, "weight_norms.png"), "weight norm and identity error per arm"),
           ("table", ["arm", "seeds", f"test acc (mean ± {confidence:.0%} CI)",
                      "identity error, median over steps", "identity error, 99th percentile",
                      "Σ‖w‖² growth over the second half", "η/‖w‖² at the end"], rows)]
    by_group = {a.group: a for a in traced}
    base = next((a for a in traced if a.group == "no decay" and a.x == 0.1), None)
    if "rescaled" in by_group and base is not None:
        same = _matching(by_group["rescaled"], base)
        if same:
            out.append(("p", f"(√10·w₀, 10·η) against (w₀, η = 0.1): the two predict the same "
                             f"class for {_ci([100 * s for s in same], confidence, 2)} % of the "
                             f"first {len(base.trials[0].results['test_predicted'])} test images "
                             f"(per seed: {', '.join(f'{100 * s:.1f}' for s in same)})."))
    return out
