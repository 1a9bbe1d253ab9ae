"""Retention: cohorts, survival curves, the satisfaction-to-churn link, and forecasts checked on a holdout.

Every function takes DataFrames or arrays and plain arguments (no files, no params) and returns a small
result object with a tidy ``.table``, ``.plot(ax=None)`` and a plain-language ``.summary()``.

Contents
--------
* :func:`survival_frame` - any customer table (start/end dates, or a tenure column such as a telecom
  export's ``tenure`` in months with a ``Churn`` Yes/No flag) -> ``duration`` (months) and ``event`` (0/1).
* :func:`customer_durations`, :func:`customer_satisfaction` - the data contract's customers/responses
  tables -> durations and each customer's mean CSAT / NPS group (the Cox covariates).
* :func:`cohort_table` - customers by signup month (or quarter) x months since signup -> share still
  active; ``.plot`` draws the heatmap.
* :func:`kaplan_meier`, :func:`log_rank` - statsmodels ``SurvfuncRight`` / ``survdiff`` with pointwise
  log-log ("cloglog") 95% intervals, medians with intervals, the log-rank test. Matches R ``survfit(...,
  conf.type="log-log")`` and ``survdiff``.
* :func:`fit_cox` - statsmodels ``PHReg`` with Efron ties (matches R ``coxph`` and lifelines), Harrell's
  concordance and a Schoenfeld-residual proportional-hazards check.
* :func:`fit_sbg`, :func:`fit_sbg_durations` - the shifted-beta-geometric model of Fader & Hardie (2007)
  by maximum likelihood (several starts, log-parameters), parametric-bootstrap intervals, survival,
  retention, expected lifetime and discounted expected residual lifetime (CLV = margin x DERL).
* :func:`sbg_holdout` - calibrate the sBG on the first periods of a cohort, predict the held-out ones,
  report MAPE and prediction-interval coverage.
* :func:`monthly_retention_rates`, :func:`forecast_retention_rate` - monthly retention rate by segment,
  ETS vs SARIMAX chosen by holdout accuracy, with prediction intervals.

Bad input raises :class:`RetentionInputError` (a :class:`helpers.errors.KitError`, hence a ``ValueError``)
naming the table, column, rows and what was expected; a model that cannot be fitted raises
:class:`RetentionModelError` (or is reported as a fallback), never a NaN result.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from helpers.errors import DataContractError, KitError
from helpers.results import displayable
from helpers.formatting import (NA, column_label, fmt_estimate, fmt_interval, fmt_number, fmt_p_value, fmt_percent,
                                interval_decimals, shorten)

# Okabe & Ito (2008) colours (told apart under every common colour-vision deficiency), with a line style each
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
SERIES_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)))
HELD_OUT_COLOUR = "#D55E00"


def value_label(value: object) -> str:
    """A data value (segment, group) as a reader reads it: ``small_business`` -> ``small business``."""
    return str(value).replace("_", " ").strip()


def fmt_months(x: float) -> str:
    """Months as the pages print them, in tables and sentences alike: one decimal, none when whole
    (``7.4``, ``23``); missing -> ``n/a``."""
    text = fmt_number(x, 1)
    return text[:-2] if text.endswith(".0") else text


def fmt_months_interval(low: float, high: float, upper_na: str = "not yet reached") -> str:
    """An interval of months as :func:`fmt_months`, with more decimals when its ends would print alike (with
    millions of customers a median's interval is narrower than a tenth of a month: ``7.81 to 7.84``)."""
    return months_and_interval(np.nan, low, high, upper_na)[1]


def months_and_interval(point: float, low: float, high: float,
                        upper_na: str = "not yet reached") -> tuple[str, str]:
    """A number of months and its interval with the same decimals: one (none when whole, :func:`fmt_months`),
    or as many as the interval's ends need to differ (:func:`helpers.formatting.interval_decimals`)."""
    d = interval_decimals(low, high, least=1) if np.isfinite(low) and np.isfinite(high) else 1
    fmt = fmt_months if d == 1 else (lambda x: fmt_number(x, d))
    lo = fmt(low) if np.isfinite(low) else "not estimable"
    hi = fmt(high) if np.isfinite(high) else upper_na
    return (fmt(point) if np.isfinite(point) else NA), f"{lo} to {hi}"


def percent_interval(point: float, low: float, high: float) -> tuple[str, str]:
    """A share and its interval with the same decimals (enough for the interval's ends to differ):
    ``("41%", "39% to 43%")``."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return fmt_percent(point, 0), "n/a"
    return fmt_estimate(point, low, high, percent=True)


def hazard_change_text(ratio: float, low: float, high: float) -> tuple[str, str]:
    """A hazard ratio as a change of the churn risk, and its interval, in the same words: ``("60% lower",
    "56% to 63% lower")``; an interval that spans no change: ``("12% lower", "31% lower to 12% higher")``."""
    def pct(v):
        return 100 * abs(v - 1)

    d = max(interval_decimals(pct(low), pct(high)), 0)
    def zero(v):
        return np.isfinite(v) and v != 1 and round(pct(v), d) == 0

    small = np.isfinite(ratio) and pct(ratio) < 1  # a per-unit effect: keep its digits, never "0% (0% to 0%)"
    while d < 3 and (zero(ratio) or (zero(low) and zero(high)) or (small and (zero(low) or zero(high)))):
        d += 1
    if not np.isfinite(ratio):
        return "n/a", "n/a"
    way = "lower" if ratio < 1 else "higher"
    point = f"{fmt_number(pct(ratio), d)}% {way}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return point, "n/a"
    if high < 1:
        a, b = sorted((pct(low), pct(high)))
        return point, f"{fmt_number(a, d)}% to {fmt_number(b, d)}% lower"
    if low > 1:
        a, b = sorted((pct(low), pct(high)))
        return point, f"{fmt_number(a, d)}% to {fmt_number(b, d)}% higher"
    return point, f"{fmt_number(pct(low), d)}% lower to {fmt_number(pct(high), d)}% higher"

AVG_DAYS_PER_MONTH = 365.25 / 12
_UNIT_TO_MONTHS = {"day": 1 / AVG_DAYS_PER_MONTH, "week": 7 / AVG_DAYS_PER_MONTH, "month": 1.0, "year": 12.0}


class RetentionInputError(DataContractError):
    """Input to the retention analysis is unusable; the message names table, column, rows, expectation
    (formatted as :class:`helpers.errors.DataContractError`, which it is)."""

    def __init__(self, problem: str, *, table: str = "customers", column: str | None = None,
                 n_rows: int | None = None, examples: Sequence[object] | None = None,
                 expected: str | None = None):
        super().__init__(table, problem, column=column, n_rows=n_rows, examples=examples, expected=expected)


class RetentionModelError(KitError):
    """A retention model could not be fitted (no convergence, degenerate data); says what was tried."""


# ----------------------------------------------------------------------------------------------------
# Durations from customer tables
# ----------------------------------------------------------------------------------------------------

def months_between(start: pd.Series, end: pd.Series) -> pd.Series:
    """Months from ``start`` to ``end``: days / 30.4375 (the average Gregorian month, 365.25 / 12), the
    tenure definition of the demo generator and of most churn exports."""
    s = pd.to_datetime(start).dt.normalize()
    e = pd.to_datetime(end).dt.normalize()
    return ((e - s).dt.days / AVG_DAYS_PER_MONTH).astype("float64")


def _as_event(values: pd.Series, event_true: Iterable[object], *, table: str, column: str) -> pd.Series:
    truthy = {str(v).strip().lower() for v in event_true}
    if values.isna().any():
        bad = values.index[values.isna()]
        raise RetentionInputError("has missing churn flags", table=table, column=column, n_rows=len(bad),
                                  examples=list(bad[:5]), expected="a churn flag on every row")
    text = values.map(lambda v: str(v).strip().lower())
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        text = values.astype("float64").map(lambda v: "1" if v == 1 else ("0" if v == 0 else str(v)))
        truthy = truthy | ({"1"} if {"true", "1", "1.0"} & truthy else set())
    ev = text.isin(truthy)
    seen = set(text.unique())
    if len(seen) > 2 or (len(seen) == 2 and not (seen & truthy)):
        raise RetentionInputError(f"has values {', '.join(shorten(v, 30) for v in sorted(seen)[:6])}{' ...' if len(seen) > 6 else ''} that do not read as a churn flag",
                                  table=table, column=column,
                                  expected=f"two values, churned = one of {sorted(truthy)}")
    return ev.astype("int64")


def survival_frame(df: pd.DataFrame, duration: str | None = None, start: str | None = None,
                   end: str | None = None, event: str | None = None,
                   event_true: Iterable[object] = ("Yes", 1, True), as_of: object = None, *,
                   duration_unit: str = "month", table: str = "customers") -> pd.DataFrame:
    """Turn a customer table into survival data: ``duration`` (months, float) and ``event`` (1 = churned).

    Two layouts are accepted:

    * a tenure column (``duration=``, in ``duration_unit``: day, week, month or year) and a churn flag
      (``event=``; values in ``event_true`` - compared as case-insensitive text - mean churned), e.g. a
      telecom export with ``tenure`` in months and ``Churn`` "Yes"/"No";
    * start and end dates (``start=``, ``end=``; an empty end = still a customer). Durations run to the end
      date, or to ``as_of`` (default: the latest date in the table) for active customers; an end date
      after ``as_of`` counts as active at ``as_of``. ``event=`` may still override who churned.

    Returns a copy of ``df`` (rows in the same order) with ``duration`` and ``event`` columns added.
    Raises :class:`RetentionInputError` for missing columns, end before start, negative or missing
    durations, or an unreadable churn flag.
    """
    if not isinstance(df, pd.DataFrame):
        raise RetentionInputError(f"expected a pandas DataFrame, got {type(df).__name__}", table=table)
    if len(df) == 0:
        raise RetentionInputError("has no rows", table=table, expected="at least one customer")
    needed = [c for c in (duration, start, end, event) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise RetentionInputError(f"has no column(s) {', '.join(shorten(c, 40) for c in missing)}; it has "
                                  f"{', '.join(shorten(c, 40) for c in list(df.columns)[:12])}"
                                  f"{' ...' if len(df.columns) > 12 else ''}", table=table,
                                  expected="the columns named in the retention settings (column mapping)")
    if duration_unit not in _UNIT_TO_MONTHS:
        raise RetentionInputError(f"duration unit {shorten(duration_unit)} is unknown", table=table,
                                  expected=f"one of {sorted(_UNIT_TO_MONTHS)}")
    out = df.copy()
    if duration:
        if event is None and end is None:
            raise RetentionInputError("a tenure column needs a churn flag column (event=)", table=table,
                                      column=duration)
        dur = pd.to_numeric(out[duration], errors="coerce")
        bad = dur.isna() & out[duration].notna()
        if bad.any():
            idx = out.index[bad]
            raise RetentionInputError("is not numeric", table=table, column=duration, n_rows=int(bad.sum()),
                                      examples=[out.loc[i, duration] for i in idx[:5]],
                                      expected=f"a number of {duration_unit}s")
        months = dur.astype("float64") * _UNIT_TO_MONTHS[duration_unit]
        ev = _as_event(out[event], event_true, table=table, column=event) if event else \
            out[end].notna().astype("int64")
    else:
        if not start:
            raise RetentionInputError("needs either a duration column or a start-date column", table=table)
        st = pd.to_datetime(out[start], errors="coerce")
        if st.isna().any():
            idx = out.index[st.isna()]
            raise RetentionInputError("has missing or unreadable start dates", table=table, column=start,
                                      n_rows=len(idx), examples=list(idx[:5]), expected="a date on every row")
        en = pd.to_datetime(out[end], errors="coerce") if end else pd.Series(pd.NaT, index=out.index)
        if as_of is None or (isinstance(as_of, str) and not as_of):
            as_of_ts = max(st.max(), en.max() if en.notna().any() else st.max())
        else:
            as_of_ts = pd.Timestamp(as_of)
        if pd.isna(as_of_ts):
            raise RetentionInputError("as_of date is missing", table=table)
        before = en.notna() & (en < st)
        if before.any():
            idx = out.index[before]
            raise RetentionInputError(f"has end dates before the start date ({start})", table=table,
                                      column=end, n_rows=int(before.sum()),
                                      examples=[_row_name(out, i) for i in idx[:5]],
                                      expected="end on or after start")
        late = st > as_of_ts
        if late.any():
            idx = out.index[late]
            raise RetentionInputError(f"has start dates after the as-of date {as_of_ts.date()}", table=table,
                                      column=start, n_rows=int(late.sum()),
                                      examples=[_row_name(out, i) for i in idx[:5]],
                                      expected="customers who started on or before as_of")
        churned = en.notna() & (en <= as_of_ts)
        stop = en.where(churned, as_of_ts)
        months = months_between(st, stop)
        if event:
            ev = _as_event(out[event], event_true, table=table, column=event)
        else:
            ev = churned.astype("int64")
    if months.isna().any():
        idx = out.index[months.isna()]
        raise RetentionInputError("has missing durations", table=table, column=duration or start,
                                  n_rows=int(months.isna().sum()), examples=[_row_name(out, i) for i in idx[:5]],
                                  expected="a duration on every row")
    if (months < 0).any():
        idx = out.index[months < 0]
        raise RetentionInputError("has negative durations", table=table, column=duration or start,
                                  n_rows=int((months < 0).sum()), examples=[_row_name(out, i) for i in idx[:5]],
                                  expected="durations >= 0")
    out["duration"] = months.to_numpy()
    out["event"] = ev.to_numpy()
    return out


def _row_name(df: pd.DataFrame, i: object) -> object:
    for key in ("customer_id", "customerID", "id"):
        if key in df.columns:
            return df.loc[i, key]
    return i


def survival_frame_from_settings(df: pd.DataFrame, settings: object, as_of: object = None) -> pd.DataFrame:
    """:func:`survival_frame` driven by a retention-settings object (``helpers.config.RetentionConfig``:
    ``duration_column``, ``duration_unit``, ``start_column``, ``end_column``, ``event_column``,
    ``churn_values``). The caller reads params; this only uses the object's attributes."""
    dur = getattr(settings, "duration_column", None)
    return survival_frame(
        df, duration=dur, start=None if dur else getattr(settings, "start_column", None),
        end=getattr(settings, "end_column", None) if not dur or not getattr(settings, "event_column", None)
        else None,
        event=getattr(settings, "event_column", None),
        event_true=tuple(getattr(settings, "churn_values", ("yes", "true", "1"))),
        as_of=as_of, duration_unit=getattr(settings, "duration_unit", "month"))


def customer_durations(customers: pd.DataFrame, as_of: object = None) -> pd.DataFrame:
    """The contract's customers table -> survival frame (``duration`` months, ``event``) plus what the
    cohort table and the sBG need:

    * ``cohort``: signup month (a pandas Period);
    * ``exposure_periods``: whole months from signup to ``as_of`` (how long the customer could be seen);
    * ``lifetime_periods`` / ``sbg_churned``: the discrete-time record of the sBG. A customer who left in
      month t (``t - 1 < duration <= t``) of a month that is fully observed (t <= exposure) churned in
      period t; everybody else is censored after ``floor(duration)`` whole months. A churn inside the last,
      partly observed month is censored too (otherwise that month's churners would count while its
      survivors could not, inflating churn).
    """
    frame = survival_frame(customers, start="signup_date", end="end_date", as_of=as_of)
    st = pd.to_datetime(frame["signup_date"])
    if as_of in (None, ""):
        en = pd.to_datetime(frame["end_date"])
        as_of_ts = max(st.max(), en.max()) if en.notna().any() else st.max()
    else:
        as_of_ts = pd.Timestamp(as_of)
    frame["cohort"] = st.dt.to_period("M")
    exposure = np.floor(months_between(st, pd.Series(as_of_ts, index=frame.index)).to_numpy() + 1e-9)
    dur = frame["duration"].to_numpy()
    churn_period = np.maximum(1, np.ceil(dur - 1e-9))
    observed_churn = (frame["event"].to_numpy() == 1) & (churn_period <= exposure)
    frame["exposure_periods"] = exposure.astype("int64")
    frame["sbg_churned"] = observed_churn.astype("int64")
    frame["lifetime_periods"] = np.where(observed_churn, churn_period,
                                         np.minimum(np.floor(dur + 1e-9), exposure)).astype("int64")
    return frame


def customer_satisfaction(responses: pd.DataFrame, as_of: object = None) -> pd.DataFrame:
    """Per-customer satisfaction from survey responses (answered on or before ``as_of``):
    ``mean_csat`` (mean of the 1-5 ratings), ``mean_nps`` (0-10), ``nps_group`` of the mean NPS
    (promoter >= 9, passive 7-8, detractor <= 6, as in Reichheld's NPS) and ``n_responses``."""
    need = {"customer_id", "response_date"}
    if not need <= set(responses.columns):
        raise RetentionInputError(f"needs columns {sorted(need)}", table="responses")
    r = responses
    if as_of not in (None, ""):
        r = r[pd.to_datetime(r["response_date"]) <= pd.Timestamp(as_of)]
    agg = {"n_responses": ("customer_id", "size")}
    if "csat" in r.columns:
        agg["mean_csat"] = ("csat", "mean")
    if "nps" in r.columns:
        agg["mean_nps"] = ("nps", "mean")
    out = r.groupby("customer_id").agg(**agg).reset_index()
    if "mean_nps" in out.columns:
        out["nps_group"] = pd.cut(out["mean_nps"], [-np.inf, 6.5, 8.5, np.inf],
                                  labels=["detractor", "passive", "promoter"]).astype("string")
    return out


# ----------------------------------------------------------------------------------------------------
# Cohort table
# ----------------------------------------------------------------------------------------------------

@displayable
@dataclass
class CohortTable:
    """Share of each signup cohort still active k months after signup (NaN = not observable yet)."""

    table: pd.DataFrame  # index cohort (str), columns 0..K months since signup, values share active
    sizes: pd.Series

    def plot(self, ax=None, max_periods: int | None = 24):
        import seaborn as sns

        from helpers.charts import new_axis
        ax = new_axis(ax, figsize=(10, 6))
        data = self.table if max_periods is None else self.table.loc[:, self.table.columns <= max_periods]
        sns.heatmap(data * 100, ax=ax, cmap="viridis", vmin=0, vmax=100,
                    cbar_kws={"label": "Still a customer (% of the signup month)"})
        ax.set_xlabel("Months since signup", fontsize=11)
        ax.set_ylabel("Signup month", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.figure.axes[-1].yaxis.label.set_size(11)
        ax.set_title(self.title(), fontsize=12)
        return ax

    def title(self) -> str:
        col = 12 if 12 in self.table.columns else self.table.columns[-1]
        vals = self.table[col].dropna()
        if vals.empty:
            return "No signup month has been observed long enough yet"
        return f"About {fmt_percent(vals.median(), 0)} of a signup month are still customers after {col} months"

    def summary(self) -> str:
        col = 12 if 12 in self.table.columns else self.table.columns[-1]
        vals = self.table[col].dropna()
        if vals.empty:
            return "No cohort has been observed long enough to report retention."
        return (f"After {col} months, between {vals.min():.0%} and {vals.max():.0%} of a signup cohort were "
                f"still customers (median {vals.median():.0%}, {len(vals)} cohorts observed that long).")


def whole_months(months) -> np.ndarray:
    """Whole months survived, ``floor(months + 1e-9)``: a customer with duration ``d`` months is still a customer
    ``k`` months after signup when ``k <= floor(d + 1e-9)`` (the tolerance keeps 12.0 months from reading 11)."""
    return np.floor(np.asarray(months, dtype="float64") + 1e-9).astype("int64")


def cohort_table(frame: pd.DataFrame, freq: str = "M", max_periods: int | None = None) -> CohortTable:
    """Cohorts by signup month (``freq="M"``) or quarter (``"Q"``) x whole months since signup.

    ``frame`` is the output of :func:`customer_durations` (or any frame with ``signup_date``,
    ``duration``, ``event``, ``exposure_periods``). Cell (c, k) = share of cohort c with duration >= k
    (still a customer k months after signup), shown only when every member could be observed for k months.
    The counts go through :func:`cohort_table_from_counts` (the engine path gives it the same counts by SQL).
    """
    for col in ("signup_date", "duration", "exposure_periods"):
        if col not in frame.columns:
            raise RetentionInputError(f"has no column {col!r}", table="customers",
                                      expected="the output of customer_durations()")
    if freq not in ("M", "Q"):
        raise RetentionInputError(f"cohort frequency {shorten(freq)} is unknown", expected="'M' or 'Q'")
    cohort = pd.to_datetime(frame["signup_date"]).dt.to_period(freq).astype(str).to_numpy()
    survived = (pd.DataFrame({"cohort": cohort, "months": whole_months(frame["duration"]), "customers": 1})
                .groupby(["cohort", "months"], as_index=False)["customers"].sum())
    exposure = frame["exposure_periods"].groupby(cohort).min()
    return cohort_table_from_counts(survived, exposure, int(frame["exposure_periods"].max()), max_periods)


def cohort_table_from_counts(survived: pd.DataFrame, exposure: pd.Series, longest: int,
                             max_periods: int | None = None) -> CohortTable:
    """:class:`CohortTable` from counts: ``survived`` has ``cohort`` (label), ``months`` (whole months survived,
    :func:`whole_months`) and ``customers``; ``exposure`` is each cohort's shortest observation in whole months
    (cells after it are not shown); ``longest`` the longest observation of any customer (the last column).
    Cell (c, k) = customers of c with months >= k / customers of c."""
    kmax = int(longest) if max_periods is None else min(int(longest), int(max_periods))
    ks = np.arange(kmax + 1)
    rows, sizes = {}, {}
    for c, g in survived.groupby("cohort", sort=True):
        months, n = g["months"].to_numpy(), g["customers"].to_numpy()
        size = int(n.sum())
        share = np.array([n[months >= k].sum() for k in ks], dtype="float64") / size
        rows[c] = np.where(ks <= exposure[c], share, np.nan)
        sizes[c] = size
    table = pd.DataFrame.from_dict(rows, orient="index", columns=ks).sort_index()
    table.index.name = "cohort"
    return CohortTable(table=table, sizes=pd.Series(sizes).sort_index())


# ----------------------------------------------------------------------------------------------------
# Kaplan-Meier and log-rank
# ----------------------------------------------------------------------------------------------------

def _survival_selection(data, group, by, filters, what: str):
    """The survival frame and group of a public survival function: ``by`` is another name of ``group``;
    a Dataset becomes :func:`customer_durations` of its customers; ``filters`` (column -> value or list;
    :mod:`helpers.selection`: values matched by case and slug, unknown values listed) select rows."""
    from helpers import selection as sel  # noqa: PLC0415

    if by is not None:
        cols = sel.as_columns(by)
        if group is not None and [group] != cols:
            raise RetentionInputError(f"{what}: got group={group!r} and by={by!r}; give one",
                                      table="survival data")
        if len(cols) != 1:
            raise RetentionInputError(f"{what}: by must be one column, got {cols}", table="survival data")
        group = cols[0]
    if group is not None:
        group = sel.canonical(group)
    if not isinstance(data, pd.DataFrame) and hasattr(data, "customers"):
        data = customer_durations(data.customers)
    if filters:
        try:
            data = sel.select_rows(data, "survival data", filters, what=what)
        except sel.SelectionError as exc:
            raise RetentionInputError(str(exc), table="survival data") from None
    return data, group


def _check_survival_columns(data: pd.DataFrame, duration: str, event: str, extra: Sequence[str] = ()):
    for col in (duration, event, *extra):
        if col not in data.columns:
            hint = ""
            if col in (duration, event) and {"signup_date", "end_date"} <= set(data.columns):
                hint = ("; this is the customers table: build the survival frame with "
                        "helpers.retention.customer_durations(customers) (adds 'duration' in months and 'event'), "
                        "or pass the Dataset itself")
            elif col in (duration, event):
                hint = ("; build it with helpers.retention.survival_frame(df, duration=..., event=...) or "
                        "customer_durations(customers)")
            raise RetentionInputError(f"has no column {col!r}{hint}", table="survival data",
                                      expected=f"columns {[duration, event, *extra]}")
    d = pd.to_numeric(data[duration], errors="coerce")
    if d.isna().any():
        idx = data.index[d.isna()]
        raise RetentionInputError("has missing durations", table="survival data", column=duration,
                                  n_rows=len(idx), examples=list(idx[:5]), expected="a number on every row")
    if (d < 0).any():
        idx = data.index[d < 0]
        raise RetentionInputError("has negative durations", table="survival data", column=duration,
                                  n_rows=len(idx), examples=list(idx[:5]), expected="durations >= 0")
    e = pd.to_numeric(data[event], errors="coerce")
    if e.isna().any() or not e.isin([0, 1]).all():
        raise RetentionInputError("is not a 0/1 churn flag", table="survival data", column=event,
                                  expected="1 = churned, 0 = still a customer (censored)")
    return d.to_numpy("float64"), e.to_numpy("float64")


@displayable
@dataclass
class KaplanMeierResult:
    """Kaplan-Meier curves: tidy ``table`` (one row per event time and group) and ``medians``."""

    table: pd.DataFrame
    medians: pd.DataFrame
    group: str | None
    alpha: float = 0.05
    log_rank: LogRankResult | None = None
    log_rank_note: str = ""  # why there is no log-rank test (e.g. too few churn events to compare groups)

    def survival_at(self, t: float, group: object = None) -> float:
        tab = self.table if self.group is None else self.table[self.table[self.group] == group]
        before = tab[tab["time"] <= t]
        return 1.0 if before.empty else float(before["survival"].iloc[-1])

    def plot(self, ax=None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        from matplotlib.ticker import PercentFormatter
        groups = [None] if self.group is None else list(self.table[self.group].unique())
        for i, g in enumerate(groups):
            tab = self.table if g is None else self.table[self.table[self.group] == g]
            t = np.r_[0.0, tab["time"].to_numpy()]
            s = np.r_[1.0, tab["survival"].to_numpy()]
            lo = np.r_[1.0, tab["ci_low"].to_numpy()]
            hi = np.r_[1.0, tab["ci_high"].to_numpy()]
            colour, style = SERIES_COLOURS[i % len(SERIES_COLOURS)], SERIES_STYLES[i % len(SERIES_STYLES)]
            ax.step(t, s, where="post", color=colour, linestyle=style, linewidth=2,
                    label="all customers" if g is None else value_label(g))
            ax.fill_between(t, lo, hi, step="post", alpha=0.15, color=colour)
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_xlabel("Months since signup", fontsize=11)
        ax.set_ylabel("Still a customer (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.set_title(self.title(), fontsize=12)
        if self.group is not None:
            ax.legend(title=column_label(self.group), fontsize=10, title_fontsize=10)
        return ax

    def title(self) -> str:
        """The chart's finding in words."""
        m = self.medians
        finite = m[np.isfinite(m["median"])]
        if self.group is None or len(m) < 2:
            if len(finite):
                return f"Half of the customers have left after {fmt_months(finite['median'].iloc[0])} months"
            return "More than half of the customers are still with us"
        if len(finite) == len(m):
            lo, hi = finite.loc[finite["median"].idxmin()], finite.loc[finite["median"].idxmax()]
            return (f"{value_label(lo[self.group]).capitalize()} customers leave soonest (half within "
                    f"{fmt_months(lo['median'])} months), {value_label(hi[self.group])} latest "
                    f"({fmt_months(hi['median'])})")
        return f"Customer survival by {column_label(self.group).lower()}"

    def summary(self) -> str:
        parts = []
        for _, row in self.medians.iterrows():
            who = "Customers" if self.group is None else f"{value_label(row[self.group]).capitalize()} customers"
            if np.isfinite(row["median"]):
                median, ci = months_and_interval(row["median"], row["ci_low"], row["ci_high"])
                parts.append(f"{who}: half have left after {median} months (95% CI {ci}).")
            else:
                s_end = row["survival_at_end"]
                parts.append(f"{who}: more than half are still customers after {row['last_time']:.0f} months "
                             f"({fmt_percent(s_end, 0)} remain), so the median lifetime is not reached yet.")
        if self.log_rank is not None:
            parts.append(self.log_rank.summary())
        elif self.log_rank_note:
            parts.append(f"No log-rank test: {self.log_rank_note}.")
        return " ".join(parts)


def kaplan_meier(data: pd.DataFrame, duration: str = "duration", event: str = "event",
                 group: str | None = None, alpha: float = 0.05, *, by=None, filters=None) -> KaplanMeierResult:
    """Kaplan-Meier survival with pointwise log-log intervals, by ``group`` if given.

    S(t) = prod_{t_i <= t} (1 - d_i / n_i); Greenwood variance; the interval is
    exp(-exp(log(-log S) +/- z * se(S) / (S |log S|))) (R ``survfit(conf.type="log-log")``, Kalbfleisch &
    Prentice 2002). Computed with statsmodels ``SurvfuncRight``; the median and its interval use
    ``quantile_ci(method="cloglog")`` (Brookmeyer & Crowley 1982). With a group, the log-rank test
    (statsmodels ``survdiff``, as R ``survdiff``) is attached as ``.log_rank``.

    ``data`` is a survival frame (:func:`customer_durations`, :func:`survival_frame`) or a Dataset (its
    customers' durations); ``by`` is another name of ``group``; ``filters`` (column -> value or list, see
    :mod:`helpers.selection`) selects the customers, e.g. ``filters={"region": "north"}``.
    """
    from statsmodels.duration.survfunc import SurvfuncRight

    data, group = _survival_selection(data, group, by, filters, "kaplan_meier")
    d, e = _check_survival_columns(data, duration, event, [group] if group else [])
    if len(d) == 0:
        raise RetentionInputError("has no rows", table="survival data")
    z = stats.norm.ppf(1 - alpha / 2)
    keys = [None] if group is None else sorted(data[group].dropna().unique(), key=str)
    rows, meds = [], []
    gvals = None if group is None else data[group].to_numpy()
    for k in keys:
        m = np.ones(len(d), bool) if k is None else (gvals == k)
        if m.sum() == 0:
            continue
        sf = SurvfuncRight(d[m], e[m])
        s = np.asarray(sf.surv_prob, float)
        se = np.asarray(sf.surv_prob_se, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.log(-np.log(s))
            sell = se / (s * np.abs(np.log(s)))
            lo = np.exp(-np.exp(ll + z * sell))
            hi = np.exp(-np.exp(ll - z * sell))
        lo = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, lo))
        hi = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, hi))
        part = pd.DataFrame({"time": sf.surv_times, "survival": s, "ci_low": lo, "ci_high": hi,
                             "at_risk": np.asarray(sf.n_risk, "int64"),
                             "events": np.asarray(sf.n_events, "int64")})
        if part.empty:  # nobody churned: the curve stays at 1
            part = pd.DataFrame({"time": [float(d[m].max())], "survival": [1.0], "ci_low": [1.0],
                                 "ci_high": [1.0], "at_risk": [int(m.sum())], "events": [0]})
        if group is not None:
            part.insert(0, group, k)
        rows.append(part)
        med = sf.quantile(0.5) if (s <= 0.5).any() else np.nan
        if np.isfinite(med):
            with np.errstate(divide="ignore", invalid="ignore"):  # log(-log 1) at the start of the curve
                lo_m, hi_m = sf.quantile_ci(0.5, alpha=alpha, method="cloglog")
        else:
            lo_m, hi_m = np.nan, np.nan
        mrow = {"n": int(m.sum()), "events": int(e[m].sum()), "median": float(med),
                "ci_low": float(lo_m) if lo_m is not None else np.nan,
                "ci_high": float(hi_m) if hi_m is not None else np.inf,
                "last_time": float(d[m].max()), "survival_at_end": float(s[-1]) if len(s) else 1.0}
        if group is not None:
            mrow = {group: k, **mrow}
        meds.append(mrow)
    table = pd.concat(rows, ignore_index=True)
    res = KaplanMeierResult(table=table, medians=pd.DataFrame(meds), group=group, alpha=alpha)
    if group is not None and len(keys) > 1:
        try:
            res.log_rank = log_rank(data, duration, event, group)
        except KitError as exc:  # the curves stand on their own; say why the groups are not compared
            res.log_rank_note = str(exc).split(";")[0]
    return res


@displayable
@dataclass
class LogRankResult:
    """Log-rank test of equal survival across groups (chi-square with k - 1 degrees of freedom)."""

    statistic: float
    df: int
    p_value: float
    group: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> str:
        verdict = "differ" if self.p_value < 0.05 else "do not differ detectably"
        return (f"Survival curves by {column_label(self.group).lower()} {verdict} (log-rank chi-square "
                f"{self.statistic:.1f} on {self.df} df, {fmt_p_value(self.p_value, prefix=True)}).")

    def plot(self, ax=None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        ax.bar(self.table[self.group].astype(str), self.table["events"], label="observed churn")
        ax.set_title(self.summary(), fontsize=9)
        return ax


def log_rank(data: pd.DataFrame, duration: str = "duration", event: str = "event", group: str | None = None, *,
             by=None, filters=None) -> LogRankResult:
    """Log-rank test (Mantel-Haenszel) via statsmodels ``survdiff``; matches R ``survdiff``. ``by`` is another
    name of ``group``; ``filters`` selects rows (see :func:`kaplan_meier`)."""
    from statsmodels.duration.survfunc import survdiff

    data, group = _survival_selection(data, group, by, filters, "log_rank")
    if group is None:
        raise RetentionInputError("log_rank needs the groups to compare: pass group= (or by=)", table="survival data")

    d, e = _check_survival_columns(data, duration, event, [group])
    g = data[group].astype(str).to_numpy()
    levels = np.unique(g)
    if len(levels) < 2:
        raise RetentionInputError(f"has only one group ({levels.tolist()}) - nothing to compare",
                                  table="survival data", column=group, expected="two or more groups")
    if e.sum() == 0:
        raise RetentionInputError("has no churn events - nothing to compare", table="survival data",
                                  column=event, expected="customers who left in at least one group")
    try:
        chi2, p = survdiff(d, e, g)
    except np.linalg.LinAlgError:
        raise RetentionModelError(f"the log-rank variance is singular ({int(e.sum())} churn events across "
                                  f"{len(levels)} groups are too few to compare them)") from None
    tab = pd.DataFrame({group: levels, "n": [int((g == lv).sum()) for lv in levels],
                        "events": [int(e[g == lv].sum()) for lv in levels]})
    return LogRankResult(statistic=float(chi2), df=len(levels) - 1, p_value=float(p), group=group, table=tab)


# ----------------------------------------------------------------------------------------------------
# Cox proportional hazards
# ----------------------------------------------------------------------------------------------------

def concordance_index(time: np.ndarray, risk: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C: among comparable pairs (the shorter time is an event, times differ), the share where
    the shorter-lived customer has the higher risk score; risk ties count 1/2. O(n log n) with a Fenwick
    tree. Tied times are not comparable (as lifelines' ``concordance_index``)."""
    time = np.asarray(time, float)
    risk = np.asarray(risk, float)
    event = np.asarray(event, bool)
    ranks = stats.rankdata(risk, method="dense").astype(int)
    nr = ranks.max()
    tree = np.zeros(nr + 1, dtype=np.int64)

    def add(i):
        while i <= nr:
            tree[i] += 1
            i += i & -i

    def prefix(i):
        s = 0
        while i > 0:
            s += tree[i]
            i -= i & -i
        return s

    order = np.argsort(-time, kind="mergesort")
    conc = ties = comparable = 0.0
    n_in = 0
    i = 0
    n = len(time)
    while i < n:
        j = i
        while j < n and time[order[j]] == time[order[i]]:
            j += 1
        block = order[i:j]
        for k in block:  # compare with everyone strictly later (already in the tree)
            if event[k] and n_in:
                below = prefix(ranks[k] - 1)
                same = prefix(ranks[k]) - below
                conc += below
                ties += same
                comparable += n_in
        for k in block:
            add(ranks[k])
            n_in += 1
        i = j
    if comparable == 0:
        return float("nan")
    return float((conc + 0.5 * ties) / comparable)


@displayable
@dataclass
class CoxResult:
    """Cox proportional-hazards fit: ``table`` indexed by covariate with ``coef``, ``se``,
    ``hazard_ratio``, ``ci_low``, ``ci_high`` (of the hazard ratio), ``p_value``; ``concordance``;
    ``ph_test`` (Schoenfeld-residual check per covariate)."""

    table: pd.DataFrame
    concordance: float
    ph_test: pd.DataFrame
    n: int
    n_events: int
    loglik: float
    alpha: float = 0.05
    labels: dict[str, str] = field(default_factory=dict)  # indicator column -> "segment = enterprise"
    # display only: covariate -> (step, words) to state a continuous covariate's effect per a sensible step,
    # e.g. {"monthly_revenue": (100, "each extra €100 of monthly revenue")}; the table stays per unit
    steps: dict[str, tuple[float, str]] = field(default_factory=dict)

    def reader_label(self, covariate: str) -> str:
        """The covariate as the page names it: its label, with data codes made readable (``segment = small_business
        (vs consumer)`` -> ``Segment: small business (vs consumer)``); per a step when one is set."""
        import re
        if covariate in self.steps:
            return self.steps[covariate][1]
        text = self.labels.get(covariate)
        if text is None:
            label = column_label(covariate)
            label = label[0].lower() + label[1:] if label[1:2].islower() or len(label) == 1 else label
            return f"each unit of {label}"
        m = re.fullmatch(r"(.*) = (.*) \(vs (.*)\)", text)
        if m:
            return f"{value_label(m.group(2))} {column_label(m.group(1)).lower()} (vs {value_label(m.group(3))})"
        return text

    def per_step(self, covariate: str) -> tuple[float, float, float]:
        """(hazard ratio, low, high) per the covariate's display step (per unit without one)."""
        row = self.table.loc[covariate]
        step = self.steps.get(covariate, (1.0, ""))[0]
        if step == 1.0:
            return float(row["hazard_ratio"]), float(row["ci_low"]), float(row["ci_high"])
        z = stats.norm.ppf(1 - self.alpha / 2)
        b, se = float(row["coef"]) * step, float(row["se"]) * abs(step)
        return float(np.exp(b)), float(np.exp(b - z * se)), float(np.exp(b + z * se))

    def hazard_change_per_unit(self, covariate: str) -> tuple[float, float, float]:
        """Percent change of the hazard per unit of ``covariate``: (estimate, low, high)."""
        row = self.table.loc[covariate]
        return tuple(100 * (row[c] - 1) for c in ("hazard_ratio", "ci_low", "ci_high"))

    def plot(self, ax=None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        tab = self.table.iloc[::-1]
        y = np.arange(len(tab))
        ratios = np.array([self.per_step(c) for c in tab.index])
        ax.hlines(y, ratios[:, 1], ratios[:, 2], color=SERIES_COLOURS[0], lw=2)
        ax.plot(ratios[:, 0], y, "o", color=SERIES_COLOURS[0], ms=7)
        ax.axvline(1, color="grey", lw=1, ls="--")
        import textwrap
        ax.set_yticks(y, [textwrap.fill(self.reader_label(c), 34) for c in tab.index], fontsize=11)
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter, LogLocator
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(0.1, 0.2, 0.3, 0.5, 0.7, 1.0), numticks=12))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("Hazard ratio of churn, 95% CI (log scale; below 1 = customers stay longer)", fontsize=11)
        ax.tick_params(axis="x", labelsize=10)
        ax.set_title(self.title(), fontsize=12)
        return ax

    def title(self) -> str:
        """The chart's finding in words: the factor with the clearest effect."""
        top = self.table["p_value"].idxmin()
        hr, lo, hi = self.per_step(top)
        point, _ = hazard_change_text(hr, lo, hi)
        label = self.reader_label(top)
        if self.table.loc[top, "p_value"] >= 0.05:
            return "No factor changes the churn risk clearly"
        return f"{label[0].upper() + label[1:]}: {point} churn risk" if len(label) < 60 else \
            f"Churn risk {point} for the clearest factor"

    def summary(self) -> str:
        parts = []
        for cov, row in self.table.iterrows():
            hr, lo, hi = self.per_step(cov)
            point, interval = hazard_change_text(hr, lo, hi)
            amount, way = point.rsplit(" ", 1)
            verb = "lowers" if way == "lower" else "raises"
            sig = "" if row["p_value"] < 0.05 else " (not statistically distinguishable from no effect)"
            parts.append(f"{self.reader_label(cov)} {verb} the churn hazard by {amount} (95% CI {interval}){sig}")
        ph_bad = self.ph_test.index[self.ph_test["p_value"] < 0.05].tolist() if len(self.ph_test) else []
        text = "Holding the other factors fixed, " + "; ".join(parts) + "."
        text += f" The model ranks who leaves first correctly {self.concordance:.0%} of the time (concordance)."
        if ph_bad:
            text += (f" The effect of {', '.join(self.reader_label(c) for c in ph_bad)} seems to change over time "
                     "(proportional-hazards check p < 0.05), so read it as an average over the customer lifetime.")
        return text


# Beyond these the Cox estimate is a separation artefact, not a hazard ratio: exp(15) is a ratio of 3 million, and
# a standard error of 10 on the log scale is a 95% interval spanning a factor of 10^17.
MAX_LOG_HAZARD_RATIO = 15.0
MAX_LOG_HAZARD_SE = 10.0


def fit_cox(data: pd.DataFrame, duration: str, event: str, covariates: Sequence[str],
            alpha: float = 0.05, *, filters=None) -> CoxResult:
    """Cox proportional-hazards model h(t|x) = h0(t) exp(x'b) by partial likelihood with Efron ties
    (statsmodels ``PHReg(ties="efron")``; same estimates as R ``coxph`` and lifelines ``CoxPHFitter``).

    Categorical covariates (text/category columns) are expanded to indicator columns (first level =
    reference). Rows with a missing covariate are dropped; if that is more than half the rows the call
    fails with :class:`RetentionInputError`. The proportional-hazards check correlates each covariate's
    Schoenfeld residuals (events only) with the rank of event time (Grambsch & Therneau 1994's idea with
    the rank transform; a Pearson test per covariate, an approximation of R ``cox.zph``).
    """
    from statsmodels.duration.hazard_regression import PHReg

    data, _ = _survival_selection(data, None, None, filters, "fit_cox")
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    if not covariates:
        raise RetentionInputError("no covariates given", table="survival data", expected="one or more columns")
    d, e = _check_survival_columns(data, duration, event, covariates)
    X = data[covariates]
    missing_any = X.isna().any(axis=1).to_numpy()
    cat = [c for c in covariates if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])]
    labels = {}
    if cat:  # a number column read as text (TotalCharges with " " blanks): not one indicator per value (issue 12)
        from helpers.data import numeric_text_columns  # noqa: PLC0415
        for p in numeric_text_columns(X[cat], "survival data"):
            raise RetentionInputError(f"covariate {p.problem}" + (f", e.g. {', '.join(map(repr, p.values[:3]))}"
                                      if p.values else ""), table="survival data", column=p.column, n_rows=p.n_rows,
                                      expected="a number column: convert it, e.g. pd.to_numeric(col, errors='coerce') "
                                               "(blanks become missing), or a category with few values")
        for c in cat:
            levels = sorted(X[c].dropna().astype(str).unique())
            for lv in levels[1:]:
                labels[f"{c}_{lv}"] = f"{c} = {lv} (vs {levels[0]})"
        X = pd.get_dummies(X.astype({c: str for c in cat}).where(X.notna()), columns=cat, drop_first=True,
                           dtype="float64")
    X = X.astype("float64")
    if X.shape[1] == 0:  # e.g. a categorical covariate with a single level: nothing to compare
        raise RetentionInputError(f"covariate(s) {', '.join(shorten(c, 40) for c in covariates)} have a single "
                                  "value", table="survival data", expected="covariates that differ between customers")
    keep = X.notna().all(axis=1).to_numpy() & ~missing_any
    if keep.sum() < max(10, 0.5 * len(X)):
        raise RetentionInputError(f"covariates {covariates} are missing for {int((~keep).sum())} of {len(X)} "
                                  "rows", table="survival data", expected="a value for most customers")
    X, d, e = X[keep], d[keep], e[keep]
    if e.sum() < len(X.columns) + 1:
        raise RetentionModelError(f"Cox model: only {int(e.sum())} churn events for {len(X.columns)} "
                                  "covariates - too few to estimate hazard ratios")
    const = [c for c in X.columns if X[c].std() == 0]
    if const:
        raise RetentionInputError(f"covariate(s) {const} do not vary", table="survival data",
                                  expected="covariates that differ between customers")
    model = PHReg(d, X.to_numpy(), status=e, ties="efron")
    try:
        res = model.fit(disp=False)
    except Exception as exc:  # pragma: no cover - statsmodels' own failures
        raise RetentionModelError(f"Cox model did not fit: {exc}") from exc
    params = np.asarray(res.params)
    bse = np.asarray(res.bse)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(bse))):
        raise RetentionModelError("Cox model did not converge (infinite coefficient or standard error); "
                                  "a covariate may separate churners perfectly")
    # (quasi-)separation: a group with no churners drives its coefficient towards -inf; the optimiser stops at a
    # large finite value with an enormous standard error (a hazard ratio of 0 with a 95% CI of 0 to +inf)
    separated = [str(c) for c, b, s in zip(X.columns, params, bse) if abs(b) > MAX_LOG_HAZARD_RATIO
                 or s > MAX_LOG_HAZARD_SE]
    if separated:
        what = f" ({', '.join(shorten(c, 40) for c in separated)})" if separated else ""
        raise RetentionModelError("Cox model did not converge: a covariate separates churners from the others "
                                  f"almost perfectly{what}, so its hazard ratio cannot be estimated (e.g. a "
                                  "segment in which nobody churned yet)")
    z = stats.norm.ppf(1 - alpha / 2)
    table = pd.DataFrame({"coef": params, "se": bse, "hazard_ratio": np.exp(params),
                          "ci_low": np.exp(params - z * bse), "ci_high": np.exp(params + z * bse),
                          "p_value": 2 * stats.norm.sf(np.abs(params / bse))}, index=pd.Index(X.columns,
                                                                                                name="covariate"))
    conc = concordance_index(d, X.to_numpy() @ params, e)  # higher risk score should mean earlier churn
    ph_rows = []
    sr = np.asarray(res.schoenfeld_residuals)
    ev = e == 1
    t_rank = stats.rankdata(d[ev])
    for j, cov in enumerate(X.columns):
        r = sr[ev, j]
        ok = np.isfinite(r)
        if ok.sum() > 3 and np.std(r[ok]) > 0:
            rho, p = stats.pearsonr(t_rank[ok], r[ok])
        else:
            rho, p = np.nan, np.nan
        ph_rows.append({"covariate": cov, "rho": rho, "p_value": p})
    ph = pd.DataFrame(ph_rows).set_index("covariate")
    return CoxResult(table=table, concordance=float(conc), ph_test=ph, n=len(d), n_events=int(e.sum()),
                     loglik=float(res.llf), alpha=alpha, labels=labels,
                     steps=default_steps(X[[c for c in X.columns if c not in labels]]))


def default_steps(X: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """A readable step per continuous covariate for sentences: a power of ten near its standard deviation when
    that is above 5 or below 0.2 (``monthly_revenue`` with SD 40 -> "each 10 more of monthly revenue"), so a
    summary never says "each unit lowers the hazard by 0%"; covariates on a 1-point scale keep "each unit"."""
    steps = {}
    for col in X.columns:
        sd = float(X[col].std())
        if not np.isfinite(sd) or sd <= 0 or 0.2 <= sd <= 5:
            continue
        step = float(10 ** np.floor(np.log10(sd)))
        label = column_label(col)
        label = label[0].lower() + label[1:] if label[1:2].islower() or len(label) == 1 else label
        steps[col] = (step, f"each {fmt_number(step, 0 if step >= 1 else 3)} more of {label}")
    return steps


# ----------------------------------------------------------------------------------------------------
# Shifted-beta-geometric model (Fader & Hardie 2007)
# ----------------------------------------------------------------------------------------------------

def sbg_survival(t, alpha: float, beta: float) -> np.ndarray:
    """S(t) = B(alpha, beta + t) / B(alpha, beta): share still active after t periods."""
    t = np.asarray(t, float)
    return np.exp(special.betaln(alpha, beta + t) - special.betaln(alpha, beta))


def sbg_churn_probability(t, alpha: float, beta: float) -> np.ndarray:
    """P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta), t = 1, 2, ...: churn in period t."""
    t = np.asarray(t, float)
    return np.exp(special.betaln(alpha + 1, beta + t - 1) - special.betaln(alpha, beta))


def sbg_retention(t, alpha: float, beta: float) -> np.ndarray:
    """r(t) = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1), t >= 1: retention rate in period t."""
    t = np.asarray(t, float)
    return (beta + t - 1) / (alpha + beta + t - 1)


def sbg_derl(alpha: float, beta: float, d: float, n_renewals: int = 0) -> float:
    """Discounted expected residual lifetime of a customer who has made ``n_renewals`` renewals (is
    active after n periods) and is about to decide on the next one (Fader & Hardie 2010, "Customer-Base
    Valuation in a Contractual Setting", Marketing Science 29(1), with n - 1 renewals there = n here):

        DERL(d | alpha, beta, n) = (beta + n) / (alpha + beta + n)
                                   * 2F1(1, beta + n + 1; alpha + beta + n + 1; 1 / (1 + d))
                                 = sum_{k>=0} [S(n + 1 + k) / S(n)] / (1 + d)^k

    i.e. the discounted number of future payments, the next one (made at the start of the period if the
    customer renews) undiscounted. Expected residual value = margin x DERL; ``d`` is per period.
    """
    if d <= 0:
        raise RetentionInputError(f"discount rate {d} per period is not positive", table="parameters",
                                  expected="a discount rate > 0 (e.g. 0.01 per month)")
    n = float(n_renewals)
    return float((beta + n) / (alpha + beta + n)
                 * special.hyp2f1(1.0, beta + n + 1, alpha + beta + n + 1, 1.0 / (1.0 + d)))


def sbg_del(alpha: float, beta: float, d: float) -> float:
    """Discounted expected lifetime of a new customer, DEL = sum_{t>=0} S(t) / (1 + d)^t
    = 2F1(1, beta; alpha + beta; 1 / (1 + d)) (Fader & Hardie 2010): the discounted number of payments
    including the first one at signup. Expected value of a new customer = margin x DEL."""
    if d <= 0:
        raise RetentionInputError(f"discount rate {d} per period is not positive", table="parameters",
                                  expected="a discount rate > 0 (e.g. 0.01 per month)")
    return float(special.hyp2f1(1.0, beta, alpha + beta, 1.0 / (1.0 + d)))


def _sbg_loglik(logp: np.ndarray, lost: np.ndarray, alive: np.ndarray) -> float:
    return _sbg_nll_grad(logp, lost, alive)[0] * -1.0


def _sbg_nll_grad(logp: np.ndarray, lost: np.ndarray, alive: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of the sBG and its gradient in (log alpha, log beta).

    d/da log B(a + 1, b + t - 1) = psi(a + 1) - psi(a + b + t), d/db = psi(b + t - 1) - psi(a + b + t);
    d/da log B(a, b + c) = psi(a) - psi(a + b + c), d/db = psi(b + c) - psi(a + b + c).
    """
    if not np.all(np.abs(logp) < 12):
        return 1e300, np.zeros(2)
    a, b = np.exp(logp)
    T = len(lost)
    t = np.arange(1, T + 1)
    c = np.arange(0, T + 1)
    lb0 = special.betaln(a, b)
    lp = special.betaln(a + 1, b + t - 1) - lb0
    ls = special.betaln(a, b + c) - lb0
    ll = float(np.dot(lost, lp) + np.dot(alive, ls))
    if not np.isfinite(ll):
        return 1e300, np.zeros(2)
    pa, pab = special.digamma(a), special.digamma(a + b)
    pb = special.digamma(b)
    da0, db0 = pa - pab, pb - pab
    psi_abt = special.digamma(a + b + t)
    psi_abc = special.digamma(a + b + c)
    dla = np.dot(lost, special.digamma(a + 1) - psi_abt - da0) + np.dot(alive, pa - psi_abc - da0)
    dlb = np.dot(lost, special.digamma(b + t - 1) - psi_abt - db0) + np.dot(alive, special.digamma(b + c)
                                                                            - psi_abc - db0)
    return -ll, -np.array([a * dla, b * dlb])


def _sbg_newton(x0: np.ndarray, lost: np.ndarray, alive: np.ndarray, max_iter: int = 50) -> np.ndarray | None:
    """Newton's method on (log alpha, log beta) with the analytic Hessian (trigamma terms) and step
    halving; used for the warm-started bootstrap refits. Returns None when it does not converge (the
    caller then falls back to BFGS)."""
    T = len(lost)
    t = np.arange(1, T + 1)
    c = np.arange(0, T + 1)
    x = np.array(x0, float)
    f, _ = _sbg_nll_grad(x, lost, alive)
    n_t, n_c = len(t), len(c)
    for _ in range(max_iter):
        a, b = np.exp(x)
        ab, abt, abc = a + b, a + b + t, a + b + c
        # digamma and trigamma of every argument in one call each (elementwise: the same values as one call per
        # argument, without ~20 calls' overhead per iteration)
        z = np.concatenate(([a + 1, a, ab, b], abt, b + t - 1, abc, b + c))
        parts = np.cumsum([4, n_t, n_t, n_c])

        def split(values):
            (pa1, pa_, pab, pb_), rest = values[:4], np.split(values[4:], parts[1:] - 4)
            return pa1, pa_, pab, pb_, *rest

        pa1, pa_, pab, pb_, p_abt, p_bt1, p_abc, p_bc = split(special.digamma(z))
        ta1, ta_, tab, tb_, t_abt, t_bt1, t_abc, t_bc = split(special.polygamma(1, z))
        # first derivatives of the log-likelihood in (a, b)
        la = np.dot(lost, pa1 - p_abt - pa_ + pab) + np.dot(alive, pab - p_abc)
        lb = np.dot(lost, p_bt1 - p_abt - pb_ + pab) + np.dot(alive, p_bc - p_abc - pb_ + pab)
        laa = np.dot(lost, ta1 - t_abt - ta_ + tab) + np.dot(alive, tab - t_abc)
        lbb = np.dot(lost, t_bt1 - t_abt - tb_ + tab) + np.dot(alive, t_bc - t_abc - tb_ + tab)
        lab = np.dot(lost, tab - t_abt) + np.dot(alive, tab - t_abc)
        g = np.array([a * la, b * lb])
        H = np.array([[a * a * laa + a * la, a * b * lab], [a * b * lab, b * b * lbb + b * lb]])
        if not np.all(np.isfinite(H)) or np.linalg.det(H) <= 0 or H[0, 0] >= 0:
            return None  # not locally concave: let BFGS handle it
        step = -np.linalg.solve(H, g)
        lam = 1.0
        while lam > 1e-4:
            xn = x + lam * step
            fn, _ = _sbg_nll_grad(xn, lost, alive)
            if fn <= f + 1e-12 * max(1.0, abs(f)):
                break
            lam /= 2
        else:
            return None
        x, f = xn, fn
        if np.max(np.abs(lam * step)) < 1e-9:
            return x
    return None


def _fit_sbg_counts(lost: np.ndarray, alive: np.ndarray, start: Sequence[float] | None = None
                    ) -> tuple[float, float, float, bool]:
    """MLE of (alpha, beta) from churn counts ``lost[t-1]`` (churned in period t) and ``alive[c]``
    (still active, last seen after c periods): BFGS with the analytic gradient on log-parameters from
    several starting points (or one warm ``start``, used by the bootstrap); the best optimum is kept."""
    starts = [tuple(start)] if start is not None else \
        [(0.0, 0.0), (-1.0, 1.0), (1.0, 1.0), (-1.0, -1.0), (1.0, 2.5), (0.5, -0.5), (2.0, 4.0)]
    best = None
    scale = max(1.0, float(lost.sum() + alive.sum()))

    def scaled(x):
        v, g = _sbg_nll_grad(x, lost, alive)
        return v / scale, g / scale
    if start is not None:  # warm start (bootstrap): Newton converges in a few steps
        x = _sbg_newton(np.array(start, float), lost, alive)
        if x is not None and np.all(np.abs(x) < 12):
            f, g = scaled(x)
            a, b = np.exp(x)
            return float(a), float(b), float(-f * scale), bool(np.max(np.abs(g)) < 1e-5 and np.all(np.abs(x) < 9))
    for s0 in starts:
        try:
            r = optimize.minimize(scaled, np.array(s0, float), jac=True, method="BFGS",
                                  options={"gtol": 1e-8, "maxiter": 400})
        except (FloatingPointError, ValueError):
            continue
        if np.isfinite(r.fun) and r.fun < 1e290 and (best is None or r.fun < best.fun):
            best = r
    if best is None:
        return np.nan, np.nan, np.nan, False
    a, b = np.exp(best.x)
    # |log a|, |log b| >= 9 means the optimum ran off to a boundary (e.g. beta -> 0 when everybody leaves at
    # once, or alpha, beta -> infinity when churn shows no heterogeneity): not an interior MLE
    converged = bool(np.max(np.abs(best.jac)) < 1e-5 and np.all(np.abs(best.x) < 9))
    return float(a), float(b), float(-best.fun * scale), converged


@displayable
@dataclass
class SBGResult:
    """A fitted sBG model: ``alpha``, ``beta``, ``loglik``; intervals from a parametric bootstrap.

    ``table`` holds the parameters with standard errors (observed information, delta method) and
    bootstrap percentile intervals. ``projection(horizon)`` gives S(t) with intervals.
    """

    alpha: float
    beta: float
    loglik: float
    n_customers: int
    periods_observed: int
    boot: np.ndarray  # (B, 2) bootstrap (alpha, beta)
    level: float = 0.95
    label: str = ""
    observed: pd.DataFrame | None = None  # t, survival (observed share) for plots
    single_cohort: bool = False  # fitted to one cohort's survivor counts (fit_sbg)

    @property
    def table(self) -> pd.DataFrame:
        q = [(1 - self.level) / 2, 1 - (1 - self.level) / 2]
        lo = np.quantile(self.boot, q[0], axis=0) if len(self.boot) else [np.nan] * 2
        hi = np.quantile(self.boot, q[1], axis=0) if len(self.boot) else [np.nan] * 2
        return pd.DataFrame({"estimate": [self.alpha, self.beta], "ci_low": lo, "ci_high": hi},
                            index=pd.Index(["alpha", "beta"], name="parameter"))

    def survival(self, t) -> np.ndarray:
        return sbg_survival(t, self.alpha, self.beta)

    def retention(self, t) -> np.ndarray:
        return sbg_retention(t, self.alpha, self.beta)

    def churn_probability(self, t) -> np.ndarray:
        return sbg_churn_probability(t, self.alpha, self.beta)

    def expected_lifetime(self, horizon: int | None = None) -> float:
        """Expected lifetime in periods of a new customer, E[T] = sum_{t>=0} S(t) = (alpha + beta - 1) /
        (alpha - 1) when alpha > 1 (infinite otherwise: a heavy tail of very loyal customers); with a
        ``horizon``, the expected number of periods active within the first ``horizon`` periods."""
        if horizon is not None:
            _check_horizon(horizon)
            return float(self.survival(np.arange(0, horizon)).sum())
        if self.alpha <= 1:
            return float("inf")
        return (self.alpha + self.beta - 1) / (self.alpha - 1)

    def expected_remaining_lifetime(self, n_renewals: int = 0, horizon: int = 600) -> float:
        """Expected further periods of a customer active after ``n_renewals`` periods (undiscounted,
        truncated at ``horizon`` periods since infinite means are possible)."""
        _check_horizon(horizon)
        t = np.arange(n_renewals + 1, n_renewals + horizon + 1)
        return float(self.survival(t).sum() / self.survival(n_renewals))

    def derl(self, discount_rate: float, n_renewals: int = 0) -> float:
        """Discounted expected residual lifetime (periods); see :func:`sbg_derl`."""
        return sbg_derl(self.alpha, self.beta, discount_rate, n_renewals)

    def derl_interval(self, discount_rate: float, n_renewals: int = 0) -> tuple[float, float]:
        vals = np.array([sbg_derl(a, b, discount_rate, n_renewals) for a, b in self.boot])
        q = (1 - self.level) / 2
        return float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q))

    def discounted_lifetime(self, discount_rate: float) -> float:
        """DEL of a new customer (payments incl. the first at signup); see :func:`sbg_del`."""
        return sbg_del(self.alpha, self.beta, discount_rate)

    def discounted_lifetime_interval(self, discount_rate: float) -> tuple[float, float]:
        vals = np.array([sbg_del(a, b, discount_rate) for a, b in self.boot])
        q = (1 - self.level) / 2
        return float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q))

    def clv(self, margin: float, discount_rate: float, n_renewals: int = 0) -> float:
        """Expected residual value of a customer active after ``n_renewals`` periods = margin x DERL
        (Fader & Hardie 2010). For a new customer including the signup payment use margin x DEL."""
        return float(margin) * self.derl(discount_rate, n_renewals)

    def projection(self, horizon: int) -> pd.DataFrame:
        """S(t) and r(t) for t = 0..horizon with bootstrap ``ci_low``/``ci_high`` of S(t)."""
        _check_horizon(horizon)
        t = np.arange(0, horizon + 1)
        s = self.survival(t)
        q = (1 - self.level) / 2
        if len(self.boot):
            sims = np.array([sbg_survival(t, a, b) for a, b in self.boot])
            lo, hi = np.quantile(sims, q, axis=0), np.quantile(sims, 1 - q, axis=0)
        else:
            lo = hi = np.full_like(s, np.nan)
        r = np.r_[np.nan, self.retention(t[1:])]
        return pd.DataFrame({"t": t, "survival": s, "ci_low": lo, "ci_high": hi, "retention": r})

    def plot(self, ax=None, horizon: int | None = None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        h = horizon or max(12, 2 * self.periods_observed)
        if self.observed is not None and len(self.observed):
            h = max(h, int(self.observed["t"].max()))
        from matplotlib.ticker import PercentFormatter
        proj = self.projection(h)
        ax.plot(proj["t"], proj["survival"], color=SERIES_COLOURS[0], lw=2, label="sBG model")
        ax.fill_between(proj["t"], proj["ci_low"], proj["ci_high"], color=SERIES_COLOURS[0], alpha=0.2,
                        label=f"{self.level:.0%} interval")
        if self.observed is not None:
            ax.plot(self.observed["t"], self.observed["survival"], "o", color="black", ms=3,
                    label="observed (Kaplan-Meier)")
        if self.single_cohort:
            ax.axvline(self.periods_observed, color="grey", ls=":", lw=1)
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_xlabel("Months since signup", fontsize=11)
        ax.set_ylabel("Still a customer (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.set_title(self.title(12), fontsize=12)
        ax.legend(fontsize=10)
        return ax

    def title(self, horizon: int = 12) -> str:
        point, _ = percent_interval(*self.projection(horizon).iloc[-1][["survival", "ci_low", "ci_high"]])
        return f"{point} of a new cohort are expected to stay {horizon} months"

    def summary(self, horizon: int = 12, period: str = "month") -> str:
        proj = self.projection(horizon).iloc[-1]
        who = f"For {value_label(self.label)}, " if self.label else ""
        point, ci = percent_interval(proj["survival"], proj["ci_low"], proj["ci_high"])
        interval = f" (95% CI {ci})" if len(self.boot) and ci != "n/a" else " (no interval computed)"
        return (f"{who}the shifted-beta-geometric model expects {point} of a new cohort "
                f"to still be customers after {horizon} {period}s{interval}. Retention rises with tenure, from "
                f"{fmt_percent(self.retention(1), 0)} in the first {period} to "
                f"{fmt_percent(self.retention(horizon), 0)} in {period} {horizon}, because the customers most "
                "likely to leave leave first.")


def _check_horizon(horizon) -> None:
    if not isinstance(horizon, (int, np.integer)) or horizon <= 0:
        raise RetentionInputError(f"horizon {shorten(horizon)} is not a positive whole number of periods",
                                  table="parameters", expected="horizon >= 1")


def _sbg_parametric_bootstrap(alpha, beta, groups: list[tuple[int, int]], n_boot: int, seed: int,
                              T: int) -> np.ndarray:
    """Simulate data sets like the observed one from the fitted model and refit: groups are
    (exposure c, n customers); each customer churns in period t <= c with P(t) or is seen alive at c."""
    rng = np.random.default_rng(seed)
    probs = {}
    for c, _ in groups:
        if c > 0:
            p = sbg_churn_probability(np.arange(1, c + 1), alpha, beta)
            pr = np.r_[p, max(0.0, 1 - p.sum())]
            probs[c] = pr / pr.sum()
    out = []
    for _ in range(n_boot):
        lost = np.zeros(T)
        alive = np.zeros(T + 1)
        for c, n in groups:
            if c == 0:
                alive[0] += n
                continue
            draw = rng.multinomial(n, probs[c])
            lost[:c] += draw[:c]
            alive[c] += draw[c]
        a, b, _, _ = _fit_sbg_counts(lost, alive, start=(np.log(alpha), np.log(beta)))
        if np.isfinite(a) and np.isfinite(b):  # ridge solutions (near-geometric data) are kept, not dropped
            out.append((a, b))
    return np.array(out).reshape(-1, 2)


def fit_sbg(survivors: Sequence[float], n_boot: int = 200, level: float = 0.95, seed: int = 0,
            label: str = "") -> SBGResult:
    """Fit the shifted-beta-geometric model to one cohort's survivor counts.

    ``survivors[t]`` = customers still active at t = 0, 1, ..., T (``survivors[0]`` = cohort size).
    Model (Fader & Hardie 2007, "How to Project Customer Retention", J. Interactive Marketing 21(1)):
    each customer churns at the end of a period with probability theta ~ Beta(alpha, beta), so
    P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta) and S(t) = B(alpha, beta + t) / B(alpha, beta).
    LL = sum_t (n_{t-1} - n_t) log P(T = t) + n_T log S(T), maximised over log(alpha), log(beta) from
    several starting points. Intervals: parametric bootstrap (``n_boot`` refits of data simulated from the
    fit; ``n_boot=0`` skips them).

    Raises :class:`RetentionInputError` for an empty cohort, negative, non-integer or increasing counts,
    and :class:`RetentionModelError` when no start converges.
    """
    s = np.asarray(survivors, dtype="float64")
    if s.ndim != 1 or len(s) < 2:
        raise RetentionInputError("needs survivor counts for at least t = 0 and t = 1", table="survivors",
                                  expected="[cohort size, active after 1 period, ...]")
    if not np.all(np.isfinite(s)):
        raise RetentionInputError("has missing counts", table="survivors",
                                  examples=[int(i) for i in np.where(~np.isfinite(s))[0][:5]],
                                  expected="a count for every period")
    if s[0] <= 0:
        raise RetentionInputError("cohort has size 0 at t = 0", table="survivors",
                                  expected="a cohort with at least one customer")
    if np.any(s < 0):
        raise RetentionInputError("has negative counts", table="survivors", expected="counts >= 0")
    inc = np.where(np.diff(s) > 0)[0]
    if len(inc):
        raise RetentionInputError("increases over time", table="survivors", n_rows=len(inc),
                                  examples=[f"t={i}->{i + 1}: {s[i]:g}->{s[i + 1]:g}" for i in inc[:5]],
                                  expected="a non-increasing count of the same cohort's customers")
    if np.any(np.abs(s - np.round(s)) > 1e-9):
        raise RetentionInputError("has non-integer counts", table="survivors",
                                  expected="numbers of customers (pass counts, not percentages of 1)")
    T = len(s) - 1
    lost = -np.diff(s)
    alive = np.zeros(T + 1)
    alive[T] = s[T]
    if lost.sum() == 0:
        raise RetentionModelError("sBG: nobody in the cohort churned, so alpha and beta are not identified; "
                                  "report the observed retention (100%) instead")
    a, b, ll, ok = _fit_sbg_counts(lost, alive)
    if not ok:
        raise RetentionModelError(f"sBG did not converge from any of 7 starting points (alpha, beta "
                                  f"ended at {a:.3g}, {b:.3g}); the survivor curve may not "
                                  "show the decelerating churn the model describes")
    boot = _sbg_parametric_bootstrap(a, b, [(T, int(s[0]))], n_boot, seed, T) if n_boot else np.empty((0, 2))
    obs = pd.DataFrame({"t": np.arange(T + 1), "survival": s / s[0]})
    return SBGResult(alpha=a, beta=b, loglik=ll, n_customers=int(s[0]), periods_observed=T, boot=boot,
                     level=level, label=label, observed=obs, single_cohort=True)


def fit_sbg_durations(lifetime_periods: Sequence[int], churned: Sequence[int], exposure_periods: Sequence[int],
                      n_boot: int = 200, level: float = 0.95, seed: int = 0, label: str = "") -> SBGResult:
    """Fit the sBG to customers from many cohorts with right-censoring (Fader & Hardie 2007 Appendix).

    For each customer: ``churned`` 1 with ``lifetime_periods`` = t (left in period t, LL term log P(T=t))
    or 0 with ``lifetime_periods`` = c (active after c periods, LL term log S(c)); ``exposure_periods`` =
    how many periods the customer could have been observed (from signup to the as-of date), used by the
    parametric bootstrap to simulate data sets with the same censoring.
    """
    t = np.asarray(lifetime_periods, dtype="int64")
    ev = np.asarray(churned, dtype="int64")
    ex = np.asarray(exposure_periods, dtype="int64")
    if len(t) == 0:
        raise RetentionInputError("has no customers", table="customers", expected="at least one customer")
    if not (len(t) == len(ev) == len(ex)):
        raise RetentionInputError("lifetime, churn flag and exposure have different lengths", table="customers")
    if np.any(t < 0) or np.any(ex < 0):
        raise RetentionInputError("has negative periods", table="customers", expected="periods >= 0")
    if np.any((ev == 1) & (t < 1)):
        raise RetentionInputError("has churned customers with lifetime 0", table="customers",
                                  column="lifetime_periods", expected="churn in period 1 or later")
    T = int(max(t.max(), ex.max(), 1))
    lost = np.bincount(t[ev == 1] - 1, minlength=T)[:T].astype(float)
    alive = np.bincount(t[ev == 0], minlength=T + 1)[:T + 1].astype(float)
    if lost.sum() == 0:
        raise RetentionModelError("sBG: no customer churned, so alpha and beta are not identified")
    a, b, ll, ok = _fit_sbg_counts(lost, alive)
    if not ok:
        raise RetentionModelError(f"sBG did not converge (parameters ran to the bounds: {a:.3g}, {b:.3g})")
    groups = [(int(c), int(n)) for c, n in zip(*np.unique(ex, return_counts=True))]
    boot = _sbg_parametric_bootstrap(a, b, groups, n_boot, seed, T) if n_boot else np.empty((0, 2))
    # observed survival for the chart: discrete-time Kaplan-Meier, prod (1 - churned_t / at_risk_t)
    at_risk = np.array([np.sum(t >= k) for k in range(1, T + 1)], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(at_risk > 0, 1 - lost / at_risk, 1.0)
    km = np.r_[1.0, np.cumprod(step)]
    keep = np.r_[True, at_risk >= 30]
    obs = pd.DataFrame({"t": np.arange(T + 1)[keep], "survival": km[keep]})
    return SBGResult(alpha=a, beta=b, loglik=ll, n_customers=len(t), periods_observed=int(np.median(ex)),
                     boot=boot, level=level, label=label, observed=obs)


@displayable
@dataclass
class SBGGroups:
    """sBG fits per group (segment or signup cohort): ``table`` (one row per group) and ``fits``."""

    table: pd.DataFrame
    fits: dict[str, SBGResult]
    by: str
    skipped: dict[str, str] = field(default_factory=dict)

    def plot(self, ax=None, horizon: int = 24):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        from matplotlib.ticker import PercentFormatter
        for i, (name, fit) in enumerate(self.fits.items()):
            proj = fit.projection(horizon)
            colour, style = SERIES_COLOURS[i % len(SERIES_COLOURS)], SERIES_STYLES[i % len(SERIES_STYLES)]
            ax.plot(proj["t"], proj["survival"], color=colour, linestyle=style, lw=2, label=value_label(name))
            ax.fill_between(proj["t"], proj["ci_low"], proj["ci_high"], color=colour, alpha=0.15)
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_xlabel("Months since signup", fontsize=11)
        ax.set_ylabel("Still a customer, projected (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.set_title(self.title(12), fontsize=12)
        ax.legend(title=column_label(self.by), fontsize=10, title_fontsize=10)
        return ax

    def title(self, horizon: int = 12) -> str:
        col = f"survival_{horizon}"
        if col not in self.table.columns or self.table.empty:
            return f"Projected retention by {column_label(self.by).lower()}"
        best = self.table.loc[self.table[col].idxmax()]
        worst = self.table.loc[self.table[col].idxmin()]
        return (f"After {horizon} months: {fmt_percent(best[col], 0)} of {value_label(best[self.by])} vs "
                f"{fmt_percent(worst[col], 0)} of {value_label(worst[self.by])} customers projected to stay")

    def summary(self, horizon: int = 12) -> str:
        col = f"survival_{horizon}"
        if col not in self.table.columns or self.table.empty:
            return f"No {self.by} had enough customers for an sBG fit."
        best = self.table.loc[self.table[col].idxmax()]
        worst = self.table.loc[self.table[col].idxmin()]
        b_point, b_ci = percent_interval(best[col], best[col + "_low"], best[col + "_high"])
        w_point, w_ci = percent_interval(worst[col], worst[col + "_low"], worst[col + "_high"])
        text = (f"After {horizon} months the sBG expects {b_point} of a new {value_label(best[self.by])} cohort to "
                f"remain (95% CI {b_ci}) against {w_point} for {value_label(worst[self.by])} (95% CI {w_ci}).")
        if self.skipped:
            text += f" Not fitted: {', '.join(f'{value_label(k)} ({v})' for k, v in self.skipped.items())}."
        return text


def fit_sbg_by(frame: pd.DataFrame, by: str = "segment", n_boot: int = 200, min_customers: int = 30,
               horizon: int = 12, seed: int = 0) -> SBGGroups:
    """Fit the sBG separately per value of ``by`` (a segment column, or ``"cohort"`` for signup months) of
    the output of :func:`customer_durations`. Groups with fewer than ``min_customers`` customers, without
    churn, or whose fit does not converge are listed in ``.skipped`` with the reason (never silently
    dropped). ``table``: group, customers, alpha, beta (with bootstrap intervals), S(horizon) with interval."""
    _check_horizon(horizon)
    for col in (by, "lifetime_periods", "sbg_churned", "exposure_periods"):
        if col not in frame.columns:
            raise RetentionInputError(f"has no column {col!r}", table="customers",
                                      expected="the output of customer_durations()")
    rows, fits, skipped = [], {}, {}
    for key, g in frame.groupby(frame[by].astype(str)):
        if len(g) < min_customers:
            skipped[key] = f"{len(g)} customers"
            continue
        try:
            fit = fit_sbg_durations(g["lifetime_periods"], g["sbg_churned"], g["exposure_periods"],
                                    n_boot=n_boot, seed=seed, label=key)
        except KitError as exc:
            skipped[key] = str(exc).split(";")[0]
            continue
        fits[key] = fit
        tab = fit.table
        proj = fit.projection(horizon).iloc[-1]
        rows.append({by: key, "customers": len(g), "alpha": fit.alpha, "alpha_low": tab.loc["alpha", "ci_low"],
                     "alpha_high": tab.loc["alpha", "ci_high"], "beta": fit.beta,
                     "beta_low": tab.loc["beta", "ci_low"], "beta_high": tab.loc["beta", "ci_high"],
                     f"survival_{horizon}": proj["survival"], f"survival_{horizon}_low": proj["ci_low"],
                     f"survival_{horizon}_high": proj["ci_high"]})
    return SBGGroups(table=pd.DataFrame(rows), fits=fits, by=by, skipped=skipped)


def cohort_survivors(frame: pd.DataFrame, min_size: int = 30) -> pd.Series:
    """Survivor counts n_t (t = 0..T) of the customers in ``frame`` (one cohort: output of
    :func:`customer_durations` filtered to a signup window), up to the last period every member could be
    observed (T = min exposure). Raises when the cohort is smaller than ``min_size`` or has T < 2."""
    n = len(frame)
    if n == 0:
        raise RetentionInputError("cohort has size 0", table="customers", expected="a cohort with customers")
    if n < min_size:
        raise RetentionInputError(f"cohort has only {n} customers", table="customers",
                                  expected=f"at least {min_size} for a stable sBG fit")
    T = int(frame["exposure_periods"].min())
    if T < 2:
        raise RetentionInputError(f"cohort can only be followed for {T} period(s)", table="customers",
                                  expected="at least 2 observed periods")
    life = frame["lifetime_periods"].to_numpy()
    ev = frame["sbg_churned"].to_numpy()
    # alive at t  <=>  not churned in periods 1..t
    counts = [int(np.sum(~((ev == 1) & (life <= k)))) for k in range(T + 1)]
    return pd.Series(counts, index=pd.RangeIndex(T + 1, name="t"), name="survivors")


@displayable
@dataclass
class HoldoutResult:
    """A forecast checked on held-out periods: ``table`` with t, actual, predicted, pi_low, pi_high."""

    table: pd.DataFrame
    mape: float
    coverage: float
    level: float
    model: str
    calibration_periods: int
    fit: object = None

    def plot(self, ax=None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        tab = self.table
        cal = tab[~tab["holdout"]]
        hold = tab[tab["holdout"]]
        ax.plot(tab["t"], tab["predicted"], color=SERIES_COLOURS[0], lw=2, label=f"{self.model} forecast")
        ax.fill_between(tab["t"], tab["pi_low"], tab["pi_high"], color=SERIES_COLOURS[0], alpha=0.2,
                        label=f"{self.level:.0%} prediction interval")
        ax.plot(cal["t"], cal["actual"], "o", color="black", ms=4, label="months the model saw")
        ax.plot(hold["t"], hold["actual"], "s", color=HELD_OUT_COLOUR, ms=6, label="held-out months (actual)")
        ax.axvline(self.calibration_periods + 0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("Months since signup", fontsize=11)
        from matplotlib.ticker import PercentFormatter
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_ylabel("Still a customer (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.set_title(f"Held-out check: off by {self.mape:.1f}% on average", fontsize=12)
        ax.legend(fontsize=10)
        return ax

    def summary(self) -> str:
        n = int(self.table["holdout"].sum())
        cov_ok = "as intended" if self.coverage >= self.level - 0.25 else "less often than intended"
        return (f"Checked on {n} held-out periods the model never saw, the {self.model} forecast was off by "
                f"{self.mape:.1f}% on average (MAPE), and the actual values fell inside the {self.level:.0%} "
                f"prediction interval {self.coverage:.0%} of the time ({cov_ok}).")


def sbg_holdout(survivors: Sequence[float], holdout: int, n_boot: int = 200, level: float = 0.95,
                seed: int = 0, label: str = "") -> HoldoutResult:
    """Calibrate the sBG on n_0..n_{T-holdout}, predict n_t for the last ``holdout`` periods.

    The prediction interval of the held-out survivor share combines parameter uncertainty (parametric
    bootstrap draws) and the cohort's own randomness: for each draw, the survivors at the end of
    calibration get theta ~ Beta(alpha, beta + T_cal) (their churn probability given they survived T_cal
    periods) and churn geometrically. MAPE = mean |predicted - actual| / actual x 100 over held-out periods.
    """
    s = np.asarray(survivors, dtype="float64")
    _check_horizon(holdout)
    if len(s) - 1 - holdout < 2:
        raise RetentionInputError(f"holdout of {holdout} periods leaves fewer than 2 to calibrate on",
                                  table="survivors", expected=f"holdout <= {len(s) - 3}")
    Tc = len(s) - 1 - holdout
    fit = fit_sbg(s[:Tc + 1], n_boot=n_boot, level=level, seed=seed, label=label)
    t = np.arange(len(s))
    pred = fit.survival(t)
    rng = np.random.default_rng(seed + 1)
    n_alive = int(s[Tc])
    draws = fit.boot if len(fit.boot) else np.array([[fit.alpha, fit.beta]])
    sims = np.empty((len(draws), holdout))
    for i, (a, b) in enumerate(draws):
        theta = rng.beta(a, b + Tc, size=n_alive)
        k = rng.geometric(np.clip(theta, 1e-12, 1))  # period (after Tc) in which each survivor churns
        sims[i] = [(k > h).sum() for h in range(1, holdout + 1)]
    sims = sims / s[0]
    q = (1 - level) / 2
    lo = np.full(len(s), np.nan)
    hi = np.full(len(s), np.nan)
    proj = fit.projection(len(s) - 1)
    lo[:Tc + 1], hi[:Tc + 1] = proj["ci_low"].to_numpy()[:Tc + 1], proj["ci_high"].to_numpy()[:Tc + 1]
    lo[Tc + 1:], hi[Tc + 1:] = np.quantile(sims, q, axis=0), np.quantile(sims, 1 - q, axis=0)
    actual = s / s[0]
    hold = t > Tc
    mape = float(np.mean(np.abs(pred[hold] - actual[hold]) / actual[hold]) * 100)
    coverage = float(np.mean((actual[hold] >= lo[hold]) & (actual[hold] <= hi[hold])))
    tab = pd.DataFrame({"t": t, "actual": actual, "predicted": pred, "pi_low": lo, "pi_high": hi,
                        "holdout": hold})
    return HoldoutResult(table=tab, mape=mape, coverage=coverage, level=level, model="sBG",
                         calibration_periods=Tc, fit=fit)


# ----------------------------------------------------------------------------------------------------
# Retention-rate time series
# ----------------------------------------------------------------------------------------------------

def monthly_retention_rates(frame: pd.DataFrame, as_of: object = None, by: str | None = None,
                            min_at_risk: int = 20) -> pd.DataFrame:
    """Monthly retention rate: of the customers active at the start of calendar month m, the share still
    active at its end. ``frame`` is the output of :func:`customer_durations`. Returns a tidy table
    (``month`` (Timestamp, month start), [``by``], ``at_risk``, ``churned``, ``retention``); months with
    fewer than ``min_at_risk`` customers at risk are left out (too noisy to forecast from). Only months that
    end on or before ``as_of`` count; an ``as_of`` before the first full month gives an empty table (with the
    same columns), never an error.

    The counts are those of :func:`helpers.engine.aggregates.retention_rate_counts` (one query; here over the
    frame in an in-memory DuckDB), with the frame's ``event`` deciding who churned (on their end date)."""
    for col in ("signup_date", "event", "duration"):
        if col not in frame.columns:
            raise RetentionInputError(f"has no column {col!r}", table="customers",
                                      expected="the output of customer_durations()")
    from helpers.engine import DuckDBEngine  # noqa: PLC0415
    from helpers.engine.aggregates import retention_rate_counts  # noqa: PLC0415

    st = pd.to_datetime(frame["signup_date"])
    end = pd.to_datetime(frame["end_date"]) if "end_date" in frame.columns else pd.Series(pd.NaT, index=frame.index)
    as_of_ts = pd.Timestamp(as_of) if as_of not in (None, "") else max(st.max(), end.max() if end.notna().any()
                                                                      else st.max())
    churn_date = end.where((frame["event"] == 1) & end.notna())
    data = pd.DataFrame({"signup_date": st.to_numpy(), "end_date": churn_date.to_numpy()})
    if by is not None:
        data[by] = frame[by].to_numpy()
    with DuckDBEngine(threads=1) as engine:
        engine.register("customers", data)
        return retention_rate_counts(engine, as_of=as_of_ts, by=by, min_at_risk=min_at_risk)


@displayable
@dataclass
class RateForecast:
    """Retention-rate forecast: ``table`` (month, actual, forecast, pi_low, pi_high, kind) and the
    holdout comparison of the candidate models (``candidates``: model, mape, coverage)."""

    table: pd.DataFrame
    candidates: pd.DataFrame
    model: str
    holdout: HoldoutResult
    level: float
    label: str = ""
    notes: list[str] = field(default_factory=list)

    def plot(self, ax=None):
        from helpers.charts import new_axis
        ax = new_axis(ax)
        hist = self.table[self.table["kind"] == "history"]
        fc = self.table[self.table["kind"] == "forecast"]
        ax.plot(hist["month"], hist["actual"] * 100, "o-", color="black", ms=3, label="monthly retention")
        hold = self.holdout.table[self.holdout.table["holdout"]]
        ax.plot(hold["month"], hold["predicted"] * 100, "--", color=HELD_OUT_COLOUR, lw=2,
                label=f"held-out check ({self.model}, off by {self.holdout.mape:.1f}%)")
        ax.plot(fc["month"], fc["forecast"] * 100, color=SERIES_COLOURS[0], lw=2, label=f"{self.model} forecast")
        ax.fill_between(fc["month"], fc["pi_low"] * 100, fc["pi_high"] * 100, color=SERIES_COLOURS[0], alpha=0.2,
                        label=f"{self.level:.0%} prediction interval")
        ax.set_ylabel("Customers kept in the month (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.set_title(f"Monthly retention is forecast at {fc['forecast'].mean():.1%} on average", fontsize=12)
        ax.legend(fontsize=10)
        return ax

    def summary(self) -> str:
        fc = self.table[self.table["kind"] == "forecast"]
        h = len(fc)
        yearly = float(np.prod(fc["forecast"].iloc[:12]))
        who = f" for {self.label}" if self.label else ""
        txt = (f"Monthly retention{who} is forecast at {fc['forecast'].mean():.1%} on average over the next {h} "
               f"months (95% prediction interval for a single month "
               f"{fmt_interval(fc['pi_low'].min(), fc['pi_high'].max(), 1, percent=True)}); kept up for {min(h, 12)} months that compounds to "
               f"{yearly:.0%} of today's customers. {self.model} was chosen because it was the more accurate "
               f"model on the held-out months. " + self.holdout.summary())
        if self.notes:
            txt += " " + " ".join(self.notes)
        return txt


def _fit_rate_model(kind: str, y: pd.Series):
    import warnings

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.statespace.sarimax import SARIMAX
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ETS":
            return ETSModel(y, error="add", trend=None).fit(disp=False)
        return SARIMAX(y, order=(1, 0, 0), trend="c").fit(disp=False)


def _forecast_frame(res, kind: str, steps: int, level: float) -> pd.DataFrame:
    if kind == "ETS":
        sf = res.get_prediction(start=res.nobs, end=res.nobs + steps - 1).summary_frame(alpha=1 - level)
        return pd.DataFrame({"forecast": sf["mean"].to_numpy(), "pi_low": sf["pi_lower"].to_numpy(),
                             "pi_high": sf["pi_upper"].to_numpy()})
    fc = res.get_forecast(steps)
    ci = np.asarray(fc.conf_int(alpha=1 - level))
    return pd.DataFrame({"forecast": np.asarray(fc.predicted_mean), "pi_low": ci[:, 0], "pi_high": ci[:, 1]})


def forecast_retention_rate(rates: pd.DataFrame, horizon: int, holdout: int = 6, level: float = 0.95,
                            label: str = "") -> RateForecast:
    """Forecast a monthly retention-rate series (``month``, ``retention``; one segment).

    Candidates: ETS(A,N,N) (statsmodels ``ETSModel``; simple exponential smoothing with additive
    errors) and SARIMAX AR(1) with a constant (statsmodels ``SARIMAX``; mean-reverting). Each is fitted
    on all but the last ``holdout`` months and scored on them (MAPE, interval coverage); the lower-MAPE
    model is refitted on the whole series and forecasts ``horizon`` months with prediction intervals
    (clipped to 0-100%). When a candidate fails to fit, the other is used and the fallback is noted.
    """
    _check_horizon(horizon)
    _check_horizon(holdout)
    if not {"month", "retention"} <= set(rates.columns):
        raise RetentionInputError("needs columns 'month' and 'retention'", table="retention rates",
                                  expected="the output of monthly_retention_rates()")
    r = rates.sort_values("month")
    if r["retention"].isna().any():
        raise RetentionInputError("has missing retention rates", table="retention rates", column="retention",
                                  n_rows=int(r["retention"].isna().sum()), expected="a rate for every month")
    if len(r) < holdout + 8:
        raise RetentionInputError(f"has {len(r)} months, too few for a {holdout}-month holdout",
                                  table="retention rates", expected=f"at least {holdout + 8} months")
    y = pd.Series(r["retention"].to_numpy("float64"))
    months = pd.DatetimeIndex(r["month"])
    train, test = y.iloc[:-holdout], y.iloc[-holdout:]
    cands, notes, fitted = [], [], {}
    for kind in ("ETS", "SARIMAX"):
        try:
            res = _fit_rate_model(kind, train.reset_index(drop=True))
            fc = _forecast_frame(res, kind, holdout, level)
            if not np.all(np.isfinite(fc.to_numpy())):
                raise ValueError("non-finite forecast")
        except Exception as exc:  # noqa: BLE001 - a failed candidate is reported, not hidden
            notes.append(f"{kind} could not be fitted ({type(exc).__name__}); the other model was used.")
            continue
        mape = float(np.mean(np.abs(fc["forecast"].to_numpy() - test.to_numpy()) / test.to_numpy()) * 100)
        cov = float(np.mean((test.to_numpy() >= fc["pi_low"].to_numpy()) & (test.to_numpy() <= fc["pi_high"].to_numpy())))
        cands.append({"model": kind, "mape": mape, "coverage": cov})
        fitted[kind] = fc
    if not cands:
        raise RetentionModelError("neither ETS nor SARIMAX could be fitted to the retention-rate series: "
                                  + " ".join(notes))
    cand = pd.DataFrame(cands).sort_values("mape").reset_index(drop=True)
    best = cand.loc[0, "model"]
    hfc = fitted[best]
    htab = pd.DataFrame({"t": np.arange(len(y)), "month": months, "actual": y.to_numpy(),
                         "predicted": np.r_[np.full(len(train), np.nan), hfc["forecast"].to_numpy()],
                         "pi_low": np.r_[np.full(len(train), np.nan), hfc["pi_low"].to_numpy()],
                         "pi_high": np.r_[np.full(len(train), np.nan), hfc["pi_high"].to_numpy()],
                         "holdout": np.r_[np.zeros(len(train), bool), np.ones(holdout, bool)]})
    hres = HoldoutResult(table=htab, mape=float(cand.loc[0, "mape"]), coverage=float(cand.loc[0, "coverage"]),
                         level=level, model=best, calibration_periods=len(train))
    try:
        full = _fit_rate_model(best, y)
        fc = _forecast_frame(full, best, horizon, level)
    except Exception as exc:  # noqa: BLE001
        raise RetentionModelError(f"{best} fitted on the holdout split but not on the full series: {exc}") from exc
    fc = fc.clip(0, 1)
    future = pd.date_range(months[-1] + pd.offsets.MonthBegin(1), periods=horizon, freq="MS")
    hist = pd.DataFrame({"month": months, "actual": y.to_numpy(), "forecast": np.nan, "pi_low": np.nan,
                         "pi_high": np.nan, "kind": "history"})
    fut = pd.DataFrame({"month": future, "actual": np.nan, **{c: fc[c].to_numpy() for c in fc.columns},
                        "kind": "forecast"})
    table = pd.concat([hist, fut], ignore_index=True)
    return RateForecast(table=table, candidates=cand, model=best, holdout=hres, level=level, label=label,
                        notes=notes)


def monthly_discount_rate(annual_rate: float) -> float:
    """Monthly rate equivalent to an annual discount rate: (1 + annual)^(1/12) - 1."""
    if not np.isfinite(annual_rate) or annual_rate <= 0:
        raise RetentionInputError(f"annual discount rate {shorten(annual_rate)} is not positive", table="parameters",
                                  expected="e.g. 0.10 for 10% a year")
    return float((1 + annual_rate) ** (1 / 12) - 1)
