"""bnlab.reference's BN family (renorm, ghost, masks, cumulative average, cross-replica) against
finite differences (float64), closed forms, and, for the conventions, Keras's and PyTorch's own
layers."""

import numpy as np
import pytest

from bnlab import reference as ref
from test_reference import make, numeric_grad, rel_err

EPS = 1e-3


def loss_and_grads(fwd, bwd, x, gamma, beta, r):
    """(loss(), analytic (dx, dγ, dβ)) for L = Σ y · r, y = fwd(x, γ, β)."""

    def loss():
        y, _ = fwd(x, gamma, beta)
        return np.sum(y * r)

    _, cache = fwd(x, gamma, beta)
    return loss, bwd(r, cache)


# -- Batch Renormalization ---------------------------------------------------------------------

def renorm_fwd(renorm_mean, renorm_stddev, axis=-1, **clipping):
    def fwd(x, gamma, beta):
        return ref.renorm_forward(x, gamma, beta, renorm_mean, renorm_stddev, axis=axis,
                                  epsilon=EPS, **clipping)
    return fwd


@pytest.mark.parametrize("shape, axis", [((8, 3), -1), ((3, 2, 3, 2), 1)], ids=["dense", "nchw"])
def test_renorm_clipped_gradient_is_the_true_one(shape, axis):
    """r and d clipped (strictly beyond their bounds) are locally constant: holding them constant
    is then exact, and the hand-derived backward matches finite differences."""
    x, gamma, beta, _, _ = make(shape, axis, seed=1)
    axes = ref.reduction_axes(x.ndim, axis)
    mean, var = ref.moments(x, axes)
    # renorm_stddev 10× the batch σ_B → σ_B/σ ≈ 0.1 < rmin; renorm_mean 5σ away → |d| ≈ 0.5 > dmax.
    sigma = 10 * np.sqrt(var + EPS)
    fwd = renorm_fwd(mean + 5 * np.sqrt(var + EPS) * np.sign(np.arange(len(mean)) - 0.5),
                     sigma, axis=axis, rmax=3.0, rmin=0.5, dmax=0.2)
    r = np.random.default_rng(2).standard_normal(shape)
    loss, (dx, dgamma, dbeta) = loss_and_grads(fwd, ref.renorm_backward, x, gamma, beta, r)
    _, cache = fwd(x, gamma, beta)
    np.testing.assert_array_equal(cache.r, 0.5)
    np.testing.assert_array_equal(np.abs(cache.d), 0.2)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-6
    assert rel_err(dgamma, numeric_grad(loss, gamma)) < 1e-6
    assert rel_err(dbeta, numeric_grad(loss, beta)) < 1e-6


def test_renorm_unclipped_gradient_is_not_the_true_one():
    """Where r and d are not clipped they depend on x, and the held-constant dx differs from the
    true gradient; dγ and dβ stay true (r and d do not depend on γ, β)."""
    x, gamma, beta, _, _ = make((8, 3), -1, seed=3)
    mean, var = ref.moments(x, (0,))
    fwd = renorm_fwd(mean + 0.3, 1.5 * np.sqrt(var + EPS))  # r ≈ 0.67, d ≈ 0.2 / σ: no clipping
    r = np.random.default_rng(4).standard_normal(x.shape)
    loss, (dx, dgamma, dbeta) = loss_and_grads(fwd, ref.renorm_backward, x, gamma, beta, r)
    assert rel_err(dx, numeric_grad(loss, x)) > 1e-2
    assert rel_err(dgamma, numeric_grad(loss, gamma)) < 1e-6
    assert rel_err(dbeta, numeric_grad(loss, beta)) < 1e-6


def test_renorm_forward_formula_and_bn_limit():
    x, gamma, beta, _, _ = make((3, 2, 3, 2), -1, seed=5)
    axes = (0, 1, 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    mu, sd = mean - 0.7, np.array([0.5, 8.0])
    y, cache = ref.renorm_forward(x, gamma, beta, mu, sd, epsilon=EPS, rmax=2.0, dmax=1.0)
    sigma_b = np.sqrt(var + EPS)
    r_want = np.clip(sigma_b / sd, 0, 2.0)
    d_want = np.clip((mean - mu) / sd, -1.0, 1.0)
    np.testing.assert_allclose(np.squeeze(cache.r), r_want, rtol=1e-12)
    np.testing.assert_allclose(np.squeeze(cache.d), d_want, rtol=1e-12)
    np.testing.assert_allclose(y, gamma * ((x - mean) / sigma_b * r_want + d_want) + beta,
                               rtol=1e-12)
    # renorm statistics equal to the batch's give r = 1, d = 0: BN, forward and backward.
    dy = np.random.default_rng(6).standard_normal(x.shape)
    y, cache = ref.renorm_forward(x, gamma, beta, mean, sigma_b, epsilon=EPS)
    y_bn, bn_cache = ref.forward(x, gamma, beta, epsilon=EPS)
    np.testing.assert_allclose(y, y_bn, rtol=1e-12, atol=1e-12)
    for got, want in zip(ref.renorm_backward(dy, cache), ref.backward(dy, bn_cache)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_renorm_guards_small_stddev_and_bad_clipping():
    x, *_ = make((6, 2), -1)
    _, cache = ref.renorm_forward(x, None, None, np.zeros(2), np.zeros(2), epsilon=EPS)
    np.testing.assert_allclose(np.squeeze(cache.r), np.sqrt(x.var(0) + EPS) / np.sqrt(EPS))
    with pytest.raises(ValueError, match="rmin <= rmax"):
        ref.renorm_forward(x, None, None, np.zeros(2), np.ones(2), rmax=0.5, rmin=2.0)
    with pytest.raises(ValueError, match="dmax >= 0"):
        ref.renorm_forward(x, None, None, np.zeros(2), np.ones(2), dmax=-1.0)
    with pytest.raises(ValueError, match="renorm state lacks"):
        ref.renorm_update({"moving_mean": np.zeros(2)}, np.zeros(2), np.ones(2))


def test_renorm_state_updates_closed_form():
    rng = np.random.default_rng(7)
    state = ref.renorm_state(np.zeros(3), np.ones(3))
    m, m_r = 0.9, 0.7
    batches = [rng.normal(1.0, 2.0, (16, 3)) for _ in range(4)]
    for x in batches:
        _, state = ref.batch_renorm(x, None, None, state, momentum=m, renorm_momentum=m_r,
                                    epsilon=EPS, rmax=3.0, dmax=5.0)
    sds = [np.sqrt(x.var(0) + EPS) for x in batches]
    means = [x.mean(0) for x in batches]

    def ema(init, values, mom):  # closed form of n momentum steps
        n = len(values)
        return mom ** n * init + sum((1 - mom) * mom ** (n - 1 - i) * v
                                     for i, v in enumerate(values))

    np.testing.assert_allclose(state["renorm_mean"], ema(0.0, means, m_r), rtol=1e-12)
    np.testing.assert_allclose(state["renorm_stddev"], ema(1.0, sds, m_r), rtol=1e-12)
    np.testing.assert_allclose(state["moving_mean"], ema(0.0, means, m), rtol=1e-12)
    np.testing.assert_allclose(state["moving_stddev"], ema(1.0, sds, m), rtol=1e-12)
    np.testing.assert_allclose(state["moving_variance"], ema(1.0, sds, m) ** 2 - EPS, rtol=1e-12)
    # Inference is BN with moving_mean and moving_variance.
    y, same = ref.batch_renorm(batches[0], None, None, state, training=False, epsilon=EPS)
    assert same is state
    np.testing.assert_allclose(y, (batches[0] - state["moving_mean"])
                               / np.sqrt(state["moving_variance"] + EPS), rtol=1e-12)


@pytest.mark.backend
def test_renorm_matches_keras_layer():
    """The conventions (σ_B with ε, the √ε guard, the five updates, stop-gradient on r and d) are
    Keras 3.15's: outputs, gradients and every state variable over several steps, float32, 1e-5."""
    import keras
    from backend_utils import to_numpy, training_step

    clipping = {"rmax": 1.5, "rmin": 0.8, "dmax": 0.3}
    layer = keras.layers.BatchNormalization(renorm=True, renorm_clipping=clipping, momentum=0.8,
                                            renorm_momentum=0.6, epsilon=EPS)
    layer.build((12, 4))
    rng = np.random.default_rng(8)
    gamma, beta = rng.uniform(0.5, 2, 4).astype("float32"), rng.normal(0, 1, 4).astype("float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    state = ref.renorm_state(np.zeros(4), np.ones(4))
    clipped = set()
    for step in range(4):
        x = rng.normal(1.5 * step, 1.0 + step, (12, 4)).astype("float32")
        dy = rng.standard_normal(x.shape).astype("float32")
        _, cache = ref.renorm_forward(x.astype(np.float64), gamma, beta, state["renorm_mean"],
                                      state["renorm_stddev"], epsilon=EPS, **clipping)
        clipped |= {"r" if np.any(np.isin(cache.r, [0.8, 1.5])) else "",
                    "d" if np.any(np.abs(cache.d) == 0.3) else ""}
        want = ref.renorm_backward(dy.astype(np.float64), cache)
        y_want, state = ref.batch_renorm(x.astype(np.float64), gamma, beta, state, momentum=0.8,
                                         renorm_momentum=0.6, epsilon=EPS, **clipping)
        y_got, dx, dw = training_step(layer, x, dy)
        assert rel_err(y_got, y_want) < 1e-5
        assert rel_err(dx, want[0]) < 1e-5
        assert rel_err(dw["gamma"], want[1]) < 1e-5
        assert rel_err(dw["beta"], want[2]) < 1e-5
        for v in layer.non_trainable_variables:
            name = v.path.split("/")[-1]
            assert rel_err(to_numpy(v), state[name]) < 1e-5, (step, name)
    assert {"r", "d"} <= clipped  # both clippings were exercised


# -- Ghost BN ----------------------------------------------------------------------------------

def ghost_fwd(k, axis=-1):
    def fwd(x, gamma, beta):
        return ref.ghost_forward(x, gamma, beta, virtual_batch_size=k, axis=axis, epsilon=EPS)
    return fwd


@pytest.mark.parametrize("shape, axis, k", [((8, 3), -1, 2), ((6, 2, 2, 3), -1, 3),
                                            ((4, 3, 2, 2), 1, 2), ((7, 3), -1, 3),
                                            ((5, 2, 2, 3), -1, 2)],
                         ids=["dense", "nhwc", "nchw", "dense-uneven", "nhwc-uneven"])
def test_ghost_backward_vs_finite_differences(shape, axis, k):
    x, gamma, beta, _, _ = make(shape, axis, seed=9)
    r = np.random.default_rng(10).standard_normal(shape)
    loss, (dx, dgamma, dbeta) = loss_and_grads(ghost_fwd(k, axis), ref.ghost_backward,
                                               x, gamma, beta, r)
    assert dx.shape == x.shape and dgamma.shape == dbeta.shape == (shape[axis],)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-6
    assert rel_err(dgamma, numeric_grad(loss, gamma)) < 1e-6
    assert rel_err(dbeta, numeric_grad(loss, beta)) < 1e-6


def test_ghost_is_bn_per_group():
    x, gamma, beta, mm, mv = make((6, 2, 2, 3), -1, seed=11)
    y, new_mm, new_mv = ref.ghost_batch_norm(x, gamma, beta, mm, mv, virtual_batch_size=2,
                                             momentum=0.9, epsilon=EPS)
    groups = [x[i:i + 2] for i in range(0, 6, 2)]
    want = np.concatenate([ref.forward(g, gamma, beta, epsilon=EPS)[0] for g in groups])
    np.testing.assert_allclose(y, want, rtol=1e-12)
    stats = [ref.moments(g, (0, 1, 2)) for g in groups]
    np.testing.assert_allclose(new_mm, 0.9 * mm + 0.1 * np.mean([m for m, _ in stats], 0))
    np.testing.assert_allclose(new_mv, 0.9 * mv + 0.1 * np.mean([v for _, v in stats], 0))
    # k = N is BN; inference ignores k.
    np.testing.assert_allclose(ref.ghost_forward(x, gamma, beta, virtual_batch_size=6,
                                                 epsilon=EPS)[0],
                               ref.forward(x, gamma, beta, epsilon=EPS)[0], rtol=1e-12)
    y_inf, mm2, _ = ref.ghost_batch_norm(x, gamma, beta, mm, mv, virtual_batch_size=4,
                                         training=False, epsilon=EPS)
    np.testing.assert_allclose(y_inf, ref.forward(x, gamma, beta, training=False, epsilon=EPS,
                                                  moving_mean=mm, moving_variance=mv)[0])
    np.testing.assert_array_equal(mm2, mm)


def test_ghost_last_group_smaller_is_bn_on_the_rest_weighted_by_its_share():
    """k = 3 on 8 examples: groups of 3, 3 and 2; the moving statistics average the groups'
    moments weighted by n_g / N, so the moving mean moves to the mean of the whole batch."""
    x, gamma, beta, mm, mv = make((8, 2, 2, 3), -1, seed=12)
    y, new_mm, new_mv = ref.ghost_batch_norm(x, gamma, beta, mm, mv, virtual_batch_size=3,
                                             momentum=0.0, epsilon=EPS)
    groups = [x[0:3], x[3:6], x[6:8]]
    want = np.concatenate([ref.forward(g, gamma, beta, epsilon=EPS)[0] for g in groups])
    np.testing.assert_allclose(y, want, rtol=1e-12)
    stats = [ref.moments(g, (0, 1, 2)) for g in groups]
    shares = np.array([3, 3, 2]) / 8
    np.testing.assert_allclose(new_mm, ref.moments(x, (0, 1, 2))[0], rtol=1e-12)
    np.testing.assert_allclose(new_mv, sum(w * v for w, (_, v) in zip(shares, stats)),
                               rtol=1e-12)
    # k > N is BN
    np.testing.assert_allclose(ref.ghost_forward(x, gamma, beta, virtual_batch_size=20,
                                                 epsilon=EPS)[0],
                               ref.forward(x, gamma, beta, epsilon=EPS)[0], rtol=1e-12)


@pytest.mark.parametrize("k, axis, match", [(0, -1, "positive int"), (2.0, -1, "positive int"),
                                            (2, 0, "must not include 0")])
def test_ghost_bad_input(k, axis, match):
    with pytest.raises(ValueError, match=match):
        ref.ghost_forward(np.zeros((6, 3)), None, None, virtual_batch_size=k, axis=axis)


# -- masks -------------------------------------------------------------------------------------

def test_mask_statistics_are_those_of_the_unmasked_steps():
    x, gamma, beta, _, _ = make((3, 5, 2), -1, seed=12)
    mask = np.random.default_rng(13).random((3, 5)) < 0.6  # Keras's shape: (N, T) for (N, T, C)
    y, cache = ref.forward(x, gamma, beta, epsilon=EPS, mask=mask)
    kept = x[mask]  # (number of unmasked steps, C)
    mean, var = kept.mean(0), kept.var(0)
    np.testing.assert_allclose(np.squeeze(cache.mean), mean, rtol=1e-12)
    np.testing.assert_allclose(np.squeeze(cache.var), var, rtol=1e-12)
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + EPS) + beta, rtol=1e-12)
    np.testing.assert_allclose(ref.moments(x, (0, 1), mask=mask)[1], var, rtol=1e-12)
    with pytest.raises(ValueError, match="no unmasked value"):
        ref.forward(x, epsilon=EPS, mask=np.zeros((3, 5), bool))
    with pytest.raises(ValueError, match="mask has shape"):
        ref.forward(x, epsilon=EPS, mask=np.ones((4, 5), bool))


def test_masked_backward_vs_finite_differences():
    x, gamma, beta, _, _ = make((3, 4, 2), -1, seed=14)
    mask = np.random.default_rng(15).random((3, 4)) < 0.5
    mask[0, 0] = True

    def fwd(x, gamma, beta):
        return ref.forward(x, gamma, beta, epsilon=EPS, mask=mask)

    r = np.random.default_rng(16).standard_normal(x.shape)
    loss, (dx, dgamma, dbeta) = loss_and_grads(fwd, ref.backward, x, gamma, beta, r)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-6
    assert rel_err(dgamma, numeric_grad(loss, gamma)) < 1e-6
    assert rel_err(dbeta, numeric_grad(loss, beta)) < 1e-6


# -- cumulative moving average (momentum=None) -------------------------------------------------

def test_cumulative_average_is_the_plain_mean_of_the_batches():
    rng = np.random.default_rng(17)
    mm, mv = np.full(3, 5.0), np.full(3, 7.0)  # the initial values are forgotten at count=1
    batches = [rng.normal(i, 1 + i, (10, 3)) for i in range(5)]
    for count, x in enumerate(batches, start=1):
        _, mm, mv = ref.batch_norm(x, None, None, mm, mv, momentum=None, count=count)
    np.testing.assert_allclose(mm, np.mean([x.mean(0) for x in batches], 0), rtol=1e-12)
    np.testing.assert_allclose(mv, np.mean([x.var(0) for x in batches], 0), rtol=1e-12)
    for bad in (0, 1.5, None):
        with pytest.raises(ValueError, match="count"):
            ref.update_moving(mm, mm, None, bad)


def test_cumulative_average_matches_torch_momentum_none():
    torch = pytest.importorskip("torch")
    bn = torch.nn.BatchNorm1d(3, momentum=None, eps=EPS, dtype=torch.float64)
    rng = np.random.default_rng(18)
    mm, mv = np.zeros(3), np.ones(3)
    for count in range(1, 5):
        x = rng.normal(count, 2.0, (8, 3))
        bn.train()(torch.as_tensor(x))
        _, mm, mv = ref.batch_norm(x, None, None, mm, mv, momentum=None, count=count,
                                   unbiased_moving_variance=True, epsilon=EPS)
    np.testing.assert_allclose(bn.running_mean.numpy(), mm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), mv, rtol=1e-12)


# -- cross-replica statistics ------------------------------------------------------------------

def test_cross_replica_moments_combine_the_shards():
    """The global moments from the shards' own (Chan et al.'s pairwise combination): the mean of
    the means weighted by size, and the within-shard plus between-shard variance."""
    rng = np.random.default_rng(19)
    shards = [rng.normal(i, 1 + i, (n, 2, 3)) for i, n in enumerate((2, 5, 3))]
    sizes = np.array([s.shape[0] * s.shape[1] for s in shards])[:, None]
    local = [ref.moments(s, (0, 1)) for s in shards]
    means, vars_ = np.array([m for m, _ in local]), np.array([v for _, v in local])
    mean = (sizes * means).sum(0) / sizes.sum()
    var = (sizes * (vars_ + (means - mean) ** 2)).sum(0) / sizes.sum()
    got_mean, got_var = ref.cross_replica_moments(shards)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(got_var, var, rtol=1e-12)
    ys, _ = ref.cross_replica_forward(shards, epsilon=EPS)
    assert [y.shape for y in ys] == [s.shape for s in shards]
    np.testing.assert_allclose(ys[1], (shards[1] - mean) / np.sqrt(var + EPS), rtol=1e-12)
