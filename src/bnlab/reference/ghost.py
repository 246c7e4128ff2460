r"""Ghost Batch Normalization (Hoffer et al., 2017): BN whose statistics come from virtual batches.

The batch axis (axis 0) of ``x``, N examples, is split into G = N/k consecutive groups of
k = ``virtual_batch_size`` examples, ``x → x.reshape(G, k, ...)``, and each group g is normalised
with its own moments, computed over the group's k examples and the other reduction axes::

    μ_g  = mean(x_g),  σ²_g = mean((x_g − μ_g)²)       (G, C), two-pass and biased, as in BN
    y_g  = γ · (x_g − μ_g) / √(σ²_g + ε) + β            one γ, β (C,) shared by all groups

So Ghost BN is BN on the reshaped input with the group axis kept, and its backward pass is BN's
within each group, with dγ and dβ summed over the groups::

    dx_g = (γ / √(σ²_g + ε)) · (dy_g − mean_g(dy_g) − x̂_g · mean_g(dy_g · x̂_g))
    dγ   = Σ_g Σ dy_g · x̂_g,   dβ = Σ_g Σ dy_g

There is one set of moving statistics, updated (Keras's momentum, or the cumulative average with
``momentum=None``) with the average over the G groups of their mean and of their biased variance::

    μ̄ = (1/G) Σ_g μ_g,   σ̄² = (1/G) Σ_g σ²_g        (σ̄² is not the variance of the whole batch)

Inference is plain BN with the moving statistics. k = N is BN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bn import Cache, _kept_axes, backward, forward, update_moving

__all__ = ["ghost_forward", "ghost_backward", "ghost_batch_norm", "GhostCache"]


@dataclass
class GhostCache:
    """BN's cache of the grouped input (G, k, ...), whose statistics have shape (G, 1, C ...)."""

    bn: Cache
    shape: tuple[int, ...]  # the input's shape, (N, ...)


def _grouped(x: np.ndarray, virtual_batch_size: int, axis) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` reshaped to (G, k, ...) and the kept axes there: the group axis 0 and the channels."""
    kept = _kept_axes(x.ndim, axis)
    if 0 in kept:
        raise ValueError("ghost batch norm splits the batch axis 0, so axis must not include 0")
    k = virtual_batch_size
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"virtual_batch_size must be a positive int, got {k!r}")
    if x.shape[0] % k:
        raise ValueError(f"virtual_batch_size={k} does not divide the batch of {x.shape[0]}; "
                         "allowed: the divisors of the batch size")
    return x.reshape((x.shape[0] // k, k) + x.shape[1:]), (0,) + tuple(a + 1 for a in kept)


def ghost_forward(x, gamma, beta, *, virtual_batch_size: int, axis: int | Sequence[int] = -1,
                  epsilon: float = 1e-3):
    """Training-mode Ghost BN, ``y_g = γ · x̂_g + β`` per group of k examples; ``(y, cache)``."""
    x = np.asarray(x)
    xg, kept = _grouped(x, virtual_batch_size, axis)
    groups = xg.shape[0]

    def per_group(p):  # (C,) → (G, C): the same γ or β for every group
        return None if p is None else np.broadcast_to(p, (groups,) + np.shape(p))

    y, bn = forward(xg, per_group(gamma), per_group(beta), axis=kept, epsilon=epsilon)
    return y.reshape(x.shape), GhostCache(bn, x.shape)


def ghost_backward(dy, cache: GhostCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dγ, dβ)``: BN's backward within each group, dγ and dβ summed over the groups."""
    dy = np.asarray(dy)
    if dy.shape != cache.shape:
        raise ValueError(f"dy has shape {dy.shape}, the forward input had {cache.shape}")
    dx, dgamma, dbeta = backward(dy.reshape(cache.bn.x_hat.shape), cache.bn)
    return dx.reshape(cache.shape), dgamma.sum(axis=0), dbeta.sum(axis=0)


def ghost_batch_norm(x, gamma, beta, moving_mean, moving_variance, *, virtual_batch_size: int,
                     axis: int | Sequence[int] = -1, momentum: float | None = 0.99,
                     epsilon: float = 1e-3, training: bool = True, count: int | None = None):
    """One step of a Ghost BN layer; returns ``(y, new_moving_mean, new_moving_variance)``.

    Training: ``ghost_forward``, and the moving statistics updated with the average over groups
    of the group means and biased variances (``count`` as in ``bn.update_moving`` when
    ``momentum=None``). Inference: BN with the moving statistics, returned unchanged.
    """
    mm, mv = np.asarray(moving_mean), np.asarray(moving_variance)
    if not training:
        y, _ = forward(x, gamma, beta, axis=axis, epsilon=epsilon, training=False,
                       moving_mean=mm, moving_variance=mv)
        return y, mm, mv
    y, cache = ghost_forward(x, gamma, beta, virtual_batch_size=virtual_batch_size, axis=axis,
                             epsilon=epsilon)
    axes = cache.bn.axes
    group_mean = np.squeeze(cache.bn.mean, axis=axes)  # (G, C)
    group_var = np.squeeze(cache.bn.var, axis=axes)
    new_mean = update_moving(mm, group_mean.mean(axis=0).reshape(mm.shape), momentum, count)
    new_var = update_moving(mv, group_var.mean(axis=0).reshape(mv.shape), momentum, count)
    return y, new_mean.astype(mm.dtype), new_var.astype(mv.dtype)
