"""bnlab.reference against torch.nn.BatchNorm1d (N, C) and BatchNorm2d (N, C, H, W): porting of
weights both ways, training-mode running statistics, and gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bnlab import reference as ref  # noqa: E402

C = 3
# (module class, input shape NC or NCHW)
CASES = [(torch.nn.BatchNorm1d, (8, C)), (torch.nn.BatchNorm2d, (4, C, 3, 3))]
IDS = ["bn1d", "bn2d"]


def random_module(cls, eps=1e-3, seed=0, dtype=torch.float32):
    """A BN module with non-trivial weight, bias and running statistics."""
    rng = np.random.default_rng(seed)
    mod = cls(C, eps=eps).to(dtype)
    state = {"weight": rng.uniform(0.5, 2.0, C), "bias": rng.normal(0, 1, C),
             "running_mean": rng.normal(0, 2, C), "running_var": rng.uniform(0.5, 3.0, C)}
    with torch.no_grad():
        for k, v in state.items():
            getattr(mod, k).copy_(torch.as_tensor(v))
    return mod


def batch(shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    bshape = (1, C) + (1,) * (len(shape) - 2)
    x = rng.normal(0, 2, C).reshape(bshape) + rng.uniform(0.5, 2, C).reshape(bshape) * \
        rng.standard_normal(shape)
    return x.astype(dtype)


def t2n(t):
    return t.detach().cpu().numpy()


@pytest.mark.parametrize("cls, shape", CASES, ids=IDS)
def test_torch_to_reference_eval(cls, shape):
    mod = random_module(cls).eval()
    x = batch(shape, seed=1)
    with torch.no_grad():
        want = t2n(mod(torch.from_numpy(x)))
    w = ref.from_torch(mod.state_dict())
    assert set(w) == {"gamma", "beta", "moving_mean", "moving_variance"}
    got, _ = ref.forward(x, w["gamma"], w["beta"], axis=1, epsilon=mod.eps, training=False,
                         moving_mean=w["moving_mean"], moving_variance=w["moving_variance"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, shape", CASES, ids=IDS)
def test_reference_to_torch_eval(cls, shape):
    rng = np.random.default_rng(2)
    w = {"gamma": rng.uniform(0.5, 2, C), "beta": rng.normal(0, 1, C),
         "moving_mean": rng.normal(0, 2, C), "moving_variance": rng.uniform(0.5, 3, C)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    eps = 1e-3  # Keras's default; means the same in PyTorch, so it carries over unchanged
    mod = cls(C, eps=eps)
    # strict: every key must match (BN fills in a missing num_batches_tracked itself)
    mod.load_state_dict({k: torch.as_tensor(v) for k, v in ref.to_torch(w).items()})
    mod.eval()
    x = batch(shape, seed=3)
    with torch.no_grad():
        got = t2n(mod(torch.from_numpy(x)))
    want, _ = ref.forward(x, w["gamma"], w["beta"], axis=1, epsilon=eps, training=False,
                          moving_mean=w["moving_mean"], moving_variance=w["moving_variance"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_affine_false_ports_to_scale_and_center_off():
    mod = torch.nn.BatchNorm1d(C, affine=False, eps=1e-3)
    with torch.no_grad():
        mod.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        mod.running_var.copy_(torch.tensor([0.5, 2.0, 3.0]))
    mod.eval()
    w = ref.from_torch(mod.state_dict())
    assert set(w) == {"moving_mean", "moving_variance"}
    x = batch((8, C), seed=8)
    with torch.no_grad():
        want = t2n(mod(torch.from_numpy(x)))
    got, _ = ref.forward(x, None, None, axis=1, epsilon=mod.eps, training=False,
                         moving_mean=w["moving_mean"], moving_variance=w["moving_variance"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, shape", CASES, ids=IDS)
def test_training_steps_match_with_unbiased_moving_variance(cls, shape):
    m, steps = 0.9, 5  # Keras momentum
    mod = random_module(cls, seed=4)
    mod.momentum = ref.momentum_to_torch(m)
    mod.train()
    w0 = ref.from_torch(mod.state_dict())
    n = int(np.prod(shape)) // C  # reduced elements per channel
    runs = {True: (w0["moving_mean"], w0["moving_variance"]),
            False: (w0["moving_mean"], w0["moving_variance"])}
    for k in range(steps):
        x = batch(shape, seed=10 + k)
        with torch.no_grad():
            y_torch = t2n(mod(torch.from_numpy(x)))
        for unbiased, (mm, mv) in runs.items():
            y, mm, mv = ref.batch_norm(x, w0["gamma"], w0["beta"], mm, mv, axis=1, momentum=m,
                                       epsilon=mod.eps, training=True,
                                       unbiased_moving_variance=unbiased)
            runs[unbiased] = (mm, mv)
            np.testing.assert_allclose(y, y_torch, rtol=1e-5, atol=1e-5)
    rm, rv = t2n(mod.running_mean), t2n(mod.running_var)
    mm, mv = runs[True]
    np.testing.assert_allclose(mm, rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv, rv, rtol=1e-5)

    # Keras's biased moving variance differs, and exactly by N/(N−1) on the batch contributions.
    mm_b, mv_b = runs[False]
    np.testing.assert_allclose(mm_b, rm, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mv_b, rv, rtol=1e-3, atol=0)
    old = m ** steps * w0["moving_variance"]
    np.testing.assert_allclose((rv - old) / (mv_b - old), n / (n - 1), rtol=1e-4)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cls, shape", CASES, ids=IDS)
def test_gradients_match_autograd_float64(cls, shape, training):
    mod = random_module(cls, seed=5, dtype=torch.float64).train(training)
    w = ref.from_torch(mod.state_dict())  # before the forward pass updates the running stats
    x = batch(shape, seed=6, dtype=np.float64)
    r = np.random.default_rng(7).standard_normal(shape)
    xt = torch.from_numpy(x).requires_grad_(True)
    (mod(xt) * torch.from_numpy(r)).sum().backward()

    y, cache = ref.forward(x, w["gamma"], w["beta"], axis=1, epsilon=mod.eps, training=training,
                           moving_mean=w["moving_mean"], moving_variance=w["moving_variance"])
    dx, dgamma, dbeta = ref.backward(r, cache)
    for got, want in [(dx, xt.grad), (dgamma, mod.weight.grad), (dbeta, mod.bias.grad)]:
        want = t2n(want)
        assert np.linalg.norm(got - want) <= 1e-8 * max(np.linalg.norm(want), 1e-300)
