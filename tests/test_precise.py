"""bnlab.tools.precise_bn against NumPy: population statistics over the same batches."""

import numpy as np
import pytest

import bnlab  # noqa: F401  (sets the default backend before Keras is imported)
import keras
from bnlab.layers import BatchNorm
from bnlab.tools import precise_bn

pytestmark = pytest.mark.backend

BATCH, BATCHES = 8, 5


def two_bn_model():
    """Dense → Keras BN → relu → Dense → bnlab BN → Dense, with γ and β not at their defaults."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(5), keras.layers.BatchNormalization(momentum=0.9),
        keras.layers.Activation("relu"), keras.layers.Dense(4), BatchNorm(momentum=0.9),
        keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    for bn in (model.layers[1], model.layers[4]):
        bn.gamma.assign(rng.uniform(0.5, 2.0, bn.gamma.shape).astype("float32"))
        bn.beta.assign(rng.normal(size=bn.beta.shape).astype("float32"))
    return model


def numpy_inputs(model, xb):
    """Both BN layers' training-mode inputs for one batch, computed in float64 NumPy."""
    dense1, bn1, _, dense2, _, _ = model.layers
    w = [np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in model.weights]
    h1 = xb @ w[0] + w[1]
    m, v = h1.mean(0), h1.var(0)
    z = np.maximum((h1 - m) / np.sqrt(v + bn1.epsilon) * w[2] + w[3], 0.0)
    kernel, bias = (np.asarray(keras.ops.convert_to_numpy(t), np.float64)
                    for t in (dense2.kernel, dense2.bias))
    return h1, z @ kernel + bias


@pytest.mark.parametrize("estimator,unbiased", [("pooled", False), ("batch_mean", False),
                                                ("batch_mean", True)])
def test_statistics_equal_numpy_over_the_same_batches(estimator, unbiased):
    model = two_bn_model()
    x = np.random.default_rng(1).normal(2.0, 3.0, (BATCH * BATCHES + 3, 6)).astype("float32")
    weights = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    batches = [numpy_inputs(model, x[b * BATCH:(b + 1) * BATCH].astype(np.float64))
               for b in range(BATCHES)]
    summary = precise_bn(model, x, batch_size=BATCH, num_batches=BATCHES, estimator=estimator,
                         unbiased=unbiased, progress=False)
    for k, bn in enumerate((model.layers[1], model.layers[4])):
        inputs = [batch[k] for batch in batches]
        if estimator == "pooled":  # every value of every batch, pooled
            mean, variance = np.concatenate(inputs).mean(0), np.concatenate(inputs).var(0)
        else:  # Ioffe & Szegedy 2015, Alg. 2
            mean = np.mean([h.mean(0) for h in inputs], axis=0)
            variance = np.mean([h.var(0, ddof=1 if unbiased else 0) for h in inputs], axis=0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), mean,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), variance,
                                   rtol=1e-5, atol=1e-6)
    # the weights are untouched; the summary names both layers and says the statistics moved
    for before, after in zip(weights, model.trainable_weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert [row["layer"] for row in summary] == [model.layers[1].name, model.layers[4].name]
    assert all(row["mean_shift"] > 0.1 for row in summary)  # from (0, 1) to the data's statistics


def test_pooled_adds_the_spread_between_batch_means():
    model = two_bn_model()
    x = np.random.default_rng(2).normal(size=(BATCH * BATCHES, 6)).astype("float32")
    precise_bn(model, x, batch_size=BATCH, estimator="batch_mean", progress=False)
    within = keras.ops.convert_to_numpy(model.layers[1].moving_variance).copy()
    precise_bn(model, x, batch_size=BATCH, estimator="pooled", progress=False)
    pooled = keras.ops.convert_to_numpy(model.layers[1].moving_variance)
    assert np.all(pooled > within)


@pytest.mark.parametrize("kwargs,word", [({"estimator": "median"}, "estimator"),
                                         ({"num_batches": 99}, "num_batches"),
                                         ({"batch_size": 1}, "batch_size")])
def test_bad_arguments_name_the_argument_and_change_nothing(kwargs, word):
    model = two_bn_model()
    before = [w.copy() for w in model.get_weights()]
    x = np.ones((BATCH * 2, 6), "float32")
    with pytest.raises(ValueError, match=word):
        precise_bn(model, x, **{"batch_size": BATCH, **kwargs})
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_without_bn_is_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no BatchNormalization"):
        precise_bn(model, np.ones((4, 3), "float32"), batch_size=2)
