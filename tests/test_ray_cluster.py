"""Ray for real, through the command line: a two-node local cluster (``ray start --head``, then a
second ``ray start --address``, one CPU each) that a sweep joins with ``--address`` and trains on
both nodes; a local Ray whose trials fail makes the run exit 1 with a count; ``kill -9`` of the
driver leaves none of its Ray processes behind. Each starts Ray (tens of seconds): marked slow."""

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

BNLAB = [sys.executable, "-m", "bnlab.cli"]
SWEEP = ["run", "bn-placement", "--arms", "bn-after", "--epochs", "1", "--limit", "200",
         "--path", "fit", "--quiet", "--no-report", "--store", "s.sqlite"]
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trials(store):
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return conn.execute("SELECT seed, status, json_extract(results, '$.ray_node') "
                                "FROM trials ORDER BY seed").fetchall()
    except sqlite3.OperationalError:
        return []


def kill_all(processes):
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def processes_of(marks):
    """The processes whose command line holds one of ``marks``, and their descendants."""
    found, me = {}, {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    for process in psutil.process_iter(["cmdline"]):
        if process.pid in me:
            continue
        line = " ".join(process.info["cmdline"] or [])
        if any(mark in line for mark in marks):
            for p in [process, *process.children(recursive=True)]:
                found[p.pid] = p
    return list(found.values())


@pytest.fixture
def cluster(tmp_path):
    """A head and a second node on this machine, one CPU each, with token authentication (the
    token in RAY_AUTH_TOKEN, shared by the nodes and the driver), their own HOME and folder; every process of it is killed afterwards (by pid, never
    `ray stop`, which would stop other users' Ray too)."""
    if not os.access(RAY, os.X_OK):
        pytest.skip("the `ray` command is not installed")
    temp = Path(tempfile.mkdtemp(prefix="bnr", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    # RAY_TMPDIR: the cluster's address file too stays in its folder, so no other `ray.init()` on
    # this machine finds and joins it
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token", "RAY_TMPDIR": str(temp),
           "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard",
                        "false", *common], env=env, check=True, capture_output=True, timeout=240)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common], env=env,
                       check=True, capture_output=True, timeout=240)
        yield f"127.0.0.1:{port}", env
    finally:
        kill_all(processes_of([str(temp), f":{port}"]))
        shutil.rmtree(temp, ignore_errors=True)


def test_a_sweep_joins_a_two_node_cluster_and_trains_on_both(cluster, tmp_path, fashion_mnist):
    address, env = cluster
    result = subprocess.run(BNLAB + SWEEP + ["--seeds", "2", "--executor", "ray", "--address",
                                             address], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / "s.sqlite")
    assert [(seed, status) for seed, status, _ in rows] == [(1, "finished"), (2, "finished")]
    assert len({node for _, _, node in rows}) == 2  # one trial on each node


def test_failed_ray_trials_exit_1_and_a_killed_driver_leaves_no_ray(tmp_path, fashion_mnist):
    bad = tmp_path / "bad"  # data the workers cannot read: each trial fails on its worker
    bad.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (bad / name).write_text("junk")
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="bnr", dir="/tmp")}
    failed = subprocess.run(BNLAB + SWEEP + ["--seeds", "1", "--executor", "ray", "--data-dir",
                                             str(bad)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "1 of 1 trial(s) failed" in failed.stderr.strip().splitlines()[-1]
    store = tmp_path / "k.sqlite"
    driver = subprocess.Popen(BNLAB + SWEEP[:-1] + [str(store), "--seeds", "1", "--epochs", "30",
                                                    "--executor", "ray"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and driver.poll() is None:
        if any(status == "running" for _, status, _ in trials(store)):
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before its Ray trial started"
    ray_processes = [p for p in psutil.Process(driver.pid).children(recursive=True)
                     if "bnlab.lab.executors import watch" not in " ".join(p.cmdline())]
    assert ray_processes
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    gone, alive = psutil.wait_procs(ray_processes, timeout=60)
    kill_all(alive)  # so that a failure here leaves nothing running either
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert not alive, f"{len(alive)} Ray process(es) outlived the driver"
