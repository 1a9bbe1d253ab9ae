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


# ---------------------------------------------------------------------------------------------------------
# What customers write: comment themes, suggested themes, search (issue 13)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommentThemes:
    """The comments of the explorer's period sorted into the codebook's themes: each theme's share of comments
    with its 95% Wilson interval (:func:`helpers.voice_effects.theme_shares`), the same per ``by`` group, and its
    effect on satisfaction at equal attribute ratings (:func:`helpers.voice_effects.theme_effects`: CSAT points by
    OLS with HC3 intervals, the change in the share of detractors by logistic regression)."""
    periods: Periods
    by: str
    n_responses: int
    shares: object            # helpers.voice_effects.ThemeShares
    by_group: object          # ThemeShares grouped by ``by``
    effects: object | None    # helpers.voice_effects.ThemeEffects (None when it could not be estimated)
    effects_note: str
    unasked: tuple[str, ...]

    def table(self) -> pd.DataFrame:
        """One row per theme: share and interval, mentions, adjusted effects with intervals, whether a rating
        question asks about it."""
        t = self.shares.table.drop(columns=["comments"]).set_index("theme")
        if self.effects is not None:
            e = self.effects.table.set_index("theme")
            for c in ("csat_adjusted", "csat_adjusted_low", "csat_adjusted_high", "detractor_change",
                      "detractor_change_low", "detractor_change_high"):
                t[c] = e[c]
        t["unasked"] = [name in self.unasked for name in t.index]
        return t.reset_index()

    def summary(self) -> str:
        p = self.periods
        if self.shares.n_comments == 0:
            return f"No comments between {p.start.date()} and {p.end.date()}."
        text = (f"{self.shares.n_comments:,} of {self.n_responses:,} responses between {p.start.date()} and "
                f"{p.end.date()} have a comment. {self.shares.summary()}")
        if self.effects is not None:
            text += " " + self.effects.summary()
        elif self.effects_note:
            text += " " + self.effects_note
        return text

    def reader_frame(self) -> pd.DataFrame:
        from helpers.formatting import fmt_interval  # noqa: PLC0415

        t = self.table()

        def ci(lo, hi, d, percent=False):
            return [fmt_interval(a, b, d, percent=percent, share=False) if np.isfinite(a) and np.isfinite(b)
                    else "n/a" for a, b in zip(lo, hi)]

        out = pd.DataFrame({"Theme": t["label"], "Asked by a rating?": np.where(t["unasked"], "no", "yes"),
                            "Share of comments (%)": t["share"], "95% CI": ci(t["ci_low"], t["ci_high"], 1, True),
                            "Mentions": t["mentions"]})
        if "csat_adjusted" in t:
            out["CSAT when mentioned, same ratings (points)"] = t["csat_adjusted"]
            out["95% CI "] = ci(t["csat_adjusted_low"], t["csat_adjusted_high"], 2)
            out["Detractor share change (points)"] = t["detractor_change"]
            out["95% CI  "] = ci(t["detractor_change_low"], t["detractor_change_high"], 0)
        return out

    def by_group_frame(self) -> pd.DataFrame:
        """Theme x group: the share of the group's comments mentioning the theme, with the mentions."""
        t = self.by_group.table
        if t.empty:
            return pd.DataFrame()
        cells = [f"{s:.0f}% ({m:,})" for s, m in zip(t["share"], t["mentions"])]
        wide = t.assign(cell=cells).pivot(index="label", columns=self.by, values="cell")
        order = self.shares.table["label"].tolist()
        wide = wide.reindex([x for x in order if x in wide.index]).fillna("n/a")
        wide.columns = [str(c) for c in wide.columns]
        return wide.reset_index().rename(columns={"label": "Theme"})

    def _repr_html_(self) -> str:
        from helpers.formatting import fmt_number, html_escape, reader_table  # noqa: PLC0415

        if self.shares.n_comments == 0:
            return f"<p>{html_escape(self.summary())}</p>"
        signed = {c: (lambda v, d=d: fmt_number(v, d, signed=True)) for c, d in
                  (("CSAT when mentioned, same ratings (points)", 2), ("Detractor share change (points)", 0))}
        frame = self.reader_frame()
        main = reader_table(frame, formats={"Share of comments (%)": "number:1", "Mentions": "int", **signed},
                            labels={c: c.strip() for c in frame.columns})
        groups = self.by_group_frame()
        by = (f"<p>Share of each {html_escape(self.by)}'s comments that mention the theme (mentions):</p>"
              + reader_table(groups, labels={c: c for c in groups.columns})) if len(groups) else ""
        return f"<p>{html_escape(self.summary())}</p>{main}{by}"

    def __repr__(self) -> str:
        return f"<CommentThemes [{len(self.shares.table)} themes]: {self.summary()}>"

    def plot(self, ax=None):
        return self.shares.plot(ax=ax)


def comment_themes(dataset, periods: Periods, codebook, by: str = "department",
                   min_mentions: int = 10) -> CommentThemes:
    """The codebook's themes in the comments of ``periods`` (start to end): shares with 95% intervals, per
    ``by`` (a responses column), and adjusted effects on CSAT and on the share of detractors. ``codebook``: a
    :class:`helpers.voice.Codebook` (``helpers.voice_report.load_themes()`` reads params/themes.yaml)."""
    from helpers.voice import _as_codebook  # noqa: PLC0415
    from helpers.voice_effects import theme_effects, theme_shares  # noqa: PLC0415

    cb = _as_codebook(codebook, "comment themes")
    start, end = periods.start, periods.end
    if by not in dataset.columns("responses"):
        raise KitError(f"comment themes: responses have no column {by!r}; group by one of "
                       f"{', '.join(c for c in dataset.columns('responses') if not c.startswith('attr_'))}")
    n = int(dataset.con.execute("SELECT count(*) FROM responses WHERE CAST(response_date AS DATE) BETWEEN "
                                "CAST(? AS DATE) AND CAST(? AS DATE)", [start.date(), end.date()]).fetchone()[0])
    shares = theme_shares(dataset, cb, start, end)
    by_group = theme_shares(dataset, cb, start, end, by=by)
    effects, note = None, ""
    if shares.n_comments:
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                effects = theme_effects(dataset, cb, start, end, min_mentions=min_mentions)
            except (KitError, ValueError, np.linalg.LinAlgError) as exc:
                note = f"Theme effects could not be estimated: {exc}"
    return CommentThemes(periods, by, n, shares, by_group, effects, note, tuple(cb.unasked))


@dataclass(frozen=True)
class ThemeSuggestions:
    """Suggested themes for the codebook from the period's comments (:func:`helpers.voice.suggest_themes`:
    TF-IDF + NMF, seeded), each with its top terms, three representative comments, how much of it an existing
    theme already covers, and a codebook entry to paste into ``params/themes.yaml`` (:meth:`yaml_snippet`)."""
    suggested: object         # helpers.voice.SuggestedThemes
    periods: Periods
    labels: dict

    @property
    def table(self) -> pd.DataFrame:
        return self.suggested.table

    def summary(self) -> str:
        return self.suggested.summary()

    def phrases(self, i: int, n_terms: int = 6) -> list[str]:
        """The phrases of suggestion ``i`` for a codebook entry: its top terms that occur as written in at least
        one of its representative comments (the model drops stop words, so a bigram such as "crashed login" may
        not be a phrase anyone wrote), else its top single words."""
        from helpers.voice import normalise_text  # noqa: PLC0415

        row = self.table.iloc[i]
        examples = [" " + x + " " for x in normalise_text(row["examples"])]
        terms = [str(t) for t in row["top_terms"]]
        written = [t for t in terms if any(" " + " ".join(normalise_text([t])) + " " in x for x in examples)]
        chosen = written or [t for t in terms if " " not in t] or terms
        return chosen[:n_terms]

    def yaml_snippet(self, i: int) -> str:
        """A codebook entry for suggestion ``i`` to paste under ``themes:`` in params/themes.yaml (then rename
        it, write a label readers understand, trim the phrases and add ``rating:`` when a rating question
        already asks about it)."""
        import json  # noqa: PLC0415

        from helpers.formatting import slug  # noqa: PLC0415

        phrases = self.phrases(i)
        name = slug("_".join(phrases[:2])) or f"theme_{i + 1}"
        name = ("suggested_" + name)[:63].rstrip("_")
        label = "Suggested: " + ", ".join(phrases[:3])
        quoted = ", ".join(json.dumps(p, ensure_ascii=False) for p in phrases)  # JSON strings are YAML strings
        return (f"  {name}:\n    label: {json.dumps(label, ensure_ascii=False)}\n"
                f"    description: {json.dumps('suggested from the comments; edit before use', ensure_ascii=False)}"
                f"\n    any: [{quoted}]\n")

    def _repr_html_(self) -> str:
        from helpers.formatting import fmt_number, html_escape  # noqa: PLC0415

        parts = [f"<p>{html_escape(self.summary())}</p>"]
        for i, r in self.table.iterrows():
            overlap = r.get("overlap", np.nan)
            closest = self.labels.get(r.get("closest_theme"), "")
            cover = (f"{fmt_number(100 * overlap, 0)}% of its comments are already in “{html_escape(closest)}”"
                     if closest and np.isfinite(overlap) else "no codebook theme covers it")
            new = " <strong>(new: mostly outside the codebook)</strong>" if not (np.isfinite(overlap)
                                                                                  and overlap >= 0.5) else ""
            examples = "".join(f"<li>“{html_escape(x)}”</li>" for x in r["examples"][:3])
            parts.append(f"<h4>{i + 1}. {html_escape(', '.join(r['top_terms'][:8]))}{new}</h4>"
                         f"<p>{fmt_number(100 * r['share'], 0)}% of the {self.suggested.n_sample:,} comments "
                         f"analysed; {cover}. Representative comments:</p><ul>{examples}</ul>"
                         f"<p>To promote it, paste under <code>themes:</code> in <code>params/themes.yaml</code>:"
                         f"</p><pre>{html_escape(self.yaml_snippet(i))}</pre>")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"<ThemeSuggestions [{len(self.table)} suggestions]: {self.summary()}>"


def suggest_comment_themes(dataset, periods: Periods, codebook, n_themes: int = 6, seed: int = 0,
                           department: str | None = None) -> ThemeSuggestions:
    """Suggested themes (:func:`helpers.voice.suggest_themes`, TF-IDF + NMF with ``random_state=seed`` on a
    seeded sample of at most 200,000 comments) of the comments of ``periods``, compared with ``codebook``."""
    import warnings  # noqa: PLC0415

    from helpers.voice import _as_codebook, load_comments, suggest_themes  # noqa: PLC0415

    cb = _as_codebook(codebook, "suggested themes")
    comments = load_comments(dataset, periods.start, periods.end, department)["comment"]
    with warnings.catch_warnings():  # NMF's convergence note: the fit is seeded and bounded
        warnings.simplefilter("ignore")
        suggested = suggest_themes(comments, n_themes=n_themes, seed=seed, codebook=cb)
    return ThemeSuggestions(suggested, periods, cb.labels)


@dataclass(frozen=True)
class CommentSearch:
    """Comments of the period that contain a phrase under the codebook's rules (case, accents and punctuation
    ignored, whole words, ``prefix*``), newest first, without ids; shown escaped."""
    phrase: str
    periods: Periods
    matches: pd.DataFrame
    n_comments: int

    def summary(self) -> str:
        return (f"{len(self.matches):,} of {self.n_comments:,} comments between {self.periods.start.date()} and "
                f"{self.periods.end.date()} contain “{self.phrase}”.")

    def _repr_html_(self) -> str:
        from helpers.formatting import html_escape, reader_table  # noqa: PLC0415

        return (f"<p>{html_escape(self.summary())}</p>"
                + reader_table(self.matches, max_rows=20,
                               formats={"response_date": "date", "csat": "int", "nps": "int"},
                               labels={"response_date": "Answered", "department": "Department",
                                       "csat": "CSAT (1-5)", "nps": "NPS (0-10)", "comment": "Comment"}))

    def __repr__(self) -> str:
        return f"<CommentSearch: {self.summary()}>"


def search_period_comments(dataset, phrase: str, periods: Periods, department: str | None = None) -> CommentSearch:
    """The comments of ``periods`` containing ``phrase`` (:func:`helpers.voice.search_comments`), newest first."""
    from helpers.voice import load_comments, search_comments  # noqa: PLC0415

    comments = load_comments(dataset, periods.start, periods.end, department)
    hit = search_comments(comments["comment"], phrase) if len(comments) else pd.Series([], dtype=bool)
    found = comments[hit.to_numpy()].sort_values("response_date", ascending=False, kind="stable")
    return CommentSearch(str(phrase), periods, found.reset_index(drop=True), len(comments))
