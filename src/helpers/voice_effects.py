"""Comment themes as drivers of satisfaction, and the closed loop on unhappy customers.

- :func:`theme_shares`: each theme's share of the comments with its 95% Wilson interval, counted in DuckDB.
- :func:`theme_trends`: the share per month, the latest month against the one before with the test the KPIs use
  (:func:`helpers.kpis.compare_proportions`: Newcombe interval, pooled z-test), and each theme's onset (the month
  where its share changes most, by the likelihood-ratio test for one change in a binomial proportion).
- :func:`theme_effects`: what a theme costs: the difference in mean CSAT between comments that mention it and
  comments that do not (raw: Welch; adjusted for the attribute ratings: OLS with HC3 intervals), and the odds of
  being a detractor (NPS 0-6) adjusted the same way (logistic regression), both statsmodels fits.
- :func:`follow_up_list`: detractors and very dissatisfied customers of the latest period, with their score,
  themes, comment, open/recent tickets and the owner (the linked ticket's team and agent), oldest first; customer
  and response ids only when ``show_customer_ids=True`` (default off). :func:`follow_up_display` escapes the text.

Population: the effects and shares are among responses *with a comment* (a theme is only defined there).

Every query runs on a :class:`helpers.data.Dataset` (its DuckDB connection) or on an engine
(:mod:`helpers.engine`, values written into the SQL): :func:`theme_effect_patterns` +
:func:`theme_effects_from_patterns` give :func:`theme_effects` from distinct patterns with frequency weights,
:func:`comment_sample` the seeded, bounded rows the text analyses read, and :func:`follow_up_list` takes the
report's ``engine`` and a ``limit`` (ordered and cut by the engine, the total counted there; its SQL,
:func:`follow_up_sql`, is portable: SQLGlot writes it for Spark).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import KitError
from helpers.formatting import fmt_p_value, shorten
from helpers.kpis import NPS_DETRACTOR_MAX, NPS_PROMOTER_MIN, compare_proportions, wilson_interval
from helpers.voice import Codebook, _as_codebook, escape_text, match_themes, sentiment, theme_flags_sql

__all__ = ["ThemeShares", "theme_shares", "theme_verbatims", "ThemeTrends", "theme_trends", "binomial_change_point",
           "binomial_epidemic_change",
           "ThemeEffects", "theme_effects", "theme_effects_frame", "theme_effect_patterns",
           "theme_effects_from_patterns", "PATTERN_WEIGHT", "comment_sample", "TEXT_SAMPLE", "FollowUpList", "follow_up_list",
           "follow_up_sql", "follow_up_display"]

_FREQS = ("month", "quarter")


def _date_where(start, end, column: str = "response_date") -> tuple[str, list]:
    """The period's condition as SQL with its dates written in (``DATE '...'``: every engine reads it alike);
    the empty list keeps the ``(sql, params)`` shape of the callers."""
    from helpers.engine.base import sql_literal

    parts = []
    if start is not None:
        parts.append(f"CAST({column} AS DATE) >= {sql_literal(pd.Timestamp(start).normalize())}")
    if end is not None:
        parts.append(f"CAST({column} AS DATE) <= {sql_literal(pd.Timestamp(end).normalize())}")
    return " AND ".join(parts), []


def _and(*conds: str) -> str:
    return " AND ".join(f"({c})" for c in conds if c)


def _filter_sql(department: str | None) -> tuple[str, list]:
    from helpers.engine.base import sql_literal

    return (f"department = {sql_literal(str(department))}", []) if department is not None else ("", [])


def _is_engine(source) -> bool:
    from helpers.engine.base import Engine

    return isinstance(source, Engine)


def _run(source, sql: str) -> pd.DataFrame:
    """``sql`` (DuckDB dialect, values written in) on ``source``: an engine (:mod:`helpers.engine`: DuckDB or
    Spark; only aggregates or bounded answers come back) or a :class:`helpers.data.Dataset` (its DuckDB
    connection)."""
    if _is_engine(source):
        return source.query(sql)
    return source.con.execute(sql).df()


def _flags_sql(source, cb: Codebook, columns: Sequence[str], where: str) -> str:
    """:func:`helpers.voice.theme_flags_sql` over ``responses``: on DuckDB (a dataset or a DuckDB engine) with
    its ``strip_accents``, on another engine (Spark) with the portable ``translate`` that equals it on every
    accented letter (tests). DuckDB's ``translate`` with the ~1,900-character table is about 1,000 times slower
    than ``strip_accents``, so DuckDB keeps its own function."""
    portable = _is_engine(source) and getattr(source, "name", "") != "duckdb"
    return theme_flags_sql(cb, "responses", "comment", list(columns), where, portable=portable)


# --- shares --------------------------------------------------------------------------------------------------

@dataclass
class ThemeShares:
    """``table``: one row per theme (and group): ``theme``, ``label``, ``mentions``, ``comments``, ``share``,
    ``ci_low``, ``ci_high`` (percent, Wilson), sorted by share."""

    table: pd.DataFrame
    n_comments: int
    confidence: float = 0.95
    by: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.n_comments == 0:
            return "No comments in this period."
        t = self.table.sort_values("share", ascending=False)
        top = t.iloc[0]
        pct = int(round(self.confidence * 100))
        return (f"{self.n_comments:,} comments; the most mentioned theme is {top['label']}: {top['share']:.1f}% "
                f"of comments ({pct}% CI {top['ci_low']:.1f}-{top['ci_high']:.1f}%).")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        t = self.table.sort_values("share")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1))
        ax.errorbar(t["share"], t["label"], xerr=_nonnegative_errors(t["share"], t["ci_low"], t["ci_high"]),
                    fmt="o", color="#4477AA", ecolor="#888888", capsize=3)
        ax.set_xlabel(f"% of comments ({int(round(self.confidence * 100))}% CI)")
        ax.set_title("Share of comments mentioning each theme")
        return ax


def _count_sql(cb: Codebook, where: str, group_cols: Sequence[str], source=None) -> str:
    from helpers.data import quote_ident

    keys = [quote_ident(c) for c in group_cols]
    sums = ", ".join(f"count_if({quote_ident(n)}) AS {quote_ident(n)}" for n in cb.names)
    flags = _flags_sql(source, cb, ["response_date", "department", *group_cols], where)
    sel = ", ".join(keys + ["count(*) AS comments", sums])
    return f"SELECT {sel} FROM ({flags})" + (f" GROUP BY {', '.join(keys)}" if keys else "")


def _long(counts: pd.DataFrame, cb: Codebook, keys: list[str], confidence: float) -> pd.DataFrame:
    long = counts.melt(id_vars=keys + ["comments"], value_vars=cb.names, var_name="theme", value_name="mentions")
    long["label"] = long["theme"].map(cb.labels)
    k, n = long["mentions"].to_numpy(float), long["comments"].to_numpy(float)
    lo, hi = wilson_interval(k, n, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        long["share"] = 100 * k / n
    long["ci_low"], long["ci_high"] = 100 * lo, 100 * hi
    long["mentions"] = long["mentions"].astype(int)
    long["comments"] = long["comments"].astype(int)
    return long[keys + ["theme", "label", "mentions", "comments", "share", "ci_low", "ci_high"]]


def theme_shares(ds, codebook: Codebook, start=None, end=None, department: str | None = None,
                 by: str | Sequence[str] | None = None, confidence: float = 0.95) -> ThemeShares:
    """Share of comments mentioning each theme, ``mentions / comments`` with the Wilson interval (Wilson 1927,
    :func:`helpers.kpis.wilson_interval`), counted in DuckDB over ``ds.con`` (responses with a comment in
    ``[start, end]``, optionally one ``department`` and grouped ``by`` responses columns)."""
    cb = _as_codebook(codebook, "theme shares")
    by_cols = [by] if isinstance(by, str) else list(by or [])
    dw, params = _date_where(start, end)
    fw, fparams = _filter_sql(department)
    counts = _run(ds, _count_sql(cb, _and(dw, fw), by_cols, ds))
    counts = counts[counts["comments"] > 0]
    n = int(counts["comments"].sum()) if len(counts) else 0
    if not len(counts):
        table = pd.DataFrame(columns=by_cols + ["theme", "label", "mentions", "comments", "share", "ci_low",
                                                 "ci_high"])
    else:
        table = _long(counts, cb, by_cols, confidence).sort_values(
            by_cols + ["share"], ascending=[True] * len(by_cols) + [False], kind="stable").reset_index(drop=True)
    return ThemeShares(table, n, confidence, by_cols)


def theme_verbatims(ds, codebook: Codebook, start=None, end=None,
                    department: str | None = None, n: int = 3, tone: str | None = None) -> pd.DataFrame:
    """Representative comments per theme: its ``n`` most frequent distinct comments in the period (ties by
    text), with how many responses wrote each (``count``). ``tone`` = "negative" keeps comments with CSAT 1-2 or
    NPS 0-6, "positive" CSAT 4-5 or NPS 9-10. No ids; text raw (escape with :func:`helpers.voice.escape_text`).
    Counted in DuckDB."""
    from helpers.data import quote_ident

    cb = _as_codebook(codebook, "theme verbatims")
    if tone not in (None, "negative", "positive"):
        raise KitError(f"theme verbatims: tone must be None, 'negative' or 'positive', got {shorten(tone)}")
    dw, params = _date_where(start, end)
    fw, fparams = _filter_sql(department)
    tw = {"negative": f"csat <= 2 OR nps <= {NPS_DETRACTOR_MAX}",
          "positive": f"csat >= 4 OR nps >= {NPS_PROMOTER_MIN}"}.get(tone, "")
    flags = _flags_sql(ds, cb, ["comment"], _and(dw, fw, tw))
    union = " UNION ALL ".join(
        f"SELECT '{name}' AS theme, comment FROM f WHERE {quote_ident(name)}" for name in cb.names)
    sql = (f"WITH f AS ({flags}), m AS ({union}) SELECT theme, comment, count(*) AS count, "
           f"row_number() OVER (PARTITION BY theme ORDER BY count(*) DESC, comment) AS rank FROM m "
           f"GROUP BY theme, comment QUALIFY rank <= {int(n)}")
    out = _run(ds, sql)
    order = {name: i for i, name in enumerate(cb.names)}
    out = out.sort_values(["theme", "rank"], key=lambda s: s.map(order) if s.name == "theme" else s, kind="stable")
    out.insert(1, "label", out["theme"].map(cb.labels))
    return out.drop(columns="rank").reset_index(drop=True)


# --- trends and onset ----------------------------------------------------------------------------------------

def binomial_change_point(k, n, min_segment: int = 2) -> dict:
    """One change in a binomial proportion over ordered periods (``k`` successes of ``n`` per period).

    For each split ``s`` (periods ``< s`` vs ``>= s``, each side at least ``min_segment`` periods) the likelihood
    ratio ``LR_s = 2 [l(k_1, n_1) + l(k_2, n_2) - l(k, n)]`` with ``l(k, n) = k log(k/n) + (n-k) log(1-k/n)``;
    the change point is the split with the largest ``LR_s`` (the maximum-likelihood change point, Worsley 1983,
    Biometrika 70:455) and its p-value is Bonferroni-adjusted over the candidate splits,
    ``min(1, m * P(chi2_1 > LR))`` (conservative). Returns ``index`` (first period after the change), ``lr``,
    ``p_value``, ``before`` and ``after`` proportions; ``index`` is None when there are too few periods.
    """
    k, n = np.asarray(k, float), np.asarray(n, float)

    def ll(kk, nn):
        with np.errstate(divide="ignore", invalid="ignore"):
            p = kk / nn
            out = np.where(kk > 0, kk * np.log(p), 0.0) + np.where(nn - kk > 0, (nn - kk) * np.log1p(-p), 0.0)
        return np.where(nn > 0, out, 0.0)

    m = len(k)
    splits = np.arange(min_segment, m - min_segment + 1)
    if len(splits) == 0 or n.sum() == 0:
        return {"index": None, "lr": np.nan, "p_value": np.nan, "before": np.nan, "after": np.nan}
    ck, cn = np.cumsum(k), np.cumsum(n)
    k1, n1 = ck[splits - 1], cn[splits - 1]
    k2, n2 = ck[-1] - k1, cn[-1] - n1
    lr = 2 * (ll(k1, n1) + ll(k2, n2) - ll(ck[-1], cn[-1]))
    best = int(np.argmax(lr))
    p = min(1.0, len(splits) * float(stats.chi2.sf(max(lr[best], 0.0), 1)))
    return {"index": int(splits[best]), "lr": float(lr[best]), "p_value": p,
            "before": float(k1[best] / n1[best]) if n1[best] else np.nan,
            "after": float(k2[best] / n2[best]) if n2[best] else np.nan}


def binomial_epidemic_change(k, n, min_segment: int = 2) -> dict:
    """A theme that starts (and perhaps stops): the split of ordered periods into ``[0, s1)``, ``[s1, s2)``,
    ``[s2, m)`` whose middle segment has its own binomial proportion and whose outer segments share one.

    ``LR = 2 [l(k_mid, n_mid) + l(k_out, n_out) - l(k, n)]`` maximised over ``s1 < s2`` (each segment that exists
    at least ``min_segment`` periods; ``s1 = 0`` or ``s2 = m`` is a single change), the epidemic alternative of
    Levin & Kline (1985, Stochastic Processes and their Applications 20:87) for a binomial sequence. A single
    change is a special case, so a pulse (a broken release, fixed later) is dated at both ends and a step at its
    one change. p-value Bonferroni-adjusted over the candidate pairs, ``min(1, M * P(chi2_1 > LR))``
    (conservative). Returns ``onset`` (first period of the change), ``end`` (first period after a pulse, None for a
    step), ``lr``, ``p_value``, ``before`` (outer proportion) and ``after`` (middle proportion for a pulse, the
    later one for a step).
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    m = len(k)
    none = {"onset": None, "end": None, "lr": np.nan, "p_value": np.nan, "before": np.nan, "after": np.nan}
    if m < 2 * min_segment or n.sum() == 0:
        return none

    def ll(kk, nn):
        with np.errstate(divide="ignore", invalid="ignore"):
            p = kk / nn
            out = np.where(kk > 0, kk * np.log(p), 0.0) + np.where(nn - kk > 0, (nn - kk) * np.log1p(-p), 0.0)
        return np.where(nn > 0, out, 0.0)

    ck, cn = np.r_[0.0, np.cumsum(k)], np.r_[0.0, np.cumsum(n)]
    s1, s2 = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
    ok = ((s2 - s1) >= min_segment) & ((s1 == 0) | (s1 >= min_segment)) & ((s2 == m) | (m - s2 >= min_segment))
    ok &= ~((s1 == 0) & (s2 == m))
    s1, s2 = s1[ok], s2[ok]
    km, nm = ck[s2] - ck[s1], cn[s2] - cn[s1]
    ko, no = ck[-1] - km, cn[-1] - nm
    lr = 2 * (ll(km, nm) + ll(ko, no) - ll(ck[-1], cn[-1]))
    best = int(np.argmax(lr))
    a, b = int(s1[best]), int(s2[best])
    p = min(1.0, len(lr) * float(stats.chi2.sf(max(lr[best], 0.0), 1)))
    mid = km[best] / nm[best] if nm[best] else np.nan
    out = ko[best] / no[best] if no[best] else np.nan
    if a == 0:  # the first segment differs: a single change at b
        return {"onset": b, "end": None, "lr": float(lr[best]), "p_value": p, "before": float(mid),
                "after": float(out)}
    return {"onset": a, "end": b if b < m else None, "lr": float(lr[best]), "p_value": p, "before": float(out),
            "after": float(mid)}


@dataclass
class ThemeTrends:
    """``table``: share per period and theme (``period``, ``theme``, ``label``, ``mentions``, ``comments``,
    ``share``, ``ci_low``, ``ci_high``); ``changes``: the latest period against the previous one per theme
    (``difference`` in points, its interval, ``p_value``, ``significant``); ``onsets``: per theme the period its
    share changed (``onset``), and for a pulse the period it went back (``end``), with ``share_before`` (outside
    the change) and ``share_after`` (during it), ``p_value``, ``significant`` (:func:`binomial_epidemic_change`)."""

    table: pd.DataFrame
    changes: pd.DataFrame
    onsets: pd.DataFrame
    freq: str
    confidence: float = 0.95

    def summary(self) -> str:
        if self.changes.empty:
            return "Too few periods with comments to compare."
        sig = self.changes[self.changes["significant"]]
        latest = self.changes["period"].iloc[0]
        head = f"Latest {self.freq} ({pd.Timestamp(latest):%Y-%m}) against the one before: "
        if sig.empty:
            return head + "no theme's share changed significantly."
        parts = [f"{r.label} {'rose' if r.difference > 0 else 'fell'} from {r.share_before:.1f}% to "
                 f"{r.share:.1f}% ({fmt_p_value(r.p_value, prefix=True)})" for r in sig.itertuples()]
        return head + "; ".join(parts) + "."

    def plot(self, ax=None, themes: Sequence[str] | None = None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        t = self.table if themes is None else self.table[self.table["theme"].isin(themes)]
        for theme, g in t.groupby("theme", sort=False):
            ax.plot(g["period"], g["share"], marker="o", ms=3, label=g["label"].iloc[0])
            ax.fill_between(g["period"], g["ci_low"], g["ci_high"], alpha=0.15)
        ax.set_ylabel(f"% of comments ({int(round(self.confidence * 100))}% CI)")
        ax.set_title(f"Share of comments per {self.freq}")
        ax.legend(fontsize=7, ncol=2)
        return ax


def theme_trends(ds, codebook: Codebook, freq: str = "month", start=None, end=None,
                 department: str | None = None, confidence: float = 0.95, min_segment: int = 2) -> ThemeTrends:
    """Each theme's share of comments per ``freq`` (month or quarter) with Wilson intervals, the latest period
    against the previous one (:func:`helpers.kpis.compare_proportions`, as for the KPIs), and its onset (and end)
    (:func:`binomial_epidemic_change`). Counted in DuckDB."""
    if freq not in _FREQS:
        raise KitError(f"theme trends: freq must be one of {_FREQS}, got {shorten(freq)}")
    cb = _as_codebook(codebook, "theme trends")
    dw, params = _date_where(start, end)
    fw, fparams = _filter_sql(department)
    flags = _flags_sql(ds, cb, ["response_date", "department"], _and(dw, fw))
    from helpers.data import quote_ident

    sums = ", ".join(f"count_if({quote_ident(n)}) AS {quote_ident(n)}" for n in cb.names)
    sql = (f"SELECT CAST(date_trunc('{freq}', response_date) AS TIMESTAMP) AS period, count(*) AS comments, "
           f"{sums} FROM ({flags}) GROUP BY 1 ORDER BY 1")
    counts = _run(ds, sql)
    if counts.empty:
        return ThemeTrends(_long(counts, cb, ["period"], confidence), pd.DataFrame(), pd.DataFrame(), freq,
                           confidence)
    table = _long(counts, cb, ["period"], confidence).sort_values(["theme", "period"], kind="stable")
    table = table.reset_index(drop=True)
    changes, onsets = [], []
    for theme in cb.names:
        g = table[table["theme"] == theme]
        if len(g) >= 2:
            a, b = g.iloc[-2], g.iloc[-1]
            c = compare_proportions(int(a["mentions"]), int(a["comments"]), int(b["mentions"]), int(b["comments"]),
                                    metric=theme, confidence=confidence)
            changes.append({"period": b["period"], "previous": a["period"], "theme": theme, "label": cb.labels[theme],
                            "share_before": c.a.value, "share": c.b.value, "difference": c.difference,
                            "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
                            "significant": c.significant(), "method": c.method})
        cp = binomial_epidemic_change(g["mentions"], g["comments"], min_segment)
        onsets.append({"theme": theme, "label": cb.labels[theme],
                       "onset": g["period"].iloc[cp["onset"]] if cp["onset"] is not None else pd.NaT,
                       "end": g["period"].iloc[cp["end"]] if cp["end"] is not None else pd.NaT,
                       "share_before": 100 * cp["before"], "share_after": 100 * cp["after"],
                       "lr": cp["lr"], "p_value": cp["p_value"],
                       "significant": bool(np.isfinite(cp["p_value"]) and cp["p_value"] < 1 - confidence)})
    return ThemeTrends(table, pd.DataFrame(changes), pd.DataFrame(onsets), freq, confidence)


# --- effects on satisfaction --------------------------------------------------------------------------------

@dataclass
class ThemeEffects:
    """``table``: one row per theme: ``mentions`` (comments with the theme and a CSAT), ``csat_with``,
    ``csat_without``, raw ``csat_difference`` (Welch interval), ``csat_adjusted`` (OLS coefficient of the theme
    with the attribute ratings, and with ``joint`` the other themes, as covariates; HC3 interval; ``n_csat``
    complete rows), ``detractor_odds_ratio`` (logistic regression on the same covariates, Wald interval on the
    log-odds scale, ``n_nps`` rows) and ``detractor_change``: the adjusted change in the share of detractors
    among the responses that mention it, in percentage points, from the same fit (:func:`_detractor_change`,
    delta-method interval); sorted by the adjusted CSAT effect (most costly first)."""

    table: pd.DataFrame
    attributes: list[str]
    confidence: float = 0.95
    joint: bool = True
    sample_note: str = ""  # set when the fits used a seeded sample of the comments (said after the summary)

    def summary(self) -> str:
        text = self._summary()
        return f"{text} {self.sample_note}" if self.sample_note else text

    def _summary(self) -> str:
        t = self.table.dropna(subset=["csat_adjusted"])
        hurt = t[t["csat_adjusted_high"] < 0]
        pct = int(round(self.confidence * 100))
        if hurt.empty:
            return ("No theme is linked to significantly lower CSAT once the attribute ratings are taken into "
                    "account.")
        r = hurt.iloc[0]
        return (f"Of the comment themes, {r['label']} costs the most satisfaction: responses mentioning it score "
                f"{abs(r['csat_adjusted']):.2f} points lower on the 1-5 CSAT scale than comparable responses with "
                f"the same attribute ratings ({pct}% CI {abs(r['csat_adjusted_high']):.2f} to "
                f"{abs(r['csat_adjusted_low']):.2f}; n = {int(r['n_csat']):,})" + _odds_clause(r, pct) + ".")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        t = self.table.dropna(subset=["csat_adjusted"]).sort_values("csat_adjusted", ascending=False)
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1))
        ax.errorbar(t["csat_adjusted"], t["label"],
                    xerr=_nonnegative_errors(t["csat_adjusted"], t["csat_adjusted_low"], t["csat_adjusted_high"]),
                    fmt="o", color="#CC6677", ecolor="#888888", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("CSAT difference when mentioned, adjusted for attribute ratings (points on 1-5)")
        ax.set_title("What each comment theme costs in satisfaction")
        return ax


def _odds_clause(r, pct: int) -> str:
    if np.isfinite(r["detractor_odds_ratio"]):
        return (f", and their odds of being a detractor are {r['detractor_odds_ratio']:.2f} times those of others "
                f"({pct}% CI {r['detractor_odds_ratio_low']:.2f}-{r['detractor_odds_ratio_high']:.2f})")
    if r["detractor_share_with"] == 1:
        return "; every one of them is a detractor (NPS 0-6), so no odds ratio can be estimated"
    return ""


def _ols(frame: pd.DataFrame, themes: list[str], attributes: Sequence[str], alpha: float) -> dict:
    import statsmodels.api as sm

    d = frame[["csat", *themes, *attributes]].dropna()
    X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in [*themes, *attributes]])
    fit = sm.OLS(d["csat"].to_numpy(float), X).fit(cov_type="HC3")
    ci = fit.conf_int(alpha)
    return {th: dict(csat_adjusted=float(fit.params[i + 1]), csat_adjusted_low=float(ci[i + 1, 0]),
                     csat_adjusted_high=float(ci[i + 1, 1]), csat_adjusted_p=float(fit.pvalues[i + 1]),
                     n_csat=int(len(d))) for i, th in enumerate(themes)}


def _logit(frame: pd.DataFrame, themes: list[str], attributes: Sequence[str], alpha: float) -> dict:
    """Logit fit of P(nps <= 6); {} when it does not converge or a coefficient is not estimable (separation)."""
    import statsmodels.api as sm

    d = frame[["nps", *themes, *attributes]].dropna()
    y = (d["nps"] <= NPS_DETRACTOR_MAX).to_numpy(float)
    if not 0 < y.sum() < len(y):
        return {}
    X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in [*themes, *attributes]])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(y, X).fit(disp=0, maxiter=200)
    except (np.linalg.LinAlgError, ValueError):  # perfect separation or a singular design
        return {}
    if not fit.mle_retvals.get("converged", True) or not np.all(np.isfinite(fit.bse)):
        return {}
    ci = fit.conf_int(alpha)
    out = {}
    for i, th in enumerate(themes):
        out[th] = dict(detractor_odds_ratio=float(np.exp(fit.params[i + 1])),
                       detractor_odds_ratio_low=float(np.exp(ci[i + 1, 0])),
                       detractor_odds_ratio_high=float(np.exp(ci[i + 1, 1])), detractor_p=float(fit.pvalues[i + 1]),
                       n_nps=int(len(d)))
        out[th].update(_detractor_change(fit, X, i + 1, alpha))
    return out


def _detractor_change(fit, X: np.ndarray, col: int, alpha: float, weights=None) -> dict:
    """Adjusted change in the detractor share among the responses that mention the theme (g-computation).

    ``D = mean_{i: x_it = 1} [L(x_i^(1) b) - L(x_i^(0) b)]`` with ``x^(1)``/``x^(0)`` the row with the theme set
    to 1/0 and ``L`` the logistic function: the average effect of the theme on the mentioning responses'
    probability of being a detractor, in percentage points (collapsible, unlike the odds ratio). Interval by the
    delta method, ``var(D) = g' V g`` with ``g = mean[L'(x^(1) b) x^(1) - L'(x^(0) b) x^(0)]`` and ``V`` the
    fit's covariance (Greene, Econometric Analysis, 7th ed., 17.3; as statsmodels' ``get_margeff`` with
    ``dummy=True``, but averaged over the mentioning responses only).
    """
    from scipy.special import expit

    rows = X[:, col] == 1
    if not rows.any():
        return {}
    x1, x0 = X[rows].copy(), X[rows].copy()
    x1[:, col], x0[:, col] = 1.0, 0.0
    b = np.asarray(fit.params)
    p1, p0 = expit(x1 @ b), expit(x0 @ b)
    wt = None if weights is None else np.asarray(weights, float)[rows]  # patterns: each row counts w times
    d = float(np.average(p1 - p0, weights=wt))
    g = np.average((p1 * (1 - p1))[:, None] * x1 - (p0 * (1 - p0))[:, None] * x0, axis=0, weights=wt)
    se = float(np.sqrt(g @ np.asarray(fit.cov_params()) @ g))
    z = stats.norm.ppf(1 - alpha / 2)
    return dict(detractor_change=100 * d, detractor_change_low=100 * (d - z * se),
                detractor_change_high=100 * (d + z * se))


def theme_effects_frame(frame: pd.DataFrame, themes: Sequence[str], attributes: Sequence[str],
                        labels: dict | None = None, confidence: float = 0.95, min_mentions: int = 10,
                        joint: bool = True) -> ThemeEffects:
    """Effects from a row-level frame with ``csat`` (1-5), ``nps`` (0-10), one boolean column per theme and the
    attribute columns.

    ``csat = b0 + sum_t b_t theme_t + sum_j c_j attr_j + e`` by OLS on complete rows (statsmodels, HC3 standard
    errors, MacKinnon & White 1985), and ``logit P(nps <= 6) = g0 + sum_t g_t theme_t + sum_j h_j attr_j``
    (statsmodels ``Logit``); reported: ``b_t`` and ``exp(g_t)`` (odds ratio) with their intervals. With ``joint``
    (default) all themes enter one model, so each effect is also adjusted for the other themes (a comment often
    has several); otherwise one model per theme. A theme with fewer than ``min_mentions`` mentions (or
    non-mentions) among the complete rows is left out (NaN), and so is, for the odds, a theme whose mentions are
    all or none detractors (separation). If the joint logistic fit still fails, each theme is fitted alone.
    The raw difference ``csat_difference`` (mentioning minus not) has Welch's interval.
    """
    labels = labels or {t: t for t in themes}
    alpha = 1 - confidence
    rows = {}
    ols_ok, logit_ok = [], []
    attrs = list(attributes)
    csat_rows = frame[["csat", *attrs]].notna().all(axis=1)
    nps_rows = frame[["nps", *attrs]].notna().all(axis=1)
    for theme in themes:
        mention = frame[theme].astype(bool)
        row = {"theme": theme, "label": labels.get(theme, theme)}
        with_, without = frame.loc[mention, "csat"].dropna(), frame.loc[~mention, "csat"].dropna()
        row.update(mentions=int(len(with_)), csat_with=with_.mean() if len(with_) else np.nan,
                   csat_without=without.mean() if len(without) else np.nan)
        if len(with_) >= 2 and len(without) >= 2:
            with warnings.catch_warnings():  # a group of identical scores (all 1s) is fine for Welch's interval
                warnings.simplefilter("ignore", RuntimeWarning)
                res = stats.ttest_ind(with_, without, equal_var=False)
                ci = res.confidence_interval(confidence)
            row.update(csat_difference=with_.mean() - without.mean(), csat_difference_low=float(ci.low),
                       csat_difference_high=float(ci.high))
        m = int((mention & csat_rows).sum())
        if m >= min_mentions and int(csat_rows.sum()) - m >= min_mentions:
            ols_ok.append(theme)
        det = frame.loc[nps_rows, "nps"] <= NPS_DETRACTOR_MAX
        mn = mention[nps_rows]
        row["detractor_share_with"] = float(det[mn].mean()) if mn.any() else np.nan
        row["detractor_share_without"] = float(det[~mn].mean()) if (~mn).any() else np.nan
        if int(mn.sum()) >= min_mentions and int((~mn).sum()) >= min_mentions and 0 < row["detractor_share_with"] < 1:
            logit_ok.append(theme)
        rows[theme] = row
    ols_fits, logit_fits = _fit_themes(lambda ths: _ols(frame, ths, attrs, alpha),
                                       lambda ths: _logit(frame, ths, attrs, alpha), ols_ok, logit_ok, joint)
    return _effects_result(rows, ols_fits, logit_fits, attrs, confidence, joint)


def _fit_themes(ols, logit, ols_ok: list, logit_ok: list, joint: bool) -> tuple[dict, dict]:
    """The adjusted CSAT and detractor fits of the themes that have enough mentions (``ols(themes)`` and
    ``logit(themes)`` -> {theme: fields}): jointly (one model with every theme, the attributes held fixed; a
    failed joint logistic fit falls back to one model per theme), or one model per theme."""
    if joint:
        ols_fits = ols(ols_ok) if ols_ok else {}
        logit_fits = logit(logit_ok) if logit_ok else {}
        if logit_ok and not logit_fits:  # the joint fit failed: one model per theme
            logit_fits = {k: v for th in logit_ok for k, v in logit([th]).items()}
    else:
        ols_fits = {k: v for th in ols_ok for k, v in ols([th]).items()}
        logit_fits = {k: v for th in logit_ok for k, v in logit([th]).items()}
    return ols_fits, logit_fits


def _effects_result(rows: dict, ols_fits: dict, logit_fits: dict, attrs, confidence, joint) -> ThemeEffects:
    """The per-theme rows with their fits as the :class:`ThemeEffects` table (weakest adjusted CSAT first)."""
    for theme, fit in ols_fits.items():
        rows[theme].update(fit)
    for theme, fit in logit_fits.items():
        rows[theme].update(fit)
    cols = ["theme", "label", "mentions", "csat_with", "csat_without", "csat_difference", "csat_difference_low",
            "csat_difference_high", "csat_adjusted", "csat_adjusted_low", "csat_adjusted_high", "csat_adjusted_p",
            "n_csat", "detractor_share_with", "detractor_share_without", "detractor_odds_ratio",
            "detractor_odds_ratio_low", "detractor_odds_ratio_high", "detractor_p", "detractor_change",
            "detractor_change_low", "detractor_change_high", "n_nps"]
    table = pd.DataFrame(list(rows.values())).reindex(columns=cols)
    table = table.sort_values("csat_adjusted", kind="stable", na_position="last").reset_index(drop=True)
    return ThemeEffects(table, attrs, confidence, joint)


def theme_effects(ds, codebook: Codebook, start=None, end=None, department: str | None = None,
                  attributes: Sequence[str] | None = None, confidence: float = 0.95,
                  min_mentions: int = 10, joint: bool = True) -> ThemeEffects:
    """:func:`theme_effects_frame` on the responses with a comment in ``[start, end]`` (optionally one
    department), adjusted for ``attributes`` (default: all ``attr_*`` columns). Only the theme flags, CSAT, NPS and
    the attribute ratings are pulled from DuckDB."""
    cb = _as_codebook(codebook, "theme effects")
    attrs = list(ds.attributes if attributes is None else attributes)
    missing = [a for a in attrs if a not in ds.columns("responses")]
    if missing:
        raise KitError(f"theme effects: responses have no column(s) {', '.join(map(shorten, missing))}; "
                       f"attribute columns: {', '.join(ds.attributes)}")
    dw, params = _date_where(start, end)
    fw, fparams = _filter_sql(department)
    sql = theme_flags_sql(cb, "responses", "comment", ["csat", "nps", *attrs], _and(dw, fw))
    frame = ds.con.execute(sql).df()
    return theme_effects_frame(frame, cb.names, attrs, cb.labels, confidence, min_mentions, joint)


TEXT_SAMPLE = 100_000  # the most comments the text analyses (tone, emerging and suggested themes) read as rows


def comment_sample(source, start=None, end=None, department: str | None = None, size: int = TEXT_SAMPLE,
                   seed: int = 0) -> pd.DataFrame:
    """The responses with a comment in ``[start, end]`` (optionally one ``department``) as rows for the text
    analyses that need them (sentiment, emerging and suggested themes): ``response_date``, ``department``,
    ``csat``, ``nps``, ``comment``, ordered by date and response (as :func:`helpers.voice.load_comments`). All
    of them when there are at most ``size``; else the seeded sample of the ``size`` responses with the smallest
    hash of (response id, ``seed``) (:func:`helpers.engine.aggregates.hash_uint32_sql`: the same responses on
    every engine and in every run). ``attrs``: ``population`` (comments in the period), ``size`` (rows
    returned), ``seed``, ``sampled``."""
    from helpers.engine.aggregates import hash_uint32_sql
    from helpers.engine.base import sql_literal

    if int(size) < 1:
        raise KitError(f"comment sample: size must be at least 1, got {shorten(size)}")
    dw, _ = _date_where(start, end)
    fw, _ = _filter_sql(department)
    where = _and("comment IS NOT NULL AND trim(comment) <> ''", dw, fw)
    population = int(_run(source, f"SELECT count(*) AS n FROM responses WHERE {where}")["n"].iloc[0])
    cols = "response_date, department, csat, nps, comment"
    if population <= int(size):
        sql = f"SELECT {cols} FROM responses WHERE {where} ORDER BY response_date, response_id"
    else:
        u = hash_uint32_sql(f"CAST(response_id AS VARCHAR) || ':' || {sql_literal(str(int(seed)))}")
        sql = (f"SELECT {cols} FROM (SELECT {cols}, response_id, {u} AS _u FROM responses WHERE {where} "
               f"ORDER BY _u, response_id LIMIT {int(size)}) AS s ORDER BY response_date, response_id")
    out = _run(source, sql)
    out.attrs.update(population=population, size=len(out), seed=int(seed), sampled=len(out) < population)
    return out


PATTERN_WEIGHT = "_count"  # the count column of theme_effect_patterns (theme names start with a letter)


def theme_effect_patterns(source, codebook: Codebook, start=None, end=None, department: str | None = None,
                          attributes: Sequence[str] | None = None, by: Sequence[str] = (),
                          where: str | None = None) -> pd.DataFrame:
    """The responses with a comment in ``[start, end]`` (optionally one ``department``) as distinct patterns of
    (``by`` columns, ``csat``, ``nps``, the ``attributes``, one 0/1 flag per theme) with their count
    (:data:`PATTERN_WEIGHT`), counted by the engine (``source``: an engine or a dataset). Missing values stay
    missing (a pattern of its own). :func:`theme_effects_from_patterns` fits on them what
    :func:`theme_effects_frame` fits on the rows, so memory follows the number of distinct answers, not the
    number of comments. ``where``: one more SQL condition on the responses (e.g. a seeded sample)."""
    from helpers.data import quote_ident

    cb = _as_codebook(codebook, "theme effects")
    attrs = list(attributes or [])
    dw, _ = _date_where(start, end)
    fw, _ = _filter_sql(department)
    cols = [*by, "csat", "nps", *attrs]
    keys = ", ".join(quote_ident(c) for c in [*cols, *cb.names])
    flags = _flags_sql(source, cb, cols, _and(dw, fw, where or ""))
    sql = (f"SELECT {keys}, count(*) AS {PATTERN_WEIGHT} FROM ({flags}) "
           f"GROUP BY {keys}")
    out = _run(source, sql)
    for name in cb.names:
        out[name] = out[name].astype(bool)
    for c in ["csat", "nps", *attrs]:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out[PATTERN_WEIGHT] = out[PATTERN_WEIGHT].astype("int64")
    return out


def _weighted_mean_var(y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """``(n, mean, sample variance)`` of values ``y`` repeated ``w`` times."""
    n = float(w.sum())
    if n == 0:
        return 0.0, np.nan, np.nan
    mean = float((w * y).sum() / n)
    var = float((w * (y - mean) ** 2).sum() / (n - 1)) if n > 1 else np.nan
    return n, mean, var


def _welch_interval(n1, m1, v1, n0, m0, v0, confidence: float) -> tuple[float, float]:
    """Welch's interval for ``m1 - m0``: ``se = sqrt(v1/n1 + v0/n0)`` with the Welch-Satterthwaite degrees of
    freedom (as scipy's ``ttest_ind(equal_var=False).confidence_interval``)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # numpy floats: 0/0 (constant ratings) is NaN, not an error
        a, b = np.float64(v1) / n1, np.float64(v0) / n0
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a ** 2 / (n1 - 1) + b ** 2 / (n0 - 1))
        df = 1.0 if np.isnan(df) else df  # as scipy: both sides constant -> df 1 (and se 0)
        t = stats.t.ppf(1 - (1 - confidence) / 2, df)
    d = m1 - m0
    return float(d - t * se), float(d + t * se)


def theme_effects_from_patterns(patterns: pd.DataFrame, themes: Sequence[str], attributes: Sequence[str],
                                labels: dict | None = None, confidence: float = 0.95, min_mentions: int = 10,
                                joint: bool = True, weight: str = PATTERN_WEIGHT) -> ThemeEffects:
    """:func:`theme_effects_frame` on distinct patterns with frequency weights (``weight``: how many responses
    each pattern stands for): the same table, equal to the row fit (tests check it). OLS by weighted least
    squares with HC3 (``h_i = x_i'(X'WX)^-1 x_i`` and the residual are the same for every response of a
    pattern, so ``sum_p w_p x_p x_p' e_p^2 / (1 - h_p)^2`` is the row sum); the logistic fit by Newton-Raphson on
    the weighted likelihood (the rows' likelihood; :func:`_weighted_logit`); means, Welch intervals, detractor
    shares and the g-computed detractor change as weighted sums."""
    labels = labels or {t: t for t in themes}
    alpha = 1 - confidence
    attrs = list(attributes)
    w = patterns[weight].to_numpy(float)
    csat = patterns["csat"].to_numpy(float)
    nps = patterns["nps"].to_numpy(float)
    attr_ok = patterns[attrs].notna().all(axis=1).to_numpy() if attrs else np.ones(len(patterns), bool)
    csat_rows = ~np.isnan(csat) & attr_ok
    nps_rows = ~np.isnan(nps) & attr_ok
    has_csat = ~np.isnan(csat)
    det = nps <= NPS_DETRACTOR_MAX
    rows, ols_ok, logit_ok = {}, [], []
    for theme in themes:
        mention = patterns[theme].to_numpy(bool)
        row = {"theme": theme, "label": labels.get(theme, theme)}
        n1, m1, v1 = _weighted_mean_var(csat[mention & has_csat], w[mention & has_csat])
        n0, m0, v0 = _weighted_mean_var(csat[~mention & has_csat], w[~mention & has_csat])
        row.update(mentions=int(n1), csat_with=m1, csat_without=m0)
        if n1 >= 2 and n0 >= 2:
            low, high = _welch_interval(n1, m1, v1, n0, m0, v0, confidence)
            row.update(csat_difference=m1 - m0, csat_difference_low=low, csat_difference_high=high)
        m = float(w[mention & csat_rows].sum())
        if m >= min_mentions and float(w[csat_rows].sum()) - m >= min_mentions:
            ols_ok.append(theme)
        wn_with, wn_without = w[nps_rows & mention], w[nps_rows & ~mention]
        row["detractor_share_with"] = (float((wn_with * det[nps_rows & mention]).sum() / wn_with.sum())
                                       if wn_with.sum() > 0 else np.nan)
        row["detractor_share_without"] = (float((wn_without * det[nps_rows & ~mention]).sum() / wn_without.sum())
                                          if wn_without.sum() > 0 else np.nan)
        if (wn_with.sum() >= min_mentions and wn_without.sum() >= min_mentions
                and 0 < row["detractor_share_with"] < 1):
            logit_ok.append(theme)
        rows[theme] = row
    ols = (lambda ths: _ols_weighted(patterns, ths, attrs, alpha, weight))
    logit = (lambda ths: _logit_weighted(patterns, ths, attrs, alpha, weight))
    with _one_blas_thread():
        ols_fits, logit_fits = _fit_themes(ols, logit, ols_ok, logit_ok, joint)
    return _effects_result(rows, ols_fits, logit_fits, attrs, confidence, joint)


def _one_blas_thread():
    """One BLAS thread for the small fits (at most a few dozen columns): on a shared machine a multi-threaded
    BLAS made each IRLS step of the logit 40-80 times slower (threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


_CHUNK = 65_536  # rows per block of the pattern fits' sums (bounded temporaries)


def _blocks(n: int):
    return (slice(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK))


def _weighted_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X' diag(w) X`` summed block by block."""
    out = np.zeros((X.shape[1], X.shape[1]))
    for sl in _blocks(len(X)):
        out += X[sl].T @ (X[sl] * w[sl, None])
    return out


def _pattern_arrays(patterns: pd.DataFrame, outcome: str, themes: Sequence[str], attributes: Sequence[str],
                    weight: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, w)`` of the complete patterns: intercept, theme flags, attributes; no DataFrame copy."""
    cols = [outcome, *attributes]
    ok = patterns[cols].notna().all(axis=1).to_numpy()
    X = np.empty((int(ok.sum()), 1 + len(themes) + len(attributes)))
    X[:, 0] = 1.0
    for j, c in enumerate([*themes, *attributes], start=1):
        X[:, j] = patterns[c].to_numpy(float)[ok]
    return X, patterns[outcome].to_numpy(float)[ok], patterns[weight].to_numpy(float)[ok]


def _ols_weighted(patterns: pd.DataFrame, themes: list[str], attributes: Sequence[str], alpha: float,
                  weight: str) -> dict:
    """WLS with frequency weights and the HC3 covariance of the rows they stand for (MacKinnon & White 1985):
    ``b = (X'WX)^-1 X'Wy``, ``V = (X'WX)^-1 [sum_p w_p x_p x_p' e_p^2 / (1 - h_p)^2] (X'WX)^-1`` with
    ``h_p = x_p'(X'WX)^-1 x_p``; normal intervals, as statsmodels' ``OLS(...).fit(cov_type="HC3")`` on the
    rows (tests). Sums block by block, so memory stays a few copies of the patterns' design."""
    X, y, w = _pattern_arrays(patterns, "csat", themes, attributes, weight)
    inv = np.linalg.pinv(_weighted_gram(X, w))
    b = inv @ (X.T @ (w * y))
    meat = np.zeros_like(inv)
    for sl in _blocks(len(X)):
        Xb = X[sl]
        h = ((Xb @ inv) * Xb).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = w[sl] * ((y[sl] - Xb @ b) / (1 - h)) ** 2
        meat += Xb.T @ (Xb * scale[:, None])
    cov = inv @ meat @ inv
    se = np.sqrt(np.diag(cov))
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.norm.sf(np.abs(b / se))
    n = int(w.sum())
    return {th: dict(csat_adjusted=float(b[i + 1]), csat_adjusted_low=float(b[i + 1] - z * se[i + 1]),
                     csat_adjusted_high=float(b[i + 1] + z * se[i + 1]), csat_adjusted_p=float(p[i + 1]),
                     n_csat=n) for i, th in enumerate(themes)}


@dataclass
class _LogitFit:
    params: np.ndarray
    cov: np.ndarray

    def cov_params(self) -> np.ndarray:
        return self.cov


def _weighted_logit(X: np.ndarray, y: np.ndarray, w: np.ndarray, maxiter: int = 100,
                    tol: float = 1e-10) -> _LogitFit | None:
    """Maximum likelihood of ``logit P(y = 1) = X b`` with frequency weights by Newton-Raphson (the likelihood
    of the rows the patterns stand for: ``l(b) = sum_p w_p [y_p x_p'b - log(1 + exp(x_p'b))]``, score
    ``X'W(y - p)``, information ``X' diag(w p (1 - p)) X``; its inverse at the optimum is the covariance, as
    statsmodels' ``Logit`` on the rows, tests). None when it does not converge (separation) or the
    information is singular."""
    from scipy.special import expit

    b = np.zeros(X.shape[1])
    for _ in range(maxiter):
        p = expit(X @ b)
        info = _weighted_gram(X, w * p * (1 - p))
        try:
            step = np.linalg.solve(info, X.T @ (w * (y - p)))
        except np.linalg.LinAlgError:
            return None
        b = b + step
        if not np.all(np.isfinite(b)):
            return None
        if np.max(np.abs(step)) < tol:
            p = expit(X @ b)
            try:
                cov = np.linalg.inv(_weighted_gram(X, w * p * (1 - p)))
            except np.linalg.LinAlgError:
                return None
            return _LogitFit(b, cov) if np.all(np.isfinite(np.diag(cov))) and np.all(np.diag(cov) > 0) else None
    return None


def _logit_weighted(patterns: pd.DataFrame, themes: list[str], attributes: Sequence[str], alpha: float,
                    weight: str) -> dict:
    """The logit of P(nps <= 6) on the patterns with frequency weights (:func:`_weighted_logit`): estimates and
    covariance of the row-level ``Logit``; {} when it does not converge or a coefficient is not estimable."""
    X, nps, w = _pattern_arrays(patterns, "nps", themes, attributes, weight)
    y = (nps <= NPS_DETRACTOR_MAX).astype(float)
    if not 0 < (w * y).sum() < w.sum():
        return {}
    fit = _weighted_logit(X, y, w)
    if fit is None:
        return {}
    se = np.sqrt(np.diag(fit.cov))
    z = stats.norm.ppf(1 - alpha / 2)
    out = {}
    for i, th in enumerate(themes):
        j = i + 1
        out[th] = dict(detractor_odds_ratio=float(np.exp(fit.params[j])),
                       detractor_odds_ratio_low=float(np.exp(fit.params[j] - z * se[j])),
                       detractor_odds_ratio_high=float(np.exp(fit.params[j] + z * se[j])),
                       detractor_p=float(2 * stats.norm.sf(abs(fit.params[j] / se[j]))), n_nps=int(w.sum()))
        out[th].update(_detractor_change(fit, X, j, alpha, w))
    return out


# --- the closed loop ----------------------------------------------------------------------------------------

@dataclass
class FollowUpList:
    """Detractors and very dissatisfied customers to call back. ``table`` (raw text; escape with
    :func:`follow_up_display`): ``department``, ``team``, ``owner`` (agent name), ``response_date``,
    ``days_waiting``, ``csat``, ``nps``, ``themes``, ``sentiment``, ``comment``, ``open_tickets``,
    ``recent_tickets`` (plus ``customer_id``, ``response_id``, ``ticket_id`` when ids are shown), sorted by
    department, team and oldest response first (or newest first). A bounded list (``limit``) holds the first
    rows; ``total`` counts them all, ``n_teams`` their teams, ``oldest`` the longest wait in days; ``teams``
    (when asked for) has per department and team ``customers``, ``oldest``, ``median_wait`` and
    ``open_tickets`` (customers with an open ticket), counted by the engine."""

    table: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    show_customer_ids: bool
    rule: str
    total: int | None = None
    n_teams: int | None = None
    oldest: int | None = None
    teams: pd.DataFrame | None = None

    def __post_init__(self):
        if self.total is None:
            self.total = int(len(self.table))
        if self.n_teams is None:
            self.n_teams = int(self.table.groupby(["department", "team"], dropna=False).ngroups) if len(
                self.table) else 0
        if self.oldest is None:
            self.oldest = int(self.table["days_waiting"].max()) if len(self.table) else None

    def by_team(self) -> dict[tuple[str, str], pd.DataFrame]:
        return {k: g.reset_index(drop=True) for k, g in
                self.table.groupby(["department", "team"], sort=True, dropna=False)}

    def summary(self) -> str:
        n = int(self.total)
        period = f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"
        if n == 0:
            return f"No customers to follow up ({self.rule}, {period})."
        return (f"{n:,} customers to follow up ({self.rule}, {period}) across {self.n_teams} teams; the oldest "
                f"has waited {int(self.oldest)} days.")


def _follow_up_engine(ds, engine):
    """``(engine, owned, present)``: the engine the follow-up queries run on (``engine``, or ``ds`` when it is
    one, else DuckDB over the dataset's connection, closed by the caller when ``owned``) and which of tickets
    and org the data has (survey-only data, issue 12: no ticket links, no owners)."""
    from helpers.engine import DuckDBEngine

    if engine is None and _is_engine(ds):
        engine, ds = ds, None
    owned = engine is None
    if owned:
        engine = DuckDBEngine(ds.con)
    present = {"tickets", "org"}
    if ds is not None and hasattr(ds, "tables"):
        present &= set(ds.tables)
    if ds is None or not owned:  # an engine given: also the tables it holds (engine.tables may name fewer)
        present = {t for t in present if engine.has(t)}
    return engine, owned, present


def follow_up_sql(start, end, department: str | None = None, nps_max: int = NPS_DETRACTOR_MAX, csat_max: int = 1,
                  ticket_days: int = 30, require_comment: bool = False, waiting_only: bool = False,
                  tickets: bool = True, org: bool = True) -> str:
    """The ``WITH`` clauses of the follow-up list ending in ``listed`` (one row per flagged response with its
    linked ticket, owner, ticket counts and ``days_waiting``), in the portable DuckDB dialect the engines share
    (SQLGlot writes it for Spark): day arithmetic by ``date_diff('day', ...)`` on dates, no ``FILTER``, no
    ``INTERVAL`` on dates. ``tickets`` / ``org``: whether the data has them (else empty stand-ins)."""
    from helpers.engine.base import sql_literal

    end_day = sql_literal(pd.Timestamp(end).normalize())
    days = int(ticket_days)
    ticket_rel = "tickets" if tickets else (
        "(SELECT CAST(NULL AS VARCHAR) AS ticket_id, CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) "
        "AS department, CAST(NULL AS VARCHAR) AS team, CAST(NULL AS VARCHAR) AS agent_id, CAST(NULL AS TIMESTAMP) "
        "AS created_at, CAST(NULL AS TIMESTAMP) AS resolved_at LIMIT 0)")
    org_rel = "org" if org else "(SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS VARCHAR) AS name LIMIT 0)"
    where = _and(f"CAST(r.response_date AS DATE) BETWEEN {sql_literal(pd.Timestamp(start).normalize())} AND {end_day}",
                 f"r.nps <= {int(nps_max)} OR r.csat <= {int(csat_max)}",
                 f"r.department = {sql_literal(str(department))}" if department is not None else "",
                 "r.comment IS NOT NULL AND trim(r.comment) <> ''" if require_comment else "",
                 f"r.followed_up_at IS NULL OR CAST(r.followed_up_at AS DATE) > {end_day}" if waiting_only else "")
    created = "CAST(t.created_at AS DATE)"
    return f"""
    WITH flagged AS (
        SELECT r.response_id, r.customer_id, CAST(r.response_date AS DATE) AS response_date, r.department,
               r.csat, r.nps, r.comment
        FROM responses r WHERE {where}),
    linked AS (
        SELECT f.response_id, t.ticket_id, t.team, t.agent_id,
               row_number() OVER (PARTITION BY f.response_id ORDER BY t.created_at DESC, t.ticket_id DESC) AS rk
        FROM flagged f JOIN {ticket_rel} t ON t.customer_id = f.customer_id AND t.department = f.department
        WHERE date_diff('day', {created}, f.response_date) BETWEEN 0 AND {days}),
    counts AS (
        SELECT f.response_id,
               count_if(t.ticket_id IS NOT NULL AND t.resolved_at IS NULL) AS open_tickets,
               count_if(t.ticket_id IS NOT NULL AND date_diff('day', {created}, {end_day}) BETWEEN 0 AND {days - 1})
                   AS recent_tickets
        FROM flagged f LEFT JOIN {ticket_rel} t ON t.customer_id = f.customer_id GROUP BY f.response_id),
    listed AS (
        SELECT f.response_id, f.customer_id, f.response_date, f.department, f.csat, f.nps, f.comment,
               l.ticket_id, coalesce(l.team, '(no linked ticket)') AS team, o.name AS owner,
               coalesce(c.open_tickets, 0) AS open_tickets, coalesce(c.recent_tickets, 0) AS recent_tickets,
               date_diff('day', f.response_date, {end_day}) AS days_waiting
        FROM flagged f
        LEFT JOIN linked l ON l.response_id = f.response_id AND l.rk = 1
        LEFT JOIN {org_rel} o ON o.person_id = l.agent_id
        LEFT JOIN counts c ON c.response_id = f.response_id)
    """


def follow_up_list(ds, codebook: Codebook, start=None, end=None, department: str | None = None,
                   nps_max: int = NPS_DETRACTOR_MAX, csat_max: int = 1, ticket_days: int = 30,
                   show_customer_ids: bool = False, require_comment: bool = False, limit: int | None = None,
                   newest_first: bool = False, waiting_only: bool = False, teams: bool = False,
                   engine=None) -> FollowUpList:
    """Responses in ``[start, end]`` (default: the calendar month of the latest response) with NPS ``<= nps_max``
    (detractors) or CSAT ``<= csat_max`` (very dissatisfied).

    Owner: the customer's latest ticket with the same department created in the ``ticket_days`` days up to the
    response (its team, and the agent's name from org); ``open_tickets``: the customer's tickets without
    ``resolved_at``; ``recent_tickets``: tickets created in the ``ticket_days`` days up to ``end``.
    ``days_waiting`` counts from the response to ``end``. Customer, response and ticket ids are included only when
    ``show_customer_ids`` is True. ``require_comment``: only responses with a comment (the closed loop on what
    they wrote). ``waiting_only``: only responses nobody followed up by the end of ``end`` (``followed_up_at``
    empty or later; the column must exist).

    Bounded: ``limit`` rows at most (``ORDER BY`` department, team, oldest first, or with ``newest_first`` the
    most recent first, ties by response id, then ``LIMIT``, in the engine), with ``total`` counting them all;
    themes and sentiment are computed for the listed rows only. ``teams``: the counts per department and team
    as well (the company-wide page shows those, no rows: ``limit=0``; the median wait from the middle order
    statistics, exact).

    Runs on ``engine`` (:func:`helpers.engine.open_report_engine`: DuckDB or Spark, the SQL of
    :func:`follow_up_sql`); without one on DuckDB over the dataset ``ds`` (``ds`` may also be an engine).
    """
    cb = _as_codebook(codebook, "follow-up list")
    engine, owned, present = _follow_up_engine(ds, engine)
    try:
        return _follow_up_list(engine, present, cb, start, end, department, nps_max, csat_max, ticket_days,
                               show_customer_ids, require_comment, limit, newest_first, waiting_only, teams)
    finally:
        if owned:
            engine.close()


def _follow_up_list(engine, present, cb, start, end, department, nps_max, csat_max, ticket_days,
                    show_customer_ids, require_comment, limit, newest_first, waiting_only, teams) -> FollowUpList:
    if end is None:
        last = engine.query("SELECT max(response_date) AS last FROM responses")["last"].iloc[0]
        if last is None or pd.isna(last):
            raise KitError("follow-up list: the responses table is empty")
        end = pd.Timestamp(last)
        start = end.replace(day=1) if start is None else start
    start = pd.Timestamp(start) if start is not None else pd.Timestamp(end).replace(day=1)
    end = pd.Timestamp(end)
    base = follow_up_sql(start, end, department, nps_max, csat_max, ticket_days, require_comment, waiting_only,
                         tickets="tickets" in present, org="org" in present)
    groups = ("SELECT department, team, count(*) AS customers, max(days_waiting) AS oldest FROM listed "
              "GROUP BY department, team")
    got = engine.query(base + f"SELECT CAST(coalesce(sum(customers), 0) AS BIGINT) AS total, count(*) AS n_teams, "
                              f"max(oldest) AS oldest FROM ({groups}) AS g").iloc[0]
    total, n_teams, oldest = got["total"], got["n_teams"], got["oldest"]
    order = ("response_date DESC, response_id DESC" if newest_first
             else "department, team, response_date, response_id")
    bound = "" if limit is None else f" LIMIT {max(int(limit), 0)}"
    t = engine.query(base + f"SELECT * FROM listed ORDER BY {order}{bound}")
    per_team = _follow_up_teams(engine, base) if teams else None
    t["response_date"] = pd.to_datetime(t["response_date"]).astype("datetime64[us]")  # one unit on every engine
    flags = match_themes(t["comment"], cb)
    t["themes"] = [[cb.labels[n] for n, hit in zip(cb.names, row) if hit] for row in flags.to_numpy()]
    t["sentiment"] = sentiment(t["comment"]).to_numpy()
    t["days_waiting"] = t["days_waiting"].astype(int)
    for c in ("csat", "nps"):  # one dtype whether or not the listed rows have a missing score
        t[c] = pd.to_numeric(t[c]).astype("Int64")
    for c in ("open_tickets", "recent_tickets"):
        t[c] = t[c].fillna(0).astype(int)
    for c in ("department", "team", "owner", "comment", "customer_id", "response_id", "ticket_id"):
        t[c] = _text_column(t[c])
    t["team"] = t["team"].astype(object)
    t = t.reset_index(drop=True)
    cols = ["department", "team", "owner", "response_date", "days_waiting", "csat", "nps", "themes", "sentiment",
            "comment", "open_tickets", "recent_tickets"]
    if show_customer_ids:
        cols += ["customer_id", "response_id", "ticket_id"]
    rule = f"NPS 0-{nps_max} or CSAT <= {csat_max}" + (", with a comment" if require_comment else "")
    return FollowUpList(t[cols], start, end, bool(show_customer_ids), rule, int(total or 0), int(n_teams or 0),
                        None if oldest is None or pd.isna(oldest) else int(oldest), per_team)


def _follow_up_teams(engine, base: str) -> pd.DataFrame:
    """Per department and team: ``customers``, ``oldest`` and ``median_wait`` (days; the median as the mean of
    the middle order statistics: rank ``r`` with ``n <= 2r <= n + 2``, i.e. ``(n+1)/2`` for odd ``n`` and
    ``n/2, n/2+1`` for even ``n``, exact on every engine), ``open_tickets`` (customers with an open ticket),
    ordered by customers, oldest wait, department and team."""
    sql = base + """,
    ranked AS (
        SELECT department, team, days_waiting, open_tickets,
               row_number() OVER (PARTITION BY department, team ORDER BY days_waiting) AS rk,
               count(*) OVER (PARTITION BY department, team) AS n
        FROM listed)
    SELECT department, team, count(*) AS customers, max(days_waiting) AS oldest,
           avg(CASE WHEN 2 * rk BETWEEN n AND n + 2 THEN CAST(days_waiting AS DOUBLE) END) AS median_wait,
           count_if(open_tickets > 0) AS open_tickets
    FROM ranked GROUP BY department, team ORDER BY customers DESC, oldest DESC, department, team"""
    per_team = engine.query(sql)
    for c in ("customers", "oldest", "open_tickets"):
        per_team[c] = per_team[c].astype(int)
    per_team["median_wait"] = per_team["median_wait"].astype(float)
    for c in ("department", "team"):
        per_team[c] = _text_column(per_team[c])
    return per_team


def _text_column(col: pd.Series) -> pd.Series:
    """Text as DuckDB's ``.df()`` gives it, on every engine (Spark's answer is object with None): with a value
    present the dtype pandas infers for text (``str`` in pandas 3) and missing as NaN; else object and None."""
    col = col.astype(object)
    if not col.notna().any():
        return col.where(col.notna(), None)
    return col.where(col.notna(), np.nan).infer_objects()


_FOLLOW_UP_LABELS = {"department": "Department", "team": "Team", "owner": "Owner", "response_date": "Answered",
                     "days_waiting": "Days waiting", "csat": "CSAT (1-5)", "nps": "NPS (0-10)", "themes": "Themes",
                     "sentiment": "Sentiment (-1 to 1)", "comment": "Comment", "open_tickets": "Open tickets",
                     "recent_tickets": "Recent tickets", "customer_id": "Customer", "response_id": "Response",
                     "ticket_id": "Ticket"}


def follow_up_display(follow_up: FollowUpList | pd.DataFrame, how: str = "html") -> pd.DataFrame:
    """A reader table of the follow-up list: labelled columns, dates as text, scores as whole numbers, sentiment
    to 2 decimals, and every text (comment, themes, team, owner, ids) escaped for ``how`` ("html" or
    "markdown")."""
    t = (follow_up.table if isinstance(follow_up, FollowUpList) else follow_up).copy()
    t["response_date"] = pd.to_datetime(t["response_date"]).dt.strftime("%Y-%m-%d")
    for c in ("csat", "nps"):
        t[c] = [("" if pd.isna(v) else str(int(v))) for v in t[c]]
    t["sentiment"] = [("" if pd.isna(v) else f"{v:+.2f}") for v in t["sentiment"]]
    t["days_waiting"] = t["days_waiting"].astype(str)
    for c in ("open_tickets", "recent_tickets"):
        t[c] = t[c].astype(str)
    text_cols = [c for c in ("department", "team", "owner", "themes", "comment", "customer_id", "response_id",
                             "ticket_id") if c in t]
    t = escape_text(t, text_cols, how)
    return t.rename(columns=_FOLLOW_UP_LABELS)


def _nonnegative_errors(value, low, high):
    """``xerr`` for ``errorbar``: distances from the estimate to its interval's ends, never negative (an end
    that rounds past the estimate, e.g. a Wilson lower bound of 1e-17 at a share of 0, or an interval that
    does not contain the estimate, draws no bar on that side instead of raising)."""
    import numpy as np

    v, lo, hi = (np.asarray(x, dtype=float) for x in (value, low, high))
    return [np.clip(np.nan_to_num(v - lo), 0, None), np.clip(np.nan_to_num(hi - v), 0, None)]
