"""The studies' own report sections: the paper-shaped tables and figures, the paper's numbers
beside ours, and the differences of setting (the studies are bnlab.lab.studies).

    SECTIONS[name](arms, save, confidence) -> [blocks]

``bnlab.results.sections.for_experiment`` looks a study's sections up; the caller (``bnlab.cli``)
passes them to ``bnlab.results.report.write_report``; this
module imports the report, never the other way. What a section plots comes from the study's
declaration: an arm's ``group`` (its curve) and ``x`` (its place on the axis), never its name.
``arms``: ``bnlab.results.report.Arm`` (trials and histories per arm); ``save(fig, file name)``
writes a figure next to the report and returns its name. Every number is mean ± the 95% t
interval over seeds (``bnlab.results.stats.mean_ci``); an arm's curve is the generic report's
(``bnlab.results.stats.curve``): the mean over seeds with the 95% interval of the mean as its band.
"""

from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np

from bnlab.results import claims
from bnlab.results.host import machine
from bnlab.results.report import probe_setting
from bnlab.results.stats import curve, fmt_ci, mean_ci

IOFFE_2015 = ("Ioffe & Szegedy 2015, Fig. 1 (MNIST, 3 × 100 sigmoid, batch 60, 50,000 steps): "
              "(a) the BN net reaches a higher test accuracy sooner; (b, c) the 15/50/85th "
              "percentiles of a typical last-layer sigmoid's input drift in mean and spread "
              "without BN and stay steady with it.")
WU_HE_2018 = ("Wu & He 2018 (Group Norm), ResNet-50 on ImageNet, 8 GPUs: BN's validation error "
              "rises from 23.6 % at 32 images per GPU to 34.7 % at 2, while GN stays flat at "
              "about 24 %.")
RENORM_2017 = ("Ioffe 2017 (Batch Renormalization) §4.3, Inception v3 on ImageNet with "
               "microbatches of 4: BN 74.2 %, renorm 76.5 % validation accuracy (78.3 % with "
               "BN over 32); rmax and dmax relaxed from 1 and 0 after 5,000 steps.")
WU_JOHNSON_2021 = ("Wu & Johnson 2021 (Rethinking 'Batch' in BatchNorm, §3): the EMA of batch "
                   "statistics lags the moving weights, so EMA statistics are inaccurate when "
                   "the weights move fast or training is short; PreciseBN recomputes them with "
                   "the weights fixed.")


def _values(arm, key):
    return arm.final(key)


def _plot_curve(ax, histories, key, **style):
    steps, mean, low, high = curve(histories, "step", key)
    line, = ax.plot(steps, mean, **style)
    if len(histories) > 1:
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, lw=0)


def _by_name(arms):
    return {arm.name: arm for arm in arms if arm.trials}


def _grid(arms):
    """{group: {x: arm}} from the arms' declared group and x (those with trials)."""
    grid = {}
    for arm in arms:
        if arm.trials and arm.group is not None and arm.x is not None:
            grid.setdefault(arm.group, {})[arm.x] = arm
    return grid


def _ci(arm, key, confidence, scale=1.0, digits=4):
    values = [scale * v for v in _values(arm, key)] if arm else []
    return fmt_ci(*mean_ci(values, confidence), digits) if values else "—"


def _metric(arm, metric):
    """One value per seed of a claims metric (bnlab.results.claims.metric_value)."""
    return [v for v in (claims.metric_value(t.results, h, metric)
                        for t, h in zip(arm.trials, arm.histories)) if v is not None]


# ------------------------------------------------------------------------------ ioffe-fig1
def _probed(trial):
    """(steps, p15, p50, p85, record) of unit 0 of the trial's one-layer probe."""
    record = trial.results.get("probe")
    if not record or len(record["layers"]) != 1:
        return None
    (values,) = record["layers"].values()
    return (np.asarray(record["steps"]), *np.asarray(values, dtype=float).T, record)


def ioffe_fig1(arms, save, confidence):
    grid = _grid(arms)  # group: the initialization; x: "BN" or "none"
    inits = [init for init, per in grid.items() if {"BN", "none"} <= set(per)]
    if not inits:
        return []
    fig, axes = plt.subplots(len(inits), 3, figsize=(14, 4 * len(inits)), squeeze=False)
    rows = []
    for row, init in zip(axes, inits):
        pair = grid[init]
        for x, colour in (("BN", "tab:blue"), ("none", "tab:red")):
            _plot_curve(row[0], pair[x].histories, "test_accuracy", color=colour,
                        label=pair[x].label)
        row[0].set(title=f"(a) test accuracy, {init} init", xlabel="step", ylabel="accuracy")
        row[0].legend(fontsize=8)
        for ax, x, letter in ((row[1], "none", "b"), (row[2], "BN", "c")):
            probed = _probed(pair[x].trials[0])
            if probed is None:
                continue
            steps, *percentiles, _ = probed
            for q, values, style in zip((15, 50, 85), percentiles, (":", "-", "--")):
                ax.plot(steps, values, color="black", ls=style, label=f"{q}th percentile")
            ax.set(title=f"({letter}) {pair[x].label}, seed {pair[x].trials[0].seed}, unit 0",
                   xlabel="step", ylabel="sigmoid input")
            ax.legend(fontsize=8)
        for x in ("BN", "none"):
            arm = pair[x]
            rows.append([arm.label, str(len(arm.trials)),
                         _ci(arm, "test_accuracy", confidence)]
                        + [fmt_ci(*mean_ci(_metric(arm, m), confidence), 0)
                           for m in ("steps_to:test_accuracy:0.8",
                                     "steps_to:test_accuracy:0.85")]
                        + [fmt_ci(*mean_ci(_metric(arm, "median_drift"), confidence), 3)])
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    figure = save(fig, "fig1.png")
    first = next((p for a in arms for p in map(_probed, a.trials) if p), None)
    setting = probe_setting(first[-1]) if first else "the probe"
    return [
        ("h2", "Study: the shape of Ioffe & Szegedy's Fig. 1"),
        ("list", [machine(), "paper: " + IOFFE_2015,
                  "ours: Fashion-MNIST (harder than MNIST: lower accuracies), 6,000 steps, both "
                  f"the paper's small Gaussian and Glorot's initialization; percentiles of "
                  f"{setting}, every unit recorded; (a): mean over seeds (band: 95% CI of the "
                  "mean); (b, c): unit 0 of one network (the first seed), as the paper shows "
                  "one; the table: over seeds"]),
        ("img", figure, "test accuracy and the sigmoid input's percentiles against steps"),
        ("table", ["arm", "seeds", f"final test acc (mean ± {confidence:.0%} CI)",
                   "steps to 80 %", "steps to 85 %",
                   "median drift (mean over units of the range of each unit's median)"], rows),
        ("p", "A seed that never reaches a threshold counts at its last logged step, so those "
              "means are lower bounds. Steady means a small drift of the median."),
    ]


# ------------------------------------------------------------------------------ batch-size
# the batch-size study's rows: (label, the arms' group, metric)
BATCH_ROWS = (("BN, EMA statistics", "bn", "test_accuracy"),
              ("BN, PreciseBN", "bn", "precise_test_accuracy"),
              ("BN, test batches of N", "bn", "batch_test_accuracy"),
              ("Batch Renorm, EMA", "renorm", "test_accuracy"),
              ("GroupNorm", "group", "test_accuracy"),
              ("LayerNorm", "layer", "test_accuracy"))


def batch_size(arms, save, confidence):
    grid = _grid(arms)  # group: the norm; x: N
    if not grid:
        return []
    sizes = sorted({int(n) for per in grid.values() for n in per}, reverse=True)
    lines = [(label, grid[group], key) for label, group, key in BATCH_ROWS if group in grid]
    table = [[label] + [_ci(per.get(n), key, confidence, 100, 1) if per.get(n) else "—"
                        for n in sizes] for label, per, key in lines]
    for row in table:  # accuracy → error
        row[1:] = [_error(cell) for cell in row[1:]]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for label, per, key in lines:
        ns = sorted(int(n) for n in per if _values(per[n], key))
        if not ns:
            continue
        errors = [mean_ci([100 * (1 - a) for a in _values(per[n], key)], confidence) for n in ns]
        ax.errorbar(ns, [m for m, _ in errors], yerr=[0 if np.isnan(h) else h for _, h in errors],
                    marker="o", capsize=3, label=label, ls="--" if "BN," in label and
                    "EMA" not in label else "-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.invert_xaxis()
    ax.set(xlabel="N: images a BN layer normalizes over (the gradient is over 8·N)",
           ylabel="test error (%)", title=f"test error against N (mean ± {confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [("h2", "Study: test error against N (Wu & He 2018's Table 3 and Fig. 1)"),
            ("list", [machine(), "paper: " + WU_HE_2018, "paper: " + RENORM_2017,
                      "ours: Fashion-MNIST, a 3 × 100 MLP with the norm before each ReLU, the "
                      "gradient over 8·N with BN over each N (Ghost BN), the learning rate "
                      "0.1 · N/32 and the same 2 epochs with a step decay at every N"]),
            ("table", ["test error % (mean ± 95% CI)"] + [f"N = {n}" for n in sizes], table),
            ("img", save(fig, "error_vs_batch.png"), "test error against N per norm")]


def _error(cell):
    """'85.2 ± 1.0' (accuracy, %) → '14.8 ± 1.0' (error, %)."""
    if cell == "—" or "±" not in cell:
        return cell
    mean, half = cell.split(" ± ")
    return f"{100 - float(mean):.1f} ± {half}"


# ------------------------------------------------------------------------------ precise-bn
PRECISE_KEYS = (("EMA", "test_accuracy"), ("bias-corrected EMA", "debiased_test_accuracy"),
                ("PreciseBN, 320", "precise_test_accuracy_320"),
                ("PreciseBN, 3,200", "precise_test_accuracy"),
                ("PreciseBN, 32,000", "precise_test_accuracy_32000"))


def precise_bn(arms, save, confidence):
    ran = [arm for arm in arms if arm.trials]
    if not ran:
        return []
    rows, bars = [], []
    for arm in ran:
        config = arm.trials[0].config
        rows.append([arm.label, str(config.get("steps")), str(config["optimizer"]["learning_rate"]),
                     str(len(arm.trials))]
                    + [_ci(arm, key, confidence) for _, key in PRECISE_KEYS]
                    + [_ci(arm, k, confidence, digits=3)
                       for k in ("ema_mean_error", "ema_variance_error")])
        bars.append((arm.label, [mean_ci(_values(arm, key), confidence)
                                 for _, key in PRECISE_KEYS]))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(PRECISE_KEYS)
    for j, (label, _) in enumerate(PRECISE_KEYS):
        means = [b[1][j][0] for b in bars]
        halves = [0 if np.isnan(b[1][j][1]) else b[1][j][1] for b in bars]
        ax.bar(np.arange(len(bars)) + j * width, means, width, yerr=halves, capsize=2,
               label=label)
    ax.set_xticks(np.arange(len(bars)) + 0.4 - width / 2, [b[0] for b in bars], fontsize=7)
    finite = [b[1][j][0] for b in bars for j in range(len(PRECISE_KEYS))
              if not np.isnan(b[1][j][0])]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.05), None)
    ax.set(ylabel="test accuracy", title=f"the same weights, five statistics "
                                         f"(mean ± {confidence:.0%} CI)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return [
        ("h2", "Study: EMA statistics, bias-corrected EMA and PreciseBN"),
        ("list", [machine(), "paper: " + WU_JOHNSON_2021,
                  "ours: Fashion-MNIST, the 3 × 100 MLP with BN before each ReLU, batch 32; "
                  "every column of a row evaluates the same trained weights (training-mode BN "
                  "never reads its moving statistics); the bias-corrected EMA divides out the "
                  "weight 0.99ᵗ still on the EMA's initial (0, 1), so what it leaves is lag"]),
        ("table", ["arm", "steps", "learning rate", "seeds"]
         + [f"test acc, {label}" for label, _ in PRECISE_KEYS]
         + ["EMA mean error (worst layer, in σ)", "EMA variance error (worst layer, relative)"],
         rows),
        ("img", save(fig, "precise_bn.png"), "test accuracy with each kind of statistics"),
    ]


SECTIONS = {"ioffe-fig1": ioffe_fig1, "batch-size": batch_size, "precise-bn": precise_bn}
