"""Report: confidence intervals (their coverage on simulated data), verdicts, and full reports
from a synthetic store."""

import math

import numpy as np
import pytest

from scipy import stats

from bnlab import paths as bnlab_paths
from bnlab.results.report import (diff_ci, fmt_ci, mean_ci, summary_rows, text_table, verdict,
                                  write_report)
from bnlab.results.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# Coverage: over many simulated experiments, a 95% interval must contain the true value in about
# 95% of them. The bounds are the binomial's central interval at a false-alarm rate of 1e-9, and
# the RNG seed is fixed, so the test never flakes; a z interval at n = 3 (≈ 87%), t with n instead of
# n − 1 degrees of freedom (≈ 91%), or a pooled-variance interval under unequal variances fall out.
SIMULATIONS = 2000
LOW, HIGH = stats.binom.interval(1 - 1e-9, SIMULATIONS, 0.95)


@pytest.mark.parametrize("n, confidence", [(3, 0.95), (5, 0.95), (2, 0.9)])
def test_mean_ci_covers_the_true_mean(n, confidence):
    rng = np.random.default_rng(11)
    true_mean = 0.87
    covered = 0
    for _ in range(SIMULATIONS):
        mean, hw = mean_ci(rng.normal(true_mean, 0.01, size=n), confidence)
        covered += abs(mean - true_mean) <= hw
    low, high = stats.binom.interval(1 - 1e-9, SIMULATIONS, confidence)
    assert low <= covered <= high, covered


def test_welch_diff_ci_covers_the_true_difference_with_unequal_variances():
    rng = np.random.default_rng(12)
    covered = 0
    for _ in range(SIMULATIONS):  # a: 3 seeds with 4× the spread of b's 8 (pooled: ≈ 72%)
        d, hw = diff_ci(rng.normal(0.90, 0.02, 3), rng.normal(0.88, 0.005, 8))
        covered += abs(d - 0.02) <= hw
    assert LOW <= covered <= HIGH, covered


def test_mean_ci():
    mean, hw = mean_ci([1, 2, 3, 4, 5])
    assert mean == 3 and hw == pytest.approx(2.7764 * 1.5811 / math.sqrt(5), abs=1e-3)
    assert hw == pytest.approx(1.9632, abs=1e-4)
    mean, hw = mean_ci([0.8])
    assert mean == 0.8 and math.isnan(hw)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert fmt_ci(0.8, math.nan) == "0.8000 (n=1, no interval)"
    assert fmt_ci(3, 1.96324) == "3.0000 ± 1.9632"


def test_diff_ci_welch_by_hand():
    a, b = [0.85, 0.86, 0.87], [0.80, 0.84, 0.82, 0.78]
    # by hand: s_a² = 0.0002/2 = 1e-4, s_b² = 0.002/3; s_a²/3 = 3.333e-5, s_b²/4 = 1.6667e-4,
    # se = √2e-4 = 0.014142; df = 4e-8 / ((3.333e-5)²/2 + (1.6667e-4)²/3) = 4.0755;
    # t(0.975, 4.0755) = 2.7563 (just under t(0.975, 4) = 2.7764), half-width = 0.038980
    diff, hw = diff_ci(a, b)
    assert diff == pytest.approx(0.05)
    assert hw == pytest.approx(2.7563 * 0.0141421, abs=1e-4)
    assert math.isnan(diff_ci([1.0], [2.0, 3.0])[1]) and math.isnan(diff_ci([], [1.0])[0])
    assert diff_ci([1, 1], [0, 0]) == (1.0, 0.0)


def test_verdict_wording():
    assert verdict(0.002, 0.005, "bn-after", "baseline") == \
        "no measurable difference (the 95% interval contains 0)"
    assert verdict(0.0123, 0.0045, "bn-after", "baseline").startswith(
        "bn-after is higher by 0.0123 ± 0.0045")
    assert verdict(-0.0123, 0.0045, "bn-after", "baseline").startswith(
        "baseline is higher by 0.0123 ± 0.0045")
    assert "too few" in verdict(0.01, math.nan, "a", "b")
    assert "no finished trials" in verdict(math.nan, math.nan, "a", "b")


# ------------------------------------------------------------------------- synthetic stores
EPOCH_EXPERIMENT = {
    "name": "bn-placement", "title": "Where to put BN", "description": "BN before vs after.",
    "seed_source": "000 + 004", "x_axis": "epoch", "command": "bnlab run bn-placement --seeds 3",
    "arms": [{"name": "baseline", "label": "no BN"}, {"name": "bn-after", "label": "BN after"},
             {"name": "bn-before", "label": "BN before (never run)"}],
    "comparisons": [{"a": "bn-after", "b": "baseline", "question": "BN vs none"},
                    {"a": "bn-before", "b": "baseline", "question": "before vs none"}],
}
STEP_EXPERIMENT = {
    "name": "deep-cnn", "title": "19 conv layers", "description": "Step-based.", "x_axis": "step",
    "arms": [{"name": "no-bn", "label": "none"}, {"name": "hand-bn", "label": "hand BN"}],
    "comparisons": [{"a": "hand-bn", "b": "no-bn", "question": "hand BN vs none"}],
}
ACC = {"baseline": [0.80, 0.81, 0.79], "bn-after": [0.86, 0.87, 0.865]}


def epoch_trial(store, arm, seed, test_acc):
    cfg = {"experiment": "bn-placement", "arm": arm, "seed": seed, "dataset": "fashion_mnist",
           "epochs": 5, "backend": "jax", "optimizer": "sgd", "use_bn": arm != "baseline"}
    tid = store.start(cfg)
    rng = np.random.default_rng(seed)
    hist = [{"epoch": e, "step": 430 * e, "seconds": 3.1 * e,
             "loss": 1 / e + rng.normal(0, .02), "accuracy": test_acc - 0.1 / e,
             "val_loss": 1.1 / e + rng.normal(0, .02), "val_accuracy": test_acc - 0.08 / e}
            for e in range(1, 6)]
    results = {"test_loss": 0.4, "test_accuracy": test_acc, "val_accuracy": test_acc + 0.005,
               "params_total": 271346, "params_trainable": 268978, "params_non_trainable": 2368,
               "seconds_per_epoch": 3.1 + seed * 0.1, "backend": "jax", "path": "keras-fit",
               "predictions": [{"index": i, "label": "Ankle boot", "predicted": "Sneaker" if i
                                else "Ankle boot", "probabilities": [0.05] * 8 + [0.1, 0.5]}
                               for i in range(5)]}
    store.finish(tid, hist, results)


def step_trial(store, arm, seed):
    tid = store.start({"experiment": "deep-cnn", "arm": arm, "seed": seed, "steps": 800})
    good = arm == "hand-bn"
    hist = []
    for step in range(25, 801, 25):
        acc = (0.1 if step < 400 else 0.9) if good else 0.1 + 0.0005 * step
        hist.append({"epoch": None, "step": step, "seconds": step / 100, "batch_loss": 1 - acc / 2,
                     "batch_accuracy": acc + 0.01 * seed})
        if step % 100 == 0:
            hist.append({"epoch": None, "step": step, "seconds": step / 100,
                         "val_loss": 1 - acc / 2, "val_accuracy": acc})
    store.finish(tid, hist, {"test_accuracy": 0.95 if good else 0.5, "val_accuracy": acc,
                             "single_sample_accuracy": 0.96 if good else 0.5, "path": "keras-fit"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with Store(tmp_path_factory.mktemp("store") / "bnlab.sqlite") as s:
        for arm, accs in ACC.items():
            for seed, acc in enumerate(accs):
                epoch_trial(s, arm, seed, acc)
        s.fail(s.start({"experiment": "bn-placement", "arm": "bn-before", "seed": 0}),
               "FloatingPointError: NaN loss")
        for arm in ("no-bn", "hand-bn"):
            for seed in range(2):
                step_trial(s, arm, seed)
        yield s


def check_files(paths, *names):
    assert set(names) <= set(paths)
    for name, path in paths.items():
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data[:8] == PNG_MAGIC and len(data) > 20_000
    assert not [p for p in next(iter(paths.values())).parent.iterdir() if p.name.endswith(".tmp")]


def test_epoch_report(store, tmp_path):
    paths = write_report(store, EPOCH_EXPERIMENT, tmp_path / "out")
    check_files(paths, "markdown", "html", "curves", "final_accuracy")
    assert [p.name for p in paths.values()] == ["curves.png", "final_accuracy.png", "trials.csv",
                                                "report.md", "report.html"]
    md = paths["markdown"].read_text()
    for arm in ("baseline", "bn-after", "bn-before"):
        assert arm in md
    for arm, accs in ACC.items():
        mean, hw = mean_ci(accs)
        assert f"{mean:.4f} ± {hw:.4f}" in md
    d, hw = diff_ci(ACC["bn-after"], ACC["baseline"])
    assert f"{d:+.4f} ± {hw:.4f}" in md
    assert verdict(d, hw, "bn-after", "baseline") in md
    assert "bn-after is higher by" in md
    assert "no finished trials for bn-before" in md
    assert "271,346" in md and "2,368" in md and "keras-fit" in md and "jax" in md
    assert "Ankle boot" in md and "Sneaker" in md
    assert "FloatingPointError: NaN loss" in md  # the failed trial is listed, not counted
    assert "bnlab run bn-placement --seeds 3" in md and "000 + 004" in md
    page = paths["html"].read_text()
    assert '<img src="curves.png"' in page and '<img src="final_accuracy.png"' in page
    assert "<table>" in page and "bn-after is higher by" in page and "<script" not in page


def test_step_report(store, tmp_path):
    paths = write_report(store, STEP_EXPERIMENT, tmp_path)
    check_files(paths, "markdown", "html", "curves", "final_accuracy")
    md = paths["markdown"].read_text()
    assert "single-sample" in md and "0.9600" in md
    assert "hand-bn is higher by" in md and "no-bn" in md


def test_empty_experiment(store, tmp_path):
    empty = {"name": "nothing-yet", "arms": [{"name": "a"}, {"name": "b"}],
             "comparisons": [{"a": "a", "b": "b"}]}
    (tmp_path / "curves.png").write_bytes(b"not bnlab's")
    with pytest.raises(bnlab_paths.PathError, match="bnlab did not write it"):
        write_report(store, empty, tmp_path)
    assert (tmp_path / "curves.png").read_bytes() == b"not bnlab's"
    bnlab_paths.Manifest(tmp_path).wrote("curves.png")  # a stale figure of bnlab's own goes
    paths = write_report(store, empty, tmp_path)
    assert set(paths) == {"markdown", "html", "csv"} and not (tmp_path / "curves.png").exists()
    assert paths["csv"].read_text() == "trial,arm,seed\n"  # the header: no trials yet
    md = paths["markdown"].read_text()
    assert "no finished trials" in md and "curves.png" not in md
    assert "no finished trials" in paths["html"].read_text()


def test_summary_rows_and_text_table(store):
    rows = summary_rows(store, EPOCH_EXPERIMENT)
    assert [r["arm"] for r in rows] == ["baseline", "bn-after", "bn-before"]
    assert [r["n"] for r in rows] == [3, 3, 0]
    assert rows[1]["test_accuracy"] == pytest.approx(mean_ci(ACC["bn-after"]))
    assert rows[0]["seconds_per_epoch"] == pytest.approx(3.2)
    table = text_table(rows)
    lines = table.splitlines()
    assert len(lines) == 5 and "seeds" in lines[0] and set(lines[1]) <= {"-", " "}
    assert fmt_ci(*mean_ci(ACC["baseline"])) in lines[2] and "—" in lines[4]


def test_sparse_trials_unknown_arm_and_escaping(tmp_path):
    spec = {"name": "sparse", "title": "<b>sparse</b> & odd", "arms": ["a"],
            "comparisons": [{"a": "a", "b": "ghost"}]}
    with Store(tmp_path / "s.sqlite") as s:
        s.finish(s.start({"experiment": "sparse", "arm": "a", "seed": 0}),
                 [{"epoch": 1, "step": 1, "seconds": 1.0, "loss": float("nan")},
                  {"epoch": 2, "step": 2, "seconds": 2.0, "loss": 0.5, "val_accuracy": 0.6}], {})
        s.finish(s.start({"experiment": "sparse", "arm": "extra", "seed": 4}), [], {})
        paths = write_report(s, spec, tmp_path / "out")
        rows = summary_rows(s, spec)
    check_files(paths, "markdown", "html", "curves", "final_accuracy")
    md = paths["markdown"].read_text()
    assert "0.6000 (n=1, no interval)" in md  # final val accuracy taken from the history
    assert "extra (not in the spec)" in md and "no finished trials for ghost" in md
    assert "<b>sparse</b>" not in paths["html"].read_text()
    assert [r["arm"] for r in rows] == ["a", "extra"] and math.isnan(rows[1]["test_accuracy"][0])


def test_report_and_store_import_no_keras():
    import subprocess
    import sys
    code = ("import sys, bnlab.results.report, bnlab.results.store; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'jax', 'tensorflow', "
            "'torch') or m in ('bnlab.data', 'bnlab.models', 'bnlab.lab.train')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_curve_band_is_the_confidence_interval_of_the_mean():
    """The one curve rule of the report's and the studies' figures (``stats.curve``)."""
    from bnlab.results.stats import curve

    histories = [[{"epoch": 1, "loss": v}, {"epoch": 2, "loss": v / 2}] for v in (1.0, 1.2, 1.7)]
    histories.append([{"epoch": 1, "loss": math.nan}])  # a diverged seed is left out, not averaged
    xs, *st = curve(histories, "epoch", "loss")
    st = np.array(st).T
    assert list(xs) == [1, 2]
    for i, values in enumerate(([1.0, 1.2, 1.7], [0.5, 0.6, 0.85])):
        mean, hw = mean_ci(values)
        assert st[i] == pytest.approx([mean, mean - hw, mean + hw])
    # not min–max: at three seeds the 95% interval of the mean is wider than the seeds' spread
    assert st[0, 2] - st[0, 1] > 1.7 - 1.0
    # one finite seed: its value, no band; none: a gap
    xs, mean, low, high = curve([[{"step": 0, "acc": 0.5}, {"step": 1, "acc": math.inf}],
                                 [{"step": 0, "acc": math.nan}, {"step": 1, "acc": math.nan}]],
                                "step", "acc")
    assert list(xs) == [0, 1] and mean[0] == 0.5 and np.isnan([low[0], high[0], mean[1]]).all()


def test_seed_figures_beside_bnlab(store, tmp_path):
    figures = [{"arm": "bn-after", "notebook": "004", "metric": "val_accuracy", "value": 0.8156,
                "at": 1, "dataset": "fashion_mnist"},
               {"arm": "baseline", "notebook": "004", "metric": "params_total", "value": 266610,
                "at": None, "dataset": "fashion_mnist"},
               {"arm": "bn-after", "notebook": "001", "metric": "test_accuracy", "value": 0.9511,
                "at": None, "dataset": "mnist"},
               {"arm": "bn-before", "notebook": "000", "metric": "test_accuracy", "value": 0.85,
                "at": None, "dataset": "fashion_mnist"}]
    md = write_report(store, dict(EPOCH_EXPERIMENT, seed_figures=figures),
                      tmp_path)["markdown"].read_text()
    assert "## Beside the seed notebooks" in md
    at_epoch_1 = [acc - 0.08 for acc in ACC["bn-after"]]  # epoch_trial's val_accuracy at epoch 1
    assert (f"| bn-after | val_accuracy at epoch 1 | 004 | 0.8156 | "
            f"{fmt_ci(*mean_ci(at_epoch_1))} (n=3) |  |") in md
    assert "| baseline | params_total | 004 | 266,610 | 271,346 |" in md
    assert (f"| bn-after | test_accuracy | 001 | 0.9511 | {fmt_ci(*mean_ci(ACC['bn-after']))} "
            "(n=3) | the notebook ran on mnist, bnlab on fashion_mnist: not comparable |") in md
    assert "| bn-before | test_accuracy | 000 | 0.8500 | — |" in md


def test_every_seed_figure_names_an_arm_of_its_experiment():
    from bnlab.lab import experiments, seed_figures

    seed_experiments = {name for name, e in experiments.EXPERIMENTS.items()
                        if e.seed_source[:1].isdigit()}  # "000 + 004", "001": the seeds' own
    assert set(seed_figures.SEED_FIGURES) == seed_experiments
    for name, figures in seed_figures.SEED_FIGURES.items():
        arms = {a.name for a in experiments.get(name).arms}
        assert {f.arm for f in figures} <= arms, name
        assert experiments.as_report_spec(experiments.get(name))["seed_figures"]
