"""Shared plumbing of the benchmark scripts: timing, subprocesses that answer in JSON, the machine.

Every measurement that needs a Keras backend runs in its own process (Keras fixes its backend at
import). Such a child prints progress lines starting with ``bench:`` on stderr (the driver shows
them as they come and keeps everything else for the error message) and its result as ONE JSON
object on the last line of stdout.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PACKAGES = ("keras", "jax", "jaxlib", "tensorflow-cpu", "tensorflow", "torch", "numpy")


def log(message):
    """A progress line for the person watching (stderr; the driver relays it)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def emit(result):
    """The child's answer: one JSON object, the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def median(values):
    return float(statistics.median(values))


def time_calls(fn, reps, warmup=3):
    """Median wall seconds of ``fn()`` over ``reps`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def fastest(fns, reps):
    """The fastest of ``reps`` wall-second timings of each of ``fns``, their calls interleaved
    (after one untimed call each), as a NumPy array. On a shared machine the fastest call is the
    one least disturbed by the others' work, and interleaving gives each the same chances."""
    import numpy as np

    for fn in fns:
        fn()
    best = np.full(len(fns), np.inf)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def training_block(config, steps):
    """The first ``steps`` batches of a trial's training split (x, labels as its loss wants)."""
    from bnlab.lab import recipe

    arrays, _ = recipe.load_data(config)
    n = steps * config["batch_size"]
    x, y = arrays["train"]
    return x[:n], recipe.labels(config, y[:n])


def child_env(backend=None, **extra):
    """The environment of a measuring child: quiet TensorFlow; ``backend`` sets KERAS_BACKEND,
    ``backend=None`` removes it so that bnlab picks its default, as ``bnlab run`` does."""
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)
    if backend:
        env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("BNLAB_OFFLINE", "1")  # a benchmark never downloads
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_child(script, args=(), backend=None, env=None, timeout=900):
    """Run ``bench/<script>`` with ``args`` in a fresh Python; return its JSON answer.

    ``bench:`` lines on its stderr are relayed live; on failure the tail of its stderr is shown.
    """
    cmd = [sys.executable, str(BENCH / script), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env or child_env(backend), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    other, out = [], []

    def relay():
        for line in proc.stderr:
            if line.startswith("bench:"):
                print("   " + line.rstrip(), file=sys.stderr, flush=True)
            else:
                other.append(line)

    readers = [threading.Thread(target=relay, daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{' '.join(cmd[1:])} ran past {timeout} s") from None
    for reader in readers:
        reader.join()
    out = "".join(out)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = "".join(other[-25:])
        raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------------
# the machine


def cpuinfo():
    """The first processor's fields of /proc/cpuinfo, as a dict of strings."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def versions():
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine():
    info = cpuinfo()
    return {"cpu": info.get("model name", platform.processor() or "unknown"),
            "family": info.get("cpu family"), "model": info.get("model"),
            "cores": os.cpu_count(), "memory_gib": memory_gib(),
            "load": round(os.getloadavg()[0], 1),
            "kernel": platform.release(), "versions": versions()}


def host_rates(quick=False):
    """This host's speed right now, measured with NumPy in a second or two: the BLAS's float32
    matrix-product rate (n × n @ n × n, n = 1024, and the MLP's 32×784 @ 784×300) and the copy rate
    of an array in cache (1 MB) and in main memory (64 MB), counted as read + write. The fastest
    of several tries: on a shared host that is the try least disturbed by the others' work."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for key, (m, k, n), reps in (("matmul_gflops", (1024, 1024, 1024), 5),
                                 ("matmul32_gflops", (32, 784, 300), 100)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out[key] = 2 * m * k * n / fastest([lambda: a @ b], 3 if quick else reps)[0] / 1e9
    for key, nbytes in (("copy_gbps_cache", 2**20), ("copy_gbps_memory", 64 * 2**20)):
        src = np.ones(nbytes // 4, np.float32)
        dst = np.empty_like(src)
        repeat = max(1, 2**26 // nbytes)

        def copies():
            for _ in range(repeat):
                np.copyto(dst, src)
        out[key] = 2 * nbytes * repeat / fastest([copies], 3 if quick else 5)[0] / 1e9
    return out
