"""Reports from the store: confidence intervals, learning curves, tables, Markdown and HTML.

The statistics (t intervals, Welch's difference, verdicts) live in :mod:`bnlab.results.stats`.
Every file is written whole or not at all (``paths.write_whole``), and only where
``bnlab.paths.Manifest`` allows: a file in the folder that bnlab did not write is refused, never
replaced. Text from an experiment (title, description, names) is escaped in both outputs:
HTML by Jinja2, Markdown by :func:`_md_text`, so neither carries raw HTML a viewer would run.
"""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from bnlab import paths  # noqa: E402
from bnlab.results import beside, claims as claim_verdicts, per_trial  # noqa: E402
from bnlab.results.stats import NO_TRIALS, curve, diff_ci, fmt_ci, mean_ci, verdict  # noqa: E402,F401
from bnlab.results.store import Store, Trial  # noqa: E402
ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")


# ------------------------------------------------------------------------------ gathering data
def _field(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a plain dict or from an object's attribute (experiment specs, arms)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _final_value(trial: Trial, history: list[dict], key: str) -> Any:
    value = trial.results.get(key)
    if value is None:
        value = next((r[key] for r in reversed(history) if r.get(key) is not None), None)
    return value


@dataclass
class Arm:
    name: str
    label: str
    trials: list[Trial] = field(default_factory=list)
    histories: list[list[dict]] = field(default_factory=list)
    # the spec's ``group`` and ``x`` (what a study's figures plot the arm as), when it has them
    group: str | None = None
    x: Any = None

    def final(self, key: str) -> list[float]:
        """Per seed that has it: ``results[key]``, else the last value of ``key`` in the history."""
        values = (_final_value(t, h, key) for t, h in zip(self.trials, self.histories))
        return [float(v) for v in values if v is not None]

    def first(self, key: str) -> Any:
        return next((t.results[key] for t in self.trials if t.results.get(key) is not None), None)


def _arms(store: Store, experiment: Any, trials: Sequence[Trial] | None = None) -> list[Arm]:
    """The experiment's arms in spec order (plus any stored arm the spec lacks), with trials:
    ``trials`` when given (a selection, e.g. one run's settings), else every finished one."""
    specs = [{"name": a} if isinstance(a, str) else a for a in _field(experiment, "arms") or []]
    arms = {_field(a, "name"): Arm(_field(a, "name"), _field(a, "label") or _field(a, "name"),
                                   group=_field(a, "group"), x=_field(a, "x"))
            for a in specs}
    if trials is None:
        trials = store.trials(_field(experiment, "name"))
    for trial in trials:
        arm = arms.setdefault(trial.arm, Arm(trial.arm, f"{trial.arm} (not in the spec)"))
        arm.trials.append(trial)
        arm.histories.append(store.history(trial.id))
    return list(arms.values())


class Proportion(NamedTuple):
    """(mean, half-width) of an accuracy. An accuracy lies in [0, 1], so where the t interval
    mean ± half-width reaches past it (few seeds, tiny test sets) it is shown clipped:
    ``mean [max(0, mean − hw), min(1, mean + hw)]``."""
    mean: float
    half_width: float


def _summary(arm: Arm, confidence: float = 0.95) -> dict:
    spe = arm.final("seconds_per_epoch")
    return {"arm": arm.name, "label": arm.label, "n": len(arm.trials),
            "val_accuracy": Proportion(*mean_ci(arm.final("val_accuracy"), confidence)),
            "test_accuracy": Proportion(*mean_ci(arm.final("test_accuracy"), confidence)),
            "seconds_per_epoch": float(np.mean(spe)) if spe else None}


def summary_rows(store: Store, experiment: Any, confidence: float = 0.95,
                 trials: Sequence[Trial] | None = None) -> list[dict]:
    """Per arm: n, final val accuracy (mean, half-width), test accuracy, mean seconds/epoch."""
    return [_summary(arm, confidence) for arm in _arms(store, experiment, trials)]


_HEADERS = {"n": "seeds", "val_accuracy": "val acc (mean ± 95% CI)",
            "test_accuracy": "test acc (mean ± 95% CI)", "seconds_per_epoch": "s/epoch"}


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, Proportion) and not math.isnan(value.half_width) \
            and not 0.0 <= value.mean - value.half_width <= value.mean + value.half_width <= 1.0:
        low, high = max(0.0, value.mean - value.half_width), min(1.0, value.mean + value.half_width)
        return f"{value.mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    if isinstance(value, tuple) and len(value) == 2:
        return fmt_ci(*value)
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def text_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of dict rows (columns from the first row); (mean, hw) tuples as m ± hw."""
    if not rows:
        return "(no rows)"
    keys = [k for k in rows[0] if k != "label"]
    cells = [[_HEADERS.get(k, k) for k in keys]] + [[_cell(r.get(k), 2 if "second" in k else 4)
                                                     for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


format_table = text_table


# ------------------------------------------------------------------------------------- figures
def _colours(arms: list[Arm]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {arm.name: cmap(i % 10) for i, arm in enumerate(arms)}


def _pick(arms: list[Arm], candidates: Sequence[str]) -> str | None:
    present = {k for arm in arms for h in arm.histories for r in h for k in r}
    return next((c for c in candidates if c in present), None)


def _curves_figure(arms: list[Arm], x_axis: str):
    step_based = x_axis == "step" or _pick(arms, ["epoch"]) is None
    x_key = "step" if step_based else "epoch"
    train_prefix = ("batch_", "") if step_based else ("", "batch_")
    acc = [p + k for p in train_prefix for k in ACCURACY_KEYS]
    train = {"loss": _pick(arms, [p + "loss" for p in train_prefix]), "accuracy": _pick(arms, acc)}
    val = {"loss": _pick(arms, ["val_loss"]), "accuracy": _pick(arms, ["val_" + k for k in
                                                                     ACCURACY_KEYS])}
    colours = _colours(arms)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True, sharey="row")
    for row, quantity in enumerate(("loss", "accuracy")):
        for col, (kind, metric) in enumerate((("training", train[quantity]),
                                              ("validation", val[quantity]))):
            ax = axes[row, col]
            ax.set_title(f"{kind} {quantity}" + (f"  [{metric}]" if metric else ""))
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == 1:
                ax.set_xlabel(x_key)
            if col == 0:
                ax.set_ylabel(quantity)
            drawn = False
            for arm in arms if metric else []:
                xs, mean, low, high = curve(arm.histories, x_key, metric)
                if not len(xs):
                    continue
                drawn = True
                c = colours[arm.name]
                ax.plot(xs, mean, color=c, lw=1.8, marker="o" if len(xs) <= 30 else None,
                        ms=3.5, label=f"{arm.name} (n={len(arm.trials)})")
                if len(arm.trials) > 1:
                    ax.fill_between(xs, low, high, color=c, alpha=0.18, lw=0)
            if not drawn:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h), labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=False)
    fig.text(0.5, 0.005, "line: mean over seeds; band: 95% confidence interval of the mean",
             ha="center",
             fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    return fig


FINAL_METRICS = (("val_accuracy", "final validation accuracy"), ("test_accuracy", "test accuracy"),
                 ("single_sample_accuracy", "single-sample test accuracy"))


def _final_figure(arms: list[Arm], confidence: float = 0.95):
    metrics = [(k, t) for k, t in FINAL_METRICS if any(arm.final(k) for arm in arms)]
    fig, axes = plt.subplots(1, max(len(metrics), 1), squeeze=False,
                             figsize=(1.2 + max(len(metrics), 1) * (1.4 + 1.1 * len(arms)), 4.6))
    colours = _colours(arms)
    for ax, (key, title) in zip(axes[0], metrics):
        for i, arm in enumerate(arms):
            values = arm.final(key)
            if not values:
                ax.text(i, 0.5, "no value" if arm.trials else NO_TRIALS, ha="center",
                        transform=ax.get_xaxis_transform(),
                        rotation=90, color="grey", fontsize=8)
                continue
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(i - 0.1 + np.asarray(jitter), values, color=colours[arm.name], alpha=0.75,
                       s=28, zorder=3)
            mean, hw = mean_ci(values, confidence)
            ax.errorbar(i + 0.2, mean, yerr=None if math.isnan(hw) else hw, fmt="D",
                        color="black", ms=5, capsize=5, zorder=4)
            ax.annotate(f"{mean:.4f}" + (" (n=1)" if math.isnan(hw) else ""), (i + 0.2, mean),
                        xytext=(7, 0),
                        textcoords="offset points", va="center", fontsize=8)
        ax.set_xticks(range(len(arms)), [a.name for a in arms],
                      rotation=20 if len(arms) > 3 else 0, ha="right" if len(arms) > 3 else "center")
        ax.set_xlim(-0.6, len(arms) - 0.2)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    if not metrics:
        axes[0, 0].text(0.5, 0.5, NO_TRIALS, transform=axes[0, 0].transAxes, ha="center")
    axes[0, 0].set_ylabel("accuracy")
    fig.legend(handles=[Line2D([], [], marker="o", ls="", color="grey", label="one seed"),
                        Line2D([], [], marker="D", ls="-", color="black",
                               label=f"mean, bar: {confidence:.0%} CI")],
               loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def probe_setting(record: Mapping) -> str:
    """How a probe record (bnlab.tools.probe) was taken, in words."""
    unit = "all values" if record.get("unit") is None else f"unit {record['unit']}"
    return (f"{unit} of the layer's input on the first {record.get('images', 256)} "
            f"{record.get('split', 'train')} images, {record.get('mode', 'training')} mode, at "
            f"step 0 and every {record['every']} steps")


def _probe_figure(arms: list[Arm]):
    """The activation probe (bnlab.tools.probe) of each arm's first seed that has one: per probed
    layer, the median of its input over training steps, between the 15th and 85th percentiles
    (Ioffe & Szegedy 2015, Figure 1(b, c))."""
    probes = {arm.name: next(t.results["probe"] for t in arm.trials if t.results.get("probe"))
              for arm in arms if any(t.results.get("probe") for t in arm.trials)}
    keys = list(dict.fromkeys(k for p in probes.values() for k in p["layers"]))
    fig, axes = plt.subplots(1, len(keys), squeeze=False, figsize=(1 + 3.6 * len(keys), 3.8))
    colours = _colours(arms)
    for ax, key in zip(axes[0], keys):
        for name, probe in probes.items():
            if key not in probe["layers"]:
                continue
            low, mid, high = np.asarray(probe["layers"][key]).T
            ax.plot(probe["steps"], mid, color=colours[name], label=name)
            ax.fill_between(probe["steps"], low, high, color=colours[name], alpha=0.2)
        ax.set_title(f"input of layer {key}", fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("15th / 50th / 85th percentile")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the document
def _comparison_rows(arms: list[Arm], comparisons: Sequence[Any], confidence: float) -> list[list]:
    by_name = {a.name: a for a in arms}
    rows = []
    for comp in comparisons:
        a, b = _field(comp, "a"), _field(comp, "b")
        question = _field(comp, "question") or f"{a} vs {b}"
        arm_a, arm_b = by_name.get(a), by_name.get(b)
        if not (arm_a and arm_a.trials and arm_b and arm_b.trials):
            missing = ", ".join(n for n, x in ((a, arm_a), (b, arm_b)) if not (x and x.trials))
            rows.append([question, f"{a} − {b}", "—", "—", f"{NO_TRIALS} for {missing}"])
            continue
        for key, metric in (("test_accuracy", "test accuracy"),
                            ("val_accuracy", "final val accuracy")):
            va, vb = arm_a.final(key), arm_b.final(key)
            if va or vb:
                d, hw = diff_ci(va, vb, confidence)
                text = "—" if math.isnan(d) else (f"{d:+.4f}" if math.isnan(hw)
                                                   else f"{d:+.4f} ± {hw:.4f}")
                rows.append([question, f"{a} − {b}", metric, text,
                             verdict(d, hw, a, b, metric, confidence)])
    return rows


def _describe_runs(trials: list[Trial]) -> list[str]:
    def distinct(getter):
        counts: dict[str, int] = {}
        for t in trials:
            value = getter(t)
            if value is not None:
                counts[str(value)] = counts.get(str(value), 0) + 1
        return ", ".join(f"{v} ({n} trials)" if len(counts) > 1 else v for v, n in counts.items())
    items = {"Keras backend": distinct(lambda t: t.results.get("backend") or t.config.get("backend")),
             "execution path (produced these numbers)": distinct(lambda t: t.results.get("path") or t.config.get("path")
                                        or t.config.get("executor")),
             "dataset": distinct(lambda t: t.config.get("dataset"))}
    lines = [f"{k}: {v}" for k, v in items.items() if v]
    if any(t.results.get("seeds_together", 1) > 1 for t in trials):
        lines.append("seconds per epoch and training seconds of the jax-vmap path are those of "
                     "all the seeds of an arm, trained together as one program")
    return lines


def _config_rows(trials: list[Trial]) -> list[list[str]]:
    keys = sorted({k for t in trials for k in t.config} - {"experiment", "arm", "seed"})
    rows = []
    for key in keys:
        by_arm: dict[str, set] = {}
        for t in trials:
            value = t.config.get(key)
            by_arm.setdefault(t.arm, set()).add(value if isinstance(value, str)
                                                else json.dumps(value, sort_keys=True))
        values = set().union(*by_arm.values())
        rows.append([key, values.pop() if len(values) == 1 else "; ".join(
            f"{arm}: {' | '.join(sorted(v))}" for arm, v in by_arm.items())])
    return rows


def _header(store: Store, experiment: Any, arms: list[Arm]) -> list[tuple]:
    name, trials = _field(experiment, "name"), [t for arm in arms for t in arm.trials]
    out: list[tuple] = [("h1", _field(experiment, "title") or name)]
    if _field(experiment, "description"):
        out.append(("p", _field(experiment, "description")))
    items = [f"experiment: {name}", f"generated: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"]
    if _field(experiment, "seed_source"):
        items.append(f"seed notebook(s): {_field(experiment, 'seed_source')}")
    items += [f"arm {a.name}: " + (f"{len(a.trials)} seed{'s' * (len(a.trials) > 1)} (" + ", ".join(
        str(t.seed) for t in a.trials) + ")" if a.trials else NO_TRIALS) for a in arms]
    items += _describe_runs(trials)
    items += [f"diverged: {t.arm} seed {t.seed} (training loss not finite from "
              f"{t.results['diverged']}); its results are in the tables" for t in trials
              if t.results.get("diverged")]
    unfinished = [t for t in store.trials(name, status=None) if t.status != "finished"]
    if unfinished:
        items.append(f"not included: {len(unfinished)} unfinished trial(s), listed below")
    out.append(("list", items))
    if not trials:
        out.append(("p", f"This experiment has {NO_TRIALS}: nothing to plot or compare yet."))
    return out


def _arm_table(arms: list[Arm], confidence: float) -> tuple:
    ci = f"mean ± {confidence:.0%} CI"
    single = any(a.final("single_sample_accuracy") for a in arms)
    head = ["arm", "label", "seeds", "params total", "trainable", "non-trainable",
            f"final val acc ({ci})", f"test acc ({ci})", "s/epoch (mean)"]
    rows = []
    for arm in arms:
        s = _summary(arm, confidence)
        params = [arm.first(k) for k in ("params_total", "params_trainable", "params_non_trainable")]
        rows.append([arm.name, arm.label, str(s["n"])]
                    + [f"{p:,}" if isinstance(p, int) else _cell(p) for p in params]
                    + [_cell(s["val_accuracy"]) if arm.trials else NO_TRIALS,
                       _cell(s["test_accuracy"]), _cell(s["seconds_per_epoch"], 2)]
                    + ([_cell(mean_ci(arm.final("single_sample_accuracy"), confidence))]
                       if single else []))
    return ("table", head + ([f"single-sample acc ({ci})"] if single else []), rows)


def _predictions(arms: list[Arm], count: int = 3) -> list[tuple]:
    rows = [[arm.name, str(arm.trials[0].seed), str(p.get("index", i)), str(p.get("label")),
             str(p.get("predicted")),
             _cell(p.get("probability", max(p.get("probabilities") or [math.nan]))),
             "yes" if p.get("label") == p.get("predicted") else "no"]
            for arm in arms if arm.trials
            for i, p in enumerate((arm.trials[0].results.get("predictions") or [])[:count])]
    return [("h2", "Predictions on the first test images"),
            ("p", "First seed of each arm; probability of the predicted class."),
            ("table", ["arm", "seed", "image", "true label", "predicted", "probability",
                       "correct"], rows)] if rows else []


def _trial_tables(store: Store, experiment: Any, arms: list[Arm]) -> list[tuple]:
    out: list[tuple] = []
    rows = [[a.name, str(t.seed), t.id]
            + [_cell(_final_value(t, h, k), d) for k, d in
               (("val_accuracy", 4), ("test_accuracy", 4), ("seconds", 1))]
            + [t.finished_at or "—"] for a in arms for t, h in zip(a.trials, a.histories)]
    if rows:
        out += [("h2", "All trials"), ("table", ["arm", "seed", "trial id", "final val acc",
                                                 "test acc", "training s", "finished at"], rows)]
    unfinished = [t for t in store.trials(_field(experiment, "name"), status=None)
                  if t.status != "finished"]
    if unfinished:
        out += [("h2", "Unfinished trials (not included above)"),
                ("table", ["arm", "seed", "trial id", "status", "error"],
                 [[t.arm, str(t.seed), t.id, t.status, t.error or ""] for t in unfinished])]
    if rows:
        out += [("h2", "Configuration"),
                ("table", ["key", "value"], _config_rows([t for a in arms for t in a.trials]))]
    return out


def _blocks(store: Store, experiment: Any, arms: list[Arm], figures: dict[str, str],
            confidence: float, study: Sequence[tuple] = ()) -> list[tuple]:
    """The report as a list of blocks (h1, h2, p, list, table, img, code) for _md and _html;
    ``study``: a study's own blocks (bnlab.results.studies), right after the header."""
    header = _header(store, experiment, arms)
    opening = [b for b in header if b[0] != "list"]
    out = opening + _claims_blocks(experiment, arms) + header[len(opening):] + list(study)
    if "curves" in figures:
        out += [("h2", "Learning curves"), ("img", figures["curves"], "learning curves per arm")]
    out += [("h2", "Per-arm results"), _arm_table(arms, confidence)]
    if "final_accuracy" in figures:
        out.append(("img", figures["final_accuracy"], "final accuracy per arm and seed"))
    if "probe" in figures:
        records = [t.results["probe"] for a in arms for t in a.trials if t.results.get("probe")]
        settings = "; ".join(dict.fromkeys(probe_setting(r) for r in records))
        out += [("h2", "Activation distributions"),
                ("p", f"The probed layers' inputs ({settings}): median, and 15th to 85th "
                      "percentile, for each arm's first seed."),
                ("img", figures["probe"], "activation percentiles over training")]
    figures_of_seeds = _field(experiment, "seed_figures") or []
    if figures_of_seeds:
        x_key = _field(experiment, "x_axis") or "epoch"
        out += [("h2", "Beside the seed notebooks"),
                ("p", "What the seed notebooks printed (one run each), beside the same quantity "
                      "here over seeds."),
                ("table", beside.HEADER, beside.rows(arms, figures_of_seeds, x_key, confidence))]
    comparisons = _field(experiment, "comparisons", []) or []
    if comparisons:
        out += [("h2", "Comparisons"), ("p", f"Welch's {confidence:.0%} interval for the "
                                              "difference of the means over seeds."),
                ("table", ["question", "difference", "metric", "value", "verdict"],
                 _comparison_rows(arms, comparisons, confidence))]
    out += _predictions(arms) + _trial_tables(store, experiment, arms)
    command = _field(experiment, "command")
    return out + [("h2", "Reproduce"), ("code", command) if command else
                  ("p", "The command was not recorded; each trial's config is in the store.")]


def _md_text(text: Any) -> str:
    """Text as Markdown shows it, never as HTML: ``<``, ``>`` and ``&`` as entities (Markdown
    passes raw HTML through), on one line."""
    return html.escape(" ".join(str(text).splitlines()), quote=False)


def _claims_blocks(experiment: Any, arms: list[Arm]) -> list[tuple]:
    """"Did the paper's shape appear?": each claim's verdict on paired seeds (results.claims)."""
    declared = _field(experiment, "claims") or []
    if not declared or not any(arm.trials for arm in arms):
        return []
    head, rows = claim_verdicts.table(claim_verdicts.judge_arms(declared, arms))
    return [("h2", "Did the paper's shape appear?"), ("table", head, rows),
            ("p", claim_verdicts.TEST_TEXT + " Every trial's final metrics are in trials.csv "
                  "beside this report.")]


def _md(blocks: list[tuple]) -> str:
    def cell(s: str) -> str:
        return _md_text(s).replace("|", "\\|")
    parts = []
    for kind, *args in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"{'#' * int(kind[1])} {_md_text(args[0])}")
        elif kind == "p":
            parts.append(_md_text(args[0]))
        elif kind == "list":
            parts.append("\n".join(f"- {_md_text(item)}" for item in args[0]))
        elif kind == "code":
            parts.append(f"```\n{args[0]}\n```")
        elif kind == "img":
            parts.append(f"![{args[1]}]({args[0]})")
        elif kind == "table":
            head, rows = args
            parts.append("\n".join(["| " + " | ".join(map(cell, head)) + " |",
                                    "|" + "---|" * len(head)]
                                   + ["| " + " | ".join(map(cell, r)) + " |" for r in rows]))
    return "\n\n".join(parts) + "\n"


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("bnlab.results", "templates"),
                                autoescape=True, keep_trailing_newline=True,
                                undefined=jinja2.StrictUndefined)


def _html(blocks: list[tuple], title: str) -> str:
    """The blocks through templates/report.html.j2 (Jinja2, every value escaped)."""
    return _TEMPLATES.get_template("report.html.j2").render(blocks=blocks, title=title)


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write ``path`` whole or not at all, if its folder's manifest allows (bnlab.paths)."""
    paths.Manifest(path.parent).write(path.name, lambda temporary: temporary.write_bytes(data))
    return path


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return _write_atomic(path, buffer.getvalue())


REPORT_FILES = ("report.md", "report.html", "trials.csv", "curves.png", "final_accuracy.png",
                "probe.png")


def check_folder(out_dir: str | Path) -> None:
    """Refuse (PathError), before anything is trained or written, a report folder that holds a
    report file bnlab did not write."""
    if Path(out_dir).is_dir():
        paths.Manifest(out_dir).check(REPORT_FILES)


def write_report(store: Store, experiment: Any, out_dir: str | Path,
                 confidence: float = 0.95, trials: Sequence[Trial] | None = None,
                 sections: Any = None) -> dict[str, Path]:
    """Write report.md, report.html, trials.csv, curves.png and final_accuracy.png for
    ``experiment`` into ``out_dir``; return {"markdown", "html", "csv", "curves",
    "final_accuracy"} → path (the figures only when there is at least one finished trial; stale
    figures are then removed). ``trials`` selects the finished trials to report (default: all of
    the experiment's). ``sections(arms, save, confidence) -> [blocks]``: a study's own tables
    and figures (``bnlab.results.studies.sections``), put after the header; ``save(fig, name)``
    writes a figure beside the report and returns its file name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_folder(out)
    arms = _arms(store, experiment, trials)
    written: dict[str, Path] = {}
    figures = {"curves": "curves.png", "final_accuracy": "final_accuracy.png"}
    if any(arm.trials for arm in arms):
        x_axis = _field(experiment, "x_axis") or "epoch"
        written["curves"] = _save_figure(_curves_figure(arms, x_axis), out / figures["curves"])
        written["final_accuracy"] = _save_figure(_final_figure(arms, confidence),
                                                 out / figures["final_accuracy"])
        if any(t.results.get("probe") for arm in arms for t in arm.trials):
            figures["probe"] = "probe.png"
            written["probe"] = _save_figure(_probe_figure(arms), out / figures["probe"])
    else:
        for name in figures.values():
            paths.Manifest(out).remove(name)
        figures = {}
    study = sections(arms, lambda fig, name: _save_figure(fig, out / name).name,
                     confidence) if sections else []
    metrics = claim_verdicts.metrics_of(_field(experiment, "claims") or [])
    written["csv"] = _write_atomic(out / "trials.csv",
                                   per_trial.csv_text(arms, metrics).encode("utf-8"))
    blocks = _blocks(store, experiment, arms, figures, confidence, study)
    title = _field(experiment, "title") or _field(experiment, "name")
    written["markdown"] = _write_atomic(out / "report.md", _md(blocks).encode("utf-8"))
    written["html"] = _write_atomic(out / "report.html", _html(blocks, title).encode("utf-8"))
    return written
