"""The smoothness study (Santurkar et al. 2018; bnlab.lab.literature.smoothness): the noise layer
(identity at inference, a new draw every training call), the gradient scan against a direct
computation on a tiny model, and the quick form end to end through ``bnlab run``."""

import csv

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from bnlab import models
from bnlab.cli import main as cli_main
from bnlab.lab import experiments, literature
from bnlab.lab.literature import measures, smoothness
from bnlab.layers.noise import ChannelNoise
from bnlab.results.store import Store
from bnlab.tools import gradients


def test_noise_is_the_identity_at_inference_and_a_new_channel_draw_each_training_call():
    layer = ChannelNoise(0.5, 0.5, seed=7)
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    first, second = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert not np.allclose(first, second)  # resampled at every call
    for y in (first, second):  # one scale and shift a channel, shared by examples and positions
        scale = (y[1] - y[0]) / (x[1] - x[0])
        np.testing.assert_allclose(scale, np.broadcast_to(scale[0, 0], scale.shape), rtol=1e-3)
        assert np.all(scale > 0)


def test_noisy_bn_has_the_weights_of_bn_at_the_same_seed():
    bn = models.build("study-cnn", norm="scratch", seed=3)
    noisy = models.build("study-cnn", norm="scratch", seed=3,
                         noise={"scale_std": 0.5, "shift_std": 0.5})
    assert sum(isinstance(layer, ChannelNoise) for layer in noisy.layers) == 3
    for a, b in zip(bn.trainable_weights, noisy.trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="needs a norm"):
        models.build("study-cnn", norm="none", noise={"scale_std": 0.5, "shift_std": 0.5})


def test_the_gradient_scan_matches_a_direct_computation():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(2).normal(size=(8, 2)).astype("float32")

    def mse(t, p):
        return jnp.mean(jnp.square(t - p))

    got = gradients.gradient_step_scan(model, mse, x, y, [0.1, 1.0])
    weights = [np.asarray(v) for v in model.trainable_variables]

    def loss(w):  # the same net written out by hand
        return mse(y, jnp.tanh(x @ w[0] + w[1]) @ w[2] + w[3])

    g = jax.grad(loss)(weights)
    assert got["loss"] == pytest.approx(float(loss(weights)), rel=1e-5)
    for eta, moved_loss, change in zip([0.1, 1.0], got["losses"], got["gradient_changes"]):
        moved = [w - eta * gi for w, gi in zip(weights, g)]
        g2 = jax.grad(loss)(moved)
        assert moved_loss == pytest.approx(float(loss(moved)), rel=1e-5)
        direct = np.sqrt(sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(g, g2)))
        assert change == pytest.approx(direct, rel=1e-4)
    assert got["losses"][0] != got["losses"][1]


def test_the_study_is_registered_with_its_claims():
    study = smoothness.STUDY
    assert study in literature.STUDIES and experiments.get("smoothness") is study
    assert {a.name for a in study.arms} == {"bn", "none", "noisy-bn"}
    (equal,) = [c for c in study.claims if c.direction == "equal"]
    assert equal.margin == smoothness.MARGIN


@pytest.mark.slow
def test_smoothness_quick_end_to_end(tmp_path, monkeypatch, fashion_mnist):
    out, store = tmp_path / "smoothness", tmp_path / "studies.sqlite"
    # the study CNN's gradients are most of this test's time: a smaller scan batch, fewer steps
    monkeypatch.setattr(measures, "SMOOTHNESS_IMAGES", 32)
    assert cli_main(["run", "smoothness", "--quick", "--steps", "10", "--quiet", "--store",
                     str(store), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.count("## Did the paper's shape appear?") == 1
    assert "## Study: how does BN help optimization?" in report
    assert (out / "smoothness.png").stat().st_size > 5000
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["arm"] for r in rows} == {"bn", "none", "noisy-bn"} and len(rows) == 6
    with Store(store) as s:
        trials = list(s.trials("smoothness"))
    for trial in trials:
        r = trial.results
        assert r["smoothness_steps"] == [0, 10] and r["smoothness_images"] == 32
        assert np.all(np.array(r["loss_band_high"]) >= np.array(r["loss_band_low"]))
        assert np.all(np.array(r["gradient_change"]) > 0)
    # each seed measured on its own state (the seeds train together)
    bn = [t.results["loss_band_low"][-1] for t in trials if t.arm == "bn"]
    assert bn[0] != bn[1]


def test_bnlab_list_shows_the_study_with_its_paper(capsys):
    assert cli_main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.strip().startswith("smoothness "))
    assert "Santurkar et al. 2018" in line
