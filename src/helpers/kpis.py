"""KPIs with confidence intervals, period-over-period tests and KPI series computed in DuckDB.

Every KPI returns an :class:`Estimate` (value, interval, n) and every "went up / went down" sentence comes
from a :class:`Comparison` (difference, interval, p-value) that only says "rose"/"fell" when the change is
statistically significant.

Methods (``confidence`` defaults to 0.95, ``z`` is the standard-normal quantile ``1 - alpha/2``):

* **NPS** (-100..100): ``100 * (P - D) / n`` with promoters 9-10, detractors 0-6. Interval: the adjusted-Wald
  interval recommended by Rocks (2016, *The American Statistician* 70(4)) and by Lewis & Sauro
  (MeasuringU, "Confidence intervals for Net Promoter Scores", 2021): add 3/4 to promoters and to detractors
  and 3 to n, ``p' = (P + 3/4)/(n + 3)``, ``d' = (D + 3/4)/(n + 3)``,
  ``Var = p' + d' - (p' - d')^2``, interval ``100 * ((p' - d') +/- z * sqrt(Var / (n + 3)))``, clipped to
  [-100, 100]. The point estimate stays the observed NPS; in tiny samples where the adjusted interval
  misses it (e.g. one detractor), the interval is widened to include it.
* **Proportions** (top-2-box CSAT = share of 4-5 on the 1-5 scale, first-contact resolution = share of tickets
  with ``contacts_to_resolve == 1``, reopen rate, repeat purchase rate, retention): Wilson score interval
  (Wilson 1927; identical to ``statsmodels.stats.proportion.proportion_confint(method="wilson")``), reported
  in percent.
* **Means** (CES on 1-7, mean handling times): Student t interval ``mean +/- t_{n-1} * s / sqrt(n)``,
  clipped to the scale (a single answer on a bounded scale gets the whole scale as its interval).
* **Medians** (first-response and resolution hours, the headline time KPIs because durations are skewed):
  the distribution-free interval from order statistics (e.g. Conover, *Practical Nonparametric Statistics*,
  3rd ed., sec. 3.2): with ``B ~ Binomial(n, 1/2)``, ``l = F_B^{-1}(alpha/2)`` and ``u = n - l + 1``, the
  interval ``[x_(l), x_(u)]`` has coverage ``1 - 2 P(B <= l - 1) >= 1 - alpha``. For ``n < 6`` (95%) no
  pair of order statistics reaches the level; the interval is then ``[min, max]`` and ``method`` says so.
* **Counts** (response count, ticket volume): exact Poisson (Garwood 1936) interval from chi-square
  quantiles.
* **Retention** for a period: the customer retention rate ``CRR = (E - N) / S`` (S customers active at the
  period start, N acquired during the period, E active at the period end; see :func:`retention_counts`
  for the exact day rules) is meant to be the share of the S starting customers still active at the end.
  The published formula equals that share only when no customer acquired during the period also left
  during it; otherwise ``E - N`` undercounts (and over a long window can even go negative, e.g. 2 starting
  customers, 5 new of whom 3 leave: ``(3 - 5) / 2 = -100%``). We therefore compute the quantity CRR
  intends, ``R / S`` with ``R = |S and E|`` the starting customers still active at the end, which is
  ``(E - N) / S`` whenever new customers do not churn within the period (tested), and a proper binomial
  proportion, so the Wilson interval applies. ``retention_counts`` returns S, N, E and R so the published
  figure can be shown too. ``churn = 1 - retention`` (interval mirrored). Periods are clipped to the last
  date of the customers table (latest signup or end date): later churn is unknown, and counting everyone
  without an end date as retained would overstate retention.
* **CLV** with constant per-period retention ``r``, margin ``m`` and discount rate ``d`` per period, margin
  received at the start of each period: simple ``m / (1 - r)`` (margin times expected lifetime in periods)
  and discounted ``m * sum_{t>=0} r^t / (1 + d)^t = m (1 + d) / (1 + d - r)``; this equals
  ``m * (1 + r / (1 + d - r))``, i.e. one margin now plus Gupta & Lehmann's (2003, *J. Interactive
  Marketing* 17(1)) margin multiple ``r / (1 + i - r)`` for margins received at the end of each period.
  Interval by the delta method from the standard errors of the mean margin and of the retention rate.

Comparisons (``b`` is the later/current group, ``a`` the baseline; difference = ``b - a``):

* :func:`compare_nps`: difference of adjusted NPS with the adjusted-Wald variances added (Rocks 2016;
  Lewis & Sauro's two-sample NPS test); z-test p-value on the same statistic, so the interval excludes 0
  exactly when ``p < alpha`` (except in tiny samples, where the interval is widened to contain the observed
  difference).
* :func:`compare_proportions` / :func:`compare_csat`: Newcombe's hybrid score interval (Newcombe 1998,
  *Stat. Med.* 17, method 10; statsmodels ``confint_proportions_2indep(method="newcomb")``) and the pooled
  two-proportion z-test p-value (``statsmodels.stats.proportion.proportions_ztest``). Near the 5% boundary
  the two can disagree; sentences follow the p-value. Retention/churn comparisons (:func:`compare_kpi`)
  use the same on the retained counts ``R`` out of ``S``.
* :func:`compare_means`: Welch's t-test and interval (``scipy.stats.ttest_ind(equal_var=False)``).
* :func:`compare_medians`: percentile bootstrap of the difference of medians (seeded, ``n_boot``
  resamples); the p-value is the two-sided bootstrap p ``2 * min(P*(diff <= 0), P*(diff >= 0))``.
* :func:`compare_rates`: exact conditional (binomial) test for the ratio of two Poisson counts, reported as
  the difference of counts per period with a Wald interval.

:func:`compare_kpi` compares the rows of a Dataset (the reference implementation) or, with ``engine=``, the
same tests from engine aggregates (:func:`helpers.engine.aggregates.compare_from_aggregates`: counts, sums, sums
of squares, retention counts; medians bootstrapped on at most 20,000 values per period, all of them below that:
the same numbers).

:func:`kpi_series` computes any KPI by month/quarter/year and by department/team/agent (or any column of
the table) in DuckDB SQL: counts, sums and sums of squares are aggregated in SQL and the interval is
computed from the aggregates with the same vectorised formulas as the one-sample estimators; medians come
from DuckDB's ``quantile_cont`` and the order-statistic bounds from a ``row_number()`` window per group,
picked at the exact binomial ranks (computed in Python for the distinct group sizes only).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from helpers import selection as sel
from helpers.errors import KitError
from helpers.formatting import fmt_p_value, shorten
from helpers.results import ResultDisplay

__all__ = [
    "KPIError", "Estimate", "Comparison", "KPI", "KPIS",
    "wilson_interval", "nps_interval", "t_interval", "median_order_interval", "poisson_interval",
    "nps", "csat", "ces", "fcr", "reopen_rate", "proportion", "mean_estimate", "median_estimate",
    "ticket_hours", "first_response_time", "resolution_time", "RetentionCounts", "retention_counts",
    "retention_from_counts", "retention_rate", "nps_from_counts", "median_order_ranks",
    "churn_rate", "repeat_purchase_rate", "clv_simple", "clv_discounted", "clv", "count_estimate",
    "compare_nps", "compare_proportions", "compare_csat", "compare_means", "compare_medians",
    "compare_rates", "compare_kpi", "compute_kpi", "kpi_series", "kpi_overview", "KpiTable", "forest_plot", "plot_series",
    "DEFAULT_OVERVIEW", "NPS_PROMOTER_MIN", "NPS_DETRACTOR_MAX", "NPS_GROUPS", "nps_group",
]


class KPIError(KitError):
    """A KPI cannot be computed from the given input; the message names the metric and the problem."""

    def __init__(self, metric: str, problem: str):
        self.metric, self.problem = metric, problem
        super().__init__(f"KPI {metric!r}: {problem}")


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise KPIError("confidence", f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


# ---------------------------------------------------------------------------------------------------------
# Result objects
# ---------------------------------------------------------------------------------------------------------

def _fmt_number(x: float, unit: str, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    if unit == "points":  # NPS
        s = f"{x:+.0f}" if signed else f"{x:.0f}"
        return s.replace("-0", "0") if s in ("-0", "+0") else s
    if unit == "%":
        return f"{x:+.1f}" if signed else f"{x:.1f}"
    if unit in ("count", "currency"):
        return f"{x:+,.0f}" if signed else f"{x:,.0f}"
    if unit == "per day":
        return f"{x:+,.1f}" if signed else f"{x:,.1f}"
    if unit == "hours":
        return f"{x:+.1f}" if signed else f"{x:.1f}"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _fmt_with_unit(x: float, unit: str, signed: bool = False) -> str:
    s = _fmt_number(x, unit, signed)
    if s == "n/a":
        return s
    if unit == "%":
        return s + "%"
    if unit in ("points", "count", "currency", "score"):
        return s
    return f"{s} {unit}"


@dataclass(frozen=True, repr=False)
class Estimate(ResultDisplay):
    """A KPI value with its confidence interval and sample size.

    ``value`` is on the KPI's reporting scale (NPS -100..100, proportions in percent, times in hours).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    metric: str = ""
    unit: str = ""
    method: str = ""
    confidence: float = 0.95

    @property
    def label(self) -> str:
        kpi = KPIS.get(self.metric)
        return kpi.label if kpi else (self.metric or "Estimate")

    def format(self, label: bool = True) -> str:
        """E.g. ``"NPS +23 (95% CI +18 to +28, n = 1,204)"``."""
        signed = self.unit == "points"
        lo, hi = _fmt_number(self.ci_low, self.unit, signed), _fmt_with_unit(self.ci_high, self.unit, signed)
        head = (self.label + " ") if label else ""
        return (f"{head}{_fmt_with_unit(self.value, self.unit, signed)} "
                f"({self.confidence * 100:.0f}% CI {lo} to {hi}, n = {self.n:,})")

    def summary(self) -> str:
        return self.format() + "."

    def plot(self, ax=None, label: str | None = None):
        """The estimate as a point with its interval on ``ax`` (a new axis when omitted)."""
        return _plot_estimates([self], [label or self.label], ax=ax, title=self.label)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n": self.n, "unit": self.unit, "method": self.method, "confidence": self.confidence}

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, repr=False)
class Comparison(ResultDisplay):
    """Difference ``b - a`` between two estimates (``a`` = baseline/earlier, ``b`` = current/later)."""

    a: Estimate
    b: Estimate
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    confidence: float = 0.95
    labels: tuple[str, str] = ("before", "after")
    """What ``a`` and ``b`` are (two periods, or two selections such as two channels)."""
    between_groups: bool = False
    """True when ``a`` and ``b`` are two selections of the same period (then "higher/lower", not "rose/fell")."""
    sample: dict = field(default_factory=dict)
    """When the test ran on seeded samples (engine comparisons of medians): ``{"a": (size, population), "b":
    (...)}``; empty when every value was used."""

    @property
    def metric(self) -> str:
        return self.b.metric or self.a.metric

    def significant(self, alpha: float | None = None) -> bool:
        alpha = 1 - self.confidence if alpha is None else alpha
        return bool(np.isfinite(self.p_value) and self.p_value < alpha)

    def describe(self, alpha: float | None = None, label: str | None = None) -> str:
        """A plain sentence; says "rose"/"fell" only when the change is significant."""
        kpi = KPIS.get(self.metric)
        name = label or (kpi.label if kpi else self.metric or "The KPI")
        unit = self.b.unit or self.a.unit
        diff_unit = "points" if unit in ("%", "points") else unit
        a_s, b_s = _fmt_with_unit(self.a.value, unit, unit == "points"), _fmt_with_unit(
            self.b.value, unit, unit == "points")
        lo = _fmt_number(self.ci_low, "points" if unit == "points" else unit, True)
        hi = _fmt_number(self.ci_high, "points" if unit == "points" else unit, True)
        hi_u = hi + (" points" if diff_unit == "points" else (f" {diff_unit}" if diff_unit not in (
            "count", "currency", "score", "") else ""))
        ci = f"{self.confidence * 100:.0f}% CI {lo} to {hi_u}"
        p = fmt_p_value(self.p_value, prefix=True)
        if self.between_groups:
            la, lb = (str(x)[:60] for x in self.labels)
            if self.significant(alpha):
                mag = _fmt_number(abs(self.difference), "points" if unit == "points" else unit)
                mag += " points" if diff_unit == "points" else (f" {diff_unit}" if diff_unit not in (
                    "count", "currency", "score", "") else "")
                word = "higher" if self.difference > 0 else "lower"
                return f"{name} is {mag} {word} for {lb} ({b_s}) than for {la} ({a_s}) ({ci}; {p})."
            return (f"{name}: no significant difference between {la} ({a_s}) and {lb} ({b_s}) "
                    f"({ci}; {p}).")
        if self.significant(alpha):
            verb = "rose" if self.difference > 0 else "fell"
            mag = _fmt_number(abs(self.difference), "points" if unit == "points" else unit)
            mag += " points" if diff_unit == "points" else (f" {diff_unit}" if diff_unit not in (
                "count", "currency", "score", "") else "")
            return f"{name} {verb} by {mag}, from {a_s} to {b_s} ({ci}; {p})."
        d_s = _fmt_number(self.difference, "points" if unit == "points" else unit, True)
        d_s += " points" if diff_unit == "points" else (f" {diff_unit}" if diff_unit not in (
            "count", "currency", "score", "") else "")
        return f"{name}: no significant change ({a_s} then {b_s}; difference {d_s}, {ci}; {p})."

    def summary(self) -> str:
        return self.describe()

    def plot(self, ax=None, labels: tuple[str, str] | None = None):
        """Both estimates with their intervals; the title states the difference and its p-value."""
        kpi = KPIS.get(self.metric)
        p = fmt_p_value(self.p_value, prefix=True)
        title = (f"{kpi.label if kpi else self.metric}: difference "
                 f"{_fmt_number(self.difference, self.b.unit, True)} ({p})")
        return _plot_estimates([self.a, self.b], list(labels or self.labels), ax=ax, title=title)

    def to_dict(self) -> dict[str, Any]:
        """The comparison's fields, JSON-safe; ``sample``: ``{"a": [size, population], "b": [...]}`` when the test
        ran on seeded samples ({} when every value was used), as :attr:`sample` with lists for tuples."""
        return {"metric": self.metric, "label_a": self.labels[0], "label_b": self.labels[1], "a": self.a.value,
                "b": self.b.value, "difference": self.difference, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "n_a": self.a.n, "n_b": self.b.n, "method": self.method,
                "confidence": self.confidence,
                "sample": {str(k): [int(x) for x in v] for k, v in (self.sample or {}).items()}}

    @property
    def table(self) -> pd.DataFrame:
        """One row of :meth:`to_dict`'s scalars; a sampled test adds ``sample_a``/``sample_b`` (values used)."""
        row = self.to_dict()
        sample = row.pop("sample")
        row.update({f"sample_{k}": v[0] for k, v in sample.items()})
        return pd.DataFrame([row])

    def __str__(self) -> str:
        return self.describe()


def _plot_estimates(estimates: Sequence[Estimate], labels: Sequence[str], ax=None, title: str = ""):
    from helpers.charts import ACCENT, new_axis  # noqa: PLC0415 (matplotlib only when plotting)

    ax = new_axis(ax)
    x = np.arange(len(estimates))
    v = np.array([e.value for e in estimates], float)
    lo = np.array([e.ci_low for e in estimates], float)
    hi = np.array([e.ci_high for e in estimates], float)
    ax.errorbar(x, v, yerr=np.vstack([v - lo, hi - v]), fmt="o", color=ACCENT, capsize=6, lw=2)
    ax.set_xticks(x, [f"{lab}\n(n = {e.n:,})" for lab, e in zip(labels, estimates)])
    ax.set_xlim(-0.6, len(estimates) - 0.4)
    unit = estimates[0].unit
    ax.set_ylabel(unit if unit not in ("", "count", "score") else "")
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------------------
# Vectorised interval formulas (shared by the estimators and by kpi_series)
# ---------------------------------------------------------------------------------------------------------

def wilson_interval(k, n, confidence: float = 0.95):
    """Wilson score interval for ``k`` successes out of ``n`` (arrays broadcast); proportions 0..1.

    ``(p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``  (Wilson 1927). NaN where n == 0.
    """
    z = _z(confidence)
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


#: The NPS groups (Reichheld 2003): promoters answer 9-10, passives 7-8, detractors 0-6 on the 0-10 scale. The kit's
#: one definition: every count of promoters or detractors (KPIs, voice of the customer, explorer) uses these.
NPS_PROMOTER_MIN = 9
NPS_DETRACTOR_MAX = 6
NPS_GROUPS = ("detractor", "passive", "promoter")


def nps_group(scores) -> pd.Series:
    """``detractor`` (0 to :data:`NPS_DETRACTOR_MAX`), ``passive``, ``promoter`` (:data:`NPS_PROMOTER_MIN` to 10)
    per score as a categorical Series (categories in that order); missing or non-numeric scores stay missing."""
    s = pd.to_numeric(pd.Series(scores), errors="coerce")
    groups = np.select([s >= NPS_PROMOTER_MIN, s > NPS_DETRACTOR_MAX, s >= 0], list(NPS_GROUPS[::-1]), default="")
    return pd.Series(pd.Categorical(np.where(s.isna() | (groups == ""), None, groups), categories=NPS_GROUPS),
                     index=s.index)


NPS_PSEUDO_PROMOTERS = 0.75
NPS_PSEUDO_DETRACTORS = 0.75
NPS_PSEUDO_N = 3.0


def nps_interval(promoters, detractors, n, confidence: float = 0.95):
    """Adjusted-Wald NPS interval (Rocks 2016; Lewis & Sauro 2021) on the -1..1 scale.

    Returns ``(centre_adj, se_adj, low, high)`` arrays; see the module docstring for the formula.
    """
    z = _z(confidence)
    P = np.asarray(promoters, dtype=float)
    D = np.asarray(detractors, dtype=float)
    n_adj = np.asarray(n, dtype=float) + NPS_PSEUDO_N
    p = (P + NPS_PSEUDO_PROMOTERS) / n_adj
    d = (D + NPS_PSEUDO_DETRACTORS) / n_adj
    centre = p - d
    se = np.sqrt((p + d - centre ** 2) / n_adj)
    return centre, se, np.clip(centre - z * se, -1, 1), np.clip(centre + z * se, -1, 1)


def t_interval(mean, sd, n, confidence: float = 0.95):
    """Student t interval ``mean +/- t_{n-1, 1-alpha/2} sd / sqrt(n)``; NaN where n < 2."""
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(n >= 2, n - 1, np.nan)
        t = stats.t.ppf(0.5 + confidence / 2, df)
        half = t * sd / np.sqrt(n)
    return mean - half, mean + half


def median_order_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks ``(l, u)`` of the distribution-free median interval and its exact coverage."""
    if n < 1:
        raise KPIError("median", "no observations")
    alpha = 1 - confidence
    l = int(stats.binom.ppf(alpha / 2, n, 0.5))
    if l < 1:
        l = 1
    u = n - l + 1
    coverage = 1 - 2 * float(stats.binom.cdf(l - 1, n, 0.5))
    return l, u, coverage


def median_order_interval(sorted_values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Order-statistic interval ``[x_(l), x_(u)]`` for the median of sorted values; also the coverage."""
    n = len(sorted_values)
    l, u, coverage = median_order_ranks(n, confidence)
    return float(sorted_values[l - 1]), float(sorted_values[u - 1]), coverage


def poisson_interval(count, confidence: float = 0.95):
    """Exact (Garwood) Poisson interval: ``chi2(alpha/2, 2k)/2`` to ``chi2(1-alpha/2, 2k+2)/2``."""
    k = np.asarray(count, dtype=float)
    alpha = 1 - confidence
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, stats.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
        high = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return low, high


# ---------------------------------------------------------------------------------------------------------
# Input cleaning
# ---------------------------------------------------------------------------------------------------------

def _as_float(values, metric: str, what: str) -> np.ndarray:
    if isinstance(values, Estimate):
        raise KPIError(metric, f"expected raw {what}, got an Estimate")
    if isinstance(values, (str, bytes)):
        raise KPIError(metric, f"expected a sequence of {what}, got a string {values!r}")
    try:
        if isinstance(values, (pd.Series, pd.Index)):
            if pd.api.types.is_bool_dtype(values.dtype):
                arr = values.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            elif pd.api.types.is_numeric_dtype(values.dtype):
                arr = values.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            else:  # object/str columns: numbers stored as objects are fine, text is not
                arr = pd.to_numeric(pd.Series(values), errors="raise").astype("Float64").to_numpy(
                    dtype=float, na_value=np.nan)
        else:
            arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KPIError(metric, f"expected numeric {what}, got values that are not numbers ({exc})") from None
    return arr.ravel()


def _clean(values, metric: str, what: str, lo: float | None = None, hi: float | None = None,
           integer: bool = False, scale: str = "") -> np.ndarray:
    """Drop NaN, then check the input is non-empty, finite, integer (ratings) and within [lo, hi]."""
    arr = _as_float(values, metric, what)
    if arr.size == 0:
        raise KPIError(metric, f"no {what} (empty input); at least one value is needed")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise KPIError(metric, f"all {what} are missing (NaN); at least one value is needed")
    if not np.all(np.isfinite(arr)):
        raise KPIError(metric, f"{what} contain infinite values")
    bad = np.zeros(arr.shape, bool)
    if lo is not None:
        bad |= arr < lo
    if hi is not None:
        bad |= arr > hi
    if integer:
        bad |= arr != np.round(arr)
    if bad.any():
        ex = ", ".join(f"{v:g}" for v in arr[bad][:5])
        raise KPIError(metric, f"{int(bad.sum())} {what} outside the scale {scale or f'{lo}..{hi}'} "
                               f"(e.g. {ex})")
    return arr


# ---------------------------------------------------------------------------------------------------------
# One-sample estimators
# ---------------------------------------------------------------------------------------------------------

def _nps_counts(scores) -> tuple[int, int, int]:
    s = _clean(scores, "nps", "NPS scores", 0, 10, integer=True, scale="0-10 (integers)")
    return int((s >= NPS_PROMOTER_MIN).sum()), int((s <= NPS_DETRACTOR_MAX).sum()), int(s.size)


def nps_from_counts(promoters: int, detractors: int, n: int, confidence: float = 0.95) -> Estimate:
    """NPS from counts (promoters 9-10, detractors 0-6, n answers); adjusted-Wald interval."""
    if n <= 0:
        raise KPIError("nps", "no NPS answers (n = 0)")
    if promoters < 0 or detractors < 0 or promoters + detractors > n:
        raise KPIError("nps", f"inconsistent counts: promoters={promoters}, detractors={detractors}, n={n}")
    _, _, lo, hi = nps_interval(promoters, detractors, n, confidence)
    value = 100 * (promoters - detractors) / n
    # the adjusted interval is centred on the shrunken estimate; in tiny samples (e.g. n = 1) it can miss
    # the observed NPS, so it is widened to include it (coverage only increases)
    return Estimate(value, min(100 * float(lo), value), max(100 * float(hi), value), int(n), "nps",
                    "points", "adjusted Wald (Rocks 2016)", confidence)


def nps(scores, confidence: float = 0.95) -> Estimate:
    """Net Promoter Score on -100..100 from 0-10 answers; adjusted-Wald interval (see module docstring)."""
    P, D, n = _nps_counts(scores)
    return nps_from_counts(P, D, n, confidence)


def proportion(successes: int, n: int, metric: str = "proportion", confidence: float = 0.95,
               method: str = "Wilson score") -> Estimate:
    """Share ``successes / n`` in percent with the Wilson interval."""
    if n <= 0:
        raise KPIError(metric, "no observations (n = 0)")
    lo, hi = wilson_interval(successes, n, confidence)
    return Estimate(100 * successes / n, 100 * float(lo), 100 * float(hi), int(n), metric, "%", method,
                    confidence)


def csat(scores, confidence: float = 0.95, top_box: Sequence[int] = (4, 5)) -> Estimate:
    """Top-2-box CSAT: percent of 1-5 answers in ``top_box`` (4-5), Wilson interval."""
    s = _clean(scores, "csat", "CSAT scores", 1, 5, integer=True, scale="1-5 (integers)")
    return proportion(int(np.isin(s, list(top_box)).sum()), s.size, "csat", confidence)


def mean_estimate(values, metric: str = "mean", unit: str = "", confidence: float = 0.95,
                  lo: float | None = None, hi: float | None = None, integer: bool = False,
                  what: str = "values") -> Estimate:
    """Mean with the Student t interval, clipped to the scale [lo, hi]; with n = 1 the interval is the whole
    scale if it is bounded, else NaN."""
    x = _clean(values, metric, what, lo, hi, integer=integer,
               scale=f"{lo:g}-{hi:g}" if lo is not None and hi is not None else "")
    m = float(x.mean())
    sd = float(x.std(ddof=1)) if x.size > 1 else np.nan
    low, high = t_interval(m, sd, x.size, confidence)
    # the mean of a bounded scale cannot leave the scale: clip the t interval to [lo, hi]; with one value
    # (no spread) the interval is the whole scale when the scale is bounded, else undefined (NaN)
    lo_b, hi_b = (lo if lo is not None else -np.inf), (hi if hi is not None else np.inf)
    if x.size < 2 and np.isfinite(lo_b) and np.isfinite(hi_b):
        low, high = lo_b, hi_b
    low, high = float(np.clip(low, lo_b, hi_b)), float(np.clip(high, lo_b, hi_b))
    return Estimate(m, low, high, int(x.size), metric, unit, "Student t", confidence)


def ces(scores, confidence: float = 0.95) -> Estimate:
    """Customer Effort Score: mean of 1 (very easy) - 7 (very difficult) answers; t interval. Lower is better."""
    return mean_estimate(scores, "ces", "score", confidence, 1, 7, integer=True, what="CES scores")


def fcr(contacts_to_resolve, confidence: float = 0.95) -> Estimate:
    """First-contact resolution: percent of resolved tickets with ``contacts_to_resolve == 1``; Wilson."""
    c = _clean(contacts_to_resolve, "fcr", "contacts_to_resolve values", 1, None, integer=True,
               scale="integers >= 1")
    return proportion(int((c == 1).sum()), c.size, "fcr", confidence)


def reopen_rate(reopened, confidence: float = 0.95) -> Estimate:
    """Percent of tickets reopened after resolution (missing values ignored); Wilson interval."""
    r = _clean(reopened, "reopen_rate", "reopened flags", 0, 1, integer=True, scale="true/false")
    return proportion(int(r.sum()), r.size, "reopen_rate", confidence)


def median_estimate(values, metric: str = "median", unit: str = "", confidence: float = 0.95,
                    what: str = "values", lo: float | None = None) -> Estimate:
    """Median with the distribution-free order-statistic interval (see module docstring)."""
    x = np.sort(_clean(values, metric, what, lo, None, scale=f">= {lo:g}" if lo is not None else ""))
    low, high, coverage = median_order_interval(x, confidence)
    method = "exact order statistics (binomial)"
    if coverage < confidence:
        method += f"; n too small, [min, max] covers only {coverage:.1%}"
    return Estimate(float(np.median(x)), low, high, int(x.size), metric, unit, method, confidence)


_TIME_COLUMNS = {"first_response": "first_response_at", "resolution": "resolved_at"}


def ticket_hours(tickets: pd.DataFrame, kind: str = "resolution") -> np.ndarray:
    """Hours from ``created_at`` to ``first_response_at`` (kind "first_response") or ``resolved_at``
    ("resolution") for tickets where the later timestamp is set. Negative durations raise :class:`KPIError`.
    """
    metric = f"{kind}_hours"
    if kind not in _TIME_COLUMNS:
        raise KPIError(metric, f"kind must be one of {sorted(_TIME_COLUMNS)}, got {kind!r}")
    col = _TIME_COLUMNS[kind]
    _require_columns(tickets, "tickets", ["created_at", col], metric)
    created = pd.to_datetime(tickets["created_at"])
    later = pd.to_datetime(tickets[col])
    hours = ((later - created).dt.total_seconds() / 3600.0).to_numpy(dtype=float, na_value=np.nan)
    neg = hours < 0
    if neg.any():
        ids = tickets.loc[neg, "ticket_id"].head(5).tolist() if "ticket_id" in tickets else []
        raise KPIError(metric, f"{int(neg.sum())} tickets have {col} before created_at (negative durations)"
                               + (f", e.g. {ids}" if ids else ""))
    return hours


def first_response_time(tickets: pd.DataFrame, statistic: str = "median", confidence: float = 0.95) -> Estimate:
    """Median (order-statistic interval) or mean (t interval) hours to first response."""
    return _duration(tickets, "first_response", statistic, confidence)


def resolution_time(tickets: pd.DataFrame, statistic: str = "median", confidence: float = 0.95) -> Estimate:
    """Median (order-statistic interval) or mean (t interval) hours from creation to resolution."""
    return _duration(tickets, "resolution", statistic, confidence)


def _duration(tickets, kind, statistic, confidence):
    hours = ticket_hours(tickets, kind)
    if statistic == "median":
        return median_estimate(hours, f"{kind}_hours", "hours", confidence, what="durations (hours)", lo=0)
    if statistic == "mean":
        return mean_estimate(hours, f"{kind}_hours_mean", "hours", confidence, lo=0, what="durations (hours)")
    raise KPIError(f"{kind}_hours", f"statistic must be 'median' or 'mean', got {statistic!r}")


def count_estimate(count: int, metric: str = "count", confidence: float = 0.95) -> Estimate:
    """A count with its exact Poisson interval (e.g. ticket volume in a period)."""
    lo, hi = poisson_interval(count, confidence)
    return Estimate(float(count), float(lo), float(hi), int(count), metric, "count", "exact Poisson (Garwood)",
                    confidence)


# ---- customers: retention, churn, repeat purchases, CLV -------------------------------------------------

def _to_day(x, metric: str, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(x)
    except (TypeError, ValueError):
        raise KPIError(metric, f"{what} {x!r} is not a date (use ISO 'YYYY-MM-DD')") from None
    if ts is pd.NaT:
        raise KPIError(metric, f"{what} is missing")
    return ts.normalize()


class RetentionCounts(NamedTuple):
    S: int  # active at the period start
    N: int  # acquired during the period
    E: int  # active at the period end
    R: int  # of S, still active at the period end (retained)


def retention_counts(customers: pd.DataFrame, start, end) -> RetentionCounts:
    """``(S, N, E, R)`` for the period of days ``start .. end`` (both inclusive).

    S: customers active on ``start`` (``signup_date < start`` and ``end_date`` empty or ``>= start``);
    N: customers with ``start <= signup_date <= end``;
    E: customers still active after ``end`` (``signup_date <= end`` and ``end_date`` empty or ``> end``);
    R: customers counted in both S and E. ``end_date`` is the last day as a customer.
    """
    _require_columns(customers, "customers", ["signup_date", "end_date"], "retention_rate")
    s0 = _to_day(start, "retention_rate", "start")
    e0 = _to_day(end, "retention_rate", "end")
    if e0 < s0:
        raise KPIError("retention_rate", f"end {e0.date()} is before start {s0.date()}")
    signup = pd.to_datetime(customers["signup_date"])
    ended = pd.to_datetime(customers["end_date"])
    in_s = (signup < s0) & (ended.isna() | (ended >= s0))
    in_e = (signup <= e0) & (ended.isna() | (ended > e0))
    N = int(((signup >= s0) & (signup <= e0)).sum())
    return RetentionCounts(int(in_s.sum()), N, int(in_e.sum()), int((in_s & in_e).sum()))


def retention_from_counts(S: int, R: int, confidence: float = 0.95) -> Estimate:
    """Retention ``R / S`` in percent (R of the S starting customers retained); Wilson interval."""
    if S <= 0:
        raise KPIError("retention_rate", "no customers active at the period start (S = 0)")
    if not 0 <= R <= S:
        raise KPIError("retention_rate", f"retained count R = {R} must be between 0 and S = {S}")
    lo, hi = wilson_interval(R, S, confidence)
    return Estimate(100 * R / S, 100 * float(lo), 100 * float(hi), int(S), "retention_rate", "%",
                    "retained / active at start, Wilson", confidence)


def retention_rate(customers: pd.DataFrame, start, end, confidence: float = 0.95) -> Estimate:
    """Customer retention rate for the period ``start .. end``: R / S (= (E - N) / S when no new customer
    churns within the period; see the module docstring and :func:`retention_counts`)."""
    c = retention_counts(customers, start, end)
    return retention_from_counts(c.S, c.R, confidence=confidence)


def churn_rate(customers: pd.DataFrame, start, end, confidence: float = 0.95) -> Estimate:
    """Churn rate ``1 - retention`` for the period, in percent (interval mirrored)."""
    r = retention_rate(customers, start, end, confidence)
    return _churn_from_retention(r)


def _churn_from_retention(r: Estimate) -> Estimate:
    return Estimate(100 - r.value, 100 - r.ci_high, 100 - r.ci_low, r.n, "churn_rate", "%",
                    "1 - retained / active at start, Wilson", r.confidence)


def repeat_purchase_rate(purchases, confidence: float = 0.95) -> Estimate:
    """Percent of purchasing customers (``purchases >= 1``) with at least two purchases; Wilson."""
    p = _clean(purchases, "repeat_purchase_rate", "purchase counts", 0, None, integer=True,
               scale="integers >= 0")
    buyers = p[p >= 1]
    if buyers.size == 0:
        raise KPIError("repeat_purchase_rate", "no customer has a purchase (purchases >= 1)")
    return proportion(int((buyers >= 2).sum()), buyers.size, "repeat_purchase_rate", confidence)


def _check_clv_inputs(margin: float, retention: float, discount_rate: float) -> None:
    if not np.isfinite(margin) or margin < 0:
        raise KPIError("clv", f"margin per period must be a finite number >= 0, got {margin!r}")
    if not 0 <= retention < 1:
        raise KPIError("clv", f"retention per period must be in [0, 1) (a rate, not a percent), got {retention!r}")
    if not np.isfinite(discount_rate) or discount_rate < 0:
        raise KPIError("clv", f"discount rate per period must be >= 0, got {discount_rate!r}")


def clv_simple(margin: float, retention: float) -> float:
    """Undiscounted CLV: ``margin * expected lifetime = margin / (1 - r)`` (margin at each period's start)."""
    _check_clv_inputs(margin, retention, 0.0)
    return margin / (1 - retention)


def clv_discounted(margin: float, retention: float, discount_rate: float, horizon: int | None = None) -> float:
    """Discounted CLV ``m * sum_{t=0}^{T-1} r^t / (1+d)^t``; infinite horizon: ``m (1+d) / (1+d-r)``.

    Rates are per period (e.g. monthly; convert an annual rate ``a`` with ``(1+a)^(1/12) - 1``).
    """
    _check_clv_inputs(margin, retention, discount_rate)
    q = retention / (1 + discount_rate)
    if horizon is None:
        return margin / (1 - q)
    if horizon < 0:
        raise KPIError("clv", f"horizon must be >= 0 periods, got {horizon}")
    return margin * (1 - q ** horizon) / (1 - q) if q != 1 else margin * horizon


def clv(margins, retained: int, at_risk: int, discount_rate: float = 0.0, confidence: float = 0.95) -> Estimate:
    """CLV from observed margins per customer-period and ``retained`` out of ``at_risk`` retention counts.

    Point: :func:`clv_discounted` (``discount_rate`` 0 gives :func:`clv_simple`) at the mean margin and
    ``r = retained / at_risk``. Interval: delta method,
    ``Var = g(r)^2 s^2/n_m + m^2 g'(r)^2 r(1-r)/S`` with ``g(r) = (1+d)/(1+d-r)``,
    ``g'(r) = (1+d)/(1+d-r)^2``; lower bound clipped at 0.
    """
    m_arr = _clean(margins, "clv", "margins", 0, None, scale=">= 0")
    if at_risk <= 0:
        raise KPIError("clv", "no customers at risk for the retention rate (S = 0)")
    r = retained / at_risk
    if r >= 1:
        raise KPIError("clv", "retention is 100% in the data, so the expected lifetime is unbounded")
    m = float(m_arr.mean())
    d = discount_rate
    value = clv_discounted(m, max(r, 0.0), d)
    g = (1 + d) / (1 + d - r)
    dg = (1 + d) / (1 + d - r) ** 2
    var_m = float(m_arr.var(ddof=1)) / m_arr.size if m_arr.size > 1 else 0.0
    var_r = r * (1 - r) / at_risk
    se = math.sqrt(g * g * var_m + m * m * dg * dg * var_r)
    z = _z(confidence)
    return Estimate(value, max(value - z * se, 0.0), value + z * se, int(m_arr.size), "clv", "currency",
                    "m (1+d)/(1+d-r), delta method", confidence)


# ---------------------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------------------

def _two_sided_p(zstat: float) -> float:
    return float(2 * stats.norm.sf(abs(zstat)))


def compare_nps(a, b, confidence: float = 0.95) -> Comparison:
    """Difference NPS(b) - NPS(a) with the adjusted-Wald variances added; z-test p-value (Rocks 2016)."""
    Pa, Da, na = _nps_counts(a)
    Pb, Db, nb = _nps_counts(b)
    return _compare_nps_counts((Pa, Da, na), (Pb, Db, nb), confidence)


def _compare_nps_counts(ca, cb, confidence):
    z = _z(confidence)
    c_a, se_a, _, _ = nps_interval(ca[0], ca[1], ca[2], confidence)
    c_b, se_b, _, _ = nps_interval(cb[0], cb[1], cb[2], confidence)
    diff_adj = float(c_b - c_a)
    se = float(np.hypot(se_a, se_b))
    ea, eb = nps_from_counts(*ca, confidence=confidence), nps_from_counts(*cb, confidence=confidence)
    diff = eb.value - ea.value
    lo, hi = 100 * max(diff_adj - z * se, -2), 100 * min(diff_adj + z * se, 2)
    return Comparison(ea, eb, diff, min(lo, diff), max(hi, diff), _two_sided_p(diff_adj / se),
                      "adjusted-Wald difference, z-test", confidence)


def compare_proportions(k_a: int, n_a: int, k_b: int, n_b: int, metric: str = "proportion",
                        confidence: float = 0.95) -> Comparison:
    """Difference of two proportions (percent points, b - a): Newcombe hybrid score interval and the
    pooled two-proportion z-test p-value (statsmodels)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    if n_a <= 0 or n_b <= 0:
        raise KPIError(metric, f"both groups need observations (n_a = {n_a}, n_b = {n_b})")
    ea = proportion(k_a, n_a, metric, confidence)
    eb = proportion(k_b, n_b, metric, confidence)
    lo, hi = confint_proportions_2indep(k_b, n_b, k_a, n_a, method="newcomb", compare="diff",
                                        alpha=1 - confidence)
    if k_a + k_b in (0, n_a + n_b):
        p = 1.0  # both groups all-failure or all-success: no evidence of a difference
    else:
        _, p = proportions_ztest([k_b, k_a], [n_b, n_a])
    return Comparison(ea, eb, eb.value - ea.value, 100 * float(lo), 100 * float(hi), float(p),
                      "Newcombe hybrid score interval; pooled z-test", confidence)


def compare_csat(a, b, confidence: float = 0.95, top_box: Sequence[int] = (4, 5)) -> Comparison:
    """Top-2-box CSAT difference in percent points (b - a); see :func:`compare_proportions`."""
    sa = _clean(a, "csat", "CSAT scores", 1, 5, integer=True, scale="1-5 (integers)")
    sb = _clean(b, "csat", "CSAT scores", 1, 5, integer=True, scale="1-5 (integers)")
    return compare_proportions(int(np.isin(sa, top_box).sum()), sa.size, int(np.isin(sb, top_box).sum()),
                               sb.size, "csat", confidence)


def compare_means(a, b, metric: str = "mean", unit: str = "", confidence: float = 0.95) -> Comparison:
    """Difference of means (b - a) with Welch's t interval and p-value (scipy ``ttest_ind(equal_var=False)``)."""
    xa = _clean(a, metric, "values")
    xb = _clean(b, metric, "values")
    if xa.size < 2 or xb.size < 2:
        raise KPIError(metric, f"each group needs at least 2 values for Welch's test (got {xa.size}, {xb.size})")
    res = stats.ttest_ind(xb, xa, equal_var=False)
    ci = res.confidence_interval(confidence)
    ea = mean_estimate(xa, metric, unit, confidence)
    eb = mean_estimate(xb, metric, unit, confidence)
    p = float(res.pvalue) if np.isfinite(res.pvalue) else (1.0 if xa.mean() == xb.mean() else 0.0)
    return Comparison(ea, eb, eb.value - ea.value, float(ci.low), float(ci.high), p, "Welch t-test", confidence)


def compare_medians(a, b, metric: str = "median", unit: str = "", confidence: float = 0.95,
                    n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Difference of medians (b - a): percentile bootstrap interval and two-sided bootstrap p-value.

    Each group is resampled independently (``n_boot`` times, seeded); ``p = min(1, 2 min(P*(D <= 0),
    P*(D >= 0)))`` from the bootstrap distribution of the difference ``D`` (Efron & Tibshirani 1993, ch. 16).
    """
    xa = _clean(a, metric, "values")
    xb = _clean(b, metric, "values")
    ma, mb = _bootstrap_median_pairs(xa, xb, n_boot, seed)
    diffs = mb - ma
    alpha = 1 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    ea = median_estimate(xa, metric, unit, confidence)
    eb = median_estimate(xb, metric, unit, confidence)
    return Comparison(ea, eb, eb.value - ea.value, float(lo), float(hi), float(p),
                      f"bootstrap difference of medians ({n_boot} resamples)", confidence)


def _bootstrap_median_pairs(xa: np.ndarray, xb: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The medians of ``n_boot`` independent resamples (with replacement) of ``xa`` and of ``xb`` (seeded; in
    chunks of about two million draws, ``a`` then ``b`` in each chunk)."""
    rng = np.random.default_rng(seed)
    ma, mb = np.empty(n_boot), np.empty(n_boot)
    chunk = max(1, int(2_000_000 // max(xa.size, xb.size)))
    for i in range(0, n_boot, chunk):
        m = min(chunk, n_boot - i)
        ma[i:i + m] = np.median(xa[rng.integers(0, xa.size, (m, xa.size))], axis=1)
        mb[i:i + m] = np.median(xb[rng.integers(0, xb.size, (m, xb.size))], axis=1)
    return ma, mb


def compare_rates(count_a: int, count_b: int, exposure_a: float = 1.0, exposure_b: float = 1.0,
                  metric: str = "count", confidence: float = 0.95, unit: str = "count") -> Comparison:
    """Compare two Poisson counts (e.g. ticket volume) per unit exposure: difference ``b/e_b - a/e_a`` with a
    Wald interval; p-value from the exact conditional binomial test of equal rates
    (``scipy.stats.binomtest(k_b, k_a + k_b, e_b / (e_a + e_b))``). ``unit`` labels the rates (``"per day"``
    when the exposures are days)."""
    if count_a < 0 or count_b < 0 or exposure_a <= 0 or exposure_b <= 0:
        raise KPIError(metric, "counts must be >= 0 and exposures > 0")
    ra, rb = count_a / exposure_a, count_b / exposure_b
    se = math.sqrt(count_a / exposure_a ** 2 + count_b / exposure_b ** 2)
    z = _z(confidence)
    total = count_a + count_b
    p = 1.0 if total == 0 else float(stats.binomtest(count_b, total, exposure_b / (exposure_a + exposure_b)).pvalue)
    ea = count_estimate(count_a, metric, confidence)
    eb = count_estimate(count_b, metric, confidence)
    if exposure_a != 1 or exposure_b != 1:
        ea = Estimate(ra, ea.ci_low / exposure_a, ea.ci_high / exposure_a, ea.n, metric, unit, ea.method, confidence)
        eb = Estimate(rb, eb.ci_low / exposure_b, eb.ci_high / exposure_b, eb.n, metric, unit, eb.method, confidence)
    return Comparison(ea, eb, rb - ra, rb - ra - z * se, rb - ra + z * se, p,
                      "Poisson rate difference (Wald); exact conditional test", confidence)


def _retention_comparison(ca: RetentionCounts, cb: RetentionCounts, metric, confidence):
    comp = compare_proportions(ca.R, ca.S, cb.R, cb.S, "retention_rate", confidence)
    ra, rb = retention_from_counts(ca.S, ca.R, confidence), retention_from_counts(cb.S, cb.R, confidence)
    if metric == "churn_rate":
        ca_, cb_ = _churn_from_retention(ra), _churn_from_retention(rb)
        return Comparison(ca_, cb_, cb_.value - ca_.value, -comp.ci_high, -comp.ci_low, comp.p_value,
                          comp.method, confidence)
    return Comparison(ra, rb, rb.value - ra.value, comp.ci_low, comp.ci_high, comp.p_value, comp.method,
                      confidence)


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------

from helpers.kpi_registry import KPI, KPIS  # noqa: E402 (the registry, re-exported here)


def _kpi(name: str) -> KPI:
    if name not in KPIS:
        raise KPIError(str(name), f"unknown metric; known metrics: {', '.join(sorted(KPIS))}")
    return KPIS[name]


# ---------------------------------------------------------------------------------------------------------
# compute_kpi: one period from pandas frames
# ---------------------------------------------------------------------------------------------------------

def _require_columns(df: pd.DataFrame, table: str, columns: Iterable[str], metric: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise KPIError(metric, f"expected the {table} table as a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KPIError(metric, f"table {table} has no column(s) {missing}; it has {list(df.columns)}")


def _frame(data, table: str, metric: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        if table not in data:
            raise KPIError(metric, f"needs the {table} table; got tables {sorted(data)}")
        return data[table]
    if hasattr(data, table):
        return getattr(data, table)
    raise KPIError(metric, f"needs the {table} table: pass a Dataset, a dict of DataFrames or the DataFrame")


def _apply_filters(df: pd.DataFrame, table: str, filters, metric: str, data=None) -> pd.DataFrame:
    """Rows of ``df`` (the KPI's table) selected by ``filters`` (see :mod:`helpers.selection`: aliases such as
    ``agent``, values matched by case and slug, unknown values named with the values that exist). A filter on
    a column the table lacks but ``customers`` has (segment, region, ...) is joined in DuckDB on
    ``customer_id`` when ``data`` is a Dataset or a dict of tables."""
    try:
        wanted = sel.normalize_filters(filters)
    except sel.SelectionError as exc:
        raise KPIError(metric, str(exc)) from None
    if not wanted:
        return df
    if not isinstance(df, pd.DataFrame):
        raise KPIError(metric, f"expected the {table} table as a pandas DataFrame, got {type(df).__name__}")
    outside = [c for c in wanted if c not in df.columns]
    if outside:
        if data is None or isinstance(data, pd.DataFrame) or "customer_id" not in df.columns:
            _require_columns(df, table, outside, metric)
        df = _join_customer_columns(df, table, outside, metric, data)
    mask = np.ones(len(df), bool)
    for col, vals in wanted.items():
        try:
            matched = sel.match_values(col, vals, pd.unique(df[col].dropna()), table=table)
        except sel.SelectionError as exc:
            raise KPIError(metric, str(exc)) from None
        mask &= df[col].isin(matched).to_numpy(dtype=bool, na_value=False)
    return df.loc[mask]


def _join_customer_columns(df: pd.DataFrame, table: str, columns: list[str], metric: str, data) -> pd.DataFrame:
    """``df`` with the customer columns ``columns`` added by a DuckDB LEFT JOIN on ``customer_id``."""
    try:
        con = sel.connection_of(data)
        cust = sel.table_columns(con, "customers")
    except sel.SelectionError as exc:
        raise KPIError(metric, str(exc)) from None
    missing = [c for c in columns if cust is None or c not in cust]
    if missing:
        more = f"; customers has {[c for c in cust if c != 'customer_id']}" if cust else ""
        raise KPIError(metric, f"table {table} has no column(s) {missing}; it has {list(df.columns)}{more}")
    import duckdb  # noqa: PLC0415

    from helpers.engine.duckdb_engine import duckdb_connection  # noqa: PLC0415 - memory limit, spill folder

    local = duckdb_connection()
    try:
        local.register("_rows", df)
        rel = con.execute("SELECT customer_id, " + ", ".join(_quote(c) for c in columns) + " FROM customers")
        keys = rel.fetch_arrow_table() if hasattr(rel, "fetch_arrow_table") else rel.df()
        local.register("_customers", keys)
        picks = ", ".join(f"c.{_quote(c)}" for c in columns)
        out = local.execute(f"SELECT r.*, {picks} FROM _rows AS r LEFT JOIN _customers AS c "
                            "ON r.customer_id = c.customer_id").df()
    finally:
        local.close()
    return out


def _apply_dates(df: pd.DataFrame, table: str, column: str, start, end, metric: str) -> pd.DataFrame:
    if start is None and end is None:
        return df
    _require_columns(df, table, [column], metric)
    d = pd.to_datetime(df[column])
    mask = np.ones(len(df), bool)
    if start is not None:
        mask &= (d >= _to_day(start, metric, "start")).to_numpy(dtype=bool, na_value=False)
    if end is not None:
        mask &= (d < _to_day(end, metric, "end") + pd.Timedelta(days=1)).to_numpy(dtype=bool, na_value=False)
    return df.loc[mask]


def _estimate_from_frame(k: KPI, df: pd.DataFrame, confidence: float) -> Estimate:
    if k.kind in ("top_box", "nps", "mean", "share_eq1", "flag"):
        _require_columns(df, k.table, [k.column], k.name)
    if k.kind == "top_box":
        return csat(df[k.column], confidence)
    if k.kind == "nps":
        return nps(df[k.column], confidence)
    if k.kind == "mean":
        return ces(df[k.column], confidence)
    if k.kind == "share_eq1":
        return fcr(df[k.column], confidence)
    if k.kind == "flag":
        return reopen_rate(df[k.column], confidence)
    if k.kind == "median_hours":
        return _duration(df, k.column, "median", confidence)
    if k.kind == "mean_hours":
        return _duration(df, k.column, "mean", confidence)
    if k.kind == "count":
        return count_estimate(len(df), k.name, confidence)
    if k.kind == "repeat":
        _require_columns(df, k.table, [k.column], k.name)
        return repeat_purchase_rate(df[k.column], confidence)
    raise KPIError(k.name, f"kind {k.kind!r} is not computed from one frame")  # pragma: no cover


def _month_starts(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Calendar months overlapping [start, end], each clipped to the window: [(first day, last day)]."""
    out = []
    m = start.to_period("M")
    while m.start_time <= end:
        out.append((max(m.start_time, start), min(m.end_time.normalize(), end)))
        m += 1
    return out


def _customers_data_end(customers: pd.DataFrame) -> pd.Timestamp:
    """The last day the customers table knows about: the latest signup_date or end_date."""
    last = max(pd.to_datetime(customers["signup_date"]).max(), pd.to_datetime(customers["end_date"]).max())
    return pd.Timestamp(last).normalize()


def _customer_window(customers: pd.DataFrame, start, end, metric: str,
                     data_end: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The window ``start .. end`` with ``end`` clipped to the data end (after the last signup/churn date
    the data cannot tell who left, so retention would be overstated)."""
    _require_columns(customers, "customers", ["signup_date", "end_date"], metric)
    if len(customers) == 0:
        raise KPIError(metric, "the customers table is empty")
    data_end = _customers_data_end(customers) if data_end is None else data_end
    s = _to_day(start, metric, "start") if start is not None else pd.to_datetime(customers["signup_date"]).min()
    e = min(_to_day(end, metric, "end"), data_end) if end is not None else data_end
    if s.normalize() > data_end:
        raise KPIError(metric, f"the period starts {s.date()}, after the last date in the customers table "
                               f"({data_end.date()})")
    if e < s:
        raise KPIError(metric, f"end {e.date()} is before start {s.date()}")
    return s.normalize(), e.normalize()


def compute_kpi(name: str, data, filters: Mapping[str, Any] | None = None, start=None, end=None,
                confidence: float = 0.95, discount_rate: float = 0.0, *, by=None,
                min_responses: int = 30) -> "Estimate | KpiTable":
    """One KPI for one period, from a ``Dataset``, a dict of DataFrames or the KPI's own DataFrame.

    ``filters`` (column -> value or list; see :mod:`helpers.selection`) may name columns of the KPI's table
    or of ``customers`` (segment, region, plan, ...: joined in DuckDB on ``customer_id``); ``by`` (a column or
    list) gives one estimate per group as a :class:`KpiTable` (groups with fewer than ``min_responses``
    observations flagged ``small``). ``start``/``end`` (inclusive days) select rows by the KPI's date column
    (responses: ``response_date``, tickets: ``created_at``). Retention/churn treat ``start .. end`` as one
    period (both required): the share of customers active on ``start`` still active after ``end``; ``end`` is
    clipped to the last date of the customers table (latest signup or end date), since later churn is
    unknown. CLV uses the mean ``monthly_revenue`` of customers active at the window end, the pooled monthly
    retention of the window (``sum R / sum S`` over its calendar months) and ``discount_rate`` per month.
    """
    k = _kpi(name)
    by_cols = _as_list(by)
    if by_cols:
        return _grouped_kpi(k, data, by_cols, filters, start, end, confidence, discount_rate, min_responses)
    df = _frame(data, k.table, name)
    data_end = None
    if k.table == "customers" and len(df) and {"signup_date", "end_date"} <= set(df.columns):
        data_end = _customers_data_end(df)  # of the whole table, before filters
    df = _apply_filters(df, k.table, filters, name, data)
    if k.kind in ("retention", "churn", "clv"):
        if len(df) == 0:
            raise KPIError(name, f"no customers match the filters ({sel.describe_filters(filters)})")
        if k.kind == "clv":
            S, R = _pooled_monthly_retention(df, start, end, name, data_end)
            _, e = _customer_window(df, start, end, name, data_end)
            signup, ended = pd.to_datetime(df["signup_date"]), pd.to_datetime(df["end_date"])
            active = (signup <= e) & (ended.isna() | (ended >= e))
            _require_columns(df, "customers", ["monthly_revenue"], name)
            return clv(df.loc[active, "monthly_revenue"], R, S, discount_rate, confidence)
        c = _window_retention_counts(df, start, end, name, data_end)
        r = retention_from_counts(c.S, c.R, confidence)
        return r if k.kind == "retention" else _churn_from_retention(r)
    selected = df
    if k.date_column is not None:
        df = _apply_dates(df, k.table, k.date_column, start, end, name)
    if len(df) == 0 and k.kind != "count":
        raise KPIError(name, _empty_message(k, selected, filters, start, end))
    return _estimate_from_frame(k, df, confidence)


def _empty_message(k: KPI, selected: pd.DataFrame, filters, start, end) -> str:
    """Why a selection has no rows: the filters, the period, and the dates the filtered rows do cover."""
    period = f"{start or 'the start'} to {end or 'the end'}"
    msg = f"no {k.table} rows in the selected period/filters ({sel.describe_filters(filters)}; {period})"
    if len(selected) and k.date_column in selected.columns:
        d = pd.to_datetime(selected[k.date_column])
        msg += f"; the filtered rows run from {d.min().date()} to {d.max().date()}"
    elif filters:
        msg += "; the filters together match no rows in any period"
    return msg


def _grouped_kpi(k: KPI, data, by_cols, filters, start, end, confidence, discount_rate, min_responses):
    """One estimate per group: in DuckDB (``kpi_series(freq=None)``) when the data has tables there, else one
    :func:`compute_kpi` per group value."""
    table = None
    if k.periodic and not isinstance(data, pd.DataFrame) and not (k.kind in ("retention", "churn")
                                                                  and (start is None or end is None)):
        try:
            con = sel.connection_of(data)
        except sel.SelectionError:
            con = None
        if con is not None:
            table = kpi_series(con, k.name, freq=None, by=by_cols, filters=filters, start=start, end=end,
                               confidence=confidence).drop(columns=["period"])
    if table is None:
        if k.kind in ("retention", "churn"):
            _window_retention_counts(pd.DataFrame(), start, end, k.name)  # raises: needs the period
        df = _apply_filters(_frame(data, k.table, k.name), k.table, filters, k.name, data)
        _require_columns(df, k.table, by_cols, k.name)
        rows = []
        for key, _ in df.groupby(by_cols, observed=True, dropna=True):
            key = key if isinstance(key, tuple) else (key,)
            f = {**sel.normalize_filters(filters), **{c: [v] for c, v in zip(by_cols, key)}}
            try:
                e = compute_kpi(k.name, data if not isinstance(data, pd.DataFrame) else df, f, start, end,
                                confidence, discount_rate)
            except KPIError:
                continue
            rows.append({**dict(zip(by_cols, key)), "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                         "n": e.n, "metric": k.name})
        table = pd.DataFrame(rows, columns=[*by_cols, "value", "ci_low", "ci_high", "n", "metric"])
    if table.empty:
        raise KPIError(k.name, f"no {k.table} rows for any group of {by_cols} ({sel.describe_filters(filters)}; "
                               f"{start or 'the start'} to {end or 'the end'})")
    table = table.copy()
    table["small"] = table["n"] < min_responses
    return KpiTable(k.name, tuple(by_cols), table.reset_index(drop=True), min_responses,
                    sel.normalize_filters(filters), start, end, confidence)


@dataclass(frozen=True, repr=False)
class KpiTable(ResultDisplay):
    """A KPI per group for one period: ``.table`` (by-columns, value, ci_low, ci_high, n, metric, ``small`` =
    fewer than ``min_responses`` observations), ``.plot(ax)`` (dot-and-interval "forest" chart),
    ``.summary()``."""

    metric: str
    by: tuple[str, ...]
    table: pd.DataFrame
    min_responses: int = 30
    filters: dict = field(default_factory=dict)
    start: Any = None
    end: Any = None
    confidence: float = 0.95

    @property
    def unit(self) -> str:
        return KPIS[self.metric].unit

    def _group_name(self, row) -> str:
        return ", ".join(str(row[c]) for c in self.by)

    def summary(self) -> str:
        k = KPIS[self.metric]
        t = self.table
        reliable = t[~t["small"]] if (~t["small"]).any() else t
        better = reliable["value"].idxmax() if k.higher_is_better else reliable["value"].idxmin()
        worse = reliable["value"].idxmin() if k.higher_is_better else reliable["value"].idxmax()
        est = {i: Estimate(t.at[i, "value"], t.at[i, "ci_low"], t.at[i, "ci_high"], int(t.at[i, "n"]),
                           self.metric, k.unit, "", self.confidence) for i in (better, worse)}
        by = ", ".join(self.by)
        small = int(t["small"].sum())
        note = (f"; {small} group{'s' if small != 1 else ''} with fewer than {self.min_responses} observations "
                "flagged small and left out of best/worst") if small else ""
        direction = "higher" if k.higher_is_better else "lower"
        return (f"{k.label} by {by} ({len(t)} groups, {direction} is better): best {self._group_name(t.loc[better])} "
                f"{est[better].format(label=False)}, worst {self._group_name(t.loc[worse])} "
                f"{est[worse].format(label=False)}{note}.")

    def plot(self, ax=None):
        """Dot-and-interval chart of the groups (small groups hollow and labelled)."""
        return forest_plot(self.table, metric=self.metric, by=list(self.by), min_responses=self.min_responses,
                           ax=ax)

    def _display_frame(self):
        k = KPIS[self.metric]
        t = self.table.copy()
        signed = k.unit == "points"
        t["value"] = [_fmt_with_unit(v, k.unit, signed) for v in t["value"]]
        t["95% CI"] = [f"{_fmt_number(a, k.unit, signed)} to {_fmt_number(b, k.unit, signed)}"
                       for a, b in zip(t["ci_low"], t["ci_high"])]
        t["small"] = np.where(t["small"], f"yes (n < {self.min_responses})", "")
        return t[[*self.by, "value", "95% CI", "n", "small"]], {"n": "int"}

    def __getitem__(self, key):
        return self.table[key]

    def __len__(self) -> int:
        return len(self.table)


def forest_plot(table: pd.DataFrame, metric: str | None = None, by=None, min_responses: int = 30, ax=None,
                title: str | None = None):
    """Dot-and-interval ("forest") chart of any grouped KPI table (``compute_kpi(by=)``, ``kpi_overview``,
    ``kpi_series(freq=None)``): one row per group, the estimate as a dot with its interval, groups with fewer
    than ``min_responses`` observations drawn hollow and marked "(small, n = ...)". One metric per chart."""
    from helpers.charts import ACCENT, new_axis  # noqa: PLC0415
    from helpers.formatting import chart_text  # noqa: PLC0415

    t = table
    if "metric" in t.columns:
        metrics = list(pd.unique(t["metric"]))
        if metric is None and len(metrics) > 1:
            raise KPIError(str(metrics), "forest_plot draws one metric; pass metric= (one of "
                                         f"{', '.join(map(str, metrics))})")
        metric = metric or metrics[0]
        t = t[t["metric"] == metric]
    by_cols = _as_list(by) or [c for c in t.columns if c not in (
        "period", "value", "ci_low", "ci_high", "n", "metric", "label", "unit", "higher_is_better", "formatted",
        "small", "small_group")]
    if t.empty:
        raise KPIError(str(metric), "forest_plot: the table has no rows")
    k = KPIS.get(str(metric))
    t = t.sort_values("value", ascending=not (k.higher_is_better if k else True)).reset_index(drop=True)
    ax = new_axis(ax, figsize=(7, 0.45 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    small = (t["n"] < min_responses).to_numpy()
    v, lo, hi = (t[c].to_numpy(dtype=float) for c in ("value", "ci_low", "ci_high"))
    ax.hlines(y, lo, hi, color=ACCENT, lw=2)
    ax.scatter(v[~small], y[~small], color=ACCENT, zorder=3, s=36)
    ax.scatter(v[small], y[small], facecolors="white", edgecolors=ACCENT, zorder=3, s=36,
               label=f"fewer than {min_responses} observations")
    labels = []
    for (_, row), is_small in zip(t.iterrows(), small):
        name = ", ".join(str(row[c]) for c in by_cols) if by_cols else ""
        labels.append(chart_text(f"{name} (n = {int(row['n']):,}{', small' if is_small else ''})"))
    ax.set_yticks(y, labels)
    unit = k.unit if k else ""
    label = k.label if k else str(metric)
    ax.set_xlabel(f"{label}" + (f" ({unit})" if unit not in ("", "count", "score", "points") else "")
                  + " with 95% CI")
    if small.any():
        ax.legend(frameon=False, fontsize="small", loc="best")
    better = "" if k is None else (" (higher is better)" if k.higher_is_better else " (lower is better)")
    ax.set_title(chart_text(title) if title else f"{label} by {', '.join(by_cols)}{better}")
    return ax


def _window_retention_counts(customers, start, end, metric, data_end=None) -> RetentionCounts:
    if start is None or end is None:
        raise KPIError(metric, "needs the period: pass start and end (e.g. the first and last day of a month)")
    s, e = _customer_window(customers, start, end, metric, data_end)
    return retention_counts(customers, s, e)


def _pooled_monthly_retention(customers, start, end, metric, data_end=None) -> tuple[int, int]:
    """``(sum S, sum R)`` over the calendar months of the window (each clipped to the window)."""
    s, e = _customer_window(customers, start, end, metric, data_end)
    S = R = 0
    for a, b in _month_starts(s, e):
        c = retention_counts(customers, a, b)
        S, R = S + c.S, R + c.R
    return S, R


def _period_days(period, metric: str) -> float | None:
    """Days in an inclusive ``(start, end)`` period, or None when either end is open."""
    start, end = period if period is not None else (None, None)
    if start is None or end is None:
        return None
    return float((_to_day(end, metric, "end") - _to_day(start, metric, "start")).days + 1)


def compare_kpi(name: str, data_a, data_b=None, filters_a=None, filters_b=None, period_a=(None, None),
                period_b=(None, None), confidence: float = 0.95, *, filters=None, labels=None,
                engine=None) -> Comparison:
    """Compare one KPI between two selections, b - a: one filter and two periods
    (``compare_kpi("csat", ds, filters={"department": "Billing"}, period_a=(...), period_b=(...))``), or two
    filters in one period with ``labels`` (``filters_a={"channel": "email"}, filters_b={"channel": "phone"},
    period_a=(...)``: ``period_b`` defaults to ``period_a``).

    ``data_b`` defaults to ``data_a`` (older code passed the same Dataset twice; that still works). ``filters``
    applies to both sides, ``filters_a``/``filters_b`` to one each (customer columns such as segment are
    joined in DuckDB; see :mod:`helpers.selection`).

    ``engine`` (a :class:`helpers.engine.Engine` over the same tables as ``data_a``): the comparison is computed
    from engine aggregates (:func:`helpers.engine.aggregates.compare_from_aggregates`: counts, sums and sums of
    squares; the same numbers as the rows; medians from at most 20,000 values per side, sampled by a seeded
    hash above that and said in ``method``), so no table reaches pandas. Without one, and for the KPIs the
    engine does not compare (CLV, repeat purchases), the rows of ``data_a``/``data_b`` are compared (the
    reference implementation).
    """
    k = _kpi(name)
    data_b = data_a if data_b is None else data_b
    try:
        common = sel.normalize_filters(filters)
        filters_a = {**common, **sel.normalize_filters(filters_a)}
        filters_b = {**common, **sel.normalize_filters(filters_b)}
    except sel.SelectionError as exc:
        raise KPIError(name, str(exc)) from None
    period_a = tuple(period_a) if period_a is not None else (None, None)
    period_b = tuple(period_b) if period_b is not None else (None, None)
    groups = filters_a != filters_b
    if groups and period_b == (None, None):
        period_b = period_a
    if labels is None:
        if groups:
            diff = lambda f, g: {c: v for c, v in f.items() if g.get(c) != v}  # noqa: E731
            labels = (_selection_label(diff(filters_a, filters_b), "a"), _selection_label(diff(filters_b, filters_a), "b"))
        else:
            labels = tuple(f"{p[0] or 'start'} to {p[1] or 'end'}" for p in (period_a, period_b))
    labels = tuple(str(x) for x in labels)
    if len(labels) != 2:
        raise KPIError(name, f"labels must be two names (a, b), got {labels!r}")
    comp = None
    if engine is not None:
        from helpers.engine import aggregates as A  # noqa: PLC0415

        if A.compares_on_engine(name):
            try:
                comp = A.compare_from_aggregates(engine, name, None, period_a, period_b, confidence,
                                                 filters_a=filters_a, filters_b=filters_b)
            except sel.SelectionError as exc:
                raise KPIError(name, str(exc)) from None
    if comp is None:
        comp = _compare_selected(k, name, data_a, data_b, filters_a, filters_b, period_a, period_b, confidence)
    from dataclasses import replace  # noqa: PLC0415

    return replace(comp, labels=labels, between_groups=groups and period_a == period_b)


def _selection_label(filters: dict, default: str) -> str:
    """A short name for one side of a comparison: the value when one column with one value differs
    (``"email"``), else ``"channel=['email', 'chat']"``-style text."""
    if len(filters) == 1:
        (col, vals), = filters.items()
        if len(vals) == 1:
            return str(vals[0])
    return sel.describe_filters(filters) or default


def _compare_selected(k, name, data_a, data_b, filters_a, filters_b, period_a, period_b, confidence):
    if k.kind in ("retention", "churn"):
        ca = _window_retention_counts(_apply_filters(_frame(data_a, "customers", name), "customers", filters_a,
                                                     name, data_a), *period_a, name)
        cb = _window_retention_counts(_apply_filters(_frame(data_b, "customers", name), "customers", filters_b,
                                                     name, data_b), *period_b, name)
        return _retention_comparison(ca, cb, name, confidence)

    def rows(data, filters, period):
        df = _apply_filters(_frame(data, k.table, name), k.table, filters, name, data)
        selected = df
        if k.date_column is not None:
            df = _apply_dates(df, k.table, k.date_column, period[0], period[1], name)
        if len(df) == 0 and k.kind != "count":
            raise KPIError(name, _empty_message(k, selected, filters, *period))
        return df

    da, db = rows(data_a, filters_a, period_a), rows(data_b, filters_b, period_b)
    if k.kind == "nps":
        return compare_nps(da[k.column], db[k.column], confidence)
    if k.kind == "top_box":
        return compare_csat(da[k.column], db[k.column], confidence)
    if k.kind == "mean":
        return compare_means(_clean(da[k.column], name, "CES scores", 1, 7, True),
                             _clean(db[k.column], name, "CES scores", 1, 7, True), name, k.unit, confidence)
    if k.kind in ("share_eq1", "flag", "repeat"):
        ea, eb = _estimate_from_frame(k, da, confidence), _estimate_from_frame(k, db, confidence)
        ka, kb = round(ea.value * ea.n / 100), round(eb.value * eb.n / 100)
        return compare_proportions(ka, ea.n, kb, eb.n, name, confidence)
    if k.kind == "median_hours":
        return compare_medians(ticket_hours(da, k.column), ticket_hours(db, k.column), name, "hours",
                               confidence)
    if k.kind == "mean_hours":
        return compare_means(ticket_hours(da, k.column), ticket_hours(db, k.column), name, "hours", confidence)
    if k.kind == "count":
        days = [_period_days(period, name) for period in (period_a, period_b)]
        if None in days or days[0] == days[1]:  # open-ended or equally long periods: the counts compare as they are
            return compare_rates(len(da), len(db), metric=name, confidence=confidence)
        # periods of different lengths (January vs February): compare counts per day, never raw counts
        return compare_rates(len(da), len(db), days[0], days[1], metric=name, confidence=confidence,
                             unit="per day")
    raise KPIError(name, "comparison is not available for this metric")


# ---------------------------------------------------------------------------------------------------------
# kpi_series: DuckDB
# ---------------------------------------------------------------------------------------------------------

_FREQS = {"month": "month", "quarter": "quarter", "year": "year", None: None}
_SERIES_COLUMNS = ["period", "value", "ci_low", "ci_high", "n"]


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _table_columns(con, table: str, metric: str) -> list[str]:
    try:
        return [r[0] for r in con.execute(f"DESCRIBE {_quote(table)}").fetchall()]
    except Exception as exc:  # duckdb.CatalogException etc.
        raise KPIError(metric, f"the DuckDB connection has no table {table!r} ({type(exc).__name__})") from None


def _as_list(by) -> list[str]:
    return sel.as_columns(by)


def _where(filters, start, end, date_expr, columns, table, metric, params, alias: str = "") -> str:
    """WHERE clause for filters already matched to the data (:func:`_select`) and the inclusive days
    ``start .. end`` on ``date_expr``."""
    clauses = sel.where_sql(filters or {}, params, alias)
    if date_expr is not None:
        if start is not None:
            clauses.append(f"{date_expr} >= ?")
            params.append(_to_day(start, metric, "start").to_pydatetime())
        if end is not None:
            clauses.append(f"{date_expr} < ?")
            params.append((_to_day(end, metric, "end") + pd.Timedelta(days=1)).to_pydatetime())
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def _select(con, k: KPI, by_cols: list[str], filters) -> tuple[str, list[str], dict]:
    """The FROM item for the KPI's table (joined with ``customers`` on ``customer_id`` in DuckDB when a
    filter or grouping names a customer column such as segment or region), its columns, and the filters
    matched to the values in the data (aliases, case and slug; see :mod:`helpers.selection`)."""
    metric = k.name
    columns = _table_columns(con, k.table, metric)
    wanted = sel.normalize_filters(filters) if filters else {}
    cust = sel.table_columns(con, "customers") if k.table != "customers" and "customer_id" in columns else None
    joinable = [c for c in (cust or []) if c not in columns]
    for c in by_cols:
        if c not in columns and c not in joinable:
            hint = " (responses have no team/agent; use department or channel)" if k.table == "responses" else ""
            more = f"; customer columns: {joinable}" if joinable else ""
            raise KPIError(metric, f"cannot group by {c!r}: table {k.table} has no such column{hint}; "
                                   f"columns: {columns}{more}")
    for c in wanted:
        if c not in columns and c not in joinable:
            more = f" or customers ({joinable})" if joinable else ""
            raise KPIError(metric, f"filter column {c!r} is not in table {k.table} (columns: {columns}){more}")
    try:
        source, columns = sel.source_sql(con, k.table, [*by_cols, *wanted], what=f"KPI {metric!r}")
        resolved = sel.resolve_filters(con, source, wanted, table=k.table)
    except sel.SelectionError as exc:
        raise KPIError(metric, str(exc)) from None
    return source, columns, resolved


def _run(con, sql: str, params: list, k: KPI):
    """``con.execute(sql).df()`` with DuckDB's errors (a binder error on a missing column, a conversion
    error on a text value) turned into a :class:`KPIError` naming the table."""
    import duckdb  # noqa: PLC0415

    try:
        return con.execute(sql, params)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KPIError(k.name, f"cannot be computed from table {k.table}: {shorten(first, 200)}") from None


def _check_range(con, k: KPI, expr: str, where: str, params: list, lo, hi, integer: bool, scale: str,
                 source: str):
    cond = [f"{expr} < {lo}"] if lo is not None else []
    if hi is not None:
        cond.append(f"{expr} > {hi}")
    if integer:
        cond.append(f"{expr} <> round({expr})")
    sql = (f"SELECT count(*), list({expr})[1:5] FROM {source} {where} "
           f"{'AND' if where else 'WHERE'} ({' OR '.join(cond)})")
    n_bad, examples = _run(con, sql, params, k).fetchall()[0]
    if n_bad:
        raise KPIError(k.name, f"{n_bad} values of {k.table}.{k.column or expr} outside the scale {scale} "
                               f"(e.g. {examples})")


def kpi_series(con, metric: str, freq: str | None = "month", by=None, filters=None, start=None, end=None,
               confidence: float = 0.95) -> pd.DataFrame:
    """A KPI per period (and per group) computed in DuckDB from the tables of ``con``.

    Returns a DataFrame with columns ``period`` (timestamp of the period start; the window start or the
    first data date when ``freq=None``), the ``by`` columns, ``value``, ``ci_low``, ``ci_high``, ``n``
    (plus ``metric``), sorted by the by-columns and period. ``by`` is a column (or list of columns) of the
    KPI's table, e.g. "department", "team", "agent_id", "channel" (customers: "segment", "region").
    ``filters`` is a dict column -> value or list of values; ``start``/``end`` are inclusive days on the
    KPI's date column. Groups without data in a period are absent. Intervals are computed from SQL aggregates
    with the formulas of the one-sample estimators.
    """
    k = _kpi(metric)
    if freq not in _FREQS:
        raise KPIError(metric, f"freq must be 'month', 'quarter', 'year' or None, got {freq!r}")
    if not k.periodic:
        raise KPIError(metric, "has no time dimension in the data contract; use compute_kpi for one period")
    by_cols = _as_list(by)
    if k.kind in ("retention", "churn"):
        columns = _table_columns(con, k.table, metric)
        for c in by_cols:
            if c not in columns:
                raise KPIError(metric, f"cannot group by {c!r}: table {k.table} has no such column; "
                                       f"columns: {columns}")
        return _retention_series(con, k, freq, by_cols, filters, start, end, confidence, columns)
    source, columns, resolved = _select(con, k, by_cols, filters)
    needed = [k.date_column] + ([_TIME_COLUMNS[k.column]] if k.kind in ("median_hours", "mean_hours") else [])
    for c in needed:
        if c not in columns:
            raise KPIError(metric, f"table {k.table} has no column {c!r} (the KPI's date/time column); "
                                   f"columns: {columns}")

    params: list = []
    date_expr = _quote(k.date_column)
    where = _where(resolved, start, end, date_expr, columns, k.table, metric, params)
    group_sel = "".join(f", {_quote(c)}" for c in by_cols)
    if k.column and k.kind not in ("median_hours", "mean_hours"):
        if k.column not in columns:
            raise KPIError(metric, f"table {k.table} has no column {k.column!r}")
    col = _quote(k.column) if k.column else None
    if k.kind == "nps":
        _check_range(con, k, col, where, params, 0, 10, True, "0-10 (integers)", source)
        aggs = (f"count({col}) AS n, count_if({col} >= {NPS_PROMOTER_MIN}) AS a, "
                f"count_if({col} <= {NPS_DETRACTOR_MAX}) AS b")
    elif k.kind == "top_box":
        _check_range(con, k, col, where, params, 1, 5, True, "1-5 (integers)", source)
        aggs = f"count({col}) AS n, count_if({col} >= 4) AS a, 0 AS b"
    elif k.kind == "mean":
        _check_range(con, k, col, where, params, 1, 7, True, "1-7 (integers)", source)
        aggs = f"count({col}) AS n, avg({col}) AS a, stddev_samp({col}) AS b"
    elif k.kind == "share_eq1":
        _check_range(con, k, col, where, params, 1, None, True, "integers >= 1", source)
        aggs = f"count({col}) AS n, count_if({col} = 1) AS a, 0 AS b"
    elif k.kind == "flag":
        aggs = f"count({col}) AS n, count_if({col}) AS a, 0 AS b"
    elif k.kind in ("median_hours", "mean_hours"):
        later = _quote(_TIME_COLUMNS[k.column])
        hours = f"(epoch(CAST({later} AS TIMESTAMP) - CAST({date_expr} AS TIMESTAMP)) / 3600.0)"
        _check_range(con, k, hours, where, params, 0, None, False, ">= 0 hours (" + _TIME_COLUMNS[k.column]
                     + " before created_at)", source)
        aggs = f"count({hours}) AS n, avg({hours}) AS a, stddev_samp({hours}) AS b"  # medians: see below
    elif k.kind == "count":
        aggs = "count(*) AS n, count(*) AS a, 0 AS b"
    else:  # pragma: no cover - registry kinds are all handled
        raise KPIError(metric, f"kind {k.kind!r} not supported in kpi_series")

    if freq is None:
        if start is not None:
            period_value = _to_day(start, metric, "start")
        else:
            first = _run(con, f"SELECT min(CAST({date_expr} AS DATE)) FROM {source} {where}",
                         params, k).fetchall()[0][0]
            period_value = pd.Timestamp(first) if first is not None else pd.NaT
        period_sql = "CAST(NULL AS TIMESTAMP)"
    else:
        period_sql = f"CAST(date_trunc('{freq}', {date_expr}) AS TIMESTAMP)"
    if k.kind == "median_hours":
        df = _median_groups(con, source, period_sql, by_cols, hours, where, params, confidence)
    else:
        keys = ", ".join(_quote(c) for c in ["period", *by_cols])
        sql = (f"SELECT {period_sql} AS period{group_sel}, {aggs} FROM {source} {where} "
               f"GROUP BY {keys}")
        df = _run(con, sql, params, k).df()
    if freq is None:
        df["period"] = period_value
    df = df[df["n"] > 0].copy() if k.kind != "count" else df.copy()
    out = _finish_series(df, k, by_cols, confidence)
    return out


def _median_groups(con, table: str, period_sql: str, by_cols: list[str], value_sql: str, where: str,
                   params: list, confidence: float) -> pd.DataFrame:
    """Per group: n, median (``quantile_cont``) and the exact order-statistic bounds, all in DuckDB.

    The binomial ranks ``l(n)`` are computed in Python for the distinct group sizes only and passed as a
    list; rows are ranked within their group by a window function and the bounds picked at ranks
    ``l`` and ``n - l + 1``.
    """
    keys = ["period", *by_cols]
    kq = ", ".join(_quote(c) for c in keys)
    base = (f"SELECT {period_sql} AS period{''.join(f', {_quote(c)}' for c in by_cols)}, {value_sql} AS h "
            f"FROM {table} {where}")
    sizes = con.execute(f"SELECT DISTINCT count(h) AS n FROM ({base}) GROUP BY {kq}", params).fetchall()
    ns = np.array(sorted(int(r[0]) for r in sizes if r[0]), dtype=np.int64)
    if ns.size == 0:
        return pd.DataFrame(columns=[*keys, "n", "a", "lo", "hi"])
    ls = np.maximum(stats.binom.ppf((1 - confidence) / 2, ns, 0.5).astype(np.int64), 1)
    sql = f"""
        WITH ranked AS (
            SELECT {kq}, h, row_number() OVER (PARTITION BY {kq} ORDER BY h) AS _rn,
                   count(*) OVER (PARTITION BY {kq}) AS _n
            FROM ({base}) WHERE h IS NOT NULL),
        ranks AS (SELECT unnest(CAST(? AS BIGINT[])) AS _n, unnest(CAST(? AS BIGINT[])) AS _l)
        SELECT {', '.join(f'ranked.{_quote(c)}' for c in keys)}, any_value(ranked._n) AS n,
               quantile_cont(h, 0.5) AS a,
               min(h) FILTER (WHERE _rn = ranks._l) AS lo,
               max(h) FILTER (WHERE _rn = ranked._n - ranks._l + 1) AS hi
        FROM ranked JOIN ranks ON ranked._n = ranks._n
        GROUP BY {', '.join(f'ranked.{_quote(c)}' for c in keys)}
    """
    return con.execute(sql, [*params, ns.tolist(), ls.tolist()]).df()


def _finish_series(df: pd.DataFrame, k: KPI, by_cols: list[str], confidence: float) -> pd.DataFrame:
    n = df["n"].to_numpy(dtype=float)
    if k.kind == "nps":
        P, D = df["a"].to_numpy(dtype=float), df["b"].to_numpy(dtype=float)
        _, _, lo, hi = nps_interval(P, D, n, confidence)
        value = 100 * (P - D) / n
        lo, hi = np.minimum(100 * lo, value), np.maximum(100 * hi, value)  # as nps_from_counts
    elif k.kind in ("top_box", "share_eq1", "flag"):
        a = df["a"].to_numpy(dtype=float)
        lo, hi = wilson_interval(a, n, confidence)
        value, lo, hi = 100 * a / n, 100 * lo, 100 * hi
    elif k.kind in ("mean", "mean_hours"):
        value = df["a"].to_numpy(dtype=float)
        lo, hi = t_interval(value, df["b"].to_numpy(dtype=float), n, confidence)
        if all(np.isfinite(k.bounds)):
            lo, hi = np.where(n < 2, k.bounds[0], lo), np.where(n < 2, k.bounds[1], hi)
        lo, hi = np.clip(lo, *k.bounds), np.clip(hi, *k.bounds)
    elif k.kind == "median_hours":
        value, lo, hi = (df[c].to_numpy(dtype=float) for c in ("a", "lo", "hi"))
    elif k.kind == "count":
        value = n.copy()
        lo, hi = poisson_interval(n, confidence)
    else:  # pragma: no cover
        raise KPIError(k.name, f"kind {k.kind!r}")
    out = df[["period", *by_cols]].copy()
    out["period"] = pd.to_datetime(out["period"])
    out["value"], out["ci_low"], out["ci_high"] = value, np.asarray(lo, float), np.asarray(hi, float)
    out["n"] = df["n"].to_numpy(dtype="int64")
    out["metric"] = k.name
    return out.sort_values([*by_cols, "period"], kind="stable").reset_index(drop=True)


def _retention_series(con, k: KPI, freq, by_cols, filters, start, end, confidence, columns) -> pd.DataFrame:
    """Retention/churn per period: S, N, E, R counted per period in SQL (see :func:`retention_counts`).
    The first period is clipped to ``start`` and the last to the data end (latest signup/end date of the
    customers table); labels stay the calendar period starts."""
    params: list = []
    wanted = sel.normalize_filters(filters) if filters else {}
    for c in wanted:
        if c not in columns:
            raise KPIError(k.name, f"filter column {c!r} is not in table customers (columns: {columns})")
    try:
        filters = sel.resolve_filters(con, "customers", wanted, table="customers")
    except sel.SelectionError as exc:
        raise KPIError(k.name, str(exc)) from None
    where = _where(filters, None, None, None, columns, "customers", k.name, params)
    first = con.execute(f"SELECT min(signup_date) FROM customers {where}", params).fetchall()[0][0]
    if first is None:
        raise KPIError(k.name, "no customers match the filters")
    last = con.execute("SELECT greatest(max(signup_date), max(end_date)) FROM customers").fetchall()[0][0]
    data_end = pd.Timestamp(last).normalize()  # of the whole table: later churn is unknown
    s = _to_day(start, k.name, "start") if start is not None else pd.Timestamp(first)
    e = min(_to_day(end, k.name, "end"), data_end) if end is not None else data_end
    if s > data_end:
        raise KPIError(k.name, f"the period starts {s.date()}, after the last date in the customers table "
                               f"({data_end.date()})")
    if e < s:
        raise KPIError(k.name, f"end {e.date()} is before start {s.date()}")
    # periods: calendar months/quarters/years [p_start, p_end] clipped to the window; freq=None: the window
    if freq is None:
        periods = pd.DataFrame({"period": [s], "p_start": [s], "p_end": [e]})
    else:
        grid = pd.period_range(s, e, freq={"month": "M", "quarter": "Q", "year": "Y"}[freq])
        periods = pd.DataFrame({"period": [p.start_time for p in grid],
                                "p_start": [max(p.start_time, s) for p in grid],
                                "p_end": [min(p.end_time.normalize(), e) for p in grid]})
    values = ", ".join(
        f"(TIMESTAMP '{a:%Y-%m-%d}', DATE '{b:%Y-%m-%d}', DATE '{c:%Y-%m-%d}')"
        for a, b, c in zip(periods["period"], periods["p_start"], periods["p_end"]))
    group_sel = "".join(f", c.{_quote(c)}" for c in by_cols)
    where_c = _where(filters, None, None, None, columns, "customers", k.name, [], alias="c.")
    sql = f"""
        SELECT p.period{group_sel},
               count_if(c.signup_date < p.p_start AND (c.end_date IS NULL OR c.end_date >= p.p_start)) AS S,
               count_if(c.signup_date >= p.p_start AND c.signup_date <= p.p_end) AS N,
               count_if(c.signup_date <= p.p_end AND (c.end_date IS NULL OR c.end_date > p.p_end)) AS E,
               count_if(c.signup_date < p.p_start AND (c.end_date IS NULL OR c.end_date > p.p_end)) AS R
        FROM (VALUES {values}) AS p(period, p_start, p_end) CROSS JOIN customers c
        {where_c}
        GROUP BY ALL
    """
    df = con.execute(sql, params).df()
    df = df[df["S"] > 0].copy()
    S = df["S"].to_numpy(dtype=float)
    kept = df["R"].to_numpy(dtype=float)
    value = 100 * kept / S
    lo, hi = wilson_interval(kept, S, confidence)
    lo, hi = 100 * lo, 100 * hi
    if k.kind == "churn":
        value, lo, hi = 100 - value, 100 - hi, 100 - lo
    out = df[["period", *by_cols]].copy()
    out["period"] = pd.to_datetime(out["period"])
    out["value"], out["ci_low"], out["ci_high"] = value, lo, hi
    out["n"] = df["S"].to_numpy(dtype="int64")
    out["metric"] = k.name
    return out.sort_values([*by_cols, "period"], kind="stable").reset_index(drop=True)


DEFAULT_OVERVIEW = ("csat", "nps", "ces", "fcr", "first_response_hours", "resolution_hours")


def kpi_overview(con, metrics: Sequence[str] | None = None, by: str | Sequence[str] | None = "department",
                 start=None, end=None, confidence: float = 0.95, *, filters=None,
                 min_responses: int = 30) -> pd.DataFrame:
    """One row per group and metric for the whole window (``kpi_series(freq=None)``): label, value,
    interval, n, unit, ``higher_is_better``, ``small`` (n below ``min_responses``) and a formatted cell (e.g.
    ``"+23 (+18 to +28)"``) for notebook tables.

    ``metrics=None`` (default) takes :data:`DEFAULT_OVERVIEW` and leaves out the KPIs the data cannot give
    (no tickets table, no ``ces`` column, no ``by`` column: survey-only data gives CSAT and NPS); metrics named
    explicitly must all be computable. ``by`` and ``filters`` may name customer columns (segment, region).
    ``con`` may also be a Dataset."""
    con = sel.connection_of(con)
    explicit = metrics is not None
    metrics = list(DEFAULT_OVERVIEW if metrics is None else ([metrics] if isinstance(metrics, str) else metrics))
    by_cols = _as_list(by)
    frames, skipped = [], []
    for m in metrics:
        k = _kpi(m)
        if not explicit:
            cols = sel.table_columns(con, k.table)
            cust = sel.table_columns(con, "customers") or []
            usable = cols is not None and (k.column is None or k.kind in ("median_hours", "mean_hours")
                                           or k.column in cols)
            if usable and con.execute(f"SELECT count(*) FROM {_quote(k.table)}").fetchone()[0] == 0:
                usable = False
            if usable and any(c not in cols and c not in cust for c in by_cols):
                usable = False
            if not usable:
                skipped.append(m)
                continue
        s = kpi_series(con, m, freq=None, by=by, filters=filters, start=start, end=end, confidence=confidence)
        s["label"], s["unit"], s["higher_is_better"] = k.label, k.unit, k.higher_is_better
        signed = k.unit == "points"
        s["formatted"] = [f"{_fmt_with_unit(v, k.unit, signed)} ({_fmt_number(lo, k.unit, signed)} to "
                          f"{_fmt_number(hi, k.unit, signed)})" for v, lo, hi in
                          zip(s["value"], s["ci_low"], s["ci_high"])]
        frames.append(s)
    cols = [*by_cols, "metric", "label", "value", "ci_low", "ci_high", "n", "unit", "higher_is_better", "small",
            "formatted"]
    if not frames:
        raise KPIError(", ".join(metrics), f"none of these KPIs can be computed from the data (by {by_cols})")
    out = pd.concat(frames, ignore_index=True)
    out["small"] = out["n"] < min_responses
    out = out[cols]
    out.attrs["skipped"] = skipped
    return out


_LINE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
"""Okabe-Ito colours (distinguishable with colour-blindness), one per group line."""


def plot_series(series: pd.DataFrame, by=None, ax=None, max_groups: int = 8, title: str | None = None):
    """A KPI series (:func:`kpi_series`) as one line per group with its 95% band, readable date labels and the
    frequency in the legend ("quarterly"); ``by`` defaults to the series' grouping columns. More than
    ``max_groups`` groups is refused (a chart with 15 lines cannot be read: filter, or use :func:`forest_plot`
    of one period)."""
    from helpers.charts import frequency_label, new_axis  # noqa: PLC0415
    from helpers.formatting import chart_text  # noqa: PLC0415

    by_cols = _as_list(by) or [c for c in series.columns if c not in _SERIES_COLUMNS + ["metric"]]
    metric = str(series["metric"].iloc[0]) if "metric" in series.columns and len(series) else ""
    if series.empty:
        raise KPIError(metric or "series", "plot_series: the series has no rows")
    groups = list(series.groupby(by_cols, sort=True)) if by_cols else [((), series)]
    if len(groups) > max_groups:
        raise KPIError(metric, f"plot_series: {len(groups)} groups of {by_cols} are too many lines for one chart "
                               f"(at most {max_groups}); filter the series or compare one period with forest_plot")
    for _, g in groups:
        if g["period"].duplicated().any():
            raise KPIError(metric, f"plot_series: several rows per period within a group; by must name every "
                                   f"grouping column (got {by_cols})")
    ax = new_axis(ax, figsize=(9, 4))
    freq = frequency_label(series["period"])
    colours = list(_LINE_COLOURS)
    for i, (key, g) in enumerate(groups):
        g = g.sort_values("period")
        name = ", ".join(map(str, key if isinstance(key, tuple) else (key,))) or (KPIS[metric].label if metric in KPIS else metric)
        colour = colours[i % len(colours)]
        ax.plot(g["period"], g["value"], marker="o", markersize=3, color=colour, label=chart_text(name))
        ax.fill_between(g["period"], g["ci_low"].astype(float), g["ci_high"].astype(float), color=colour, alpha=0.12,
                        linewidth=0)
    from helpers.explore import date_axis  # noqa: PLC0415

    date_axis(ax)
    k = KPIS.get(metric)
    ax.set_ylabel((k.label + (f" ({k.unit})" if k.unit not in ("", "count", "score", "points") else "")) if k else "")
    ax.set_title(chart_text(title) if title else f"{k.label if k else metric}, {freq} with 95% CI"
                 + (f", by {', '.join(by_cols)}" if by_cols else ""))
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
