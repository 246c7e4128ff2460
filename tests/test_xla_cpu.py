"""bnlab.layers.xla_cpu against XLA's own ops (JAX), and proof that the layers use it on the CPU."""

import os

import pytest

if os.environ.get("KERAS_BACKEND", "jax") != "jax":
    pytest.skip("bnlab.layers.xla_cpu is the JAX backend's", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from bnlab.layers import fast_conv as fast_layers, xla_cpu  # noqa: E402

CASES = [  # (x shape, kernel (kh, kw), strides, padding)
    ((4, 28, 28, 1), (5, 5), (1, 1), "valid"),
    ((4, 12, 12, 6), (5, 5), (1, 1), "valid"),
    ((3, 28, 28, 1), (3, 3), (1, 1), "same"),
    ((3, 28, 28, 8), (3, 3), (2, 2), "same"),
    ((3, 7, 7, 32), (3, 3), (2, 2), "same"),
    ((2, 2, 2, 56), (3, 3), (2, 2), "same"),
    ((2, 1, 1, 64), (3, 3), (1, 1), "same"),
    ((2, 9, 11, 3), (3, 2), (2, 3), "valid"),
    ((2, 9, 11, 1), (3, 2), (2, 3), "same"),
]


def _xla(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding.upper(),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("method", xla_cpu.INPUT_GRADIENTS)
@pytest.mark.parametrize("shape,kernel_size,strides,padding", CASES)
def test_conv2d_matches_xla_forward_and_both_gradients(shape, kernel_size, strides, padding,
                                                        method):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(*kernel_size, shape[-1], 5)), jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda x, k: _xla(x, k, strides, padding), x, kernel)
    y, vjp = jax.vjp(lambda x, k: xla_cpu.conv2d(x, k, strides, padding, method), x, kernel)
    dy = jnp.asarray(rng.normal(size=y_ref.shape), jnp.float32)
    for got, want in zip((y, *jax.jit(vjp)(dy)), (y_ref, *vjp_ref(dy))):
        assert got.shape == want.shape
        assert float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))) < 1e-5


def test_conv2d_works_under_vmap_as_multiseed_uses_it():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 2, 10, 10, 4)), jnp.float32)  # 3 seeds
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4, 6)), jnp.float32)

    def loss(conv, x, k):
        return jnp.sum(conv(x, k, (1, 1), "same") ** 2)

    ours = jax.vmap(jax.grad(lambda x, k: loss(xla_cpu.conv2d, x, k), argnums=(0, 1)))(x, kernel)
    ref = jax.vmap(jax.grad(lambda x, k: loss(_xla, x, k), argnums=(0, 1)))(x, kernel)
    for got, want in zip(ours, ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))


def test_layers_take_the_fast_path_on_the_cpu():
    """The layer tests compare outputs only; this shows they exercised bnlab.layers.xla_cpu's code."""
    assert jax.default_backend() == "cpu"
    conv, pool = fast_layers.Conv2D(4, 3), fast_layers.MaxPooling2D(2)
    conv.build((1, 8, 8, 2))
    trainable = [v.value for v in conv.trainable_variables]
    x = jnp.ones((1, 8, 8, 2))
    for jaxpr in (jax.make_jaxpr(lambda x: conv.stateless_call(trainable, [], x)[0])(x),
                  jax.make_jaxpr(pool)(x)):
        assert "custom_vjp_call" in str(jaxpr)
    assert "custom_vjp_call" not in str(jax.make_jaxpr(fast_layers.MaxPooling2D(3, 2))(x))
