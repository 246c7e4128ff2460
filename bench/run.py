"""`make bench`: bnlab's speed measurements, side by side in one run, into docs/performance.md.

The SECTIONS' children run one at a time (two would share the cores), each in its share of the
budget (``plan``); one that cannot finish is reported with the reason. ``--quick``: checks only.
"""

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from common import ROOT, host_rates, log, machine, run_child
from report import markdown

REFERENCE_GFLOPS = 113.0  # NumPy's 32×784 @ 784×300 on the host SECTIONS' seconds were taken on


def alternation(sides, experiments=None, arms=None):
    """A child that alternates whole processes of ``sides`` (bench/alternate.py)."""
    options = {"--sides": sides, "--experiments": experiments, "--arms": arms}
    return "alternate.py", [x for option in options.items() if option[1] for x in option], None


# name: (heading, children (script, args, backend), seconds on the reference host, a 2-core Zen 3
# (AMD EPYC family 25, 7 Dec 2026: docs/performance-zen3.md): fixed, per round). The order is
# the priority: where the budget does not hold them all, the last give way (``fit``).
SECTIONS = {
    "data": ("Data: Fashion-MNIST load", [("data.py", [], None)], (5, 0)),
    "check": ("Models: parameter counts (total, trainable, non-trainable), Keras vs PyTorch",
              [("torch_models.py", ["--check"], "torch")], (8, 0)),
    "bn": ("BN alone: forward + backward, training mode",
           [("bn.py", ["--copy"], None)]
           + [("bn.py", ["--layers"], b) for b in ("jax", "tensorflow", "torch")], (28, 0)),
    "breakdown": ("Where a bn-placement step goes (JAX)",
                  [("breakdown.py", ["--seeds", k], None) for k in (1, 3)],
                  (90, 0)),  # 8 Dec: 27 s + 33 s measured; its share scales with BLAS, they do not
    "peers": ("Head to head: bnlab, plain Keras on JAX, plain PyTorch",
              [alternation("bnlab,keras-jax,torch")], (10, 180)),
    "bn-cost": ("The bn-placement arms: 3 seeds together and one seed",
                [alternation("bnlab:seeds=3,bnlab", "bn-placement")], (5, 20)),
    "tensorflow": ("bnlab against plain Keras on TensorFlow",
                   [alternation("bnlab,keras-tf", "bn-placement,lenet-bn,deep-mlp")], (5, 90)),
    "scratch": ("norm=\"scratch\" against norm=\"keras\" on bnlab's path",
                [alternation("bnlab:norm=scratch,bnlab:norm=keras,"
                             "bnlab:norm=scratch:gradient=closed-form",
                             arms="bn-after,bn-before,bn,keras")], (5, 90)),
    "variants": ("BN variants against their baselines",
                 [alternation(sides, "bn-placement,lenet-bn", "bn-after,keras")
                  for sides in ("bnlab:norm=renorm,keras-jax:norm=renorm",
                                "bnlab:norm=ghost,bnlab:norm=scratch")], (5, 65)),
    "seeds": ("Seeds together against one seed",
              [alternation("bnlab:seeds=5,bnlab", "bn-placement,deep-mlp,lenet-bn",
                           "bn-after,bn,scratch")], (10, 52)),
    "study": ("The batch-size study's CNN at small batches",
              [alternation("bnlab,torch", "study-cnn-batches", "bn-b2,bn-b8")], (5, 20)),
    "fold": ("Inference with BN folded away (ms per 10,000 images)",
             [alternation("fold:folded,fold:unfolded")], (5, 120)),
}


def plan(rates, sections, budget, quick):
    """{"rounds", "scale", "all", "expected", "skipped"} sized to this host and ``budget``: three
    rounds where they fit, else two; where two do not fit, the last sections give way (``fit``)."""
    # The fastest try says how fast the cores are; the load says how much of them is ours.
    share = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    slow = min(8.0, max(0.5, REFERENCE_GFLOPS / max(rates["matmul32_gflops"], 1e-3)) * share)
    scale = 1.0 if quick else min(1.0, max(0.25, 1.0 / slow))
    for rounds in (3, 2):
        expected = {name: slow * (SECTIONS[name][2][0]
                                  + SECTIONS[name][2][1] * rounds * max(scale, 0.5))
                    for name in sections}
        if quick or sum(expected.values()) <= budget:
            break
    return {"rounds": rounds, "scale": scale, "all": expected, **fit(expected, budget, quick)}


def fit(expected, budget, quick=False):
    """{"expected", "skipped"}: ``expected`` less its last sections until the rest fit."""
    kept, skipped = dict(expected), {}
    while not quick and len(kept) > 1 and sum(kept.values()) > budget:
        name = max(kept, key=list(SECTIONS).index)
        skipped[name] = (f"skipped: the sections before it fill the budget ({budget:.0f} s), "
                         f"it needs {kept.pop(name):.0f} s more")
    return {"expected": kept, "skipped": skipped}


def run(sections, sized, budget, quick):
    """Each section's answers (None where a child failed), the failures' reasons, the seconds.

    The plan is a model of the host that the sections' measured seconds correct: where those so
    far took k times their plan (0.25 ≤ k ≤ 8), so will the rest; each share assumes the sections
    after it that no longer fit are skipped (``fit``), as they are when their turn comes."""
    started, results, seconds, errors = time.monotonic(), {}, {}, {}
    pending = {name: sized["all"][name] for name in sections}
    measured = planned_so_far = 0.0  # the sections run so far: their seconds, and their plan's
    for name in sections:  # each leaves ``pending`` when its turn comes, run or skipped
        left = budget - (time.monotonic() - started)
        pace = min(8.0, max(0.25, measured / planned_so_far)) if planned_so_far else 1.0
        kept = fit({n: pace * seconds_ for n, seconds_ in pending.items()}, left, quick)["expected"]
        base = pending.pop(name)  # its plan before the correction
        planned = pace * base
        if left < 20 or (not quick and planned > left):
            errors[name] = (f"skipped: expected {planned:.0f} s at this host's pace so far "
                            f"({pace:.1f}× the plan), {max(0, left):.0f} s of the budget left")
            continue
        share = max(left * planned / max(1.0, sum(kept.values())), min(left, planned))
        log(f"[{time.monotonic() - started:5.0f} s] {name}: {SECTIONS[name][0]} "
            f"(expected {planned:.0f} s, allowed {share:.0f} s)")
        t0, results[name] = time.monotonic(), []
        for script, args, backend in SECTIONS[name][1]:
            remaining = share - (time.monotonic() - t0)
            alternating = script == "alternate.py"
            limit = budget - (time.monotonic() - started)  # the second round may use it all
            if alternating:  # no later round starts that would pass the section's share
                args = [*args, "--rounds", sized["rounds"], "--scale", sized["scale"],
                        "--budget", int(remaining), "--limit", int(limit)]
            if quick and script in ("alternate.py", "breakdown.py"):
                args = [*args, "--quick"]
            timeout = max(remaining, limit) + 60 if alternating else max(30, remaining)
            try:
                results[name].append(run_child(script, args, backend=backend, timeout=timeout))
            except Exception as exc:  # recorded, reported, and the exit code
                lines = str(exc).splitlines()
                errors[name] = next((ln for ln in lines if ln.startswith("alternate:")), lines[0])
                log(f"FAILED: {exc}")
                results[name].append(None)
        seconds[name] = time.monotonic() - t0
        measured, planned_so_far = measured + seconds[name], planned_so_far + base
    return results, errors, seconds, time.monotonic() - started


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="markdown file (default: docs/performance.md; "
                                                 "/tmp/bnlab-bench-quick.md with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks it works")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--budget", type=float, default=14.0, help="minutes (default 14)")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    if not set(sections) <= set(SECTIONS):
        parser.error(f"unknown section in {args.only!r}; known: {', '.join(SECTIONS)}")
    out = args.out or (Path("/tmp/bnlab-bench-quick.md") if args.quick
                       else ROOT / "docs" / "performance.md")
    host, rates = machine(), host_rates()
    sized = plan(rates, sections, 60 * args.budget, args.quick)
    expected = sum(sized["expected"].values())
    log(f"{'QUICK (numbers mean nothing): ' if args.quick else ''}this host multiplies at "
        f"{rates['matmul32_gflops']:.0f} GFLOP/s (32×784 @ 784×300) and copies at "
        f"{rates['copy_gbps_cache']:.0f} GB/s; {len(sized['expected'])} sections, "
        f"{sized['rounds']} rounds, expected {expected / 60:.1f} min (budget {args.budget:.0f} min)"
        + "".join(f"\n  {name} {why}" for name, why in sized["skipped"].items()))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results, errors, seconds, elapsed = run(sections, sized, 60 * args.budget, args.quick)
    text = markdown({"date": date, "machine": host, "rates": rates, "plan": sized,
                     "expected": expected, "elapsed": elapsed, "quick": args.quick,
                     "command": "python bench/run.py" + (" --quick" if args.quick else ""),
                     "titles": {name: section[0] for name, section in SECTIONS.items()},
                     "results": results, "errors": errors, "seconds": seconds})
    if not args.quick:  # the measurements made by hand, outside this run
        text += "\n" + (ROOT / "bench" / "tried.md").read_text()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)  # a reader never finds half a report
    failed = f"; {len(errors)} section(s) failed or cut short: see the report" if errors else ""
    log(f"wrote {out} in {elapsed:.0f} s (expected {expected:.0f} s){failed}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
