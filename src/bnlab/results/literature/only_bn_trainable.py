"""only-bn-trainable's section: Frankle et al. 2021's accuracy of training only γ and β against
all weights and against as many random weights, and the distribution of |γ|."""

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.literature.common import bars, by_name, cell
from bnlab.results.host import machine

GAMMA_NEAR_ZERO = 0.1  # γ starts at 1: a tenth of that is a channel mostly switched off

FRANKLE_2021 = ("Frankle, Schwab & Morcos 2021 (ICLR), ResNets on CIFAR-10 and ImageNet: with "
                "all other weights frozen at random initialization, training only BN's γ and β "
                "reaches far above chance (e.g. 82 % on CIFAR-10 for a ResNet-866, 32 % top-1 on "
                "ImageNet for ResNet-200), more than training two random weights a channel "
                "(the same number of parameters); many γ end near 0, switching features off.")
NAMES = ("all", "bn-only", "two-per-channel")
CHANCE = 0.1


def section(arms, save, confidence):
    arms = by_name(arms)
    present = [n for n in NAMES if n in arms]
    if "bn-only" not in present:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    bars(left, [arms[n].label.replace(" trained", "\ntrained") for n in present],
         [arms[n].final("test_accuracy") for n in present], confidence,
         ["tab:gray", "tab:green", "tab:purple"][:len(present)])
    left.axhline(CHANCE, color="black", ls=":", lw=0.8, label="chance")
    left.set(ylabel="test accuracy", title=f"(a) test accuracy (mean ± {confidence:.0%} CI)")
    left.legend(fontsize=8)
    edges = np.linspace(0, 2.5, 51)
    for name, colour in (("all", "tab:gray"), ("bn-only", "tab:green")):
        if name in arms:
            values = np.concatenate([t.results["gamma_abs"] for t in arms[name].trials])
            right.hist(np.clip(values, 0, edges[-1]), bins=edges, alpha=0.5, color=colour,
                       label=arms[name].label, density=True)
    right.axvline(GAMMA_NEAR_ZERO, color="black", ls=":", lw=0.8)
    right.set(xlabel="|γ| (all BN layers, all seeds)", ylabel="density",
              title="(b) |γ| after training")
    right.legend(fontsize=8)
    fig.tight_layout()
    rows = [[arms[n].label, str(len(arms[n].trials)),
             str(arms[n].trials[0].results.get("params_trainable", "—")),
             cell(arms[n].final("test_accuracy"), confidence),
             cell(arms[n].final("gamma_near_zero"), confidence, 3)] for n in present]
    return [
        ("h2", "Study: training BatchNorm and only BatchNorm (Frankle et al. 2021)"),
        ("list", [machine(), "paper: " + FRANKLE_2021,
                  "ours: Fashion-MNIST, the study CNN (3 conv layers, 16-32-64 channels) "
                  "instead of a deep ResNet, a few hundred steps on a CPU; "
                  "the frozen head is random too, so γ and β must also fit a random read-out; "
                  f"'near 0' is |γ| < {GAMMA_NEAR_ZERO} (γ starts at 1)"]),
        ("img", save(fig, "only_bn.png"), "test accuracy per arm and the distribution of |γ|"),
        ("table", ["arm", "seeds", "trainable parameters",
                   f"test accuracy (mean ± {confidence:.0%} CI)",
                   f"share of |γ| < {GAMMA_NEAR_ZERO}"], rows),
    ]
