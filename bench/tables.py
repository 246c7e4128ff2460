"""The report of `make bench`: the issue's goals, met or not, and the tables, as markdown.

Input: the dict bench/run.py collects (each child's JSON answer, the machine, the plan). Every
ratio divides two numbers of the same run. Nothing here measures anything.
"""

from flops import train_flops

GOAL_SCRATCH = 1.05  # (a) scratch / keras time, per training step
GOAL_VARIANT = 1.10  # issue 8 §5: renorm / Keras's renorm, ghost / scratch, per training step
GOAL_MULTI = 2.0     # (c) K seeds together / one seed
GOAL_RATE = 0.40     # (c) MLP experiments' share of the measured matrix-product rate
GOAL_CONV_SEEDS = 2.5  # issue 10 §3: 5 LeNet seeds together / one seed
GOAL_STUDY = 0.5       # issue 10 §3: the study CNN at batch 2 and 8, bnlab / PyTorch per step

def rows(results, experiment, path):
    answer = results["epochs"].get(experiment, {}).get(path) or {}
    return {row["arm"]: row for row in answer.get("results", [])}


def seed_runs(results, experiment, arm):
    """bnlab's (one-seed row, K-seed row ``arm×K``) of ``arm`` in the epoch table; None if absent."""
    got = rows(results, experiment, "bnlab")
    multi = next((r for label, r in got.items() if label.startswith(arm + "×")), None)
    return got.get(arm), multi


def is_arm(label):
    """An experiment's own arm, not a K-seed run ``a×K``."""
    return "×" not in label


def per(row):
    """Steady-state seconds per epoch, or per step for a step experiment."""
    return row.get("seconds_per_epoch") or row.get("seconds_per_step")


def gflops(row):
    examples = row["train_examples"] if "seconds_per_epoch" in row else row["batch_size"]
    return train_flops(row["model"]) * examples * row["seeds"] / per(row) / 1e9


def matmul_rate(results):
    peak = results.get("peak") or {}
    return peak.get("measured", {}).get("square", {}).get("gflops")


def fmt_time(row):
    if not row:
        return "—"
    if "seconds_per_step" in row:
        return (f"{row['seconds_per_step'] * 1e3:.1f} ms/step ≈ "
                f"{row['seconds_per_step'] * row['steps_per_epoch']:.1f} s/epoch of "
                f"{row['steps_per_epoch']} steps (first chunk {row['first_seconds']:.1f} s)")
    return f"{row['seconds_per_epoch']:.2f} s (first {row['first_seconds']:.2f} s)"


def ratio(a, b):
    return f"{per(a) / per(b):.2f}×" if a and b else "—"


def alternated(results):
    """{(experiment, arm): row} of bench/alternate.py's answer (empty when it did not run)."""
    answer = results.get("alternate") or {}
    return {(r["experiment"], r["arm"]): r for r in answer.get("rows", [])}


def fmt_spread(r):
    """A ratio's median over the rounds and its min-max: the method's spread."""
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def win(r):
    """Faster, slower or a tie, judged against the spread: a side wins only where every round
    says so (the ratios' whole min-max range on one side of 1)."""
    if r["max"] < 1.0:
        return "bnlab faster in every round"
    if r["min"] > 1.0:
        return "bnlab slower in every round"
    return "within the spread (no winner)"


def verdict(ok):

    return "**met**" if ok else "**not met**"


def goals(results):
    """[(goal, met, details)] for (a), (b), (c), issue 8 §5 and issue 10 §3."""
    out = []
    # (a) scratch vs keras: training steps timed in alternation (bench/scratch_cost.py)
    lines, ok = [], bool(results.get("scratch"))
    for row in results.get("scratch") or []:
        ok &= row["ratio"] <= GOAL_SCRATCH
        lines.append(f"{row['model']} ({row['arm']}): scratch / keras = {row['ratio']:.3f} "
                     f"(median of {row['reps']} adjacent pairs of {row['steps']}-step blocks, "
                     f"ABBA order; medians {row['scratch_ms']:.2f} vs {row['keras_ms']:.2f} "
                     f"ms/step)")
    out.append(("(a) a training step with norm=\"scratch\" within 1.05× of norm=\"keras\" "
                "(default backend)", ok, lines or ["not measured"]))
    # issue 8 §5: the variants against their baselines (bench/variant_cost.py)
    lines, ok = [], bool(results.get("variants"))
    for row in results.get("variants") or []:
        ok &= row["ratio"] <= GOAL_VARIANT
        first, second = row["pair"].split(" / ")
        lines.append(f"{row['model']}: {row['pair']} = {row['ratio']:.3f} (spread "
                     f"{row['spread']:.3f}, median of {row['reps']} ABBA pairs of "
                     f"{row['steps']}-step blocks; {row[first + '_ms']:.2f} vs "
                     f"{row[second + '_ms']:.2f} ms/step)")
    out.append(("(§5) norm=\"renorm\" within 1.10× of Keras's renorm=True layer, norm=\"ghost\" "
                "within 1.10× of norm=\"scratch\" (default backend)", ok,
                lines or ["not measured"]))
    # (b) bnlab at most the faster of keras-tf and torch, every arm. Against PyTorch the
    # alternated processes (bench/alternate.py) decide when they ran; against Keras-on-TF the
    # epoch tables.
    lines, ok = [], True
    alt = alternated(results)
    for experiment in results["epochs"]:
        b, t, p = (rows(results, experiment, x) for x in ("bnlab", "keras-tf", "torch"))
        for arm in dict.fromkeys(a for x in (b, t, p) for a in x if is_arm(a)):
            if not (arm in b and arm in t and arm in p):
                ok = False
                lines.append(f"{experiment} {arm}: not measured on every path")
                continue
            tf_ratio, torch_epochs = per(b[arm]) / per(t[arm]), per(b[arm]) / per(p[arm])
            pair = alt.get((experiment, arm), {}).get("ratio", {}).get("torch")
            torch_ratio = pair["median"] if pair else torch_epochs
            ok &= max(tf_ratio, torch_ratio) <= 1.0
            how = (f"{fmt_spread(pair)} over alternated processes; {torch_epochs:.2f} from the "
                   f"epoch table" if pair else "epoch table")
            lines.append(f"{experiment} {arm}: bnlab / keras-tf = {tf_ratio:.2f}, "
                         f"bnlab / torch = {torch_ratio:.2f} ({how})")
    ok &= bool(lines)
    lines = lines or ["not measured"]
    out.append(("(b) bnlab ≤ the faster of Keras-on-TF and plain PyTorch, every arm", ok, lines))
    # §5: bnlab's default path at most 1.0x plain Keras 3 on JAX (Keras's own layers, fit)
    lines, ok = [], True
    for (experiment, arm), row in alt.items():
        r = row["ratio"].get("keras-jax")
        if r is not None:
            ok &= r["median"] <= 1.0
            lines.append(f"{experiment} {arm}: bnlab / Keras-on-JAX = {fmt_spread(r)}: "
                         f"{win(r)}")
    out.append(("(§5) bnlab's default path ≤ 1.0× plain Keras 3 on JAX (Keras's own layers, "
                "`fit`), every arm, alternated processes", ok and bool(lines),
                lines or ["not measured"]))
    # (c) K seeds together: ≤ 2× one seed, and ≥ 40 % of the matrix-product rate
    lines, ok, rate = [], True, matmul_rate(results)
    for experiment, arm in results.get("multi_seed", {}).items():
        one, multi = seed_runs(results, experiment, arm)
        if not (multi and one and rate):
            ok = False
            lines.append(f"{experiment} {arm}: not measured")
            continue
        r, share = per(multi) / per(one), gflops(multi) / rate
        # The ratio K seeds would reach if every FLOP of theirs ran at the measured
        # matrix-product rate: no program can go below it on this machine.
        bound = gflops(multi) * per(multi) / rate / per(one)
        ok &= r <= GOAL_MULTI and share >= GOAL_RATE
        lines.append(f"{experiment} {arm}, {multi['seeds']} seeds / 1 seed: {r:.2f}× "
                     f"(goal ≤ {GOAL_MULTI:.0f}×; {bound:.2f}× if all {multi['seeds']} seeds' "
                     f"FLOPs ran at the measured matrix-product rate); {gflops(multi):.1f} "
                     f"GFLOP/s = {100 * share:.0f} % of {rate:.0f} (goal ≥ "
                     f"{100 * GOAL_RATE:.0f} %)")
    out.append(("(c) K seeds as one program: 5 seeds ≤ 2× one seed, MLPs ≥ 40 % of the "
                "matrix-product rate", ok and bool(lines), lines))
    # issue 10 §3: K LeNet seeds together (--path together) ≤ 2.5× one seed
    lines, ok = [], True
    for experiment, arm in results.get("conv_seeds", {}).items():
        one, multi = seed_runs(results, experiment, arm)
        if not (multi and one):
            ok = False
            lines.append(f"{experiment} {arm}: not measured")
            continue
        r = per(multi) / per(one)
        ok &= r <= GOAL_CONV_SEEDS
        lines.append(f"{experiment} {arm}, {multi['seeds']} seeds together ({multi['path']}) / "
                     f"1 seed ({one['path']}): {r:.2f}× (goal ≤ {GOAL_CONV_SEEDS}×)")
    out.append(("(issue 10 §3) 5 LeNet seeds together ≤ 2.5× one seed", ok and bool(lines),
                lines or ["not measured"]))
    # issue 10 §3: the study CNN at small batches, bnlab ≤ 0.5× PyTorch
    lines, ok = [], True
    for r in (results.get("study") or {}).get("rows", []):
        t = r["ratio"]["torch"]
        ok &= t["median"] <= GOAL_STUDY
        lines.append(f"{r['experiment']} {r['arm']}: bnlab / PyTorch = {fmt_spread(t)} "
                     f"(goal ≤ {GOAL_STUDY}×): {win(t)}")
    out.append(("(issue 10 §3) the study CNN at batch 2 and 8: bnlab ≤ 0.5× plain PyTorch, "
                "alternated processes", ok and bool(lines), lines or ["not measured"]))
    return out


def _table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return lines + [""]


def epoch_tables(results):
    times, rates, rate = [], [], matmul_rate(results)
    theoretical = (results.get("peak") or {}).get("theoretical", {}).get("gflops")
    alt = alternated(results)
    for experiment in results["epochs"]:
        b, t, p = (rows(results, experiment, x) for x in ("bnlab", "keras-tf", "torch"))
        for arm, row in b.items():
            best = min([per(x[arm]) for x in (t, p) if arm in x], default=None)
            goal = "—" if best is None else ("met" if per(row) <= best else "not met")
            jax = alt.get((experiment, arm), {})
            jax_ms = jax.get("ms", {}).get("keras-jax")
            jax_ratio = jax.get("ratio", {}).get("keras-jax")
            jax_goal = "—" if not jax_ratio else ("met" if jax_ratio["median"] <= 1.0
                                                  else "not met")
            times.append([experiment, arm + (f" ({row['path']})" if "×" in arm else ""),
                          fmt_time(row), fmt_time(t.get(arm)), fmt_time(p.get(arm)),
                          f"{jax_ms['median']:.2f} ms/step" if jax_ms else "—",
                          ratio(row, t.get(arm)), ratio(row, p.get(arm)),
                          f"{fmt_spread(jax_ratio)}×" if jax_ratio else "—", goal, jax_goal])
            cells = [f"{gflops(x[arm]):.1f}" if arm in x else "—" for x in (b, t, p)]
            rates.append([experiment, arm, f"{train_flops(row['model']) / 1e6:.2f}", *cells,
                          f"{100 * gflops(row) / rate:.0f} %" if rate else "—",
                          f"{100 * gflops(row) / theoretical:.0f} %" if theoretical else "—"])
    out = _table(["experiment", "arm", "bnlab", "Keras on TF", "PyTorch",
                  "Keras on JAX (alternated)", "bnlab ÷ TF", "bnlab ÷ torch",
                  "bnlab ÷ Keras-JAX, median [min-max] of rounds", "goal (b)",
                  "goal ≤ 1.0× Keras-JAX"], times)
    out += ["Achieved training GFLOP/s (FLOPs per example × examples per second):", ""]
    return out + _table(["experiment", "arm", "MFLOP/example", "bnlab", "Keras on TF", "PyTorch",
                         "bnlab % of matmul rate", "bnlab % of theoretical"], rates)


def alternate_table(results, key="alternate"):
    """bench/alternate.py's rows: each side's ms/step and bnlab ÷ each peer, with the spread."""
    answer = results[key]
    sides = answer["sides"]
    checked = [s for s in ("bnlab", "torch") if s in sides]
    body = []
    for r in answer["rows"]:
        ms = [f"{r['ms'][s]['median']:.2f} [{r['ms'][s]['min']:.2f}-{r['ms'][s]['max']:.2f}]"
              for s in sides]
        body.append([r["experiment"], r["arm"], *ms,
                     *(f"{fmt_spread(r['ratio'][s])}: {win(r['ratio'][s])}" for s in sides[1:]),
                     *(epoch_check(results, r, s) for s in checked)])
    return _table(["experiment", "arm", *(f"{s} ms/step" for s in sides),
                   *(f"bnlab ÷ {s}" for s in sides[1:]),
                   *(f"{s}: ÷ its epoch-table step" for s in checked)], body)


def epoch_check(results, row, side):
    """A side's alternated ms/step divided by its ms/step in the epoch table (its own process,
    whole epochs): near 1 when neither measurement slowed the side."""
    epoch = rows(results, row["experiment"], side).get(row["arm"])
    if not epoch:
        return "—"
    step_ms = 1000 * (epoch.get("seconds_per_step")
                      or epoch["seconds_per_epoch"] / epoch["steps_per_epoch"])
    return f"{row['ms'][side]['median'] / step_ms:.2f}"


def bn_table(results):
    copy = results.get("copy") or {}
    main = copy.get("main_memory", {}).get("gbps")
    body, by_key = [], {(r["backend"], r["layer"], tuple(r["shape"])): r for r in results["bn"]}
    for r in results["bn"]:
        cache = copy.get("x".join(map(str, r["shape"])), {}).get("gbps")
        keras_row = by_key.get((r["backend"], "keras.layers.BatchNormalization", tuple(r["shape"])))
        vs = (f"{r['seconds'] / keras_row['seconds']:.2f}×"
              if keras_row and r["layer"].startswith("bnlab") else "")
        body.append([r["backend"], r["layer"], "×".join(map(str, r["shape"])),
                     f"{r['seconds'] * 1e6:.0f}", f"{r['gbps']:.1f}",
                     f"{100 * r['gbps'] / cache:.0f} %" if cache else "—",
                     f"{100 * r['gbps'] / main:.0f} %" if main else "—", vs])
    head = []
    if copy:
        head = ["Memory-copy bandwidth measured in the same run (numpy `copyto`, counted as read "
                "+ write); the percentages below are of the all-cores numbers:", ""]
        head += _table(["copy", "size", "one thread GB/s", f"{copy['cores']} cores GB/s"],
                       [["main memory" if k == "main_memory" else "in cache",
                         f"{v['bytes'] / 2**20:.1f} MB", f"{v['gbps_1']:.1f}", f"{v['gbps']:.1f}"]
                        for k, v in copy.items() if k != "cores"])
    return head + _table(["backend", "layer", "shape", "µs", "GB/s", "% of in-cache copy",
                          "% of main-memory copy", "time ÷ Keras BN"], body)


def other_tables(results):
    out = []
    data = results.get("data")
    if data:
        out += ["## Data: Fashion-MNIST load", ""]
        out += _table(["load", "load() seconds", "process seconds", "runs", "source"],
                      [[k, f"{v['load_seconds']:.3f}", f"{v['process_seconds']:.2f}", v["reps"],
                        v["source"]] for k, v in data.items()])
    check = results.get("check")
    if check:
        out += ["## Models: parameter counts (total, trainable, non-trainable), Keras vs PyTorch",
                ""]
        out += _table(["experiment", "arm", "Keras", "PyTorch", "forward MACs", "agree"],
                      [[r["experiment"], r["arm"], tuple(r["keras"]), tuple(r["torch"]),
                        f"{r['macs']:,}", "yes" if r["ok"] else "**NO**"] for r in check["rows"]])
    return out


def _above_peak(measured, theoretical):
    if measured <= theoretical["gflops"]:
        return ""
    ghz = measured / (theoretical["cores"] * theoretical["flop_per_cycle"])
    return (f" The measured rate is above it: the cores run faster than the nominal clock, at "
            f"least {ghz:.2f} GHz at {theoretical['flop_per_cycle']} FLOP/cycle.")


def markdown(results):
    m, plan = results["machine"], results["plan"]
    title = "# bnlab performance" + (" — QUICK CHECK, numbers mean nothing" if results["quick"]
                                     else "")
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    out = [title, "",
           f"Measured {results['date']} with `{results['command']}` in {results['elapsed']:.0f} s "
           f"({results['elapsed'] / 60:.1f} min).", "",
           f"Machine: {m['cpu']} (family {m['family']}, model {m['model']}), {m['cores']} cores, "
           f"{m['memory_gib']} GiB, Linux {m['kernel']}. {versions}.", "",
           f"Plan: epochs over the whole training split per arm, the first one reported apart "
           f"({', '.join(f'{k} {v}' for k, v in plan['epochs'].items())}); deep-cnn "
           f"{plan['steps']} steps in chunks of {plan['chunk']} (the first chunk apart); "
           f"{plan['seeds']} seeds for the multi-seed runs"
           + (f", training splits cut to {plan['limit']} images" if plan["limit"] else "") + ".",
           "", "## Goals", ""]
    for goal, ok, lines in goals(results):
        out += [f"- {goal}: {verdict(ok)}"] + [f"  - {line}" for line in lines]
    out.append("")
    if results["epochs"]:
        out += ["## Training: steady-state time per epoch (per step for deep-cnn)", "",
                "Each cell: the mean of the epochs after the first, then the first (compiling) "
                "epoch, or chunk of steps, apart. Ratios < 1 mean bnlab is faster.", ""]
        out += epoch_tables(results)
    if results.get("alternate"):
        out += ["## Head to head: whole processes alternated", "",
                f"ms per training step, median [min-max] over {results['alternate']['rounds']} "
                "rounds; in each round one fresh process per side, alone on the cores, the "
                "sides' order reversed every round; each process reports the median of its timed "
                "blocks after a warm-up block (bench/alternate.py, bench/steps.py). A ratio "
                "counts as a win only where every round agrees (its min-max range excludes 1). The "
                "last columns check each side against itself: its alternated ms/step ÷ its step "
                "in the epoch table (its own process, whole epochs), near 1 where neither "
                "measurement slowed it.",
                ""]
        out += alternate_table(results)
    if results.get("study"):
        out += ["## The study CNN at small batches: bnlab against PyTorch", "",
                "The batch-size study's CNN with BN at batch 2 and 8 (issue 10 §3), alternated as "
                "above: ms per training step, median [min-max] over "
                f"{results['study']['rounds']} rounds.", ""]
        out += alternate_table(results, "study")
    if results.get("fold"):
        out += ["## Inference with BN folded away (bnlab.tools.fold)", "",
                "ms per 10,000 images (`predict`, batches of 500); ratio = the median of the "
                "adjacent pairs' folded / unfolded ratios (ABBA order).", ""]
        out += _table(["model", "placement", "layers", "folded ms", "unfolded ms",
                       "folded ÷ unfolded", "pairs"],
                      [[r["model"], r["placement"], f"{r['layers']} → {r['folded_layers']}",
                        f"{r['folded_ms']:.0f}", f"{r['unfolded_ms']:.0f}", f"{r['ratio']:.3f}",
                        r["reps"]] for r in results["fold"]])
    peak = results.get("peak")
    if peak:
        mm = peak["measured"]
        out += ["## Peak", "",
                f"- Measured matrix-product rate (JAX, jitted float32 {mm['n']}×{mm['n']} @ "
                f"{mm['n']}×{mm['n']}, median): **{mm['square']['gflops']:.1f} GFLOP/s**; the "
                f"batch-32 product of the MLP's first layer (32×784 @ 784×300): "
                f"{mm['batch32']['gflops']:.1f} GFLOP/s.",
                f"- Theoretical FP32 peak: {peak['theoretical']['derivation']}."
                + _above_peak(mm["square"]["gflops"], peak["theoretical"]),
                "- The goals use the measured rate: the clock above is the nominal one, and what "
                "XLA's matrix product reaches is what a training step can hope for.", ""]
    if results["bn"]:
        out += ["## BN alone: forward + backward, training mode", ""] + bn_table(results)
    out += other_tables(results)
    paths = sorted({r["path"] for e in results["epochs"]
                    for r in rows(results, e, "bnlab").values()})
    out += ["## How each number is measured", "", *METHOD, ""]
    out[out.index(METHOD[1])] = METHOD[1].replace("PATHS", ", ".join(paths) or "none measured")
    if results["errors"]:
        out += ["## Failed measurements", ""] + [f"- `{e.splitlines()[0]}`" for e in
                                                 results["errors"]] + [""]
    if results["section_seconds"]:
        out += ["Seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                     results["section_seconds"].items()) + ".", ""]
    return "\n".join(out)


METHOD = [
    "- Every measurement runs in a fresh process (Keras fixes its backend per process), one "
    "after another; all numbers of this page come from one run. The machine must be otherwise "
    "idle: PyTorch's two OpenMP threads in particular slow down many times over when anything "
    "else takes a core.",
    "- **bnlab**: whatever `bench/epochs.py:bnlab_epoch_times` runs; in this run: PATHS "
    "(keras-fit = `bnlab.lab.train.run_trial`, Keras `fit`, on the backend bnlab picks, JAX's "
    "compilation cache on as in `bnlab run`). **Keras on TF**: `run_trial` with "
    "KERAS_BACKEND=tensorflow. **PyTorch**: `bench/torch_models.py`, the same model in "
    "`torch.nn` (NCHW for the conv models), same batch size, optimizer (RMSprop rho 0.9, eps "
    "1e-7; Adam eps 1e-7, as Keras), data and per-epoch shuffling, eager, all cores.",
    "- Epoch experiments: full epochs over the whole training split, every batch (the last "
    "partial one too). deep-cnn: seconds per step after the first chunk of steps. The timed "
    "runs have no validation split (validation is never timed). The test split is cut to 500 "
    "images (evaluated once, never timed) and the seeds' untimed extras are off.",
    "- FLOPs: 2 × MACs of the Dense and Conv layers per example, × 3 for forward + backward; "
    "BN, activations, pooling, loss and optimizer are not counted (bench/flops.py).",
    "- Goal (a): each BN model built with `norm=\"keras\"` and with `norm=\"scratch\"` in one "
    "process, trained on the same block of batches with `fit`; 9 pairs of adjacent blocks after "
    "a warm-up, in ABBA order, and the median of the pairs' ratios (bench/scratch_cost.py). "
    "Sequential measurements of separate arms swing by ±20 % on this machine; pairing cancels "
    "that drift.",
    "- §5 variants: the BN-after MLP and LeNet built with `norm=\"renorm\"` and, from the same "
    "model, Keras's own `BatchNormalization(renorm=True)` with the same arguments and weights; "
    "and with `norm=\"ghost\"` and `norm=\"scratch\"`; timed as goal (a) "
    "(bench/variant_cost.py).",
    "- Head to head (goal (b) against PyTorch; plain Keras 3 on JAX): bench/alternate.py runs "
    "one fresh process per side (bench/steps.py), one after another, the order reversed every "
    "round (ABC CBA ABC); each trains every arm's model on the same first batches, one warm-up "
    "block, then 3 timed blocks (200 steps for the MLPs, 60 for LeNet, 15 for the deep CNN), "
    "and reports the median block. bnlab: `recipe.compile_model` trained the way `bnlab run "
    "--seeds 1` trains it (the MLPs' steps in one compiled `lax.scan`, the conv models with "
    "`fit`), XLA's options as it sets them; Keras on JAX: the same architecture cloned into Keras's "
    "own layers (Conv2D, MaxPooling2D, BatchNormalization for every BN arm), `fit`, XLA's "
    "defaults. The min-max of the per-round ratios is the method's spread. (The old "
    "one-process pairing slowed PyTorch 2.1×: bench/tried.md.) Keras-on-TF is compared through "
    "the epoch tables.",
    "- BN alone: median of many calls; bytes = 5 × N × 4 + 32 × C, the minimal traffic "
    "(bench/bn.py). Copy bandwidth measured in the same run with numpy.",
    "- Data: `bnlab.data.load(\"fashion_mnist\")` in a new process; cold = empty bnlab cache "
    "(the OS file cache is not dropped), warm = bnlab's parsed-array cache filled.",
]
