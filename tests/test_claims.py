"""Claims and their verdicts (bnlab.results.claims): the intervals against scipy.stats, the
verdicts on synthetic paired results with a known effect, derived metrics (differences of
differences, steps to a threshold, two metrics of one trial), the report's opening table and its
per-trial CSV, [[claims]] in TOML files, and the pairing itself: the same seed gives the claims'
arms the same initial weights and batch order."""

import csv
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import stats

from bnlab import cli, models
from bnlab.lab import experiment_file, experiments, studies
from bnlab.results import claims
from bnlab.results.claims import Claim
from bnlab.results.report import write_report
from bnlab.results.store import Store

SEEDS = range(1, 9)
NOISE = np.random.default_rng(0).normal(0, 1, len(SEEDS))  # the spread two arms share


def lookup_from(values):
    """lookup(arm, metric) over {arm: [value per seed]}."""
    return lambda arm, metric: dict(zip(SEEDS, values[arm]))


def synthetic(effect, jitter=0.2):
    """Arm a = base + effect; both share each seed's noise (the paired part) plus small own noise."""
    rng = np.random.default_rng(1)
    base = 80 + 5 * NOISE
    return {"a": base + effect + rng.normal(0, jitter, len(SEEDS)),
            "b": base + rng.normal(0, jitter, len(SEEDS))}


@pytest.mark.parametrize("direction", ["greater", "less", "equal"])
def test_intervals_and_p_values_are_scipys(direction):
    values = synthetic(0.3, jitter=1.0)
    d = values["a"] - values["b"]
    margin = 1.0 if direction == "equal" else None
    mean, low, high, confidence, p, _ = claims.interval(d, direction, margin)
    level = 0.90 if direction == "equal" else 0.95
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(level)
    assert confidence == level and mean == pytest.approx(d.mean())
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    # the same interval by hand: d̄ ± t_{1−α/2, n−1} s/√n
    half = stats.t.ppf(1 - (1 - level) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert high - low == pytest.approx(2 * half, rel=1e-12)
    if direction == "equal":  # TOST: the larger of the two one-sided p values
        lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
        assert p == pytest.approx(max(lower, upper))
    else:
        assert p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)


@pytest.mark.parametrize("effect,direction,margin,expected", [
    (3.0, "greater", None, "appeared"),        # present
    (0.0, "greater", None, "inconclusive"),    # absent
    (-3.0, "greater", None, "contradicted"),   # reversed
    (-3.0, "less", None, "appeared"),          # present, the other way round
    (3.0, "less", None, "contradicted"),
    (0.05, "equal", 1.0, "appeared"),          # flat within δ
    (3.0, "equal", 1.0, "contradicted"),       # flat claimed, a clear effect outside δ
    (-3.0, "equal", 1.0, "contradicted"),
    (0.9, "equal", 1.0, "inconclusive"),       # the interval straddles δ
])
def test_verdicts_on_a_known_effect(effect, direction, margin, expected):
    claim = Claim("a vs b", a="a", b="b", metric="m", direction=direction, margin=margin)
    verdict = claims.judge(claim, lookup_from(synthetic(effect)))
    assert verdict.verdict == expected and verdict.n == len(SEEDS)
    assert verdict.mean == pytest.approx(effect, abs=0.3)


def test_the_table_gives_the_likely_reason_only_where_the_shape_did_not_appear():
    values = synthetic(0.0)
    absent = claims.judge(Claim("a > b", a="a", b="b", otherwise="too few steps"),
                          lookup_from(values))
    present = claims.judge(Claim("a > b", a="a", b="b", otherwise="too few steps"),
                           lookup_from(synthetic(3.0)))
    _, rows = claims.table([absent, present])
    assert rows[0][3] == "inconclusive: most likely, too few steps" and rows[1][3] == "appeared"
    assert rows[0][6] == "test_accuracy(a) − test_accuracy(b)"


def test_pairing_finds_what_an_unpaired_interval_hides():
    """Each seed's shared spread (±5 points) swamps a 1-point effect unless the seeds are paired."""
    values = synthetic(1.0)
    verdict = claims.judge(Claim("a > b", a="a", b="b"), lookup_from(values))
    welch = stats.ttest_ind(values["a"], values["b"], equal_var=False).confidence_interval()
    assert welch.low < 0 < welch.high and verdict.verdict == "appeared"


def test_difference_of_differences_is_paired_by_seed():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 5, len(SEEDS))
    values = {"bn-2": base + 10, "bn-32": base + 2, "gn-2": base + 1, "gn-32": base + 0.5}
    values = {k: v + rng.normal(0, 0.1, len(SEEDS)) for k, v in values.items()}
    claim = Claim("BN loses more than GN", a=("bn-2", "bn-32"), b=("gn-2", "gn-32"), metric="e")
    verdict = claims.judge(claim, lookup_from(values))
    d = (values["bn-2"] - values["bn-32"]) - (values["gn-2"] - values["gn-32"])
    assert verdict.mean == pytest.approx(d.mean()) and verdict.verdict == "appeared"
    assert claim.arms() == ["bn-2", "bn-32", "gn-2", "gn-32"]


def test_only_seeds_every_arm_has_are_paired_and_one_is_too_few():
    claim = Claim("a > b", a="a", b="b")
    verdict = claims.judge(claim, lambda arm, m: {1: 3.0, 2: 4.0} if arm == "a" else {2: 1.0})
    assert verdict.n == 1 and verdict.verdict == "inconclusive" and "too few" in verdict.note
    assert math.isnan(verdict.low)


def test_against_zero_when_b_is_missing():
    verdict = claims.judge(Claim("a > 0", a="a"), lookup_from({"a": synthetic(0)["a"]}))
    assert verdict.verdict == "appeared" and verdict.mean == pytest.approx(80, abs=5)


def test_derived_metrics_from_results_and_history():
    history = [{"step": 0, "test_accuracy": 0.1}, {"step": 100, "batch_loss": 1.0},
               {"step": 200, "test_accuracy": 0.82}, {"step": 400, "test_accuracy": 0.86}]
    results = {"test_accuracy": 0.87, "precise_test_accuracy": 0.9}
    value = claims.metric_value
    assert value(results, history, "test_accuracy") == 0.87
    assert value(results, history, "error:test_accuracy") == pytest.approx(13.0)
    assert value(results, history, "points:precise_test_accuracy") == pytest.approx(90.0)
    assert value(results, history, "steps_to:test_accuracy:0.8") == 200
    assert value(results, history, "steps_to:test_accuracy:0.85") == 400
    assert value(results, history, "steps_to:test_accuracy:0.95") == 400  # censored at the end
    assert claims.censored(results, history, "steps_to:test_accuracy:0.95")
    assert not claims.censored(results, history, "steps_to:test_accuracy:0.85")
    assert value({}, history, "batch_loss") == 1.0  # the history's last value


@dataclass
class FakeTrial:
    seed: int
    results: dict
    id: str = ""
    config: dict = field(default_factory=dict)


@dataclass
class FakeArm:
    name: str
    trials: list
    histories: list


def test_judge_arms_reads_two_metrics_of_one_trial_and_notes_censoring():
    arm = FakeArm("ema", [FakeTrial(s, {"test_accuracy": 0.5 + 0.01 * s,
                                        "precise_test_accuracy": 0.8 + 0.011 * s})
                          for s in SEEDS],
                  [[{"step": 10, "test_accuracy": 0.5}] for _ in SEEDS])
    precise, slow = claims.judge_arms([
        Claim("PreciseBN beats the EMA", a="ema", b="ema", metric="precise_test_accuracy",
              metric_b="test_accuracy"),
        {"statement": "never", "a": "ema", "metric": "steps_to:test_accuracy:0.9"}], [arm])
    assert precise.verdict == "appeared" and precise.mean == pytest.approx(0.3 + 0.001 * 4.5)
    assert "8 of 8 seed(s) never reached 0.9" in slow.note
    head, rows = claims.table([precise])
    assert rows[0][0] == "PreciseBN beats the EMA" and rows[0][3] == "appeared"
    assert rows[0][2].startswith("+30.45 ± ") and rows[0][2].endswith(" pt (95% CI)")
    assert rows[0][6] == "precise_test_accuracy(ema) − test_accuracy(ema)"


@pytest.mark.parametrize("fields,message", [
    ({"direction": "bigger"}, "direction: unknown 'bigger'"),
    ({"direction": "equal"}, "margin: an equivalence claim needs a margin"),
    ({"margin": 1.0}, "margin: only an equivalence claim"),
    ({"a": ("x", "y", "z")}, "a: an arm's name or a pair"),
    ({"metric": "steps_to:test_accuracy"}, "metric: 'steps_to:test_accuracy' should read"),
    ({"metric": "ratio:test_accuracy"}, "metric: unknown derived metric 'ratio'"),
    ({"metric": "steps_to:x:high"}, "threshold 'high'"),
])
def test_a_malformed_claim_is_one_line(fields, message):
    with pytest.raises(ValueError, match=message):
        Claim(**{"statement": "s", "a": "x", "b": "y", **fields})
    with pytest.raises(ValueError, match="unknown arm 'y'"):
        claims.check(Claim("s", a="x", b="y"), ["x"])


def test_every_studys_claims_name_its_arms():
    for study in studies.STUDIES:
        names = [a.name for a in study.arms]
        assert study.claims
        for claim in study.claims:
            claims.check(claim, names)


def _kernels(config):
    spec = dict(config["model"])
    model = models.build(spec.pop("name"), seed=config["seed"], **spec)
    return [np.asarray(w) for w in model.weights if w.path.endswith("kernel")]


def test_the_arms_of_a_claim_get_the_same_weights_and_batches_for_a_seed():
    """Pairing holds: the arms of each claim of the studies draw the same initial kernels for a
    seed, and read the same data in the order recipe.step_order gives the seed (arms of one
    batch size: the same batches)."""
    kernels = {}
    for study in studies.STUDIES:
        for claim in study.claims:
            configs = [experiments.trial_config(study, study.arm(name), 7)
                       for name in dict.fromkeys(claim.arms())]
            for config in configs:
                if (study.name, config["arm"]) not in kernels:
                    kernels[(study.name, config["arm"])] = _kernels(config)
            first = kernels[(study.name, configs[0]["arm"])]
            for config in configs[1:]:
                assert all(np.array_equal(a, b) for a, b in
                           zip(first, kernels[(study.name, config["arm"])])), claim.statement
                # the batch order (recipe.step_order) reads the data and the batch size only
                order = ("dataset", "split", "limit", "preprocessing", "seed")
                assert {k: config[k] for k in order} == {k: configs[0][k] for k in order}


SPEC = {"name": "toy", "title": "Toy", "x_axis": "step",
        "arms": [{"name": "a", "label": "A"}, {"name": "b", "label": "B"}],
        "claims": [claims.as_dict(Claim("A beats B", a="a", b="b", paper="+2 pt")),
                   claims.as_dict(Claim("A reaches 0.8 first", a="a", b="b",
                                        metric="steps_to:val_accuracy:0.8", direction="less"))]}


def test_the_report_opens_with_the_verdicts_and_writes_every_trial_as_csv(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for arm, shift, reach in (("a", 0.02, 100), ("b", 0.0, 200)):
            for seed in (1, 2, 3):
                tid = store.start({"experiment": "toy", "arm": arm, "seed": seed})
                history = [{"epoch": None, "step": s, "seconds": 1.0,
                            "val_accuracy": 0.9 if s >= reach else 0.5} for s in (100, 200, 300)]
                store.finish(tid, history, {"test_accuracy": 0.8 + shift + 0.01 * seed,
                                            "path": "jax-vmap", "predictions": [{"index": 0}]})
        paths = write_report(store, SPEC, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert md.index("## Did the paper's shape appear?") < md.index("- experiment: toy")
    assert "| A beats B | +2 pt | +2.00 ± 0.00 pt (95% CI) | appeared | 3 |" in md
    assert "| test_accuracy(a) − test_accuracy(b) |" in md
    assert "| A reaches 0.8 first |" in md and "-100 ± 0 steps" in md
    assert "TOST" in md and "trials.csv" in md
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:3] == ["trial", "arm", "seed"]
    assert {"test_accuracy", "path", "steps_to:val_accuracy:0.8"} <= set(rows[0])
    assert "predictions" not in rows[0]  # not a scalar
    a1 = next(r for r in rows if r["arm"] == "a" and r["seed"] == "1")
    assert float(a1["test_accuracy"]) == pytest.approx(0.83)
    assert float(a1["steps_to:val_accuracy:0.8"]) == 100


TOML = """
name = "claimed"
model = "mlp"
optimizer = { name = "SGD", learning_rate = 0.01 }
batch_size = 32
epochs = 1
grid = { norm = ["scratch", "layer"], batch_size = [8, 32] }

[[claims]]
statement = "BN's error rises from 32 to 8"
a = "scratch-8"
b = "scratch-32"
metric = "error:test_accuracy"
paper = "23.6 % -> 34.7 %"

[[claims]]
statement = "LN does not care"
a = ["layer-8", "layer-32"]
direction = "equal"
margin = 1
"""


def test_claims_in_a_toml_file(tmp_path):
    path = tmp_path / "claimed.toml"
    path.write_text(TOML)
    experiment = experiment_file.load(path)
    first, flat = experiment.claims
    assert first == Claim("BN's error rises from 32 to 8", a="scratch-8", b="scratch-32",
                          metric="error:test_accuracy", paper="23.6 % -> 34.7 %")
    assert flat.a == ("layer-8", "layer-32") and flat.margin == 1.0 and flat.b is None
    assert experiments.as_report_spec(experiment)["claims"][1]["a"] == ["layer-8", "layer-32"]


@pytest.mark.parametrize("old,new,message", [
    ('paper = "23.6', 'source = "23.6', "claims[0].source: unknown key; allowed: statement, a"),
    ('b = "scratch-32"', 'b = "scratch-16"', "claims[0].b: unknown 'scratch-16'; allowed:"),
    ('a = ["layer-8", "layer-32"]', 'a = ["layer-8", "layer-4"]',
     "claims[1].a[1]: unknown 'layer-4'"),
    ('a = ["layer-8", "layer-32"]', 'a = ["layer-8"]', "claims[1].a: an array of two arms"),
    ('direction = "equal"', 'direction = "flat"', "claims[1].direction: unknown 'flat'; allowed:"
                                                   " greater, less, equal"),
    ("margin = 1", "margin = -1", "claims[1].margin: an equivalence claim needs a margin δ > 0"),
    ("margin = 1", 'margin = "1"', "claims[1].margin: expected a number"),
    ('statement = "LN does not care"\n', "", "claims[1].statement: missing"),
    ('metric = "error:test_accuracy"', 'metric = "steps_to:x"', "claims[0].metric: 'steps_to:x'"),
    ('metric = "error:test_accuracy"', 'metric = ["a", "b"]',
     "claims[0].metric: a pair of metrics goes with a pair of arms"),
])
def test_a_bad_claim_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, old, new, message):
    monkeypatch.chdir(tmp_path)
    assert old in TOML
    path = tmp_path / "claimed.toml"
    path.write_text(TOML.replace(old, new, 1))
    assert cli.main(["run", str(path), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"bnlab: error: {path}: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claimed.toml"]
