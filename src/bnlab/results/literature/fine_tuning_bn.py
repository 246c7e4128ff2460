"""fine-tuning-bn's section: test accuracy per BN policy and fine-tuning batch size, and a
recommendation: the policy with the best mean at the small batch, with its paired interval
against each other policy there (``bnlab.results.claims.interval``)."""

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results import claims
from bnlab.results.literature.common import by_name, cell
from bnlab.results.stats import mean_ci
from bnlab.results.host import machine

GUIDES = ("Keras's transfer-learning guide and keras#9214/#20285, pytorch/vision#5443: keep BN "
          "in inference mode when fine-tuning (Keras: trainable=False, which in Keras 3 also "
          "freezes γ and β: FrozenBN), above all at small batches, where batch statistics are "
          "noisy and differ from the pretrained ones; re-estimate the statistics on the target "
          "data when its distribution differs from the source's.")

SAYS = {"appeared": "better", "contradicted": "worse", "inconclusive": "not distinguishable"}


def _seeds(arm):
    return {t.seed: t.results["test_accuracy"] for t in arm.trials}


def recommendation(arms, batch, confidence):
    """(best arm, [(other arm, paired mean, low, high, verdict)]) at fine-tuning ``batch``."""
    at = {a.group: a for a in arms.values() if a.x == batch}
    if len(at) < 2:
        return None, []
    best = max(at.values(), key=lambda a: np.mean(a.final("test_accuracy")))
    rows = []
    for other in at.values():
        if other is best:
            continue
        a, b = _seeds(best), _seeds(other)
        d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
        mean, low, high, _, _, verdict = claims.interval(d, "greater")
        rows.append((other, mean, low, high, verdict))
    return best, rows


def section(arms, save, confidence):
    arms = by_name(arms)
    groups = list(dict.fromkeys(a.group for a in arms.values() if a.group))
    batches = sorted({a.x for a in arms.values() if a.x is not None})
    if not groups:
        return []
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(batches), 1)
    for j, batch in enumerate(batches):
        stats = []
        for group in groups:
            arm = next((a for a in arms.values() if a.group == group and a.x == batch), None)
            stats.append(mean_ci(arm.final("test_accuracy"), confidence) if arm
                         else (np.nan, np.nan))
        ax.bar(np.arange(len(groups)) + (j - (len(batches) - 1) / 2) * width,
               [m for m, _ in stats], width, yerr=[0 if np.isnan(h) else h for _, h in stats],
               capsize=3, label=f"fine-tuning batch {batch}")
    ax.set_xticks(range(len(groups)), groups)
    finite = [m for a in arms.values() for m in a.final("test_accuracy")]
    ax.set_ylim(max(0.0, min(finite) - 0.05), None)
    ax.set(ylabel="test accuracy (classes 5-9)",
           title=f"BN policy when fine-tuning (mean ± {confidence:.0%} CI)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    table = []
    for group in groups:
        row = [group]
        for batch in batches:
            arm = next((a for a in arms.values() if a.group == group and a.x == batch), None)
            row.append(cell(arm.final("test_accuracy"), confidence) if arm else "—")
        table.append(row)
    out = [
        ("h2", "Study: BN policies for fine-tuning"),
        ("list", [machine(), "the guides: " + GUIDES,
                  "ours: the study CNN pretrained on Fashion-MNIST's classes 0-4 once per seed "
                  "(cached, reused by every arm of that seed: the pairing), fine-tuned with a "
                  "fresh head on 500 images of classes 5-9 (a different domain: other garments); "
                  "FrozenBN and Keras's trainable=False are the same thing in Keras 3, so "
                  "'moving' is the distinct PyTorch-style policy (statistics fixed, γ and β "
                  "trained)"]),
        ("img", save(fig, "fine_tuning.png"), "test accuracy per BN policy and batch size"),
        ("table", ["policy"] + [f"batch {b}: test accuracy" for b in batches], table),
    ]
    small = batches[0] if batches else None
    best, rows = recommendation(arms, small, confidence)
    if best is not None:
        out += [("p", f"Recommendation at fine-tuning batch {small}: **{best.group}** "
                      f"({cell(best.final('test_accuracy'), confidence)}). Its paired "
                      "difference to each other policy (same seed, same pretrained weights; "
                      "95% t interval, in points):"),
                ("table", ["against", "paired difference (pt)", "the recommended policy is"],
                 [[o.group, f"{100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]", SAYS[v]]
                  for o, m, lo, hi, v in rows])]
    return out
