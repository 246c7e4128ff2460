"""Confidence intervals without SciPy: Student-t quantiles, mean ± CI, Welch's difference.

:func:`t_quantile` inverts the Student-t CDF, computed from the regularized incomplete beta
function (continued fraction, modified Lentz). ``mean_ci`` gives the t interval of a mean over
seeds; ``diff_ci`` Welch's interval for a difference of two arms' means; ``verdict`` says in one
plain sentence whether that difference is measurable.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

NO_TRIALS = "no finished trials"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), with y = 1 − x passed in to keep its precision."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def _t_pdf(t: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if not 0.0 < p < 1.0 or not df > 0:
        if math.isnan(p) or math.isnan(df):
            return math.nan
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p == 0.5:
        return 0.0
    sign, alpha = (1.0, 1.0 - p) if p > 0.5 else (-1.0, p)  # alpha: the upper tail beyond t
    if df == 1:
        return sign * math.tan(math.pi * (0.5 - alpha))
    if df == 2:
        return sign * (1 - 2 * alpha) / math.sqrt(2 * alpha * (1 - alpha))
    z = NormalDist().inv_cdf(1.0 - alpha)
    # Cornish-Fisher expansion: the answer for large df, the starting point otherwise.
    g = [(z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96,
         (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160]
    t = z + sum(gi / df ** (i + 1) for i, gi in enumerate(g))
    if df >= 1e5 or math.isinf(df):
        return sign * t
    lo, hi = 0.0, max(t, 1.0)
    while hi < 1e150 and t_sf(hi, df) > alpha:  # bracket the root
        lo, hi = hi, hi * 2
    t = min(max(t, lo), hi)
    for _ in range(1000):  # Newton, falling back to bisection when it leaves the bracket
        excess = t_sf(t, df) - alpha
        lo, hi = (t, hi) if excess > 0 else (lo, t)
        pdf = _t_pdf(t, df)
        new = t + excess / pdf if pdf > 0 else math.nan
        if not lo < new < hi:  # bisect, geometrically across wide brackets (tiny df)
            new = math.sqrt(lo * hi) if lo > 0 and hi > 4 * lo else (lo + hi) / 2
        if abs(new - t) <= 1e-13 * max(1.0, abs(t)):
            return sign * new
        t = new
    return sign * t


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None], dtype=float)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t interval; half-width NaN for n = 1, both NaN for n = 0."""
    x = _clean(values)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    t = t_quantile(0.5 + confidence / 2, x.size - 1)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def diff_ci(a: Sequence[float], b: Sequence[float],
            confidence: float = 0.95) -> tuple[float, float]:
    """Welch's interval for mean(a) − mean(b): (difference, half-width)."""
    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return math.nan, math.nan
    diff = float(xa.mean() - xb.mean())
    if xa.size < 2 or xb.size < 2:
        return diff, math.nan
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    if va + vb == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    return diff, float(t_quantile(0.5 + confidence / 2, df) * math.sqrt(va + vb))


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
