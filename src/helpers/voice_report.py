"""The voice-of-the-customer page and the department pages' "What customers say" section.

:func:`prepare_voice_report` loads the data once (:func:`helpers.reports.loader.load_report_inputs`) and builds a
:class:`VoiceReport`: for the comments of the period (default: the 12 months up to the as-of date, as on the
department pages)

- each codebook theme's share of comments with its 95% Wilson interval, and its trend: the latest month against
  the one before with the KPIs' test (:func:`helpers.voice_effects.theme_trends`), and when it started (and
  stopped) over the whole history (epidemic change point);
- its effect on satisfaction adjusted for the attribute ratings: CSAT points (OLS, HC3 interval), the odds of
  being a detractor and the change in the share of detractors among the responses that mention it (logistic
  regression; :func:`helpers.voice_effects.theme_effects`); which *unasked* theme (no ``rating`` in the
  codebook) costs the most satisfaction;
- suggested themes (TF-IDF + NMF) with top terms and three representative comments, sentiment (VADER);
- the closed loop: unhappy customers with a comment (NPS 0-6 or CSAT 1) of the period's last month, per team,
  and "contacted within N hours" when the responses carry a follow-up time (``followed_up_at``), else a sentence
  saying what is missing.

Privacy: a company-wide page (``department = "all"``) shows the follow-up list as counts per team only (no ids,
no comment tied to a customer); a department page lists the customers with their comments, and customer /
response ids only when ``show_customer_ids: true`` in ``params/report.yaml``. Example comments elsewhere are
the most frequent texts of a theme, without date, team or id.

Every text from data or params is escaped: tables go through :func:`helpers.formatting.reader_table` (HTML
escaping), Markdown through :func:`helpers.formatting.md_escape`, lists of comments through
:func:`helpers.formatting.html_escape`.

:func:`what_customers_say` is the short section a department page shows (top themes with share, change and
effect, three example comments).

Memory follows the answer (issue 14): everything is counted by the report's engine
(:func:`helpers.engine.open_report_engine`: DuckDB by default, Spark through SQLGlot with the portable matcher);
the effects are fitted on distinct answer patterns with counts (:func:`helpers.voice_effects.theme_effect_patterns`,
equal to the row fit); rows are read only where the text analysis needs them (tone, emerging and suggested
themes: a seeded sample of at most ``TEXT_SAMPLE`` comments, stated on the page) and where a person reads a list
(the follow-up and call-back lists: ``ORDER BY`` + ``LIMIT`` with the total counted). The window's aggregates
for every department (:func:`window_themes`) are computed once per run and data (issue 16) and shared by the
department pages and the voice page.
"""
from __future__ import annotations

import warnings as _warnings
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.errors import KitError
from helpers.kpis import NPS_DETRACTOR_MAX
from helpers.formatting import (chart_text, fmt_estimate, fmt_interval, fmt_number, fmt_p_value, html_escape,
                                md_escape, reader_table, shorten, slug)
from helpers.voice_effects import TEXT_SAMPLE  # the most comments the text analyses read as rows

__all__ = ["VoiceReport", "prepare_voice_report", "ContactKpi", "contact_kpi", "contact_kpi_sql",
           "CustomersSay", "what_customers_say", "WindowThemes", "window_themes", "costliest_unasked", "CallBackList", "customers_to_call_back",
           "FOLLOW_UP_HOURS", "FOLLOW_UP_COLUMN", "THEMES_FILE", "load_themes"]

THEMES_FILE = "params/themes.yaml"  # the kit's codebook of comment themes (params/README.md)

FOLLOW_UP_HOURS = 48
FOLLOW_UP_COLUMN = "followed_up_at"  # optional responses column: when the unhappy customer was contacted
SUGGESTED_THEMES = 8
SEED = 20_261_130


# ------------------------------------------------------------------------------------------------ helpers

def load_themes(path: str = THEMES_FILE):
    """The codebook of comment themes for reports and notebooks: ``params/themes.yaml`` unless ``path`` names
    another file (relative paths from the repository root when not found here), validated
    (:func:`helpers.voice.load_codebook`; a :class:`helpers.errors.ParamsError` names the file, theme and field).
    The analysis functions of :mod:`helpers.voice` / :mod:`helpers.voice_effects` take what it returns as
    ``codebook``."""
    from helpers.config import repo_root
    from helpers.voice import load_codebook

    file = Path(path or THEMES_FILE)
    file = file if file.is_absolute() or file.exists() else repo_root() / file
    try:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return load_codebook(path or THEMES_FILE)  # the loader names the missing file
    if key not in _CODEBOOKS:  # parsed once per file version in this process (a Codebook is immutable)
        _CODEBOOKS.clear()
        _CODEBOOKS[key] = load_codebook(path or THEMES_FILE)
    return _CODEBOOKS[key]


_CODEBOOKS: dict = {}


def _resolve_department(names: list[str], department: str) -> str | None:
    """``"all"`` -> None; a display name or its slug -> the display name; unknown -> KitError naming the choices."""
    if not department or department.strip().lower() == "all":
        return None
    for name in names:
        if department == name or slug(department) == slug(name):
            return name
    raise KitError(f"department {shorten(department)} is not in the data; departments: {', '.join(names)}")


def _signed(x: float, d: int = 2) -> str:
    return fmt_number(x, d, signed=True)


def _ci(low, high, d: int | None = None, percent: bool = False) -> str:
    """An interval for a table cell at a fixed number of decimals (``percent``: values already in %)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return fmt_interval(low, high, d, percent=percent, share=False)


def _table(show: pd.DataFrame, formats: dict, **kwargs) -> str:
    """A reader table whose column names are already the reader's labels."""
    return reader_table(show, formats=formats, labels={c: c.strip() for c in show.columns}, **kwargs)


# ------------------------------------------------------------------------------------------------ contact KPI

@dataclass
class ContactKpi:
    """"Unhappy customers contacted within ``hours`` hours": ``estimate`` (percent, Wilson interval) over the
    ``n`` unhappy responses old enough to judge, or ``missing`` saying why it cannot be computed."""

    hours: int
    estimate: object = None  # helpers.kpis.Estimate
    missing: str = ""

    def markdown(self) -> str:
        if self.estimate is None:
            return f"**Contacted within {self.hours} hours:** not measured. {md_escape(self.missing)}"
        e = self.estimate
        value, ci = fmt_estimate(e.value, e.ci_low, e.ci_high, percent=True, share=False)
        return f"**Contacted within {self.hours} hours:** {value} of unhappy customers (95% CI {ci}, n = {e.n:,})."


def contact_kpi(ds, start, end, hours: int = FOLLOW_UP_HOURS, department: str | None = None,
                nps_max: int = NPS_DETRACTOR_MAX, csat_max: int = 1, engine=None) -> ContactKpi:
    """Share of unhappy responses (NPS ``<= nps_max`` or CSAT ``<= csat_max``) in ``[start, end]`` followed up
    within ``hours`` hours: ``followed_up_at - response_date <= hours`` (response dates have no time of day, so
    the clock starts at the start of the response day). Responses younger than ``hours`` at the end of the
    period are left out (they cannot have failed yet). Wilson interval (:func:`helpers.kpis.proportion`).
    Without a ``followed_up_at`` column in responses, ``missing`` says so.

    Counted by ``engine`` (:func:`helpers.engine.open_report_engine`: DuckDB or Spark; :func:`contact_kpi_sql`),
    without one by DuckDB over the dataset ``ds``."""
    from helpers.engine import DuckDBEngine
    from helpers.kpis import proportion

    has = getattr(ds, "has", None)
    present = has("responses", FOLLOW_UP_COLUMN) if callable(has) else FOLLOW_UP_COLUMN in ds.columns("responses")
    if not present:
        return ContactKpi(hours, None, f"The responses have no {FOLLOW_UP_COLUMN} column (when the customer was "
                                       "contacted after an unhappy answer); add it to the survey export to measure "
                                       "how fast teams close the loop.")
    sql = contact_kpi_sql(start, end, hours, department, nps_max, csat_max)
    if engine is None:
        with DuckDBEngine(ds.con) as duck:
            got = duck.query(sql)
    else:
        got = engine.query(sql)
    k, n = (0 if pd.isna(got[c].iloc[0]) else int(got[c].iloc[0]) for c in ("k", "n"))
    if not n:
        return ContactKpi(hours, None, "No unhappy answers old enough to judge in this period.")
    return ContactKpi(hours, proportion(k, n, metric="contacted_within"))


def contact_kpi_sql(start, end, hours: int = FOLLOW_UP_HOURS, department: str | None = None,
                    nps_max: int = NPS_DETRACTOR_MAX, csat_max: int = 1) -> str:
    """The counts of :func:`contact_kpi` (``k`` followed up in time, ``n`` judged) as one query in the portable
    DuckDB dialect (SQLGlot writes it for Spark): the period's unhappy answers whose day started at least
    ``hours`` hours before the end of ``end`` (that latest start written in as a literal)."""
    from helpers.engine.base import sql_literal
    from helpers.voice_effects import _and

    end_day = pd.Timestamp(end).normalize()
    latest = end_day + pd.Timedelta(days=1) - pd.Timedelta(hours=int(hours))
    where = _and(f"CAST(response_date AS DATE) BETWEEN {sql_literal(pd.Timestamp(start).normalize())} AND "
                 f"{sql_literal(end_day)}",
                 f"nps <= {int(nps_max)} OR csat <= {int(csat_max)}",
                 f"CAST(response_date AS TIMESTAMP) <= CAST({sql_literal(latest)} AS TIMESTAMP)",
                 f"department = {sql_literal(str(department))}" if department is not None else "")
    return (f"SELECT CAST(coalesce(count_if(followed_up_at IS NOT NULL AND CAST(followed_up_at AS TIMESTAMP) <= "
            f"CAST(response_date AS TIMESTAMP) + INTERVAL {int(hours)} HOUR), 0) AS BIGINT) AS k, count(*) AS n "
            f"FROM responses WHERE {where}")


# ------------------------------------------------------------------------------------------------ the page

@dataclass
class VoiceReport:
    department: str = "all"
    period: tuple[str, str] = ("", "")
    as_of: str = ""
    company: str = ""
    source: str = ""
    show_customer_ids: bool = False
    codebook: object = None
    n_comments: int = 0
    n_responses: int = 0
    shares: object = None          # helpers.voice_effects.ThemeShares
    trends: object = None          # ThemeTrends over the whole history up to the period's end
    effects: object = None         # ThemeEffects over the period
    suggested: object = None       # helpers.voice.SuggestedThemes (of what is new, else of all comments)
    emerging: object = None        # helpers.voice.EmergingThemes (the period against the history before it)
    verbatims: pd.DataFrame | None = None
    sentiment: pd.DataFrame | None = None
    follow_up: object = None       # FollowUpList of the period's last month (bounded: FOLLOW_UP_ROWS rows, total)
    contact: ContactKpi | None = None
    text_sample: tuple[int, int] = (0, 0)     # comments of the period read as rows for the text analyses, of all
    history_sample: tuple[int, int] = (0, 0)  # the same for the comments before the period (emerging themes)
    seed: int = 0
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ basics
    @property
    def company_wide(self) -> bool:
        return self.department.lower() == "all"

    @property
    def who(self) -> str:
        return "all departments" if self.company_wide else self.department

    @property
    def title(self) -> str:
        return f"Voice of the customer: {self.who}"

    @property
    def ok(self) -> bool:
        return self.shares is not None and self.n_comments > 0

    def theme_table(self) -> pd.DataFrame:
        """One row per codebook theme: share and interval, the latest month's change, the onset, the adjusted
        effects, mean sentiment, whether a rating question asks about it."""
        if not self.ok:
            return pd.DataFrame()
        t = self.shares.table.set_index("theme")[["label", "mentions", "comments", "share", "ci_low", "ci_high"]]
        if self.trends is not None and len(self.trends.changes):
            ch = self.trends.changes.set_index("theme")[["difference", "p_value", "significant"]]
            t = t.join(ch)
        if self.trends is not None and len(self.trends.onsets):
            on = self.trends.onsets.set_index("theme")
            t["onset"] = on["onset"].where(on["significant"])
            t["end"] = on["end"].where(on["significant"])
        if self.effects is not None:
            e = self.effects.table.set_index("theme").drop(columns=["label", "mentions"])
            t = t.join(e)
        t["unasked"] = [self.codebook[n].unasked for n in t.index]
        t["rating"] = [self.codebook[n].rating for n in t.index]
        return t.reset_index()

    def costliest_unasked(self) -> pd.Series | None:
        """The unasked theme with the most negative adjusted CSAT effect whose interval excludes 0 (else None)."""
        t = self.theme_table()
        if t.empty or "csat_adjusted" not in t:
            return None
        cand = t[t["unasked"] & (t["csat_adjusted_high"] < 0)].sort_values("csat_adjusted")
        return None if cand.empty else cand.iloc[0]

    # ------------------------------------------------------------------ text
    def headline(self) -> str:
        """One plain sentence for the index page."""
        if not self.ok:
            return "No comments to analyse in this period."
        r = self.costliest_unasked()
        if r is None:
            top = self.shares.table.iloc[0]
            return (f"{self.n_comments:,} comments; most mentioned: {top['label']} ({top['share']:.0f}% of "
                    "comments); no theme outside the rating questions costs significant satisfaction.")
        return (f"{r['label']}, which no rating question asks about, costs the most satisfaction: "
                f"{abs(r['csat_adjusted']):.2f} CSAT points lower for the responses mentioning it "
                f"(95% CI {abs(r['csat_adjusted_high']):.2f} to {abs(r['csat_adjusted_low']):.2f}).")

    @property
    def sampled(self) -> bool:
        """True when the text analyses read a seeded sample instead of every comment."""
        return self.text_sample[0] < self.text_sample[1] or self.history_sample[0] < self.history_sample[1]

    def sample_note(self) -> str:
        """One sentence naming the sample the tone, emerging and suggested themes are computed on (its size and
        the population), or "" when they read every comment."""
        if not self.sampled:
            return ""
        (n, pop), (hn, hpop) = self.text_sample, self.history_sample
        now = (f"a seeded sample of {n:,} of the period's {pop:,} comments" if n < pop
               else f"all {pop:,} comments of the period")
        before = (f"a seeded sample of {hn:,} of the {hpop:,} earlier comments" if hn < hpop
                  else f"all {hpop:,} earlier comments")
        counted = ("theme shares and trends count every comment (the effects: see below their table)"
                   if getattr(self.effects, "sample_note", "") else "theme shares, trends and effects count every comment")
        return f"Tone, emerging and suggested themes are computed on {now} and {before} (seed {self.seed}); {counted}."

    def headline_markdown(self) -> str:
        lines = [f"**Period:** {md_escape(self.period[0])} to {md_escape(self.period[1])} · "
                 f"**Comments:** {self.n_comments:,} of {self.n_responses:,} survey responses"]
        if self.source:
            lines.append(f"**Data:** {md_escape(self.source)}" + (f", as of {md_escape(self.as_of)}"
                                                                    if self.as_of else ""))
        if self.sample_note():
            lines.append(f"**Sample:** {md_escape(self.sample_note())}")
        if self.warnings:
            lines.append("**Please note:**\n\n" + "\n".join(f"- {md_escape(w)}" for w in self.warnings))
        return "\n\n".join(lines)

    def findings_markdown(self) -> str:
        """At most five findings, each with its number and interval."""
        if not self.ok:
            return "*No comments in this period: nothing to report.*"
        t = self.theme_table()
        out = []
        r = self.costliest_unasked()
        if r is not None:
            text = (f"**{md_escape(r['label'])} costs the most satisfaction of the problems no rating question asks "
                    f"about:** responses that mention it score {fmt_number(abs(r['csat_adjusted']), 2)} CSAT points "
                    f"lower than responses with the same attribute ratings (95% CI "
                    f"{fmt_interval(abs(r['csat_adjusted_high']), abs(r['csat_adjusted_low']), 2)}; "
                    f"{int(r['mentions']):,} mentions)")
            if np.isfinite(r.get("detractor_change", np.nan)):
                text += (f", and {fmt_number(r['detractor_change'], 0)} points more of them are detractors (95% CI "
                         f"{fmt_interval(r['detractor_change_low'], r['detractor_change_high'], 0)})")
            if pd.notna(r.get("onset")):
                text += f"; it started in {pd.Timestamp(r['onset']):%B %Y}"
                if pd.notna(r.get("end")):
                    text += f" and faded in {pd.Timestamp(r['end']):%B %Y}"
            out.append(text + ".")
        top = t.sort_values("share", ascending=False).iloc[0]
        share, ci = fmt_estimate(top["share"], top["ci_low"], top["ci_high"], percent=True, share=False)
        out.append(f"**Most mentioned:** {md_escape(top['label'])}, in {share} of comments (95% CI {ci}).")
        if "significant" in t:
            sig = t[t["significant"].fillna(False).astype(bool)]
            if len(sig):
                parts = [f"{md_escape(x['label'])} {'up' if x['difference'] > 0 else 'down'} "
                         f"{fmt_number(abs(x['difference']), 1)} points ({fmt_p_value(x['p_value'], prefix=True)})"
                         for _, x in sig.iterrows()]
                out.append("**Changed in the latest month** (against the month before, the KPIs' test): "
                           + "; ".join(parts) + ".")
            else:
                out.append("No theme's share changed significantly in the latest month against the month before.")
        if self.sentiment is not None and len(self.sentiment):
            neg = self.sentiment.set_index("tone").loc["negative"]
            n, pop = self.text_sample
            sample = (f" (a seeded sample of {n:,} of {pop:,} comments)" if 0 < n < pop else "")
            share, ci = fmt_estimate(neg["share"], neg["ci_low"], neg["ci_high"], percent=True, share=False)
            out.append(f"**Tone:** {share} of comments are negative (95% CI {ci}), by the VADER sentiment "
                       f"lexicon{sample}.")
        return "\n".join(f"- {x}" for x in out)

    # ------------------------------------------------------------------ tables
    def themes_table_html(self) -> str:
        t = self.theme_table()
        if t.empty:
            return "<p>No comments in this period.</p>"
        t = t.sort_values("share", ascending=False)
        show = pd.DataFrame({
            "Theme": t["label"],
            "Asked by a rating?": [("yes (" + _rating_label(r) + ")") if r else "no" for r in t["rating"]],
            "Share of comments": t["share"],
            "95% CI": [_ci(a, b, 1, percent=True) for a, b in zip(t["ci_low"], t["ci_high"])],
            "Mentions": t["mentions"],
            "Latest month vs before (points)": t.get("difference", pd.Series(np.nan, index=t.index)),
            "p-value": t.get("p_value", pd.Series(np.nan, index=t.index)),
            "Started": [(f"{pd.Timestamp(x):%Y-%m}" if pd.notna(x) else "—") for x in t.get("onset", [None] * len(t))],
            "Went back": [(f"{pd.Timestamp(x):%Y-%m}" if pd.notna(x) else "—") for x in t.get("end", [None] * len(t))],
        })
        return _table(show, formats={"Share of comments": "points:1", "Mentions": "int",
                                           "Latest month vs before (points)": lambda v: _signed(v, 1),
                                           "p-value": "p"})

    def effects_table_html(self) -> str:
        t = self.theme_table()
        if t.empty or "csat_adjusted" not in t:
            return "<p>No effects could be estimated.</p>"
        t = t.sort_values("csat_adjusted", na_position="last")
        show = pd.DataFrame({
            "Theme": t["label"],
            "Asked by a rating?": np.where(t["unasked"], "no", "yes"),
            "CSAT when mentioned, same ratings (points)": t["csat_adjusted"],
            "95% CI": [_ci(a, b, 2) for a, b in zip(t["csat_adjusted_low"], t["csat_adjusted_high"])],
            "Detractor share change (points)": t["detractor_change"],
            "95% CI ": [_ci(a, b, 0) for a, b in zip(t["detractor_change_low"], t["detractor_change_high"])],
            "Odds of detractor (x)": t["detractor_odds_ratio"],
            "95% CI  ": [_ci(a, b, 2) for a, b in zip(t["detractor_odds_ratio_low"], t["detractor_odds_ratio_high"])],
            "Mentions": t["mentions"],
        })
        html = _table(show, formats={"CSAT when mentioned, same ratings (points)": lambda v: _signed(v, 2),
                                           "Detractor share change (points)": lambda v: _signed(v, 0),
                                           "Odds of detractor (x)": "number:2", "Mentions": "int"})
        note = getattr(self.effects, "sample_note", "")
        return html + (f"<p>{html_escape(note)}</p>" if note else "")

    def suggested_markdown(self) -> str:
        """What the suggestions are computed from."""
        e = self.emerging
        if e is not None and e.suggested is not None:
            return (md_escape(e.summary()) + " The topics of those comments (TF-IDF + NMF; "
                    f"{e.suggested.n_sample:,} comments):")
        head = md_escape(e.summary()) + " " if e is not None else ""
        if self.suggested is None:
            return head + "No suggested themes (too few comments)."
        return head + f"Topics of all comments of the period instead ({md_escape(self.suggested.summary())}):"

    def suggested_html(self) -> str:
        """Each suggestion: its top terms, share, the codebook theme it overlaps most, and three representative
        comments (escaped)."""
        if self.suggested is None:
            return "<p>No suggested themes.</p>"
        labels = self.codebook.labels if self.codebook is not None else {}
        parts = []
        for _, r in self.suggested.table.iterrows():
            closest = labels.get(r.get("closest_theme"), "")
            overlap = r.get("overlap", np.nan)
            note = (f"{fmt_number(100 * overlap, 0)}% of its comments are already in the theme "
                    f"“{html_escape(closest)}”" if closest and np.isfinite(overlap) else "no codebook theme covers it")
            new = " <strong>(new: mostly outside the codebook)</strong>" if not (np.isfinite(overlap)
                                                                                  and overlap >= 0.5) else ""
            examples = "".join(f"<li>“{html_escape(x)}”</li>" for x in r["examples"][:3])
            parts.append(f"<div class=\"kit-suggestion\"><p><strong>{html_escape(', '.join(r['top_terms'][:6]))}"
                         f"</strong>{new}: {fmt_number(100 * r['share'], 0)}% of the "
                         f"{self.suggested.n_sample:,} comments analysed; {note}.</p>"
                         f"<ul>{examples}</ul></div>")
        return "".join(parts)

    def examples_html(self, n_themes: int = 5) -> str:
        """The most frequent comments of the most costly / most mentioned themes (no ids, no dates), escaped."""
        if self.verbatims is None or self.verbatims.empty:
            return "<p>No example comments.</p>"
        t = self.theme_table()
        order = t.sort_values(["unasked", "csat_adjusted"], ascending=[False, True])["theme"].tolist()
        parts = []
        for theme in order[:n_themes]:
            v = self.verbatims[self.verbatims["theme"] == theme]
            if v.empty:
                continue
            items = "".join(f"<li>“{html_escape(c)}” <span class=\"kit-muted\">({int(k):,}×)</span></li>"
                            for c, k in zip(v["comment"], v["count"]))
            parts.append(f"<p><strong>{html_escape(v['label'].iloc[0])}</strong></p><ul>{items}</ul>")
        return "".join(parts)

    def sentiment_table_html(self) -> str:
        if self.sentiment is None or self.sentiment.empty:
            return "<p>No sentiment.</p>"
        s = self.sentiment
        show = pd.DataFrame({"Tone": s["tone"], "Comments": s["n"], "Share": s["share"],
                             "95% CI": [_ci(a, b, 1, percent=True) for a, b in zip(s["ci_low"], s["ci_high"])]})
        n, pop = self.text_sample
        note = (f"<p>From a seeded sample of {n:,} of the period's {pop:,} comments (seed {self.seed}); the "
                "intervals are those of the sample.</p>" if 0 < n < pop else "")
        return _table(show, formats={"Comments": "int", "Share": "points:1"}) + note

    def follow_up_markdown(self) -> str:
        if self.follow_up is None:
            return "*No follow-up list.*"
        fu = self.follow_up
        text = md_escape(fu.summary())
        if self.contact is not None:
            text += "\n\n" + self.contact.markdown()
        if self.company_wide:
            text += ("\n\nThis company-wide page shows how many customers each team has to call back, never who "
                     "they are; each department's page lists them.")
        elif not self.show_customer_ids:
            text += ("\n\nCustomer ids are hidden (`show_customer_ids: false` in params/report.yaml); the team finds "
                     "the customer from the date, score and comment in its survey tool.")
        return text

    def follow_up_html(self, max_rows: int = 40) -> str:
        """Company-wide: counts per department and team (counted by the engine). Department: the customers,
        oldest first (ids only when allowed; at most ``max_rows``, the total stated above), every text escaped by
        :func:`helpers.formatting.reader_table`."""
        if self.follow_up is None or not self.follow_up.total:
            return "<p>Nobody to follow up.</p>"
        t = self.follow_up.table
        if self.company_wide:
            if self.follow_up.teams is not None:
                g = self.follow_up.teams
            else:
                g = t.groupby(["department", "team"], dropna=False).agg(
                    customers=("days_waiting", "size"), oldest=("days_waiting", "max"),
                    median_wait=("days_waiting", "median"),
                    open_tickets=("open_tickets", lambda x: int((x > 0).sum())))
                g = g.reset_index().sort_values(["customers", "oldest"], ascending=False)
            return reader_table(g, labels={"customers": "Customers to call back", "oldest": "Oldest (days waiting)",
                                           "median_wait": "Median days waiting",
                                           "open_tickets": "With an open ticket"},
                                formats={"customers": "int", "oldest": "int", "median_wait": "number:0",
                                         "open_tickets": "int"})
        cols = ["team", "owner", "response_date", "days_waiting", "csat", "nps", "themes", "comment", "open_tickets"]
        if self.show_customer_ids:
            cols = ["customer_id", "response_id"] + cols
        labels = {"team": "Team", "owner": "Owner (last agent)", "response_date": "Answered",
                  "days_waiting": "Days waiting", "csat": "CSAT (1-5)", "nps": "NPS (0-10)", "themes": "Themes",
                  "comment": "Comment", "open_tickets": "Open tickets", "customer_id": "Customer",
                  "response_id": "Response"}
        html = reader_table(t[cols], labels=labels, max_rows=max_rows,
                            formats={"response_date": "date", "days_waiting": "int", "csat": "int", "nps": "int",
                                     "themes": lambda v: ", ".join(v) if isinstance(v, (list, tuple)) else "",
                                     "open_tickets": "int"})
        shown = min(len(t), max_rows)
        if self.follow_up.total > shown and len(t) <= max_rows:  # a bounded list: the total from the engine
            html += (f'<p class="kit-table-more">Showing the first {fmt_number(shown)} of '
                     f"{fmt_number(self.follow_up.total)} rows.</p>")
        return html

    # ------------------------------------------------------------------ charts
    def plot_shares(self, ax=None):
        import matplotlib.pyplot as plt

        t = self.shares.table.sort_values("share")
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.4 * len(t) + 1.4))
        unasked = set(self.codebook.unasked)
        colours = ["#CC6677" if th in unasked else "#4477AA" for th in t["theme"]]
        y = np.arange(len(t))
        ax.barh(y, t["share"], color=colours, alpha=0.85)
        from helpers.voice_effects import _nonnegative_errors

        ax.errorbar(t["share"], y, xerr=_nonnegative_errors(t["share"], t["ci_low"], t["ci_high"]), fmt="none",
                    ecolor="black", capsize=3, lw=1)
        ax.set_yticks(y, [chart_text(x) + (" *" if th in unasked else "") for x, th in zip(t["label"], t["theme"])])
        ax.set_xlabel("% of comments mentioning the theme (95% CI)")
        top = t.iloc[-1]
        ax.set_title(chart_text(f"{top['label']} is mentioned most: {top['share']:.0f}% of comments"), loc="left")
        ax.text(0.99, 0.02, "* no rating question asks about it", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=9)
        return ax

    def alt_shares(self) -> str:
        t = self.shares.table
        return ("Share of comments per theme with 95% intervals: " + "; ".join(
            f"{r.label} {r.share:.1f}%" for r in t.itertuples()) + ".")

    def plot_effects(self, ax=None):
        import matplotlib.pyplot as plt

        t = self.theme_table().dropna(subset=["csat_adjusted"]).sort_values("csat_adjusted", ascending=False)
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.4 * len(t) + 1.4))
        y = np.arange(len(t))
        colours = np.where(t["unasked"], "#CC6677", "#4477AA")
        from helpers.voice_effects import _nonnegative_errors

        for yi, (_, r), c in zip(y, t.iterrows(), colours):
            ax.errorbar(r["csat_adjusted"], yi, xerr=_nonnegative_errors([r["csat_adjusted"]], [r["csat_adjusted_low"]],
                                                                [r["csat_adjusted_high"]]),
                        fmt="o" if r["unasked"] else "s", color=c, ecolor="#555555", capsize=3)
        ax.set_yticks(y, [chart_text(x) + (" *" if u else "") for x, u in zip(t["label"], t["unasked"])])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("CSAT difference when mentioned, same attribute ratings (points on 1-5, 95% CI)")
        r = self.costliest_unasked()
        title = (f"{r['label']} costs the most satisfaction of the unasked problems" if r is not None
                 else "What each comment theme costs in satisfaction")
        ax.set_title(chart_text(title), loc="left")
        ax.text(0.01, 0.02, "* no rating question asks about it (circles)", transform=ax.transAxes, fontsize=9)
        return ax

    def alt_effects(self) -> str:
        t = self.theme_table().dropna(subset=["csat_adjusted"]).sort_values("csat_adjusted")
        return ("Adjusted CSAT difference per theme with 95% intervals: " + "; ".join(
            f"{r.label} {r.csat_adjusted:+.2f} ({r.csat_adjusted_low:+.2f} to {r.csat_adjusted_high:+.2f})"
            for r in t.itertuples()) + ".")

    def plot_trends(self, ax=None, n: int = 3):
        """Monthly share of the unasked themes (the most costly ``n``) over the whole history, with intervals
        and the detected onset marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 4.2))
        t = self.theme_table()
        themes = t[t["unasked"]].sort_values("csat_adjusted")["theme"].head(n).tolist()
        markers = ["o", "s", "^", "D"]
        for i, theme in enumerate(themes):
            g = self.trends.table[self.trends.table["theme"] == theme]
            line, = ax.plot(g["period"], g["share"], marker=markers[i % 4], ms=4, label=chart_text(g["label"].iloc[0]))
            ax.fill_between(g["period"], g["ci_low"], g["ci_high"], alpha=0.15, color=line.get_color())
            on = t.set_index("theme").loc[theme, "onset"] if "onset" in t else None
            if on is not None and pd.notna(on):
                ax.axvline(on, color=line.get_color(), ls="--", lw=1)
        ax.set_ylabel("% of comments (95% CI)")
        ax.set_xlabel("Month (dashed: detected start)")
        ax.legend(fontsize=9, loc="upper left")
        first = t[t["theme"] == themes[0]].iloc[0] if themes else None
        title = "Problems no rating question asks about, month by month"
        if first is not None and pd.notna(first.get("onset")):
            title = f"{first['label']} appeared in {pd.Timestamp(first['onset']):%B %Y}"
        ax.set_title(chart_text(title), loc="left")
        return ax

    def alt_trends(self) -> str:
        t = self.theme_table()
        parts = []
        for _, r in t[t["unasked"]].sort_values("csat_adjusted").head(3).iterrows():
            when = f"started {pd.Timestamp(r['onset']):%Y-%m}" if pd.notna(r.get("onset")) else "no clear start"
            parts.append(f"{r['label']} ({when})")
        return "Monthly share of comments for the unasked themes: " + "; ".join(parts) + "."

    def expected_charts(self) -> int:
        return 3 if self.ok and self.trends is not None and not self.trends.table.empty else (2 if self.ok else 0)


def _rating_label(rating: str) -> str:
    from helpers.formatting import column_label

    return column_label(rating)


# ------------------------------------------------------------------------------------------------ preparing

def _period(ds, as_of: str, period_start: str, period_end: str) -> tuple[str, str, str]:
    from helpers.drivers_report import department_window

    default_end = pd.Timestamp(as_of) if as_of else (ds.as_of if getattr(ds, "as_of", None) is not None
                                                     else ds.default_as_of())
    end = pd.Timestamp(period_end) if period_end else default_end
    if as_of and pd.Timestamp(as_of) < end:
        end = pd.Timestamp(as_of)
    start = period_start or department_window(end)[0]
    return str(pd.Timestamp(start).date()), str(end.date()), str(pd.Timestamp(as_of or default_end).date())


def _sentiment_table(scores: pd.Series) -> pd.DataFrame:
    from helpers.kpis import wilson_interval
    from helpers.voice import sentiment_label

    lab = sentiment_label(scores).dropna()
    n = len(lab)
    rows = []
    for tone in ("negative", "neutral", "positive"):
        k = int((lab == tone).sum())
        lo, hi = wilson_interval(k, n) if n else (np.nan, np.nan)
        rows.append({"tone": tone, "n": k, "share": 100 * k / n if n else np.nan, "ci_low": 100 * float(lo),
                     "ci_high": 100 * float(hi)})
    return pd.DataFrame(rows)


def prepare_voice_report(department: str = "all", period_start: str = "", period_end: str = "",
                         data_source: str = "", report_config: str = "params/report.yaml", as_of: str = "",
                         codebook: str = THEMES_FILE, follow_up_hours: int = FOLLOW_UP_HOURS,
                         n_suggested: int = SUGGESTED_THEMES, seed: int = SEED,
                         text_sample: int = TEXT_SAMPLE) -> VoiceReport:
    """Load, select and analyse (see the module docstring). Problems become ``warnings`` (shown at the top of the
    page), never a traceback.

    Memory follows the answer: counts, shares, trends and the effects' patterns come from the report's engine
    (:func:`helpers.engine.open_report_engine`; DuckDB over the dataset when it cannot be opened, with a note);
    the text analyses (tone, emerging and suggested themes) read at most ``text_sample`` comments of the period
    and as many before it (a seeded sample, :func:`helpers.voice_effects.comment_sample`, stated on the page);
    the follow-up list is bounded (at most :data:`FOLLOW_UP_ROWS` rows with the total; the company page shows
    the engine's counts per team, never the rows)."""
    from helpers.engine import DuckDBEngine, open_report_engine
    from helpers.reports.loader import date_parameter_problem, load_report_inputs

    report = VoiceReport(department=department or "all")
    problem = date_parameter_problem(as_of=as_of, period_end=period_end, period_start=period_start)
    if problem:
        report.warnings.append(problem)
        return report
    try:
        inputs = load_report_inputs(data_source, report_config)
        report.codebook = load_themes(codebook)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    cfg, ds = inputs.config, inputs.dataset
    report.company, report.source = cfg.company, inputs.data_label
    report.warnings.extend(ds.excluded_messages(future_only=True))
    cb = report.codebook
    try:
        dept = _resolve_department(list(ds.departments), report.department)
        start, end, report.as_of = _period(ds, as_of, period_start, period_end)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    report.department = dept or "all"
    report.period = (start, end)
    report.show_customer_ids = bool(getattr(cfg, "show_customer_ids", False)) and dept is not None
    report.seed = int(seed)
    engine, note = open_report_engine(ds, cfg)
    if note:
        report.warnings.append(note)
    engine = engine if engine is not None else DuckDBEngine(ds.con)
    try:
        _analyse(report, ds, engine, cfg, cb, dept, start, end, follow_up_hours, n_suggested, seed, text_sample)
    finally:
        engine.close()
    return report


FOLLOW_UP_ROWS = 40  # the follow-up rows a voice page holds (a department page lists them; the total is stated)


def _analyse(report: VoiceReport, ds, engine, cfg, cb, dept, start, end, follow_up_hours, n_suggested, seed,
             text_sample) -> None:
    """The page's analyses on ``engine`` (aggregates; rows only in bounded samples and lists)."""
    from helpers.voice import emerging_themes, sentiment, suggest_themes
    from helpers.voice_effects import (_and, _date_where, _filter_sql, comment_sample, follow_up_list, theme_trends,
                                       theme_verbatims)

    dw, _ = _date_where(start, end)
    fw, _ = _filter_sql(dept)
    report.n_responses = int(engine.query(f"SELECT count(*) AS n FROM responses WHERE {_and(dw, fw)}")["n"].iloc[0])
    shared = window_themes(ds, start, end, cb, config=cfg, engine=engine)
    report.shares = shared.shares(cb, dept)
    report.n_comments = report.shares.n_comments
    if report.n_comments == 0:
        report.warnings.append(f"no comments between {start} and {end}")
        return
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        report.trends = theme_trends(engine, cb, "month", None, end, dept)
        try:
            report.effects = shared.effects(cb, dept)
        except (KitError, ValueError, np.linalg.LinAlgError) as exc:
            report.warnings.append(f"theme effects could not be estimated: {exc}")
    report.verbatims = theme_verbatims(engine, cb, start, end, dept, n=3)
    comments = comment_sample(engine, start, end, dept, text_sample, seed)
    report.text_sample = (len(comments), int(comments.attrs["population"]))
    report.sentiment = _sentiment_table(sentiment(comments["comment"]))
    before = comment_sample(engine, None, pd.Timestamp(start) - pd.Timedelta(days=1), dept, text_sample, seed)
    report.history_sample = (len(before), int(before.attrs["population"]))
    with _warnings.catch_warnings():  # NMF's convergence note is not for readers; the fit is seeded and bounded
        _warnings.simplefilter("ignore")
        report.emerging = emerging_themes(comments["comment"], before["comment"], seed=seed, codebook=cb)
        report.suggested = report.emerging.suggested
        if report.suggested is None and len(comments) >= 20 * n_suggested:
            try:
                report.suggested = suggest_themes(comments["comment"], n_themes=n_suggested, seed=seed,
                                                  codebook=cb)
            except KitError as exc:
                report.warnings.append(str(exc))
    del comments, before
    last_month = pd.Timestamp(end).replace(day=1)
    fu_start = max(last_month, pd.Timestamp(start))
    report.follow_up = follow_up_list(ds, cb, fu_start, end, dept, show_customer_ids=report.show_customer_ids,
                                      require_comment=True, limit=FOLLOW_UP_ROWS, teams=dept is None, engine=engine)
    report.contact = contact_kpi(ds, fu_start, end, follow_up_hours, dept, engine=engine)


# ------------------------------------------------------------------------------------------------ department section

@dataclass
class CustomersSay:
    """The department page's "What customers say": ``table`` (top themes: ``label``, ``share`` with interval,
    ``change`` in points against the previous period of the same length with its p-value, adjusted CSAT effect
    with interval) and ``examples`` (three raw comments: the most frequent texts of the top themes, no ids)."""

    department: str
    period: tuple[str, str]
    n_comments: int
    table: pd.DataFrame
    examples: list[str]
    costliest: dict | None = None  # the costliest unasked theme (costliest_unasked), when estimable

    def costliest_sentence(self, html: bool = False) -> str:
        """One plain sentence on the costliest theme no rating question asks about, or "" when no such theme's
        effect is estimable and clearly below zero. Raw text (escape it), or with ``html`` escaped HTML with the
        theme in bold."""
        c = self.costliest
        if not c:
            return ""
        label = f"<strong>{html_escape(c['label'])}</strong>" if html else str(c["label"])
        rest = (f"Answers that mention it rate CSAT {fmt_number(abs(c['csat_adjusted']), 2)} points lower (on 1-5) "
                f"than answers with the same attribute ratings (95% CI "
                f"{fmt_interval(abs(c['csat_adjusted_high']), abs(c['csat_adjusted_low']), 2)}; "
                f"{int(c['mentions']):,} comments mention it)")
        if np.isfinite(c.get("detractor_change", np.nan)):
            d = float(c["detractor_change"])
            lo, hi = float(c["detractor_change_low"]), float(c["detractor_change_high"])
            lo, hi = (lo, hi) if d >= 0 else (-hi, -lo)  # "lower by x": the interval of x
            rest += (f", and the share of detractors among them is {fmt_number(abs(d), 0)} points "
                     f"{'higher' if d >= 0 else 'lower'} (95% CI {fmt_interval(lo, hi, 0)})")
        return f"The costliest problem no rating question asks about: {label}. {rest}."

    def markdown(self) -> str:
        """Bullet points, every text escaped."""
        if self.n_comments == 0 or self.table.empty:
            return "*No comments in this period.*"
        lines = []
        for _, r in self.table.iterrows():
            share, ci = fmt_estimate(r["share"], r["ci_low"], r["ci_high"], percent=True, share=False)
            text = f"**{md_escape(r['label'])}**: {share} of comments (95% CI {ci})"
            if np.isfinite(r.get("change", np.nan)):
                text += (f", {_signed(r['change'], 1)} points against the previous period"
                         f" ({fmt_p_value(r['p_value'], prefix=True)})")
            if np.isfinite(r.get("csat_adjusted", np.nan)):
                text += (f"; CSAT {_signed(r['csat_adjusted'], 2)} points when mentioned, same ratings (95% CI "
                         f"{fmt_interval(r['csat_adjusted_low'], r['csat_adjusted_high'], 2)})")
            lines.append(f"- {text}")
        if self.costliest_sentence():
            lines.append(f"\n{md_escape(self.costliest_sentence())}\n")
        if self.examples:
            lines.append("\nIn their words:\n")
            lines += [f"> “{md_escape(x)}”\n" for x in self.examples]
        return "\n".join(lines)

    def html(self) -> str:
        """The same as a reader table plus a list of escaped example comments."""
        if self.n_comments == 0 or self.table.empty:
            return "<p>No comments in this period.</p>"
        t = self.table
        show = pd.DataFrame({
            "Theme": t["label"], "Share of comments": t["share"],
            "95% CI": [_ci(a, b, 1, percent=True) for a, b in zip(t["ci_low"], t["ci_high"])],
            "Change vs previous period (points)": t["change"], "p-value": t["p_value"],
            "CSAT when mentioned (points)": t["csat_adjusted"],
            "95% CI ": [_ci(a, b, 2) for a, b in zip(t["csat_adjusted_low"], t["csat_adjusted_high"])]})
        table = _table(show, formats={"Share of comments": "points:1", "p-value": "p",
                                            "Change vs previous period (points)": lambda v: _signed(v, 1),
                                            "CSAT when mentioned (points)": lambda v: _signed(v, 2)})
        ex = "".join(f"<li>“{html_escape(x)}”</li>" for x in self.examples)
        costly = (f'<p class="voice-costliest">{self.costliest_sentence(html=True)}</p>'
                  if self.costliest else "")
        return table + costly + (f"<p>In their words:</p><ul>{ex}</ul>" if ex else "")


@dataclass
class WindowThemes:
    """The comment aggregates every page of a run shares for one window ``[start, end]`` (all departments, one
    engine pass each): ``patterns`` (:func:`helpers.voice_effects.theme_effect_patterns` by department: the
    theme shares and effects of the window), ``previous`` (per department the comments and mentions of each
    theme in the window of the same length before it) and ``verbatims`` (per department and theme the
    ``n_examples`` most frequent negative comments). ``settings`` key the per-run cache."""

    settings: dict
    patterns: pd.DataFrame
    previous: pd.DataFrame
    verbatims: pd.DataFrame
    current: pd.DataFrame | None = None  # per department the window's comments and mentions (exact counts)
    effect_sample: dict | None = None  # {"size", "population", "seed"} when the patterns are of a seeded sample
    fitted: dict = field(default_factory=dict)  # department ("" = all) -> ThemeEffects, or the reason it failed

    def fit_all(self, codebook) -> None:
        """Fit the effects of every department and of all of them once (what every page of the run reads)."""
        names = [""] + sorted(self.patterns["department"].dropna().unique().tolist())
        for name in names:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                try:
                    self.fitted[name] = self._fit(codebook, name or None)
                except (KitError, ValueError, np.linalg.LinAlgError) as exc:
                    self.fitted[name] = f"{type(exc).__name__}: {exc}"

    def _slice(self, frame: pd.DataFrame, department: str | None) -> pd.DataFrame:
        return frame if department is None else frame[frame["department"] == department]

    def shares(self, codebook, department: str | None = None):
        """The window's :class:`helpers.voice_effects.ThemeShares` (one department, or all)."""
        from helpers.voice_effects import PATTERN_WEIGHT

        if self.current is not None:  # exact counts, also when the effects' patterns are of a sample
            cur = self._slice(self.current, department)
            return _shares_from_counts(cur[["comments", *codebook.names]].sum().to_frame().T.astype("int64"),
                                       codebook)
        p = self._slice(self.patterns, department)
        w = p[PATTERN_WEIGHT].to_numpy("int64")
        counts = pd.DataFrame([{"comments": int(w.sum()),
                                **{n: int(w[p[n].to_numpy(bool)].sum()) for n in codebook.names}}])
        return _shares_from_counts(counts, codebook)

    def previous_shares(self, codebook, department: str | None = None):
        prev = self._slice(self.previous, department)
        counts = prev[["comments", *codebook.names]].sum().to_frame().T.astype("int64")
        return _shares_from_counts(counts, codebook)

    def effects(self, codebook, department: str | None = None):
        """The window's :class:`helpers.voice_effects.ThemeEffects` (fitted once, :meth:`fit_all`); a
        :class:`KitError` naming why when it could not be estimated."""
        found = self.fitted.get(department or "")
        if found is None:
            found = self.fitted[department or ""] = self._fit(codebook, department)
        if isinstance(found, str):
            raise KitError(found)
        return found

    def _fit(self, codebook, department: str | None):
        from helpers.voice_effects import PATTERN_WEIGHT, theme_effects_from_patterns

        patterns = self._slice(self.patterns, department)
        if department is None:  # the same answers in several departments are one pattern of all of them
            keys = ["csat", "nps", *self.settings["attributes"], *codebook.names]
            patterns = patterns.groupby(keys, dropna=False, sort=False)[PATTERN_WEIGHT].sum().reset_index()
        effects = theme_effects_from_patterns(patterns, codebook.names, self.settings["attributes"], codebook.labels)
        if self.effect_sample:
            s = self.effect_sample
            effects.sample_note = (f"The effects were fitted on a seeded random sample of {s['size']:,} of the "
                                   f"{s['population']:,} comments of the period (seed {s['seed']}); theme shares "
                                   "and counts are over all comments.")
        return effects

    def examples(self, department: str | None) -> pd.DataFrame:
        """``theme``, ``comment``, ``count``: the most frequent negative comments of each theme, most frequent
        first (ties by text), of one department or over all of them."""
        v = self.verbatims
        if department is None:
            return v[v["scope"] == "all"]
        return v[(v["scope"] == "department") & (v["department"] == department)]


def _shares_from_counts(counts: pd.DataFrame, codebook):
    """:class:`helpers.voice_effects.ThemeShares` of one row of counts (``comments`` and one column per theme),
    as :func:`helpers.voice_effects.theme_shares` builds it."""
    from helpers.voice_effects import ThemeShares, _long

    n = int(counts["comments"].sum()) if len(counts) else 0
    if n == 0:
        return ThemeShares(pd.DataFrame(columns=["theme", "label", "mentions", "comments", "share", "ci_low",
                                                 "ci_high"]), 0)
    table = _long(counts, codebook, [], 0.95).sort_values(["share"], ascending=[False], kind="stable")
    return ThemeShares(table.reset_index(drop=True), n)


CUSTOMERS_SAY_CACHE_VERSION = 2  # 2: exact window counts and the effects' seeded sample kept with the patterns
EFFECT_SAMPLE = 300_000  # the most comments of a window whose patterns the theme effects are fitted on
EFFECT_SAMPLE_SEED = ":voice-effects"  # appended to the response id before hashing (the sample is seeded)
_MEMO: dict[str, object] = {}  # this process's results by settings (a kernel that builds several pages)
_MEMO_SIZE = 8


def _codebook_key(codebook) -> str:
    import hashlib

    return hashlib.sha256(codebook.table.to_json(orient="records").encode("utf-8")).hexdigest()[:16]


def _run_cache_folder(ds):
    """The run folder's ``cache/voice`` when ``ds`` is a run's snapshot (what every page of the run shares),
    else None (outside a run nothing is written)."""
    from pathlib import Path

    from helpers.data import is_snapshot

    source = Path(str(getattr(ds, "source", "") or ""))
    try:  # the drivers and worth caches' rule (helpers.drivers_report._cache_folder), without importing it
        if source.is_file() and is_snapshot(source):
            return source.resolve().parent / "cache" / "voice"
    except OSError:
        return None
    return None


def _shared(name: str, settings: dict, folder, compute):
    """``compute()`` once per ``settings``: from this process's memo, else from the run's cache folder
    (:func:`helpers.objectives_report._cached`: one pickle per settings, a lock while one page computes),
    else computed (and stored in both). Without a data fingerprint nothing is kept."""
    import json

    from helpers.objectives_report import _cached

    if not settings.get("data"):
        return compute()
    key = name + json.dumps(settings, sort_keys=True, default=str)
    if key in _MEMO:
        return _MEMO[key]
    result = _cached(folder, name, settings, compute)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = result
    return result


def window_themes(ds, start, end, codebook=None, *, config=None, engine=None, n_examples: int = 3,
                  cache_folder="run") -> WindowThemes:
    """The :class:`WindowThemes` of ``[start, end]`` over every department, computed by the report's engine
    (``engine``, else :func:`helpers.engine.open_report_engine` of ``config``, else DuckDB over the dataset)
    once per run: keyed by the window, the codebook, the attributes and the data's fingerprint, kept in this
    process and in the run folder (``cache_folder`` "run": the run's ``cache/voice`` when the data is a run's
    snapshot; a folder; None: no file)."""
    from helpers.voice import _as_codebook

    cb = _as_codebook(load_themes() if codebook is None else codebook, "what customers say")
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    attrs = [a for a in ds.attributes]
    settings = {"version": CUSTOMERS_SAY_CACHE_VERSION, "start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}",
                "codebook": _codebook_key(cb), "attributes": attrs, "n_examples": int(n_examples),
                "data": str(getattr(ds, "fingerprint", "") or ""),
                "as_of": str(getattr(ds, "as_of", "") or "")}
    folder = _run_cache_folder(ds) if cache_folder == "run" else cache_folder

    def compute():
        return _compute_window_themes(ds, cb, start, end, settings, config=config, engine=engine,
                                      n_examples=n_examples)

    return _shared("window-themes", settings, folder, compute)


def _compute_window_themes(ds, cb, start, end, settings, *, config=None, engine=None, n_examples: int = 3):
    """One engine pass for the window's patterns (by department), one for the previous window's counts, one for
    the negative examples (see :class:`WindowThemes`)."""
    from helpers.data import quote_ident
    from helpers.engine import DuckDBEngine, open_report_engine
    from helpers.voice_effects import PATTERN_WEIGHT, _and, _date_where, _flags_sql, _run, theme_effect_patterns

    own = engine is None
    if own:
        engine, _note = open_report_engine(ds, config)
        engine = engine if engine is not None else DuckDBEngine(ds.con)
    try:
        sums = ", ".join(f"count_if({quote_ident(n)}) AS {quote_ident(n)}" for n in cb.names)

        def counts(where):  # per department: comments and mentions of each theme (exact, a few rows)
            out = _run(engine, f"SELECT department, count(*) AS comments, {sums} FROM "
                               f"({_flags_sql(engine, cb, ['department'], where)}) GROUP BY department")
            for c in ["comments", *cb.names]:
                out[c] = out[c].astype("int64")
            return out

        current = counts(_date_where(start, end)[0])
        population = int(current["comments"].sum())
        sample, sample_where = None, None
        if population > EFFECT_SAMPLE:  # memory follows the answer: the effects' patterns from a seeded sample
            from helpers.engine.aggregates import hash_uint32_sql

            threshold = int(2 ** 32 * EFFECT_SAMPLE / population)
            sample_where = (f"{hash_uint32_sql(f'CAST(response_id AS VARCHAR) || {EFFECT_SAMPLE_SEED!r}')}"
                            f" < {threshold}")
        patterns = theme_effect_patterns(engine, cb, start, end, None, settings["attributes"], by=["department"],
                                         where=sample_where)
        if sample_where is not None:
            sample = {"size": int(patterns[PATTERN_WEIGHT].sum()), "population": population,
                      "seed": EFFECT_SAMPLE_SEED}
        length = end - start
        p_start, p_end = start - length - pd.Timedelta(days=1), start - pd.Timedelta(days=1)
        previous = counts(_date_where(p_start, p_end)[0])
        tone = f"csat <= 2 OR nps <= {NPS_DETRACTOR_MAX}"
        dw, _ = _date_where(start, end)
        flags = _flags_sql(engine, cb, ["department", "comment"], _and(dw, tone))
        union = " UNION ALL ".join(f"SELECT department, '{name}' AS theme, comment FROM f WHERE {quote_ident(name)}"
                                   for name in cb.names)
        verbatims = _run(engine, (  # per department (scope 'department') and over all of them (scope 'all')
            f"WITH f AS ({flags}), m AS ({union}), c AS (SELECT department, theme, comment, count(*) AS count "
            f"FROM m GROUP BY department, theme, comment), b AS (SELECT 'department' AS scope, department, theme, "
            f"comment, count FROM c UNION ALL SELECT 'all' AS scope, CAST(NULL AS VARCHAR) AS department, theme, "
            f"comment, sum(count) AS count FROM c GROUP BY theme, comment), r AS (SELECT *, row_number() OVER "
            f"(PARTITION BY scope, department, theme ORDER BY count DESC, comment) AS rank FROM b) SELECT scope, "
            f"department, theme, comment, count FROM r WHERE rank <= {int(n_examples)} "
            f"ORDER BY scope, department, theme, rank"))
        verbatims["count"] = verbatims["count"].astype("int64")
    finally:
        if own:
            engine.close()
    shared = WindowThemes(settings, patterns, previous, verbatims, current=current, effect_sample=sample)
    shared.fit_all(cb)
    return shared


def what_customers_say(ds, department: str | None, start, end, codebook=None, n_themes: int = 3,
                       n_examples: int = 3, *, config=None, engine=None, cache_folder="run") -> CustomersSay:
    """Top ``n_themes`` themes of ``department``'s comments in ``[start, end]`` by share, with their change against
    the previous period of the same length (the KPIs' two-proportion test) and adjusted CSAT effect, and
    ``n_examples`` example comments (the most frequent negative texts of the top themes, one per theme first).
    ``codebook``: a :class:`helpers.voice.Codebook`; None reads the kit's (:func:`load_themes`).

    From the run's shared :func:`window_themes` (every department at once, by the report's engine; computed once
    per run and data: the six department pages and the voice page of a run share one computation), and kept
    per department, window and data fingerprint in this process, so a second call is a lookup."""
    import hashlib

    from helpers.voice import _as_codebook

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    dept = None if department is None or str(department).strip().lower() == "all" else department
    if codebook is None:  # the kit's file: keyed by its bytes, so a cache hit needs no parsing
        from helpers.config import repo_root

        file = Path(THEMES_FILE) if Path(THEMES_FILE).exists() else repo_root() / THEMES_FILE
        try:
            book_key = "file:" + hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        except OSError:
            book_key = ""
    else:
        book_key = _codebook_key(_as_codebook(codebook, "what customers say"))
    settings = {"version": CUSTOMERS_SAY_CACHE_VERSION, "department": dept, "label": str(department),
                "start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}", "codebook": book_key,
                "n_themes": int(n_themes), "n_examples": int(n_examples),
                "data": str(getattr(ds, "fingerprint", "") or ""), "as_of": str(getattr(ds, "as_of", "") or "")}
    folder = _run_cache_folder(ds) if cache_folder == "run" else cache_folder

    def compute():
        cb = _as_codebook(load_themes() if codebook is None else codebook, "what customers say")
        shared = window_themes(ds, start, end, cb, config=config, engine=engine, n_examples=n_examples,
                               cache_folder=cache_folder)
        return _customers_say_from(shared, cb, department, dept, start, end, n_themes, n_examples)

    if not book_key:
        return compute()
    return _shared(f"customers-say-{slug(str(department or 'all'))}", settings, folder, compute)


def _customers_say_from(shared: WindowThemes, cb, department, dept, start, end, n_themes: int,
                        n_examples: int) -> CustomersSay:
    from helpers.kpis import compare_proportions

    now = shared.shares(cb, dept)
    empty = pd.DataFrame(columns=["theme", "label", "share", "ci_low", "ci_high", "change", "p_value",
                                  "csat_adjusted", "csat_adjusted_low", "csat_adjusted_high"])
    if now.n_comments == 0:
        return CustomersSay(department, (str(start.date()), str(end.date())), 0, empty, [])
    before = shared.previous_shares(cb, dept)
    t = now.table.head(n_themes).copy()
    prev = before.table.set_index("theme") if before.n_comments else None
    changes, pvals = [], []
    for r in t.itertuples():
        if prev is not None and r.theme in prev.index:
            c = compare_proportions(int(prev.loc[r.theme, "mentions"]), int(prev.loc[r.theme, "comments"]),
                                    int(r.mentions), int(r.comments), metric=r.theme)
            changes.append(c.difference)
            pvals.append(c.p_value)
        else:
            changes.append(np.nan)
            pvals.append(np.nan)
    t["change"], t["p_value"] = changes, pvals
    costliest = None
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        try:
            effects = shared.effects(cb, dept).table
            costliest = costliest_unasked(effects, cb)
            eff = effects.set_index("theme")
            for c in ("csat_adjusted", "csat_adjusted_low", "csat_adjusted_high"):
                t[c] = t["theme"].map(eff[c])
        except (KitError, ValueError, np.linalg.LinAlgError):
            for c in ("csat_adjusted", "csat_adjusted_low", "csat_adjusted_high"):
                t[c] = np.nan
    verb = shared.examples(dept)
    examples: list[str] = []
    for rank in range(n_examples):  # one per top theme first, then the next ones
        for theme in t["theme"]:
            v = verb[verb["theme"] == theme]["comment"].tolist()
            if rank < len(v) and v[rank] not in examples and len(examples) < n_examples:
                examples.append(v[rank])
    return CustomersSay(department, (str(start.date()), str(end.date())), now.n_comments,
                        t.reset_index(drop=True)[list(empty.columns)], examples, costliest)


def costliest_unasked(effects: pd.DataFrame, codebook) -> dict | None:
    """The theme no rating question asks about (no ``rating:`` in the codebook) with the most negative adjusted
    CSAT effect whose 95% interval lies below zero (:func:`helpers.voice_effects.theme_effects`' ``table``), as a
    dict of that row; None when no unasked theme's effect is estimable and clearly negative (too few mentions,
    or an interval that includes 0). Same rule as :meth:`VoiceReport.costliest_unasked`."""
    if effects is None or effects.empty or "csat_adjusted" not in effects:
        return None
    unasked = set(codebook.unasked)
    cand = effects[effects["theme"].isin(unasked) & np.isfinite(effects["csat_adjusted"])
                   & (effects["csat_adjusted_high"] < 0)].sort_values("csat_adjusted")
    return None if cand.empty else cand.iloc[0].to_dict()


# ------------------------------------------------------------------------------------------------ department call-backs

CALL_BACK_WEEKS = 4
CALL_BACK_LIMIT = 20


@dataclass
class CallBackList:
    """The department page's "Customers to call back" (issue 13's closed loop): the unhappy answers (NPS 0-6 or
    CSAT 1, the rule of :func:`contact_kpi` and of the follow-up list) with a comment in ``[start, end]`` that
    nobody has followed up by ``end`` (``followed_up_at`` empty or later), most recent first. ``table`` holds the
    first ``limit`` (raw text: :meth:`html` escapes it); ``total`` counts them all. Customer and response ids are
    in ``table`` only when ``show_customer_ids``. ``missing``: one sentence saying why there is no list (no
    follow-up column, no survey answers); ``contact``: "contacted within 48 hours" for the department over the
    same weeks, with its interval and n."""

    department: str
    start: pd.Timestamp
    end: pd.Timestamp
    table: pd.DataFrame
    total: int
    show_customer_ids: bool = False
    contact: ContactKpi | None = None
    missing: str = ""
    rule: str = f"NPS 0-{NPS_DETRACTOR_MAX} or CSAT 1"
    has_tickets: bool = True  # survey-only data: no team or agent to show
    engine_note: str = ""  # the report's engine could not give the list: what computed it instead (one sentence)

    def lead(self) -> str:
        """The sentence above the list (raw text)."""
        period = f"{self.start.day} {self.start:%b} and {self.end.day} {self.end:%b %Y}"
        if self.total == 0:
            return (f"No unhappy customer of {self.department} who left a comment between {period} is waiting for a "
                    "call back.")
        shown = (f"the {len(self.table)} most recent first" if self.total > len(self.table) else "most recent first")
        return (f"{self.total:,} unhappy customer{'s' if self.total != 1 else ''} ({self.rule}) of {self.department} "
                f"left a comment between {period} and {'have' if self.total != 1 else 'has'} not been followed up "
                f"yet; {shown}:")

    def ids_note(self) -> str:
        if self.show_customer_ids:
            return ""
        return ("Customer ids are not shown on this page: the analytics team can list them here by setting "
                "show_customer_ids: true in the reports' settings (report.yaml).")

    def html(self) -> str:
        """Lead, the contact KPI, the list (a reader table: cards on a phone; every text escaped), "and N more",
        and how to show ids; or the one line saying what is missing."""
        if self.missing:
            return f'<p class="dept-note">{html_escape(self.missing)}</p>'
        parts = []
        if self.contact is not None:
            contact = self.contact
            if contact.estimate is None:
                parts.append(f"<p><strong>Contacted within {contact.hours} hours:</strong> not measured. "
                             f"{html_escape(contact.missing)}</p>")
            else:
                e = contact.estimate
                value, ci = fmt_estimate(e.value, e.ci_low, e.ci_high, percent=True, share=False)
                parts.append(f'<p class="voice-contact"><strong>Contacted within {contact.hours} hours:</strong> '
                             f"{value} of {html_escape(self.department)}'s unhappy customers of these weeks "
                             f"(95% CI {ci}, n = {e.n:,} answers at least {contact.hours} hours old, with or "
                             "without a comment).</p>")
        parts.append(f"<p>{html_escape(self.lead())}</p>")
        if len(self.table):
            t = self.table
            show = pd.DataFrame({
                "Answered": [f"{pd.Timestamp(d).day} {pd.Timestamp(d):%b}" for d in t["response_date"]],
                "Days waiting": t["days_waiting"],
                "Score": [_score_text(c, n) for c, n in zip(t["csat"], t["nps"])],
                "Team (last agent)": [_team_text(a, b) for a, b in zip(t["team"], t["owner"])],
                "Themes": [", ".join(x) if isinstance(x, (list, tuple)) and len(x) else "none" for x in t["themes"]],
                "Comment": t["comment"]})
            if not self.has_tickets:
                show = show.drop(columns=["Team (last agent)"])
            if self.show_customer_ids:
                show.insert(0, "Customer", t["customer_id"])
            parts.append('<div class="dept-table">' + _table(show, formats={"Answered": "text", "Days waiting": "int",
                                                                          "Comment": "text"}) + "</div>")
            more = self.total - len(t)
            if more > 0:
                parts.append(f"<p>And {more:,} more, older answers of the same weeks.</p>")
        note = self.ids_note()
        if note and self.total:
            parts.append(f'<p class="dept-note">{html_escape(note)}</p>')
        if self.engine_note:
            parts.append(f'<p class="dept-note">{html_escape(self.engine_note)}</p>')
        return "".join(parts)


def _score_text(csat, nps) -> str:
    bits = []
    if pd.notna(nps):
        bits.append(f"NPS {int(nps)}")
    if pd.notna(csat):
        bits.append(f"CSAT {int(csat)}")
    return ", ".join(bits) or "n/a"


def _team_text(team, owner) -> str:
    team = "" if team is None or (isinstance(team, float) and np.isnan(team)) else str(team)
    owner = "" if owner is None or (isinstance(owner, float) and np.isnan(owner)) else str(owner)
    if team in ("", "(no linked ticket)"):
        return "no ticket in the 30 days before"
    return f"{team} ({owner})" if owner else team


def customers_to_call_back(ds, department: str, end, codebook=None, weeks: int = CALL_BACK_WEEKS,
                           limit: int = CALL_BACK_LIMIT, show_customer_ids: bool = False,
                           hours: int = FOLLOW_UP_HOURS, engine=None) -> CallBackList:
    """Unhappy customers of ``department`` (NPS 0-6 or CSAT 1) of the ``weeks`` weeks up to ``end`` who left a
    comment and have not been followed up by the end of ``end`` (``responses.followed_up_at`` empty, or later:
    a report as of a past date does not know of later calls), most recent first, at most ``limit`` rows (team and
    last agent, themes, days waiting from :func:`helpers.voice_effects.follow_up_list`), and "contacted within
    ``hours`` hours" (:func:`contact_kpi`) over the same weeks. Without a ``followed_up_at`` column the list cannot
    tell who is still waiting: ``missing`` says so in one line. Both are counted by ``engine`` (the report's,
    :func:`helpers.engine.open_report_engine`: DuckDB or Spark), without one by DuckDB over ``ds``."""
    from helpers.voice import _as_codebook
    from helpers.voice_effects import follow_up_list

    end = pd.Timestamp(end).normalize()
    start = end - pd.Timedelta(days=7 * int(weeks) - 1)
    empty = pd.DataFrame()
    has = getattr(ds, "has", None)
    if callable(has) and not has("responses"):
        return CallBackList(department, start, end, empty, 0, missing="Customers to call back needs the survey "
                            "answers (the responses table).")
    present = has("responses", FOLLOW_UP_COLUMN) if callable(has) else FOLLOW_UP_COLUMN in ds.columns("responses")
    if not present:
        return CallBackList(department, start, end, empty, 0, missing=(
            "No list of customers to call back: the survey answers have no follow-up time (followed_up_at, when an "
            "unhappy customer was contacted), so the page cannot tell who is still waiting; add it to the survey "
            "export."))
    cb = _as_codebook(load_themes() if codebook is None else codebook, "customers to call back")
    with _warnings.catch_warnings():  # bounded: the engine orders and cuts the list and counts the total
        _warnings.simplefilter("ignore")
        fl = follow_up_list(ds, cb, start, end, department, show_customer_ids=True, require_comment=True,
                            limit=int(limit), newest_first=True, waiting_only=True, engine=engine)
    t = fl.table.reset_index(drop=True)
    total = int(fl.total)
    if not show_customer_ids:
        t = t.drop(columns=[c for c in ("customer_id", "response_id", "ticket_id") if c in t.columns])
    return CallBackList(department, start, end, t, total, bool(show_customer_ids),
                        contact_kpi(ds, start, end, hours, department, engine=engine),
                        has_tickets=bool(has("tickets")) if callable(has) else True)
