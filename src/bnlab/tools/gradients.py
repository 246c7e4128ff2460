"""Per-layer gradient norms of a model on one batch, in training mode (BN on batch statistics).

    kernel_gradient_norms(model, loss_fn, x, y) -> [‖∂L/∂W_l‖ for each Dense/conv kernel W_l]

Yang et al. (2019) measure exactly this at initialization: in a deep fully connected BN network
without skip connections the gradient of the first layer's weights grows exponentially with the
depth, log ‖∂L/∂W_1‖ ≈ a + L · log λ, whatever the initial weight variance. JAX only (the
gradient is ``jax.grad`` of the model's stateless call).
"""

import keras
import numpy as np


def kernel_gradient_norms(model, loss_fn, x, y):
    """‖∂L/∂W‖ (Frobenius) of every layer's kernel, first layer first, L = ``loss_fn(y,
    model(x, training=True))`` (the batch mean the training step differentiates)."""
    if keras.backend.backend() != "jax":
        raise ValueError("the gradient-norm measurement needs the JAX backend (KERAS_BACKEND=jax)")
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    where = {id(v): i for i, v in enumerate(model.trainable_variables)}
    kernels = [where[id(layer.kernel)] for layer in model.layers if hasattr(layer, "kernel")]

    def loss(trainable):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred)

    grads = jax.grad(loss)(trainable)
    return [float(jnp.sqrt(jnp.sum(jnp.square(grads[i].astype("float32"))))) for i in kernels]


def log_slope(depths, values):
    """The least-squares slope of ln(values) against ``depths`` (per layer of depth)."""
    return float(np.polyfit(np.asarray(depths, float), np.log(np.asarray(values, float)), 1)[0])
