"""Funnel plots: teams and agents compared fairly with their department (no league table of noise).

Each unit (a team, an agent) is plotted as its KPI value against its number of observations ``n``, with
control limits around the department's value ``theta0`` that narrow as ``n`` grows (Spiegelhalter 2005,
"Funnel plots for comparing institutional performance", *Statistics in Medicine* 24:1185-1202). A unit is
named only when it lies outside the limits: inside them, its difference from the department is what chance
alone produces at its ``n``. Limits at 95% (about 2 standard errors, "look at it") and 99.8% (about 3,
"strong evidence"); with every unit truly equal, 5% and 0.2% of them fall outside by chance.

Limits by kind of KPI (``helpers.kpis.KPIS[metric].kind``):

* proportions (first-contact resolution ``share_eq1``, reopen rate ``flag``, CSAT ``top_box``): exact
  binomial limits with Spiegelhalter's interpolation (2005, appendix A.1.1): for the tail probability
  ``p``, ``r_p`` is the smallest ``r`` with ``P(R <= r) >= p`` (``R ~ Binomial(n, theta0)``),
  ``alpha = (P(R <= r_p) - p) / (P(R = r_p))`` and the limit is ``(r_p - alpha) / n``;
* means (CES ``mean``, mean hours ``mean_hours``, NPS ``nps`` as the mean of -100/0/+100 scores):
  ``theta0 +/- z_p * sd / sqrt(n)`` with the department's standard deviation (Spiegelhalter 2005, A.1.3);
* medians (``median_hours``): the sample median of ``n`` draws from the department's distribution ``F``
  is its order statistic ``k = (n + 1) / 2``, and ``F(X_(k)) ~ Beta(k, n + 1 - k)`` exactly, whatever
  ``F`` (David & Nagaraja, *Order Statistics*, 3rd ed., 2.1); the limits are the department's empirical
  quantiles at the Beta distribution's ``p`` and ``1 - p`` quantiles (for even ``n`` the same Beta with
  ``k = (n + 1) / 2``, an approximation for the mean of the two middle values).

**Overdispersion** (Spiegelhalter 2005, section 5; Spiegelhalter et al. 2012, *JRSS A* 175:1): with large
``n`` the limits are so narrow that genuine but ordinary differences between units (agents of a slow team, say)
put most units outside them, and the plot names everyone. With at least :data:`MIN_UNITS_FOR_OVERDISPERSION`
units, each unit's z-score ``z_i = (y_i - theta0) / s(n_i)`` is computed with ``s(n)`` the null standard error at
its ``n`` (the 95% limits' half-width / 1.96), the z-scores are Winsorised at their 10th and 90th percentiles,
``phi = mean(z^2)``; when ``I * phi`` exceeds the 95% point of chi-square with ``I - 1`` degrees of freedom,
the additive random-effects variance ``tau^2 = (I phi - (I - 1)) / (sum w - sum w^2 / sum w)``, ``w = 1 / s^2``
(DerSimonian-Laird on the Winsorised scores) widens the limits to ``theta0 +/- z * sqrt(s(n)^2 + tau^2)``.
Units are then named only when they are unusual even given the ordinary spread between units.

Counts (ticket volume) and customer KPIs (retention) have no per-unit rate to compare and are skipped;
survey answers carry no team or agent in the data contract, so survey KPIs (NPS, CSAT, CES) are compared by
team only when the responses have a ``team`` column.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import KitError

__all__ = ["LEVELS", "MIN_UNITS_FOR_OVERDISPERSION", "FunnelResult", "binomial_limits", "funnel",
           "funnel_from_engine", "funnel_values", "mean_limits", "median_limit_probs", "median_limits",
           "overdispersion", "check_funnel_range"]

MIN_UNITS_FOR_OVERDISPERSION = 10
"""Fewer units than this: no between-unit variance is estimated (it cannot be, reliably)."""

LEVELS = (0.95, 0.998)
"""The two control levels of the funnel (two-sided): about 2 and 3 standard errors."""

_PROPORTION_KINDS = {"share_eq1", "flag", "top_box"}
_MEAN_KINDS = {"mean", "mean_hours", "nps"}
_MEDIAN_KINDS = {"median_hours"}
SUPPORTED_KINDS = _PROPORTION_KINDS | _MEAN_KINDS | _MEDIAN_KINDS


def binomial_limits(theta0: float, n, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial control limits (as proportions 0-1) for ``n`` trials around ``theta0``, interpolated
    between the attainable values as in Spiegelhalter (2005, A.1.1)."""
    n = np.asarray(n, dtype=float)
    tail = (1 - level) / 2

    def limit(p):
        r = stats.binom.ppf(p, n, theta0)
        below = stats.binom.cdf(r, n, theta0)
        at = stats.binom.pmf(r, n, theta0)
        alpha = np.where(at > 0, (below - p) / np.where(at > 0, at, 1.0), 0.0)
        return (r - alpha) / n

    return limit(tail), limit(1 - tail)


def mean_limits(theta0: float, sd: float, n, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``theta0 -/+ z * sd / sqrt(n)`` (normal limits for a mean; Spiegelhalter 2005, A.1.3)."""
    n = np.asarray(n, dtype=float)
    half = stats.norm.ppf(0.5 + level / 2) * sd / np.sqrt(n)
    return theta0 - half, theta0 + half


def median_limits(reference: np.ndarray, n, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Limits of the median of ``n`` draws from the empirical distribution of ``reference``: its quantiles at
    the ``Beta(k, n + 1 - k)`` quantiles, ``k = (n + 1) / 2`` (distribution-free; see the module docstring)."""
    ref = np.sort(np.asarray(reference, dtype=float))
    ref = ref[np.isfinite(ref)]
    return _median_limits_at(lambda probs: np.quantile(ref, probs), n, level)


def median_limit_probs(n, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities at which :func:`median_limits` reads the department's quantiles:
    the ``Beta(k, n + 1 - k)`` quantiles at ``(1 - level) / 2`` and ``(1 + level) / 2``, ``k = (n + 1) / 2``."""
    n = np.asarray(n, dtype=float)
    k = (n + 1) / 2
    tail = (1 - level) / 2
    return stats.beta.ppf(tail, k, n + 1 - k), stats.beta.ppf(1 - tail, k, n + 1 - k)


def _median_limits_at(quantile, n, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo_q, hi_q = median_limit_probs(n, level)
    return quantile(lo_q), quantile(hi_q)


@dataclass
class FunnelResult:
    """One KPI's funnel: ``table`` has one row per unit (``unit, n, value, low_95, high_95, low_998,
    high_998, outside``) where ``outside`` is "" (inside the 95% limits), "95%" or "99.8%"; ``direction`` is
    "better"/"worse"/"" from the KPI's good direction. Values are on the KPI's reporting scale (percent for
    proportions, hours, points)."""

    metric: str
    label: str
    unit: str
    by: str
    centre: float
    n_total: int
    table: pd.DataFrame
    curve: pd.DataFrame
    method: str
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)
    phi: float = float("nan")
    """Winsorised overdispersion estimate (1 = units differ as much as chance alone makes them)."""
    tau2: float = 0.0
    """Between-unit variance added to the limits (0: none; see the module docstring)."""

    @property
    def flagged(self) -> pd.DataFrame:
        """The units outside the 95% limits (the only ones a reader should be told about)."""
        return self.table[self.table["outside"] != ""]


_RATING_BOUNDS = {"nps": (0, 10), "top_box": (1, 5), "mean": (1, 7), "share_eq1": (1, None)}
"""The possible values of the rated columns a funnel reads (whole numbers): NPS 0-10, CSAT 1-5, CES 1-7,
contacts to resolve 1 or more (:func:`helpers.engine.aggregates.check_kpi_range`'s rules)."""


def check_funnel_range(frame: pd.DataFrame, metric: str) -> None:
    """Impossible values of ``metric``'s rated column in ``frame`` (a rating off its scale or not whole)
    raise :class:`helpers.kpis.KPIError` with the message of the KPI's row path (``"1 NPS scores outside the
    scale 0-10 (integers) (e.g. 11)"``, as :func:`helpers.kpis.compare_kpi`); the engine path counts the same
    values by :func:`helpers.engine.aggregates.check_kpi_range` (``style="rows"``). Negative durations raise
    in :func:`helpers.kpis.ticket_hours`."""
    from helpers.engine.aggregates import _range_rule  # noqa: PLC0415 - the scale texts of both paths
    from helpers.kpis import KPIS, _clean  # noqa: PLC0415

    k = KPIS[metric]
    if k.kind not in _RATING_BOUNDS or k.column not in frame.columns:
        return
    values = pd.to_numeric(frame[k.column], errors="coerce").astype(float)
    values = values[values.notna()]
    if len(values):
        lo, hi = _RATING_BOUNDS[k.kind]
        _, _, what, scale = _range_rule(k)
        _clean(values, metric, what, lo, hi, integer=True, scale=scale)


def funnel_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The per-row values a KPI averages (on its reporting scale), NaN where the row does not count:
    proportions as 0/100, NPS as -100/0/+100, hours from the ticket timestamps. Impossible values (NPS 11,
    contacts 0, negative durations) raise :class:`helpers.kpis.KPIError` (:func:`check_funnel_range`)."""
    from helpers.kpis import KPIS, ticket_hours  # noqa: PLC0415

    k = KPIS[metric]
    check_funnel_range(frame, metric)
    if k.kind == "share_eq1":
        c = pd.to_numeric(frame[k.column], errors="coerce").astype(float)
        return pd.Series(np.where(c.isna(), np.nan, (c == 1) * 100.0), index=frame.index)
    if k.kind == "flag":
        f = frame[k.column].astype("float")
        return f * 100.0
    if k.kind == "top_box":
        s = pd.to_numeric(frame[k.column], errors="coerce").astype(float)
        return pd.Series(np.where(s.isna(), np.nan, (s >= 4) * 100.0), index=frame.index)
    if k.kind == "nps":
        s = pd.to_numeric(frame[k.column], errors="coerce").astype(float)
        return pd.Series(np.select([s >= 9, s <= 6], [100.0, -100.0], 0.0), index=frame.index).where(s.notna())
    if k.kind == "mean":
        return pd.to_numeric(frame[k.column], errors="coerce").astype(float)
    if k.kind in ("median_hours", "mean_hours"):
        return pd.Series(ticket_hours(frame, k.column), index=frame.index)
    raise KitError(f"KPI {metric!r} ({k.kind}) has no per-unit funnel; supported: {sorted(SUPPORTED_KINDS)}")


def overdispersion(values, n, centre: float, null_se) -> tuple[float, float, bool]:
    """``(phi, tau2, significant)`` from the units' values and sizes: Winsorised (10%/90%) z-scores against
    ``centre`` with ``null_se(n)`` (Spiegelhalter 2005, section 5.3); ``tau2`` is 0 unless ``I * phi`` is above
    the 95% point of chi-square(I - 1)."""
    y = np.asarray(values, dtype=float)
    s = np.asarray(null_se(np.asarray(n, dtype=float)), dtype=float)
    ok = np.isfinite(y) & np.isfinite(s) & (s > 0)
    y, s = y[ok], s[ok]
    units = y.size
    if units < 2:
        return float("nan"), 0.0, False
    z = (y - centre) / s
    lo, hi = np.percentile(z, [10, 90])
    z = np.clip(z, lo, hi)
    phi = float(np.mean(z ** 2))
    significant = bool(units * phi > stats.chi2.ppf(0.95, units - 1))
    if not significant:
        return phi, 0.0, False
    w = 1.0 / s ** 2
    tau2 = max(0.0, (units * phi - (units - 1)) / (w.sum() - (w ** 2).sum() / w.sum()))
    return phi, float(tau2), tau2 > 0


def funnel(frame: pd.DataFrame, metric: str, by: str, *, min_n: int = 5, centre: float | None = None,
           adjust_overdispersion: bool | None = None) -> FunnelResult:
    """The funnel of ``metric`` for the units in column ``by`` of ``frame`` (one department's rows).

    ``centre`` defaults to the department's value over all rows (pooled proportion, mean or median). Units
    with fewer than ``min_n`` observations are left out (a note says how many). ``adjust_overdispersion``:
    None = when there are at least :data:`MIN_UNITS_FOR_OVERDISPERSION` units and the spread between them is
    beyond chance (module docstring); True/False forces it on/off. Raises :class:`KitError`
    naming the KPI when it cannot be compared by unit or ``by`` is not a column.
    """
    from helpers.kpis import KPIS  # noqa: PLC0415

    if metric not in KPIS:
        raise KitError(f"funnel: unknown KPI {metric!r}")
    k = KPIS[metric]
    if k.kind not in SUPPORTED_KINDS:
        raise KitError(f"funnel: KPI {metric!r} ({k.label}) is a {k.kind} and has no per-unit rate to compare")
    if by not in frame.columns:
        raise KitError(f"funnel: {k.table} have no column {by!r} to compare {k.label} by")
    values = funnel_values(frame, metric)
    data = pd.DataFrame({"unit": frame[by].astype("string"), "value": values}).dropna()
    if data.empty:
        raise KitError(f"funnel: no {k.label} values with a {by} to compare")
    x = data["value"].to_numpy(dtype=float)
    if k.kind in _MEDIAN_KINDS:
        theta0 = float(np.median(x)) if centre is None else float(centre)
    else:
        theta0 = float(np.mean(x)) if centre is None else float(centre)
    sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    grouped = data.groupby("unit", observed=True)["value"]
    stat = grouped.median() if k.kind in _MEDIAN_KINDS else grouped.mean()
    table = pd.DataFrame({"unit": stat.index.astype(str), "n": grouped.size().to_numpy(), "value": stat.to_numpy()})
    ref = np.sort(x[np.isfinite(x)])
    return _funnel_from_units(k, metric, by, table, theta0, sd, lambda probs: np.quantile(ref, probs), len(data),
                              min_n, adjust_overdispersion)


def _funnel_from_units(k, metric: str, by: str, table: pd.DataFrame, theta0: float, sd: float, quantile,
                       n_total: int, min_n: int, adjust_overdispersion: bool | None) -> FunnelResult:
    """The funnel from the units' ``n`` and values, the department's centre and SD, and ``quantile(probs)``
    of the department's values (median KPIs): the part shared by the row and the engine paths."""
    notes = []
    if k.kind in _MEDIAN_KINDS:
        method = "median: exact order-statistic limits from the department's distribution"
    else:
        method = ("proportion: exact binomial limits (Spiegelhalter 2005)" if k.kind in _PROPORTION_KINDS
                  else "mean: normal limits, department standard deviation / sqrt(n)")
    small = table["n"] < min_n
    if small.any():
        notes.append(f"{int(small.sum())} {'unit' if small.sum() == 1 else 'units'} with fewer than {min_n} "
                     f"observations left out")
    table = table[~small].reset_index(drop=True)
    n_max = int(max(table["n"].max() if len(table) else 1, 2))
    grid = np.unique(np.round(np.geomspace(max(min_n, 2), n_max * 1.3, 80)).astype(int))
    if k.kind in _MEDIAN_KINDS:  # every quantile the limits below read, asked for at once (one engine query)
        quantile(np.concatenate([np.ravel(p) for n in (table["n"].to_numpy(), grid) for level in LEVELS
                                 for p in median_limit_probs(n, level)]))

    def exact_limits(n, level):
        if k.kind in _PROPORTION_KINDS:
            lo, hi = binomial_limits(theta0 / 100.0, n, level)
            return lo * 100.0, hi * 100.0
        if k.kind in _MEDIAN_KINDS:
            return _median_limits_at(quantile, n, level)
        return mean_limits(theta0, sd, n, level)

    def null_se(n):
        lo, hi = exact_limits(n, 0.95)
        return (np.asarray(hi, float) - np.asarray(lo, float)) / (2 * stats.norm.ppf(0.975))

    adjust = (len(table) >= MIN_UNITS_FOR_OVERDISPERSION) if adjust_overdispersion is None else adjust_overdispersion
    phi, tau2 = float("nan"), 0.0
    if len(table) >= 2:
        phi, tau2, _ = overdispersion(table["value"], table["n"], theta0, null_se)
    if not adjust:
        tau2 = 0.0
    elif tau2 > 0:
        plural = {"agent_id": "agents", "team": "teams"}.get(by, f"{by} values")
        notes.append(f"the {plural} differ more than chance alone makes them (overdispersion {phi:.1f}); the "
                     "limits include that ordinary spread, so only unusual ones are named")
        method += "; limits widened for overdispersion (additive random effects, Spiegelhalter 2005 s.5)"

    def limits(n, level):
        if tau2 <= 0:
            return exact_limits(n, level)
        half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(null_se(n) ** 2 + tau2)
        return theta0 - half, theta0 + half

    for level, tag in zip(LEVELS, ("95", "998")):
        lo, hi = limits(table["n"].to_numpy(), level)
        table[f"low_{tag}"], table[f"high_{tag}"] = np.asarray(lo, float), np.asarray(hi, float)
    v = table["value"]
    out998 = (v < table["low_998"]) | (v > table["high_998"])
    out95 = (v < table["low_95"]) | (v > table["high_95"])
    table["outside"] = np.where(out998, "99.8%", np.where(out95, "95%", ""))
    above = v > theta0
    good = above if k.higher_is_better else ~above
    table["direction"] = np.where(table["outside"] != "", np.where(good, "better", "worse"), "")
    curve = pd.DataFrame({"n": grid})
    for level, tag in zip(LEVELS, ("95", "998")):
        lo, hi = limits(grid, level)
        curve[f"low_{tag}"], curve[f"high_{tag}"] = np.asarray(lo, float), np.asarray(hi, float)
    return FunnelResult(metric=metric, label=k.label, unit=k.unit, by=by, centre=theta0, n_total=int(n_total),
                        table=table, curve=curve, method=method, higher_is_better=k.higher_is_better, notes=notes,
                        phi=phi, tau2=tau2)


def funnel_from_engine(engine, metric: str, by: str, *, filters=None, start=None, end=None, min_n: int = 5,
                       centre: float | None = None, adjust_overdispersion: bool | None = None) -> FunnelResult:
    """:func:`funnel` of the rows that ``filters`` select (one department: ``{"department": ...}``, matched as
    :mod:`helpers.selection` does) between the inclusive days ``start`` and ``end``, from engine aggregates
    (:mod:`helpers.engine`, DuckDB or Spark): per unit ``n`` and the numerators or sums (proportions, NPS as
    ``100 (promoters - detractors) / n``, means), the department's SD from the sum of squares, and for median
    KPIs the order statistics the limits read (:func:`helpers.engine.aggregates.quantile_aggregates`). No row
    reaches pandas; the result equals :func:`funnel` on those rows (tests/test_funnel_engine.py)."""
    from helpers.engine import aggregates as A  # noqa: PLC0415
    from helpers.engine.base import quote_ident as q  # noqa: PLC0415
    from helpers.kpis import _TIME_COLUMNS, KPIS  # noqa: PLC0415

    if metric not in KPIS:
        raise KitError(f"funnel: unknown KPI {metric!r}")
    k = KPIS[metric]
    if k.kind not in SUPPORTED_KINDS:
        raise KitError(f"funnel: KPI {metric!r} ({k.label}) is a {k.kind} and has no per-unit rate to compare")
    if not engine.has(k.table) or by not in engine.columns(k.table):
        raise KitError(f"funnel: {k.table} have no column {by!r} to compare {k.label} by")
    source, resolved = A.selected_source(engine, k.table, filters, what=f"funnel of {metric!r}")
    # impossible values (ratings off their scale, negative durations) of the selection, with or without a unit
    # (the row path checks every row of its frame): the row path's message, one count query
    A.check_kpi_range(engine, metric, resolved, start, end, source=source, style="rows")
    source = f"(SELECT * FROM {source} WHERE {q(by)} IS NOT NULL) AS {q(k.table)}"
    quantile = None
    if k.kind in _MEDIAN_KINDS:
        value_sql = A.hours_sql(k.date_column, _TIME_COLUMNS[k.column])
        common = dict(date_column=k.date_column, filters=resolved, start=start, end=end, source=source)
        units = A.quantile_aggregates(engine, k.table, value_sql, probs=(0.5,), by=[by], **common)
        if units.empty:
            raise KitError(f"funnel: no {k.label} values with a {by} to compare")
        table = pd.DataFrame({"unit": units[by].astype(str).to_numpy(), "n": units["n"].to_numpy("int64"),
                              "value": units["value"].to_numpy(float)})
        n_total = int(table["n"].sum())
        cache: dict[float, float] = {}

        def quantile(probs):
            probs = np.asarray(probs, dtype=float)
            todo = sorted({float(p) for p in np.ravel(probs)} - set(cache))
            if todo:
                got = A.quantile_aggregates(engine, k.table, value_sql, probs=todo, **common)
                cache.update(zip(got["prob"].astype(float), got["value"].astype(float)))
            return np.vectorize(lambda p: cache[float(p)], otypes=[float])(probs)

        theta0 = float(quantile([0.5])[0]) if centre is None else float(centre)
        sd = float("nan")
    else:
        agg = A.kpi_aggregates(engine, metric, None, [by], resolved, start, end, source=source)
        agg = agg[agg["n"] > 0]
        if agg.empty:
            raise KitError(f"funnel: no {k.label} values with a {by} to compare")
        n = agg["n"].to_numpy("int64")
        if k.kind in _PROPORTION_KINDS:  # rows are 0/100: sums are exact
            sums, sq = 100.0 * agg["k1"].to_numpy("int64"), 10_000.0 * agg["k1"].to_numpy("int64")
        elif k.kind == "nps":  # rows are -100/0/+100
            sums = 100.0 * (agg["k1"].to_numpy("int64") - agg["k2"].to_numpy("int64"))
            sq = 10_000.0 * (agg["k1"].to_numpy("int64") + agg["k2"].to_numpy("int64"))
        else:
            sums, sq = agg["total"].to_numpy(float), agg["total_sq"].to_numpy(float)
        table = pd.DataFrame({"unit": agg[by].astype(str).to_numpy(), "n": n, "value": sums / n})
        n_total, total, total_sq = int(n.sum()), float(sums.sum()), float(sq.sum())
        theta0 = total / n_total if centre is None else float(centre)
        var = (total_sq - total * total / n_total) / (n_total - 1) if n_total > 1 else float("nan")
        sd = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")
    table = table.sort_values("unit", kind="stable").reset_index(drop=True)
    return _funnel_from_units(k, metric, by, table, theta0, sd, quantile, n_total, min_n, adjust_overdispersion)
