"""Shared plumbing of the benchmark scripts: timing, child processes, the machine.

A measuring child (a process of its own: Keras fixes its backend at import) prints ``bench:``
progress lines on stderr and its answer as ONE JSON object on stdout's last line.
"""

import collections
import contextlib
import gzip
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PACKAGES = ("keras", "jax", "jaxlib", "tensorflow-cpu", "tensorflow", "torch", "numpy")
# The sides of bench/steps.py, each with the KERAS_BACKEND its process needs (None: bnlab's default)
KERAS_BACKEND = {"bnlab": None, "keras-jax": "jax", "keras-tf": "tensorflow", "torch": None}
# breakdown.py's row of the baseline's products at NumPy's BLAS timed between the baseline's
# whole steps: the bound of the products goal (report.py), measured beside what it bounds
BESIDE = "the baseline's products at BLAS, timed between its steps"


def log(message):
    """A progress line for the person watching (stderr; the driver relays it)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def emit(result):
    """The child's answer: one JSON object, the last line of stdout."""
    print(json.dumps(result), flush=True)


def median(values):
    return float(statistics.median(values))


def fmt(r):
    """A spread as its median and its min-max over the rounds: "1.02 [0.98-1.10]"."""
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def spread(values):
    """Per-round values with their median and min-max over the rounds: the method's spread."""
    values = list(values)
    return {"rounds": values, "median": median(values), "min": min(values), "max": max(values)}


def timings(fn, reps, warmup=1):
    """Wall seconds of each of ``reps`` calls of ``fn()``, after ``warmup`` untimed ones."""
    times = []
    for _ in range(warmup + reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def interleaved(blocks, reps, measure=lambda block: timings(block, 1, warmup=0)[0]):
    """``measure(block)`` of ``reps`` calls of each of ``blocks`` ([of block 0], ...; by default
    its wall seconds), after one untimed call of each, the blocks in ABBA order: a host that
    drifts lands on all alike."""
    for block in blocks:
        block()
    results = [[] for _ in blocks]
    order = list(range(len(blocks)))
    for r in range(reps):
        for i in order if r % 2 == 0 else order[::-1]:
            results[i].append(measure(blocks[i]))
    return results


def thunk_micros(block, steps):
    """{XLA thunk: µs a step} of one call of ``block`` (``steps`` steps) from a ``jax.profiler``
    trace. Where XLA runs two thunks at once on the two cores, their times overlap."""
    import jax  # not at the top: PyTorch's processes import this module too
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            block()
        with gzip.open(next(Path(folder).rglob("*.trace.json.gz"))) as f:
            events = json.load(f)["traceEvents"]
    micros = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(("$", "Thunk")):
            micros[e["name"]] += e.get("dur", 0) / steps
    return micros


def fastest(fns, reps):
    """The fastest of ``reps`` interleaved timings of each of ``fns`` (the least disturbed)."""
    for fn in fns:
        fn()
    return np.min([[timings(fn, 1, warmup=0)[0] for fn in fns] for _ in range(reps)], axis=0)


def training_block(config, steps):
    """The first ``steps`` batches of a trial's training split (x, labels as its loss wants)."""
    from bnlab.lab import recipe
    x, y = recipe.load_data(config)[0]["train"]
    n = steps * config["batch_size"]
    return x[:n], recipe.labels(config, y[:n])


def child_env(backend=None, **extra):
    """A child's environment; ``backend=None`` lets bnlab pick Keras's, as ``bnlab run`` does."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "BNLAB_OFFLINE": "1",  # a benchmark never downloads
           **{k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
           **{k: str(v) for k, v in extra.items()}}
    return {**env, "KERAS_BACKEND": backend} if backend else env


def run_child(script, args=(), backend=None, env=None, timeout=900):
    """The JSON answer of ``bench/<script> args`` in a fresh Python, its ``bench:`` relayed."""
    cmd = [sys.executable, str(BENCH / script), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env or child_env(backend), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # a group to end with whatever it starts
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
    except BaseException as exc:  # past its time, or interrupted: no process of it lives on
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        raise RuntimeError(f"{' '.join(cmd[1:])} ran past {timeout:.0f} s") from None
    for reader in readers:
        reader.join()
    lines = [ln for ln in "".join(out).splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = "".join(other[-25:])
        raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def theoretical_peak(info):
    """This CPU's FP32 peak, derived; the clock is the nominal one (a VM hides any boost clock)."""
    flags = set(info.get("flags", "").split())
    family = int(info.get("cpu family", "0") or 0)
    amd = info.get("vendor_id") == "AuthenticAMD"
    ghz, clock = ((float(info["cpu MHz"]) / 1000, "cpu MHz") if "cpu MHz" in info
                  else (float(info.get("bogomips", "0")) / 2000, "TSC clock = BogoMIPS / 2"))
    pipes, bits, why = next(kind[1:] for kind in (  # the first that applies
        (amd and family == 0x19, 2, 256,  # Zen 4 runs AVX-512 as two 256-bit halves
         "AMD family 0x19 (Zen 3/4): 2 FMA pipes, 256-bit datapath"),
        (amd and family >= 0x1A, 2, 512, "AMD family 0x1A (Zen 5): 2 FMA pipes, 512-bit datapath"),
        ("avx512f" in flags, 2, 512, "AVX-512: 2 FMA pipes × 512-bit"),
        ("fma" in flags, 2, 256, "AVX2+FMA: 2 FMA pipes × 256-bit"),
        (True, 1, 128, "SSE: 1 pipe × 128-bit (no FMA counted as 2)")) if kind[0])
    per_cycle, cores = pipes * (bits // 32) * 2, os.cpu_count()
    return (f"{cores} cores × {ghz:.3f} GHz ({clock}) × {per_cycle} FLOP/cycle ({why}: {pipes} × "
            f"{bits // 32} float32 lanes × 2 for the FMA) = {cores * ghz * per_cycle:.0f} GFLOP/s")


def machine():
    """The CPU (the first processor's fields of /proc/cpuinfo), memory, load and versions."""
    info, versions = {}, {"python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": info.get("model name", platform.processor() or "unknown"),
            "family": info.get("cpu family"), "model": info.get("model"), "cores": os.cpu_count(),
            "memory_gib": round(memory, 1), "load": round(os.getloadavg()[0], 1),
            "peak": theoretical_peak(info), "versions": versions}


def copy_gbps(nbytes, reps, threads=1, statistic=min):
    """GB/s (read + write) of ``statistic`` of ``reps`` copies of ``nbytes`` over ``threads``
    threads (NumPy copies without the GIL)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    parts = list(zip(np.array_split(dst, threads), np.array_split(src, threads)))
    repeat = max(1, 2**26 // nbytes)  # 64 MB a call: starting the threads does not count

    def work(part):
        for _ in range(repeat):
            np.copyto(*part)
    with ThreadPoolExecutor(threads) as pool:
        seconds = statistic(timings(lambda: list(pool.map(work, parts)), reps, warmup=2))
    return 2 * nbytes * repeat / seconds / 1e9


def host_rates():
    """This host's speed now (NumPy): float32 BLAS and copies in cache and in memory."""
    rng = np.random.default_rng(0)
    out = {}
    for key, (m, k, n), reps in (("matmul_gflops", (1024, 1024, 1024), 5),
                                 ("matmul32_gflops", (32, 784, 300), 100)):
        a, b = (rng.standard_normal(shape, dtype=np.float32) for shape in ((m, k), (k, n)))
        out[key] = 2 * m * k * n / fastest([lambda: a @ b], reps)[0] / 1e9
    out["copy_gbps_cache"], out["copy_gbps_memory"] = copy_gbps(2**20, 5), copy_gbps(2**26, 5)
    return out
