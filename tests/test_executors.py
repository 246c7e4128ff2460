"""Trials on Ray (issue 11 §1): the same results as in this process, a dying worker, a killed driver.

One local Ray (``ray.init(num_cpus=2)``) serves the module's tests: Ray takes seconds to start.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from bnlab.lab import executors, experiments, sweep, train
from bnlab.results.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def configs(limit=200, seeds=2):
    exp = experiments.get("bn-placement")
    return [experiments.trial_config(exp, arm, seed, epochs=1, limit=limit,
                                     backend=os.environ["KERAS_BACKEND"])
            for arm in experiments.select_arms(exp, ["bn-after"]) for seed in range(1, seeds + 1)]


def test_driver_killed_mid_sweep_then_run_again_stores_every_trial_once(tmp_path, fashion_mnist):
    """kill -9 of the `bnlab run --executor ray` driver, then the same command: trials expected,
    stored and trained twice after finishing are printed (issue 11's kill -9 counts)."""
    argv = [sys.executable, "-m", "bnlab.cli", "run", "bn-placement", "--arms",
            "baseline,bn-after", "--seeds", "2", "--epochs", "1", "--limit", "200", "--path",
            "fit", "--executor", "ray", "--quiet", "--no-report", "--store", "s.sqlite",
            "--data-dir", str(fashion_mnist)]
    driver = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline, before = time.monotonic() + 400, []
    while time.monotonic() < deadline and driver.poll() is None and not before:
        try:
            with sqlite3.connect(tmp_path / "s.sqlite", timeout=1) as conn:
                before = conn.execute("SELECT id FROM trials WHERE status = 'finished'").fetchall()
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    assert driver.poll() is None and before, "the driver ended before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=500)
    assert again.returncode == 0, again.stderr
    with Store(tmp_path / "s.sqlite") as store:
        trials = store.trials(status=None)
    retrained = [t for t in trials if (t.id,) in before and t.attempts > 1]
    print(f"kill -9 of the Ray driver: trials expected 4, stored {len(trials)} "
          f"({len(before)} before the kill), finished ones trained again {len(retrained)}")
    assert sorted((t.arm, t.seed, t.status) for t in trials) == [
        ("baseline", 1, "finished"), ("baseline", 2, "finished"),
        ("bn-after", 1, "finished"), ("bn-after", 2, "finished")]
    assert retrained == []


def test_ray_stores_what_the_in_process_executor_stores(tmp_path, local_ray, fashion_mnist):
    todo = configs()
    quiet = {"progress": False, "log": lambda *a: None, "data_dir": fashion_mnist}
    with Store(tmp_path / "process.sqlite") as here, Store(tmp_path / "ray.sqlite") as there:
        sweep.run_trials(todo, here, **quiet)
        executor = executors.RayExecutor(data_dir=fashion_mnist)
        assert executor.slots == 2
        sweep.run_trials(todo, there, executor=executor, **quiet)
        a, b = here.trials(), there.trials()
        assert [(t.arm, t.seed) for t in a] == [(t.arm, t.seed) for t in b] == [
            ("bn-after", 1), ("bn-after", 2)]
        for ta, tb in zip(a, b):
            ha, hb = here.history(ta.id), there.history(tb.id)
            assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb] == [1]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                np.testing.assert_allclose([r[key] for r in hb], [r[key] for r in ha], rtol=1e-5)
            np.testing.assert_allclose(tb.results["test_accuracy"], ta.results["test_accuracy"],
                                       rtol=1e-5)
            assert tb.attempts == ta.attempts == 1


def test_a_worker_that_dies_marks_its_trials_failed_and_the_sweep_goes_on(tmp_path, local_ray):
    executor = executors.RayExecutor()
    # a worker that crashes (a lambda: pickled by value, so the workers need not import tests/)
    executor._task = ray.remote(lambda *args: os._exit(3)).options(num_cpus=1, max_retries=1)
    messages = []
    with Store(tmp_path / "s.sqlite") as store:
        done = sweep.run_trials(configs(seeds=2), store, executor=executor, path="fit",
                                progress=False, log=messages.append)
        trials = store.trials(status=None)
    assert done == [] and [t.status for t in trials] == ["failed", "failed"]  # both units ran
    print("error stored for a dead worker:", trials[0].error)
    assert all("Error" in t.error and "worker" in t.error.lower() for t in trials), trials[0].error
    assert len([m for m in messages if "failed" in m]) == 2
