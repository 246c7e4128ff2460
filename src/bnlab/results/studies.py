"""The studies' own report sections: the paper-shaped tables and figures, the paper's numbers
beside ours, and the differences of setting (issue 10 §2; the studies are bnlab.lab.studies).

    for_experiment(spec) -> sections(arms, save, confidence) -> [blocks]   (None: not a study)

The caller (``bnlab.cli``) passes the sections to ``bnlab.results.report.write_report``; this
module imports the report, never the other way. What a section plots comes from the study's
declaration: an arm's ``group`` (its curve) and ``x`` (its place on the axis), never its name.
``arms``: ``bnlab.results.report.Arm`` (trials and histories per arm); ``save(fig, file name)``
writes a figure next to the report and returns its name. Every number is mean ± the 95% t
interval over seeds (``bnlab.results.stats.mean_ci``); an arm's curve is the mean over seeds with
the 95% confidence interval of the mean as its band, as in the generic report.
"""

from __future__ import annotations

import os
import platform

import matplotlib.pyplot as plt
import numpy as np

from bnlab.results.report import probe_setting
from bnlab.results.stats import fmt_ci, mean_ci

IOFFE_2015 = ("Ioffe & Szegedy 2015, Fig. 1 (MNIST, 3 × 100 sigmoid, batch 60, 50,000 steps): "
              "(a) the BN net reaches a higher test accuracy sooner; (b, c) the 15/50/85th "
              "percentiles of a typical last-layer sigmoid's input drift in mean and spread "
              "without BN and stay steady with it.")
WU_HE_2018 = ("Wu & He 2018 (Group Norm), ResNet-50 on ImageNet, 8 GPUs: BN's validation error "
              "rises from 23.6 % at 32 images per GPU to 34.7 % at 2, while GN stays flat at "
              "about 24 %.")
RENORM_2017 = ("Ioffe 2017 (Batch Renormalization), microbatches of 2; a public CIFAR-100 "
               "reproduction: plain BN peaks at 0.187 validation accuracy and falls back to "
               "0.179, renorm reaches 0.254 and is still rising.")
WU_JOHNSON_2021 = ("Wu & Johnson 2021 (Rethinking 'Batch' in BatchNorm, §3): the EMA of batch "
                   "statistics lags the moving weights, so EMA statistics are inaccurate when "
                   "the weights move fast or training is short; PreciseBN recomputes them with "
                   "the weights fixed.")


def machine():
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores "
            f"(load average {load} when the report was written: a shared, busy machine)")


def _values(arm, key):
    return arm.final(key)


def _curve(histories, key):
    """(steps, mean, low, high) of ``key`` over seeds, at the steps every seed logged; low and
    high bound the 95% confidence interval of the mean (NaN, so no band, for one seed)."""
    per_step = {}
    for history in histories:
        for row in history:
            if row.get("step") is not None and row.get(key) is not None:
                per_step.setdefault(row["step"], []).append(row[key])
    steps = [s for s in sorted(per_step) if len(per_step[s]) == len(histories)]
    mean, half = np.array([mean_ci(per_step[s]) for s in steps], dtype=float).reshape(-1, 2).T
    return np.array(steps), mean, mean - half, mean + half


def _plot_curve(ax, histories, key, **style):
    steps, mean, low, high = _curve(histories, key)
    line, = ax.plot(steps, mean, **style)
    if len(histories) > 1:
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, lw=0)


def _by_name(arms):
    return {arm.name: arm for arm in arms if arm.trials}


# ------------------------------------------------------------------------------ ioffe-fig1
def _probed(trial):
    """(steps, p15, p50, p85, record) of the trial's one-layer probe (bnlab.tools.probe)."""
    record = trial.results.get("probe")
    if not record or len(record["layers"]) != 1:
        return None
    (values,) = record["layers"].values()
    return (np.asarray(record["steps"]), *np.asarray(values, dtype=float).T, record)


def ioffe_fig1(arms, save, confidence):
    arms = _by_name(arms)
    if not {"bn", "none"} <= set(arms):
        return []
    probed = {name: [p for p in map(_probed, arms[name].trials) if p] for name in ("bn", "none")}
    if not all(probed.values()):
        return []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, colour in (("bn", "tab:blue"), ("none", "tab:red")):
        _plot_curve(axes[0], arms[name].histories, "test_accuracy", color=colour,
                    label=arms[name].label)
    axes[0].set(title="(a) test accuracy", xlabel="step", ylabel="accuracy")
    axes[0].legend()
    for ax, name, letter in ((axes[1], "none", "b"), (axes[2], "bn", "c")):
        steps, *percentiles, _ = probed[name][0]
        for q, values, style in zip((15, 50, 85), percentiles, (":", "-", "--")):
            ax.plot(steps, values, color="black", ls=style, label=f"{q}th percentile")
        ax.set(title=f"({letter}) {arms[name].label}, seed {arms[name].trials[0].seed}",
               xlabel="step", ylabel="sigmoid input")
        ax.legend(fontsize=8)
    axes[2].sharey(axes[1])
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    figure = save(fig, "fig1.png")
    rows = []
    for name in ("bn", "none"):
        arm = arms[name]
        medians = [np.ptp(p50) for _, _, p50, _, _ in probed[name]]
        spread = [p85 - p15 for _, p15, _, p85, _ in probed[name]]
        rows.append([arm.label, str(len(arm.trials)),
                     fmt_ci(*mean_ci(_values(arm, "test_accuracy"), confidence)),
                     fmt_ci(*mean_ci(medians, confidence), 3),
                     fmt_ci(*mean_ci([s[min(1, len(s) - 1)] for s in spread], confidence), 3),
                     fmt_ci(*mean_ci([s[-1] for s in spread], confidence), 3)])
    return [
        ("h2", "Study: the shape of Ioffe & Szegedy's Fig. 1"),
        ("list", [machine(), "paper: " + IOFFE_2015,
                  "ours: Fashion-MNIST (harder than MNIST: lower accuracies), fewer steps, our "
                  f"stated learning rate; percentiles of {probe_setting(probed['bn'][0][-1])}; "
                  "(a): mean over seeds (band: 95% CI of the mean); (b, c): one network (the "
                  "first seed), as the paper shows one; the table: over seeds"]),
        ("img", figure, "test accuracy and the sigmoid input's percentiles against steps"),
        ("table", ["arm", "seeds", f"final test acc (mean ± {confidence:.0%} CI)",
                   "range of the median over training", "85th − 15th at the first logged step",
                   "85th − 15th at the end"], rows),
        ("p", "Steady means a small range of the median and an unchanged 85th − 15th spread."),
    ]


# ------------------------------------------------------------------------------ batch-size
def batch_size(arms, save, confidence):
    arms = _by_name(arms)
    if not arms:
        return []
    grid = {}  # the arms' declared group (the norm) and x (the batch size)
    for name, arm in arms.items():
        if arm.group is not None and arm.x is not None:
            grid.setdefault(arm.group, {})[int(arm.x)] = arm
    batches = sorted({b for per in grid.values() for b in per}, reverse=True)
    rows = []
    for b in batches:
        rows.append([str(b)] + [fmt_ci(*(100 * v for v in mean_ci(
            [1 - a for a in _values(grid[n][b], "test_accuracy")], confidence)), 1)
            if b in grid[n] else "—" for n in grid])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for norm, per in grid.items():
        bs = sorted(per)
        errors = [mean_ci([100 * (1 - a) for a in _values(per[b], "test_accuracy")], confidence)
                  for b in bs]
        ax.errorbar(bs, [m for m, _ in errors], yerr=[0 if np.isnan(h) else h for _, h in errors],
                    marker="o", capsize=3, label=norm)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.invert_xaxis()
    ax.set(xlabel="images per batch", ylabel="test error (%)",
           title=f"test error vs batch size (mean ± {confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = [("h2", "Study: test error against batch size (Wu & He 2018's table and figure)"),
           ("list", [machine(), "paper: " + WU_HE_2018,
                     "ours: Fashion-MNIST, a 3-conv-layer CNN on a CPU, one process (the batch "
                     "is the whole batch, not the per-GPU share), far fewer images seen; the "
                     "learning rate scaled linearly with the batch as in the paper"]),
           ("table", ["batch"] + [f"{n} test error % (mean ± {confidence:.0%} CI)" for n in grid],
            rows),
           ("img", save(fig, "error_vs_batch.png"), "test error against batch size per norm")]
    pair = [arms.get(n) for n in ("bn-b2", "renorm-b2")]
    if all(pair):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for arm in pair:
            _plot_curve(ax, arm.histories, "val_accuracy", label=arm.label)
        ax.set(xlabel="step (batch of 2)", ylabel="validation accuracy",
               title="microbatches of 2: BN vs Batch Renorm")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        table = []
        for arm in pair:
            curves = [[r["val_accuracy"] for r in h if r.get("val_accuracy") is not None]
                      for h in arm.histories]
            table.append([arm.label, fmt_ci(*mean_ci([max(c) for c in curves], confidence)),
                          fmt_ci(*mean_ci([c[-1] for c in curves], confidence)),
                          fmt_ci(*mean_ci([c[-1] - c[len(c) // 2] for c in curves],
                                          confidence))])
        out += [("h2", "Study: Batch Renorm at microbatches of 2 (Ioffe 2017)"),
                ("list", ["paper: " + RENORM_2017,
                          "ours: Fashion-MNIST, the study CNN, the same images and steps as "
                          "the table above"]),
                ("img", save(fig, "renorm_b2.png"), "validation accuracy against steps at batch 2"),
                ("table", ["arm", "peak val acc", "final val acc",
                           "final − midway val acc (still rising if > 0)"], table)]
    return out


# ------------------------------------------------------------------------------ precise-bn
def precise_bn(arms, save, confidence):
    rows, bars = [], []
    for arm in _by_name(arms).values():  # group: the momentum; x: the training's length
        momentum, length = arm.group, arm.x
        steps = arm.trials[0].config.get("steps")
        for label, key, errors in (
                (f"EMA, momentum {momentum}", "test_accuracy", True),
                (f"PreciseBN on the momentum-{momentum} weights", "precise_test_accuracy",
                 False)):
            accuracy = mean_ci(_values(arm, key), confidence)
            rows.append([length, str(steps), label, fmt_ci(*accuracy)]
                        + ([fmt_ci(*mean_ci(_values(arm, k), confidence), 3)
                            for k in ("ema_mean_error", "ema_variance_error")]
                           if errors else ["0 (the reference)", "0 (the reference)"]))
            bars.append((f"{length}\n{label.replace(' on the ', chr(10))}", accuracy))
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(range(len(bars)), [m for _, (m, _) in bars],
           yerr=[0 if np.isnan(h) else h for _, (_, h) in bars], capsize=4,
           color=["tab:orange" if "EMA" in n else "tab:green" for n, _ in bars])
    ax.set_xticks(range(len(bars)), [n for n, _ in bars], fontsize=7)
    low = min(m - (0 if np.isnan(h) else h) for _, (m, h) in bars)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set(ylabel="test accuracy", title=f"EMA vs PreciseBN statistics (mean ± {confidence:.0%} CI)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return [
        ("h2", "Study: EMA statistics vs PreciseBN"),
        ("list", [machine(), "paper: " + WU_JOHNSON_2021,
                  "ours: Fashion-MNIST, the study CNN on a CPU, short and long training at "
                  "batch 32; the momentum-0.99 and 0.9 arms train the same weights (same seed, "
                  "same batches; training-mode BN does not read the moving statistics), so "
                  "their PreciseBN rows should agree"]),
        ("table", ["training", "steps", "statistics", f"test acc (mean ± {confidence:.0%} CI)",
                   "EMA mean error (worst layer, in σ)", "EMA variance error (worst layer, "
                   "relative)"], rows),
        ("img", save(fig, "precise_bn.png"), "test accuracy with EMA and PreciseBN statistics"),
    ]


SECTIONS = {"ioffe-fig1": ioffe_fig1, "batch-size": batch_size, "precise-bn": precise_bn}


def for_experiment(spec):
    """The study sections of the experiment ``spec`` describes (a report spec: its name), as
    ``bnlab.results.report.write_report``'s ``sections``; None for an experiment without any."""
    name = spec["name"] if isinstance(spec, dict) else spec.name
    from bnlab.results import literature  # later studies' sections, built on this module

    return SECTIONS.get(name) or literature.SECTIONS.get(name)
