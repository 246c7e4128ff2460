"""Gradients of a model on one batch, in training mode (BN on batch statistics).

    kernel_gradient_norms(model, loss_fn, x, y) -> [‖∂L/∂W_l‖ for each Dense/conv kernel W_l]
    gradient_step_scan(model, loss_fn, x, y, step_sizes) -> L(w − η·g), ‖g(w) − g(w − η·g)‖

Yang et al. (2019) measure exactly this at initialization: in a deep fully connected BN network
without skip connections the gradient of the first layer's weights grows exponentially with the
depth, log ‖∂L/∂W_1‖ ≈ a + L · log λ, whatever the initial weight variance. JAX only (the
gradient is ``jax.grad`` of the model's stateless call). Santurkar et al. (2018) measure the
second along training: the range of the loss over the step sizes (the "loss landscape") and the
largest gradient change ("gradient predictiveness", a local β-smoothness) are smaller with BN.
"""

import keras
import numpy as np

from bnlab.tools import forward


def kernel_gradient_norms(model, loss_fn, x, y):
    """‖∂L/∂W‖ (Frobenius) of every layer's kernel, first layer first, L = ``loss_fn(y,
    model(x, training=True))`` (the batch mean the training step differentiates)."""
    _require_jax("the gradient-norm measurement")
    import jax

    trainable, non_trainable = forward.values(model)
    where = {id(v): i for i, v in enumerate(model.trainable_variables)}
    kernels = [where[id(layer.kernel)] for layer in model.layers if hasattr(layer, "kernel")]
    loss = _training_loss(model, loss_fn)
    grads = jax.jit(jax.grad(loss))(trainable, non_trainable, x, y)  # whole, not op by op
    return [float(_norm([grads[i]])) for i in kernels]


def log_slope(depths, values):
    """The least-squares slope of ln(values) against ``depths`` (per layer of depth)."""
    return float(np.polyfit(np.asarray(depths, float), np.log(np.asarray(values, float)), 1)[0])


def gradient_step_scan(model, loss_fn, x, y, step_sizes):
    """Santurkar et al. (2018)'s two smoothness measurements at the model's current weights w,
    on one batch in training mode: with g = ∇L(w) (every trainable variable), for each step size
    η of ``step_sizes``, the loss L(w − η·g) along the gradient direction and the gradient's
    change ‖∇L(w) − ∇L(w − η·g)‖ (one norm over all variables: "gradient predictiveness").
    Random layers (``bnlab.layers.noise.ChannelNoise``) draw from the same state at every point,
    so the points differ by their weights alone; nothing the model keeps changes. Returns
    {"loss": L(w), "losses": [...], "gradient_changes": [...]} (lists in ``step_sizes``' order).
    JAX only; the compiled programs are kept on the model for its next call."""
    _require_jax("the gradient scan")
    trainable, non_trainable = forward.values(model)
    key = ("_bnlab_step_programs", id(loss_fn))
    cache = model.__dict__.setdefault("_bnlab_scans", {})
    if key not in cache:
        cache[key] = _step_programs(model, loss_fn)
    at_w, along = cache[key]
    loss, grads = at_w(trainable, non_trainable, x, y)
    # η is an argument of one compiled program, not a copy of the gradient per η in one program
    # (longer to compile) nor a loop over η inside it (slower to run: bench/tried.md)
    moved = [along(trainable, grads, np.float32(eta), non_trainable, x, y) for eta in step_sizes]
    return {"loss": float(loss), "losses": [float(m[0]) for m in moved],
            "gradient_changes": [float(m[1]) for m in moved]}


def _step_programs(model, loss_fn):
    """Two jitted functions: (L(w), g) at w, and (L(w − η·g), ‖g − ∇L(w − η·g)‖) for one η."""
    import jax

    value_and_grad = jax.value_and_grad(_training_loss(model, loss_fn))

    def along(trainable, grads, eta, non_trainable, x, y):
        moved = [w - eta * g for w, g in zip(trainable, grads)]
        moved_loss, moved_grads = value_and_grad(moved, non_trainable, x, y)
        return moved_loss, _norm([a - b for a, b in zip(grads, moved_grads)])

    return jax.jit(value_and_grad), jax.jit(along)


def _require_jax(what):
    if keras.backend.backend() != "jax":
        raise ValueError(f"{what} needs the JAX backend (KERAS_BACKEND=jax)")


def _training_loss(model, loss_fn):
    """L(trainable; non_trainable, x, y) = ``loss_fn(y, model(x, training=True))``, stateless:
    the batch mean the training step differentiates (BN on batch statistics)."""
    def loss(trainable, non_trainable, x, y):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred)

    return loss


def _norm(arrays):
    """One Frobenius norm over all of ``arrays``, in float32 (a float16 model's gradients too)."""
    import jax.numpy as jnp

    return jnp.sqrt(sum(jnp.sum(jnp.square(a.astype("float32"))) for a in arrays))
