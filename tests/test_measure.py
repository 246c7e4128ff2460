"""What the studies measure after training (bnlab.lab.measure), the learning-rate schedules
(bnlab.lab.recipe.learning_rate) and the probe's median drift, each against a direct
computation."""

import keras
import numpy as np
import pytest

from bnlab import models
from bnlab.lab import measure, recipe
from bnlab.results import claims
from bnlab.tools import precise

RNG = np.random.default_rng(0)
X = RNG.random((96, 28, 28), dtype=np.float32)
Y = RNG.integers(0, 10, 96)


def mlp(norm="ghost", **options):
    model = models.build("sigmoid-mlp", norm=norm, activation="relu", seed=1,
                         norm_options=options or None)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_debiased_ema_removes_the_initial_values_weight():
    """After t steps at momentum m from (0, 1), moving = mᵗ·(0, 1) + (1 − mᵗ)·(μ, σ²): the
    bias-corrected EMA is (μ, σ²) exactly, and the moving statistics come back unchanged."""
    model = mlp(virtual_batch_size=8)
    steps, weight = 30, 0.99 ** 30
    truth = []
    for layer in precise.bn_layers(model):
        c = layer.moving_mean.shape[0]
        mean, variance = RNG.normal(0, 1, c), RNG.uniform(0.5, 2, c)
        precise.assign_statistics(layer, (1 - weight) * mean,
                                  weight + (1 - weight) * variance)
        truth.append((layer, mean, variance))
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    debiased = measure.debiased_accuracy(model, X, Y, steps)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.non_trainable_variables))
    for layer, mean, variance in truth:
        precise.assign_statistics(layer, mean, variance)
    expected = float(np.mean(np.argmax(model.predict(X, verbose=0), -1) == Y))
    assert debiased == pytest.approx(expected)


def test_batch_statistics_in_chunks_are_those_of_batches_of_the_trial():
    """Ghost BN's groups of k are the same in one call of 48 images as in calls of the trial's
    batch of 16: the chunked training-mode accuracy equals the batch-by-batch one, and nothing
    the model keeps changes."""
    model = mlp(virtual_batch_size=4)
    assert measure.training_chunk(model, 16) == measure.BATCH_EVAL_IMAGES // 4 * 4
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    chunked = measure.batch_statistics_accuracy(model, X, Y, 16)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.non_trainable_variables))
    saved = [v.numpy() for v in model.non_trainable_variables]
    right = 0
    for start in range(0, 96, 16):
        p = keras.ops.convert_to_numpy(model(X[start:start + 16], training=True))
        right += int((np.argmax(p, -1) == Y[start:start + 16]).sum())
    for v, value in zip(model.non_trainable_variables, saved):
        v.assign(value)
    assert chunked == pytest.approx(right / 96)
    assert measure.training_chunk(mlp("scratch"), 16) == 16  # plain BN: the trial's batch


def test_step_decay_and_cosine_schedules():
    config = {"optimizer": {"learning_rate": 0.1}, "steps": 100,
              "schedule": {"name": "steps", "at": [0.5, 0.75], "factor": 0.1}}
    schedule = recipe.learning_rate(config)
    got = [float(schedule(t)) for t in (0, 50, 51, 75, 76, 99)]  # iterations past the bound
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = recipe.learning_rate({**config, "schedule": {"name": "cosine"}})
    assert float(cosine(50)) == pytest.approx(0.05) and float(cosine(100)) == pytest.approx(0)
    assert recipe.learning_rate({"optimizer": {"learning_rate": 0.1}}) == 0.1


def test_median_drift_is_the_mean_range_of_each_units_median():
    units = RNG.normal(0, 1, (5, 7, 3))  # steps × units × (p15, p50, p85)
    results = {"probe": {"units": {"9:Activation": units.tolist()}}}
    expected = np.mean(units[:, :, 1].max(0) - units[:, :, 1].min(0))
    assert claims.metric_value(results, [], "median_drift") == pytest.approx(expected)
    assert claims.metric_value({}, [], "median_drift") is None
