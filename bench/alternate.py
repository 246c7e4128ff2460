"""Whole processes alternated, the bench's one timing method (bench/method.md): the order reverses
every round (ABC CBA ABC), so that a drift of the machine's speed falls on both sides of a ratio.
A side: one of bench/steps.py with options after colons (``bnlab:seeds=5``, ``fold:folded``).
"""

import argparse
import sys
import time

from common import KERAS_BACKEND, child_env, emit, fmt, log, run_child, spread


def command(side):
    """(script, args, backend) of a side ``name[:key=value...]``."""
    name, *options = side.split(":")
    if name == "fold":
        return "steps.py", ["--side", side], None
    if name not in KERAS_BACKEND:
        raise ValueError(f"unknown side {side!r}, not {', '.join(KERAS_BACKEND)}, fold:(un)folded")
    args = ["--side", name]
    for option in options:
        key, _, value = option.partition("=")
        args += [f"--{key}", value]
    return "steps.py", args, KERAS_BACKEND[name]


def run_rounds(sides, rounds, child_args, run=run_child, budget=None, clock=time.monotonic,
               limit=None):
    """({side: [each round's answer]}, why it stopped early); no round starts that would pass
    ``budget``, but the second (a spread needs two) may reach ``limit`` (the bench's time left)."""
    answers, start = {side: [] for side in sides}, clock()
    for r in range(rounds):
        elapsed = clock() - start
        cap = max(budget, limit or 0) if budget is not None and r == 1 else budget
        if budget is not None and r and elapsed / r * (r + 1) > cap:
            return answers, (f"stopped after {r} of {rounds} rounds: a round takes "
                             f"{elapsed / r:.0f} s and the budget is {cap:.0f} s")
        done = {}
        for side in sides if r % 2 == 0 else sides[::-1]:
            log(f"round {r + 1}/{rounds}: {side}")
            script, args, backend = command(side)
            timeout = None if budget is None else max(30.0, cap - (clock() - start))
            try:
                done[side] = run(script, args + list(child_args), env=child_env(backend),
                                 **({"timeout": timeout} if timeout else {}))
            except RuntimeError as exc:  # a round is kept whole or not at all
                return answers, f"stopped in round {r + 1} of {rounds}: {str(exc).splitlines()[0]}"
        for side in sides:
            answers[side].append(done[side])
    return answers, None


def summarize(answers):
    """Per (experiment, arm) all sides measured: each side's ms and the first ÷ each other."""
    base = next(iter(answers))
    per_side = {side: [{(r["experiment"], r["arm"]): r for r in a["rows"]} for a in runs]
                for side, runs in answers.items()}
    rows = []
    for key in per_side[base][0]:
        if not all(key in run for runs in per_side.values() for run in runs):
            continue
        ms = {side: [run[key]["ms"] for run in runs] for side, runs in per_side.items()}
        rows.append({"experiment": key[0], "arm": key[1], "rounds": len(ms[base]),
                     **{k: per_side[base][0][key].get(k) for k in ("path", "macs", "batch_size")},
                     "ms": {side: spread(v) for side, v in ms.items()},
                     "ratio": {side: spread([b / p for b, p in zip(ms[base], v)])
                               for side, v in ms.items() if side != base}})
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Any other option goes to every side's process.")
    parser.add_argument("--sides", default="bnlab,keras-jax,torch",
                        help="comma-separated sides, the first one the numerator")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=None, help="seconds for all the rounds")
    parser.add_argument("--limit", type=float, help="seconds the second round may reach")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 steps a block")
    args, child_args = parser.parse_known_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    for side in sides:  # an unknown side fails here, before any round
        command(side)
    if len(sides) < 2 or args.rounds < 2:
        parser.error("need two sides or more and --rounds ≥ 2 (a spread needs two rounds)")
    child_args += ["--quick"] if args.quick else []
    answers, stopped = run_rounds(sides, 2 if args.quick else args.rounds, child_args,
                                  budget=args.budget, limit=args.limit)
    done = len(answers[sides[0]])
    if done < 2:
        print(f"alternate: {done} round(s) done, a spread needs two: {stopped}", file=sys.stderr)
        return 1
    rows = summarize(answers)
    for row in rows:
        log(f"{row['experiment']} / {row['arm']}: " + ", ".join(
            f"{sides[0]} / {side} = {fmt(r)}" for side, r in row["ratio"].items()))
    emit({"sides": sides, "rounds": done, "stopped": stopped, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
