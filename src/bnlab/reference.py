r"""NumPy Batch Normalization: the executable specification (Ioffe & Szegedy, 2015).

For an input ``x`` and the reduction axes (every axis except the kept, channel, axis or axes)::

    μ  = mean(x)                       over the reduction axes
    σ² = mean((x − μ)²)                biased, two-pass: mean first, then mean of squared deviations
    x̂  = (x − μ) / √(σ² + ε)
    y  = γ · x̂ + β

Layouts: dense ``(N, C)`` and sequences ``(N, T, C)`` with ``axis=-1``; images ``(N, H, W, C)``
with ``axis=-1`` (Keras) or ``(N, C, H, W)`` with ``axis=1`` (PyTorch). γ, β and the moving
statistics have the shape of the kept axes, ``(C,)``. The statistics are never computed as
E[x²] − E[x]² (that cancels catastrophically when |μ| ≫ σ), and always in at least float32:
float16 input gives float32 statistics, float64 stays float64. The mean gets one correction pass,
μ ← μ + mean(x − μ), exact in real arithmetic and a guard against float32 summation error.

Moving statistics follow Keras's momentum convention::

    moving ← momentum · moving + (1 − momentum) · batch      (momentum=0.99 keeps 99% of the old value)

The stored moving variance is the biased batch variance σ² (Keras), unless
``unbiased_moving_variance=True``: then it is N/(N−1) · σ² (PyTorch), N being the number of
reduced elements per channel. Normalisation itself always uses the biased σ².

Backward pass, compact hand-derived form (means and sums over the reduction axes)::

    dx = (γ / √(σ² + ε)) · (dy − mean(dy) − x̂ · mean(dy · x̂))
    dγ = Σ dy · x̂
    dβ = Σ dy

In inference mode μ and σ² are the moving statistics, constants, so ``dx = dy · γ / √(var + ε)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "reduction_axes", "moments", "forward", "backward", "update_moving", "batch_norm",
    "momentum_to_torch", "momentum_from_torch", "to_torch", "from_torch",
    "keras_weights", "weights_dict", "Cache",
]


def _kept_axes(ndim: int, axis: int | Sequence[int]) -> tuple[int, ...]:
    """The kept (channel) axes, normalised to non-negative, sorted; ValueError when invalid."""
    if ndim < 1:
        raise ValueError(f"batch norm needs an input with at least one axis, got ndim={ndim}")
    try:
        raw = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    except TypeError:
        raise ValueError(f"axis must be an int or a sequence of ints, got {axis!r}") from None
    if not raw:
        raise ValueError("axis must name at least one kept (channel) axis, got an empty sequence")
    kept = []
    for a in raw:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise ValueError(f"axis must be an int or a sequence of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an input with {ndim} dimensions")
        kept.append(int(a) % ndim)
    if len(set(kept)) != len(kept):
        raise ValueError(f"axis {axis!r} names the same axis twice")
    return tuple(sorted(kept))


def reduction_axes(ndim: int, axis: int | Sequence[int] = -1) -> tuple[int, ...]:
    """All axes of an ``ndim``-dimensional input except the kept (channel) axis or axes.

    ``reduction_axes(2) == (0,)`` for (N, C); ``reduction_axes(4) == (0, 1, 2)`` for (N, H, W, C);
    ``reduction_axes(4, axis=1) == (0, 2, 3)`` for (N, C, H, W). Negative axes count from the end;
    an axis out of range, repeated, or not an int raises ValueError.
    """
    kept = _kept_axes(ndim, axis)
    return tuple(i for i in range(ndim) if i not in kept)


def _compute_dtype(dtype) -> np.dtype:
    return np.result_type(dtype, np.float32)


def moments(x, axes) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes`` (keepdims=False), two-pass.

    Computed in ``np.result_type(x.dtype, np.float32)``: float16 in, float32 out.
    """
    x = np.asarray(x)
    axes = tuple(axes)
    mean, var = _moments(x.astype(_compute_dtype(x.dtype), copy=False), axes)
    return np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)


def _moments(xc: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass mean and biased variance, keepdims. The mean gets one correction pass,
    μ ← μ + mean(x − μ): equal in exact arithmetic, and it removes most of the float32 summation
    error when |μ| ≫ σ (the deviations are small, so their sum is accurate)."""
    mean = np.mean(xc, axis=axes, keepdims=True)
    mean = mean + np.mean(xc - mean, axis=axes, keepdims=True)
    var = np.mean(np.square(xc - mean), axis=axes, keepdims=True)
    return mean, var


def _param(p, name: str, x_shape: tuple[int, ...], kept: tuple[int, ...], dtype) -> np.ndarray:
    """``p`` (shape of the kept axes, e.g. (C,)) reshaped to broadcast against x."""
    want = tuple(x_shape[i] for i in kept)
    bshape = tuple(n if i in kept else 1 for i, n in enumerate(x_shape))
    p = np.asarray(p, dtype=dtype)
    if p.shape not in (want, bshape):
        raise ValueError(f"{name} has shape {p.shape}; expected {want} (the input's kept axes)")
    return p.reshape(bshape)


@dataclass
class Cache:
    """What ``backward`` needs from ``forward``. Statistics have keepdims shape (1, C, 1, 1 ...)."""

    x_hat: np.ndarray     # normalised input, compute dtype
    inv_std: np.ndarray   # 1 / √(σ² + ε)
    gamma: np.ndarray     # γ broadcastable to x (ones when scale is off)
    mean: np.ndarray      # μ used (batch or moving), keepdims
    var: np.ndarray       # σ² used (batch, biased, or moving), keepdims
    axes: tuple[int, ...]  # reduction axes
    training: bool
    dtype: np.dtype       # the input's dtype, given back to dx


def forward(x, gamma=None, beta=None, *, axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
            training: bool = True, moving_mean=None, moving_variance=None):
    """``y = γ · (x − μ) / √(σ² + ε) + β``; returns ``(y, cache)``.

    ``training=True`` uses the batch statistics (two-pass, biased variance); ``training=False``
    uses ``moving_mean``/``moving_variance`` (required then). ``gamma``/``beta`` None mean
    scale/center off (γ=1, β=0). Parameters have the shape of the kept axes, ``(C,)`` for
    (N, C) or (N, H, W, C) with ``axis=-1`` and for (N, C, H, W) with ``axis=1``. ``y`` has the
    input's dtype (float16 in, float16 out, computed in float32).
    """
    x = np.asarray(x)
    kept = _kept_axes(x.ndim, axis)
    axes = tuple(i for i in range(x.ndim) if i not in kept)
    cdt = _compute_dtype(x.dtype)
    xc = x.astype(cdt, copy=False)
    if training:
        mean, var = _moments(xc, axes)
    else:
        if moving_mean is None or moving_variance is None:
            raise ValueError("training=False needs moving_mean and moving_variance")
        mean = _param(moving_mean, "moving_mean", x.shape, kept, cdt)
        var = _param(moving_variance, "moving_variance", x.shape, kept, cdt)
    g = (np.ones_like(mean) if gamma is None
         else _param(gamma, "gamma", x.shape, kept, cdt))
    inv_std = 1.0 / np.sqrt(var + cdt.type(epsilon))
    x_hat = (xc - mean) * inv_std
    y = g * x_hat
    if beta is not None:
        y = y + _param(beta, "beta", x.shape, kept, cdt)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else cdt
    cache = Cache(x_hat, inv_std, g, mean, var, axes, bool(training), out_dtype)
    return y.astype(out_dtype, copy=False), cache


def backward(dy, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dgamma, dbeta)`` of a loss given ``dy = ∂L/∂y``, in closed form.

    Training: ``dx = γ/√(σ²+ε) · (dy − mean(dy) − x̂ · mean(dy · x̂))``; inference:
    ``dx = dy · γ/√(var+ε)``. ``dγ = Σ dy · x̂``, ``dβ = Σ dy`` over the reduction axes, with the
    shape of the kept axes (C,) and the compute dtype; they are returned even when γ/β were None
    (gradients w.r.t. an implicit γ=1, β=0). ``dx`` has the input's dtype.
    """
    axes = cache.axes
    dy = np.asarray(dy).astype(cache.x_hat.dtype, copy=False)
    if dy.shape != cache.x_hat.shape:
        raise ValueError(f"dy has shape {dy.shape}, the forward input had {cache.x_hat.shape}")
    dbeta = np.sum(dy, axis=axes, keepdims=True)
    dgamma = np.sum(dy * cache.x_hat, axis=axes, keepdims=True)
    scale = cache.gamma * cache.inv_std
    if cache.training:
        dx = scale * (dy - np.mean(dy, axis=axes, keepdims=True)
                      - cache.x_hat * np.mean(dy * cache.x_hat, axis=axes, keepdims=True))
    else:
        dx = dy * scale
    return (dx.astype(cache.dtype, copy=False),
            np.squeeze(dgamma, axis=axes), np.squeeze(dbeta, axis=axes))


def update_moving(moving, batch_value, momentum: float):
    """Keras convention: ``momentum · moving + (1 − momentum) · batch_value``."""
    return momentum * np.asarray(moving) + (1.0 - momentum) * np.asarray(batch_value)


def batch_norm(x, gamma, beta, moving_mean, moving_variance, *, axis: int | Sequence[int] = -1,
               momentum: float = 0.99, epsilon: float = 1e-3, training: bool = True,
               unbiased_moving_variance: bool = False):
    """One step of a BN layer; returns ``(y, new_moving_mean, new_moving_variance)``.

    Training: normalise with the batch statistics and return the moving statistics updated in
    Keras's convention (the variance stored is σ², or N/(N−1)·σ² with
    ``unbiased_moving_variance=True`` as PyTorch does). Inference: normalise with the moving
    statistics and return them unchanged. The new moving statistics keep the dtype of the old.
    """
    if moving_mean is None or moving_variance is None:
        raise ValueError("batch_norm needs moving_mean and moving_variance")
    mm, mv = np.asarray(moving_mean), np.asarray(moving_variance)
    y, cache = forward(x, gamma, beta, axis=axis, epsilon=epsilon, training=training,
                       moving_mean=mm, moving_variance=mv)
    if not training:
        return y, mm, mv
    batch_mean = np.squeeze(cache.mean, axis=cache.axes)
    batch_var = np.squeeze(cache.var, axis=cache.axes)
    if unbiased_moving_variance:
        n = int(np.prod([cache.x_hat.shape[i] for i in cache.axes]))
        if n < 2:
            raise ValueError("unbiased_moving_variance needs more than one value per channel")
        batch_var = batch_var * (n / (n - 1))
    new_mean = update_moving(mm, batch_mean.reshape(mm.shape), momentum)
    new_var = update_moving(mv, batch_var.reshape(mv.shape), momentum)
    if np.issubdtype(mm.dtype, np.floating):
        new_mean, new_var = new_mean.astype(mm.dtype), new_var.astype(mv.dtype)
    return y, new_mean, new_var


# ---------------------------------------------------------------------------------------------
# Porting to and from PyTorch (plain dicts of arrays; torch itself is never imported here).
#
# keras.layers.BatchNormalization          torch.nn.BatchNorm1d/2d
#   gamma, beta                              weight, bias
#   moving_mean, moving_variance             running_mean, running_var
#   momentum m (weight of the OLD value)     momentum 1 − m (weight of the NEW value)
#   epsilon (added to the variance)          eps (added to the variance): same value carries over
#
# After porting, eval/inference outputs agree. Training-time running-variance updates agree only
# with unbiased_moving_variance=True on the Keras/reference side: PyTorch stores the unbiased
# variance N/(N−1)·σ² in running_var, Keras stores σ²; both normalise with the biased σ².
# ---------------------------------------------------------------------------------------------

_TO_TORCH = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var"}
_FROM_TORCH = {v: k for k, v in _TO_TORCH.items()}


def momentum_to_torch(keras_momentum: float) -> float:
    """Keras momentum m (weight of the old value) → PyTorch momentum 1 − m."""
    return 1.0 - _check_momentum(keras_momentum)


def momentum_from_torch(torch_momentum: float) -> float:
    """PyTorch momentum m (weight of the new value) → Keras momentum 1 − m."""
    return 1.0 - _check_momentum(torch_momentum)


def _check_momentum(m) -> float:
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {m}")
    return m


def _array(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, duck-typed: no torch import
        v = v.detach().cpu().numpy()
    return np.array(v, copy=True)


def _rename(d: dict, names: dict, ignore: tuple[str, ...], what: str) -> dict:
    unknown = sorted(set(d) - set(names) - set(ignore))
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; expected some of {sorted(names)}")
    return {names[k]: _array(v) for k, v in d.items() if k in names}


def to_torch(weights: dict) -> dict:
    """{gamma, beta, moving_mean, moving_variance} → {weight, bias, running_mean, running_var}.

    Missing gamma/beta (scale/center off) stay missing (``affine=False`` in PyTorch). Values come
    back as NumPy arrays; wrap them with ``torch.as_tensor`` before ``load_state_dict``. ε means
    the same in both frameworks (added to the variance), so it carries over unchanged; eval outputs
    agree after porting, training-time running_var updates only with unbiased_moving_variance=True.
    """
    return _rename(weights, _TO_TORCH, (), "Keras weight")


def from_torch(state: dict) -> dict:
    """{weight, bias, running_mean, running_var} → {gamma, beta, moving_mean, moving_variance}.

    Accepts NumPy arrays or (CPU) tensors; ``num_batches_tracked`` is ignored. ε carries over
    unchanged; see ``to_torch`` for what agrees after porting.
    """
    return _rename(state, _FROM_TORCH, ("num_batches_tracked",), "PyTorch state")


def _order(center: bool, scale: bool) -> list[str]:
    return (["gamma"] if scale else []) + (["beta"] if center else []) + [
        "moving_mean", "moving_variance"]


def keras_weights(d: dict, center: bool = True, scale: bool = True) -> list:
    """Keras ``set_weights`` order: [gamma, beta, moving_mean, moving_variance], gamma omitted when
    ``scale=False`` and beta when ``center=False``."""
    names = _order(center, scale)
    missing = [k for k in names if k not in d]
    if missing:
        raise ValueError(f"weights dict lacks {missing} (center={center}, scale={scale})")
    return [_array(d[k]) for k in names]


def weights_dict(weights: Sequence[Any], center: bool = True, scale: bool = True) -> dict:
    """Inverse of ``keras_weights``: a ``get_weights`` list → {gamma?, beta?, moving_*}."""
    names = _order(center, scale)
    if len(weights) != len(names):
        raise ValueError(f"expected {len(names)} weights {names} (center={center}, "
                         f"scale={scale}), got {len(weights)}")
    return {k: _array(w) for k, w in zip(names, weights)}
