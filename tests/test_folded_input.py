"""The input BN folded into its Dense (layers.folded_dense, lab.folded_input): the same outputs,
moving statistics and gradients as the readable pair, without the pair's input-gradient product."""

import re

import keras
import numpy as np
import pytest

from bnlab import models
from bnlab.layers.folded_dense import folded_dense
from backend_utils import BACKEND

RNG = np.random.default_rng(7)
B, D, U = 16, 12, 5


def _gradients(f, args):
    """f(*args) and its gradient with respect to every arg, as NumPy arrays, on this backend."""
    if BACKEND == "jax":
        import jax

        value, grads = jax.value_and_grad(lambda a: f(*a))(list(args))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        args = [tf.Variable(a) for a in args]
        with tf.GradientTape() as tape:
            value = f(*args)
        grads = tape.gradient(value, args)
    else:
        import torch

        args = [torch.tensor(a, requires_grad=True) for a in args]
        value = f(*args)
        value.backward()
        value, grads = value.detach(), [a.grad for a in args]
    return float(value), [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.mark.backend
@pytest.mark.parametrize("bias", [True, False])
def test_folded_dense_is_the_readable_pair_forward_and_backward(bias):
    r = RNG.normal(size=(B, U)).astype("float32")  # L = Σ h ⊙ r, so ∂L/∂h = r
    args = [RNG.normal(size=(B, D)), RNG.uniform(0.5, 1.5, D), RNG.normal(0, 0.3, D),
            RNG.normal(0, 0.5, (D, U))] + ([RNG.normal(size=U)] if bias else [])
    args = [a.astype("float32") for a in args]
    r_ = keras.ops.convert_to_tensor(r)

    def readable(z, gamma, beta, kernel, *c):
        h = keras.ops.matmul(gamma * z + beta, kernel)
        return keras.ops.sum((h + c[0] if c else h) * r_)

    def folded(z, gamma, beta, kernel, *c):
        return keras.ops.sum(folded_dense(z, gamma, beta, kernel, c[0] if c else None) * r_)

    value, grads = _gradients(folded, args)
    want_value, want = _gradients(readable, args)
    assert value == pytest.approx(want_value, rel=1e-5)
    # the gradients as the module docstring writes them, with P = zᵀ r
    z, gamma, beta, kernel = args[:4]
    p = z.T @ r
    formulas = [r @ (gamma[:, None] * kernel).T, (kernel * p).sum(1), kernel @ r.sum(0),
                gamma[:, None] * p + beta[:, None] * r.sum(0)] + ([r.sum(0)] if bias else [])
    for got, autodiff, formula in zip(grads, want, formulas):
        np.testing.assert_allclose(got, autodiff, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got, formula, rtol=1e-5, atol=1e-5)


# -- the model-level fold: JAX, the seeds-together path's training call ------------------------
# every BN variant, each placement once or more (a case compiles two gradients: ~2 s)
CASES = [("keras", "after"), ("keras", "before"), ("scratch", "after"), ("renorm", "before"),
         ("ghost", "after")]


def _jax_loss(call, x, y, non_trainable):
    import jax
    import jax.numpy as jnp

    def loss(trainable):
        out, updated = call(trainable, non_trainable, x)
        return -jnp.log(jnp.take_along_axis(out, y[:, None], 1)).mean(), (out, updated)
    return jax.jit(jax.value_and_grad(loss, has_aux=True))


@pytest.mark.skipif(BACKEND != "jax", reason="the seeds-together path is JAX's")
@pytest.mark.parametrize("norm,placement", CASES)
def test_the_folded_training_call_is_the_models_own(norm, placement):
    import jax.numpy as jnp

    from bnlab.lab import folded_input

    model = models.build("mlp", norm=norm, placement=placement, seed=1)
    assert folded_input.input_pair(model) == (model.layers[1], model.layers[2])
    rng = np.random.default_rng(26)  # its own: the draws do not depend on the tests run before
    x = jnp.asarray(rng.uniform(0, 1, (32, 28, 28)), "float32")
    y = jnp.asarray(rng.integers(0, 10, 32))
    # weights away from their initial values: γ ≠ 1, β ≠ 0, biases ≠ 0
    trainable = [v.value * rng.uniform(0.7, 1.3) + rng.normal(0, 0.05)
                 for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def own(tr, nt, xs):
        return model.stateless_call(tr, nt, xs, training=True)

    (loss, (out, updated)), grads = _jax_loss(folded_input.training_call(model), x, y,
                                              non_trainable)(trainable)
    (want_loss, (want_out, want_updated)), want = _jax_loss(own, x, y, non_trainable)(trainable)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-5)
    np.testing.assert_allclose(out, want_out, atol=1e-5)
    for got, expected in zip(updated, want_updated, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The two orders of float32 sums differ by up to 2.5e-5 of a gradient's largest element (60
    # draws, ghost BN); a 1e-3 relative error in any gradient fails. A gradient that is ~0 (a
    # bias before BN) is held to the largest of them all.
    scale = max(float(jnp.abs(g).max()) for g in want)
    for variable, got, expected in zip(model.trainable_variables, grads, want, strict=True):
        own_scale = max(float(jnp.abs(expected).max()), 1e-3 * scale)
        np.testing.assert_allclose(got, expected, atol=1e-4 * own_scale, err_msg=variable.path)


@pytest.mark.skipif(BACKEND != "jax", reason="the seeds-together path is JAX's")
def test_the_fold_removes_the_input_gradient_product():
    """The readable pair's compiled gradient has a product with the input's shape (B, 784),
    ∂L/∂y = g Wᵀ. The folded one has none: its ∂L/∂z, unused, is dropped by XLA."""
    import jax.numpy as jnp

    from bnlab.lab import folded_input

    model = models.build("mlp", norm="keras", placement="after", seed=1)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    x, y = jnp.zeros((32, 28, 28)), jnp.zeros(32, "int32")

    def input_shaped_products(call):
        hlo = _jax_loss(call, x, y, non_trainable).lower(trainable).compile().as_text()
        return [line for line in hlo.splitlines()
                if re.search(r"= f32\[32,784\]\S* (dot|custom-call)\(", line)]

    assert input_shaped_products(
        lambda tr, nt, xs: model.stateless_call(tr, nt, xs, training=True))
    assert not input_shaped_products(folded_input.training_call(model))


@pytest.mark.skipif(BACKEND != "jax", reason="the seeds-together path is JAX's")
def test_the_training_loop_updates_the_first_kernel_in_place():
    """In the seeds-together loop XLA copies a weight at the start of each step where nothing
    orders its update after its reads; ∂L/∂W's dependency on ∂L/∂γ and ∂L/∂β (folded_dense)
    orders them, so the 784 × 300 kernel of the folded pair is updated in place."""
    import jax
    import jax.numpy as jnp

    from bnlab.lab import experiments, multiseed

    exp = experiments.get("bn-placement")
    configs = [experiments.trial_config(exp, exp.arm("bn-after"), s, backend="jax")
               for s in (1, 2)]
    group = multiseed.SeedGroup(configs)
    steps = jax.jit(multiseed.SeedGroup._scan(group._each_seed(group._step)))
    x, y = jnp.zeros((64, 28, 28)), jnp.zeros(64, "int32")
    idx = jnp.arange(64).reshape(2, 1, 32).repeat(2, axis=1)  # (steps, seeds, batch)
    hlo = steps.lower(group.state, x, y, idx).compile().as_text()
    copied = re.findall(r"= (f32\[[0-9,]+\])\S* copy\(%get-tuple-element", hlo)
    assert copied, "no weight is copied at all: the pattern no longer finds XLA's copies"
    assert "f32[2,784,300]" not in copied


@pytest.mark.skipif(BACKEND != "jax", reason="the seeds-together path is JAX's")
def test_models_without_a_foldable_input_bn_keep_their_own_call():
    from bnlab.lab import folded_input

    for name, norm in (("mlp", "none"), ("deep-mlp", "keras"), ("lenet", "keras"),
                       ("mlp", "group")):
        assert folded_input.input_pair(models.build(name, norm=norm, seed=0)) is None, (name, norm)
    frozen = models.build("mlp", norm="keras", placement="after", seed=0)
    frozen.layers[1].trainable = False  # a frozen BN runs in inference mode: nothing to fold
    assert folded_input.input_pair(frozen) is None
    unscaled = keras.Sequential([keras.Input((6,)), keras.layers.BatchNormalization(scale=False),
                                 keras.layers.Dense(3)])
    assert folded_input.input_pair(unscaled) is None
