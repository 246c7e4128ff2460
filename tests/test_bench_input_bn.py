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
    p = input_bn.parameters(rng, trained=True)  # γ, β away from 1 and 0
    plain, other = (jax.grad(input_bn.loss)(p, x, y, v) for v in ("plain", variant))
    for name in p:
        scale = float(jnp.abs(plain[name]).max())  # float32 round-off: relative to the largest
        np.testing.assert_allclose(other[name], plain[name], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=name)
    assert float(jnp.abs(plain["g0"]).max()) > 0  # the input BN's γ does get a gradient
