"""What the input BN costs bn-placement's step on bnlab's seeds-together path, and what the fold
(``bnlab.lab.folded_input``: γ and β's gradients from the first Dense's own product) saves.

One process, K seeds (``--seeds``; XLA's options are those ``bnlab run`` picks for K), the arms
baseline, bn-after and bn-before, each BN arm without the fold, with it and XLA's BN ("folded,
XLA BN"), and with it and every hidden BN by the C++ kernels of ``layers.native_bn`` ("folded",
what bnlab runs; for one seed bnlab keeps XLA's BN, so the two are one program); blocks of
STEPS steps of the first training batches, alternated over ROUNDS; ms a step, median [min-max]
over the rounds, and ÷ the baseline's median. Run it idle: ``python bench/input_bn.py --seeds 1``
(and 3). The folded arms use ``bnlab.layers.native``'s kernel where it builds; ``BNLAB_NATIVE=0``:
XLA's form.
"""

import argparse
import sys

import bnlab  # noqa: F401  (first: where KERAS_BACKEND is unset, it picks Keras's backend)
from bnlab.lab import folded_input, runtime

from common import emit, fmt, log, median, spread, thunk_micros, timings, training_block
from steps import bnlab_block, configs

STEPS, ROUNDS = 400, 8


def profile(block, steps, top=12):
    """XLA's ``top`` kernels (thunks) of one block, by µs a step (``common.thunk_micros``)."""
    return [{"kernel": name, "us": us}
            for name, us in thunk_micros(block, steps).most_common(top)]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 steps, 2 rounds: checks it runs")
    parser.add_argument("--profile", action="store_true", help="and each arm's slowest kernels")
    args = parser.parse_args(argv)
    steps, rounds = (3, 2) if args.quick else (STEPS, ROUNDS)
    runtime.configure_xla(vectorized=args.seeds > 1)
    blocks = {}
    for _, arm, config in configs(["bn-placement"], ["baseline", "bn-after", "bn-before"]):
        x, y = training_block(config, steps)
        variants = [("", False, False)] if arm == "baseline" else [
            ("", False, False), (" folded, XLA BN", True, False), (" folded", True, True)]
        for suffix, fold, native_bn in variants:
            folded_input.ENABLED, folded_input.NATIVE_BN = fold, native_bn  # read when built
            blocks[arm + suffix] = bnlab_block(config, x, y, seeds=args.seeds)[1]
            blocks[arm + suffix]()  # compiles
    ms = {name: [] for name in blocks}
    for r in range(rounds):
        for name in list(blocks)[::1 if r % 2 == 0 else -1]:
            ms[name].append(1000 * timings(blocks[name], 1, warmup=0)[0] / steps)
    rows = [{"arm": name, **spread(v), "over_baseline": median(v) / median(ms["baseline"])}
            for name, v in ms.items()]
    for row in rows:
        log(f"{args.seeds} seed(s), {row['arm']:25} {fmt(row)} ms/step, ÷ baseline "
            f"{row['over_baseline']:.2f}")
    kernels = {name: profile(block, steps) for name, block in blocks.items() if args.profile}
    for name, top in kernels.items():
        log(f"{name}: " + ", ".join(f"{k['kernel']} {k['us']:.0f} µs" for k in top))
    emit({"seeds": args.seeds, "steps": steps, "rounds": rounds, "rows": rows, "kernels": kernels})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
