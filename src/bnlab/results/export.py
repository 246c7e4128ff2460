"""Exports of stored trials to the tools people already use: TensorBoard event files and MLflow runs.

Both read only what the store holds (a trial's config, history and results), so an export is the
same whichever backend or executor trained the trials, and can be redone at any time.

TensorBoard (:func:`export_tensorboard`, with tensorboardX: no TensorFlow needed)::

    DIR/EXPERIMENT/ARM/seed-SEED/events.out.tfevents.*     one folder per trial

One scalar per history row and metric, at TensorBoard step = the row's ``epoch`` (epoch-based
experiments) or its ``step`` (step-based ones), wall time = the trial's start + the row's
``seconds``; the trial's numeric test results (``test_*``) at the last step. A trial's event file
is written whole in a hidden folder, then moved into the trial's folder; exporting again replaces
the event files bnlab wrote there (and only those) instead of adding a second copy.

MLflow (:func:`export_mlflow`): one run per trial in the MLflow experiment named like bnlab's, with
the config as params, the history as metrics with steps, the numeric results as metrics and
``results.json``, and the report's figures under ``report/``. The tag ``bnlab.trial_id`` finds a
trial's run again: a trial already exported with the same content (history and results, tag
``bnlab.content``) is skipped; one rerun since (``--force``) has its old run deleted and written
anew.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from bnlab import paths
from bnlab.errors import UserError
from bnlab.results.store import INDEX_KEYS, Store, Trial

TRIAL_TAG = "bnlab.trial_id"
CONTENT_TAG = "bnlab.content"  # digest of what was exported: a rerun trial differs
DEFAULT_MLFLOW_URI = "runs/mlruns"  # a file store: MLflow 3 refuses those unless asked to allow them
# A tracking server that is down or unreachable fails the export in seconds, not minutes: MLflow's
# own HTTP settings, unless the user set them (each request: 10 s, then 2 retries 1 s and 2 s apart).
MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _need(module: str):
    """Import ``module`` (from the export extra), or ImportError with the one-line fix."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; install bnlab's export extra: "
                          "pip install 'bnlab[export]'") from None


def trial_folder(trial: Trial) -> Path:
    """``EXPERIMENT/ARM/seed-SEED``: where a trial's event file goes under the export folder."""
    return Path(trial.experiment) / trial.arm / f"seed-{trial.seed}"


def _timestamp(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def scalar_points(trial: Trial, history: Sequence[dict]) -> Iterator[tuple[str, float, int, float]]:
    """(tag, value, step, wall time) for every metric of every history row, then the numeric
    ``test_*`` results at the last step. step = the row's epoch, or its step where it has none."""
    start, last = _timestamp(trial.started_at), 0
    for row in history:
        step = row["epoch"] if row.get("epoch") is not None else row.get("step")
        if step is None:
            continue
        last = max(last, int(step))
        for name, value in row.items():
            if name not in INDEX_KEYS and value is not None:
                yield name, float(value), int(step), start + float(row.get("seconds") or 0.0)
    end = _timestamp(trial.finished_at) or start
    for name, value in _numeric_results(trial):
        if name.startswith("test_"):
            yield name, value, last, end


def _numeric_results(trial: Trial) -> Iterator[tuple[str, float]]:
    for name, value in sorted(trial.results.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, float(value)


# ------------------------------------------------------------------------------------ TensorBoard
def export_tensorboard(store: Store, trials: Iterable[Trial], out_dir: str | Path) -> list[Path]:
    """Write each trial's scalars as a TensorBoard event file under ``out_dir``; return the trial
    folders written (see :func:`trial_folder`), each proven to lie under ``out_dir``.

    The event file is written in a hidden folder inside the trial's, then moved in; the event
    files an earlier export wrote there (the folder's ``bnlab.paths.Manifest``) are then deleted,
    and every other file in the folder is left as it is."""
    SummaryWriter = _need("tensorboardX").SummaryWriter
    out, written = Path(out_dir), []
    for trial in trials:
        final = paths.inside(out, trial_folder(trial))
        final.mkdir(parents=True, exist_ok=True)
        owned = paths.Manifest(final)
        earlier = {n for n in owned.names() if n.startswith("events.out.tfevents")}
        tmp = Path(tempfile.mkdtemp(dir=final, prefix=".export.", suffix=".tmp"))
        try:
            writer = SummaryWriter(logdir=str(tmp))
            try:
                for tag, value, step, walltime in scalar_points(trial, store.history(trial.id)):
                    writer.add_scalar(tag, value, global_step=step, walltime=walltime)
                writer.add_text("config", "```\n" + json.dumps(trial.config, indent=2,
                                                               sort_keys=True) + "\n```")
            finally:
                writer.close()
            for event in sorted(tmp.iterdir()):
                os.replace(event, owned.target(event.name))
                owned.wrote(event.name)
                earlier.discard(event.name)
            for name in earlier:
                owned.remove(name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        written.append(final)
    return written


# ----------------------------------------------------------------------------------------- MLflow
def _is_file_store(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file:")


def _params(config: dict) -> dict[str, str]:
    """The config as MLflow params: strings, nested values as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in sorted(config.items())}


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def export_mlflow(store: Store, trials: Iterable[Trial], tracking_uri: str = DEFAULT_MLFLOW_URI,
                  figures: Sequence[str | Path] = ()) -> dict[str, list[str]]:
    """Write each trial as an MLflow run at ``tracking_uri``; return {"created": [...],
    "unchanged": [...]} run ids. ``figures`` (the report's PNGs) are logged to every run under
    ``report/``. Bad URIs raise UserError."""
    _need("mlflow")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    if _is_file_store(tracking_uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # bnlab's default store kind
    for key, value in MLFLOW_HTTP.items():
        os.environ.setdefault(key, value)
    done: dict[str, list[str]] = {"created": [], "unchanged": []}
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_ids: dict[str, str] = {}
        for trial in trials:
            if trial.experiment not in experiment_ids:
                found = client.get_experiment_by_name(trial.experiment)
                experiment_ids[trial.experiment] = (found.experiment_id if found else
                                                    client.create_experiment(trial.experiment))
            eid = experiment_ids[trial.experiment]
            history = store.history(trial.id)
            content = hashlib.sha256(json.dumps([history, trial.results], sort_keys=True,
                                                default=str).encode()).hexdigest()[:16]
            previous = client.search_runs([eid], f"tags.`{TRIAL_TAG}` = '{trial.id}'")
            if any(r.data.tags.get(CONTENT_TAG) == content for r in previous):
                done["unchanged"] += [r.info.run_id for r in previous]
                continue
            for run in previous:  # the trial was rerun since: its old run goes
                client.delete_run(run.info.run_id)
            run = client.create_run(eid, run_name=f"{trial.arm}/seed-{trial.seed}",
                                    start_time=int(_timestamp(trial.started_at) * 1000),
                                    tags={TRIAL_TAG: trial.id, "bnlab.arm": trial.arm,
                                          "bnlab.seed": str(trial.seed)})
            rid = run.info.run_id
            metrics = [Metric(tag, value, int(wall * 1000), step) for tag, value, step, wall
                       in scalar_points(trial, history)]
            end = int(_timestamp(trial.finished_at) * 1000)
            metrics += [Metric(f"result.{k}", v, end, 0) for k, v in _numeric_results(trial)
                        if not k.startswith("test_")]  # test_* are in scalar_points already
            params = [Param(k, v) for k, v in _params(trial.config).items()]
            for part in _chunks(params, 100):
                client.log_batch(rid, params=part)
            for part in _chunks(metrics, 1000):
                client.log_batch(rid, metrics=part)
            client.log_dict(rid, trial.results, "results.json")
            for figure in figures:
                client.log_artifact(rid, str(figure), "report")
            # the tag that marks the export complete goes last: a half-written run is redone
            client.log_batch(rid, tags=[RunTag(CONTENT_TAG, content)])
            client.set_terminated(rid, end_time=end)
            done["created"].append(rid)
    except (MlflowException, OSError) as exc:
        message = " ".join(str(exc).split())
        raise UserError(f"tracking_uri {tracking_uri!r}: {message[:300]}") from None
    return done

