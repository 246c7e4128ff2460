"""bnlab.tools.fold: every seed model, both placements, outputs equal to the original's."""

import numpy as np
import pytest

import bnlab  # noqa: F401  (sets the default backend before Keras is imported)
import keras
from bnlab import models
from bnlab.tools.fold import fold
from bnlab.tools.precise import bn_layers

pytestmark = pytest.mark.backend

SEED_MODELS = ("mlp", "deep-mlp", "lenet", "deep-cnn")
CASES = [(name, "keras", placement) for name in SEED_MODELS for placement in models.PLACEMENTS]
CASES += [("mlp", "scratch", placement) for placement in models.PLACEMENTS]


def randomized(name, norm, placement):
    """The model with moving statistics, γ and β away from their initial values, as after
    training (statistics at 1 and 0 would hide a wrong formula)."""
    model = models.build(name, norm=norm, placement=placement, seed=0)
    rng = np.random.default_rng(0)
    for bn in bn_layers(model):
        shape = bn.moving_mean.shape
        bn.moving_mean.assign(rng.normal(0, 0.5, shape).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.3, 3.0, shape).astype("float32"))
        bn.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        bn.beta.assign(rng.normal(0, 0.3, shape).astype("float32"))
    return model


def images(name, n=16):
    x = np.random.default_rng(1).uniform(0, 1, (n, 28, 28)).astype("float32")
    return x[..., None] if name in ("lenet", "deep-cnn") else x


def infer(model, x):
    """The model in inference on one batch, compiled whole (``predict``): op by op, JAX would
    compile each layer's every primitive on its own."""
    return model.predict(x, batch_size=len(x), verbose=0)


@pytest.mark.parametrize("name,norm,placement", CASES)
def test_folded_model_equals_the_original_in_inference(name, norm, placement, tmp_path):
    model = randomized(name, norm, placement)
    folded, report = fold(model, return_report=True)
    x = images(name)
    expected, got = infer(model, x), infer(folded, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    stays = [row for row in report if row["into"] is None]
    assert len(folded.layers) == len(model.layers) - len(bn_layers(model)) + len(stays)
    if name == "deep-cnn" and placement == "after":  # relu → BN → 'same' conv: not exact
        assert len(stays) == 18 and all("zero-padded" in row["reason"] for row in stays)
    else:
        assert not stays
    path = tmp_path / "folded.keras"
    folded.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(infer(loaded, x), got)


def test_what_cannot_be_folded_stays_and_is_reported():
    """BN after relu before a zero-padded conv, or before max pooling with a γ < 0, stays; BN
    after relu before a valid conv folds forward, BN after a linear Dense folds back."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Conv2D(3, 3, padding="same"),
        keras.layers.Activation("relu"), keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(2), keras.layers.Conv2D(2, 1, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Conv2D(2, 2, padding="valid"),
        keras.layers.Flatten(), keras.layers.Dense(4), keras.layers.BatchNormalization()])
    bns = bn_layers(model)
    bns[1].gamma.assign(np.array([1.0, -1.0, 1.0], "float32"))
    bns[2].moving_mean.assign(np.array([0.3, -0.2], "float32"))
    folded, report = fold(model, return_report=True)
    reasons = [row["reason"] for row in report]
    assert "zero-padded" in reasons[0] and "γ ≤ 0" in reasons[1]
    assert reasons[2] is None and reasons[3] is None  # into the valid conv; into the Dense
    assert len(folded.layers) == len(model.layers) - 2
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_only_sequential_models():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    with pytest.raises(ValueError, match="Sequential"):
        fold(model)
