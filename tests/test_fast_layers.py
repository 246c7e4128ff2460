"""bnlab.layers.fast_conv' Conv2D and MaxPooling2D against Keras's own layers, on every backend.

On JAX on the CPU they run bnlab.layers.xla_cpu's forms of the math (tests/test_xla_cpu.py checks those
against XLA's ops directly); elsewhere they call what Keras's layers call. Either way the output
and the gradients for the input and every weight must be Keras's, to float round-off.
"""

import keras
import numpy as np
import pytest

from backend_utils import grads, to_numpy
from bnlab import models
from bnlab.layers import fast_conv as fast_layers

pytestmark = pytest.mark.backend

RTOL = 1e-5

CONVS = [  # (input shape NHWC, Conv2D arguments)
    ((4, 28, 28, 1), dict(filters=6, kernel_size=5)),  # LeNet's first conv: one input channel
    ((4, 12, 12, 6), dict(filters=16, kernel_size=5)),  # LeNet's second
    ((3, 14, 14, 8), dict(filters=12, kernel_size=3, strides=2, padding="same", use_bias=False)),
    ((3, 7, 7, 5), dict(filters=4, kernel_size=3, strides=2, padding="same")),  # odd size
    ((2, 1, 1, 6), dict(filters=7, kernel_size=3, padding="same")),  # deep CNN's 1×1 tail
    ((2, 9, 11, 1), dict(filters=3, kernel_size=(3, 2), strides=(2, 3), padding="same")),
    ((2, 9, 11, 3), dict(filters=5, kernel_size=(2, 4), strides=(1, 2))),
    ((2, 8, 8, 3), dict(filters=4, kernel_size=3, activation="relu")),
]


def _relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _twins(kwargs, shape, **fast_kwargs):
    """A Keras Conv2D and a bnlab Conv2D with the same weights."""
    keras_layer = keras.layers.Conv2D(**kwargs)
    fast_layer = fast_layers.Conv2D(**kwargs, **fast_kwargs)
    keras_layer.build(shape)
    fast_layer.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()]
    keras_layer.set_weights(weights)
    fast_layer.set_weights(weights)
    return keras_layer, fast_layer


# Both ways of adding back the input gradient on LeNet's second conv; tests/test_xla_cpu.py checks
# both on every case.
CONV_CASES = [(*case, "sum") for case in CONVS] + [(*CONVS[1], "scatter")]


@pytest.mark.parametrize("shape,kwargs,input_gradient", CONV_CASES,
                         ids=[f"conv{i}-{c[2]}" for i, c in enumerate(CONV_CASES)])
def test_conv2d_output_and_gradients_match_keras(shape, kwargs, input_gradient):
    keras_layer, fast_layer = _twins(kwargs, shape, input_gradient=input_gradient)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype("float32")
    y_keras, y_fast = to_numpy(keras_layer(x)), to_numpy(fast_layer(x))
    assert y_fast.shape == y_keras.shape
    assert _relative_error(y_fast, y_keras) < RTOL
    r = rng.normal(size=y_keras.shape).astype("float32")
    dx_keras, dw_keras = grads(keras_layer, x, r, training=None)
    dx_fast, dw_fast = grads(fast_layer, x, r, training=None)
    assert _relative_error(dx_fast, dx_keras) < RTOL
    assert dw_fast.keys() == dw_keras.keys()
    for name in dw_keras:
        assert _relative_error(dw_fast[name], dw_keras[name]) < RTOL, name


POOLS = [((4, 24, 24, 6), 2), ((4, 8, 8, 16), 2), ((3, 9, 7, 2), (2, 3)), ((2, 5, 5, 3), 2)]


@pytest.mark.parametrize("shape,pool_size", POOLS, ids=[f"pool{i}" for i in range(len(POOLS))])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pooling_output_and_gradient_match_keras(shape, pool_size, ties):
    """Equal to the bit, ties too: the gradient goes to the window's first maximum, as in Keras."""
    rng = np.random.default_rng(2)
    x = (rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)).astype("float32")
    keras_layer = keras.layers.MaxPooling2D(pool_size)
    fast_layer = fast_layers.MaxPooling2D(pool_size)
    y_keras, y_fast = to_numpy(keras_layer(x)), to_numpy(fast_layer(x))
    np.testing.assert_array_equal(y_fast, y_keras)
    r = rng.normal(size=y_keras.shape).astype("float32")
    dx_keras, _ = grads(keras_layer, x, r, training=None)
    dx_fast, _ = grads(fast_layer, x, r, training=None)
    # On JAX, XLA and bnlab.layers.xla_cpu both send the gradient to the window's first maximum; on the
    # other backends both layers run the same op.
    np.testing.assert_array_equal(dx_fast, dx_keras)
    if not ties:
        assert np.count_nonzero(dx_fast) == r.size  # one element per window gets the gradient


def test_settings_without_a_fast_form_call_keras():
    """Pooling with strides ≠ window and 'same' padding, and dilated convolutions, are Keras's."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    for kwargs in (dict(pool_size=3, strides=2), dict(pool_size=2, padding="same")):
        np.testing.assert_array_equal(to_numpy(fast_layers.MaxPooling2D(**kwargs)(x)),
                                      to_numpy(keras.layers.MaxPooling2D(**kwargs)(x)))
    keras_layer, fast_layer = _twins(dict(filters=4, kernel_size=3, dilation_rate=2), x.shape)
    np.testing.assert_allclose(to_numpy(fast_layer(x)), to_numpy(keras_layer(x)), rtol=RTOL)


def test_config_round_trip_and_bad_argument():
    layer = fast_layers.Conv2D(4, 3, input_gradient="scatter")
    again = fast_layers.Conv2D.from_config(layer.get_config())
    assert again.input_gradient == "scatter" and again.filters == 4
    with pytest.raises(ValueError, match="input_gradient"):
        fast_layers.Conv2D(4, 3, input_gradient="gather")


def test_models_saved_with_the_fast_layers_load_back(tmp_path):
    model = models.build("lenet", norm="scratch", seed=0)
    path = tmp_path / "lenet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.random.default_rng(4).random((3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6)
