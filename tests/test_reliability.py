"""Reliability (issue 11 §5): atomic claims of trials by concurrent runs, kill -9, Ctrl-C, files
bnlab does not own, one-line errors, diverged trials, intervals of proportions."""

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bnlab import cli
from bnlab.lab import sweep, train
from bnlab.results import report
from bnlab.results.store import Store, StoreError

BNLAB = [sys.executable, "-m", "bnlab.cli"]


def config(arm="a", seed=1, experiment="x"):
    return {"experiment": experiment, "arm": arm, "seed": seed}


def set_owner(path, trial_id, owner, lease_until=None):
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trials SET owner = ?, lease_until = ? WHERE id = ?",
                     (json.dumps(owner), lease_until, trial_id))


# --- claims ------------------------------------------------------------------------------------

def test_a_claim_holds_while_its_owner_lives_and_not_after(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as one, Store(path) as two:
        tid = one.claim(config())
        assert tid and two.claim(config()) is None  # held by a live process (this one)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        set_owner(path, tid, {"host": os.uname().nodename, "pid": int(dead), "started": 0.0})
        assert two.claim(config()) == tid  # its owner died: taken over
        trial = two.get(tid)
        assert trial.status == "running" and trial.attempts == 2 and trial.owner["pid"] == os.getpid()


def test_a_claim_from_another_host_holds_until_its_lease_ends(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        tid = store.claim(config())
        elsewhere = {"host": "another-host.invalid", "pid": 1, "started": 0.0}
        set_owner(path, tid, elsewhere, time.time() + 60)
        assert store.claim(config()) is None
        set_owner(path, tid, elsewhere, time.time() - 1)
        assert store.claim(config()) == tid


def test_a_finished_trial_is_claimed_again_only_with_force(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        tid = store.claim(config())
        assert store.finish(tid, [{"epoch": 1, "loss": 1.0}], {"test_accuracy": 0.5})
        assert store.claim(config()) is None
        assert store.get(tid).status == "finished" and store.history(tid)
        assert store.claim(config(), force=True) == tid
        assert store.get(tid).status == "running" and store.history(tid) == []


def test_a_process_that_lost_its_claim_writes_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        tid = store.claim(config())
        set_owner(path, tid, {"host": "another-host.invalid", "pid": 1, "started": 0.0}, 1e12)
        assert store.finish(tid, [{"epoch": 1, "loss": 1.0}], {}) is False
        assert store.fail(tid, "boom") is False
        assert store.get(tid).status == "running" and store.history(tid) == []


def test_concurrent_processes_claim_each_trial_once(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    script = ("import sys, json; from bnlab.results.store import Store\n"
              "s = Store(sys.argv[1])\n"
              "print(json.dumps([s.claim({'experiment': 'x', 'arm': 'a', 'seed': i}) is not None "
              "for i in range(40)]), flush=True)\n"
              "sys.stdin.read()  # stay alive, holding the claims, until the test has read all")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    got = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.communicate(timeout=60)
    assert [sum(column) for column in zip(*got)] == [1] * 40  # each trial claimed by exactly one
    with Store(path) as store:
        assert [t.attempts for t in store.trials(status="running")] == [1] * 40


def test_schema_1_store_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        store.finish(store.claim(config()), [], {"test_accuracy": 0.5})
    with sqlite3.connect(path) as conn:  # back to version 1's columns
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT "
                     "NULL, seed INTEGER NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL, "
                     "results TEXT, started_at TEXT NOT NULL, finished_at TEXT, error TEXT)")
        conn.execute("INSERT INTO t SELECT id, experiment, arm, seed, config, status, results, "
                     "started_at, finished_at, error FROM trials")
        conn.execute("DROP TABLE trials")
        conn.execute("ALTER TABLE t RENAME TO trials")
        conn.execute("PRAGMA user_version = 1")
    with Store(path) as store:
        assert [(t.arm, t.status, t.results) for t in store.trials()] == [
            ("a", "finished", {"test_accuracy": 0.5})]
        assert store.claim(config(seed=2))


# --- files bnlab does not own --------------------------------------------------------------

def test_another_programs_sqlite_file_is_refused_unchanged(tmp_path):
    path = tmp_path / "theirs.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE trials (name TEXT)")
        conn.execute("INSERT INTO trials VALUES ('theirs')")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another program"):
        Store(path)
    assert path.read_bytes() == before
    assert not (tmp_path / "theirs.sqlite-wal").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_report_on_an_empty_file_leaves_it_empty(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.sqlite").touch()
    assert cli.main(["report", "bn-placement", "--store", "empty.sqlite"]) == 2
    assert "not a bnlab results store" in capsys.readouterr().err
    assert (tmp_path / "empty.sqlite").stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite"]


def test_report_out_at_an_existing_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with Store(tmp_path / "s.sqlite") as store:
        store.finish(store.claim(config("baseline", 1, "bn-placement")), [], {})
    (tmp_path / "taken").write_text("mine")
    assert cli.main(["report", "bn-placement", "--store", "s.sqlite", "--out", "taken"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taken is a file" in err[0]
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.fixture
def immutable():
    """Make paths read-only even for root (chattr +i); undone afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = []

    def make(path):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("this file system has no immutable flag")
        made.append(path)
    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)])


RUN = ["run", "bn-placement", "--arms", "baseline", "--seeds", "1", "--epochs", "1",
       "--limit", "100", "--quiet", "--no-report"]


def test_run_on_a_read_only_store_that_needs_trials_is_one_line(tmp_path, monkeypatch, capsys,
                                                                 immutable, fashion_mnist):
    monkeypatch.chdir(tmp_path)
    Store(tmp_path / "s.sqlite").close()
    immutable(tmp_path)
    immutable(tmp_path / "s.sqlite")
    assert cli.main(RUN + ["--store", "s.sqlite", "--data-dir", str(fashion_mnist)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnlab: error: ") and "s.sqlite" in err[0]


def test_run_from_a_read_only_folder_says_where_the_report_cannot_go(tmp_path, monkeypatch,
                                                                     capsys, immutable):
    (tmp_path / "ro").mkdir()
    monkeypatch.chdir(tmp_path / "ro")
    immutable(tmp_path / "ro")
    store = tmp_path / "s.sqlite"
    assert cli.main(RUN[:-1] + ["--store", str(store)]) == 2  # with the report
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report into runs/bn-placement" in err[0]
    assert "--no-report" in err[0] and not store.exists()  # refused before training


# --- diverged trials, proportions ---------------------------------------------------------

def test_a_trial_whose_loss_becomes_nan_is_recorded_and_reported_as_diverged(tmp_path):
    history = [{"epoch": 1, "step": None, "seconds": 1.0, "loss": 2.3},
               {"epoch": 2, "step": None, "seconds": 2.0, "loss": math.nan},
               {"epoch": 3, "step": None, "seconds": 3.0, "loss": math.inf}]
    assert sweep.diverged_at(history) == "epoch 2"
    assert sweep.diverged_at(history[:1]) is None
    cfg = config("baseline", 1, "bn-placement")
    with Store(tmp_path / "s.sqlite") as store:
        store.claim(cfg)
        bar = type("Bar", (), {"update": lambda *a: None, "set_postfix_str": lambda *a: None})()
        sweep._record(store, [cfg], [(history, {"test_accuracy": 0.1})], None, bar, print)
        trial = store.get(store.trial_id(cfg))
        assert trial.status == "finished" and trial.results["diverged"] == "epoch 2"
        from bnlab.lab import experiments
        paths = report.write_report(store, experiments.as_report_spec(
            experiments.get("bn-placement")), tmp_path / "out")
    assert "diverged: baseline seed 1 (training loss not finite from epoch 2)" in \
        paths["markdown"].read_text()


def test_accuracy_intervals_stay_within_0_and_1():
    # two seeds of a 1-image test set: accuracies 0 and 1, t interval 0.5 ± 6.35
    cell = report._cell(report.Proportion(0.5, 12.706204736 * math.sqrt(0.5) / math.sqrt(2)))
    assert cell == "0.5000 [0.0000, 1.0000]"
    assert report._cell(report.Proportion(0.9, 0.05)) == "0.9000 ± 0.0500"
    assert report._cell(report.Proportion(0.98, 0.05)) == "0.9800 [0.9300, 1.0000]"


# --- real concurrent runs, kill -9, Ctrl-C --------------------------------------------------

def store_rows(path):
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT arm, seed, status, owner, attempts FROM trials").fetchall()
    except sqlite3.Error:
        return []


def test_three_concurrent_runs_one_killed_train_each_trial_once(tmp_path, fashion_mnist):
    """Three `bnlab run` on one store, one killed with SIGKILL while it trains: the survivors
    finish every trial; each trial was claimed once, except the killed one's (twice)."""
    argv = BNLAB + ["run", "bn-placement", "--arms", "baseline,bn-after", "--seeds", "2",
                    "--epochs", "2", "--limit", "500", "--path", "fit", "--quiet", "--no-report",
                    "--store", "s.sqlite", "--data-dir", str(fashion_mnist)]
    procs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    pids = {p.pid: p for p in procs}
    victim, deadline = None, time.monotonic() + 400
    while victim is None and time.monotonic() < deadline:
        for arm, seed, status, owner, _ in store_rows(tmp_path / "s.sqlite"):
            if status == "running" and json.loads(owner)["pid"] in pids:
                victim = (pids[json.loads(owner)["pid"]], arm, seed)
                break
        time.sleep(0.1)
    assert victim is not None, "no run started training"
    victim[0].kill()
    victim[0].wait()
    for p in procs:
        if p is not victim[0]:
            assert p.wait(timeout=600) == 0, p.stderr.read()
    rows = store_rows(tmp_path / "s.sqlite")
    assert sorted((arm, seed, status) for arm, seed, status, _, _ in rows) == [
        ("baseline", 1, "finished"), ("baseline", 2, "finished"),
        ("bn-after", 1, "finished"), ("bn-after", 2, "finished")]
    attempts = {(arm, seed): n for arm, seed, _, _, n in rows}
    assert attempts.pop(victim[1:]) == 2
    assert set(attempts.values()) == {1}


def test_ctrl_c_during_start_up_stops_the_run_and_marks_the_trial_failed(tmp_path,
                                                                         fashion_mnist):
    argv = BNLAB + RUN + ["--store", "s.sqlite", "--data-dir", str(fashion_mnist)]
    child = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if any(row[2] == "running" for row in store_rows(tmp_path / "s.sqlite")):
            break
        time.sleep(0.02)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=120) == 130
    rows = store_rows(tmp_path / "s.sqlite")
    assert [status for _, _, status, _, _ in rows] == ["failed"]
