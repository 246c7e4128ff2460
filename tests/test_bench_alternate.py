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
    (goal_b, goal_jax) = [g for g in tables.goals(results) if "(b)" in g[0] or "§5" in g[0]]
    assert goal_jax[1] is True  # median 0.65 ≤ 1.0
    assert goal_jax[2] == ["e a: bnlab / Keras-on-JAX = 0.65 [0.50-0.80]: "
                           "bnlab faster in every round"]
    table = "\n".join(tables.alternate_table(results))
    assert "| e | a | 1.00 [1.00-1.00] | 1.62 [1.25-2.00] | 0.75 [0.50-1.00] |" in table
    assert "1.50 [1.00-2.00]: within the spread (no winner)" in table
