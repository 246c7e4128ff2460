"""Cold and warm load of Fashion-MNIST through ``bnlab.data.load``, each in a new process: cold on
an empty ``BNLAB_CACHE_DIR`` (the OS's file cache kept: dropping it needs root), warm on its cache.
"""

import sys
import tempfile
import time

from common import child_env, emit, log, median, run_child, timings

REPS = 3


def measure():
    seconds = {"cold": [], "warm": []}  # (load, process) of each run
    for _ in range(REPS):
        with tempfile.TemporaryDirectory(prefix="bnlab-bench-cache-") as cache:
            for kind in seconds:  # cold first: the folder is empty
                start = time.perf_counter()
                answer = run_child("data.py", ["--load"], env=child_env(BNLAB_CACHE_DIR=cache))
                seconds[kind].append((answer["load_seconds"], time.perf_counter() - start))
    out = {}
    for kind, runs in seconds.items():
        load, process = (median(values) for values in zip(*runs))
        out[kind] = {"load_seconds": load, "process_seconds": process, "reps": REPS}
        log(f"data, {kind}: load {load:.3f} s (process {process:.2f} s)")
    return out


def main(argv):
    if "--load" not in argv:
        emit(measure())
        return
    from bnlab import data  # the measurement's child: one load in this process
    emit({"load_seconds": timings(lambda: data.load("fashion_mnist"), 1, warmup=0)[0]})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
