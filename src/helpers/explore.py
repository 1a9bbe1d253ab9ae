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


def nps_group(scores: pd.Series) -> pd.Series:
    """Promoter (9-10), passive (7-8), detractor (0-6) - Reichheld (2003); NaN stays missing."""
    s = pd.to_numeric(scores, errors="coerce")
    groups = np.select([s >= 9, s >= 7, s >= 0], ["promoter", "passive", "detractor"], default="")
    return pd.Series(pd.Categorical(np.where(s.isna(), None, groups),
                                    categories=["detractor", "passive", "promoter"]), index=scores.index)


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
    for g in ["detractor", "passive", "promoter"]:
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
        return ax

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
