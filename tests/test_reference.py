"""bnlab.reference against obviously-correct computations, the seed 001 function and finite
differences (float64), across layouts, modes and center/scale on/off."""

import numpy as np
import pytest

from bnlab import reference as ref

# (name, shape, kept axis): dense (N, C), NHWC, NCHW (axis=1 and axis=-3), sequences (N, T, C).
LAYOUTS = [
    ("dense", (6, 3), -1),
    ("nhwc", (3, 2, 3, 2), -1),
    ("nchw", (3, 2, 3, 2), 1),
    ("nchw_neg", (3, 2, 3, 2), -3),
    ("ntc", (4, 3, 3), -1),
]
LAYOUT_IDS = [name for name, _, _ in LAYOUTS]
EPS = 1e-3


def seed001_batch_norm(is_training, X, gamma, beta, running_mean, running_var, eps, momentum):
    """Seed notebook 001's NumPy batch_norm, verbatim: the historical reference."""
    if not is_training:
        X_hat = (X - running_mean) / np.sqrt(running_var + eps)
    else:
        if len(X.shape) == 2:  # dense layer
            mean = np.mean(X, axis=0)
            var = np.mean((X - mean) ** 2, axis=0)
        else:  # conv
            mean = np.mean(X, axis=(0, 2, 3), keepdims=True)
            var = np.mean((X - mean) ** 2, axis=(0, 2, 3), keepdims=True)
        X_hat = (X - mean) / np.sqrt(var + eps)
        running_mean = momentum * running_mean + (1.0 - momentum) * mean
        running_var = momentum * running_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta
    return Y, running_mean, running_var


def make(shape, axis, seed=0, dtype=np.float64):
    """Input with per-channel offsets and scales, plus γ, β and moving statistics of shape (C,)."""
    rng = np.random.default_rng(seed)
    c = shape[axis]
    bshape = [1] * len(shape)
    bshape[axis] = c
    loc = rng.normal(0, 3, c).reshape(bshape)
    scale = rng.uniform(0.5, 2.0, c).reshape(bshape)
    x = (loc + scale * rng.standard_normal(shape)).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.normal(0, 1, c).astype(dtype)
    mm = rng.normal(0, 3, c).astype(dtype)
    mv = rng.uniform(0.5, 4.0, c).astype(dtype)
    return x, gamma, beta, mm, mv


def direct(x, gamma, beta, axis, training, mm, mv, eps=EPS):
    """Loop over channels with np.mean / np.var: obviously correct, slow."""
    xc = np.moveaxis(x, axis, -1)
    y = np.empty_like(xc)
    for c in range(xc.shape[-1]):
        v = xc[..., c]
        mu, var = (np.mean(v), np.var(v)) if training else (mm[c], mv[c])
        g = 1.0 if gamma is None else gamma[c]
        b = 0.0 if beta is None else beta[c]
        y[..., c] = g * (v - mu) / np.sqrt(var + eps) + b
    return np.moveaxis(y, -1, axis)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if denom == 0 else np.linalg.norm(a - b) / denom


# -- axes and moments --------------------------------------------------------------------------

def test_reduction_axes():
    assert ref.reduction_axes(2) == (0,)
    assert ref.reduction_axes(4) == (0, 1, 2)
    assert ref.reduction_axes(4, axis=1) == (0, 2, 3)
    assert ref.reduction_axes(4, axis=-3) == (0, 2, 3)
    assert ref.reduction_axes(3, axis=-1) == (0, 1)
    assert ref.reduction_axes(4, axis=[1, -1]) == (0, 2)
    assert ref.reduction_axes(4, axis=(np.int64(3),)) == (0, 1, 2)


@pytest.mark.parametrize("ndim, axis", [(2, 2), (2, -3), (4, 4), (4, (1, 5)), (3, (1, -2)),
                                        (3, []), (3, 1.0), (0, -1)])
def test_bad_axis(ndim, axis):
    with pytest.raises(ValueError):
        ref.reduction_axes(ndim, axis)


def test_bad_axis_in_forward():
    with pytest.raises(ValueError, match="out of range"):
        ref.forward(np.zeros((4, 3)), axis=2)


@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_moments_two_pass(name, shape, axis):
    x, *_ = make(shape, axis)
    axes = ref.reduction_axes(x.ndim, axis)
    mean, var = ref.moments(x, axes)
    assert mean.shape == var.shape == (shape[axis],)
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=axes), rtol=1e-12)


# -- forward -----------------------------------------------------------------------------------

@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_forward_matches_direct(name, shape, axis, training, scale, center):
    x, gamma, beta, mm, mv = make(shape, axis)
    gamma, beta = (gamma if scale else None), (beta if center else None)
    y, _ = ref.forward(x, gamma, beta, axis=axis, epsilon=EPS, training=training,
                       moving_mean=mm, moving_variance=mv)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, direct(x, gamma, beta, axis, training, mm, mv),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["dense", "conv"])
def test_batch_norm_matches_seed001(layout, training):
    shape, axis = ((8, 4), -1) if layout == "dense" else ((4, 3, 5, 5), 1)  # seed conv is NCHW
    x, gamma, beta, mm, mv = make(shape, axis, seed=1)
    m = 0.9
    bshape = (1, -1) if layout == "dense" else (1, -1, 1, 1)
    want = seed001_batch_norm(training, x, gamma.reshape(bshape), beta.reshape(bshape),
                              mm.reshape(bshape), mv.reshape(bshape), EPS, m)
    got = ref.batch_norm(x, gamma, beta, mm, mv, axis=axis, momentum=m, epsilon=EPS,
                         training=training)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1].reshape(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2].reshape(-1), rtol=1e-12, atol=1e-12)


def test_inference_returns_moving_unchanged():
    x, gamma, beta, mm, mv = make((5, 3), -1)
    _, new_mm, new_mv = ref.batch_norm(x, gamma, beta, mm, mv, training=False)
    np.testing.assert_array_equal(new_mm, mm)
    np.testing.assert_array_equal(new_mv, mv)


@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_training_output_statistics(name, shape, axis):
    x, gamma, beta, _, _ = make(shape, axis, seed=2)
    axes = ref.reduction_axes(x.ndim, axis)
    y, _ = ref.forward(x, gamma, beta, axis=axis, epsilon=EPS)
    var = x.var(axis=axes)
    np.testing.assert_allclose(y.mean(axis=axes), beta, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=axes), np.abs(gamma) * np.sqrt(var / (var + EPS)),
                               rtol=1e-12)


def test_multiple_kept_axes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 2, 3, 5))
    gamma, beta = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    y, _ = ref.forward(x, gamma, beta, axis=(2, 3))
    mu, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, gamma * (x - mu) / np.sqrt(var + EPS) + beta, rtol=1e-12)


# -- backward ----------------------------------------------------------------------------------

def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() w.r.t. every element of a (modified in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = f()
        a[i] = old - h
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_backward_vs_finite_differences(name, shape, axis, training, scale, center):
    x, gamma, beta, mm, mv = make(shape, axis, seed=4)
    r = np.random.default_rng(5).standard_normal(shape)
    g_arg = (lambda: gamma) if scale else (lambda: None)
    b_arg = (lambda: beta) if center else (lambda: None)

    def loss():
        y, _ = ref.forward(x, g_arg(), b_arg(), axis=axis, training=training,
                           moving_mean=mm, moving_variance=mv)
        return np.sum(y * r)

    _, cache = ref.forward(x, g_arg(), b_arg(), axis=axis, training=training,
                           moving_mean=mm, moving_variance=mv)
    dx, dgamma, dbeta = ref.backward(r, cache)
    assert dx.shape == x.shape and dgamma.shape == dbeta.shape == (shape[axis],)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-6
    if scale:
        assert rel_err(dgamma, numeric_grad(loss, gamma)) < 1e-6
    if center:
        assert rel_err(dbeta, numeric_grad(loss, beta)) < 1e-6
    # With γ/β off, dγ/dβ are the gradients w.r.t. an implicit γ=1, β=0.
    axes = ref.reduction_axes(x.ndim, axis)
    x_hat, _ = ref.forward(x, axis=axis, training=training, moving_mean=mm, moving_variance=mv)
    np.testing.assert_allclose(dgamma, np.sum(r * x_hat, axis=axes), rtol=1e-10)
    np.testing.assert_allclose(dbeta, np.sum(r, axis=axes), rtol=1e-10)


@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_backward_properties_training(name, shape, axis):
    x, gamma, beta, _, _ = make(shape, axis, seed=6)
    dy = np.random.default_rng(7).standard_normal(shape)
    axes = ref.reduction_axes(x.ndim, axis)
    # Σ dx = 0 and Σ dx·x̂ = 0 hold exactly for ε = 0 (mean and scale are projected out) ...
    _, cache = ref.forward(x, gamma, beta, axis=axis, epsilon=0.0)
    dx, _, _ = ref.backward(dy, cache)
    size = np.abs(dx).sum(axis=axes)
    assert np.all(np.abs(dx.sum(axis=axes)) < 1e-12 * size)
    assert np.all(np.abs((dx * cache.x_hat).sum(axis=axes)) < 1e-12 * size)
    # ... for ε > 0, Σ dx stays 0 and Σ dx·x̂ = γ/√(σ²+ε) · Σ dy·x̂ · ε/(σ²+ε), which is small.
    _, cache = ref.forward(x, gamma, beta, axis=axis, epsilon=EPS)
    dx, dgamma, _ = ref.backward(dy, cache)
    var = x.var(axis=axes)
    assert np.all(np.abs(dx.sum(axis=axes)) < 1e-12 * np.abs(dx).sum(axis=axes))
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=axes),
                               gamma / np.sqrt(var + EPS) * dgamma * EPS / (var + EPS),
                               rtol=1e-8, atol=1e-14)


def test_backward_inference_is_affine():
    x, gamma, beta, mm, mv = make((3, 2, 3, 2), 1)
    dy = np.random.default_rng(8).standard_normal(x.shape)
    _, cache = ref.forward(x, gamma, beta, axis=1, training=False,
                           moving_mean=mm, moving_variance=mv)
    dx, _, _ = ref.backward(dy, cache)
    np.testing.assert_allclose(dx, dy * (gamma / np.sqrt(mv + EPS)).reshape(1, -1, 1, 1),
                               rtol=1e-14)


def test_backward_bad_dy_shape():
    _, cache = ref.forward(np.ones((4, 3)) + np.arange(4)[:, None])
    with pytest.raises(ValueError, match="dy has shape"):
        ref.backward(np.ones((3, 4)), cache)


# -- moving averages ---------------------------------------------------------------------------

def test_update_moving_keras_convention():
    np.testing.assert_allclose(ref.update_moving(np.array([10.0]), np.array([0.0]), 0.99), [9.9])


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("name, shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_moving_average_closed_form(name, shape, axis, unbiased):
    m, steps = 0.9, 6
    _, gamma, beta, mm0, mv0 = make(shape, axis)
    axes = ref.reduction_axes(len(shape), axis)
    n = int(np.prod([shape[i] for i in axes]))
    mm, mv = mm0, mv0
    means, variances = [], []
    for k in range(steps):
        x, *_ = make(shape, axis, seed=100 + k)
        means.append(x.mean(axis=axes))
        variances.append(x.var(axis=axes) * (n / (n - 1) if unbiased else 1.0))
        _, mm, mv = ref.batch_norm(x, gamma, beta, mm, mv, axis=axis, momentum=m,
                                   unbiased_moving_variance=unbiased)
    w = [(1 - m) * m ** (steps - 1 - j) for j in range(steps)]
    np.testing.assert_allclose(mm, m ** steps * mm0 + sum(wj * b for wj, b in zip(w, means)),
                               rtol=1e-12)
    np.testing.assert_allclose(mv, m ** steps * mv0 + sum(wj * b for wj, b in zip(w, variances)),
                               rtol=1e-12)


def test_unbiased_needs_two_values():
    with pytest.raises(ValueError, match="more than one value"):
        ref.batch_norm(np.ones((1, 3)), None, None, np.zeros(3), np.ones(3),
                       unbiased_moving_variance=True)


# -- numerics ----------------------------------------------------------------------------------

def test_stable_statistics_large_mean_float32():
    rng = np.random.default_rng(9)
    x32 = (1e4 + rng.standard_normal((256, 8))).astype(np.float32)
    y, _ = ref.forward(x32, epsilon=EPS)
    assert y.dtype == np.float32
    x64 = x32.astype(np.float64)
    mu64 = x64.mean(axis=0)
    y64 = (x64 - mu64) / np.sqrt(((x64 - mu64) ** 2).mean(axis=0) + EPS)
    assert np.max(np.abs(y - y64)) < 1e-2

    # The naive one-pass formula in float32 cancels catastrophically (it may even go negative).
    mu32 = x32.mean(axis=0, dtype=np.float32)
    naive_var = (x32 * x32).mean(axis=0, dtype=np.float32) - mu32 * mu32
    with np.errstate(invalid="ignore"):
        naive = (x32 - mu32) / np.sqrt(naive_var + np.float32(EPS))
    err = np.where(np.isfinite(naive), np.abs(naive - y64), np.inf)
    assert np.max(err) > 1


def test_float16_input_float32_statistics():
    x16 = make((16, 4), -1, dtype=np.float16)[0]
    mean, var = ref.moments(x16, (0,))
    assert mean.dtype == var.dtype == np.float32
    y, cache = ref.forward(x16)
    assert y.dtype == np.float16 and cache.mean.dtype == cache.x_hat.dtype == np.float32
    dx, dgamma, _ = ref.backward(np.ones_like(x16), cache)
    assert dx.dtype == np.float16 and dgamma.dtype == np.float32
    x64 = x16.astype(np.float64)
    want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + EPS)
    np.testing.assert_allclose(y.astype(np.float64), want, atol=5e-3)
    assert ref.moments(np.ones((2, 2)), (0,))[0].dtype == np.float64


# -- errors ------------------------------------------------------------------------------------

def test_inference_needs_moving_stats():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="moving_mean and moving_variance"):
        ref.forward(x, training=False)
    with pytest.raises(ValueError, match="moving_mean and moving_variance"):
        ref.forward(x, training=False, moving_mean=np.zeros(3))
    with pytest.raises(ValueError):
        ref.batch_norm(x, None, None, None, None, training=False)


def test_parameter_shape_mismatch():
    with pytest.raises(ValueError, match="gamma has shape"):
        ref.forward(np.ones((4, 2, 3, 3)), np.ones(3), axis=1)


# -- porting dicts (no torch needed) -----------------------------------------------------------

def test_momentum_conversion():
    assert ref.momentum_to_torch(0.99) == pytest.approx(0.01)
    assert ref.momentum_from_torch(0.1) == pytest.approx(0.9)
    assert ref.momentum_from_torch(ref.momentum_to_torch(0.7)) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        ref.momentum_to_torch(1.5)


def test_torch_dict_round_trip():
    w = {"gamma": np.arange(3.0), "beta": np.ones(3), "moving_mean": np.zeros(3),
         "moving_variance": np.full(3, 2.0)}
    t = ref.to_torch(w)
    assert set(t) == {"weight", "bias", "running_mean", "running_var"}
    np.testing.assert_array_equal(t["weight"], w["gamma"])
    np.testing.assert_array_equal(t["running_var"], w["moving_variance"])
    back = ref.from_torch({**t, "num_batches_tracked": np.array(5)})
    assert set(back) == set(w)
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])
    assert ref.to_torch({"moving_mean": np.zeros(2), "moving_variance": np.ones(2)}).keys() == {
        "running_mean", "running_var"}
    with pytest.raises(ValueError, match="unknown"):
        ref.from_torch({"weight": np.ones(2), "bogus": np.ones(2)})


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_keras_weight_order(center, scale):
    d = {"gamma": np.full(2, 1.0), "beta": np.full(2, 2.0), "moving_mean": np.full(2, 3.0),
         "moving_variance": np.full(2, 4.0)}
    lst = ref.keras_weights(d, center=center, scale=scale)
    want = [1.0] * scale + [2.0] * center + [3.0, 4.0]
    assert [float(a[0]) for a in lst] == want
    back = ref.weights_dict(lst, center=center, scale=scale)
    assert set(back) == {k for k in d if (k != "gamma" or scale) and (k != "beta" or center)}
    with pytest.raises(ValueError):
        ref.weights_dict(lst[:-1], center=center, scale=scale)
