"""bnlab.tools.findings through check.check: each finding on a tiny model built to have the fault,
and none of them on a healthy one."""

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab.layers import BatchNorm
from bnlab.tools import check, precise

L = keras.layers
N = 256


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(1.0, 2.0, size=(N, 6)).astype("float32")


def kinds(result):
    return {f["kind"]: f for f in result["findings"]}


def fresh(model, x, batch_size=32):
    """Moving statistics set to the population's: not stale."""
    precise.precise_bn(model, x, batch_size=batch_size, progress=False)
    return model


def dense_model(*middle, width=8):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = L.Dense(width)(inputs)
    for layer in middle:
        h = layer(h)
    return keras.Model(inputs, L.Dense(3, activation="softmax")(h))


def test_healthy_model_has_no_findings(x):
    model = dense_model(L.BatchNormalization(), L.ReLU(), L.Dense(8), L.BatchNormalization(),
                        L.ReLU(), L.Dropout(0.2))
    y = np.arange(N) % 3  # separated classes: batch statistics' noise flips no prediction
    x = x + 6 * np.eye(6, dtype="float32")[y]
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    result = check.check(fresh(model, x), x, x[:128], y[:128])
    assert result["modes"]["inference"]["accuracy"] > 0.9
    assert result["findings"] == [], result["findings"]


def test_training_true_baked_into_a_call_is_batch_dependent_inference(x):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    bn = L.BatchNormalization()
    h = bn(L.Dense(8)(inputs), training=True)
    model = fresh(keras.Model(inputs, L.Dense(3)(L.BatchNormalization()(h))), x)
    found = kinds(check.check(model, x, x[:64]))
    assert found["batch-dependent inference"]["layer"] == bn.name
    assert "training=True in the call of " + bn.name in found["batch-dependent inference"][
        "detail"]


def test_a_layer_forced_to_training_is_batch_dependent_inference(x):
    class AlwaysTraining(BatchNorm):
        def call(self, inputs, training=None, mask=None):
            return super().call(inputs, training=True, mask=mask)

    bn = AlwaysTraining()
    model = fresh(dense_model(bn), x)
    found = kinds(check.check(model, x, x[:64]))
    assert found["batch-dependent inference"]["layer"] == bn.name


def test_nan_inf_and_non_positive_moving_statistics(x):
    bn = L.BatchNormalization()
    model = fresh(dense_model(bn), x)
    bn.moving_variance.assign(np.array([np.nan, -1.0, 0.0, 1, 1, 1, 1, 1], "float32"))
    bn.moving_mean.assign(np.array([np.inf, 0, 0, 0, 0, 0, 0, 0], "float32"))
    found = kinds(check.check(model, x, x[:64], np.zeros(64, int)))
    detail = found["bad statistics"]["detail"]
    for words in ("moving_mean has 1 of 8 channels Inf", "moving_variance has 1 of 8 channels NaN",
                  "moving_variance has 2 of 8 channels ≤ 0"):
        assert words in detail
    assert "precise_bn" in found["bad statistics"]["advice"]
    assert "stale" in found


def test_dropout_before_bn_is_measured_with_the_accuracy_after_recomputing(x):
    bn = L.BatchNormalization()
    model = fresh(dense_model(L.Dropout(0.5), L.ReLU(), bn), x)
    y = np.argmax(model.predict(x[:64], verbose=0), axis=1)
    model.compile(loss="sparse_categorical_crossentropy")
    result = check.check(model, x, x[:64], y)
    found = kinds(result)["dropout before BN"]
    assert found["layer"] == bn.name
    assert "accuracy" in found["advice"] and "measured" in found["advice"]
    # Dropout(0.5) doubles the kept values: the inference variance is about half the training one
    ratio = float(found["detail"].split("variance in inference is ")[1].split("x")[0])
    assert 0.3 < ratio < 0.8


def test_one_bn_on_two_inputs_is_shared(x):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    bn = L.BatchNormalization()
    h = L.Add()([bn(L.Dense(4)(inputs)), bn(L.Dense(4)(inputs))])
    model = fresh(keras.Model(inputs, L.Dense(3)(h)), x)
    found = kinds(check.check(model, x, x[:64]))
    assert found["shared BN"]["layer"] == bn.name and "2 inputs" in found["shared BN"]["detail"]


def test_padding_dominated_statistics_are_constant_inputs():
    images = np.random.default_rng(1).normal(size=(N, 4, 4, 2)).astype("float32")
    keras.utils.set_random_seed(0)

    def conv(pad):
        inputs = keras.Input((4, 4, 2))
        h = L.ZeroPadding2D(pad)(inputs) if pad else inputs
        bn = L.BatchNormalization()
        return fresh(keras.Model(inputs, L.Dense(2)(L.Flatten()(bn(h)))), images), bn

    padded, bn = conv(8)  # 16 of 400 values per channel are the image
    found = kinds(check.check(padded, images, images[:32]))
    assert found["constant inputs"]["layer"] == bn.name
    assert "2 of 2 channels" in found["constant inputs"]["detail"]
    assert "constant inputs" not in kinds(check.check(conv(0)[0], images, images[:32]))


def test_training_batch_of_one_and_virtual_batches_that_do_not_divide(x):
    bn = L.BatchNormalization()
    model = fresh(dense_model(bn), x)
    one = kinds(check.check(model, x, x[:64], batch_size=1))["batch of 1"]
    assert one["layer"] == bn.name and "measured |y - β| ≤ 0" in one["detail"]

    ghost = BatchNorm(virtual_batch_size=8)
    model = fresh(dense_model(ghost), x, batch_size=16)
    found = kinds(check.check(model, x[:250], x[:64], batch_size=12))["virtual batch"]
    assert found["layer"] == ghost.name
    assert "batch size(s) 12, 10" in found["detail"] and "batches of 8" in found["detail"]
    silent = check.check(model, x, x[:64], batch_size=16)  # 256 = 16 batches of 16
    assert not {"virtual batch", "batch of 1"} & set(kinds(silent))
