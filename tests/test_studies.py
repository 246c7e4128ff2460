"""The three studies (issue 10 §2): their trial configs, what they measure, and each one's quick
form end to end on real Fashion-MNIST images, down to the report's tables and figures."""

import keras
import numpy as np
import pytest

from bnlab import models
from bnlab.cli import main as cli_main
from bnlab.lab import experiments, studies
from bnlab.results.store import Store
from bnlab.tools import probe


def main(*argv):
    return cli_main(list(argv))


def test_the_studies_are_listed_with_their_arms(capsys):
    assert main("list") == 0
    out = capsys.readouterr().out
    for study in studies.STUDIES:
        assert study.name in out
    assert ("arms: bn-glorot, none-glorot, bn-gaussian, none-gaussian; fashion_mnist, "
            "sigmoid-mlp, SGD, batch 60") in out


def test_batch_size_normalizes_over_n_with_the_gradient_over_8n():
    """The GN paper's protocol: BN over N images (Ghost BN), the gradient over 8·N, learning rate
    0.1·N/32, as many images (epochs) for every N, with the same step decay; renorm's schedule
    scaled to each arm's steps."""
    exp = experiments.get("batch-size")
    for n in studies.GROUP_SIZES:
        config = experiments.trial_config(exp, exp.arm(f"bn-n{n}"), 1)
        assert config["batch_size"] == 8 * n
        assert config["model"]["norm_options"] == {"virtual_batch_size": n}
        assert config["optimizer"]["learning_rate"] == pytest.approx(0.1 * n / 32)
        assert config["steps"] * config["batch_size"] == studies.BATCH_STEPS * 256
        assert config["schedule"] == studies.STEP_DECAY
        assert "--steps" not in experiments.command_line(exp, config, 3)
    renorm = experiments.trial_config(exp, exp.arm("renorm-n2"), 1)
    relax = renorm["model"]["norm_options"]["renorm_relaxation"]
    assert 0 < relax["hold"] < relax["dmax_at"] < relax["rmax_at"] < renorm["steps"]
    assert relax["hold"] == round(0.05 * renorm["steps"])
    layer = models.build("sigmoid-mlp", seed=0, **{k: v for k, v in renorm["model"].items()
                                                    if k != "name"})
    assert [bn.virtual_batch_size for bn in layer.layers if hasattr(bn, "renorm")] == [2] * 3
    assert {a.group for a in exp.arms} == {"bn", "group", "layer", "renorm"}


def test_precise_bn_short_arm_and_learning_rates():
    exp = experiments.get("precise-bn")
    short = experiments.trial_config(exp, exp.arm("lr0.05-short"), 1, steps=400)
    assert short["steps"] == 20 and short["model"]["momentum"] == 0.99
    assert experiments.command_line(exp, short, 3).endswith("--steps 400")
    rates = {a.name: experiments.trial_config(exp, a, 1)["optimizer"]["learning_rate"]
             for a in exp.arms}
    assert rates == {"lr0.05-short": 0.05, "lr0.01": 0.01, "lr0.05": 0.05, "lr0.25": 0.25,
                     "lr0.25-decay": 0.25}
    assert "schedule" in experiments.trial_config(exp, exp.arm("lr0.25-decay"), 1)
    assert "schedule" not in experiments.trial_config(exp, exp.arm("lr0.25"), 1)


def test_quick_is_refused_for_an_experiment_without_one(capsys):
    assert main("run", "bn-placement", "--quick") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bn-placement has no --quick form" in err


def test_ioffe_probe_percentiles_match_numpy_forward_pass():
    """ioffe-fig1's probe (bnlab.tools.probe) takes the pre-activations of the last hidden
    layer's first unit, sigmoid(sigmoid(x W1 + b1) W2 + b2) W3 + b3, computed here in NumPy, over
    the first test images in inference mode."""
    model = models.build("sigmoid-mlp", norm="none", seed=0)
    x = np.random.default_rng(0).random((50, 28, 28), dtype=np.float32)
    spec = {**experiments.get("ioffe-fig1").probe, "images": 40}
    assert spec["mode"] == "training" and spec["per_unit"]
    callback = probe.ActivationProbe.from_spec(spec, {"test": (x, None)})
    callback.set_model(model)
    callback.on_train_begin()
    record = callback.record.as_dict()
    assert list(record["layers"]) == ["6:Activation"] and record["steps"] == [0]
    h = x.reshape(50, -1)[:40].astype(np.float64)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for i, layer in enumerate(dense[:3]):
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
        h = h @ kernel + bias
        if i < 2:
            h = 1 / (1 + np.exp(-h))
    expected = np.percentile(h[:, 0], [15, 50, 85])
    np.testing.assert_allclose(record["layers"]["6:Activation"][0], expected, rtol=1e-4,
                               atol=1e-5)
    every_unit = np.percentile(h, [15, 50, 85], axis=0).T  # (100 units, 3)
    np.testing.assert_allclose(record["units"]["6:Activation"][0], every_unit, rtol=1e-4,
                               atol=1e-4)


def _quick(tmp_path, name, *extra):
    out = tmp_path / name
    store = tmp_path / "studies.sqlite"
    assert main("run", name, "--quick", "--quiet", "--store", str(store), "--out", str(out),
                *extra) == 0
    for figure in ("curves.png", "final_accuracy.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out, (out / "report.md").read_text(), store


@pytest.mark.slow
def test_ioffe_fig1_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "ioffe-fig1", "--limit", "600", "--steps", "200",
                                "--arms", "bn-glorot,none-glorot")
    assert (out / "fig1.png").stat().st_size > 5000
    assert report.index("## Did the paper's shape appear?") < report.index("## Study: the shape")
    assert "| Glorot init: BN reaches 80 % test accuracy in fewer steps |" in report
    assert "| BN before each sigmoid, Glorot init | 2 |" in report
    assert "50,000 steps" in report  # the paper's setting, beside ours
    with Store(store) as s:
        trial = s.trials("ioffe-fig1")[0]
        history = s.history(trial.id)
    assert [r["step"] for r in history if "test_accuracy" in r] == [0, 100, 200]
    record = trial.results["probe"]
    assert record["steps"] == [0, 200] and record["mode"] == "training"
    (units,) = record["units"].values()
    assert np.asarray(units).shape == (2, 100, 3)
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and "median_drift" in rows[0] and "steps_to:test_accuracy:0.8" in rows[0]


@pytest.mark.slow
def test_batch_size_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "batch-size", "--limit", "800", "--steps", "4",
                                "--arms", "bn-n2,bn-n32,group-n2")
    assert "| test error % (mean ± 95% CI) | N = 32 | N = 2 |" in report
    assert "| BN, test batches of N | " in report and "\n| GroupNorm | — | " in report
    assert "| BN's error rises from N = 32 to N = 2 (EMA statistics) |" in report
    assert "23.6 % at 32 images per GPU to 34.7 % at 2" in report
    assert (out / "error_vs_batch.png").stat().st_size > 5000
    with Store(store) as s:
        results = {(t.arm, t.seed): t.results for t in s.trials("batch-size")}
    bn = results[("bn-n2", 1)]
    assert 0 <= bn["batch_test_accuracy"] <= 1 and bn["precise_images"] == 800
    assert "precise_test_accuracy" not in results[("group-n2", 1)]  # no BN to recompute


@pytest.mark.slow
def test_precise_bn_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "precise-bn", "--limit", "640", "--steps", "40",
                                "--arms", "lr0.05-short,lr0.05")
    assert (out / "precise_bn.png").stat().st_size > 5000
    assert "| lr 0.05, 100 steps | 2 | 0.05 | 2 |" in report
    assert "| 3,200 images suffice for PreciseBN (within ±0.5 pt of 32,000) |" in report
    with Store(store) as s:
        results = {(t.arm, t.seed): t.results for t in s.trials("precise-bn")}
    for seed in (1, 2):
        short = results[("lr0.05-short", seed)]
        # 2 steps at momentum 0.99: the EMA is still mostly its initial (0, 1)
        assert short["ema_variance_error"] > 0.5
        assert {"debiased_test_accuracy", "precise_test_accuracy_320",
                "precise_test_accuracy_32000"} <= set(short)
