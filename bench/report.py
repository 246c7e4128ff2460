"""`make bench`'s report as markdown: the goals (bench/goals.py), met or not, and the tables."""

from bn import FLOOR, NATIVE
from common import BENCH, BESIDE, fmt, spread
from goals import GOALS

# The sections in the report's order; those not in SECTION_WRITERS show their alternations' tables.
ORDER = ("peers", "breakdown", "bn", "bn-cost", "tensorflow", "scratch", "variants", "seeds",
         "study", "fold", "data", "check")


def table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body] + [""]


def win(r, limit=1.0):
    """Against ``limit``: a side wins only where every round says so."""
    return ("every round" if r["max"] <= limit
            else "no round" if r["min"] > limit else "within the spread")


def answers(results, section, i=0):
    got = results["results"].get(section) or []
    return got[i] if len(got) > i else None


def rows(results, section, i=0):
    return (answers(results, section, i) or {}).get("rows", [])


def rates_text(rates):
    return (f"BLAS {rates['matmul_gflops']:.0f} GFLOP/s (1024²) and {rates['matmul32_gflops']:.0f} "
            f"GFLOP/s (32×784 @ 784×300); copy {rates['copy_gbps_cache']:.0f} GB/s in cache, "
            f"{rates['copy_gbps_memory']:.0f} GB/s in memory")


def bn_cost(rows_, side):
    """[(arm, spread of BN arm ÷ baseline per round)] of bn-placement, in ``side``'s processes."""
    by_arm = {r["arm"]: r for r in rows_ if r["experiment"] == "bn-placement"}
    base = by_arm.get("baseline")
    if not base or side not in base["ms"]:
        return []
    return [(arm, spread(a / b for a, b in zip(by_arm[arm]["ms"][side]["rounds"],
                                               base["ms"][side]["rounds"])))
            for arm in ("bn-after", "bn-before", "bn-before-elu") if arm in by_arm]


def faster_peer(row):
    peers = [s for s in ("keras-jax", "torch") if s in row["ms"]]
    if not peers:
        return None
    rounds = zip(row["ms"]["bnlab"]["rounds"], *(row["ms"][p]["rounds"] for p in peers))
    return spread(b / min(ps) for b, *ps in rounds)


def copy_rate(copy, shape):
    """GB/s of the faster copy, one thread or all cores, of an array the size of a BN tensor of
    ``shape``, if measured: on two threads a small copy pays for starting them, no bound."""
    rates = (copy or {}).get("x".join(map(str, shape)))
    return rates and max(rates["gbps_1"], rates["gbps"])


def measured(results, key):
    """[(label, spread or number)] of goal ``key``: the ratios it compares with its limit."""
    if key == "bn-free":
        answer = answers(results, "bn-cost") or {"sides": []}
        return [(f"{side}, {arm} ÷ baseline", r) for side in answer["sides"]
                for arm, r in bn_cost(answer["rows"], side)]
    if key == "products":
        out = []
        for run in filter(None, results["results"].get("breakdown") or []):
            parts = {r["part"]: r for r in run["rows"]}
            step, dots = parts.get("bnlab's baseline step"), parts.get("products (baseline, 8)")
            beside = parts.get(BESIDE)  # timed between the steps; older runs: at the start
            bound = beside["ms"] if beside else dots and dots["bound_ms"]
            if step and bound:
                out.append((f"{run['seeds']} seed(s): step {step['ms']:.3f} ms ÷ BLAS products "
                            f"{bound:.3f} ms" + (" timed between its steps" if beside else ""),
                            step["ms"] / bound))
        return out
    if key == "bn-copy":  # each shape's time ÷ the copy's, and XLA's floor's beside it
        copy = (answers(results, "bn", 0) or {}).get("copy")
        by_layer = {(r["layer"], "×".join(map(str, r["shape"]))): rate / r["gbps"]
                    for r in rows(results, "bn", 1) if (rate := copy_rate(copy, r["shape"]))}
        out = []
        for (layer, shape), ratio in by_layer.items():
            if layer != "bnlab.layers.BatchNorm":
                continue
            label, native = shape, by_layer.get((NATIVE, shape))
            if native is not None:  # bnlab's fastest formulation is what the goal holds
                label, ratio = f"{shape}, C++ kernels (the readable layer: {ratio:.2f})", native
            floor = by_layer.get((FLOOR, shape))
            out.append((label + (f" (XLA's floor, the same bytes with no reduction: {floor:.2f})"
                                 if floor else ""), ratio))
        return out
    if key == "peers":
        return [(f"{r['experiment']} {r['arm']}", faster_peer(r)) for r in rows(results, "peers")
                if faster_peer(r)]
    goal = next(g for g in GOALS if g["key"] == key)
    out = []
    for answer in filter(None, results["results"].get(goal["section"]) or []):
        for r in answer["rows"]:
            if r["experiment"] not in goal.get("experiments", (r["experiment"],)):
                continue
            label = f"{r['experiment']} {r['arm']}"  # without "over", every pair: say which
            out += [(label if "over" in goal else f"{label}: {answer['sides'][0]} ÷ {side}", ratio)
                    for side, ratio in r["ratio"].items() if goal.get("over", side) == side]
    return out


def goals(results):
    out = ["## Goals", ""]
    for goal in GOALS:
        values = measured(results, goal["key"])
        if not values:
            why = results["errors"].get(goal["section"], "not in this run")
            out.append(f"- {goal['text']}: **not measured** ({why})")
            continue
        ok = all((v["median"] if isinstance(v, dict) else v) <= goal["limit"] for _, v in values)
        out.append(f"- {goal['text']}: **{'met' if ok else 'not met'}**")
        for label, v in values:
            out.append(f"  - {label}: " + (f"{fmt(v)} (≤ {goal['limit']}: {win(v, goal['limit'])})"
                                           if isinstance(v, dict) else f"{v:.2f}"))
    return out + [""]


def alternation_table(answer, extra=None):
    """Each side's ms and the first ÷ each other; ``extra``: (header, a row's cell) of one more."""
    sides = answer["sides"]
    header = ["experiment", "arm", *(f"{s} ms" for s in sides),
              *(f"{sides[0]} ÷ {s}" for s in sides[1:])] + ([extra[0]] if extra else [])
    body = [[r["experiment"], r["arm"], *(fmt(r["ms"][s]) for s in sides),
             *(fmt(r["ratio"][s]) for s in sides[1:])] + ([extra[1](r)] if extra else [])
            for r in answer["rows"]]
    return table(header, body) + ([f"({answer['stopped']})", ""] if answer.get("stopped") else [])


def peers_section(results):
    def gflops(row, side):
        return 6 * row["macs"] * row["batch_size"] / (row["ms"][side]["median"] / 1e3) / 1e9
    answer = answers(results, "peers")
    if not answer:
        return []
    out = [f"ms per training step, median [min-max] over {answer['rounds']} rounds of whole "
           "processes alternated (bench/alternate.py, bench/steps.py); the goal column divides "
           "bnlab by the faster peer of each round.", ""]
    out += alternation_table(answer, ("bnlab ÷ faster peer",
                                      lambda r: fmt(faster_peer(r)) if faster_peer(r) else "—"))
    rate = results["rates"]["matmul_gflops"]
    out += ["Training rate: 6 × the Dense and Conv2D multiply-adds of an example × the batch ÷ the "
            f"step (median), GFLOP/s, and bnlab's share of the host's BLAS rate ({rate:.0f} "
            "GFLOP/s, 1024²):", ""]
    out += table(["experiment", "arm", "MFLOP/example", *answer["sides"], "bnlab % of BLAS"],
                 [[r["experiment"], r["arm"], f"{6 * r['macs'] / 1e6:.2f}",
                   *(f"{gflops(r, s):.1f}" for s in answer["sides"]),
                   f"{100 * gflops(r, 'bnlab') / rate:.0f} %"] for r in answer["rows"]])
    out += ["BN's cost on each side: the bn-placement BN arm ÷ the baseline arm, per round within "
            "the side's own process:", ""]
    return out + table(["side", "arm", "BN arm ÷ baseline"],
                       [[side, arm, fmt(r)] for side in answer["sides"]
                        for arm, r in bn_cost(answer["rows"], side)])


def breakdown_section(results):
    runs = list(filter(None, results["results"].get("breakdown") or []))
    if not runs:
        return []
    out = ["Each part in a jitted `lax.scan` at the step's shapes, the empty scan subtracted, the "
           "fastest of several interleaved runs (bench/breakdown.py); its bound: products at "
           "NumPy's BLAS for the same shapes, every other part its minimal bytes at NumPy's "
           "in-cache copy rate, both measured in the same process. ms per step.", ""]
    head, body = ["part"], {}
    for run in runs:
        head += [f"{run['seeds']} seed(s) ms", "bound ms", "÷ bound"]
        for r in run["rows"]:
            cells = body.setdefault(r["part"], [r["part"]] + ["—"] * (len(head) - 4))
            ratio = f"{r['ms'] / r['bound_ms']:.1f}" if r["bound_ms"] else ""
            cells += [f"{r['ms']:.3f}", f"{r['bound_ms']:.3f}" if r["bound_ms"] else "", ratio]
    out += table(head, [c + ["—"] * (len(head) - len(c)) for c in body.values()])
    parts = {r["part"]: r for r in runs[0]["rows"]}
    base, bn = parts.get("products (baseline, 8)"), parts.get("products (BN arm, 9)")
    kernels = [r["ms"] for name, r in parts.items() if name.startswith("BN ") and "keras" in name]
    if base and bn and kernels:
        out += [f"What BN costs here: with the input BN the step's products grow from "
                f"{base['mflop']:.1f} to {bn['mflop']:.1f} MFLOP "
                f"(+{100 * (bn['mflop'] / base['mflop'] - 1):.0f} %), because γ and β of the "
                f"input BN need the first layer's input gradient, a product the baseline never "
                f"computes: {bn['ms'] - base['ms']:.3f} ms a step at XLA's rate, against "
                f"{sum(kernels):.3f} ms for Keras's three BN layers' own kernels "
                f"({runs[0]['seeds']} seed(s)). bnlab's own step computes no such product: its "
                f"fold gives γ and β their gradient by `row_dots` from the kernel's gradient "
                f"(the thunk table below).", ""]
    out += thunks_table(runs)
    return out + [f"Host rates in that process: {rates_text(runs[0]['rates'])}.", ""]


def thunks_table(runs):
    """bnlab's own step, thunk by thunk (breakdown.thunk_profile): µs a step of each kind, per
    arm and seed count, and what the BN arm adds."""
    runs = [r for r in runs if r.get("thunks")]
    if not runs:
        return []
    kinds = list(dict.fromkeys(kind for r in runs for arm in r["thunks"].values() for kind in arm))
    head, body = ["kind of thunk"], {kind: [kind] for kind in kinds}
    for run in runs:
        head += [f"{run['seeds']} seed(s): {arm} µs" for arm in run["thunks"]] + ["BN arm adds µs"]
        arms = list(run["thunks"].values())
        for kind in kinds:
            values = [arm.get(kind, 0.0) for arm in arms]
            body[kind] += [f"{v:.0f}" for v in values] + [f"{values[-1] - values[0]:+.0f}"]
    return ["bnlab's own step as it runs: one block of its scan under `jax.profiler`, each XLA "
            "thunk's time added up by what the compiled program says it computes "
            "(bench/breakdown.py `thunk_profile`); µs a step. XLA may run two thunks at once, so "
            "a column may add up to more than the step. The products move with the host from "
            "run to run by up to a third; BN's own thunks are the rows to read.", ""] + table(
        head, list(body.values()))


def bn_section(results):
    copy = (answers(results, "bn", 0) or {}).get("copy")
    layer_rows = [r for i in (1, 2, 3) for r in rows(results, "bn", i)]
    if not layer_rows:
        return []
    out = table(["copy", "MB", "one thread GB/s", f"{copy['cores']} cores GB/s"],
                [[k, f"{v['bytes'] / 2**20:.1f}", f"{v['gbps_1']:.1f}", f"{v['gbps']:.1f}"]
                 for k, v in copy.items() if k != "cores"]) if copy else []
    return out + table(["backend", "layer", "shape", "µs", "GB/s", "% of the faster copy"],
                       [[r["backend"], r["layer"], "×".join(map(str, r["shape"])),
                         f"{r['seconds'] * 1e6:.0f}", f"{r['gbps']:.1f}",
                         f"{100 * r['gbps'] / rate:.0f} %" if (rate := copy_rate(copy, r["shape"]))
                         else "—"] for r in layer_rows])


def data_section(results):
    data = answers(results, "data")
    return table(["load", "load() s", "process s", "runs"],
                 [[k, f"{v['load_seconds']:.3f}", f"{v['process_seconds']:.2f}", v["reps"]]
                  for k, v in data.items()]) if data else []


def check_section(results):
    check = answers(results, "check")
    return table(["experiment", "arm", "Keras", "PyTorch", "forward MACs", "agree"],
                 [[r["experiment"], r["arm"], tuple(r["keras"]), tuple(r["torch"]),
                   f"{r['macs']:,}", "yes" if r["ok"] else "**NO**"]
                  for r in check["rows"]]) if check else []


SECTION_WRITERS = {"peers": peers_section, "breakdown": breakdown_section, "bn": bn_section,
                   "data": data_section, "check": check_section}


def markdown(results):
    m, plan = results["machine"], results["plan"]
    quick = " — QUICK CHECK, numbers mean nothing" if results["quick"] else ""
    shared = " (a shared machine: other work ran alongside)" if m["load"] > 0.5 * m["cores"] else ""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    out = [f"# bnlab performance{quick}", "",
           f"Measured {results['date']} with `{results['command']}` in {results['elapsed']:.0f} s "
           f"({results['elapsed'] / 60:.1f} min; expected {results['expected'] / 60:.1f} min).", "",
           f"Machine: {m['cpu']} (family {m['family']}, model {m['model']}), {m['cores']} cores, "
           f"{m['memory_gib']} GiB, load average {m['load']} at the start{shared}. {versions}.", "",
           f"Host, measured first: NumPy's {rates_text(results['rates'])}; theoretical peak "
           f"{m['peak']}. Plan from that: {plan['rounds']} rounds, blocks at "
           f"{plan['scale']:.2f} × their steps.", ""]
    out += goals(results)
    for name in ORDER:
        alternations = filter(None, results["results"].get(name) or [])
        body = (SECTION_WRITERS[name](results) if name in SECTION_WRITERS
                else [line for answer in alternations for line in alternation_table(answer)])
        out += [f"## {results['titles'][name]}", "", *body] if body else []
    out += ["## How each number is measured", "", (BENCH / "method.md").read_text().rstrip(), ""]
    if results["errors"]:
        out += ["## Sections that did not finish", ""] + [
            f"- {k}: {v}" for k, v in results["errors"].items()] + [""]
    seconds = ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items())
    out += [f"Seconds per section: {seconds}.", ""]
    return "\n".join(out)
