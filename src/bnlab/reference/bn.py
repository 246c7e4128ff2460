r"""Batch Normalization in NumPy: the executable specification (Ioffe & Szegedy, 2015).

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

Masks (Keras's ``mask=``): weights w ∈ {0, 1} broadcast against x; the statistics are weighted,
``μ = Σ w·x / Σ w`` and ``σ² = Σ w·(x − μ)² / Σ w``, and every position, masked or not, is
normalised with them. Keras's mask has one axis less than x and is broadcast over the last axis.

Moving statistics follow Keras's momentum convention::

    moving ← momentum · moving + (1 − momentum) · batch      (momentum=0.99 keeps 99% of the old value)

or, with ``momentum=None`` (PyTorch's), the cumulative average of the n batches seen so far::

    moving_n = moving_{n−1} + (batch_n − moving_{n−1}) / n  =  (1/n) · Σ_{i≤n} batch_i

The stored moving variance is the biased batch variance σ² (Keras), unless
``unbiased_moving_variance=True``: then it is N/(N−1) · σ² (PyTorch), N being the number of
reduced elements per channel. Normalisation itself always uses the biased σ².

Backward pass, compact hand-derived form (means and sums over the reduction axes)::

    dx = (γ / √(σ² + ε)) · (dy − mean(dy) − x̂ · mean(dy · x̂))
    dγ = Σ dy · x̂
    dβ = Σ dy

With a mask the means become ``Σ(·)/Σ w`` and only the weighted positions feed the statistics::

    dx = (γ / √(σ² + ε)) · (dy − w · Σ dy / Σ w − w · x̂ · Σ (dy · x̂) / Σ w)

In inference mode μ and σ² are the moving statistics, constants, so ``dx = dy · γ / √(var + ε)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "reduction_axes", "moments", "mask_weights", "forward", "backward", "update_moving",
    "cumulative_average", "batch_norm", "Cache",
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


def moments(x, axes, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes`` (keepdims=False), two-pass.

    Computed in ``np.result_type(x.dtype, np.float32)``: float16 in, float32 out. ``mask`` (see
    ``mask_weights``) restricts the statistics to the positions where it is true.
    """
    x = np.asarray(x)
    axes = tuple(axes)
    xc = x.astype(_compute_dtype(x.dtype), copy=False)
    mean, var = _moments(xc, axes, mask_weights(mask, xc.shape, xc.dtype))
    return np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)


def mask_weights(mask, shape: tuple[int, ...], dtype) -> np.ndarray | None:
    """A mask as weights w ∈ {0, 1} of the input's ``shape``, or None for no mask.

    Keras's convention: a mask with one axis less than the input, e.g. (N, T) for (N, T, C), is
    broadcast over the last axis. A mask with as many axes as the input must broadcast to it.
    """
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim == len(shape) - 1:
        m = m[..., None]
    try:
        return np.broadcast_to(m.astype(bool), shape).astype(dtype)
    except ValueError:
        raise ValueError(f"mask has shape {np.shape(mask)}; expected the input's shape {shape} "
                         "without its last axis (Keras) or one that broadcasts to it") from None


def _mean(z: np.ndarray, axes: tuple[int, ...], w: np.ndarray | None) -> np.ndarray:
    """mean(z) over ``axes``, keepdims; with weights, Σ w·z / Σ w."""
    if w is None:
        return np.mean(z, axis=axes, keepdims=True)
    return np.sum(w * z, axis=axes, keepdims=True) / np.sum(w, axis=axes, keepdims=True)


def _moments(xc: np.ndarray, axes: tuple[int, ...],
             w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass mean and biased variance, keepdims, the one statistics function of every variant.
    The mean gets one correction pass, μ ← μ + mean(x − μ): equal in exact arithmetic, and it
    removes most of the float32 summation error when |μ| ≫ σ (the deviations are small, so their
    sum is accurate). With weights ``w`` every mean is the weighted one, Σ w·z / Σ w."""
    if w is not None and np.any(np.sum(w, axis=axes) == 0):
        raise ValueError("mask leaves a channel with no unmasked value to compute statistics on")
    mean = _mean(xc, axes, w)
    mean = mean + _mean(xc - mean, axes, w)
    var = _mean(np.square(xc - mean), axes, w)
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
    weights: np.ndarray | None = None  # mask as weights w, shape of x; None when unmasked


def forward(x, gamma=None, beta=None, *, axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
            training: bool = True, moving_mean=None, moving_variance=None, mask=None):
    """``y = γ · (x − μ) / √(σ² + ε) + β``; returns ``(y, cache)``.

    ``training=True`` uses the batch statistics (two-pass, biased variance); ``training=False``
    uses ``moving_mean``/``moving_variance`` (required then). ``gamma``/``beta`` None mean
    scale/center off (γ=1, β=0). Parameters have the shape of the kept axes, ``(C,)`` for
    (N, C) or (N, H, W, C) with ``axis=-1`` and for (N, C, H, W) with ``axis=1``. ``y`` has the
    input's dtype (float16 in, float16 out, computed in float32). ``mask`` (training only) leaves
    the masked positions out of the statistics; they are still normalised.
    """
    x = np.asarray(x)
    kept = _kept_axes(x.ndim, axis)
    axes = tuple(i for i in range(x.ndim) if i not in kept)
    cdt = _compute_dtype(x.dtype)
    xc = x.astype(cdt, copy=False)
    w = mask_weights(mask, x.shape, cdt) if training else None
    if training:
        mean, var = _moments(xc, axes, w)
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
    cache = Cache(x_hat, inv_std, g, mean, var, axes, bool(training), out_dtype, w)
    return y.astype(out_dtype, copy=False), cache


def backward(dy, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dgamma, dbeta)`` of a loss given ``dy = ∂L/∂y``, in closed form.

    Training: ``dx = γ/√(σ²+ε) · (dy − mean(dy) − x̂ · mean(dy · x̂))`` (with a mask,
    ``dx = γ/√(σ²+ε) · (dy − w · Σ dy / Σ w − w · x̂ · Σ (dy · x̂) / Σ w)``); inference:
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
    if cache.training and cache.weights is None:
        dx = scale * (dy - np.mean(dy, axis=axes, keepdims=True)
                      - cache.x_hat * np.mean(dy * cache.x_hat, axis=axes, keepdims=True))
    elif cache.training:
        w = cache.weights
        count = np.sum(w, axis=axes, keepdims=True)
        dx = scale * (dy - w * dbeta / count - w * cache.x_hat * dgamma / count)
    else:
        dx = dy * scale
    return (dx.astype(cache.dtype, copy=False),
            np.squeeze(dgamma, axis=axes), np.squeeze(dbeta, axis=axes))


def update_moving(moving, batch_value, momentum: float | None, count: int | None = None):
    """Keras convention: ``momentum · moving + (1 − momentum) · batch_value``.

    ``momentum=None`` is PyTorch's cumulative average: ``cumulative_average(moving, batch_value,
    count)``, ``count`` being the number of batches seen including this one.
    """
    if momentum is None:
        if count is None:
            raise ValueError("momentum=None (cumulative average) needs count, the batches seen")
        return cumulative_average(moving, batch_value, count)
    return momentum * np.asarray(moving) + (1.0 - momentum) * np.asarray(batch_value)


def cumulative_average(moving, batch_value, count: int):
    """The running mean of ``count`` batch statistics: ``moving + (batch − moving) / count``.

    After batches b₁ … bₙ (count = 1 … n) the result is (1/n) Σ bᵢ, whatever ``moving`` held before
    the first (count=1 replaces it), as PyTorch's ``momentum=None`` does.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an int >= 1 (the batches seen, this one included), "
                         f"got {count!r}")
    moving = np.asarray(moving)
    return moving + (np.asarray(batch_value) - moving) / count


def batch_norm(x, gamma, beta, moving_mean, moving_variance, *, axis: int | Sequence[int] = -1,
               momentum: float | None = 0.99, epsilon: float = 1e-3, training: bool = True,
               unbiased_moving_variance: bool = False, mask=None, count: int | None = None):
    """One step of a BN layer; returns ``(y, new_moving_mean, new_moving_variance)``.

    Training: normalise with the batch statistics and return the moving statistics updated in
    Keras's convention (the variance stored is σ², or N/(N−1)·σ² with
    ``unbiased_moving_variance=True`` as PyTorch does), or, with ``momentum=None``, as the
    cumulative average of ``count`` batches (see ``cumulative_average``). ``mask`` leaves masked
    positions out of the statistics. Inference: normalise with the moving statistics and return
    them unchanged. The new moving statistics keep the dtype of the old.
    """
    if moving_mean is None or moving_variance is None:
        raise ValueError("batch_norm needs moving_mean and moving_variance")
    mm, mv = np.asarray(moving_mean), np.asarray(moving_variance)
    y, cache = forward(x, gamma, beta, axis=axis, epsilon=epsilon, training=training,
                       moving_mean=mm, moving_variance=mv, mask=mask)
    if not training:
        return y, mm, mv
    batch_mean = np.squeeze(cache.mean, axis=cache.axes)
    batch_var = np.squeeze(cache.var, axis=cache.axes)
    if unbiased_moving_variance:
        n = (np.prod([cache.x_hat.shape[i] for i in cache.axes]) if cache.weights is None
             else np.sum(cache.weights, axis=cache.axes))
        if np.any(n < 2):
            raise ValueError("unbiased_moving_variance needs more than one value per channel")
        batch_var = batch_var * (n / (n - 1))
    new_mean = update_moving(mm, batch_mean.reshape(mm.shape), momentum, count)
    new_var = update_moving(mv, batch_var.reshape(mv.shape), momentum, count)
    if np.issubdtype(mm.dtype, np.floating):
        new_mean, new_var = new_mean.astype(mm.dtype), new_var.astype(mv.dtype)
    return y, new_mean, new_var
