"""dropout-variance-shift's section: Li et al. 2019's variance shift per BN layer, and the test
accuracy with EMA statistics against both remedies."""

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.literature.common import bars, by_name, cell
from bnlab.results.stats import mean_ci
from bnlab.results.host import machine

LI_2019 = ("Li, Chen, Hu & Yang 2019 (CVPR), CIFAR-10/100 ResNets, Wide ResNets, DenseNets: "
           "dropout before BN makes the variance BN learned in training differ from the one it "
           "sees at test time (their Fig. 2-4: the ratio moves away from 1, more with a larger "
           "dropout rate and deeper layers), and the test accuracy drops; recomputing BN's "
           "statistics with dropout off, or putting dropout only after the last BN, recovers it.")
ROWS = (("before-bn", "test_accuracy", "Dropout → Dense → BN, EMA statistics"),
        ("before-bn", "precise_test_accuracy", "… PreciseBN, dropout on"),
        ("before-bn", "precise_nodrop_test_accuracy", "… PreciseBN, dropout off (remedy)"),
        ("after-bn", "test_accuracy", "Dropout after the last BN only (remedy)"))


def section(arms, save, confidence):
    arms = by_name(arms)
    if not {"before-bn", "after-bn"} <= set(arms):
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, colour in (("before-bn", "tab:red"), ("after-bn", "tab:blue")):
        shifts = np.array([t.results["variance_shifts"] for t in arms[name].trials], dtype=float)
        stats = np.array([mean_ci(column, confidence) for column in shifts.T]).reshape(-1, 2)
        layers = np.arange(1, shifts.shape[1] + 1)
        left.errorbar(layers, stats[:, 0], yerr=np.nan_to_num(stats[:, 1]), marker="o",
                      capsize=3, color=colour, label=arms[name].label)
    left.axhline(1.0, color="black", lw=0.8, ls=":")
    left.set(xlabel="BN layer", ylabel="σ²_train / σ²_test (mean over channels)",
             title="(a) variance shift per BN layer", xticks=layers)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    bars(right, [label.replace(", ", ",\n").replace("… ", "") for _, _, label in ROWS],
         [arms[a].final(k) for a, k, _ in ROWS], confidence,
         ["tab:red", "tab:orange", "tab:green", "tab:blue"])
    low = min(min(arms[a].final(k)) for a, k, _ in ROWS)
    right.set_ylim(max(0.0, low - 0.03), None)
    right.set(ylabel="test accuracy", title=f"(b) test accuracy (mean ± {confidence:.0%} CI)")
    fig.tight_layout()
    table = [[label, str(len(arms[a].final(k))), cell(arms[a].final(k), confidence)]
             for a, k, label in ROWS]
    shift_rows = [[arms[n].label,
                   cell(arms[n].final("ema_variance_shift"), confidence, 3),
                   cell(arms[n].final("variance_shift"), confidence, 3)]
                  for n in ("before-bn", "after-bn")]
    return [
        ("h2", "Study: dropout's variance shift at BN (Li et al. 2019)"),
        ("list", [machine(), "paper: " + LI_2019,
                  "ours: Fashion-MNIST, a 4 × 256 MLP (BN before relu), dropout 0.5, a few "
                  "epochs on a CPU. σ²_train is the population variance of the last BN layer's "
                  "inputs with dropout as in training (PreciseBN), σ²_test that of its inputs at "
                  "inference on 2,000 test images; the EMA column uses the moving variance "
                  "instead, which also carries the EMA's lag"]),
        ("img", save(fig, "variance_shift.png"), "variance shift per BN layer and test accuracy"),
        ("table", ["arm", "last BN: EMA σ² / σ²_test", "last BN: σ²_train / σ²_test"],
         shift_rows),
        ("table", ["weights and statistics", "seeds",
                   f"test accuracy (mean ± {confidence:.0%} CI)"], table),
    ]
