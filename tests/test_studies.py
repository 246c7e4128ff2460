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
    assert "arms: bn, none; fashion_mnist, sigmoid-mlp, SGD, batch 60" in out


def test_batch_size_arms_scale_learning_rate_and_steps_linearly():
    exp = experiments.get("batch-size")
    for b in studies.BATCH_SIZES:
        config = experiments.trial_config(exp, exp.arm(f"group-b{b}"), 1)
        assert config["batch_size"] == b
        assert config["optimizer"]["learning_rate"] == pytest.approx(0.02 * b / 32)
        assert config["optimizer"]["momentum"] == 0.9
        assert config["steps"] * b == exp.steps * 32  # as many images at every batch size
        assert config["log_every"]["validation"] * b == exp.log_every["validation"] * 32
        # the command that recreates it names the experiment's steps, not the arm's
        assert "--steps" not in experiments.command_line(exp, config, 3)
    assert "ghost-b8" not in [a.name for a in exp.arms]  # groups of 8 in a batch of 8 is BN


def test_precise_bn_short_arms_train_a_tenth_of_the_steps():
    exp = experiments.get("precise-bn")
    short = experiments.trial_config(exp, exp.arm("ema0.9-short"), 1, steps=300)
    assert short["steps"] == 30 and short["model"]["momentum"] == 0.9
    assert experiments.command_line(exp, short, 3).endswith("--steps 300")


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
    out, report, store = _quick(tmp_path, "ioffe-fig1", "--limit", "1000", "--steps", "200",
                                "--seeds", "2")
    assert (out / "fig1.png").stat().st_size > 5000
    assert "## Study: the shape of Ioffe & Szegedy's Fig. 1" in report
    assert "| BN before each sigmoid | 2 |" in report and "| no BN | 2 |" in report
    assert "50,000 steps" in report  # the paper's setting, beside ours
    with Store(store) as s:
        trial = s.trials("ioffe-fig1")[0]
        history = s.history(trial.id)
    assert [r["step"] for r in history if "test_accuracy" in r] == [0, 200]
    record = trial.results["probe"]
    assert record["steps"] == [0, 200] and record["mode"] == "inference"
    (values,) = record["layers"].values()  # 6:Activation without BN, 9:Activation with it
    assert all(p15 <= p50 <= p85 for p15, p50, p85 in values)
    assert "unit 0 of the layer's input on the first 1000 test images" in report


@pytest.mark.slow
def test_batch_size_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, _ = _quick(tmp_path, "batch-size", "--limit", "500", "--steps", "4",
                            "--arms", "bn-b2,renorm-b2,group-b2,group-b32", "--seeds", "2")
    assert "| batch | bn test error % (mean ± 95% CI) | renorm test error % (mean ± 95% CI) | " \
           "group test error % (mean ± 95% CI) |" in report
    assert "\n| 32 | — | — | " in report and "\n| 2 | " in report
    assert "23.6 % at 32 images per GPU to 34.7 % at 2" in report
    assert "## Study: Batch Renorm at microbatches of 2" in report
    for figure in ("error_vs_batch.png", "renorm_b2.png"):
        assert (out / figure).stat().st_size > 5000


@pytest.mark.slow
def test_precise_bn_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "precise-bn", "--limit", "1000", "--steps", "40",
                                "--seeds", "2")
    assert (out / "precise_bn.png").stat().st_size > 5000
    assert "| short | 4 | EMA, momentum 0.99 |" in report
    assert "| long | 40 | PreciseBN on the momentum-0.9 weights |" in report
    with Store(store) as s:
        results = {(t.arm, t.seed): t.results for t in s.trials("precise-bn")}
    for length in ("short", "long"):
        for seed in (1, 2):
            a, b = (results[(f"ema{m}-{length}", seed)] for m in ("0.99", "0.9"))
            # the two momenta train the same weights: PreciseBN gives them the same statistics
            assert a["precise_test_accuracy"] == pytest.approx(b["precise_test_accuracy"],
                                                               abs=1e-3)
            assert a["precise_batches"] == 1000 // 32
            # after 4 steps at momentum 0.99 the EMA still holds mostly its initial (0, 1)
            if length == "short":
                assert a["ema_variance_error"] > b["ema_variance_error"]
