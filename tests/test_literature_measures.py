"""The literature studies' measurements against NumPy references: TracedSGD's per-step record
and the norm identity ‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖² on a tiny scale-invariant layer, the
(c·w₀, c²·η) arm, and the per-layer gradient norms against bnlab.reference's hand-derived BN
backward pass."""

import math

import keras
import numpy as np
import pytest

from bnlab import reference
from bnlab.lab.literature import trains
from bnlab.results import claims
from bnlab.tools import gradients, scale_invariance

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX measurements")

EPSILON = 1e-3


def _tiny(seed=0, epsilon=EPSILON):
    """x (6) → Dense 5 without bias → BN → relu → Dense 3 softmax: one scale-invariant kernel."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(5, use_bias=False),
        keras.layers.BatchNormalization(epsilon=epsilon), keras.layers.Activation("relu"),
        keras.layers.Dense(3, activation="softmax")])


def _data(n=16):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 6)).astype("float32"), rng.integers(0, 3, n)


def _compiled(model, steps, rate, **arguments):
    optimizer = scale_invariance.TracedSGD.for_trial({"steps": steps}, model, learning_rate=rate,
                                                     **arguments)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return optimizer


def test_kernels_marks_the_kernels_in_front_of_a_norm():
    model = _tiny()
    assert [invariant for _, invariant in scale_invariance.kernels(model)] == [True, False]


def test_traced_sgd_records_norms_and_the_identity_holds(tmp_path):
    """Each step's record against NumPy on the weights before and after it, ‖g_t‖² against
    jax.grad at w_t, and the identity's relative error small on the invariant kernel only (BN's
    ε, which breaks the invariance a little, made tiny)."""
    import jax

    model, (x, y) = _tiny(epsilon=1e-7), _data()
    steps, rate = 4, 0.5
    optimizer = _compiled(model, steps, rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    expected = []
    for _ in range(steps):
        before = [np.asarray(layer.kernel.value, np.float64) for layer in
                  (model.layers[0], model.layers[3])]
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            return loss_fn(y, model.stateless_call(trainable, non_trainable, x, training=True)[0])

        grads = jax.grad(loss)(trainable)
        g = [np.asarray(grads[i], np.float64) for i in optimizer.tracked]
        model.train_on_batch(x, y)
        after = [np.asarray(layer.kernel.value, np.float64) for layer in
                 (model.layers[0], model.layers[3])]
        expected.append([[np.sum(w * w) for w in before], [np.sum(v * v) for v in g],
                         [np.sum(w1 * w1) - np.sum(w0 * w0) for w0, w1 in zip(before, after)]])
    recorded = scale_invariance.trace(optimizer)
    expected = np.array(expected)  # (steps, quantity, kernel)
    for q, name in enumerate(("w_squared", "g_squared", "w_change")):
        np.testing.assert_allclose(recorded[name], expected[:, q], rtol=2e-3, atol=1e-7)
    residual = scale_invariance.identity_residual(recorded)
    assert np.max(np.abs(residual[:, 0])) < 1e-3  # the kernel in front of BN
    assert np.max(np.abs(residual[:, 1])) > 0.1  # the output layer's is not scale-invariant
    np.testing.assert_allclose(recorded["learning_rates"], [rate, rate])


def test_identity_with_weight_decay():
    """Keras's decay, w ← (1 − ηλ) w before the step: ‖w'‖² = (1 − ηλ)²‖w‖² + η²‖g‖²."""
    model, (x, y) = _tiny(epsilon=1e-7), _data()
    optimizer = _compiled(model, 3, 0.5, weight_decay=0.1)
    for _ in range(3):
        model.train_on_batch(x, y)
    recorded = scale_invariance.trace(optimizer)
    assert recorded["weight_decay"] == pytest.approx(0.1)
    assert np.max(np.abs(scale_invariance.identity_residual(recorded)[:, 0])) < 1e-3


def test_rescaled_arm_predicts_like_the_original():
    """(c·w₀, c²·η) on the invariant kernel, η elsewhere: the same training-mode predictions
    after every step (BN's ε, tiny here, is what separates them at all; in inference mode the
    moving statistics' initial (0, 1) is not rescaled, so the two agree only once the moving
    averages have forgotten it)."""
    (x, y), c = _data(), 3.0
    plain, scaled = _tiny(seed=4, epsilon=1e-9), _tiny(seed=4, epsilon=1e-9)
    w0 = np.asarray(plain.layers[0].kernel.value)
    _compiled(plain, 5, 0.2)
    optimizer = _compiled(scaled, 5, 0.2, invariant_scale=c)
    np.testing.assert_allclose(np.asarray(scaled.layers[0].kernel.value), c * w0, rtol=1e-6)
    for _ in range(5):
        plain.train_on_batch(x, y)
        scaled.train_on_batch(x, y)
        np.testing.assert_allclose(np.asarray(scaled(x, training=True)),
                                   np.asarray(plain(x, training=True)), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scaled.layers[0].kernel.value),
                               c * np.asarray(plain.layers[0].kernel.value), rtol=1e-3, atol=1e-5)
    assert scale_invariance.trace(optimizer)["learning_rates"] == pytest.approx([0.2 * c * c, 0.2])


def test_traced_sgd_refuses_momentum_and_rescaling_with_decay():
    with pytest.raises(ValueError, match="momentum"):
        scale_invariance.TracedSGD(steps=1, tracked=[0], momentum=0.9)
    with pytest.raises(ValueError, match="weight decay"):
        scale_invariance.TracedSGD.for_trial({"steps": 1}, _tiny(), invariant_scale=2.0,
                                             weight_decay=1e-4)


def test_kernel_gradient_norms_match_the_reference_backward_pass():
    """x → W → BN → softmax: ∂L/∂W = xᵀ · BN's hand-derived backward of (p − onehot)/N."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, use_bias=False),
                              keras.layers.BatchNormalization(epsilon=EPSILON),
                              keras.layers.Activation("softmax")])
    x, _ = _data(12)
    y = np.arange(12) % 4
    norms = gradients.kernel_gradient_norms(model, keras.losses.SparseCategoricalCrossentropy(),
                                            x, y)
    w = np.asarray(model.layers[0].kernel.value, np.float64)
    z = x.astype(np.float64) @ w
    out, cache = reference.forward(z, epsilon=EPSILON)
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz, _, _ = reference.backward((p - np.eye(4)[y]) / len(x), cache)
    assert norms == pytest.approx([np.linalg.norm(x.T @ dz)], rel=1e-4)


def test_log_slope_is_the_exponential_rate():
    depths = [5, 10, 20, 40]
    assert gradients.log_slope(depths, [2.0 * math.exp(0.19 * d) for d in depths]) == \
        pytest.approx(0.19)


def test_trains_metrics():
    assert trains.trained({"val_accuracy": 0.5}) and not trains.trained({"val_accuracy": 0.49})
    assert not trains.trained({"val_accuracy": 0.9, "diverged": "step 3"})
    assert claims.DERIVED["test_points_over_bar"]({"test_accuracy": 0.8}, []) == \
        pytest.approx(30.0)
    assert claims.DERIVED["test_points_over_bar"]({"test_accuracy": float("nan")}, []) == \
        pytest.approx(-40.0)
