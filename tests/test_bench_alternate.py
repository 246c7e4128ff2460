"""bench/alternate.py's bookkeeping: the order of the processes, the per-round ratios, the verdict."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import alternate  # noqa: E402
import tables  # noqa: E402


def fake_answers(ms_by_side):
    """{side: [ms of round 0, round 1, ...]} → the answers steps.py would give (one arm)."""
    return {side: [{"rows": [{"experiment": "e", "arm": "a", "ms": ms}]} for ms in values]
            for side, values in ms_by_side.items()}


def test_rounds_reverse_the_order_of_the_sides():
    calls = []

    def run(script, args, env):
        calls.append(args[1])
        return {"rows": []}

    alternate.run_rounds(["bnlab", "keras-jax", "torch"], 3, ["--quick"], run=run)
    assert calls == ["bnlab", "keras-jax", "torch", "torch", "keras-jax", "bnlab",
                     "bnlab", "keras-jax", "torch"]


def test_ratios_are_taken_within_each_round():
    rows = alternate.summarize(fake_answers({"bnlab": [1.0, 2.0, 1.5], "torch": [2.0, 2.0, 1.0]}))
    (row,) = rows
    r = row["ratio"]["torch"]
    assert r["rounds"] == [0.5, 1.0, 1.5]
    assert (r["median"], r["min"], r["max"]) == (1.0, 0.5, 1.5)
    assert row["ms"]["bnlab"]["median"] == 1.5 and row["ms"]["torch"]["max"] == 2.0


def test_a_win_needs_every_round():
    assert tables.win({"median": 0.8, "min": 0.7, "max": 0.95}) == "bnlab faster in every round"
    assert tables.win({"median": 0.8, "min": 0.7, "max": 1.05}) == "within the spread (no winner)"
    assert tables.win({"median": 1.2, "min": 1.1, "max": 1.3}) == "bnlab slower in every round"


def test_tables_show_keras_on_jax_and_the_goal():
    answers = fake_answers({"bnlab": [1.0, 1.0], "keras-jax": [2.0, 1.25], "torch": [1.0, 0.5]})
    results = {"alternate": {"sides": ["bnlab", "keras-jax", "torch"], "rounds": 2,
                             "rows": alternate.summarize(answers)}, "epochs": {}}
    (goal_jax,) = [g for g in tables.goals(results) if "plain Keras 3 on JAX" in g[0]]
    assert goal_jax[1] is True  # median 0.65 ≤ 1.0
    assert goal_jax[2] == ["e a: bnlab / Keras-on-JAX = 0.65 [0.50-0.80]: "
                           "bnlab faster in every round"]
    table = "\n".join(tables.alternate_table(results))
    assert "| e | a | 1.00 [1.00-1.00] | 1.62 [1.25-2.00] | 0.75 [0.50-1.00] |" in table
    assert "1.50 [1.00-2.00]: within the spread (no winner)" in table


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
    assert plain.optimizer.learning_rate == bnlab_model.optimizer.learning_rate


def test_each_side_is_checked_against_its_epoch_table_step():
    answers = fake_answers({"bnlab": [1.0, 1.2], "torch": [2.0, 2.0]})
    epoch = {"arm": "a", "seconds_per_epoch": 1.0, "steps_per_epoch": 1000}  # 1 ms a step
    results = {"alternate": {"sides": ["bnlab", "torch"], "rounds": 2,
                             "rows": alternate.summarize(answers)},
               "epochs": {"e": {"bnlab": {"results": [epoch]}}}}
    table = tables.alternate_table(results)
    assert table[0].endswith("| bnlab: ÷ its epoch-table step | torch: ÷ its epoch-table step |")
    assert table[2].endswith("| 1.10 | — |")


def test_path_together_times_the_seeds_together_path_of_a_conv_arm():
    import numpy as np

    import steps
    from bnlab.lab import experiments

    lenet = experiments.get("lenet-bn")
    config = experiments.trial_config(lenet, lenet.arm("scratch"), 1, epochs=1)
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype="float32")
    y = np.arange(64) % 10
    assert steps.bnlab_block(config, x, y)[0] == "keras-fit"  # bnlab run's default for LeNet
    study = experiments.get("study-cnn-batches")
    config = experiments.trial_config(study, study.arm("bn-b8"), 1, epochs=1)
    assert steps.bnlab_block(config, x[:16], y[:16])[0] == "jax-scan"  # and for the study CNN
    path, block = steps.bnlab_block(config, x[:16], y[:16], "together")
    assert path == "jax-scan"
    block()  # two steps of batch 8


def test_the_bnlab_side_times_each_kind_of_experiment_in_its_own_process():
    import steps

    assert steps.by_kind(["bn-placement", "lenet-bn", "deep-mlp", "study-cnn-batches"]) == [
        (False, ["bn-placement", "deep-mlp"]), (True, ["lenet-bn", "study-cnn-batches"])]
    assert steps.by_kind(["deep-cnn"]) == [(True, ["deep-cnn"])]
