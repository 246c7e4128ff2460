r"""Ghost Batch Normalization (Hoffer et al., 2017): BN whose statistics come from virtual batches.

The batch axis (axis 0) of ``x``, N examples, is split in order into G = ⌈N/k⌉ virtual batches of
k = ``virtual_batch_size`` consecutive examples; when k does not divide N (an epoch's last batch),
the last one is smaller, the r = N − (G−1)·k examples left. Each group g of n_g examples is
normalised with its own moments, over the group's examples and the other reduction axes::

    μ_g  = mean(x_g),  σ²_g = mean((x_g − μ_g)²)       (C,) per group, two-pass and biased, as in BN
    y_g  = γ · (x_g − μ_g) / √(σ²_g + ε) + β            one γ, β (C,) shared by all groups

So Ghost BN is BN on each group, and its backward pass is BN's within each group, with dγ and dβ
summed over the groups::

    dx_g = (γ / √(σ²_g + ε)) · (dy_g − mean_g(dy_g) − x̂_g · mean_g(dy_g · x̂_g))
    dγ   = Σ_g Σ dy_g · x̂_g,   dβ = Σ_g Σ dy_g

There is one set of moving statistics, updated (Keras's momentum, or the cumulative average with
``momentum=None``) with the average over the groups, each weighted by its share of the batch
w_g = n_g / N, of their mean and of their biased variance::

    μ̄ = Σ_g w_g μ_g,   σ̄² = Σ_g w_g σ²_g        (w_g = 1/G when k divides N)

σ̄² is not the variance of the whole batch. Inference is plain BN with the moving statistics. k ≥ N is BN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bn import Cache, _kept_axes, backward, forward, update_moving

__all__ = ["ghost_forward", "ghost_backward", "ghost_batch_norm", "GhostCache", "virtual_batches"]


@dataclass
class GhostCache:
    """BN's cache of each virtual batch, in order, and the input's shape (N, ...)."""

    groups: list[Cache]
    shape: tuple[int, ...]


def virtual_batches(n: int, virtual_batch_size: int) -> list[slice]:
    """The virtual batches of a batch of n: consecutive slices of k examples, the last one
    smaller when k does not divide n."""
    k = virtual_batch_size
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"virtual_batch_size must be a positive int, got {k!r}")
    return [slice(start, min(start + k, n)) for start in range(0, n, k)]


def ghost_forward(x, gamma, beta, *, virtual_batch_size: int, axis: int | Sequence[int] = -1,
                  epsilon: float = 1e-3):
    """Training-mode Ghost BN, ``y_g = γ · x̂_g + β`` per virtual batch; ``(y, cache)``."""
    x = np.asarray(x)
    if 0 in _kept_axes(x.ndim, axis):
        raise ValueError("ghost batch norm splits the batch axis 0, so axis must not include 0")
    parts = [forward(x[g], gamma, beta, axis=axis, epsilon=epsilon)
             for g in virtual_batches(x.shape[0], virtual_batch_size)]
    return (np.concatenate([y for y, _ in parts]),
            GhostCache([cache for _, cache in parts], x.shape))


def ghost_backward(dy, cache: GhostCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dγ, dβ)``: BN's backward within each group, dγ and dβ summed over the groups."""
    dy = np.asarray(dy)
    if dy.shape != cache.shape:
        raise ValueError(f"dy has shape {dy.shape}, the forward input had {cache.shape}")
    bounds = np.cumsum([0] + [c.x_hat.shape[0] for c in cache.groups])
    parts = [backward(dy[a:b], c) for a, b, c in zip(bounds[:-1], bounds[1:], cache.groups)]
    return (np.concatenate([dx for dx, _, _ in parts]), sum(dg for _, dg, _ in parts),
            sum(db for _, _, db in parts))


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
    share = np.array([c.x_hat.shape[0] for c in cache.groups]) / cache.shape[0]  # w_g = n_g / N

    def pooled(statistic):  # Σ_g w_g · statistic_g, shaped as the moving statistic
        return sum(w * np.squeeze(getattr(c, statistic), axis=c.axes)
                   for w, c in zip(share, cache.groups)).reshape(mm.shape)

    new_mean = update_moving(mm, pooled("mean"), momentum, count)
    new_var = update_moving(mv, pooled("var"), momentum, count)
    return y, new_mean.astype(mm.dtype), new_var.astype(mv.dtype)
