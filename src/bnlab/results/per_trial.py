"""Every finished trial's final metrics as one CSV, so a verdict can be recomputed without bnlab.

    csv_text(arms, metrics=()) -> str

One row per trial: ``trial`` (its id), ``arm``, ``seed``, then every scalar in its results (numbers
and short strings; lists and tables such as the probe's are left out) and ``metrics``, the derived
metrics the experiment's claims read (``bnlab.results.claims.metric_value``: e.g.
``steps_to:test_accuracy:0.85``), in the order the trials are listed.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from bnlab.results.claims import metric_value

LEFT_OUT = ("model_path",)  # where this machine kept a file: not a result


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))


def rows(arms: Sequence[Any], metrics: Sequence[str] = ()) -> tuple[list[str], list[dict]]:
    """(columns, rows): a row per trial of ``arms`` (``bnlab.results.report.Arm``)."""
    keys: dict[str, None] = {}
    out = []
    for arm in arms:
        for trial, history in zip(arm.trials, arm.histories):
            row = {"trial": trial.id, "arm": arm.name, "seed": trial.seed}
            for key, value in trial.results.items():
                if _scalar(value) and key not in LEFT_OUT:
                    row[key] = value
            for metric in metrics:
                if metric not in row:
                    row[metric] = metric_value(trial.results, history, metric)
            keys.update(dict.fromkeys(k for k in row if k not in ("trial", "arm", "seed")))
            out.append(row)
    return ["trial", "arm", "seed", *keys], out


def csv_text(arms: Sequence[Any], metrics: Sequence[str] = ()) -> str:
    columns, table = rows(arms, metrics)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in table)
    return buffer.getvalue()
