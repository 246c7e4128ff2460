"""A paper's claims as data, and a verdict on each from paired per-seed differences.

A claim compares two *terms* on one *metric*; a study declares its claims beside its arms
(``bnlab.lab.spec.Experiment(claims=(...))``, or ``[[claims]]`` in a TOML experiment)::

    Claim("BN's error rises from batch 32 to batch 2",
          a="bn-b2", b="bn-b32", metric="error:test_accuracy", direction="greater",
          paper="23.6 % → 34.7 % (ResNet-50, ImageNet)")

A term is an arm's name, or a pair of arm names ``(x, y)`` meaning metric(x) − metric(y) for the
same seed, so a difference of differences is written as it is said::

    Claim("BN loses more than GN from batch 32 to 2",
          a=("bn-b2", "bn-b32"), b=("group-b2", "group-b32"), metric="error:test_accuracy")

``otherwise`` says, in the report, the most likely reason should the shape not appear.
``b=None`` compares term a against 0; ``metric_b`` (default: ``metric``) lets the two terms read
different metrics of the same trials (PreciseBN's accuracy against the EMA's, one arm). A pair
term may also take a pair of metrics, x's and y's: ``a=("short", "short"),
metric=("debiased_test_accuracy", "test_accuracy")`` is what bias correction gains, per seed.

Metrics (``metric_values``): a trial's final value of a results key or history key
(``test_accuracy``, ``precise_test_accuracy``, ...), or a metric derived from the trial:

    error:KEY              100 · (1 − KEY): an accuracy as a percent error
    points:KEY             100 · KEY: an accuracy in points
    steps_to:KEY:T         the first logged step at which KEY ≥ T (its last logged step when it
                           never gets there: censored, and the verdict says how many were)

and any function in ``DERIVED`` (name → fn(results, history) → float; ``median_drift``: the
activation probe's mean over units of the range of each unit's median), to which a study may add.

Verdicts. With seeds s = 1..n present in every arm of the claim, the paired differences
dᵢ = term_a(sᵢ) − term_b(sᵢ) have mean d̄ and standard deviation s_d; Student's t interval
(``scipy.stats.ttest_1samp(d).confidence_interval``) is d̄ ± t_{1−α/2, n−1} · s_d / √n.

- ``direction="greater"`` (d > 0 is the paper's side) or ``"less"`` (d < 0): the 95% interval
  (a two-sided test at 5 %: a difference on either side would be a finding) gives **appeared**
  when it lies on the paper's side of 0, **contradicted** when it lies on the other side,
  **inconclusive** when it contains 0.
- ``direction="equal"`` with margin δ > 0 (|d| ≤ δ is the paper's claim): two one-sided tests
  (TOST, Schuirmann 1987), each at 5 %: H₀ d ≤ −δ and H₀ d ≥ δ are both rejected exactly when
  the **90%** interval lies within (−δ, δ): **appeared**. When the 90% interval lies wholly
  outside [−δ, δ] (one one-sided test at 5 % shows |d| > δ): **contradicted**. Otherwise
  **inconclusive**. The 90% interval is the one that matches a 5 % test per side; a 95% one
  would make the equivalence test a 2.5 % test.

Pairing removes the seed-to-seed spread shared by the arms (the same initial weights and batch
order for a seed in every arm whose architecture allows it: ``bnlab.lab.recipe``), so a paired
interval is never wider than it should be and is often much narrower than Welch's.

    judge(claim, lookup)  -> Verdict     lookup(arm, metric) -> {seed: value}
    judge_arms(claims, arms) -> [Verdict] arms: objects with .name, .trials, .histories
    interval(d, direction, margin) -> (mean, low, high, confidence, p, verdict)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

DIRECTIONS = ("greater", "less", "equal")
VERDICTS = ("appeared", "contradicted", "inconclusive")
CONFIDENCE = 0.95  # directional claims: a two-sided 95% interval
EQUIVALENCE_CONFIDENCE = 0.90  # equivalence claims: TOST at 5 % per side
PREFIXES = ("error", "points", "steps_to")

def median_drift(results: Mapping, history: Sequence[Mapping]) -> float | None:
    """The activation probe's (``bnlab.tools.probe``, ``per_unit``) drift of the median: for each
    unit of the first probed layer, the range (max − min) of its median over the logged steps;
    the mean over the units."""
    units = (results.get("probe") or {}).get("units")
    if not units:
        return None
    per_step = np.asarray(next(iter(units.values())), dtype=float)  # (steps, units, 3)
    medians = per_step[:, :, 1]
    return float(np.mean(medians.max(axis=0) - medians.min(axis=0)))


# name -> fn(results, history) -> float | None: metrics the studies derive from a trial
DERIVED: dict[str, Callable[[Mapping, list], float | None]] = {"median_drift": median_drift}


@dataclass(frozen=True)
class Claim:
    """One claim of a paper (module docstring): term a against term b on ``metric``."""

    statement: str
    a: str | tuple[str, str]
    b: str | tuple[str, str] | None = None
    metric: str | tuple[str, str] = "test_accuracy"
    direction: str = "greater"
    margin: float | None = None  # δ of an equivalence claim, in the metric's units
    paper: str = ""  # the paper's own figure, as text
    metric_b: str | tuple[str, str] | None = None  # term b's, when it is not ``metric``
    otherwise: str = ""  # the most likely reason, should the shape not appear (in the report)

    def __post_init__(self):
        check(self)

    def arms(self) -> list[str]:
        """Every arm the claim reads, in order."""
        return [arm for term in (self.a, self.b) for arm in _arms_of(term)]

    def terms(self) -> list[tuple[float, str, str]]:
        """The claim's difference as Σ weight · metric(arm): [(weight, arm, metric)]."""
        out = [(w, arm, m) for w, arm, m in _weighted(self.a, self.metric)]
        return out + [(-w, arm, m) for w, arm, m in _weighted(self.b, self.metric_b
                                                             or self.metric)]

    def metrics(self) -> list[str]:
        """Every metric the claim reads, each once."""
        return list(dict.fromkeys(m for _, _, m in self.terms()))

    @property
    def unit_metric(self) -> str:
        """The metric whose units the claim's difference is in (the first it reads)."""
        return _arms_of(self.metric)[0]


def _arms_of(term) -> list[str]:
    if term is None:
        return []
    return [term] if isinstance(term, str) else list(term)


def _weighted(term, metric) -> list[tuple[float, str, str]]:
    arms, metrics = _arms_of(term), _arms_of(metric)
    return [(w, arm, metrics[i % len(metrics)]) for i, (w, arm) in enumerate(zip((1.0, -1.0),
                                                                                  arms))]


def check(claim: Claim, arm_names: Sequence[str] | None = None) -> Claim:
    """ValueError, one line naming the field, for a malformed claim (or an arm not in
    ``arm_names``, when given)."""
    if not isinstance(claim.statement, str) or not claim.statement:
        raise ValueError("statement: give the claim in words")
    for field in ("a", "b"):
        term = getattr(claim, field)
        if term is None and field == "b":
            continue
        if isinstance(term, str):
            continue
        if not (isinstance(term, tuple) and len(term) == 2 and all(isinstance(t, str)
                                                                   for t in term)):
            raise ValueError(f"{field}: an arm's name or a pair of arm names (x − y), "
                             f"got {term!r}")
    if claim.direction not in DIRECTIONS:
        raise ValueError(f"direction: unknown {claim.direction!r}; allowed: "
                         f"{', '.join(DIRECTIONS)}")
    if claim.direction == "equal":
        if claim.margin is None or not claim.margin > 0:
            raise ValueError(f"margin: an equivalence claim needs a margin δ > 0, got "
                             f"{claim.margin!r}")
    elif claim.margin is not None:
        raise ValueError("margin: only an equivalence claim (direction = \"equal\") has one")
    for field, term in (("metric", claim.a), ("metric_b", claim.b)):
        names = getattr(claim, field)
        if isinstance(names, tuple):
            if not (isinstance(term, tuple) and len(names) == 2):
                raise ValueError(f"{field}: a pair of metrics goes with a pair of arms, got "
                                 f"{names!r}")
        for name in _arms_of(names):
            check_metric(name, field)
    if arm_names is not None:
        for arm in claim.arms():
            if arm not in arm_names:
                raise ValueError(f"unknown arm {arm!r}; known: {', '.join(arm_names)}")
    return claim


def check_metric(name: str, field: str = "metric") -> None:
    """ValueError for a metric name whose derived form is malformed (a plain key is accepted:
    a trial may record any)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{field}: expected a metric name, got {name!r}")
    parts = name.split(":")
    if len(parts) == 1 or name in DERIVED:
        return
    prefix = parts[0]
    if prefix not in PREFIXES:
        raise ValueError(f"{field}: unknown derived metric {prefix!r} in {name!r}; allowed: "
                         f"{', '.join(PREFIXES)} (or a plain results key)")
    wanted = 3 if prefix == "steps_to" else 2
    if len(parts) != wanted or not all(parts[1:]):
        form = "steps_to:KEY:THRESHOLD" if prefix == "steps_to" else f"{prefix}:KEY"
        raise ValueError(f"{field}: {name!r} should read {form}")
    if prefix == "steps_to":
        try:
            float(parts[2])
        except ValueError:
            raise ValueError(f"{field}: threshold {parts[2]!r} in {name!r} is not a number") \
                from None


# ------------------------------------------------------------------------------ metrics
def final_value(results: Mapping, history: Sequence[Mapping], key: str) -> float | None:
    """``results[key]``, else the last value of ``key`` in the history (None when neither)."""
    value = results.get(key)
    if value is None:
        value = next((r[key] for r in reversed(history) if r.get(key) is not None), None)
    return None if value is None else float(value)


def steps_to(history: Sequence[Mapping], key: str, threshold: float) -> tuple[float | None, bool]:
    """(the first logged step with ``key`` ≥ threshold, reached?); the last logged step and
    False when it never gets there."""
    logged = [(r["step"], r[key]) for r in history
              if r.get("step") is not None and r.get(key) is not None]
    for step, value in logged:
        if value >= threshold:
            return float(step), True
    return (float(logged[-1][0]), False) if logged else (None, False)


def metric_value(results: Mapping, history: Sequence[Mapping], metric: str) -> float | None:
    """One trial's value of ``metric`` (module docstring)."""
    if metric in DERIVED:
        value = DERIVED[metric](results, history)
        return None if value is None else float(value)
    parts = metric.split(":")
    if parts[0] == "steps_to":
        return steps_to(history, parts[1], float(parts[2]))[0]
    value = final_value(results, history, parts[-1])
    if value is None or len(parts) == 1:
        return value
    return 100.0 * (1.0 - value) if parts[0] == "error" else 100.0 * value


def censored(results: Mapping, history: Sequence[Mapping], metric: str) -> bool:
    """Whether a ``steps_to`` metric never reached its threshold in this trial."""
    parts = metric.split(":")
    return parts[0] == "steps_to" and not steps_to(history, parts[1], float(parts[2]))[1]


# ------------------------------------------------------------------------------ verdicts
@dataclass(frozen=True)
class Verdict:
    claim: Claim
    n: int  # paired seeds
    mean: float  # d̄
    low: float  # the interval's bounds (``confidence``)
    high: float
    confidence: float
    p_value: float  # two-sided t test of d = 0, or TOST's max of the two one-sided p's
    verdict: str
    note: str = ""  # e.g. censored seeds, too few seeds

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def interval(differences: Sequence[float], direction: str, margin: float | None = None):
    """(mean, low, high, confidence, p, verdict) of paired differences (module docstring)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    equal = direction == "equal"
    confidence = EQUIVALENCE_CONFIDENCE if equal else CONFIDENCE
    if d.size < 2:
        mean = float(d[0]) if d.size else math.nan
        return mean, math.nan, math.nan, confidence, math.nan, "inconclusive"
    mean = float(d.mean())
    if np.ptp(d) == 0:  # every seed alike: no spread, a point interval
        low = high = mean
        p = 0.0 if mean != 0 else 1.0
        if equal:
            p = 0.0 if abs(mean) < margin else 1.0
    else:
        from scipy import stats  # about 1 s to import: a report needs it, a training process not

        low, high = (float(v) for v in stats.ttest_1samp(d, 0.0).confidence_interval(confidence))
        if equal:
            p = max(stats.ttest_1samp(d, -margin, alternative="greater").pvalue,
                    stats.ttest_1samp(d, margin, alternative="less").pvalue)
        else:
            p = stats.ttest_1samp(d, 0.0).pvalue
    if equal:
        if -margin < low and high < margin:
            verdict = "appeared"
        elif low > margin or high < -margin:
            verdict = "contradicted"
        else:
            verdict = "inconclusive"
    else:
        sign = 1.0 if direction == "greater" else -1.0
        lo, hi = sorted((sign * low, sign * high))
        verdict = "appeared" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    return mean, float(low), float(high), confidence, float(p), verdict


def paired(claim: Claim, lookup: Callable[[str, str], Mapping[int, float | None]]):
    """(seeds, differences): the seeds every term has a value for, and d per seed."""
    terms = claim.terms()
    values = [(w, lookup(arm, metric)) for w, arm, metric in terms]
    seeds = sorted(set.intersection(*[{s for s, v in per.items() if v is not None}
                                      for _, per in values]))
    return seeds, [sum(w * per[s] for w, per in values) for s in seeds]


def judge(claim: Claim, lookup: Callable[[str, str], Mapping[int, float | None]],
          note: str = "") -> Verdict:
    """The claim's verdict; ``lookup(arm, metric)`` gives {seed: value} of one arm."""
    seeds, d = paired(claim, lookup)
    mean, low, high, confidence, p, verdict = interval(d, claim.direction, claim.margin)
    if len(seeds) < 2:
        note = "; ".join(filter(None, [note, f"{len(seeds)} paired seed(s): too few for an "
                                             "interval"]))
    return Verdict(claim, len(seeds), mean, low, high, confidence, p, verdict, note)


def _field(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, Mapping) else getattr(obj, key, default)


def judge_arms(claims: Sequence[Claim], arms: Sequence[Any]) -> list[Verdict]:
    """Every claim judged on ``arms`` (``bnlab.results.report.Arm``: name, trials with .seed
    and .results, histories); a claim whose arms did not run is judged on no seeds."""
    by_name = {arm.name: arm for arm in arms}
    verdicts = []
    for claim in map(as_claim, claims):
        notes = []

        def lookup(name, metric):
            arm = by_name.get(name)
            if arm is None:
                return {}
            out, cut = {}, 0
            for trial, history in zip(arm.trials, arm.histories):
                out[trial.seed] = metric_value(trial.results, history, metric)
                cut += censored(trial.results, history, metric)
            if cut:
                notes.append(f"{name}: {cut} of {len(arm.trials)} seed(s) never reached "
                             f"{metric.split(':')[2]}, counted at their last step")
            return out

        verdict = judge(claim, lookup)
        verdicts.append(dataclasses.replace(
            verdict, note="; ".join(filter(None, [verdict.note, *dict.fromkeys(notes)]))))
    return verdicts


def as_claim(obj: Any) -> Claim:
    """A Claim from itself or from its plain dict (``as_dict``: a report spec's)."""
    if isinstance(obj, Claim):
        return obj
    fields = {k: _field(obj, k) for k in Claim.__dataclass_fields__ if _field(obj, k) is not None}
    for key in ("a", "b", "metric", "metric_b"):
        if isinstance(fields.get(key), list):
            fields[key] = tuple(fields[key])
    return Claim(**fields)


def as_dict(claim: Claim) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in claim.__dict__.items()
            if v is not None}


def metrics_of(claims: Sequence[Any]) -> list[str]:
    """The metrics the claims read, in order, each once."""
    out = []
    for claim in map(as_claim, claims):
        out += [m for m in claim.metrics() if m not in out]
    return out


# ------------------------------------------------------------------------------ report text
def units(metric: str) -> tuple[float, str]:
    """(scale, unit) a metric's differences are shown in: accuracies in points."""
    prefix = metric.split(":")[0]
    if prefix == "steps_to":
        return 1.0, " steps"
    if prefix in ("error", "points"):
        return 1.0, " pt"
    if "accuracy" in metric:  # test_accuracy, precise_test_accuracy_320, ...
        return 100.0, " pt"
    return 1.0, ""


def describe_term(term, metric) -> str:
    if term is None:
        return "0"
    parts = [f"{m}({arm})" for _, arm, m in _weighted(term, metric)]
    return parts[0] if len(parts) == 1 else f"[{parts[0]} − {parts[1]}]"


def fmt_verdict(v: Verdict) -> str:
    """'+3.1 ± 1.2 pt (95% CI)' for the table."""
    scale, unit = units(v.claim.unit_metric)
    if math.isnan(v.mean):
        return "no paired seeds"
    if math.isnan(v.low):
        return f"{scale * v.mean:+.3g}{unit} (no interval)"
    digits = 0 if unit == " steps" else 2
    return (f"{scale * v.mean:+.{digits}f} ± {scale * v.half_width:.{digits}f}{unit} "
            f"({v.confidence:.0%} CI)")


TEST_TEXT = (
    "Each claim is judged on paired per-seed differences (the same seed gives every arm the same "
    "initial weights and batch order where the architecture allows), so the spread the arms "
    "share drops out. Directional claims: Student's t 95% interval of the mean paired difference "
    "(scipy.stats.ttest_1samp), a two-sided test at 5 %: appeared when it lies on the paper's "
    "side of 0, contradicted on the other side, inconclusive when it contains 0. Equivalence "
    "claims (\"does not depend on\", within ±δ): two one-sided tests at 5 % each (TOST), i.e. "
    "appeared when the 90% interval lies within ±δ, contradicted when it lies wholly outside "
    "±δ (a 95% interval would make each side a 2.5 % test).")


def table(verdicts: Sequence[Verdict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of "Did the paper's shape appear?"."""
    head = ["claim", "paper's figure", "ours: paired difference", "verdict", "seeds", "test",
            "difference (a − b, per seed)"]
    rows = []
    for v in verdicts:
        c = v.claim
        scale, unit = units(c.unit_metric)
        if c.direction == "equal":
            test = f"TOST, |d| < δ = {scale * c.margin:g}{unit}, p = {v.p_value:.3g}"
        else:
            side = ">" if c.direction == "greater" else "<"
            test = f"t, paper: d {side} 0, p = {v.p_value:.3g}"
        diff = describe_term(c.a, c.metric)
        if c.b is not None:
            diff += f" − {describe_term(c.b, c.metric_b or c.metric)}"
        verdict = v.verdict
        if verdict != "appeared" and c.otherwise:
            verdict += f": most likely, {c.otherwise}"
        rows.append([c.statement, c.paper or "—",
                     fmt_verdict(v) + (f" ({v.note})" if v.note else ""), verdict, str(v.n),
                     test, diff])
    return head, rows
