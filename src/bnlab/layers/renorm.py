"""Batch Renormalization (Ioffe, 2017), as Keras 3's ``BatchNormalization(renorm=True)`` does it.

In training, BN's normalized value is corrected towards what the moving statistics would give::

    σ_B = √(σ²_B + ε)                                       batch standard deviation    (C,)
    σ_R = max(renorm_stddev, √ε)                            renorm moving stddev        (C,)
    r   = clip(σ_B / σ_R, rmin, rmax)                       held constant in the backward pass
    d   = clip((μ_B − renorm_mean) / σ_R, −dmax, dmax)      held constant in the backward pass
    y   = γ · (r · (x − μ_B) / σ_B + d) + β

Missing ``rmin``, ``rmax``, ``dmax`` leave that side unclipped (0, ∞, ∞). With r = 1 and d = 0
this is BN. Two pairs of moving statistics are kept, updated after each training step::

    renorm_mean   ← ρ · renorm_mean   + (1 − ρ) · μ_B        ρ = renorm_momentum (used in training)
    renorm_stddev ← ρ · renorm_stddev + (1 − ρ) · σ_B
    moving_mean   ← m · moving_mean   + (1 − m) · μ_B        m = momentum (used in inference)
    moving_stddev ← m · moving_stddev + (1 − m) · σ_B
    moving_variance = max(moving_stddev² − ε, 0)

Inference is BN's with ``moving_mean`` and ``moving_variance``.
"""

from keras import ops

from bnlab.errors import UserError

CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def check_clipping(renorm_clipping):
    """UserError naming ``renorm_clipping`` for unknown keys, rmin > rmax or dmax < 0."""
    if renorm_clipping is None:
        return
    if not isinstance(renorm_clipping, dict):
        raise UserError(f"renorm_clipping must be a dict with keys among {list(CLIPPING_KEYS)}; "
                         f"got renorm_clipping={renorm_clipping!r}.")
    unknown = sorted(set(renorm_clipping) - set(CLIPPING_KEYS))
    if unknown:
        raise UserError(
            f"Received invalid keys for `renorm_clipping` argument: {unknown} in "
            f"{renorm_clipping}. Supported values: {list(CLIPPING_KEYS)}."
        )
    rmax, rmin, dmax = (renorm_clipping.get(k) for k in CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise UserError(
            "rmax should be greater than rmin in the `renorm_clipping` argument. "
            f"Received: rmax={rmax}, rmin={rmin}."
        )
    if dmax is not None and dmax < 0:
        raise UserError(
            f"dmax should be non-negative in the `renorm_clipping` argument. Received: dmax={dmax}."
        )


def correction(mean, variance, renorm_mean, renorm_stddev, epsilon, clipping):
    """(r, d) of the module docstring, with gradients stopped; shapes broadcast as given."""
    sigma_batch = ops.sqrt(variance + epsilon)
    sigma_renorm = ops.maximum(renorm_stddev, ops.sqrt(ops.cast(epsilon, mean.dtype)))
    r = sigma_batch / sigma_renorm
    d = (mean - renorm_mean) / sigma_renorm
    clipping = clipping or {}
    if clipping.get("rmin") is not None:
        r = ops.maximum(r, clipping["rmin"])
    if clipping.get("rmax") is not None:
        r = ops.minimum(r, clipping["rmax"])
    if clipping.get("dmax") is not None:
        d = ops.clip(d, -clipping["dmax"], clipping["dmax"])
    return ops.stop_gradient(r), ops.stop_gradient(d)


def moving_updates(mean, variance, state, momentum, renorm_momentum, epsilon):
    """The new values of the five moving statistics (module docstring), as a dict.

    ``state`` maps ``renorm_mean``, ``renorm_stddev``, ``moving_mean``, ``moving_stddev`` to their
    current values; ``mean`` and ``variance`` are the batch statistics (C,).
    """
    stddev = ops.sqrt(variance + epsilon)

    def average(old, new, m):
        return old * m + new * (1.0 - m)

    moving_stddev = average(state["moving_stddev"], stddev, momentum)
    return {
        "renorm_mean": average(state["renorm_mean"], mean, renorm_momentum),
        "renorm_stddev": average(state["renorm_stddev"], stddev, renorm_momentum),
        "moving_mean": average(state["moving_mean"], mean, momentum),
        "moving_stddev": moving_stddev,
        "moving_variance": ops.relu(moving_stddev * moving_stddev - epsilon),
    }
