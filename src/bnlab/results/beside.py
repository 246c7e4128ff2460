"""The seed notebooks' printed figures beside bnlab's, for a report's table.

A figure (see bnlab.lab.seed_figures) is one number a notebook printed for one run: a history
metric at an epoch or step (``at``), or a final result (``at`` None). bnlab's side is the same
quantity over the arm's seeds, as mean ± CI (:func:`bnlab.results.stats.mean_ci`); parameter
counts are the same for every seed and are shown as one number.
"""

from __future__ import annotations

from typing import Any, Sequence

from bnlab.results.stats import fmt_ci, mean_ci

HEADER = ["arm", "figure", "notebook", "notebook's value (one run)",
          "bnlab (mean ± 95% CI over seeds)", "note"]


def _at(history: list[dict], x_key: str, at: int, metric: str) -> float | None:
    return next((r[metric] for r in history
                 if r.get(x_key) == at and r.get(metric) is not None), None)


def _bnlab_value(arm: Any, figure: dict, x_key: str, confidence: float) -> str:
    metric, at = figure["metric"], figure["at"]
    if metric.startswith("params_"):
        value = arm.first(metric)
        return f"{value:,}" if isinstance(value, int) else "—"
    if at is None:
        values = arm.final(metric)
    else:
        values = [v for h in arm.histories if (v := _at(h, x_key, at, metric)) is not None]
    if not values:
        return "—"
    return fmt_ci(*mean_ci(values, confidence)) + f" (n={len(values)})"


def _format(figure: dict) -> str:
    value = figure["value"]
    return f"{int(value):,}" if figure["metric"].startswith("params_") else f"{value:.4f}"


def rows(arms: Sequence[Any], figures: Sequence[dict], x_key: str,
         confidence: float = 0.95) -> list[list[str]]:
    """One row per figure: arm, what, notebook, its value, bnlab's, and a note on the data."""
    by_name = {a.name: a for a in arms}
    out = []
    for figure in figures:
        arm = by_name.get(figure["arm"])
        what = figure["metric"] + ("" if figure["at"] is None else f" at {x_key} {figure['at']}")
        datasets = {t.config.get("dataset") for t in arm.trials} if arm else set()
        ours = ", ".join(sorted(map(str, datasets)))
        note = ("" if not datasets or datasets == {figure["dataset"]} else
                f"the notebook ran on {figure['dataset']}, bnlab on {ours}: not comparable")
        bnlab = _bnlab_value(arm, figure, x_key, confidence) if arm and arm.trials else "—"
        out.append([figure["arm"], what, figure["notebook"], _format(figure), bnlab, note])
    return out
