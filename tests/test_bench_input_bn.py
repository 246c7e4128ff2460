"""bench/input_bn.py's faster forms of the input BN's gradient equal autodiff's (JAX)."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("the bench's input-BN forms are JAX programs", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import input_bn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


@pytest.mark.parametrize("variant", ["folded", "custom"])
def test_the_faster_gradients_equal_autodiffs(variant):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (6, 784)), "float32")
    y = jnp.asarray(rng.integers(0, 10, 6))
    p = {}
    for k, n in {"0": 784, "1": 300, "2": 100}.items():  # γ, β away from 1 and 0
        p[f"g{k}"], p[f"b{k}"] = rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n)
    for k, (n, m) in {"1": (784, 300), "2": (300, 100), "3": (100, 10)}.items():
        p[f"w{k}"], p[f"c{k}"] = rng.normal(0, 0.05, (n, m)), rng.normal(0, 0.1, m)
    p = jax.tree.map(lambda a: jnp.asarray(a, "float32"), p)

    def grads(v):
        def loss(p):
            out = jax.nn.log_softmax(input_bn.logits(p, x, v))
            return -jnp.take_along_axis(out, y[:, None], 1).mean()
        return jax.grad(loss)(p)

    plain, other = grads("plain"), grads(variant)
    for name in p:
        scale = float(jnp.abs(plain[name]).max())  # float32 round-off: relative to the largest
        np.testing.assert_allclose(other[name], plain[name], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=name)
    assert float(jnp.abs(plain["g0"]).max()) > 0  # the input BN's γ does get a gradient
