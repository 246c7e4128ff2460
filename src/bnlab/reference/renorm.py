r"""Batch Renormalization (Ioffe, 2017) as Keras 3.15's ``BatchNormalization(renorm=True)`` does it.

Batch Renormalization is BN whose output is corrected towards what normalising with the moving
statistics would give. Per channel, with the batch moments μ_B, σ²_B of ``bn.py``::

    σ_B = √(σ²_B + ε)                                batch standard deviation, ε included (Keras)
    σ   = max(renorm_stddev, √ε)                     Keras guards the division early in training
    r   = clip(σ_B / σ,              rmin, rmax)     (C,)
    d   = clip((μ_B − renorm_mean) / σ, −dmax, dmax) (C,)
    y   = γ · (x̂ · r + d) + β                        x̂ = (x − μ_B) / σ_B, as in BN

Keras's clipping: a missing ``rmin`` / ``rmax`` / ``dmax`` means no clipping on that side (0, ∞, ∞);
the paper's choice is rmin = 1/rmax. r and d are held constant in the backward pass
(stop-gradient), so the gradients are BN's with γ replaced by γ·r, plus d's share of dγ::

    dx = (γ·r / σ_B) · (dy − mean(dy) − x̂ · mean(dy · x̂))
    dγ = Σ dy · (x̂ · r + d)
    dβ = Σ dy

This is the true gradient of y only where r and d are clipped (there they do not depend on x);
where they are not, the true gradient also has the terms through r(x) and d(x), which renorm
drops on purpose. With r = 1, d = 0 it is BN.

Training state, Keras's names and updates (m = ``momentum``, m_r = ``renorm_momentum``); the
correction uses the values from before the update::

    renorm_mean     ← m_r · renorm_mean   + (1 − m_r) · μ_B      used for r and d in training
    renorm_stddev   ← m_r · renorm_stddev + (1 − m_r) · σ_B
    moving_mean     ← m · moving_mean     + (1 − m) · μ_B        used in inference, as in BN
    moving_stddev   ← m · moving_stddev   + (1 − m) · σ_B
    moving_variance = max(moving_stddev² − ε, 0)                 derived, not averaged

At build, renorm_mean starts as moving_mean's initial value and moving_stddev and renorm_stddev
as √(moving_variance's initial value) (1 for Keras's defaults). Inference is plain BN with
moving_mean and moving_variance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bn import Cache, _param, backward, forward

__all__ = ["renorm_state", "renorm_correction", "relaxed_clipping", "renorm_forward", "renorm_backward",
           "renorm_update", "batch_renorm", "RenormCache"]

STATE_KEYS = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")


@dataclass
class RenormCache:
    """BN's cache with γ·r as its γ, plus the correction (r, d), keepdims shape (1, C ...)."""

    bn: Cache
    r: np.ndarray
    d: np.ndarray
    gamma: np.ndarray  # the layer's own γ (ones when scale is off), keepdims


def renorm_state(moving_mean, moving_variance) -> dict:
    """The five state arrays at build, from moving_mean's and moving_variance's initial values."""
    mm, mv = np.asarray(moving_mean), np.asarray(moving_variance)
    return {"moving_mean": mm, "moving_variance": mv, "moving_stddev": np.sqrt(mv),
            "renorm_mean": mm.copy(), "renorm_stddev": np.sqrt(mv)}


def renorm_correction(mean, var, renorm_mean, renorm_stddev, *, epsilon: float,
                      rmax=None, rmin=None, dmax=None) -> tuple[np.ndarray, np.ndarray]:
    """``(r, d)`` from the batch moments μ_B, σ²_B and the renorm statistics, clipped (above)."""
    _check_clipping(rmax, rmin, dmax)
    sigma = np.maximum(renorm_stddev, np.sqrt(epsilon))
    r = np.sqrt(var + epsilon) / sigma
    d = (mean - renorm_mean) / sigma
    r = np.clip(r, rmin if rmin is not None else -np.inf, rmax if rmax is not None else np.inf)
    if dmax is not None:
        d = np.clip(d, -dmax, dmax)
    return r, d


def relaxed_clipping(step: int, *, rmax: float, dmax: float, hold: int, rmax_at: int,
                     dmax_at: int, rmin: float | None = None) -> dict:
    """The renorm paper's schedule (Ioffe 2017 §4; linear here): ``{rmax, rmin, dmax}`` after
    ``step`` training steps. Plain BN (rmax = rmin = 1, dmax = 0) for the first ``hold`` steps,
    then rmax rises linearly to its target by step ``rmax_at`` (rmin = 1/rmax, or linearly to
    ``rmin``), dmax to its target by ``dmax_at``."""
    f_r = min(max((step - hold) / (rmax_at - hold), 0.0), 1.0)
    f_d = min(max((step - hold) / (dmax_at - hold), 0.0), 1.0)
    r_top = 1.0 + f_r * (rmax - 1.0)
    return {"rmax": r_top, "rmin": 1.0 / r_top if rmin is None else 1.0 + f_r * (rmin - 1.0),
            "dmax": f_d * dmax}


def _check_clipping(rmax, rmin, dmax) -> None:
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(f"renorm_clipping needs rmin <= rmax, got rmin={rmin}, rmax={rmax}")
    if dmax is not None and dmax < 0:
        raise ValueError(f"renorm_clipping needs dmax >= 0, got dmax={dmax}")


def renorm_forward(x, gamma, beta, renorm_mean, renorm_stddev, *,
                   axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
                   rmax=None, rmin=None, dmax=None, mask=None):
    """Training-mode ``y = γ · (x̂ · r + d) + β``; returns ``(y, cache)``.

    ``renorm_mean`` / ``renorm_stddev`` have the shape of the kept axes, ``(C,)``; ``gamma`` /
    ``beta`` None mean scale / center off. ``cache.r`` and ``cache.d`` are the correction used.
    """
    x = np.asarray(x)
    _, bn = forward(x, None, None, axis=axis, epsilon=epsilon, training=True, mask=mask)
    kept_shape, cdt = bn.mean.shape, bn.x_hat.dtype
    kept = tuple(i for i in range(x.ndim) if i not in bn.axes)

    def as_param(p, name):
        return _param(p, name, x.shape, kept, cdt).reshape(kept_shape)

    r, d = renorm_correction(bn.mean, bn.var, as_param(renorm_mean, "renorm_mean"),
                             as_param(renorm_stddev, "renorm_stddev"), epsilon=epsilon,
                             rmax=rmax, rmin=rmin, dmax=dmax)
    g = np.ones(kept_shape, cdt) if gamma is None else as_param(gamma, "gamma")
    y = g * (bn.x_hat * r + d)
    if beta is not None:
        y = y + as_param(beta, "beta")
    bn = dataclasses.replace(bn, gamma=g * r)  # BN's backward then sees γ·r, r held constant
    return y.astype(bn.dtype, copy=False), RenormCache(bn, r, d, g)


def renorm_backward(dy, cache: RenormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dγ, dβ)`` with r and d held constant: BN's backward with γ·r, and
    ``dγ = r · Σ dy · x̂ + d · Σ dy``. dγ, dβ have the shape of the kept axes."""
    dx, dgamma_r, dbeta = backward(dy, cache.bn)
    axes = cache.bn.axes
    r, d = np.squeeze(cache.r, axis=axes), np.squeeze(cache.d, axis=axes)
    return dx, r * dgamma_r + d * dbeta, dbeta


def renorm_update(state: dict, batch_mean, batch_var, *, momentum: float = 0.99,
                  renorm_momentum: float = 0.99, epsilon: float = 1e-3) -> dict:
    """The five state arrays after one training batch with moments μ_B, σ²_B (see above)."""
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"renorm state lacks {missing}; expected {list(STATE_KEYS)}")
    sigma_b = np.sqrt(np.asarray(batch_var) + epsilon)

    def average(old, new, m):
        return m * np.asarray(old) + (1.0 - m) * new

    moving_stddev = average(state["moving_stddev"], sigma_b, momentum)
    return {
        "moving_mean": average(state["moving_mean"], batch_mean, momentum),
        "moving_variance": np.maximum(moving_stddev * moving_stddev - epsilon, 0.0),
        "moving_stddev": moving_stddev,
        "renorm_mean": average(state["renorm_mean"], batch_mean, renorm_momentum),
        "renorm_stddev": average(state["renorm_stddev"], sigma_b, renorm_momentum),
    }


def batch_renorm(x, gamma, beta, state: dict, *, axis: int | Sequence[int] = -1,
                 momentum: float = 0.99, renorm_momentum: float = 0.99, epsilon: float = 1e-3,
                 rmax=None, rmin=None, dmax=None, training: bool = True, mask=None):
    """One step of a renorm layer; returns ``(y, new_state)`` (``state`` as ``renorm_state``).

    Training: ``renorm_forward`` with the state's renorm statistics, then ``renorm_update``.
    Inference: BN with moving_mean and moving_variance; the state comes back unchanged.
    """
    if not training:
        y, _ = forward(x, gamma, beta, axis=axis, epsilon=epsilon, training=False,
                       moving_mean=state["moving_mean"],
                       moving_variance=state["moving_variance"])
        return y, state
    y, cache = renorm_forward(x, gamma, beta, state["renorm_mean"], state["renorm_stddev"],
                              axis=axis, epsilon=epsilon, rmax=rmax, rmin=rmin, dmax=dmax,
                              mask=mask)
    axes = cache.bn.axes
    new = renorm_update(state, np.squeeze(cache.bn.mean, axis=axes),
                        np.squeeze(cache.bn.var, axis=axes), momentum=momentum,
                        renorm_momentum=renorm_momentum, epsilon=epsilon)
    return y, {k: v.reshape(np.shape(state[k])) for k, v in new.items()}
