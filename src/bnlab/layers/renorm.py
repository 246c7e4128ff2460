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

Relaxation (``renorm_relaxation``; the renorm paper's schedule, which Keras's layer lacks): BN
first, then the clipping opened gradually. With t the training steps taken so far (the weight
``renorm_steps``), H = ``hold``, and the targets rmax, dmax (and rmin, default 1/rmax) of
``renorm_clipping``::

    f_r(t) = clip((t − H) / (rmax_at − H), 0, 1)        f_d(t) = clip((t − H) / (dmax_at − H), 0, 1)
    rmax_t = 1 + f_r · (rmax − 1)     rmin_t = 1 / rmax_t  (or 1 + f_r · (rmin − 1))
    dmax_t = f_d · dmax

so r = 1, d = 0 (plain BN) for the first H steps; Ioffe 2017 §4: H = 5,000, rmax 1 → 3 by 40k
steps, dmax 0 → 5 by 25k steps ("gradually relaxed"; linearly here).
"""

from keras import ops

from bnlab.errors import UserError

CLIPPING_KEYS = ("rmax", "rmin", "dmax")
RELAXATION_KEYS = ("hold", "rmax_at", "dmax_at")


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


def check_relaxation(relaxation, clipping):
    """ValueError naming ``renorm_relaxation`` unless it is None or {hold, rmax_at, dmax_at}
    with 0 ≤ hold < rmax_at, dmax_at, and ``renorm_clipping`` gives the rmax and dmax to reach."""
    if relaxation is None:
        return
    if not isinstance(relaxation, dict) or set(relaxation) != set(RELAXATION_KEYS):
        raise ValueError(f"renorm_relaxation must be a dict with the keys {list(RELAXATION_KEYS)}"
                         f" (steps); got renorm_relaxation={relaxation!r}.")
    hold, rmax_at, dmax_at = (relaxation[k] for k in RELAXATION_KEYS)
    if not (isinstance(hold, int) and hold >= 0 and rmax_at > hold and dmax_at > hold):
        raise ValueError(f"renorm_relaxation needs 0 <= hold < rmax_at and hold < dmax_at "
                         f"(integers, steps); got {relaxation}.")
    if not clipping or clipping.get("rmax") is None or clipping.get("dmax") is None:
        raise ValueError("renorm_relaxation opens the clipping towards renorm_clipping's rmax "
                         f"and dmax: give both; got renorm_clipping={clipping!r}.")


def relaxed_clipping(step, clipping, relaxation):
    """The clipping at training step ``step`` (a scalar tensor): {rmax, rmin, dmax}, module
    docstring. ``relaxation`` None: ``clipping`` itself."""
    if relaxation is None:
        return clipping
    hold = float(relaxation["hold"])
    step = ops.cast(step, "float32")

    def opened(at):
        return ops.clip((step - hold) / (float(at) - hold), 0.0, 1.0)

    f_r, f_d = opened(relaxation["rmax_at"]), opened(relaxation["dmax_at"])
    rmax = 1.0 + f_r * (clipping["rmax"] - 1.0)
    rmin = 1.0 / rmax if clipping.get("rmin") is None else 1.0 + f_r * (clipping["rmin"] - 1.0)
    return {"rmax": rmax, "rmin": rmin, "dmax": f_d * clipping["dmax"]}


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
        d = ops.minimum(ops.maximum(d, -clipping["dmax"]), clipping["dmax"])
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
