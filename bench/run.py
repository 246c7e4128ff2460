"""`make bench`: bnlab's speed measurements, side by side in one run, into docs/performance.md.

    python bench/run.py [--out docs/performance.md] [--quick] [--only SECTIONS]

Runs, one after another (never two at once: they would share the 2 cores), each in a fresh
process:
  data       cold and warm load of Fashion-MNIST (bench/data.py)
  check      parameter counts Keras vs the plain PyTorch twins, FLOPs vs module shapes
             (bench/torch_models.py --check)
  peak       the measured matrix-product rate (JAX) and the theoretical FP32 peak (bench/flops.py)
  bn         copy bandwidth, then BN forward + backward on jax, tensorflow, torch (bench/bn.py)
  scratch    goal (a): training steps of each BN model with norm="keras" and norm="scratch",
             timed in alternation in one process (bench/scratch_cost.py)
  variants   issue 8 §5: norm="renorm" vs Keras's renorm=True layer, norm="ghost" vs
             norm="scratch", training steps timed in alternation (bench/variant_cost.py)
  fold       inference per 10,000 images with BN folded away / as trained (bench/fold.py)
  alternate  the head to head: every arm on bnlab's default path, plain Keras 3 on JAX (Keras's
             own layers, `fit`) and plain PyTorch, one fresh process per side, the sides'
             order reversed every round (bench/alternate.py, bench/steps.py)
  study      issue 10 §3: the batch-size study's CNN at batches 2 and 8, bnlab against plain
             PyTorch, alternated the same way
  <experiment>  for each experiment: its arms on bnlab's path (and, for the MLP experiments and
             LeNet, K seeds of one arm given to bnlab's path at once), then on Keras-on-TensorFlow,
             then on plain PyTorch (bench/epochs.py)
then prints the tables, marks the issue's goals met / not met with their numbers, and writes the
markdown atomically. ``--quick`` runs tiny settings (1,024 training images, 2 epochs, a few
steps, few repetitions) to check that everything works; its numbers mean nothing, and its
markdown goes to /tmp unless ``--out`` says otherwise. ``--only`` takes a comma-separated list
of the sections above (default: all).
"""

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from common import ROOT, machine, run_child
from tables import markdown

# The amounts of work, planned to fit 20 minutes on 2 cores, idle. Estimate: the sections of
# the 12:33 UTC run (data ... scratch, the experiments' epochs) took 11 min (docs/performance.md
# gives each section's seconds); `alternate` runs 3 rounds × 3 processes, each about 15-20 s of
# imports and compiling (JAX's compilation cache warm) plus 11 arms × 4 blocks of 0.2-0.5 s:
# about 6-8 min; `variants` and `fold` add their own (see their scripts). Not yet timed whole:
# the machine was shared while `alternate` was written. An epoch is always a full pass over the
# training split. bnlab's arms get 3 epochs (2 steady ones: goals (a) and (c) compare bnlab runs
# within 5 %); Keras-on-TF (4-12 s per epoch here) and PyTorch get 2.
FULL = {"epochs": {"bnlab": 3, "keras-tf": 2, "torch": 2}, "steps": 125, "chunk": 25,
        "limit": None, "seeds": 5, "bn_reps": 300, "data_reps": 3, "matmul_n": 2048,
        "matmul_reps": 7, "rounds": 3, "timeout": 600}
QUICK = {"quick": True, "epochs": {"bnlab": 2, "keras-tf": 2, "torch": 2}, "steps": 10, "chunk": 5,
         "limit": 1024, "seeds": 5, "bn_reps": 20, "data_reps": 1, "matmul_n": 512,
         "matmul_reps": 3, "rounds": 2, "timeout": 300}
EXPERIMENTS = ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn")
# K seeds of one arm trained together (goal c), measured for each MLP experiment.
MULTI_SEED = {"bn-placement": "bn-after", "deep-mlp": "bn"}
# Issue 10 §3: K seeds of LeNet together (`--path together`) against one seed.
CONV_SEEDS = {"lenet-bn": "scratch"}
# Issue 10 §3: the study CNN at the batch-size study's smallest batches, bnlab against PyTorch.
STUDY_ARMS = "bn-b2,bn-b8"
PATHS = (("bnlab", None), ("keras-tf", "tensorflow"), ("torch", None))
SECTIONS = ("data", "check", "peak", "bn", "scratch", "variants", "fold", "alternate",
            "study") + EXPERIMENTS


def epoch_args(plan, experiment, path):
    args = ["--path", path, "--experiment", experiment, "--epochs", plan["epochs"][path],
            "--steps", plan["steps"], "--chunk", plan["chunk"]]
    if plan["limit"]:
        args += ["--limit", plan["limit"]]
    if path == "bnlab":
        if experiment in MULTI_SEED:
            args += ["--multi", f"{MULTI_SEED[experiment]}:{plan['seeds']}"]
        if experiment in CONV_SEEDS:
            args += ["--multi", f"{CONV_SEEDS[experiment]}:{plan['seeds']}", "--together"]
    return args


class Runner:
    """Runs the sections in order, keeps every answer, and never lets one failure stop the run."""

    def __init__(self, plan):
        self.plan, self.started = plan, time.perf_counter()
        self.errors, self.section_seconds = [], {}

    def elapsed(self):
        return time.perf_counter() - self.started

    def child(self, label, script, args=(), backend=None, env=None):
        print(f"[{self.elapsed():6.0f} s] {label}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            return run_child(script, args, backend=backend, env=env,
                             timeout=self.plan["timeout"])
        except Exception as exc:  # recorded, shown in the report, and the exit code
            self.errors.append(f"{label}: {exc}")
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
            return None
        finally:
            self.section_seconds[label] = time.perf_counter() - t0


def run(plan, sections):
    r = Runner(plan)
    out = {"epochs": {}, "bn": []}
    if "data" in sections:
        out["data"] = r.child("data: cold and warm load of Fashion-MNIST", "data.py",
                              ["--reps", plan["data_reps"]])
    if "check" in sections:  # the torch backend builds the Keras models without compiling
        out["check"] = r.child("check: parameter counts Keras vs PyTorch", "torch_models.py",
                               ["--check", "--json"], backend="torch")
        if out["check"] and not out["check"]["ok"]:
            r.errors.append("check: a PyTorch twin disagrees with its Keras model (see the table)")
    if "peak" in sections:
        out["peak"] = r.child("peak: matrix-product rate (JAX)", "flops.py",
                              ["--peak", "--n", plan["matmul_n"], "--reps", plan["matmul_reps"]],
                              backend="jax")
    if "bn" in sections:
        copy = r.child("bn: memory-copy bandwidth", "bn.py", ["--copy", "--reps", plan["bn_reps"]])
        out["copy"] = copy and copy["copy"]
        for backend in ("jax", "tensorflow", "torch"):
            answer = r.child(f"bn: BN forward + backward on {backend}", "bn.py",
                             ["--layers", "--reps", plan["bn_reps"]], backend=backend)
            out["bn"] += answer["rows"] if answer else []
    if "scratch" in sections:
        out["scratch"] = []
        for models in ("dense", "conv"):  # each in a process set up as `bnlab run` trains it
            answer = r.child(f"scratch: {models} models, norm=keras and norm=scratch alternating",
                             "scratch_cost.py",
                             ["--models", models] + (["--quick"] if plan.get("quick") else []))
            out["scratch"] += answer["rows"] if answer else []
    if "variants" in sections:
        out["variants"] = []
        for models in ("dense", "conv"):
            answer = r.child(f"variants: {models} models, renorm and ghost against their baselines",
                             "variant_cost.py",
                             ["--models", models] + (["--quick"] if plan.get("quick") else []))
            out["variants"] += answer["rows"] if answer else []
    if "fold" in sections:
        answer = r.child("fold: inference, BN folded and not, alternating", "fold.py",
                         ["--quick"] if plan.get("quick") else [])
        out["fold"] = answer["rows"] if answer else []
    if "alternate" in sections:
        answer = r.child("alternate: bnlab, Keras on JAX and PyTorch, whole processes in turn",
                         "alternate.py", ["--rounds", plan["rounds"]]
                         + (["--quick"] if plan.get("quick") else []))
        out["alternate"] = answer
    if "study" in sections:
        out["study"] = r.child(f"study: the study CNN at batches {STUDY_ARMS}, bnlab and PyTorch, "
                               "whole processes in turn", "alternate.py",
                               ["--sides", "bnlab,torch", "--experiments", "study-cnn-batches",
                                "--arms", STUDY_ARMS, "--rounds", plan["rounds"]]
                               + (["--quick"] if plan.get("quick") else []))
    for experiment in EXPERIMENTS:
        if experiment not in sections:
            continue
        for path, backend in PATHS:
            answer = r.child(f"{experiment}: {path}", "epochs.py",
                             epoch_args(plan, experiment, path), backend=backend)
            if answer:
                out["epochs"].setdefault(experiment, {})[path] = answer
    out["errors"], out["elapsed"], out["section_seconds"] = r.errors, r.elapsed(), r.section_seconds
    return out


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
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
    out_path = args.out or ("/tmp/bnlab-bench-quick.md" if args.quick
                            else str(ROOT / "docs" / "performance.md"))
    plan = QUICK if args.quick else FULL
    print(f"bnlab bench{' (QUICK: tiny settings, numbers mean nothing)' if args.quick else ''}: "
          f"{', '.join(sections)}", file=sys.stderr, flush=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = run(plan, sections)
    results.update(date=date, machine=machine(), plan=plan, quick=args.quick,
                   command="make bench" if not args.quick else "python bench/run.py --quick",
                   multi_seed=MULTI_SEED, conv_seeds=CONV_SEEDS)
    text = markdown(results)
    if not args.quick:  # the measurements made by hand, outside this run, kept in bench/tried.md
        text += "\n" + (ROOT / "bench" / "tried.md").read_text()
    print(text)
    write_atomically(out_path, text)
    print(f"bench: wrote {out_path}; elapsed {results['elapsed']:.0f} s "
          f"({results['elapsed'] / 60:.1f} min)", file=sys.stderr)
    if results["errors"]:
        print(f"bench: {len(results['errors'])} measurement(s) failed; see the report",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
