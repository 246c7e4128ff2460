"""Confidence intervals over seeds, from ``scipy.stats``: mean ± CI, Welch's difference, verdicts.

For one arm's values x_1..x_n (one per seed), mean x̄ and sample standard deviation s,
``mean_ci`` gives Student's t interval (``scipy.stats.ttest_1samp(...).confidence_interval``)::

    x̄ ± t_{1−α/2, n−1} · s / √n

For two arms a and b, ``diff_ci`` gives Welch's interval for the difference of the means
(``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval``)::

    d = x̄_a − x̄_b,   se² = s_a²/n_a + s_b²/n_b,
    ν = se⁴ / ((s_a²/n_a)² / (n_a − 1) + (s_b²/n_b)² / (n_b − 1))      (Welch–Satterthwaite)
    d ± t_{1−α/2, ν} · se

Both are returned as (centre, half-width); α = 1 − confidence. ``verdict`` says in one plain
sentence whether a difference is measurable. ``curve`` is an arm's learning curve over its seeds,
the one rule of every report's and study's figures.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

NO_TRIALS = "no finished trials"


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None], dtype=float)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t interval; half-width NaN for n = 1, both NaN for n = 0."""
    x = _clean(values)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    if np.ptp(x) == 0:  # every seed alike: no spread (SciPy would warn of precision loss)
        return float(x[0]), 0.0
    from scipy import stats  # about 1 s to import: reports need it, training processes not

    low, high = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return float(x.mean()), float(high - low) / 2


def diff_ci(a: Sequence[float], b: Sequence[float],
            confidence: float = 0.95) -> tuple[float, float]:
    """Welch's interval for mean(a) − mean(b): (difference, half-width)."""
    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return math.nan, math.nan
    diff = float(xa.mean() - xb.mean())
    if xa.size < 2 or xb.size < 2:
        return diff, math.nan
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:
        return diff, 0.0
    from scipy import stats

    low, high = stats.ttest_ind(xa, xb, equal_var=False).confidence_interval(confidence)
    return diff, float(high - low) / 2


def verdict(diff: float, half_width: float, name_a: str, name_b: str,
            metric: str = "test accuracy", confidence: float = 0.95) -> str:
    """One plain-English sentence about mean(a) − mean(b) ± half_width."""
    level = f"{confidence:.0%}"
    if diff is None or math.isnan(diff):
        return f"cannot compare: {NO_TRIALS} with {metric} in one of the arms"
    if half_width is None or math.isnan(half_width):
        return (f"cannot tell: one seed is too few for an interval "
                f"({name_a} − {name_b} = {diff:+.4f})")
    if abs(diff) <= half_width:
        return f"no measurable difference (the {level} interval contains 0)"
    higher, lower = (name_a, name_b) if diff > 0 else (name_b, name_a)
    return f"{higher} is higher by {abs(diff):.4f} ± {half_width:.4f} ({metric}, vs {lower})"


def fmt_ci(mean: float, half_width: float, digits: int = 4) -> str:
    if mean is None or math.isnan(mean):
        return "—"
    if half_width is None or math.isnan(half_width):
        return f"{mean:.{digits}f} (n=1, no interval)"
    return f"{mean:.{digits}f} ± {half_width:.{digits}f}"


def curve(histories, x_key: str, metric: str, confidence: float = 0.95):
    """(xs, mean, low, high): an arm's curve of ``metric`` against ``x_key`` over its seeds.

    ``histories``: one list of rows (dicts) per seed. At every x some seed logged, the mean and
    the ``mean_ci`` interval of the mean (low, high) over the seeds with a finite value there: a
    seed that diverged (loss NaN or ∞) is left out from there on, not averaged in; NaN where no
    seed is finite (a gap), and no band (low, high NaN) where only one is.
    """
    points: dict[float, list[float]] = {}
    for history in histories:
        for row in history:
            if row.get(x_key) is not None and row.get(metric) is not None:
                points.setdefault(row[x_key], []).append(row[metric])
    xs = sorted(points)
    finite = [np.asarray(points[x], dtype=float) for x in xs]
    mean, half = np.array([mean_ci(v[np.isfinite(v)], confidence) for v in finite],
                          dtype=float).reshape(-1, 2).T
    return np.asarray(xs, dtype=float), mean, mean - half, mean + half
