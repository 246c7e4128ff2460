"""The SQLite results store: round trips, trial life cycle, crash safety, bad files."""

import time
import math
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from bnlab.results.store import SCHEMA_VERSION, Store, StoreError, Trial


def config(arm="bn-after", seed=0, experiment="bn-placement", **extra):
    return {"experiment": experiment, "arm": arm, "seed": seed, "dataset": "fashion_mnist",
            "optimizer": {"name": "sgd", "learning_rate": 1e-3}, "epochs": 2, **extra}


HISTORY = [
    {"epoch": 1, "step": 430, "seconds": 3.25, "loss": 0.8, "accuracy": 0.7,
     "val_loss": 0.55, "val_accuracy": 0.81},
    {"epoch": 2, "step": 860, "seconds": 6.5, "loss": 0.5, "accuracy": 0.82,
     "val_loss": 0.45, "val_accuracy": 0.85},
]
STEP_HISTORY = [  # deep-cnn style: batch metrics every 25 steps, validation every 100
    {"epoch": None, "step": 25, "seconds": 0.5, "batch_loss": 0.69, "batch_accuracy": 0.1},
    {"epoch": None, "step": 50, "seconds": 1.0, "batch_loss": 0.6, "batch_accuracy": 0.12},
    {"epoch": None, "step": 100, "seconds": 2.0, "val_loss": 0.5, "val_accuracy": 0.3},
]
RESULTS = {"test_loss": 0.47, "test_accuracy": 0.84, "val_accuracy": 0.85, "params_total": 271346,
           "predictions": [{"index": 0, "label": "Ankle boot", "predicted": "Ankle boot",
                            "probabilities": [0.0] * 9 + [1.0]}],
           "backend": "jax", "path": "keras-fit"}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs" / "bnlab.sqlite") as s:
        yield s


def test_creates_parent_dirs_schema_and_wal(tmp_path):
    path = tmp_path / "a" / "b" / "bnlab.sqlite"
    with Store(path) as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.is_file()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"trials", "metrics"} <= tables
    conn.close()
    with Store(path) as s:  # reopening an existing store is fine
        assert s.trials(status=None) == []


def test_trial_id_stable_and_config_sensitive():
    a = config()
    assert Store.trial_id(a) == Store.trial_id(dict(reversed(list(a.items()))))  # key order
    assert len(Store.trial_id(a)) == 16 and int(Store.trial_id(a), 16) >= 0
    assert Store.trial_id(a) != Store.trial_id(config(seed=1))
    assert Store.trial_id(a) != Store.trial_id(config(epochs=3))
    assert Store.trial_id(a) != Store.trial_id(config(backend="tensorflow"))
    import hashlib, json
    expected = hashlib.sha256(json.dumps(a, sort_keys=True, separators=(",", ":")).encode())
    assert Store.trial_id(a) == expected.hexdigest()[:16]


@pytest.mark.parametrize("history", [HISTORY, STEP_HISTORY], ids=["epochs", "steps"])
def test_round_trip(store, history):
    cfg = config()
    tid = store.start(cfg)
    assert tid == Store.trial_id(cfg)
    store.finish(tid, history, RESULTS)
    assert store.history(tid) == history
    assert [list(r) for r in store.history(tid)] == [list(r) for r in history]  # key order too
    t = store.get(tid)
    assert isinstance(t, Trial)
    assert (t.id, t.experiment, t.arm, t.seed, t.status) == (tid, "bn-placement", "bn-after", 0,
                                                            "finished")
    assert t.config == cfg and t.results == RESULTS and t.error is None
    assert t.started_at <= t.finished_at


def test_history_edge_cases(store):
    np = pytest.importorskip("numpy")
    tid = store.start(config())
    history = [{"epoch": 1, "step": 1, "seconds": 0.1, "loss": float("nan")},
               {"epoch": np.int64(2), "step": 2, "seconds": 0.2},  # no metrics at all
               {"epoch": 3, "step": 3, "seconds": 0.3, "loss": np.float32(0.25), "acc": None}]
    store.finish(tid, history, {"test_accuracy": np.float64(0.5), "w": np.arange(3)})
    back = store.history(tid)
    assert math.isnan(back[0]["loss"])
    assert back[1] == {"epoch": 2, "step": 2, "seconds": 0.2}
    assert back[2] == {"epoch": 3, "step": 3, "seconds": 0.3, "loss": 0.25}  # None = absent
    assert store.get(tid).results == {"test_accuracy": 0.5, "w": [0, 1, 2]}


def test_life_cycle_start_fail_restart_finish(store):
    cfg = config()
    tid = Store.trial_id(cfg)
    assert not store.is_finished(tid) and store.get(tid) is None
    store.start(cfg)
    assert store.get(tid).status == "running" and not store.is_finished(tid)
    store.fail(tid, "ValueError: NaN loss")
    t = store.get(tid)
    assert (t.status, t.error) == ("failed", "ValueError: NaN loss") and t.finished_at
    assert not store.is_finished(tid) and store.trials() == []
    store.start(cfg)  # retry resets the row
    t = store.get(tid)
    assert (t.status, t.error, t.finished_at, t.results) == ("running", None, None, {})
    store.finish(tid, HISTORY, RESULTS)
    assert store.is_finished(tid)
    store.start(cfg)  # forced re-run: back to running, old metrics gone
    assert not store.is_finished(tid) and store.history(tid) == []
    store.finish(tid, HISTORY[:1], {"test_accuracy": 0.1})
    assert store.history(tid) == HISTORY[:1] and store.get(tid).results == {"test_accuracy": 0.1}


def test_errors_for_unknown_trials_and_bad_configs(store):
    with pytest.raises(StoreError, match="claim it first"):
        store.finish("0123456789abcdef", HISTORY, {})
    with pytest.raises(StoreError):
        store.fail("0123456789abcdef", "boom")
    with pytest.raises(StoreError, match="seed"):
        store.start({"experiment": "x", "arm": "a"})
    with pytest.raises(ValueError):
        store.trials(status="done")


def test_failed_finish_rolls_back(store):
    tid = store.start(config())
    with pytest.raises(ValueError):
        store.finish(tid, HISTORY + [{"epoch": 3, "loss": "not a number"}], RESULTS)
    assert store.get(tid).status == "running" and store.history(tid) == []
    with pytest.raises(TypeError):
        store.finish(tid, HISTORY, {"bad": object()})
    assert store.get(tid).status == "running"


def test_trials_filtering_order_experiments_delete(store):
    for arm, seed in [("bn-before", 1), ("baseline", 2), ("bn-before", 0), ("baseline", 0)]:
        store.finish(store.start(config(arm, seed)), HISTORY, RESULTS)
    store.fail(store.start(config("baseline", 1)), "boom")
    store.start(config("baseline", 3))
    store.start(config("lenet", 0, experiment="custom-vs-builtin"))

    got = [(t.arm, t.seed) for t in store.trials("bn-placement")]
    assert got == [("baseline", 0), ("baseline", 2), ("bn-before", 0), ("bn-before", 1)]
    everything = store.trials("bn-placement", status=None)
    assert [(t.arm, t.seed) for t in everything][:4] == [("baseline", 0), ("baseline", 1),
                                                         ("baseline", 2), ("baseline", 3)]
    assert [t.seed for t in store.trials("bn-placement", status="failed")] == [1]
    assert [t.seed for t in store.trials("bn-placement", status="running")] == [3]
    assert store.trials("nope") == []
    assert len(store.trials(status=None)) == 7
    assert store.experiments() == ["bn-placement"]  # the other one has nothing finished

    assert store.delete("bn-placement") == 6
    assert store.trials(status=None)[0].experiment == "custom-vs-builtin"
    assert store.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    assert store.delete() == 1 and store.trials(status=None) == []


def test_not_a_sqlite_file_gives_one_line_error_naming_the_path(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("epoch,loss\n1,0.5\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message and "not a SQLite database" in message and "\n" not in message
    assert path.read_text().startswith("epoch,loss")  # left untouched


def test_directory_in_the_way_gives_store_error(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        Store(tmp_path)


def test_closed_store_errors(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.trials()


CHILD = textwrap.dedent("""
    import sys, time
    from bnlab.results.store import Store
    path, rows = sys.argv[1], int(sys.argv[2])
    base = {"experiment": "crash", "dataset": "fashion_mnist"}
    store = Store(path)
    done = store.start(dict(base, arm="done", seed=0))
    store.finish(done, [{"epoch": 1, "step": 1, "seconds": 1.0, "loss": 0.5}], {"ok": 1})
    waiting = store.start(dict(base, arm="waiting", seed=0))   # killed between start and finish
    victim = store.start(dict(base, arm="victim", seed=0))     # killed inside finish
    def history():
        for i in range(10 * rows):
            if i == rows:   # the transaction is open: status already updated, rows inserted
                print("inside", flush=True)
                time.sleep(60)
            yield {"epoch": i, "step": i, "seconds": float(i), "loss": 0.1, "accuracy": 0.9,
                   "val_loss": 0.2, "val_accuracy": 0.8}
    store.finish(victim, history(), {"test_accuracy": 0.9})
    print("finished", flush=True)
""")


def test_sigkill_never_leaves_an_unfinished_trial_marked_finished(tmp_path):
    path = tmp_path / "crash.sqlite"
    rows = 40_000  # 160k metric rows: more than SQLite's page cache, so pages spill to the WAL
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(rows)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "inside", proc.stderr.read()
        wal = path.with_name(path.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 0
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    with Store(path) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        by_arm = {t.arm: t for t in store.trials("crash", status=None)}
        assert {a: t.status for a, t in by_arm.items()} == {
            "done": "finished", "waiting": "running", "victim": "running"}
        assert store.history(by_arm["done"].id)[0]["loss"] == 0.5
        for arm in ("waiting", "victim"):
            assert not store.is_finished(by_arm[arm].id)
            assert by_arm[arm].results == {}
        count = store.conn.execute("SELECT COUNT(*) FROM metrics WHERE trial_id != ?",
                                   (by_arm["done"].id,)).fetchone()[0]
        assert count == 0
        assert [t.arm for t in store.trials("crash")] == ["done"]
        # resuming: the interrupted trial runs again and finishes
        store.start(by_arm["victim"].config)
        store.finish(by_arm["victim"].id, HISTORY, RESULTS)
        assert store.is_finished(by_arm["victim"].id)


def test_two_connections_see_each_others_commits(tmp_path):
    path = tmp_path / "shared.sqlite"
    with Store(path) as a, Store(path) as b:
        tid = a.start(config())
        assert b.get(tid).status == "running"
        a.finish(tid, HISTORY, RESULTS)
        assert b.is_finished(tid) and b.history(tid) == HISTORY


def test_processes_creating_one_new_store_at_once_all_open_it(tmp_path):
    """Several processes opening the same not-yet-existing store at the same moment: one creates
    the schema, the others must see a bnlab store, never 'a SQLite file of another program'
    (read apart, the schema version and the table count could straddle the creator's commit)."""
    import subprocess
    import sys

    code = ("import sys, time; from bnlab.results.store import Store\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "Store(sys.argv[1]).close()\n")
    for round_ in range(4):
        path, start = tmp_path / f"s{round_}.sqlite", time.time() + 2.0
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(start)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        errors = [p.stderr.read() for p in procs if p.wait(timeout=120) != 0]
        assert errors == []
        with Store(path, create=False) as store:
            assert store.trials(status=None) == []
