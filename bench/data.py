"""Cold and warm load of Fashion-MNIST through ``bnlab.data.load``.

    python bench/data.py [--reps 3]      # the measurement (spawns the loading processes)
    python bench/data.py --load          # one load in this process; JSON answer

cold  a new process whose ``BNLAB_CACHE_DIR`` is a fresh empty temporary folder: bnlab finds the
      gzip IDX files (Debian's dataset-fashion-mnist), inflates and parses them, checks them, and
      writes its parsed-array cache. The operating system's file cache is not dropped (that needs
      root and affects the whole machine): "cold" is bnlab's cache, not the disk's.
warm  another new process on the same cache folder: bnlab reads its cached .npy arrays.
Both times are of the ``load("fashion_mnist")`` call alone (uint8, default 55,000/5,000 split),
inside the process; the process's whole wall time (Python start and imports included) is given
next to it. Median of ``--reps`` each.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time

from common import BENCH, ROOT, child_env, emit, log, median


def load_once():
    t0 = time.perf_counter()
    from bnlab import data

    imported = time.perf_counter()
    ds = data.load("fashion_mnist")
    done = time.perf_counter()
    return {"load_seconds": done - imported, "import_seconds": imported - t0,
            "train_images": int(len(ds.x_train)), "source": ds.source}


def _child(cache):
    env = child_env(BNLAB_CACHE_DIR=cache)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(BENCH / "data.py"), "--load"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    answer["process_seconds"] = wall
    return answer


def measure(reps):
    runs = {"cold": [], "warm": []}
    for _ in range(reps):
        cache = tempfile.mkdtemp(prefix="bnlab-bench-cache-")
        try:
            runs["cold"].append(_child(cache))
            runs["warm"].append(_child(cache))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    out = {}
    for kind, answers in runs.items():
        out[kind] = {"load_seconds": median([a["load_seconds"] for a in answers]),
                     "process_seconds": median([a["process_seconds"] for a in answers]),
                     "reps": len(answers), "source": answers[0]["source"]}
        log(f"data, {kind}: load {out[kind]['load_seconds']:.3f} s "
            f"(process {out[kind]['process_seconds']:.2f} s)")
    return out


def main(argv):
    if "--load" in argv:
        emit(load_once())
        return 0
    reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 3
    emit(measure(reps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
