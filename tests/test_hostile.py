"""bnlab under a hostile user: a case per failure found by trying (names that become paths,
pooled experiments, signals, full disks, unreachable servers, bad bounds), each through the real
command line in a subprocess. The Ray cases that need a cluster are in test_ray_cluster.py."""

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import filelock
import pytest

from bnlab import paths
from bnlab.results.store import Store

BNLAB = [sys.executable, "-m", "bnlab.cli"]
FASHION = Path("/usr/share/datasets/fashion-mnist")
QUICK = ["--seeds", "1", "--epochs", "1", "--limit", "200", "--quiet"]
HOSTILE_NAMES = ["../../x", "/tmp/bnlab-victim", "", ".", "..", "x/y", "x" * 300,
                 "a\x1b]0;title\x07", "a\x1b[31mred", "a\nb", "a\x00b", "a\u202eb"]
TITLE = "<script>alert(1)</script> title"
DESCRIPTION = "<img src=x onerror=alert(1)> & more"


def toml_string(text):
    return json.dumps(text)  # a JSON string is a TOML basic string (\\uXXXX escapes included)


def experiment_file(path, name="hostile", arm="a", norm="keras"):
    path.write_text(f"name = {toml_string(name)}\ntitle = {toml_string(TITLE)}\n"
                    f"description = {toml_string(DESCRIPTION)}\nmodel = \"mlp\"\n"
                    "optimizer = { name = \"SGD\", learning_rate = 0.01 }\nbatch_size = 32\n"
                    f"epochs = 1\n\n[[arms]]\nname = {toml_string(arm)}\nnorm = \"{norm}\"\n")
    return path


def bnlab(*args, cwd, timeout=300, **kw):
    return subprocess.run(BNLAB + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line(result, code=2, starts="bnlab: error: "):
    """The command ended with ``code`` and one line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr[-2000:]
    return lines[0]


def rows(store):
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return conn.execute("SELECT arm, seed, status, config, results FROM trials").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


@pytest.fixture(scope="session")
def finished(tmp_path_factory, worker_id):
    """One finished run of a one-arm experiment: store, report, saved model, TensorBoard. Built
    once a test session: under pytest-xdist the first worker to need it builds it in the
    session's shared temporary folder, and the other waits for it (a file lock)."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION}")
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's folder, above each worker's own
    work, built = shared / "hostile-finished", shared / "hostile-finished.built"
    with filelock.FileLock(shared / "hostile-finished.lock"):
        if not built.exists():
            shutil.rmtree(work, ignore_errors=True)  # a build that failed in the other worker
            work.mkdir()
            experiment_file(work / "h.toml")
            result = bnlab("run", "h.toml", *QUICK, "--save-models", "--tensorboard", "tb",
                           cwd=work)
            assert result.returncode == 0, result.stderr
            built.touch()
    return work


def copy_of(finished, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(finished, work)
    return work


def needs_mounts():
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True) \
        if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot mount a small file system here (unshare -m is not allowed): the "
                    "full-disk and read-only cases need one")


def in_mount(script, cwd, timeout=300):
    """``script`` (sh) in a private mount namespace: its mounts vanish with it."""
    return subprocess.run(["unshare", "-m", "sh", "-ec", script], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- 1-3: names that become paths ------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_check_name_refuses_every_hostile_name_in_one_line(name):
    with pytest.raises(paths.PathError) as info:
        paths.check_name(name, "arm name")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_every_built_in_name_is_a_safe_file_name():
    from bnlab.lab.experiments import EXPERIMENTS

    for experiment in EXPERIMENTS.values():
        paths.check_name(experiment.name)
        for arm in experiment.arms:
            paths.check_name(arm.name)


def test_hostile_experiment_and_arm_names_are_refused_before_anything_runs(tmp_path):
    """Items 1-3: traversal, absolute, empty, too long, control characters, NUL, newlines, as
    the experiment's name or an arm's: `bnlab run` refuses it in one line and writes nothing;
    `bnlab list` names each bad file in one escaped line."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "report.md").write_text("mine")
    files = []
    for i, name in enumerate(HOSTILE_NAMES + [str(victim)]):
        files.append(experiment_file(tmp_path / f"n{i}.toml", name=name))
        files.append(experiment_file(tmp_path / f"a{i}.toml", name=f"ok{i}", arm=name))
    run = bnlab("run", files[0], *QUICK, "--save-models", "--tensorboard", "tb", cwd=tmp_path)
    assert "path separator" in one_line(run)
    listed = bnlab("list", *files, cwd=tmp_path)
    errors = listed.stderr.strip().splitlines()
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert len(errors) == len(files), listed.stderr
    assert all(e.startswith("bnlab: error: ") for e in errors)
    assert not any(c in listed.stderr + listed.stdout for c in "\x1b\x07\x00\u202e")
    assert {p.name for p in tmp_path.iterdir()} == {f.name for f in files} | {"victim"}
    assert (victim / "report.md").read_text() == "mine"


def test_a_saved_model_path_stays_in_its_folder(tmp_path):
    from bnlab.lab import loop

    for arm in ("../../../x", "/abs", "x/y", "a\x00b"):
        with pytest.raises(paths.PathError):
            loop.model_path(tmp_path, {"arm": arm, "seed": 1})
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(paths.PathError, match="outside"):
        paths.inside(tmp_path, "link", "x")


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_write_whole_leaves_the_old_file_and_no_temporary_when_the_write_fails(tmp_path, error):
    target = tmp_path / "report.md"
    target.write_text("old")

    def write(temporary):
        temporary.write_text("half")
        raise error
    with pytest.raises(type(error)):
        paths.write_whole(target, write)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert paths.write_whole(target, lambda t: t.write_text("new"), suffix=".npz") == target
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


WRITERS = """
import sys
from pathlib import Path
from bnlab import paths
target, byte = Path(sys.argv[1]), sys.argv[2].encode()
for _ in range(40):
    paths.write_whole(target, lambda t: t.write_bytes(byte * 1_000_000))
"""


def test_write_whole_from_three_processes_at_once_is_only_ever_read_whole(tmp_path):
    """Three processes replace one file 40 times each while this one reads it: every read is
    one writer's whole file, and no temporary is left."""
    target = tmp_path / "shared.bin"
    target.write_bytes(b"a" * 1_000_000)
    writers = [subprocess.Popen([sys.executable, "-c", WRITERS, str(target), byte])
               for byte in "xyz"]
    seen = set()
    while any(w.poll() is None for w in writers):
        data = target.read_bytes()
        assert len(data) == 1_000_000 and data == data[:1] * len(data)
        seen.add(data[:1])
    assert [w.returncode for w in writers] == [0, 0, 0]
    assert seen & {b"x", b"y", b"z"} and [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_tensorboard_never_writes_outside_dir_nor_deletes_a_users_file(finished, tmp_path):
    """Item 2: a store row whose arm is ``../../../victim2`` (a crafted store) is refused, the
    victim untouched; a re-export keeps a user's file in a trial folder."""
    from bnlab.results.export import export_tensorboard

    victim = tmp_path / "victim2"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    out = tmp_path / "a" / "b" / "tb"
    with Store(tmp_path / "s.sqlite") as store:
        config = {"experiment": "e", "arm": "../../../victim2", "seed": 1}
        store.finish(store.start(config), [{"epoch": 1, "loss": 1.0}], {})
        with pytest.raises(paths.PathError, match="outside"):
            export_tensorboard(store, store.trials(), out)
    assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "mine"
    work = copy_of(finished, tmp_path)
    trial_dir = work / "tb" / "hostile" / "a" / "seed-1"
    (trial_dir / "notes.txt").write_text("mine")
    one = bnlab("export", "tensorboard", "h.toml", "tb", cwd=work)
    assert one.returncode == 0, one.stderr
    assert (trial_dir / "notes.txt").read_text() == "mine"
    assert len(list(trial_dir.glob("events.out.tfevents*"))) == 1


def test_a_report_never_overwrites_a_file_bnlab_did_not_write(finished, tmp_path):
    """Item 1: ``--out`` at a folder with someone's report.md: refused before anything, the file
    unchanged; bnlab's own report folder is rewritten freely."""
    work = copy_of(finished, tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.md").write_text("mine")
    line = one_line(bnlab("report", "h.toml", "--out", theirs, cwd=work))
    assert "bnlab did not write it" in line and (theirs / "report.md").read_text() == "mine"
    assert bnlab("report", "h.toml", cwd=work).returncode == 0


# --- 4: report.md carries no raw HTML ---------------------------------------------------------

def test_report_markdown_and_html_escape_the_title_and_description(finished):
    md = (finished / "runs" / "hostile" / "report.md").read_text()
    page = (finished / "runs" / "hostile" / "report.html").read_text()
    for text in (md, page):
        assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; title" in md
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in md


# --- 5-6: statistics never pool two experiments; a model per trial ----------------------------

def test_two_files_with_one_name_are_never_pooled_and_keep_a_model_each(finished, tmp_path):
    """Item 5: the same name and arm ``a``, norm keras and none: each report shows one seed of
    its own configuration. Item 6: the same arm and seed at other settings keeps its own model,
    recorded with an absolute path."""
    work = copy_of(finished, tmp_path)
    experiment_file(work / "other.toml", norm="none")
    run = bnlab("run", "other.toml", *QUICK[:-1], "--limit", "300", "--save-models",
                "--no-report", cwd=work)
    assert run.returncode == 0, run.stderr
    for file in ("h.toml", "other.toml"):
        report = bnlab("report", file, cwd=work)
        assert report.returncode == 0, report.stderr
        assert "other trial(s) named 'hostile'" in report.stderr
        assert "arm a: 1 seed (1)" in (work / "runs" / "hostile" / "report.md").read_text()
    models = [json.loads(r[4])["model_path"] for r in rows(work / "runs" / "bnlab.sqlite")]
    assert len(set(models)) == 2 and all(Path(m).is_absolute() for m in models)
    assert all(Path(m).exists() for m in models if m.startswith(str(work)))
    only_other = tmp_path / "only-other.sqlite"
    with Store(work / "runs" / "bnlab.sqlite") as store, Store(only_other) as other:
        trial = next(t for t in store.trials() if t.config["model"]["norm"] == "none")
        other.finish(other.start(trial.config), store.history(trial.id), trial.results)
    line = one_line(bnlab("report", "h.toml", "--store", only_other, cwd=work))
    assert "another configuration" in line and "h.toml" in line


# --- 7-8: Ctrl-C and SIGTERM at any moment ----------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("after", [0.4, 1.5])
def test_a_signal_while_jax_starts_ends_at_once_in_one_line(tmp_path, signum, code, after):
    experiment_file(tmp_path / "h.toml")
    child = subprocess.Popen(BNLAB + ["run", "h.toml", *QUICK], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    child.send_signal(signum)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1].startswith("bnlab: ")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_training_releases_the_claimed_trials(finished, tmp_path, signum, code):
    experiment_file(tmp_path / "h.toml")
    store = tmp_path / "s.sqlite"
    child = subprocess.Popen(BNLAB + ["run", "h.toml", "--seeds", "2", "--epochs", "20",
                                      "--limit", "500", "--quiet", "--store", store],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if store.exists() and any(r[2] == "running" for r in rows(store)):
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read()
    child.send_signal(signum)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("bnlab: ")
    assert {r[2] for r in rows(store)} == {"failed"}  # released: the next run claims them


# --- 9: a full disk ---------------------------------------------------------------------------

def test_a_full_disk_while_writing_figures_or_models_is_one_line(finished, tmp_path):
    needs_mounts()
    store = finished / "runs" / "bnlab.sqlite"
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(finished / "h.toml", small / "h.toml")
    command = " ".join(BNLAB)
    result = in_mount(f"mount -t tmpfs -o size=40k tmpfs {small}; cp {finished}/h.toml {small}/; "
                      f"cd {small}; {command} report h.toml --store {store}", cwd=tmp_path)
    assert "disk is full" in one_line(result)
    scratch = tmp_path / "s.sqlite"
    result = in_mount(f"mount -t tmpfs -o size=40k tmpfs {small}; cp {finished}/h.toml {small}/; "
                      f"cd {small}; {command} run h.toml {' '.join(QUICK)} --no-report "
                      f"--save-models --store {scratch}", cwd=tmp_path)
    assert "disk is full" in one_line(result)
    assert {r[2] for r in rows(scratch)} == {"failed"}


# --- 10: an unreachable cluster (the real two-node cluster: test_ray_cluster.py) --------------

def test_ray_address_where_nothing_listens_is_one_line_within_the_timeout(tmp_path):
    pytest.importorskip("ray")
    experiment_file(tmp_path / "h.toml")
    result = bnlab("run", "h.toml", *QUICK, "--executor", "ray", "--address",
                   f"127.0.0.1:{free_port()}", cwd=tmp_path, timeout=120)
    line = one_line(result)
    assert "no Ray cluster answered" in line and "RAY_AUTH_MODE=token" in line
    assert not (tmp_path / "runs").exists()


# --- 12: MLflow into a read-only folder, or a server that is not there ------------------------

def test_mlflow_export_to_a_dead_server_or_read_only_folder_is_one_line(finished, tmp_path):
    pytest.importorskip("mlflow")
    work = copy_of(finished, tmp_path)
    dead = one_line(bnlab("export", "mlflow", "h.toml", "--tracking-uri",
                          f"http://127.0.0.1:{free_port()}", cwd=work, timeout=120))
    assert "tracking_uri" in dead
    needs_mounts()
    ro = tmp_path / "ro"
    ro.mkdir()
    result = in_mount(f"mount -t tmpfs -o ro,size=1m tmpfs {ro}; cd {work}; "
                      f"{' '.join(BNLAB)} export mlflow h.toml --tracking-uri {ro}/mlruns",
                      cwd=work)
    assert "read-only" in one_line(result).lower()


# --- 13-15: bounds, read-only stores, misleading lines, tiny test sets ------------------------

def test_absurd_seeds_and_a_tensorboard_file_are_refused_before_training(tmp_path):
    experiment_file(tmp_path / "h.toml")
    assert "at most 1000 seeds" in one_line(
        bnlab("run", "h.toml", "--seeds", "1000000000000", cwd=tmp_path, timeout=60))
    (tmp_path / "afile").write_text("x")
    assert "it is a file" in one_line(bnlab("run", "h.toml", *QUICK, "--tensorboard", "afile",
                                            cwd=tmp_path))
    assert "a file, not a folder" in one_line(bnlab("run", "h.toml", *QUICK, "--data-dir",
                                                    "afile", cwd=tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_read_only_store_is_reported_and_a_damaged_row_is_named(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    needs_mounts()
    ro = tmp_path / "ro"
    ro.mkdir()
    result = in_mount(f"mount --bind {work}/runs {ro}; mount -o remount,ro,bind {ro}; "
                      f"{' '.join(BNLAB)} report h.toml --store {ro}/bnlab.sqlite --out out",
                      cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "out" / "report.md").exists()
    store = work / "runs" / "bnlab.sqlite"
    trial_id = Store.trial_id(json.loads(rows(store)[0][3]))
    for damage in ("not json {", "[1, 2]"):
        with sqlite3.connect(store) as conn:
            conn.execute("UPDATE trials SET config = ?", (damage,))
        line = one_line(bnlab("report", "h.toml", cwd=work))
        assert str(store.relative_to(work)) in line and trial_id in line and "damaged" in line


def test_a_tiny_limit_warns_that_its_test_accuracy_says_little(tmp_path):
    experiment_file(tmp_path / "h.toml")
    (tmp_path / "bad").mkdir()  # files that stop the run after the warning, before training
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "bad" / name).write_text("junk")
    result = bnlab("run", "h.toml", "--seeds", "1", "--limit", "1", "--data-dir", "bad",
                   cwd=tmp_path)
    warning, error = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "at most 1 test image" in warning and "below 100" in warning
    assert error.startswith("bnlab: error: ")
