"""bnlab.layers.BatchNorm's variants against bnlab.reference, on the backend of KERAS_BACKEND:
Batch Renormalization (with clipping), Ghost BN (virtual_batch_size), the cumulative moving
average (momentum=None) and masks. Over several training steps: outputs, gradients (dx, dγ, dβ)
and every moving statistic, float32 against the float64 reference, relative error < 1e-5."""

import numpy as np
import pytest

from backend_utils import each_gradient, to_numpy, training_step
from bnlab import reference as ref
from bnlab.layers import BatchNorm
from test_reference import rel_err

pytestmark = pytest.mark.backend
gradient = each_gradient(__name__)  # every test on the autodiff and the closed-form gradient

EPS = 1e-3
STEPS = 4
TOL = 1e-5


def batches(shape, seed):
    """STEPS input batches (float32) whose mean and scale drift, and the upstream gradients dy."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(1.5 * step, 1.0 + step, shape).astype("float32"),
             rng.standard_normal(shape).astype("float32")) for step in range(STEPS)]


def with_gamma_beta(layer, shape, axis, seed):
    """Build ``layer`` for ``shape`` and give it a random γ, β (float32); returns them."""
    layer.build(shape)
    c = shape[axis]
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 2.0, c).astype("float32")
    beta = rng.normal(0.0, 1.0, c).astype("float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    return gamma, beta


def check_step(layer, x, dy, want_y, want_grads, state, step, **call_kwargs):
    """One training step of the layer against the reference's output, gradients and state."""
    y, dx, dw = training_step(layer, x, dy, **call_kwargs)
    assert rel_err(y, want_y) < TOL, ("y", step)
    assert rel_err(dx, want_grads[0]) < TOL, ("dx", step)
    assert rel_err(dw["gamma"], want_grads[1]) < TOL, ("dgamma", step)
    assert rel_err(dw["beta"], want_grads[2]) < TOL, ("dbeta", step)
    for name, want in state.items():
        assert rel_err(to_numpy(getattr(layer, name)), want) < TOL, (name, step)


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


# -- Batch Renormalization ---------------------------------------------------------------------

RENORM_CASES = [
    # (input shape, axis, renorm_clipping, with a (N, T) mask)
    ((16, 5), -1, {"rmax": 1.5, "rmin": 0.8, "dmax": 0.3}, False),
    ((4, 3, 3, 2), -1, {"rmax": 2.0, "dmax": 0.5}, False),
    ((4, 2, 3, 3), 1, {}, False),
    ((4, 6, 3), -1, {"rmax": 1.2, "rmin": 0.9, "dmax": 0.2}, True),
]


@pytest.mark.parametrize("shape, axis, clipping, masked", RENORM_CASES,
                         ids=["dense-clipped", "nhwc-rmax-dmax", "nchw-unclipped", "masked"])
def test_renorm(shape, axis, clipping, masked):
    layer = BatchNorm(axis=axis, momentum=0.8, epsilon=EPS, renorm=True,
                      renorm_clipping=clipping, renorm_momentum=0.6)
    gamma, beta = with_gamma_beta(layer, shape, axis, seed=1)
    state = ref.renorm_state(np.zeros(shape[axis]), np.ones(shape[axis]))
    mask = np.random.default_rng(2).random(shape[:2]) < 0.7 if masked else None
    kwargs = {"mask": mask} if masked else {}
    for step, (x, dy) in enumerate(batches(shape, seed=3)):
        _, cache = ref.renorm_forward(f64(x), gamma, beta, state["renorm_mean"],
                                      state["renorm_stddev"], axis=axis, epsilon=EPS,
                                      mask=mask, **clipping)
        want_grads = ref.renorm_backward(f64(dy), cache)
        want_y, state = ref.batch_renorm(f64(x), gamma, beta, state, axis=axis, momentum=0.8,
                                         renorm_momentum=0.6, epsilon=EPS, mask=mask, **clipping)
        check_step(layer, x, dy, want_y, want_grads, state, step, **kwargs)
    y_inf = to_numpy(layer(batches(shape, seed=4)[0][0], training=False))
    want_inf, _ = ref.batch_renorm(f64(batches(shape, seed=4)[0][0]), gamma, beta, state,
                                   axis=axis, epsilon=EPS, training=False)
    assert rel_err(y_inf, want_inf) < TOL


# -- Ghost BN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, axis, k", [((12, 5), -1, 4), ((8, 3, 3, 2), -1, 2),
                                            ((6, 2, 3, 3), 1, 3), ((14, 5), -1, 4),
                                            ((7, 3, 3, 2), -1, 3), ((5, 2, 3, 3), 1, 2)],
                         ids=["dense", "nhwc", "nchw", "dense-uneven", "nhwc-uneven",
                              "nchw-uneven"])
def test_ghost(shape, axis, k):
    layer = BatchNorm(axis=axis, momentum=0.8, epsilon=EPS, virtual_batch_size=k)
    gamma, beta = with_gamma_beta(layer, shape, axis, seed=5)
    mm, mv = np.zeros(shape[axis]), np.ones(shape[axis])
    for step, (x, dy) in enumerate(batches(shape, seed=6)):
        _, cache = ref.ghost_forward(f64(x), gamma, beta, virtual_batch_size=k, axis=axis,
                                     epsilon=EPS)
        want_grads = ref.ghost_backward(f64(dy), cache)
        want_y, mm, mv = ref.ghost_batch_norm(f64(x), gamma, beta, mm, mv, virtual_batch_size=k,
                                              axis=axis, momentum=0.8, epsilon=EPS)
        check_step(layer, x, dy, want_y, want_grads, {"moving_mean": mm, "moving_variance": mv},
                   step)


# -- momentum=None: the cumulative moving average ----------------------------------------------

@pytest.mark.parametrize("unbiased", [False, True])
def test_momentum_none_cumulative_average(unbiased):
    shape, axis = (4, 3, 3, 2), -1
    layer = BatchNorm(momentum=None, epsilon=EPS, unbiased_moving_variance=unbiased)
    gamma, beta = with_gamma_beta(layer, shape, axis, seed=7)
    mm, mv = np.zeros(shape[axis]), np.ones(shape[axis])
    for step, (x, dy) in enumerate(batches(shape, seed=8)):
        _, cache = ref.forward(f64(x), gamma, beta, epsilon=EPS)
        want_grads = ref.backward(f64(dy), cache)
        want_y, mm, mv = ref.batch_norm(f64(x), gamma, beta, mm, mv, momentum=None,
                                        count=step + 1, epsilon=EPS,
                                        unbiased_moving_variance=unbiased)
        check_step(layer, x, dy, want_y, want_grads, {"moving_mean": mm, "moving_variance": mv},
                   step)


# -- masks -------------------------------------------------------------------------------------

def test_mask():
    shape, axis = (4, 6, 3), -1
    layer = BatchNorm(momentum=0.8, epsilon=EPS)
    gamma, beta = with_gamma_beta(layer, shape, axis, seed=9)
    mm, mv = np.zeros(shape[axis]), np.ones(shape[axis])
    rng = np.random.default_rng(10)
    for step, (x, dy) in enumerate(batches(shape, seed=11)):
        mask = rng.random(shape[:2]) < 0.6
        mask[0, 0] = True
        _, cache = ref.forward(f64(x), gamma, beta, epsilon=EPS, mask=mask)
        want_grads = ref.backward(f64(dy), cache)
        want_y, mm, mv = ref.batch_norm(f64(x), gamma, beta, mm, mv, momentum=0.8, epsilon=EPS,
                                        mask=mask)
        check_step(layer, x, dy, want_y, want_grads, {"moving_mean": mm, "moving_variance": mv},
                   step, mask=mask)
