"""Backend plumbing for the layer tests: gradients of a scalar loss on JAX, TensorFlow and PyTorch.

Keras 3 has no backend-neutral ``grad``, so each backend's own autodiff is used here. The loss is
L = Σ layer(x) · R for a fixed random R, so dL/dy = R and the results can be held against
``bnlab.reference.backward(R, cache)``.
"""

import sys
import weakref

import keras
import numpy as np
import pytest

from bnlab.layers import BatchNorm

BACKEND = keras.backend.backend()


@keras.saving.register_keras_serializable(package="bnlab_tests")
class ClosedFormBatchNorm(BatchNorm):
    """bnlab's BatchNorm with ``gradient="closed-form"`` unless told otherwise: the tests written
    for the readable layer run on it unchanged."""

    def __init__(self, *args, gradient="closed-form", **kwargs):
        super().__init__(*args, gradient=gradient, **kwargs)


@keras.saving.register_keras_serializable(package="bnlab_tests")
class NativeBatchNorm(BatchNorm):
    """bnlab's BatchNorm with ``gradient="native"`` (C++ kernels, on JAX) unless told otherwise."""

    def __init__(self, *args, gradient="native", **kwargs):
        super().__init__(*args, gradient=gradient, **kwargs)


# "native" only where its kernels can run: elsewhere it is the closed form, tested already
GRADIENT_LAYERS = {"closed-form": ClosedFormBatchNorm,
                   **({"native": NativeBatchNorm} if BACKEND == "jax" else {})}


def each_gradient(module_name):
    """An autouse fixture that runs every test of ``module_name`` once per ``BatchNorm`` gradient:
    the module's name ``BatchNorm`` is the closed-form (native) layer in the second (third) run."""
    @pytest.fixture(autouse=True, params=["autodiff", *GRADIENT_LAYERS])
    def gradient(request, monkeypatch):
        if request.param in GRADIENT_LAYERS:
            monkeypatch.setattr(sys.modules[module_name], "BatchNorm",
                                GRADIENT_LAYERS[request.param])
        return request.param
    return gradient


def grads(layer, x, r, training, **kwargs):
    """Return (dx, {weight name: gradient}) of Σ layer(x, training, **kwargs) · r as NumPy arrays.

    ``training=None`` calls a layer that takes no ``training`` argument (a convolution);
    ``kwargs`` are further call arguments (``mask=``).
    """
    call_kwargs = dict(kwargs) if training is None else {"training": training, **kwargs}
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    if BACKEND == "jax":
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        g_weights, g_x = _jax_grads(layer, training)(trainable, non_trainable, x, r, kwargs)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        x_ = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x_)
            y = layer(x_, **call_kwargs)
            loss = tf.reduce_sum(tf.cast(y, "float32") * r)
        g_x, *g_weights = tape.gradient(
            loss, [x_] + [v.value for v in layer.trainable_variables]
        )
    elif BACKEND == "torch":
        import torch

        x_ = torch.tensor(x, requires_grad=True)
        for v in layer.trainable_variables:
            v.value.grad = None
        y = layer(x_, **call_kwargs)
        loss = torch.sum(y.float() * torch.tensor(r))
        loss.backward()
        g_x = x_.grad
        g_weights = [v.value.grad for v in layer.trainable_variables]
    else:  # pragma: no cover - only the three backends above are supported
        raise NotImplementedError(BACKEND)
    return np.asarray(keras.ops.convert_to_numpy(g_x)), {
        n: np.asarray(keras.ops.convert_to_numpy(g)) for n, g in zip(names, g_weights)
    }


_JITTED = weakref.WeakKeyDictionary()


def _jax_grads(layer, training):
    """The layer's gradients as one compiled program, kept for the layer's later calls: XLA
    compiles it once, where op-by-op autodiff compiles every primitive of every new shape."""
    import jax
    import jax.numpy as jnp

    programs, ref = _JITTED.setdefault(layer, {}), weakref.ref(layer)  # no cycle: layers die
    if training not in programs:
        def loss(trainable, non_trainable, x, r, kwargs):
            call_kwargs = kwargs if training is None else {"training": training, **kwargs}
            y, _ = ref().stateless_call(trainable, non_trainable, x, **call_kwargs)
            return jnp.sum(y.astype("float32") * r)

        grad = jax.grad(loss, argnums=(0, 2))
        programs[training] = jax.jit(grad)
    return programs[training]


def _call(layer):
    ref = weakref.ref(layer)

    def call(trainable, non_trainable, x, kwargs):
        return ref().stateless_call(trainable, non_trainable, x, training=True, **kwargs)
    return call


def _jax_call(layer):
    """The layer's training call as one compiled program, kept like ``_jax_grads``'s."""
    import jax

    programs = _JITTED.setdefault(layer, {})
    if "call" not in programs:
        programs["call"] = jax.jit(_call(layer))
    return programs["call"]


def to_numpy(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def training_step(layer, x, r, **kwargs):
    """One training call of a layer with state, alike on every backend: returns (y, dx,
    {weight name: gradient}) of Σ layer(x, training=True, **kwargs) · r, all computed from the
    state before the step, and leaves the non-trainable state updated exactly once.

    (``grads`` updates the state on TensorFlow and PyTorch and not on JAX, so the update is taken
    from ``stateless_call``, which hands its arguments to ``call`` unconverted, and assigned here.)
    """
    before = [v.value for v in layer.non_trainable_variables]
    tensors = {k: keras.ops.convert_to_tensor(v) for k, v in kwargs.items()}
    call = _jax_call(layer) if BACKEND == "jax" else _call(layer)
    y, after = call([v.value for v in layer.trainable_variables], before,
                    keras.ops.convert_to_tensor(x), tensors)
    dx, dw = grads(layer, x, r, True, **kwargs)
    for v, value in zip(layer.non_trainable_variables, after):
        v.assign(value)
    return to_numpy(y), dx, dw
