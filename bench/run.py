"""`make bench`: bnlab's speed measurements, side by side in one run, into docs/performance.md.

    python bench/run.py [--out docs/performance.md] [--quick] [--only SECTIONS] [--budget MIN]

It measures the host first (NumPy's matrix product and copy, ``common.host_rates``, and the load
average: the share of the cores other work leaves), sizes the sections' rounds, steps and
timeouts from that to fit ``--budget`` minutes (default 14), prints
how long it expects to take, then runs the sections one after another, each child a fresh
process (never two at once: they would share the cores). Every timing is one method, whole
processes alternated (bench/alternate.py), except the breakdown's parts (one process, scans
interleaved) and BN alone. A section that cannot finish in its share of the budget is reported
with the reason; the rest is still written. ``--quick`` runs tiny settings to check that
everything works: its numbers mean nothing, and its markdown goes to /tmp unless ``--out`` says
otherwise. Sections (``--only``, comma-separated): see SECTIONS below.
"""

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from common import ROOT, host_rates, machine, run_child
from report import markdown

ALL = "bn-placement,lenet-bn,deep-mlp,deep-cnn"
# section: (what it measures, children, seconds on the reference host: fixed + per round).
# A child is (label, script, args, backend); alternations are ("alternate", sides, args).
SECTIONS = {
    "data": ("cold and warm load of Fashion-MNIST",
             [("data", "data.py", ["--reps", 3], None)], (6, 0)),
    "check": ("parameter counts, Keras against the PyTorch twins",
              [("check", "torch_models.py", ["--check", "--json"], "torch")], (10, 0)),
    "bn": ("copy rate, then BN forward + backward alone on each backend",
           [("copy", "bn.py", ["--copy"], None)]
           + [(b, "bn.py", ["--layers"], b) for b in ("jax", "tensorflow", "torch")], (25, 0)),
    "breakdown": ("one bn-placement step in its parts, against their bounds",
                  [(f"{k} seed(s)", "breakdown.py", ["--seeds", k], None) for k in (1, 3)],
                  (90, 0)),
    "peers": ("every arm: bnlab, plain Keras on JAX, plain PyTorch",
              [("alternate", "bnlab,keras-jax,torch", ["--experiments", ALL])], (10, 75)),
    "bn-cost": ("the bn-placement arms, 3 seeds together and one seed",
                [("alternate", "bnlab:seeds=3,bnlab", ["--experiments", "bn-placement"])],
                (5, 30)),
    "tensorflow": ("bnlab against plain Keras on TensorFlow",
                   [("alternate", "bnlab,keras-tf",
                     ["--experiments", "bn-placement,lenet-bn,deep-mlp"])], (5, 60)),
    "scratch": ("norm=scratch (both gradients) against norm=keras on bnlab's path",
                [("alternate", "bnlab:norm=scratch,bnlab:norm=keras,"
                  "bnlab:norm=scratch:gradient=closed-form",
                  ["--experiments", ALL, "--arms", "bn-after,bn-before,bn,keras"])], (5, 70)),
    "variants": ("renorm against Keras's renorm, ghost against scratch",
                 [("alternate", "bnlab:norm=renorm,keras-jax:norm=renorm",
                   ["--experiments", "bn-placement,lenet-bn", "--arms", "bn-after,keras"]),
                  ("alternate", "bnlab:norm=ghost,bnlab:norm=scratch",
                   ["--experiments", "bn-placement,lenet-bn", "--arms", "bn-after,keras"])],
                 (5, 45)),
    "seeds": ("5 seeds together against one seed",
              [("alternate", "bnlab:seeds=5,bnlab",
                ["--experiments", "bn-placement,deep-mlp,lenet-bn", "--arms", "bn-after,bn,scratch"])],
              (10, 45)),
    "study": ("the study CNN at batch 2 and 8 (study-cnn-batches), bnlab against PyTorch",
              [("alternate", "bnlab,torch", ["--experiments", "study-cnn-batches", "--arms",
                                             "bn-b2,bn-b8"])],
              (5, 20)),
    "fold": ("inference with BN folded away and as trained",
             [("alternate", "fold:folded,fold:unfolded", [])], (5, 40)),
}
REFERENCE_GFLOPS = 100.0  # NumPy's 32×784 @ 784×300 on the host the seconds above were taken on


def plan(rates, sections, budget, quick):
    """{section: {"rounds", "scale", "expected"}} sized to this host and ``budget`` seconds."""
    # The fastest try says how fast the cores are; the load says how much of them is ours.
    share = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    slow = min(8.0, max(0.5, REFERENCE_GFLOPS / max(rates["matmul32_gflops"], 1e-3)) * share)
    scale = 1.0 if quick else min(1.0, max(0.25, 1.0 / slow))
    out = {}
    for rounds in (3, 2):
        out = {}
        for name in sections:
            fixed, per_round = SECTIONS[name][2]
            out[name] = {"rounds": rounds, "scale": scale,
                         "expected": slow * (fixed + per_round * rounds * max(scale, 0.5))}
        if quick or sum(p["expected"] for p in out.values()) <= budget:
            break
    return out


def run(sections, sized, budget, quick):
    """Each section's answers (None where it failed) and the reasons of the failures."""
    started, results, errors, seconds = time.monotonic(), {}, {}, {}
    total = sum(sized[s]["expected"] for s in sections)
    for name in sections:
        left = budget - (time.monotonic() - started)
        share = left * sized[name]["expected"] / max(1.0, total)
        total -= sized[name]["expected"]
        share = max(share, min(left, sized[name]["expected"]))
        print(f"[{time.monotonic() - started:5.0f} s] {name}: {SECTIONS[name][0]} "
              f"(expected {sized[name]['expected']:.0f} s, allowed {share:.0f} s)",
              file=sys.stderr, flush=True)
        t0, answers = time.monotonic(), []
        if left < 20:
            errors[name] = "skipped: the budget was spent"
            continue
        for child in SECTIONS[name][1]:
            remaining = share - (time.monotonic() - t0)
            try:
                if child[0] == "alternate":
                    args = ["--sides", child[1], *child[2], "--rounds", sized[name]["rounds"],
                            "--scale", sized[name]["scale"], "--budget", int(remaining)]
                    answers.append(run_child("alternate.py", args + (["--quick"] if quick else []),
                                             timeout=remaining + 60))
                else:
                    label, script, args, backend = child
                    answers.append(run_child(script, [*args] + (["--quick"] if quick and script
                                                                   == "breakdown.py" else []),
                                             backend=backend, timeout=max(30, remaining)))
            except Exception as exc:  # recorded, reported, and the exit code
                lines = str(exc).splitlines()
                errors[name] = next((ln for ln in lines if ln.startswith("alternate:")), lines[0])
                print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
                answers.append(None)
        results[name] = answers
        seconds[name] = time.monotonic() - t0
    return results, errors, seconds, time.monotonic() - started


def write_atomically(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="markdown file (default: docs/performance.md; "
                             "/tmp/bnlab-bench-quick.md with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks it works")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--budget", type=float, default=14.0, help="minutes (default 14)")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
    out_path = args.out or ("/tmp/bnlab-bench-quick.md" if args.quick
                            else str(ROOT / "docs" / "performance.md"))
    rates = host_rates()
    budget = 60 * args.budget
    sized = plan(rates, sections, budget, args.quick)
    expected = sum(p["expected"] for p in sized.values())
    print(f"bnlab bench{' (QUICK: numbers mean nothing)' if args.quick else ''}: this host "
          f"multiplies at {rates['matmul32_gflops']:.0f} GFLOP/s (32×784 @ 784×300) and copies "
          f"at {rates['copy_gbps_cache']:.0f} GB/s; {len(sections)} sections, "
          f"{sized[sections[0]]['rounds']} rounds, expected {expected / 60:.1f} min "
          f"(budget {args.budget:.0f} min)", file=sys.stderr, flush=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results, errors, seconds, elapsed = run(sections, sized, budget, args.quick)
    text = markdown({"date": date, "machine": machine(), "rates": rates, "plan": sized,
                     "expected": expected, "elapsed": elapsed, "quick": args.quick,
                     "command": "python bench/run.py" + (" --quick" if args.quick else ""),
                     "results": results, "errors": errors, "seconds": seconds,
                     "titles": {k: v[0] for k, v in SECTIONS.items()}})
    if not args.quick:  # the measurements made by hand, outside this run
        text += "\n" + (ROOT / "bench" / "tried.md").read_text()
    write_atomically(out_path, text)
    print(f"bench: wrote {out_path}; {elapsed:.0f} s ({elapsed / 60:.1f} min), expected "
          f"{expected:.0f} s", file=sys.stderr)
    if errors:
        print(f"bench: {len(errors)} section(s) failed or were cut short; see the report",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
