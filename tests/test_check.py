"""bnlab.tools.check and `bnlab check`: findings on real trained models, bad input exits 2."""

import json

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab import data as bndata
from bnlab import models
from bnlab.cli import main
from bnlab.tools import check
from bnlab.tools.precise import bn_layers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The BN-after MLP after 60 steps at momentum 0.99 (stale statistics), saved as .keras."""
    ds = bndata.load("fashion_mnist", preprocessing="scale")
    model = models.build("mlp", norm="keras", placement="after", seed=1)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x_train[:1920], ds.y_train[:1920], batch_size=32, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("check") / "mlp.keras"
    model.save(path)
    return model, path, ds


def test_stale_statistics_and_the_measured_effect_of_precise_bn(trained, fashion_mnist):
    model, _, ds = trained
    before = [w.copy() for w in model.get_weights()]
    result = check.check(model, ds.x_train[:1000], ds.x_test[:500], ds.y_test[:500])
    assert [row["layer"] for row in result["layers"]] == [b.name for b in bn_layers(model)]
    assert any(row["stale"] for row in result["layers"])
    kinds = [f["kind"] for f in result["findings"]]
    assert "stale" in kinds
    # inference mode is Keras's evaluate; the model is as it was
    loss, accuracy = model.evaluate(ds.x_test[:500], ds.y_test[:500], verbose=0)
    assert result["modes"]["inference"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert result["modes"]["inference"]["loss"] == pytest.approx(loss, rel=1e-5)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    after = result["modes"]["after_precise_bn"]["accuracy"]
    stale = next(f for f in result["findings"] if f["kind"] == "stale")
    assert f"{after:.4f}" in stale["advice"] and "precise_bn" in stale["advice"]
    assert "STALE" in check.format_table(result)


def test_frozen_dropout_epsilon_and_momentum_findings():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dropout(0.5),
        keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.1),
        keras.layers.Dense(4), keras.layers.BatchNormalization(trainable=False)])
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    result = check.check(model, x, x, np.zeros(64, int), batch_size=16)
    found = {(f["kind"], f["layer"]) for f in result["findings"]}
    first, second = (layer.name for layer in bn_layers(model))
    assert {("dropout before BN", first), ("epsilon", first), ("momentum", first),
            ("frozen", second)} <= found
    assert ("dropout before BN", second) not in found


def test_cli_check_runs_and_prints_json(trained, fashion_mnist, capsys):
    _, path, _ = trained
    assert main(["check", str(path), "--limit", "320", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["modes"]) >= {"training", "inference"}


def test_cli_check_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, fashion_mnist):
    not_model = tmp_path / "notes.keras"
    not_model.write_text("hello")
    no_bn = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(no_bn)
    other_shape = tmp_path / "rgb.keras"
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.BatchNormalization()]).save(
        other_shape)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(no_bn.read_bytes()[: no_bn.stat().st_size // 2])
    cases = [(tmp_path / "missing.keras", "no model file"), (not_model, "not a Keras model"),
             (no_bn, "no BatchNormalization"), (other_shape, "does not fit"),
             (truncated, "truncated or damaged")]
    for path, words in cases:
        assert main(["check", str(path), "--limit", "64"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
