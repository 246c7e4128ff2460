"""The bench's bookkeeping: the order of the processes, the per-round ratios, the budget, the goals."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import alternate  # noqa: E402
import report  # noqa: E402
from goals import GOALS  # noqa: E402


def fake_answers(ms_by_side, arm="a", experiment="e"):
    """{side: [ms of round 0, round 1, ...]} → the answers steps.py would give (one arm)."""
    row = {"experiment": experiment, "arm": arm, "macs": 250_000, "batch_size": 32}
    return {side: [{"rows": [{**row, "ms": ms}]} for ms in values]
            for side, values in ms_by_side.items()}


def test_rounds_reverse_the_order_of_the_sides():
    calls = []

    def run(script, args, env):
        calls.append(args[1])
        return {"rows": []}

    answers, stopped = alternate.run_rounds(["bnlab", "keras-jax", "torch"], 3, ["--quick"],
                                            run=run)
    assert calls == ["bnlab", "keras-jax", "torch", "torch", "keras-jax", "bnlab",
                     "bnlab", "keras-jax", "torch"]
    assert stopped is None and len(answers["torch"]) == 3


def test_no_round_starts_that_would_pass_the_budget():
    now = [0.0]

    def run(script, args, env, timeout):
        now[0] += 5.0  # each process takes 5 s: a round of two, 10 s
        return {"rows": []}

    answers, stopped = alternate.run_rounds(["bnlab", "torch"], 5, [], run=run, budget=25,
                                            clock=lambda: now[0])
    assert len(answers["bnlab"]) == 2 and "stopped after 2 of 5 rounds" in stopped


def test_the_second_round_may_pass_the_budget_within_the_limit():
    now = [0.0]

    def run(script, args, env, timeout):
        now[0] += 5.0  # a round of two, 10 s
        return {"rows": []}

    answers, stopped = alternate.run_rounds(["bnlab", "torch"], 5, [], run=run, budget=15,
                                            limit=21, clock=lambda: now[0])
    assert len(answers["bnlab"]) == 2 and "stopped after 2 of 5 rounds" in stopped
    now[0] = 0.0
    answers, _ = alternate.run_rounds(["bnlab", "torch"], 5, [], run=run, budget=15, limit=19,
                                      clock=lambda: now[0])
    assert len(answers["bnlab"]) == 1  # two rounds would take 20 s


def test_a_failed_process_ends_the_rounds_and_keeps_the_whole_ones():
    calls = []

    def run(script, args, env):
        calls.append(args[1])
        if len(calls) == 4:
            raise RuntimeError("steps.py ran past 60 s\nmore")
        return {"rows": []}

    answers, stopped = alternate.run_rounds(["bnlab", "torch"], 3, [], run=run)
    assert answers == {"bnlab": [{"rows": []}], "torch": [{"rows": []}]}
    assert stopped == "stopped in round 2 of 3: steps.py ran past 60 s"


def test_a_side_is_a_script_with_its_options():
    assert alternate.command("bnlab:norm=scratch:gradient=closed-form") == (
        "steps.py", ["--side", "bnlab", "--norm", "scratch", "--gradient", "closed-form"], None)
    assert alternate.command("keras-jax") == ("steps.py", ["--side", "keras-jax"], "jax")
    assert alternate.command("fold:folded") == ("steps.py", ["--side", "fold:folded"], None)


def test_ratios_are_taken_within_each_round():
    (row,) = alternate.summarize(fake_answers({"bnlab": [1.0, 2.0, 1.5],
                                               "torch": [2.0, 2.0, 1.0]}))
    r = row["ratio"]["torch"]
    assert r["rounds"] == [0.5, 1.0, 1.5]
    assert (r["median"], r["min"], r["max"]) == (1.0, 0.5, 1.5)
    assert row["ms"]["bnlab"]["median"] == 1.5 and row["ms"]["torch"]["max"] == 2.0


def test_a_win_needs_every_round():
    assert report.win({"median": 0.8, "min": 0.7, "max": 0.95}) == "every round"
    assert report.win({"median": 0.8, "min": 0.7, "max": 1.05}) == "within the spread"
    assert report.win({"median": 1.2, "min": 1.1, "max": 1.3}) == "no round"


def peers_results(ms_by_arm):
    rows = []
    for arm, ms in ms_by_arm.items():
        rows += alternate.summarize(fake_answers(ms, arm, "bn-placement"))
    answer = {"sides": list(next(iter(ms_by_arm.values()))), "rounds": 2, "rows": rows}
    return {"results": {"peers": [answer], "bn-cost": [answer]}, "errors": {},
            "rates": {"matmul_gflops": 96.0}}


def test_the_peer_goal_divides_by_the_faster_peer_of_each_round():
    results = peers_results({"bn-after": {"bnlab": [1.0, 1.0], "keras-jax": [2.0, 1.25],
                                          "torch": [1.6, 2.0]}})
    ((label, r),) = report.measured(results, "peers")
    assert label == "bn-placement bn-after"
    assert r["rounds"] == [1 / 1.6, 0.8]
    text = "\n".join(report.peers_section(results))
    assert "| bn-placement | bn-after | 1.00 [1.00-1.00] | 1.62 [1.25-2.00] |" in text
    # 6 × 250,000 multiply-adds × 32 examples in 1 ms: 48 GFLOP/s, half the BLAS's 96
    assert "| bn-placement | bn-after | 1.50 | 48.0 | 29.5 | 26.7 | 50 % |" in text


def test_bn_cost_is_each_side_against_its_own_baseline_per_round():
    results = peers_results({"baseline": {"bnlab": [1.0, 2.0], "torch": [2.0, 2.0]},
                             "bn-after": {"bnlab": [1.5, 2.0], "torch": [3.0, 5.0]}})
    cost = dict(report.measured(results, "bn-free"))
    assert cost["bnlab, bn-after ÷ baseline"]["rounds"] == [1.5, 1.0]
    assert cost["torch, bn-after ÷ baseline"]["rounds"] == [1.5, 2.5]
    text = "\n".join(report.goals(results))
    assert "BN for free" in text and "**not met**" in text


def test_bn_alone_is_held_to_the_faster_copy_with_xla_s_floor_beside_it():
    # two threads copying 0.8 MB mostly start threads: 6 GB/s, no bound beside one thread's 60
    copy = {"cores": 2, "256x784": {"bytes": 802816, "gbps_1": 60.0, "gbps": 6.0}}
    layer_rows = [{"layer": layer, "shape": [256, 784], "gbps": gbps}
                  for layer, gbps in (("bnlab.layers.BatchNorm", 6.0), (report.FLOOR, 20.0))]
    results = {"results": {"bn": [{"copy": copy}, {"rows": layer_rows}]}, "errors": {}}
    ((label, ratio),) = report.measured(results, "bn-copy")
    assert ratio == 10.0
    assert label == "256×784 (XLA's floor, the same bytes with no reduction: 3.00)"
    assert "**not met**" in "\n".join(report.goals(results))
    # with the C++ kernels' row, the goal holds them, and names the readable layer's ratio
    layer_rows.append({"layer": report.NATIVE, "shape": [256, 784], "gbps": 40.0})
    ((label, ratio),) = report.measured(results, "bn-copy")
    assert ratio == 1.5
    assert label.startswith("256×784, C++ kernels (the readable layer: 10.00)")
    assert "**not met**" not in "\n".join(report.goals(results))


def test_every_goal_is_found_or_reported_missing():
    empty = {"results": {}, "errors": {"peers": "stopped in round 1 of 3: ran past 60 s"}}
    for goal in GOALS:
        assert report.measured(empty, goal["key"]) == []
    assert "**not measured** (stopped in round 1 of 3" in "\n".join(report.goals(empty))


def test_keras_on_jax_is_the_same_model_in_keras_own_layers():
    import numpy as np

    import steps
    from bnlab.layers import BatchNorm
    from bnlab.layers import fast_conv
    from bnlab.lab import experiments

    experiment = experiments.get("lenet-bn")
    config = experiments.trial_config(experiment, experiment.arm("scratch"), 1, epochs=1)
    bnlab_model = steps.keras_model(config, "bnlab")
    plain = steps.keras_model(config, "keras-jax")
    bnlab_classes = (BatchNorm, fast_conv.Conv2D, fast_conv.MaxPooling2D)
    assert any(isinstance(layer, bnlab_classes) for layer in bnlab_model.layers)
    assert not any(isinstance(layer, bnlab_classes) for layer in plain.layers)
    assert plain.count_params() == bnlab_model.count_params()
    plain.set_weights(bnlab_model.get_weights())
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), bnlab_model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert type(plain.optimizer) is type(bnlab_model.optimizer)


def test_path_together_times_the_seeds_together_path_of_a_conv_arm():
    import numpy as np

    import steps
    from bnlab.lab import experiments

    lenet = experiments.get("lenet-bn")
    config = experiments.trial_config(lenet, lenet.arm("scratch"), 1, epochs=1)
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype="float32")
    y = np.arange(64) % 10
    assert steps.bnlab_block(config, x, y)[0] == "jax-scan"  # bnlab run's default for LeNet
    deep = experiments.get("deep-cnn")
    config = experiments.trial_config(deep, deep.arm("keras"), 1, epochs=1)
    assert steps.bnlab_block(config, x, y)[0] == "keras-fit"  # and the deep CNN's
    study = experiments.get("study-cnn-batches")
    config = experiments.trial_config(study, study.arm("bn-b8"), 1, epochs=1)
    path, block = steps.bnlab_block(config, x[:16], y[:16], "together")
    assert path == "jax-scan"
    block()  # two steps of batch 8


def test_the_bnlab_side_times_each_kind_of_experiment_in_its_own_process():
    import steps

    assert steps.by_kind(["bn-placement", "lenet-bn", "deep-mlp", "study-cnn-batches"]) == [
        (False, ["bn-placement", "deep-mlp"]), (True, ["lenet-bn", "study-cnn-batches"])]


def test_where_two_rounds_do_not_fit_the_last_sections_give_way():
    import run

    expected = {"peers": 300.0, "bn-cost": 100.0, "fold": 200.0, "study": 150.0}
    got = run.fit(expected, budget=500.0)
    assert got["expected"] == {"peers": 300.0, "bn-cost": 100.0}  # fold is last in SECTIONS
    assert set(got["skipped"]) == {"study", "fold"}
    assert "it needs 200 s more" in got["skipped"]["fold"]
    assert run.fit(expected, budget=1000.0)["skipped"] == {}
    assert run.fit(expected, budget=10.0)["expected"] == {"peers": 300.0}  # the first is kept


def test_sections_slower_than_planned_make_the_last_ones_give_way(monkeypatch):
    import run

    clock = [0.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: clock[0])
    per_child = {"bn.py": 75.0, "breakdown.py": 150.0}  # bn has 4 children, breakdown 2: 300 s

    def child(script, args, backend=None, timeout=None):
        clock[0] += per_child[script]
        return {}

    monkeypatch.setattr(run, "run_child", child)
    sized = {"rounds": 2, "scale": 1.0,  # planned 100 s each, 3× that measured
             "all": {"bn": 100.0, "breakdown": 100.0, "peers": 100.0, "fold": 100.0}}
    results, errors, seconds, _ = run.run(list(sized["all"]), sized, 800.0, quick=False)
    assert set(results) == {"bn", "breakdown"}  # 300 s each: 200 s left, where each needs 300
    assert seconds == {"bn": 300.0, "breakdown": 300.0}
    assert set(errors) == {"peers", "fold"}
    assert "expected 300 s at this host's pace so far (3.0× the plan), 200 s" in errors["peers"]


def test_a_host_faster_than_planned_runs_what_the_plan_would_have_skipped(monkeypatch):
    import run

    clock = [0.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: clock[0])

    def child(script, args, backend=None, timeout=None):  # every section takes half its plan
        clock[0] += {"breakdown.py": 100.0, "alternate.py": 200.0}[script]
        return {}

    monkeypatch.setattr(run, "run_child", child)
    planned = {"breakdown": 400.0, "peers": 400.0, "fold": 400.0}
    sized = {"rounds": 2, "scale": 1.0, "all": planned, **run.fit(planned, 750.0)}
    assert set(sized["skipped"]) == {"peers", "fold"}
    results, errors, _, elapsed = run.run(list(planned), sized, 750.0, quick=False)
    assert set(results) == set(planned) and errors == {} and elapsed == 600.0


def test_thunk_kinds_sorts_a_compiled_program_by_what_it_computes():
    import jax
    import jax.numpy as jnp
    import numpy as np

    import breakdown
    from bnlab.layers import native

    def program(a, b, gamma, beta):
        out = [jnp.tanh(a @ b) * 2.0 + 1.0]
        return out + (list(native.batch_norm(a, gamma, beta, 1e-3)) if native.available() else [])
    args = [np.ones(s, np.float32) for s in ((32, 64), (64, 16), (64,), (64,))]
    kinds = breakdown.thunk_kinds(jax.jit(program).lower(*args).compile().as_text())
    assert "products" in kinds.values()
    assert "other loops and reductions" in kinds.values()
    assert ("BN forward (C++ kernels)" in kinds.values()) == native.available()


def test_the_thunk_table_gives_what_the_bn_arm_adds():
    run = {"seeds": 3, "thunks": {"baseline": {"products": 1000.0, "copies": 20.0},
                                  "bn-after": {"products": 1100.0, "row_dots": 90.0}}}
    lines = report.thunks_table([run])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    assert rows["products"] == "| products | 1000 | 1100 | +100 |"
    assert rows["copies"] == "| copies | 20 | 0 | -20 |"
    assert rows["row_dots"] == "| row_dots | 0 | 90 | +90 |"


def test_arms_blocks_are_interleaved_abba_after_one_warm_up_each():
    import common

    calls = []
    blocks = [lambda name=name: calls.append(name) for name in "abc"]
    times = common.interleaved(blocks, 3)
    assert "".join(calls) == "abc" + "abc" + "cba" + "abc"
    assert [len(t) for t in times] == [3, 3, 3]


def test_the_products_goal_divides_by_the_bound_timed_between_the_steps():
    import common

    rows = [{"part": "bnlab's baseline step", "ms": 0.6, "bound_ms": 0.0},
            {"part": "products (baseline, 8)", "ms": 0.4, "bound_ms": 0.3},
            {"part": common.BESIDE, "ms": 0.4, "bound_ms": 0.0}]
    results = {"results": {"breakdown": [{"seeds": 1, "rows": rows}]}}
    [(label, ratio)] = report.measured(results, "products")
    assert abs(ratio - 1.5) < 1e-12 and "between its steps" in label
    rows.pop()  # a report from before the bound was timed beside the step: its start-up bound
    [(label, ratio)] = report.measured(results, "products")
    assert abs(ratio - 2.0) < 1e-12 and "between" not in label
