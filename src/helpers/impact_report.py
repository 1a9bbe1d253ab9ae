"""What satisfaction is worth, ready for the pages: objectives priced, the chain for the top drivers, and
revenue at risk per department and segment. Each function returns a small result with a tidy ``table``,
``reader_table()`` (HTML for stakeholders, via :func:`helpers.formatting.reader_table`), ``sentences`` (one
per row, plain text) and ``markdown()`` (the sentences as a Markdown list, free text escaped).

The numbers come from :mod:`helpers.impact` (joint customer bootstrap of every link; see its docstring for
the model and what is not corrected). Every sentence says that it is an association under stated
assumptions, not the result of a controlled experiment.

Pricing an objective (:func:`objective_worth`)
----------------------------------------------
An objective on a satisfaction KPI (``csat``: % of answers 4-5; ``nps``: % promoters 9-10 minus % detractors
0-6) names a target for the department's answers. The kit turns "meeting the target" into a change of the
rating scale, then prices that change with the chain:

1. *rating shift*: ratings are read as the customer's latent rating rounded to the scale (as the demo draws
   them; the usual reading of integer ratings), with the latent value spread uniformly over each rating's
   rounding cell. Shifting every latent rating by d moves a rating r to r + 1 with probability d (0 <= d <= 1;
   likewise for larger or negative d), so the KPI after the shift is exact under this reading: e.g. CSAT
   top-2-box rises by d x (share of 3s) for d <= 1. The d that meets the target is found by bisection on the
   department's answers of the last ``window_months`` before the as-of date (the current level is the KPI of
   those answers, the usual point estimate);
2. *mean change*: the mean rating of those answers rises by E[clip(round(L + d))] - E[rating] (less than d
   where ratings sit at the top of the scale);
3. *who it reaches*: each customer's share of answers about the department (customers who never answered:
   the department's share of all answers) is the ``exposure`` of :func:`helpers.impact.what_if_many`, so a
   customer's true mean rating rises by mean change x share;
4. the chain (links 2-4 on the KPI's own rating, csat or nps) gives the extra customers kept after the
   horizon and the discounted revenue over it, with the joint bootstrap interval.

Large data: the engine path
---------------------------
:func:`company_worth_engine` and :func:`objective_worth_engine` take an engine (:mod:`helpers.engine`) instead of
frames: the objectives' levels and rating distributions by GROUP BY over every answer (exact); the chain's
links and predictions on a seeded sample of customers (:mod:`helpers.engine.worth_sample`, 100,000 by default;
its size and the population in the notes), scaled to the population's customers and revenue per department x
segment cell (aggregates) by ratio estimators, with the sampling error carried into the intervals by rescaled
bootstrap weights (:func:`helpers.impact._chain`). With a sample that holds every customer the result is the row
path's, table for table (``tests/test_impact_engine.py``); on a sample the intervals hold a synthetic company's
known effect. The drivers page's worth on 1,000,000 customers (build/bench-engine-1000000, 2026-11-30): from
frames 277 s, process peak 5.0 GiB; from the engine 86 s, 0.58 GiB including loading the data
(``bench/bench_impact.py --worth-dataset``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import impact as I
from helpers.errors import KitError
from helpers.formatting import (column_label, fmt_currency, fmt_interval, fmt_number, interval_decimals,
                                md_escape, reader_table, shorten)

ASSOCIATION = "an association under stated assumptions, not the result of a controlled experiment"

# rating scale and the KPI on it: (low, high), and the KPI of latent ratings L as a function of P(L >= c)
SCALES = {"csat": (1, 5), "nps": (0, 10)}
PRICEABLE = tuple(SCALES)


class ImpactReportError(KitError):
    """A page asked for something the data cannot price (says what and why)."""


# ----------------------------------------------------------------------------------------------------
# the rating-scale reading of a KPI target
# ----------------------------------------------------------------------------------------------------

def _share_at_least(values: np.ndarray, counts: np.ndarray, cut: float, d: float) -> float:
    """P(L + d >= cut) with L uniform on [r - 0.5, r + 0.5] for each rating r (weights ``counts``)."""
    p = np.clip(values + 0.5 + d - cut, 0.0, 1.0)
    return float(p @ counts / counts.sum())


def kpi_after_shift(metric: str, values: np.ndarray, counts: np.ndarray, d: float) -> float:
    """The KPI (0-100 scale) of the answers after every latent rating moved by ``d`` points (module
    docstring, step 1): ``csat`` = 100 P(>= 3.5); ``nps`` = 100 [P(>= 8.5) - P(< 6.5)]."""
    if metric == "csat":
        return 100.0 * _share_at_least(values, counts, 3.5, d)
    if metric == "nps":
        return 100.0 * (_share_at_least(values, counts, 8.5, d) - (1 - _share_at_least(values, counts, 6.5, d)))
    raise ImpactReportError(f"metric {shorten(metric)} is not a satisfaction rating KPI ({', '.join(PRICEABLE)})")


def mean_after_shift(metric: str, values: np.ndarray, counts: np.ndarray, d: float) -> float:
    """E[clip(round(L + d))]: the mean rating after the shift (step 2)."""
    lo, hi = SCALES[metric]
    a = values - 0.5 + d                      # each cell [a, a + 1) after the shift
    k0 = np.floor(a + 0.5)                    # the integer whose rounding cell holds a
    p0 = k0 + 0.5 - a                         # share of the cell rounding to k0 (the rest to k0 + 1)
    v = p0 * np.clip(k0, lo, hi) + (1 - p0) * np.clip(k0 + 1, lo, hi)
    return float(v @ counts / counts.sum())


def rating_shift_for_target(metric: str, ratings, target: float) -> tuple[float, float, float]:
    """(current KPI, latent shift d meeting ``target``, mean rating change) for integer ``ratings``; d = 0
    when the target is met already; NaN when no uniform shift reaches it."""
    r = pd.to_numeric(pd.Series(ratings), errors="coerce").dropna()
    if r.empty:
        raise ImpactReportError(f"no {metric} answers to read the target against")
    values, counts = np.unique(np.rint(r.to_numpy("float64")), return_counts=True)
    return rating_shift_from_counts(metric, values, counts, target)


def rating_shift_from_counts(metric: str, values, counts, target: float) -> tuple[float, float, float]:
    """:func:`rating_shift_for_target` from the distinct whole ratings ``values`` and their ``counts`` (e.g.
    an engine's GROUP BY, :func:`helpers.engine.worth_sample.rating_distribution`)."""
    values, counts = np.asarray(values, dtype="float64"), np.asarray(counts, dtype="float64")
    if not len(values) or counts.sum() <= 0:
        raise ImpactReportError(f"no {metric} answers to read the target against")
    current = kpi_after_shift(metric, values, counts, 0.0)
    if target <= current:
        return current, 0.0, 0.0
    lo_s, hi_s = SCALES[metric]
    top = float(hi_s - lo_s)
    if kpi_after_shift(metric, values, counts, top) < target - 1e-9:
        return current, float("nan"), float("nan")
    a, b = 0.0, top
    for _ in range(60):  # bisection: the KPI is non-decreasing in d
        mid = (a + b) / 2
        if kpi_after_shift(metric, values, counts, mid) >= target:
            b = mid
        else:
            a = mid
    return current, b, mean_after_shift(metric, values, counts, b) - float(values @ counts / counts.sum())


# ----------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------

@dataclass
class WorthTable:
    """A reader-facing result: ``table`` (tidy), ``sentences`` (plain text, one per row), ``currency`` (ISO
    code), ``formats``/``labels`` for :meth:`reader_table`, ``notes``."""

    table: pd.DataFrame
    sentences: list[str]
    currency: str
    formats: dict
    labels: dict
    columns: list
    title: str
    notes: list[str] = field(default_factory=list)

    def reader_table(self, caption: str = "") -> str:
        return reader_table(self.table, formats=self.formats, labels=self.labels, columns=self.columns,
                            currency=self.currency, caption=caption or self.title)

    def markdown(self) -> str:
        """The sentences as a Markdown list (free text escaped)."""
        return "\n".join(f"- {md_escape(s)}" for s in self.sentences)

    def summary(self) -> str:
        return " ".join(self.sentences + self.notes)


def _money_ci(v: float, lo: float, hi: float, currency: str) -> str:
    return f"{I._money(v, currency)} ({I._money_interval(lo, hi, currency)})"


def _count(v: float, lo: float, hi: float) -> tuple[str, str]:
    """A count and its interval with the fewest decimals at which the ends differ ("6 to 7", "0.05 to
    0.06"), the estimate with as many."""
    d = interval_decimals(lo, hi, least=0, most=2)
    return fmt_number(v, d), fmt_interval(lo, hi, d)


def _count_ci(v: float, lo: float, hi: float) -> str:
    est, ci = _count(v, lo, hi)
    return f"{est} ({ci})"


MONEY_COLUMNS = {"extra_revenue": "currency", "extra_revenue_low": "currency", "extra_revenue_high": "currency"}


def _reader_columns(prefix: list[str], labels: dict, horizon: int, level: float) -> tuple[list, dict]:
    lvl = f"{level:.0%}"
    labels = {**labels, "kept_ci": f"Customers kept after {horizon} months ({lvl} CI)",
              "revenue_ci": f"Revenue over {horizon} months ({lvl} CI)"}
    return prefix + ["kept_ci", "revenue_ci"], labels


def _add_ci_text(table: pd.DataFrame, currency: str) -> pd.DataFrame:
    table = table.copy()
    table["kept_ci"] = [(_count_ci(r.extra_kept, r.extra_kept_low, r.extra_kept_high)
                         if np.isfinite(r.extra_kept) else "n/a") for r in table.itertuples()]
    table["revenue_ci"] = [(_money_ci(r.extra_revenue, r.extra_revenue_low, r.extra_revenue_high, currency)
                            if np.isfinite(r.extra_revenue) else "n/a") for r in table.itertuples()]
    return table


# ----------------------------------------------------------------------------------------------------
# (a) what meeting each satisfaction objective is worth
# ----------------------------------------------------------------------------------------------------

def department_exposure(responses: pd.DataFrame, department: str, as_of=None,
                        customers: pd.Series | None = None) -> pd.Series:
    """Each customer's share of survey answers about ``department`` (answers up to ``as_of``); customers in
    ``customers`` without any answer get the department's share of all answers."""
    r = responses
    if as_of not in (None, ""):
        r = r[pd.to_datetime(r["response_date"]) <= pd.Timestamp(as_of)]
    if "department" not in r.columns:
        raise ImpactReportError("responses have no department column, so a department's reach is unknown")
    hit = (r["department"] == department).astype("float64")
    share = hit.groupby(r["customer_id"]).mean()
    if customers is not None:
        share = share.reindex(pd.Index(customers.unique())).fillna(float(hit.mean()) if len(hit) else 0.0)
    return share


def _as_of(responses: pd.DataFrame, as_of) -> pd.Timestamp:
    return pd.Timestamp(as_of) if as_of not in (None, "") else pd.to_datetime(responses["response_date"]).max()


def _objective_rows(plans, customers: pd.DataFrame, responses: pd.DataFrame, as_of: pd.Timestamp,
                    window_months: int):
    """Per satisfaction objective of every plan: its row (current level, rating shift, note) and, when it is
    to be priced, the scenario (metric, mean rating change, exposure) it needs; (rows, [(row index,
    metric, scenario)])."""
    since = as_of - pd.DateOffset(months=int(window_months))
    rdate = pd.to_datetime(responses["response_date"])
    in_window = (rdate > since) & (rdate <= as_of)

    def distribution(dept, metric, filters):
        sel = responses[in_window & (responses["department"] == dept)]
        for k, vals in filters.items():
            sel = sel[sel[k].astype(str).isin([str(v) for v in vals])]
        r = pd.to_numeric(sel[metric], errors="coerce").dropna()
        values, counts = np.unique(np.rint(r.to_numpy("float64")), return_counts=True)
        return values, counts.astype("float64")

    return _objective_rows_from(plans, list(responses.columns), distribution,
                                lambda dept: department_exposure(responses, dept, as_of, customers["customer_id"]),
                                as_of, window_months)


def _objective_rows_from(plans, columns: list, distribution, exposure_of, as_of: pd.Timestamp,
                         window_months: int):
    """:func:`_objective_rows` from ``distribution(department, metric, filters) -> (values, counts)`` of the
    window's answers and ``exposure_of(department)`` (the rows' or the engine's)."""
    rows, todo = [], []
    for plan in plans:
        dept = plan.department
        exposure = None
        for o in plan.objectives:
            if o.metric not in PRICEABLE:
                continue
            row = {"department": dept, "objective": o.id, "title": o.title, "metric": o.metric,
                   "target": float(o.target), "current": np.nan, "latent_shift": np.nan, "rating_change": np.nan,
                   "note": "", "customers": np.nan}
            for k in ("extra_kept", "extra_kept_low", "extra_kept_high", "extra_revenue", "extra_revenue_low",
                      "extra_revenue_high"):
                row[k] = np.nan
            bad = [k for k in o.filters if k not in columns]
            if bad:
                row["note"] = f"not priced: its filter on {', '.join(bad)} cannot be traced to survey answers"
            else:
                values, counts = distribution(dept, o.metric, dict(o.filters))
                if not len(counts) or float(np.sum(counts)) == 0:
                    row["note"] = (f"not priced: no {o.metric} answers in the {window_months} months before "
                                   f"{as_of:%Y-%m-%d}")
                else:
                    current, d, change = rating_shift_from_counts(o.metric, values, counts, float(o.target))
                    row.update(current=current, latent_shift=d, rating_change=change)
                    if not np.isfinite(d):
                        row["note"] = "not priced: no uniform rise of the ratings reaches the target"
                    elif d == 0:
                        row["note"] = "target already met by the last months' answers"
                        row.update(extra_kept=0.0, extra_kept_low=0.0, extra_kept_high=0.0, extra_revenue=0.0,
                                   extra_revenue_low=0.0, extra_revenue_high=0.0)
                    else:
                        if exposure is None:
                            exposure = exposure_of(dept)
                        todo.append((len(rows), o.metric, (o.metric, change, exposure)))
            rows.append(row)
    return rows, todo


KEYS = ("extra_kept", "extra_kept_low", "extra_kept_high", "extra_revenue", "extra_revenue_low",
        "extra_revenue_high")


def _all_row(w: I.WhatIfResult) -> dict:
    """The company row of a what-if result; with cells (department x segment) summed from the resamples."""
    t = w.table.set_index(w.by)
    return {"customers": float(t.loc["all", "customers"]), **{k: float(t.loc["all", k]) for k in KEYS}}


OBJECTIVE_COLUMNS = ["department", "objective", "title", "metric", "target", "current", "latent_shift",
                     "rating_change", "note", "customers", *KEYS]


def _objective_table(rows: list, horizon: int, level: float, cur: str, title: str, notes: list) -> WorthTable:
    table = pd.DataFrame(rows, columns=OBJECTIVE_COLUMNS)
    sentences = [_objective_sentence(r, r.department, horizon, level, cur) for r in table.itertuples()]
    table["sentence"] = sentences
    table = _add_ci_text(table, cur)
    cols, labels = _reader_columns(["title", "current", "target", "rating_change"],
                                   {"title": "Objective", "current": "Now", "target": "Target",
                                    "rating_change": "Mean rating change"}, horizon, level)
    return WorthTable(table=table, sentences=sentences, currency=cur, columns=cols + ["note"], labels=labels,
                      formats={"current": "number:1", "target": "number:1", "rating_change": "number:2",
                               "note": "text"}, title=title, notes=notes)


def objective_worth(plan, customers: pd.DataFrame, responses: pd.DataFrame, *, as_of=None, horizon: int = 12,
                    window_months: int = 12, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                    currency: str | None = None, covariates: Sequence[str] = ("segment",),
                    min_events: int = 20) -> WorthTable:
    """For each objective of ``plan`` (a :class:`helpers.objectives.ObjectivePlan`, or anything with
    ``department`` and ``objectives``; or a list of them) on a satisfaction KPI (csat, nps): what meeting its
    target is worth over ``horizon`` months (module docstring). Objectives on other KPIs are not listed; an
    objective whose filters name columns the answers do not have is listed with the reason it is not
    priced. One chain per KPI for all the plans' objectives."""
    plans = list(plan) if isinstance(plan, (list, tuple)) else [plan]
    cur = I.resolve_currency(currency)
    as_of = _as_of(responses, as_of)
    rows, todo = _objective_rows(plans, customers, responses, as_of, window_months)
    return _price_objectives(plans, rows, todo, lambda metric: {"customers": customers, "responses": responses},
                             [], horizon=horizon, as_of=as_of, covariates=covariates, n_boot=n_boot, level=level,
                             seed=seed, currency=cur, min_events=min_events)


def _price_objectives(plans, rows, todo, data_for, notes: list, *, horizon, level, currency, **chain) -> WorthTable:
    """One chain per KPI for the objectives ``todo`` (:func:`_objective_rows`); ``data_for(metric)``: the
    chain's data arguments (rows, or a sample with its population)."""
    notes = list(notes)
    cur = currency
    for metric in PRICEABLE:
        mine = [(i, sc) for i, mt, sc in todo if mt == metric]
        if not mine:
            continue
        res = I.what_if_many(scenarios=[sc for _, sc in mine], outcome=metric, horizon=horizon, level=level,
                             currency=cur, **chain, **data_for(metric))
        for (i, _), w in zip(mine, res):
            rows[i].update(_all_row(w))
        notes.extend(n for n in res[0].notes if n not in notes)
    depts = ", ".join(p.department for p in plans)
    return _objective_table(rows, horizon, level, cur, f"What meeting {depts}'s satisfaction objectives is "
                            f"worth over {horizon} months", notes)


def _objective_sentence(r, dept: str, horizon: int, level: float, cur: str) -> str:
    label = column_label(r.metric)
    unit = "%" if r.metric == "csat" else " points"
    head = f"Meeting \u201c{r.title}\u201d ({label} {fmt_number(r.current, 1)}{unit} now, target " \
           f"{fmt_number(r.target, 1)}{unit})"
    if r.note and not r.note.startswith("target already met"):
        return f"{head}: {r.note}."
    if r.note:
        return f"{head}: the target is met already by the answers of the last months, so nothing more to gain."
    lvl = f"{level:.0%}"
    kept, kept_ci = _count(r.extra_kept, r.extra_kept_low, r.extra_kept_high)
    return (f"{head}: every {dept} answer {fmt_number(r.rating_change, 2)} {label} points higher on average goes "
            f"with {kept} more customers kept after {horizon} months ({lvl} CI {kept_ci}) and "
            f"{I._money(r.extra_revenue, cur)} "
            f"revenue ({I._money_interval(r.extra_revenue_low, r.extra_revenue_high, cur)}): {ASSOCIATION}.")


# ----------------------------------------------------------------------------------------------------
# (b) the chain for the top drivers
# ----------------------------------------------------------------------------------------------------

def _points(delta: float) -> str:
    a = abs(delta)
    return "half a point" if a == 0.5 else ("a point" if a == 1 else f"{a:g} points")


def _check_drivers(responses_columns, drivers, attributes=None) -> tuple[list, list]:
    attrs = list(attributes) if attributes is not None else [c for c in responses_columns
                                                             if str(c).startswith("attr_")]
    chosen = list(drivers) if drivers is not None else attrs
    unknown = [d for d in chosen if d not in attrs]
    if unknown:
        raise ImpactReportError(f"no attribute rating {shorten(unknown)} in the responses; they have "
                                f"{shorten(attrs, 200)}")
    if not chosen:
        raise ImpactReportError("the responses have no attribute ratings (attr_* columns) to raise")
    return attrs, chosen


def _driver_table(chosen: list, results: list, ranked: bool, top: int | None, delta: float, horizon: int,
                  level: float, cur: str, outcome: str, notes: list) -> WorthTable:
    rows = []
    for a, w in zip(chosen, results):
        dc, dlo, dhi = w.link("csat_change")
        rows.append({"driver": a, "label": column_label(a), "delta": delta, "csat_change": dc,
                     "csat_change_low": dlo, "csat_change_high": dhi, **_all_row(w)})
    table = pd.DataFrame(rows)
    if ranked:
        table = table.sort_values("extra_kept", ascending=False, kind="stable").reset_index(drop=True)
    if top is not None:
        table = table.head(int(top)).reset_index(drop=True)
    lvl = f"{level:.0%}"
    sentences = []
    for r in table.itertuples():
        dd = interval_decimals(r.csat_change_low, r.csat_change_high, least=2)
        way = "Raising" if delta > 0 else "Lowering"
        kept, kept_ci = _count(r.extra_kept, r.extra_kept_low, r.extra_kept_high)
        sentences.append(
            f"{way} {r.label} by {_points(delta)}: {r.csat_change:+.{dd}f} {column_label(outcome)} points ({lvl} CI "
            f"{r.csat_change_low:+.{dd}f} to {r.csat_change_high:+.{dd}f}), {kept} fewer "
            f"customers lost over {horizon} months ({kept_ci}) and "
            f"{I._money(r.extra_revenue, cur)} revenue "
            f"({I._money_interval(r.extra_revenue_low, r.extra_revenue_high, cur)}); "
            f"{ASSOCIATION}.")
    table["sentence"] = sentences
    table["csat_ci"] = [f"{r.csat_change:+.2f} ({r.csat_change_low:+.2f} to {r.csat_change_high:+.2f})"
                        for r in table.itertuples()]
    table = _add_ci_text(table, cur)
    cols, labels = _reader_columns(["label", "csat_ci"], {"label": "Driver",
                                                         "csat_ci": f"{column_label(outcome)} change ({lvl} CI)"},
                                   horizon, level)
    notes = list(notes) + [
        "The slope of each attribute is per point of its observed rating (noise in attribute ratings is not "
        "corrected, which understates it)."]
    return WorthTable(table=table, sentences=sentences, currency=cur, columns=cols, labels=labels, formats={},
                      title=f"What raising a driver by {_points(delta)} is worth over {horizon} months",
                      notes=notes)


def driver_chain(customers: pd.DataFrame, responses: pd.DataFrame, drivers: Sequence[str] | None = None, *,
                 delta: float = 0.5, top: int | None = 3, as_of=None, horizon: int = 12, n_boot: int = 200,
                 level: float = 0.95, seed: int = 0, currency: str | None = None, outcome: str = "csat",
                 covariates: Sequence[str] = ("segment",), min_events: int = 20) -> WorthTable:
    """"Raising Ease by half a point: +x CSAT points, y fewer churned customers, €z over 12 months (95% CI)"
    for each of ``drivers`` (default: every ``attr_*`` column; in the order given, or by customers kept
    when not given), the first ``top`` of them (None: all), from one joint bootstrap."""
    attrs, chosen = _check_drivers(responses.columns, drivers)
    cur = I.resolve_currency(currency)
    res = I.what_if_many(customers, responses, [(a, delta) for a in chosen], horizon=horizon, as_of=as_of,
                         covariates=covariates, outcome=outcome, n_boot=n_boot, level=level, seed=seed,
                         currency=cur, min_events=min_events, attributes=attrs)
    return _driver_table(chosen, res, drivers is None, top, delta, horizon, level, cur, outcome, res[0].notes)


# ----------------------------------------------------------------------------------------------------
# (c) revenue at risk per department and segment
# ----------------------------------------------------------------------------------------------------

NO_ANSWERS = "no answers"
CELL_SEP = "\x1f"


def main_department(responses: pd.DataFrame, as_of=None) -> pd.Series:
    """Each customer's department with the most survey answers up to ``as_of`` (ties: alphabetical)."""
    r = responses
    if as_of not in (None, ""):
        r = r[pd.to_datetime(r["response_date"]) <= pd.Timestamp(as_of)]
    n = r.groupby(["customer_id", "department"], observed=True).size().rename("n").reset_index()
    n = n.sort_values(["customer_id", "n", "department"], ascending=[True, False, True], kind="stable")
    return n.drop_duplicates("customer_id").set_index("customer_id")["department"].astype(str)


def _with_cells(customers: pd.DataFrame, responses: pd.DataFrame, as_of, segment: str) -> pd.DataFrame:
    """customers with ``_cell`` = main department x segment."""
    if segment not in customers.columns:
        raise ImpactReportError(f"customers have no column {shorten(segment)} to split revenue at risk by")
    dept = main_department(responses, as_of).reindex(customers["customer_id"]).fillna(NO_ANSWERS).to_numpy()
    cell = pd.Series(dept, index=customers.index).astype(str) + CELL_SEP + customers[segment].astype(str)
    return customers.assign(_cell=cell)


def dimension_label(value) -> str:
    """"Company" for the all-customers row, else the dimension's reader label (a module function, so a
    result pickles for the run's cache)."""
    return "Company" if value == "all" else column_label(value)


def _risk_table(cells: pd.DataFrame, boot: pd.DataFrame, reference: tuple, rule: str, horizon: int, level: float,
                cur: str, notes: list) -> WorthTable:
    """Margins per department, per segment and for the company from per-cell results (columns customers,
    revenue, extra_kept, extra_revenue; ``boot`` with extra_kept_<cell>, extra_revenue_<cell>)."""
    tab = cells[cells["_cell"] != "all"].copy()
    tab[["department", "segment"]] = tab["_cell"].str.split(CELL_SEP, n=1, expand=True)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    rows = []
    for dim in ("department", "segment", "all"):
        groups = [("all", tab)] if dim == "all" else list(tab.groupby(dim, sort=True))
        for g, part in groups:
            cl = list(part["_cell"])
            kb = boot[[f"extra_kept_{c}" for c in cl]].sum(axis=1)
            rb = boot[[f"extra_revenue_{c}" for c in cl]].sum(axis=1)
            rows.append({"dimension": dim, "group": g, "customers": int(part["customers"].sum()),
                         "revenue": float(part["revenue"].sum()),
                         "customers_at_risk": float(part["extra_kept"].sum()),
                         "customers_at_risk_low": float(np.quantile(kb, q[0])),
                         "customers_at_risk_high": float(np.quantile(kb, q[1])),
                         "revenue_at_risk": float(part["extra_revenue"].sum()),
                         "revenue_at_risk_low": float(np.quantile(rb, q[0])),
                         "revenue_at_risk_high": float(np.quantile(rb, q[1]))})
    table = pd.DataFrame(rows)
    table["share_of_revenue"] = table["revenue_at_risk"] / table["revenue"]
    ref, rlo, rhi = reference
    lvl = f"{level:.0%}"
    sentences = []
    for r in table.itertuples():
        where = "the company" if r.dimension == "all" else f"{column_label(r.dimension).lower()} {r.group}"
        sentences.append(
            f"In {where}, {fmt_currency(r.revenue_at_risk, cur)} of revenue over the next {horizon} months "
            f"({lvl} CI {fmt_currency(r.revenue_at_risk_low, cur)} to {fmt_currency(r.revenue_at_risk_high, cur)}; "
            f"{fmt_number(100 * r.share_of_revenue, 1)}% of the expected revenue) goes with customers below "
            f"{rule} satisfaction; {ASSOCIATION}.")
    table["sentence"] = sentences
    table["risk_ci"] = [f"{fmt_currency(r.revenue_at_risk, cur)} ({fmt_currency(r.revenue_at_risk_low, cur)} to "
                        f"{fmt_currency(r.revenue_at_risk_high, cur)})" for r in table.itertuples()]
    table["customers_ci"] = [_count_ci(r.customers_at_risk, r.customers_at_risk_low, r.customers_at_risk_high)
                             for r in table.itertuples()]
    dr = interval_decimals(rlo, rhi, least=2)
    notes = [f"Reference: {rule} satisfaction, {ref:.{dr}f} CSAT points ({lvl} CI {fmt_interval(rlo, rhi, dr)}).",
             *notes]
    return WorthTable(table=table, sentences=sentences, currency=cur,
                      columns=["dimension", "group", "customers", "revenue", "risk_ci", "share_of_revenue",
                               "customers_ci"],
                      labels={"dimension": "By", "group": "Group", "customers": "Customers today",
                              "revenue": f"Expected revenue, {horizon} months",
                              "risk_ci": f"Revenue at risk ({lvl} CI)", "share_of_revenue": "Share at risk",
                              "customers_ci": f"Customers at risk ({lvl} CI)"},
                      formats={"revenue": "currency", "share_of_revenue": "percent:1", "customers": "int",
                               "dimension": dimension_label},
                      title=f"Revenue at risk from dissatisfaction over {horizon} months", notes=notes)


def _rule(reference) -> str:
    return "the median" if reference == "median" else f"a reference of {reference}"


def revenue_at_risk_table(customers: pd.DataFrame, responses: pd.DataFrame, *, as_of=None, horizon: int = 12,
                          reference: float | str = "median", n_boot: int = 200, level: float = 0.95,
                          seed: int = 0, currency: str | None = None, segment: str = "segment",
                          min_events: int = 20, ratings: pd.DataFrame | None = None) -> WorthTable:
    """Revenue over ``horizon`` months at risk from dissatisfaction (:func:`helpers.impact.revenue_at_risk`)
    per department (each customer's main department by answers; ``no answers`` for the rest) and per
    segment, plus the company, from one joint bootstrap over department x segment cells (the margins are
    summed resample by resample, so their intervals are consistent)."""
    cur = I.resolve_currency(currency)
    cust = _with_cells(customers, responses, as_of, segment)
    res = I.revenue_at_risk(cust, responses, reference=reference, horizon=horizon, as_of=as_of, by="_cell",
                            covariates=(segment,), n_boot=n_boot, level=level, seed=seed, currency=cur,
                            min_events=min_events, ratings=ratings)
    cells = res.table.rename(columns={"customers_at_risk": "extra_kept", "revenue_at_risk": "extra_revenue"})
    return _risk_table(cells, res.boot, res.reference, _rule(reference), horizon, level, cur, res.notes)


# ----------------------------------------------------------------------------------------------------
# everything at once: two chains for the whole company
# ----------------------------------------------------------------------------------------------------

@dataclass
class CompanyWorth:
    """The three reader outputs for the whole company: ``objectives`` (every department's satisfaction
    objectives priced), ``drivers`` (the chain for the top drivers), ``risk`` (revenue at risk per department
    and segment)."""

    objectives: WorthTable
    drivers: WorthTable
    risk: WorthTable
    sample: object = None  # the engine path's helpers.engine.worth_sample.WorthSample (None: every row)


def company_worth(plans, customers: pd.DataFrame, responses: pd.DataFrame, *, drivers: Sequence[str] | None = None,
                  delta: float = 0.5, top: int | None = 3, reference: float | str = "median", as_of=None,
                  horizon: int = 12, window_months: int = 12, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                  currency: str | None = None, segment: str = "segment", min_events: int = 20,
                  ratings: dict | None = None, crossproducts: pd.DataFrame | None = None,
                  attributes: Sequence[str] | None = None) -> CompanyWorth:
    """:func:`objective_worth` for every plan, :func:`driver_chain` and :func:`revenue_at_risk_table` from two
    chains: one on CSAT (the CSAT objectives, the drivers and revenue at risk share every resample's fits)
    and one on NPS (the NPS objectives). Large data: ``ratings`` = {"csat": ..., "nps": ...} from
    :func:`helpers.churn_link.rating_summary_sql` and ``crossproducts`` from
    :func:`helpers.impact.driver_crossproducts_sql` (with ``attributes`` in its order), cut at ``as_of``."""
    plans = list(plans) if isinstance(plans, (list, tuple)) else [plans]
    cur = I.resolve_currency(currency)
    as_of = _as_of(responses, as_of)
    attrs, chosen = _check_drivers(responses.columns, drivers, attributes)
    cust = _with_cells(customers, responses, as_of, segment)
    rows, todo = _objective_rows(plans, customers, responses, as_of, window_months)
    return _company_chains(plans, cust, responses, rows, todo, attrs, chosen, drivers is None, ratings or {},
                           crossproducts, {}, [], delta=delta, top=top, reference=reference, as_of=as_of,
                           horizon=horizon, n_boot=n_boot, level=level, seed=seed, cur=cur, segment=segment,
                           min_events=min_events)


def _company_chains(plans, cust, responses, rows, todo, attrs, chosen, ranked, ratings, crossproducts, sampled,
                    extra_notes, *, delta, top, reference, as_of, horizon, n_boot, level, seed, cur, segment,
                    min_events) -> CompanyWorth:
    """The two chains of :func:`company_worth` (rows, or a sample: ``sampled`` = the population arguments of
    :func:`helpers.impact.what_if_many`)."""
    common = dict(horizon=horizon, as_of=as_of, covariates=(segment,), by="_cell", n_boot=n_boot, level=level,
                  seed=seed, currency=cur, min_events=min_events, **sampled)
    mine = [(i, sc) for i, mt, sc in todo if mt == "csat"]
    scen = [sc for _, sc in mine] + [(a, delta) for a in chosen] + [(None, reference)]
    res = I.what_if_many(cust, responses, scen, outcome="csat", attributes=attrs, ratings=ratings.get("csat"),
                         crossproducts=crossproducts, **common)
    notes = list(extra_notes) + list(res[0].notes)
    for (i, _), w in zip(mine, res):
        rows[i].update(_all_row(w))
    drv = _driver_table(chosen, res[len(mine):len(mine) + len(chosen)], ranked, top, delta, horizon,
                        level, cur, "csat", notes)
    rr = res[-1]
    risk = _risk_table(rr.table, rr.boot, rr.link("reference"), _rule(reference), horizon, level, cur, notes)
    nps = [(i, sc) for i, mt, sc in todo if mt == "nps"]
    if nps:
        res_n = I.what_if_many(cust, responses, [sc for _, sc in nps], outcome="nps", attributes=[],
                               ratings=ratings.get("nps"), crossproducts=pd.DataFrame() if ratings.get("nps")
                               is not None else None, **common)
        for (i, _), w in zip(nps, res_n):
            rows[i].update(_all_row(w))
        notes.extend(n for n in res_n[0].notes if n not in notes)
    obj = _objective_table(rows, horizon, level, cur, f"What meeting each department's satisfaction objectives "
                           f"is worth over {horizon} months", notes)
    return CompanyWorth(objectives=obj, drivers=drv, risk=risk)


# ----------------------------------------------------------------------------------------------------
# the engine path: the chain on a seeded sample of customers, customers and revenue from aggregates
# ----------------------------------------------------------------------------------------------------

def population_by(sample, by: str) -> pd.DataFrame:
    """The sample's population totals (customers active at the as-of day, their monthly revenue) per group of
    ``by``: ``_cell`` (main department x segment) or the segment."""
    if by == "_cell":
        return sample.population
    pop = sample.population
    segment = pd.Index(pop.index.astype(str)).str.split(CELL_SEP, n=1).str[1]
    return pop.groupby(segment.to_numpy(), sort=True)[["customers", "revenue"]].sum()


def sample_note(sample) -> str:
    """The sentence the pages show: "The satisfaction-value chain was fitted on a seeded sample of 100,000 of
    1,000,000 customers (...)" (or on all of them)."""
    return f"The satisfaction-value chain was {sample.sentence()}."


def link_sample_note(sample) -> str:
    """The churn link's sentence: "The satisfaction-churn link was fitted on a seeded sample of 100,000 of
    1,000,000 customers (seed 7)." (its intervals come from resampling that sample)."""
    if sample.covers_all:
        return f"The satisfaction-churn link was fitted on all {sample.population_size:,} customers."
    return (f"The satisfaction-churn link was fitted on a seeded sample of {sample.size:,} of "
            f"{sample.population_size:,} customers (seed {sample.seed}).")


def _sample_notes(sample) -> list[str]:
    """The notes a sampled result adds (none when the sample is every customer: the row path's result)."""
    return [] if sample.covers_all else [sample_note(sample)]


def _engine_objective_rows(plans, engine, sample, as_of: pd.Timestamp, window_months: int):
    from helpers.engine.worth_sample import rating_distribution  # noqa: PLC0415

    columns = engine.columns("responses")
    if "department" not in columns:
        raise ImpactReportError("responses have no department column, so a department's reach is unknown")
    since = as_of - pd.DateOffset(months=int(window_months))
    return _objective_rows_from(plans, columns,
                                lambda dept, metric, filters: rating_distribution(engine, metric, dept, filters,
                                                                                  since, as_of),
                                sample.exposure, as_of, window_months)


def _open_sample(engine, sample, as_of, size, seed, segment, covariates=(), attributes=None):
    from helpers.engine.worth_sample import responses_as_of, worth_sample  # noqa: PLC0415

    as_of = pd.Timestamp(as_of) if as_of not in (None, "") else responses_as_of(engine)
    if sample is None:
        sample = worth_sample(engine, size, seed, as_of, segment=segment, attributes=attributes,
                              extra_columns=[c for c in covariates if c != segment])
    return sample, as_of


def objective_worth_engine(plan, engine, *, as_of=None, horizon: int = 12, window_months: int = 12,
                           n_boot: int = 200, level: float = 0.95, seed: int = 0, currency: str | None = None,
                           covariates: Sequence[str] = ("segment",), min_events: int = 20,
                           sample_size: int | None = None, sample_seed: int = 0, sample=None) -> WorthTable:
    """:func:`objective_worth` from an engine (:class:`helpers.engine.Engine`): the current levels and rating
    distributions of the objectives by GROUP BY over all answers (exact), the chain on a seeded sample of
    ``sample_size`` customers (:mod:`helpers.engine.worth_sample`; default 100,000) scaled to the population's
    customers and revenue per segment, the sampling error in the intervals. Equal to :func:`objective_worth`
    when the sample holds every customer. ``sample``: a :class:`helpers.engine.worth_sample.WorthSample`
    already drawn (e.g. shared with :func:`company_worth_engine`)."""
    from helpers.engine.worth_sample import DEFAULT_SIZE  # noqa: PLC0415

    plans = list(plan) if isinstance(plan, (list, tuple)) else [plan]
    cur = I.resolve_currency(currency)
    segment = covariates[0] if covariates else "segment"
    sample, as_of = _open_sample(engine, sample, as_of, sample_size or DEFAULT_SIZE, sample_seed, segment,
                                 covariates)
    rows, todo = _engine_objective_rows(plans, engine, sample, as_of, window_months)
    population = population_by(sample, "segment")

    def data_for(metric):
        if metric not in sample.ratings:
            raise ImpactReportError(f"responses have no {metric} column to price the objectives on")
        return {"customers": sample.customers, "responses": None, "ratings": sample.ratings[metric],
                "crossproducts": pd.DataFrame(), "attributes": [], "population": population,
                "sample_fraction": sample.fraction}

    return _price_objectives(plans, rows, todo, data_for, _sample_notes(sample), horizon=horizon, as_of=as_of,
                             covariates=covariates, n_boot=n_boot, level=level, seed=seed, currency=cur,
                             min_events=min_events)


def company_worth_engine(plans, engine, *, drivers: Sequence[str] | None = None, delta: float = 0.5,
                         top: int | None = 3, reference: float | str = "median", as_of=None, horizon: int = 12,
                         window_months: int = 12, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                         currency: str | None = None, segment: str = "segment", min_events: int = 20,
                         attributes: Sequence[str] | None = None, sample_size: int | None = None,
                         sample_seed: int = 0, sample=None) -> CompanyWorth:
    """:func:`company_worth` from an engine: objectives' levels by GROUP BY (exact), the two chains on a seeded
    sample of ``sample_size`` customers (default 100,000; :mod:`helpers.engine.worth_sample`) with the
    customers and revenue of each department x segment cell from aggregates over all customers (ratio
    estimators; intervals with the sampling error). Equal to :func:`company_worth` when the sample holds every
    customer. The result's ``sample`` is the sample (its size and population for the page, and the rows the
    churn link is fitted on)."""
    from helpers.engine.worth_sample import DEFAULT_SIZE  # noqa: PLC0415

    plans = list(plans) if isinstance(plans, (list, tuple)) else [plans]
    cur = I.resolve_currency(currency)
    columns = engine.columns("responses")
    attrs, chosen = _check_drivers(columns, drivers, attributes)
    sample, as_of = _open_sample(engine, sample, as_of, sample_size or DEFAULT_SIZE, sample_seed, segment,
                                 attributes=attrs)
    if list(sample.attributes) != list(attrs):
        raise ImpactReportError(f"the sample's attributes {shorten(sample.attributes)} are not {shorten(attrs)}")
    rows, todo = _engine_objective_rows(plans, engine, sample, as_of, window_months) if plans else ([], [])
    sampled = {"population": population_by(sample, "_cell"), "sample_fraction": sample.fraction}
    out = _company_chains(plans, sample.customers, None, rows, todo, attrs, chosen, drivers is None, sample.ratings,
                          sample.crossproducts, sampled, _sample_notes(sample), delta=delta, top=top,
                          reference=reference, as_of=as_of, horizon=horizon, n_boot=n_boot, level=level, seed=seed,
                          cur=cur, segment=segment, min_events=min_events)
    out.sample = sample
    return out


def churn_link_inputs(sample) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(survival frame, CSAT rating summary) of the sample's customers for
    :func:`helpers.churn_link.fit_churn_link` (the corrected link on the same sample as the chain)."""
    from helpers.retention import customer_durations  # noqa: PLC0415

    if "csat" not in sample.ratings:
        raise ImpactReportError("responses have no csat column for the satisfaction-churn link")
    return customer_durations(sample.customers, as_of=sample.as_of), sample.ratings["csat"]
