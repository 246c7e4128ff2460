"""Exports: TensorBoard event files read back with TensorBoard's own reader, MLflow runs read back
with MlflowClient from a local file store; both compared with what the store holds."""

import os

import numpy as np
import pytest

from bnlab.cli import main as cli_main
from bnlab import paths
from bnlab.lab import experiments
from bnlab.results.export import TRIAL_TAG, export_mlflow, export_tensorboard, trial_folder
from bnlab.results.store import INDEX_KEYS, Store

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def main(*argv):
    return cli_main(list(argv))


def add_trial(store, arm, seed, *, epochs=3, steps=False):
    exp = experiments.get("bn-placement")  # a real trial's config: bnlab reports only those
    cfg = experiments.trial_config(exp, exp.arm(arm), seed, epochs=epochs, limit=1000,
                                   dataset="fashion_mnist", backend="jax") if not steps else {
        "experiment": "bn-placement", "arm": arm, "seed": seed, "dataset": "fashion_mnist",
        "optimizer": {"name": "sgd", "learning_rate": 1e-3}, "limit": 1000}
    tid = store.start(cfg)
    rng = np.random.default_rng(seed)
    if steps:
        hist = [{"epoch": None, "step": s, "seconds": s / 10, "batch_loss": float(rng.random())}
                for s in (25, 50, 75)]
    else:
        hist = [{"epoch": e, "step": None, "seconds": 2.0 * e, "loss": float(rng.random()),
                 "accuracy": float(rng.random()), "val_loss": float(rng.random()),
                 "val_accuracy": float(rng.random())} for e in range(1, epochs + 1)]
    store.finish(tid, hist, {"test_accuracy": 0.8 + seed / 100, "test_loss": 0.5,
                             "params_total": 1234, "backend": "jax",
                             "predictions": [{"label": "Bag"}]})
    return tid


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "bnlab.sqlite") as s:
        for arm in ("baseline", "bn-after"):
            for seed in (1, 2):
                add_trial(s, arm, seed)
        yield s


def expected_scalars(store, trial):
    """{tag: [(step, value)]} straight from the store: history metrics, then test_* results."""
    out = {}
    history = store.history(trial.id)
    for row in history:
        step = row["epoch"] if row["epoch"] is not None else row["step"]
        for name, value in row.items():
            if name not in INDEX_KEYS:
                out.setdefault(name, []).append((step, value))
    last = max(step for points in out.values() for step, _ in points)
    for name in ("test_accuracy", "test_loss"):
        out[name] = [(last, trial.results[name])]
    return out


def read_events(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same(got, want):
    assert set(got) == set(want)
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        np.testing.assert_allclose([v for _, v in got[tag]], [v for _, v in want[tag]],
                                   rtol=1e-6, err_msg=tag)  # event files hold float32


def test_tensorboard_event_files_match_the_store_and_reexport_replaces(store, tmp_path):
    trials = store.trials("bn-placement")
    folders = export_tensorboard(store, trials, tmp_path / "tb")
    assert folders == [tmp_path / "tb" / trial_folder(t) for t in trials]
    assert (tmp_path / "tb" / "bn-placement" / "bn-after" / "seed-2") in folders
    for trial, folder in zip(trials, folders):
        assert_same(read_events(folder), expected_scalars(store, trial))
    (folders[0] / "notes.txt").write_text("mine")  # a user's file in a trial folder
    export_tensorboard(store, trials, tmp_path / "tb")  # again: the same points, not twice
    for trial, folder in zip(trials, folders):
        events = list(folder.glob("events.out.tfevents*"))
        assert len(events) == 1 and events[0].name in paths.Manifest(folder).names()
        assert_same(read_events(folder), expected_scalars(store, trial))
    assert (folders[0] / "notes.txt").read_text() == "mine"  # bnlab did not write it: kept
    assert {p.name for p in (tmp_path / "tb").rglob(".*")} == {paths.MANIFEST}  # no temporaries


def test_tensorboard_step_based_trial_uses_steps(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        add_trial(s, "deep", 1, steps=True)
        trial, = s.trials()
        folder, = export_tensorboard(s, [trial], tmp_path / "tb")
        got = read_events(folder)
        assert [step for step, _ in got["batch_loss"]] == [25, 50, 75]
        assert got["test_accuracy"] == [(75, pytest.approx(0.81))]


def mlflow_runs(uri, experiment="bn-placement"):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


def test_mlflow_runs_match_the_store_and_export_twice_creates_none(store, tmp_path, mlflow_uri):
    figure = tmp_path / "curves.png"
    figure.write_bytes(b"\x89PNG\r\n\x1a\n fake png for the artifact test")
    trials = store.trials("bn-placement")
    done = export_mlflow(store, trials, mlflow_uri, [figure])
    assert len(done["created"]) == 4 and not done["unchanged"]
    client, runs = mlflow_runs(mlflow_uri)
    assert len(runs) == 4
    by_trial = {r.data.tags[TRIAL_TAG]: r for r in runs}
    for trial in trials:
        run = by_trial[trial.id]
        assert run.info.run_name == f"{trial.arm}/seed-{trial.seed}"
        assert run.data.params["arm"] == trial.arm and run.data.params["seed"] == str(trial.seed)
        assert run.data.params["optimizer"] == '{"learning_rate": 0.001, "name": "SGD"}'
        got = {tag: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)]
               for tag in expected_scalars(store, trial)}
        assert_same(got, expected_scalars(store, trial))
        assert run.data.metrics["result.params_total"] == 1234
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"report", "results.json"}
        assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == \
            ["report/curves.png"]
    again = export_mlflow(store, trials, mlflow_uri, [figure])
    assert not again["created"] and len(again["unchanged"]) == 4
    assert len(mlflow_runs(mlflow_uri)[1]) == 4


def test_mlflow_rerun_trial_replaces_its_run(store, mlflow_uri):
    export_mlflow(store, store.trials("bn-placement"), mlflow_uri)
    tid = add_trial(store, "bn-after", 1, epochs=2)  # the same config would keep the same id ...
    old = {t.id for t in store.trials("bn-placement")} - {tid}
    store.finish(store.start(store.get(next(iter(old))).config), [{"epoch": 1, "loss": 0.25}],
                 {"test_accuracy": 0.9})  # ... so rerun one trial in place (--force)
    done = export_mlflow(store, store.trials("bn-placement"), mlflow_uri)
    assert len(done["created"]) == 2  # the new trial and the rerun one
    client, runs = mlflow_runs(mlflow_uri)
    tags = [r.data.tags[TRIAL_TAG] for r in runs]
    assert len(runs) == 5 and len(set(tags)) == 5


@pytest.mark.backend  # trained on every backend (make test), exported without TensorFlow
def test_cli_run_with_tensorboard_then_export_commands(tmp_path, monkeypatch, capsys,
                                                       fashion_mnist, mlflow_uri):
    monkeypatch.chdir(tmp_path)
    assert main("run", "bn-placement", "--arms", "bn-after", "--seeds", "1", "--epochs", "2",
                "--limit", "1000", "--quiet", "--no-report", "--tensorboard", "tb") == 0
    with Store("runs/bnlab.sqlite") as store:
        trial, = store.trials("bn-placement")
        want = expected_scalars(store, trial)
    assert trial.config["backend"] == os.environ["KERAS_BACKEND"]
    assert set(want) >= {"loss", "val_accuracy", "test_accuracy"} and len(want["loss"]) == 2
    assert_same(read_events(tmp_path / "tb" / "bn-placement" / "bn-after" / "seed-1"), want)
    assert main("export", "tensorboard", "bn-placement", "tb2") == 0
    assert_same(read_events(tmp_path / "tb2" / "bn-placement" / "bn-after" / "seed-1"), want)
    assert main("report", "bn-placement") == 0  # the figures the MLflow runs attach
    report = tmp_path / "runs" / "bn-placement" / "report.md"
    written = report.stat().st_mtime_ns
    assert main("export", "mlflow", "bn-placement", "--tracking-uri", mlflow_uri) == 0
    assert main("export", "mlflow", "bn-placement", "--tracking-uri", mlflow_uri) == 0
    assert report.stat().st_mtime_ns == written  # export leaves the report alone
    out = capsys.readouterr().out
    assert "1 run(s) written, 0 already" in out and "0 run(s) written, 1 already" in out
    client, runs = mlflow_runs(mlflow_uri)
    assert len(runs) == 1
    figures = [a.path for a in client.list_artifacts(runs[0].info.run_id, "report")]
    assert figures == ["report/curves.png", "report/final_accuracy.png"]


def test_cli_export_user_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main("export", "tensorboard", "bn-placement", "tb") == 2
    assert "no results store" in capsys.readouterr().err
    with Store("runs/bnlab.sqlite") as s:
        add_trial(s, "bn-after", 1)
    (tmp_path / "afile").write_text("not a folder")
    assert main("export", "tensorboard", "bn-placement", "afile") == 2
    err = capsys.readouterr().err
    assert err.startswith("bnlab: error: cannot write TensorBoard files under afile")
    assert err.count("\n") == 1
    assert main("export", "tensorboard", "no-such-experiment", "tb") == 2
    assert main("export", "mlflow", "bn-placement", "--tracking-uri", "nosuchscheme://x") == 2
    err = capsys.readouterr().err
    assert "tracking_uri 'nosuchscheme://x'" in err and "Traceback" not in err


def test_tensorboard_export_needs_no_tensorflow(store, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from bnlab.results.store import Store; "
            "from bnlab.results.export import export_tensorboard; "
            f"s = Store({str(store.path)!r}); export_tensorboard(s, s.trials(), {str(tmp_path)!r}); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(list(tmp_path.glob("bn-placement/*/seed-*/events.out.tfevents.*"))) == 4
