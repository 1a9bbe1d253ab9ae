"""The analyst's first look at a dataset: health, distributions and seasonality, each a function that
takes the loaded :class:`helpers.data.Dataset` (or a DataFrame) and returns a tidy table or draws on an axis.

Used by ``notebooks/exploratory/satisfaction_explorer.ipynb``; KPIs with intervals come from
:mod:`helpers.kpis`, drivers from :mod:`helpers.drivers_analysis`, survival from :mod:`helpers.retention`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.charts import ACCENT, PALETTE, new_axis
from helpers.data import quote_ident
from helpers.errors import KitError
from helpers.kpis import NPS_GROUPS, nps_group  # noqa: F401 - nps_group: the kit's one definition, used here
from helpers.results import displayable

# the date column that places each table's rows in time
DATE_COLUMNS = {"customers": "signup_date", "responses": "response_date", "tickets": "created_at"}


def table_overview(dataset) -> pd.DataFrame:
    """One row per table: rows, first and last date, and the share of missing answers in its survey and
    timing columns (computed in DuckDB, so it stays fast on millions of rows)."""
    rows = []
    for table in getattr(dataset, "tables", ("customers", "responses", "tickets", "org")):  # present (issue 12)
        n = dataset.count(table)
        first = last = None
        date_col = DATE_COLUMNS.get(table)
        if date_col and n:
            first, last = dataset.con.execute(
                f'SELECT CAST(min({quote_ident(date_col)}) AS DATE), CAST(max({quote_ident(date_col)}) AS DATE) FROM {table}').fetchone()
        rows.append({"table": table, "rows": n, "first date": first, "last date": last})
    return pd.DataFrame(rows).set_index("table")


def missing_answers(dataset) -> pd.DataFrame:
    """Share of responses with no answer, per survey question (csat, nps, ces, attr_*), most missing first."""
    questions = ["csat", "nps", "ces", *dataset.attributes, "comment"]
    cols = [c for c in questions if c in dataset.columns("responses")]
    sql = ", ".join(f'avg(CASE WHEN {quote_ident(c)} IS NULL THEN 1.0 ELSE 0.0 END)' for c in cols)
    shares = dataset.con.execute(f"SELECT {sql} FROM responses").fetchone()
    out = pd.DataFrame({"question": cols, "missing share": shares}).set_index("question")
    return out.sort_values("missing share", ascending=False)


def plot_rating_distribution(responses: pd.DataFrame, column: str, ax=None):
    """Bar chart of the share of each answer of a rating question (1-5, 0-10, 1-7), with n in the title."""
    ax = new_axis(ax)
    values = pd.to_numeric(responses[column], errors="coerce").dropna()
    if values.empty:
        raise KitError(f"responses: column {column!r} has no answers to plot")
    shares = values.astype(int).value_counts(normalize=True).sort_index()
    ax.bar(shares.index.astype(str), shares.to_numpy() * 100, color=ACCENT)
    ax.set_ylabel("% of answers")
    ax.set_title(f"{column} (n = {len(values):,})")
    return ax


def plot_nps_groups(responses: pd.DataFrame, by: str = "department", ax=None):
    """Stacked horizontal bars: share of detractors, passives and promoters per group (e.g. department)."""
    ax = new_axis(ax)
    groups = nps_group(responses["nps"])
    table = pd.crosstab(responses[by], groups, normalize="index") * 100
    colours = {"detractor": PALETTE["off track"], "passive": "#8c959f", "promoter": PALETTE["on track"]}
    left = np.zeros(len(table))
    for g in NPS_GROUPS:
        vals = table[g].to_numpy() if g in table else np.zeros(len(table))
        ax.barh(table.index.astype(str), vals, left=left, color=colours[g], label=g)
        left += vals
    ax.set_xlabel("% of answers")
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    ax.set_title("NPS groups")
    return ax


def ticket_hours(tickets: pd.DataFrame) -> pd.DataFrame:
    """Long table of first-response and resolution times in hours (kind, department, hours), for plots."""
    created = pd.to_datetime(tickets["created_at"])
    parts = []
    for kind, col in (("first response", "first_response_at"), ("resolution", "resolved_at")):
        hours = (pd.to_datetime(tickets[col]) - created).dt.total_seconds() / 3600
        parts.append(pd.DataFrame({"kind": kind, "department": tickets["department"], "hours": hours}))
    out = pd.concat(parts, ignore_index=True)
    return out[out["hours"].notna()]


def plot_duration_distribution(tickets: pd.DataFrame, kind: str = "resolution", ax=None):
    """Histogram of ticket durations on a log scale (they are heavily right-skewed), with the median."""
    ax = new_axis(ax)
    hours = ticket_hours(tickets)
    hours = hours.loc[(hours["kind"] == kind) & (hours["hours"] > 0), "hours"]
    if hours.empty:
        raise KitError(f"tickets: no {kind} times to plot")
    bins = np.logspace(np.log10(hours.min()), np.log10(hours.max()), 40)
    ax.hist(hours, bins=bins, color=ACCENT, alpha=0.8)
    ax.set_xscale("log")
    median = float(hours.median())
    ax.axvline(median, color=PALETTE["off track"], linestyle="--", label=f"median {median:.1f} h")
    ax.set_xlabel("hours (log scale)")
    ax.set_ylabel("tickets")
    ax.set_title(f"{kind.capitalize()} time (n = {len(hours):,})")
    ax.legend(frameon=False)
    return ax


@displayable
@dataclass(frozen=True)
class Seasonality:
    """STL decomposition (Cleveland et al. 1990, statsmodels ``STL``) of a monthly KPI series:
    value = trend + seasonal + remainder. ``.table`` has one row per month."""
    metric: str
    table: pd.DataFrame

    @property
    def seasonal_amplitude(self) -> float:
        """Peak-to-trough size of the average seasonal pattern, in the KPI's units."""
        profile = self.month_profile()
        return float(profile.max() - profile.min())

    def month_profile(self) -> pd.Series:
        """Average seasonal effect by calendar month (1-12)."""
        return self.table.groupby(self.table["period"].dt.month)["seasonal"].mean()

    def plot(self, ax=None):
        ax = new_axis(ax)
        t = self.table
        ax.plot(t["period"], t["value"], color="#8c959f", marker="o", markersize=3, label="monthly value")
        ax.plot(t["period"], t["trend"], color=ACCENT, linewidth=2, label="trend")
        ax.plot(t["period"], t["trend"] + t["seasonal"], color=PALETTE["at risk"], linestyle="--",
                label="trend + season")
        ax.set_title(f"{self.metric}: trend and seasonality")
        ax.legend(frameon=False, fontsize="small")
        return date_axis(ax)

    def summary(self) -> str:
        profile = self.month_profile()
        months = pd.Series(pd.to_datetime([f"2000-{m:02d}-01" for m in profile.index]).strftime("%B"),
                           index=profile.index)
        amplitude = self.seasonal_amplitude
        size = f"{amplitude:,.0f}" if abs(amplitude) >= 100 else f"{amplitude:.2g}"
        return (f"{self.metric} varies by about {size} from its lowest month "
                f"({months[profile.idxmin()]}) to its highest ({months[profile.idxmax()]}) on average over "
                f"{len(self.table)} months.")


def seasonality(series: pd.DataFrame, metric: str = "value", period: int = 12) -> Seasonality:
    """Decompose a monthly series (columns ``period``, ``value``) with robust STL; needs two full years."""
    from statsmodels.tsa.seasonal import STL  # noqa: PLC0415

    s = series.sort_values("period").dropna(subset=["value"])
    if len(s) < 2 * period:
        raise KitError(f"{metric}: seasonality needs at least {2 * period} months of data, got {len(s)}")
    values = pd.Series(s["value"].to_numpy(float), index=pd.DatetimeIndex(s["period"]))
    fit = STL(values, period=period, robust=True).fit()
    table = pd.DataFrame({"period": s["period"].to_numpy(), "value": values.to_numpy(),
                          "trend": fit.trend.to_numpy(), "seasonal": fit.seasonal.to_numpy(),
                          "remainder": fit.resid.to_numpy()})
    return Seasonality(metric, table)


# ---------------------------------------------------------------------------------------------------------
# The explorer's period, KPI table with changes, and readable dates
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Periods:
    """The period the explorer looks at and the period it is compared with (inclusive days)."""
    start: pd.Timestamp
    end: pd.Timestamp
    compare_start: pd.Timestamp
    compare_end: pd.Timestamp
    note: str = ""

    def describe(self) -> str:
        return (f"Period {self.start.date()} to {self.end.date()}, compared with {self.compare_start.date()} to "
                f"{self.compare_end.date()}{'; ' + self.note if self.note else ''}.")


def last_complete_quarter(last_day) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The last calendar quarter that ends on or before ``last_day``."""
    last = pd.Timestamp(last_day).normalize()
    q = last.to_period("Q")
    if q.end_time.normalize() > last:
        q -= 1
    return q.start_time, q.end_time.normalize()


def explorer_periods(dataset, period_start: str = "", period_end: str = "", compare_start: str = "",
                     compare_end: str = "") -> Periods:
    """The explorer's periods: given dates, or the last complete quarter of the data (latest response or
    ticket date) compared with the quarter before (or, for any other period, the same number of days just
    before it)."""
    note = ""
    if period_start and period_end:
        start, end = pd.Timestamp(period_start), pd.Timestamp(period_end)
    else:
        _, last = dataset.date_range()
        start, end = last_complete_quarter(last)
        note = "the last complete quarter in the data (set period_start/period_end to change it)"
        start = pd.Timestamp(period_start) if period_start else start
        end = pd.Timestamp(period_end) if period_end else end
    if end < start:
        raise KitError(f"period_end {end.date()} is before period_start {start.date()}")
    if compare_start and compare_end:
        cs, ce = pd.Timestamp(compare_start), pd.Timestamp(compare_end)
    elif start == start.to_period("Q").start_time and end == start.to_period("Q").end_time.normalize():
        q = start.to_period("Q") - 1
        cs, ce = q.start_time, q.end_time.normalize()
    else:
        ce = start - pd.Timedelta(days=1)
        cs = ce - (end - start)
    return Periods(start.normalize(), end.normalize(), cs.normalize(), ce.normalize(), note)


@dataclass(frozen=True)
class KpiChanges:
    """KPIs per group for a period with their 95% intervals and n, the same for the comparison period, and the
    tested change (``helpers.kpis.compare_kpi``): says "rose"/"fell" only when significant."""
    table: pd.DataFrame
    periods: Periods
    by: str
    min_responses: int

    def summary(self) -> str:
        t = self.table
        sig = t[t["significant"]]
        better = sig[sig["change"].gt(0) == sig["higher_is_better"]]
        worse = sig[sig["change"].gt(0) != sig["higher_is_better"]]
        return (f"{len(t)} KPI values by {self.by} for {self.periods.start.date()} to {self.periods.end.date()}: "
                f"{len(better)} significantly better and {len(worse)} significantly worse than in "
                f"{self.periods.compare_start.date()} to {self.periods.compare_end.date()}; "
                f"{int(t['small'].sum())} with fewer than {self.min_responses} observations (flagged).")

    def reader_frame(self) -> pd.DataFrame:
        t = self.table
        return pd.DataFrame({
            self.by: t[self.by], "KPI": t["label"], "better": np.where(t["higher_is_better"], "higher", "lower"),
            "value (95% CI)": t["formatted"], "n": t["n"],
            "before": t["before"], "change": t["change_text"],
            "small": np.where(t["small"], f"yes (n < {self.min_responses})", "")})

    def _repr_html_(self) -> str:
        from helpers.formatting import html_escape, reader_table  # noqa: PLC0415

        return (f"<p>{html_escape(self.summary())}</p>"
                + reader_table(self.reader_frame(), formats={"n": "int"},
                               labels={"value (95% CI)": "Value (95% CI)", "better": "Better when",
                                       "before": "Comparison period", "change": "Change (tested)"}))

    def __repr__(self) -> str:
        return f"<KpiChanges [{len(self.table)} rows]: {self.summary()}>"


def kpi_changes(dataset, periods: Periods, by: str = "department", metrics=None,
                min_responses: int = 30) -> KpiChanges:
    """:func:`helpers.kpis.kpi_overview` for the period, plus each value in the comparison period and the tested
    change (:func:`helpers.kpis.compare_kpi`) per group and KPI."""
    from helpers.kpis import KPIError, compare_kpi, kpi_overview  # noqa: PLC0415

    now = kpi_overview(dataset.con, metrics, by=by, start=periods.start, end=periods.end,
                       min_responses=min_responses)
    before, change, p_values, significant, diffs = [], [], [], [], []
    for _, row in now.iterrows():
        try:
            c = compare_kpi(row["metric"], dataset, filters={by: row[by]},
                            period_a=(periods.compare_start, periods.compare_end),
                            period_b=(periods.start, periods.end))
        except KPIError:
            before.append("n/a")
            change.append("no data in the comparison period")
            p_values.append(np.nan)
            significant.append(False)
            diffs.append(np.nan)
            continue
        before.append(c.a.format(label=False))
        sig = c.significant()
        word = ("rose" if c.difference > 0 else "fell") if sig else "no significant change"
        from helpers.formatting import fmt_p_value  # noqa: PLC0415

        change.append(f"{word} ({c.difference:+.1f}; {fmt_p_value(c.p_value, prefix=True)})")
        p_values.append(c.p_value)
        significant.append(sig)
        diffs.append(c.difference)
    out = now.assign(before=before, change_text=change, p_value=p_values, significant=significant, change=diffs)
    return KpiChanges(out, periods, by, min_responses)


def date_axis(ax, maxticks: int = 8):
    """Readable dates on the x axis (at most ``maxticks`` labels, concise: "2025", "Apr", "Jul" ...)."""
    import matplotlib.dates as mdates  # noqa: PLC0415

    locator = mdates.AutoDateLocator(maxticks=maxticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return ax
