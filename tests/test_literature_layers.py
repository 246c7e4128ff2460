"""The literature studies' model features, against NumPy or Keras's own layers: the tuned conv's
kernel and gradients, BN on its moving statistics, what each ``train``/``bn_mode`` leaves
trainable, the dropout MLP, dropout's variance shift and PreciseBN with dropout off."""

import keras
import numpy as np
import pytest

import bnlab  # noqa: F401
from bnlab import models
from bnlab.layers import BatchNorm, ChannelTunedConv2D, MovingStatisticsBN
from bnlab.lab.literature import extras
from bnlab.tools import precise
from bnlab.tools.variance_shift import dropout_off, variance_shift

RNG = np.random.default_rng(0)


def _conv_reference(x, kernel):
    """'same' 3×3 convolution, stride 1, in NumPy: out[n,i,j,o] = Σ x[n,i+a-1,j+b-1,c] W[a,b,c,o]."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for a in range(3):
        for b in range(3):
            out += np.einsum("nhwc,co->nhwo", padded[:, a:a + h, b:b + w], kernel[a, b])
    return out


def test_channel_tuned_conv_changes_two_kernel_entries_a_channel_and_trains_only_them():
    layer = ChannelTunedConv2D(5, 3, padding="same", use_bias=True, tuned=2, tuned_seed=3)
    x = RNG.normal(size=(2, 6, 6, 4)).astype("float32")
    layer(x)
    assert [v.path.split("/")[-1] for v in layer.trainable_variables] == ["delta"]
    assert layer.count_params() == 3 * 3 * 4 * 5 + 5 + 2 * 5
    delta = RNG.normal(size=(2, 5)).astype("float32")
    layer.delta.assign(delta)
    kernel = np.asarray(layer.kernel, dtype=np.float64).copy()
    flat = kernel.reshape(-1, 5)
    for j in range(2):  # the module docstring's W_eff, entry by entry
        for c in range(5):
            flat[layer.positions[j, c], c] += delta[j, c]
    assert all(len(set(layer.positions[:, c])) == 2 for c in range(5))
    expected = _conv_reference(x.astype(np.float64), flat.reshape(kernel.shape))
    expected += np.asarray(layer.bias)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)
    # ∂L/∂δ[j, c] is ∂L/∂W at the tuned entry, for L = Σ out · g
    import jax
    g = RNG.normal(size=expected.shape).astype("float32")

    def loss_of_kernel(k):
        return (keras.layers.Conv2D.convolution_op(layer, x, k) * g).sum()

    grad_w = np.asarray(jax.grad(loss_of_kernel)(layer.effective_kernel())).reshape(-1, 5)

    def loss_of_delta(d):
        trainable = [d]
        out, _ = layer.stateless_call(trainable, [v.value for v in layer.non_trainable_variables],
                                      x)
        return (out * g).sum()

    grad_d = np.asarray(jax.grad(loss_of_delta)(layer.delta.value))
    np.testing.assert_allclose(grad_d, grad_w[layer.positions, np.arange(5)], rtol=1e-4,
                               atol=1e-4)


def test_moving_statistics_bn_normalizes_with_moving_ones_in_training_and_keeps_them():
    layer = MovingStatisticsBN(epsilon=1e-3)
    x = RNG.normal(2.0, 3.0, size=(16, 3)).astype("float32")
    layer.build(x.shape)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    gamma, beta = np.array([1.5, 0.5, -1.0]), np.array([0.1, 0.2, 0.3])
    layer.set_weights([gamma, beta, mean, var])
    y = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[2:], [mean, var])
    assert [v.path.split("/")[-1] for v in layer.trainable_variables] == ["gamma", "beta"]
    assert isinstance(layer, BatchNorm)  # PreciseBN and the tools see it as BN


def _trainable_kinds(model):
    return sorted({v.path.split("/")[-1] for v in model.trainable_variables})


@pytest.mark.parametrize("features,kinds,count", [
    ({}, ["beta", "gamma", "kernel", "bias"], None),
    ({"train": "norm"}, ["beta", "gamma"], 2 * (16 + 32 + 64)),
    ({"train": "norm+head"}, ["beta", "bias", "gamma", "kernel"], 2 * 112 + 64 * 10 + 10),
    ({"train": "two-per-channel"}, ["delta"], 2 * 112),
    ({"bn_mode": "frozen"}, ["bias", "kernel"], None),
])
def test_train_features_leave_exactly_their_weights_trainable(features, kinds, count):
    model = models.build("study-cnn", norm="scratch", seed=1, **features)
    assert _trainable_kinds(model) == sorted(set(kinds))
    if count is not None:
        assert models.count_params(model)[1] == count


def test_frozen_bn_runs_in_inference_mode_and_width_multiplies_the_channels():
    model = models.build("study-cnn", norm="scratch", bn_mode="frozen", width=2, seed=1)
    bns = precise.bn_layers(model)
    assert [bn.moving_mean.shape[0] for bn in bns] == [32, 64, 128]
    x = RNG.random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=True)),
                               np.asarray(model(x, training=False)), rtol=1e-5)
    moving = models.build("study-cnn", norm="scratch", bn_mode="moving", seed=1)
    assert all(isinstance(bn, MovingStatisticsBN) for bn in precise.bn_layers(moving))


@pytest.mark.parametrize("features,message", [
    ({"train": "some"}, "unknown train 'some'"),
    ({"dropout": "before-bn"}, "is for dropout-mlp"),
    ({"bn_mode": "moving", "norm": "keras"}, "needs norm='scratch'"),
    ({"width": 0}, "width must be a positive int"),
    ({"colour": 1}, "unknown model feature 'colour'"),
])
def test_bad_features_are_value_errors(features, message):
    kwargs = {"norm": "scratch", **features}
    with pytest.raises(ValueError, match=message):
        models.build("study-cnn", **kwargs)


def test_dropout_mlp_puts_dropout_before_bn_or_only_after_the_last():
    kinds = {d: [type(layer).__name__ for layer in
                 models.build("dropout-mlp", norm="scratch", dropout=d).layers]
             for d in ("before-bn", "after-bn")}
    block = ["Dense", "BatchNorm", "Activation"]
    assert kinds["before-bn"] == ["Flatten"] + block + (["Dropout"] + block) * 3 + ["Dense"]
    assert kinds["after-bn"] == ["Flatten"] + block * 4 + ["Dropout", "Dense"]


def _dropout_bn(rate):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(rate, seed=1),
                              BatchNorm(momentum=0.0)])
    model.build((None, 3))
    return model


def test_precise_bn_with_dropout_learns_the_shifted_variance_and_without_it_the_true_one():
    """Li et al.'s formula: Var_train = E[x²]/(1 − p) − E[x]²; with dropout off, Var(x). One
    batch of all the values: PreciseBN restores the random generator after each batch, so every
    batch would reuse one dropout mask."""
    p = 0.5
    x = RNG.normal([1.0, 2.0, -1.0], [1.0, 0.5, 2.0], size=(40_000, 3)).astype("float32")
    model = _dropout_bn(p)
    precise.precise_bn(model, x, batch_size=len(x), progress=False)
    _, trained = precise.moving_statistics(model.layers[-1])
    x64 = x.astype(np.float64)
    expected = (x64 ** 2).mean(0) / (1 - p) - x64.mean(0) ** 2
    np.testing.assert_allclose(trained, expected, rtol=0.03)
    shift = variance_shift(model, x)[0]["shift"]
    assert shift == pytest.approx(np.mean(expected / x64.var(0)), rel=0.03)
    with dropout_off(model):
        precise.precise_bn(model, x, batch_size=len(x), progress=False)
    assert model.layers[0].rate == p  # the rate is back
    np.testing.assert_allclose(precise.moving_statistics(model.layers[-1])[1], x64.var(0),
                               rtol=1e-4)
    assert variance_shift(model, x)[0]["shift"] == pytest.approx(1.0, abs=1e-3)


def test_gamma_extra_counts_the_share_of_small_gamma():
    model = models.build("study-cnn", norm="scratch", seed=1)
    bns = precise.bn_layers(model)
    gammas = [RNG.normal(size=bn.gamma.shape) for bn in bns]
    for bn, g in zip(bns, gammas):
        bn.gamma.assign(g.astype("float32"))
    found = extras.measure_gamma(model, {}, {})
    every = np.abs(np.concatenate(gammas))
    assert found["gamma_near_zero"] == pytest.approx(np.mean(every < 0.1), abs=1e-9)
    assert found["gamma_abs_median"] == pytest.approx(np.median(every), rel=1e-5)
    assert len(found["gamma_abs"]) == 16 + 32 + 64  # one γ a channel
