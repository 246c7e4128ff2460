"""bnlab.tools.forward: a batch's outputs equal the model's own call, in both modes, and the
model's state (moving statistics) is as it was; on JAX one compiled program serves every batch
of a shape."""

import keras
import numpy as np
import pytest

from bnlab.layers import BatchNorm
from bnlab.tools import forward

pytestmark = pytest.mark.backend


def model_and_batch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), BatchNorm(momentum=0.5),
                              keras.layers.Activation("relu"),
                              keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(3)])
    x = np.random.default_rng(1).normal(2.0, 3.0, (16, 6)).astype("float32")
    return model, x


def state(model):
    return [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]


@pytest.mark.parametrize("training", [True, False])
def test_outputs_equal_the_models_call_and_leave_its_state(training):
    model, x = model_and_batch()
    before = state(model)
    got = keras.ops.convert_to_numpy(forward.outputs(model, x, training=training))
    for a, b in zip(state(model), before):
        np.testing.assert_array_equal(a, b)
    want = keras.ops.convert_to_numpy(model(x, training=training))  # the eager call, which updates
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if training:  # the check above would fail if forward had updated the state as model() does
        assert any(np.any(a != b) for a, b in zip(state(model), before))


def test_one_program_a_shape_on_jax():
    if keras.backend.backend() != "jax":
        pytest.skip("the compiled call is JAX's")
    model, x = model_and_batch()
    for start in (0, 8):
        forward.outputs(model, x[start:start + 8], training=True)
    forward.outputs(model, x[:3], training=True)  # a last, smaller batch: a second program
    assert forward._PROGRAMS[model][True]._cache_size() == 2
