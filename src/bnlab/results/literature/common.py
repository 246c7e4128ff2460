"""What the literature studies' sections share: bars of a per-seed metric with their interval,
and an arm's per-seed values of a metric (mean ± the 95% t interval, ``results.stats``)."""

import numpy as np

from bnlab.results.stats import fmt_ci, mean_ci


def by_name(arms):
    return {arm.name: arm for arm in arms if arm.trials}


def cell(values, confidence, digits=4):
    return fmt_ci(*mean_ci(values, confidence), digits) if values else "—"


def bars(ax, labels, series, confidence, colours=None):
    """One bar per (label, per-seed values): the mean, and the interval as an error bar."""
    stats = [mean_ci(values, confidence) if values else (np.nan, np.nan) for values in series]
    ax.bar(range(len(labels)), [m for m, _ in stats],
           yerr=[0 if np.isnan(h) else h for _, h in stats], capsize=4, color=colours)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return stats
