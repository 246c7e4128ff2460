"""The learning-rate-range study's section (``bnlab.lab.literature.learning_rate_range``):
validation accuracy against η for BN and no BN (the shape of Bjorck et al. 2018's Fig. 1), the
range of η that trains per seed, and the verdicts of the claims on that range.

    section(arms, save, confidence, range_claims, trained) -> [blocks]

``range_claims``: (statement, paper, decades); ``trained(results) -> bool`` says whether a trial
trained. The range of a norm for one seed is the number of grid points that train, in
half-decades; a range claim is judged on the paired per-seed differences BN − none, less its
decades, with ``bnlab.results.claims``' test (so its row reads like the opening table's).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results import claims
from bnlab.results.stats import fmt_ci, mean_ci

PAPER = ("Bjorck et al. 2018, Fig. 1 (ResNet-110, CIFAR-10): with BN the net trains over a "
         "wide range of learning rates, without BN only at small ones, and the two agree at the "
         "smallest; Ioffe & Szegedy 2015: BN-x5 and BN-x30 train Inception at 5 and 30 times "
         "its learning rate.")
GRID_STEP = 0.5  # decades between grid points


def widths(arms, trained):
    """{group: {seed: decades of η that train}} over the grid arms of each group."""
    out = {}
    for arm in arms:
        for trial in arm.trials:
            seeds = out.setdefault(arm.group, {})
            seeds[trial.seed] = seeds.get(trial.seed, 0.0) + GRID_STEP * trained(trial.results)
    return out


def range_verdicts(arms, range_claims, trained):
    per = widths(arms, trained)
    verdicts = []
    for statement, paper, decades in range_claims:
        less = f"trainable_decades_minus_{decades:g}" if decades else "trainable_decades"
        claim = claims.Claim(statement, a="bn", b="none", metric=less,
                             metric_b="trainable_decades", direction="greater", paper=paper)

        def lookup(group, metric, decades=decades):
            less = decades if group == "bn" else 0.0
            return {s: w - less for s, w in per.get(group, {}).items()}

        verdicts.append(claims.judge(claim, lookup))
    return verdicts


def section(arms, save, confidence=0.95, range_claims=(), trained=None):
    ran = [a for a in arms if a.trials]
    if not ran:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group in dict.fromkeys(a.group for a in ran):
        grid = sorted((a for a in ran if a.group == group), key=lambda a: a.x)
        stats = [mean_ci([v if math.isfinite(v) else 0.1 for v in a.final("val_accuracy")],
                         confidence) for a in grid]
        ax.errorbar([a.x for a in grid], [m for m, _ in stats],
                    yerr=[0 if math.isnan(h) else h for _, h in stats], marker="o", capsize=3,
                    label=grid[0].label.split(",")[0])
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="the 50 % bar of 'trains'")
    ax.set(xscale="log", xlabel="learning rate η (plain SGD)", ylabel="validation accuracy",
           title=f"accuracy after a fixed budget against η (mean ± {confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    per = widths(ran, trained)
    rows = [[group, ", ".join(f"{w:g}" for _, w in sorted(seeds.items())),
             fmt_ci(*mean_ci(list(seeds.values()), confidence), 2)]
            for group, seeds in per.items()]
    out = [("h2", "Study: the range of learning rates that train"),
           ("list", ["paper: " + PAPER,
                     "ours: Fashion-MNIST, seed 002's 20-layer MLP, one short budget for every "
                     "η; a trial trains when its loss stays finite and its validation accuracy "
                     "reaches 50 % (diverged trials are drawn at 10 %); time and load of the "
                     "committed run: docs/studies/RUN.txt"]),
           ("img", save(fig, "accuracy_vs_lr.png"), "validation accuracy against learning rate"),
           ("table", ["norm", "decades of η that train, per seed",
                      f"mean ± {confidence:.0%} CI"], rows)]
    smallest = [a for a in ran if a.x == min(r.x for r in ran)]
    out.append(("p", f"At the smallest η ({smallest[0].x:g}), test accuracy: " + "; ".join(
        f"{a.label.split(',')[0]} {fmt_ci(*mean_ci(a.final('test_accuracy'), confidence))}"
        for a in smallest) + f" (chance: 0.1; the bar of 'trains': 0.5)."))
    if range_claims and {"bn", "none"} <= set(per):
        head, table = claims.table(range_verdicts(ran, range_claims, trained))
        out += [("p", "The range claims read a seed's whole grid at once, so they are judged "
                      "here on paired per-seed ranges (BN's, less the decades claimed, minus "
                      "no-BN's), with the opening table's test:"),
                ("table", head, table)]
    return out
