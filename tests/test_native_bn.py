"""BN's forward and backward as C++ kernels (layers.native.batch_norm, batch_norm.cc) against the
NumPy reference in float64, and a plain BN layer's training call by them (layers.native_bn)
against the layer's own call, inside a model's training call (lab.folded_input)."""

import os
import shutil

import keras
import numpy as np
import pytest

from bnlab import models
from bnlab.layers import BatchNorm
from bnlab.reference import bn as reference
from backend_utils import BACKEND

pytestmark = [
    pytest.mark.skipif(BACKEND != "jax", reason="XLA FFI kernels: JAX's"),
    pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "c++") is None,
                       reason="no C++ compiler here: bnlab keeps XLA's BN (test_native.py)"),
]

# (R, C): one row; C below 64 read as wide rows (6: k = 11, 16: k = 4) and R not a multiple of
# k (5, 30 rows); C ≥ 32 split by channels (32 × 784); many values, split by rows (50176 × 16).
SHAPES = [(1, 3), (5, 3), (30, 7), (66, 6), (64, 16), (32, 300), (32, 784), (256, 784),
          (50176, 16)]


def _close(got, want, rtol=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.abs(want).max(), 1e-30))


def _data(shape, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    x = (offset + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    beta = rng.normal(0, 0.5, shape[-1]).astype(np.float32)
    return x, gamma, beta


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_equal_the_reference(shape):
    import jax

    from bnlab.layers import native

    assert native.available(), "the host has a compiler: the kernels should build"
    x, gamma, beta = _data(shape)
    dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    (y, mean, variance), vjp = jax.vjp(lambda *a: native.batch_norm(*a, 1e-3), x, gamma, beta)
    dx, d_gamma, d_beta = vjp((dy, np.zeros_like(gamma), np.zeros_like(gamma)))
    want_y, cache = reference.forward(x.astype(np.float64), gamma, beta, epsilon=1e-3)
    _close(y, want_y)
    _close(mean, cache.mean.ravel())
    _close(variance, cache.var.ravel())
    for got, want in zip((dx, d_gamma, d_beta), reference.backward(dy.astype(np.float64), cache)):
        _close(got, want, rtol=1e-4)  # dx: a difference of sums of 50176 float32 terms


def test_the_statistics_cotangents_reach_x():
    """The gradient through μ and σ² as well as y (a caller may use them): autodiff's."""
    import jax
    import jax.numpy as jnp

    from bnlab.layers import native

    x, gamma, beta = _data((40, 9), seed=2)

    def readable(x, gamma, beta):
        mean = x.mean(0)
        variance = ((x - mean) ** 2).mean(0)
        return gamma * (x - mean) / jnp.sqrt(variance + 1e-3) + beta, mean, variance

    weights = [np.random.default_rng(3).standard_normal(s).astype(np.float32)
               for s in ((40, 9), (9,), (9,))]

    def loss(f):
        return lambda *a: sum(jnp.vdot(o, w) for o, w in zip(f(*a), weights))

    got = jax.grad(loss(lambda *a: native.batch_norm(*a, 1e-3)), (0, 1, 2))(x, gamma, beta)
    want = jax.grad(loss(readable), (0, 1, 2))(x, gamma, beta)
    for g, w in zip(got, want):
        _close(g, w, rtol=1e-5)


@pytest.mark.parametrize("order", ["shuffled", "sorted"])
def test_a_large_offset_keeps_the_variance(order):
    """|μ| = 10⁴ σ loses no digit of σ² (one pass of E[x²] − E[x]² would lose them all in
    float32): the sums are of x − o, o the mean of the first rows. Sorted, those rows are the
    smallest half of the batch, about 0.8 σ below μ, and still lose none."""
    import jax

    from bnlab.layers import native

    x, gamma, beta = _data((256, 40), seed=4, offset=1e4)
    if order == "sorted":
        x = np.sort(x, axis=0)
    _, mean, variance = jax.jit(lambda *a: native.batch_norm(*a, 1e-3))(x, gamma, beta)
    _, cache = reference.forward(x.astype(np.float64), gamma, beta, epsilon=1e-3)
    _close(mean, cache.mean.ravel(), rtol=1e-7)
    _close(variance, cache.var.ravel(), rtol=1e-5)


def test_seeds_under_vmap_have_their_own_statistics():
    import jax

    from bnlab.layers import native

    x, gamma, beta = _data((3, 32, 300), seed=5)
    x[1] *= 10.0  # seeds apart: the statistics of one must not leak into another
    gammas = np.stack([gamma, 2 * gamma, gamma + 1])
    per_seed = jax.vmap(lambda x, g: native.batch_norm(x, g, beta, 1e-3))(x, gammas)
    for seed in range(3):
        want_y, cache = reference.forward(x[seed].astype(np.float64), gammas[seed], beta,
                                          epsilon=1e-3)
        _close(per_seed[0][seed], want_y)
        _close(per_seed[2][seed], cache.var.ravel())


# -- a layer's training call by the kernels ---------------------------------------------------

PLAIN = {
    "keras": lambda: keras.layers.BatchNormalization(momentum=0.9),
    "bnlab": lambda: BatchNorm(momentum=0.8),
    "bnlab-cumulative-unbiased-no-beta": lambda: BatchNorm(
        momentum=None, unbiased_moving_variance=True, center=False),
    "keras-no-gamma": lambda: keras.layers.BatchNormalization(scale=False, epsilon=1e-5),
    "bnlab-ghost": lambda: BatchNorm(momentum=0.7, virtual_batch_size=4),
}


@pytest.mark.parametrize("kind", PLAIN)
@pytest.mark.parametrize("shape", [(32, 300), (8, 12, 12, 6)])
def test_train_call_is_the_layers_own(kind, shape):
    """Outputs, new moving statistics and the gradients of x, γ and β: the layer's own."""
    import jax
    import jax.numpy as jnp

    from bnlab.layers import native_bn

    layer = PLAIN[kind]()
    layer.build(shape)
    x, _, _ = _data(shape, seed=6)
    assert native_bn.applies(layer, jnp.asarray(x))
    weights = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    trainable = [v.value * 1.1 + 0.1 for v in layer.trainable_variables]
    non_trainable = [v.value + 0.5 for v in layer.non_trainable_variables]

    def loss(call):
        def f(trainable, x):
            mapping = [*zip(layer.trainable_variables, trainable),
                       *zip(layer.non_trainable_variables, non_trainable)]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                y = call(x)
                updated = [scope.get_current_value(v) for v in layer.non_trainable_variables]
            return jnp.vdot(y, weights), (y, updated)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (_, (y, updated)), grads = loss(lambda x: native_bn.train_call(layer, x))(trainable, x)
    (_, (want_y, want_updated)), want = loss(lambda x: layer(x, training=True))(trainable, x)
    _close(y, want_y, rtol=1e-5)
    for got, expected in zip(updated, want_updated, strict=True):
        _close(got, expected, rtol=1e-5)
    for got, expected in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)):
        _close(got, expected, rtol=1e-4)


def test_only_plain_layers_apply():
    """Renorm, Ghost BN whose k does not divide the batch, statistics across replicas, another
    axis, low precision or a frozen layer keep the layer's own call (Keras's synchronized=True
    cannot be built on JAX)."""
    import jax.numpy as jnp

    from bnlab.layers import native_bn

    x = jnp.zeros((8, 4, 4, 6))
    for make in PLAIN.values():
        assert native_bn.applies(make(), x)
    for layer in [BatchNorm(renorm=True), BatchNorm(virtual_batch_size=3),
                  BatchNorm(axis_name="seeds"), keras.layers.BatchNormalization(axis=1),
                  keras.layers.BatchNormalization(dtype="mixed_float16"),
                  keras.layers.BatchNormalization(renorm=True),
                  keras.layers.LayerNormalization()]:
        assert not native_bn.applies(layer, x), layer
    assert native_bn.applies(BatchNorm(virtual_batch_size=4), x)  # 8 = 2 groups of 4
    assert not native_bn.applies(BatchNorm(virtual_batch_size=4), x[:0])  # no group at all
    frozen = keras.layers.BatchNormalization()
    frozen.trainable = False
    assert not native_bn.applies(frozen, x)
    assert not native_bn.applies(keras.layers.BatchNormalization(), x.astype("float16"))


@pytest.mark.parametrize("name,norm", [("lenet", "keras"), ("mlp", "scratch")])
def test_a_models_training_call_runs_the_kernels_and_is_its_own(name, norm):
    """The model's training call (lab.folded_input) with every BN by the kernels: the compiled
    step calls them, and its loss, moving statistics and gradients are the model's own. (Not
    the 20-BN deep MLP: each layer's 2e-7 of round-off grows to 8e-5 of its output by the last.)"""
    import jax
    import jax.numpy as jnp

    from bnlab.lab import folded_input

    model = models.build(name, norm=norm, seed=3)
    rng = np.random.default_rng(8)
    shape = (16, 28, 28) + ((1,) if name in models.CONVOLUTIONAL else ())
    x = jnp.asarray(rng.uniform(0, 1, shape), "float32")
    y = jnp.asarray(rng.integers(0, 10, 16))
    trainable = [v.value * rng.uniform(0.8, 1.2) for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def step(call):
        def loss(trainable):
            out, updated = call(trainable, non_trainable, x)
            return -jnp.log(jnp.take_along_axis(out, y[:, None], 1)).mean(), updated
        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    fast = step(folded_input.training_call(model))
    assert "bnlab_bn_forward" in fast.lower(trainable).as_text()
    (loss, updated), grads = fast(trainable)
    (want_loss, want_updated), want = step(
        lambda tr, nt, xs: model.stateless_call(tr, nt, xs, training=True))(trainable)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-5)
    for got, expected in zip(updated, want_updated, strict=True):
        _close(got, expected, rtol=1e-5)
    scale = max(float(jnp.abs(g).max()) for g in want)
    for variable, got, expected in zip(model.trainable_variables, grads, want, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-4 * scale, err_msg=variable.path)


@pytest.mark.parametrize("experiment,seeds,kernels", [
    ("bn-placement", 1, False),  # one seed of an MLP: XLA's BN, measured faster there
    ("bn-placement", 2, True), ("lenet-bn", 1, True)])
def test_the_seeds_together_step_uses_the_kernels_where_they_were_faster(experiment, seeds,
                                                                          kernels):
    import jax
    import jax.numpy as jnp

    from bnlab.lab import experiments, multiseed

    exp = experiments.get(experiment)
    configs = [experiments.trial_config(exp, exp.arms[-1], s, backend="jax")
               for s in range(1, seeds + 1)]
    group = multiseed.SeedGroup(configs)
    steps = jax.jit(multiseed.SeedGroup._scan(group._each_seed(group._step)))
    shape = (32 * seeds, 28, 28) + ((1,) if experiment == "lenet-bn" else ())
    x, y = jnp.zeros(shape), jnp.zeros(32 * seeds, "int32")
    idx = jnp.arange(32 * seeds).reshape(1, seeds, 32)  # (steps, seeds, batch)
    assert ("bnlab_bn_forward" in steps.lower(group.state, x, y, idx).as_text()) == kernels
