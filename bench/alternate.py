"""Head to head: bnlab's default path against its peers, whole processes alternated.

    python bench/alternate.py [--sides bnlab,keras-jax,torch] [--rounds 3]
        [--experiments a,b] [--arms a,b] [--blocks 3] [--quick] [--path auto|together]
        (prints JSON on its last line; --path: bnlab's, see bench/steps.py)

Each round runs one fresh process per side (bench/steps.py), one after another, so that each
framework has the cores to itself: no second runtime's threads in the process (what slowed
PyTorch 2.1x in the old one-process pairing, bench/tried.md). The order of the sides reverses
every round (ABC CBA ABC ...), so a drift of the machine's speed falls on both sides of a
round's ratio. Each process times ``--blocks`` blocks of the same batches per arm after a
warm-up block and reports the median block (bench/steps.py).

For every arm and every peer the answer gives the R per-round ratios bnlab ÷ peer, their
median and min-max (the method's spread), and each side's ms/step in every round, so that each
side can be checked against itself measured alone in the other rounds. A win is claimed only
where the whole min-max range of the ratios lies below 1.
"""

import argparse
import sys

from common import child_env, emit, log, median, run_child
from steps import EXPERIMENTS, KERAS_BACKEND, SIDES


def run_rounds(sides, rounds, child_args, run=run_child):
    """{side: [answer of each round]}; the order of ``sides`` reverses every round."""
    answers = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            log(f"round {r + 1}/{rounds}: {side}")
            answers[side].append(run("steps.py", ["--side", side, *child_args],
                                     env=child_env(KERAS_BACKEND[side])))
    return answers


def summarize(answers, base="bnlab"):
    """One row per arm: each side's ms/step per round, and bnlab ÷ each peer per round with its
    median and min-max."""
    per_side = {side: [{(r["experiment"], r["arm"]): r["ms"] for r in a["rows"]} for a in runs]
                for side, runs in answers.items()}
    rows = []
    for key in per_side[base][0]:
        ms = {side: [run[key] for run in runs] for side, runs in per_side.items()}
        row = {"experiment": key[0], "arm": key[1], "rounds": len(ms[base]),
               "ms": {side: {"rounds": v, "median": median(v), "min": min(v), "max": max(v)}
                      for side, v in ms.items()}, "ratio": {}}
        for side in ms:
            if side != base:
                ratios = [b / p for b, p in zip(ms[base], ms[side])]
                row["ratio"][side] = {"rounds": ratios, "median": median(ratios),
                                      "min": min(ratios), "max": max(ratios)}
        rows.append(row)
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="bnlab,keras-jax,torch",
                        help=f"comma-separated, bnlab first; among {', '.join(SIDES)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--arms", help="comma-separated arms of the experiments (default all)")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 steps a block, 2 rounds")
    parser.add_argument("--path", choices=("auto", "together"), default="auto",
                        help="bnlab's path (bench/steps.py; default auto)")
    args = parser.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    if sides[:1] != ["bnlab"] or len(sides) < 2 or not set(sides) <= set(SIDES):
        parser.error(f"--sides: bnlab first, then one or more of {', '.join(SIDES[1:])}")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a spread needs two rounds)")
    rounds = 2 if args.quick else args.rounds
    child_args = ["--experiments", args.experiments, "--blocks", args.blocks, "--path", args.path]
    child_args += ["--quick"] if args.quick else []
    child_args += ["--arms", args.arms] if args.arms else []
    rows = summarize(run_rounds(sides, rounds, child_args))
    for row in rows:
        log(f"{row['experiment']} / {row['arm']}: " + ", ".join(
            f"bnlab / {side} = {r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"
            for side, r in row["ratio"].items()))
    emit({"sides": sides, "rounds": rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
