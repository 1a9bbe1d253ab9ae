"""Driver reports: result objects built on the engine in :mod:`helpers.drivers`.

* :func:`analyze_drivers` -> :class:`DriverAnalysis`: ranked drivers with bootstrap intervals, mean rating
  (performance), VIF, importance-performance quadrant, and the ordinal-model check.
* :func:`ordinal_check` -> :class:`OrdinalCheck`: proportional-odds logistic regression of the overall
  rating on the drivers (statsmodels ``OrderedModel``, McCullagh 1980); odds ratio per one-point higher
  driver rating, and where its ranking (by the standardized log-odds ``|b_j| * sd_j``) disagrees with the
  Shapley ranking.
* :func:`analyze_drivers_from_patterns` and :func:`ordinal_check_from_patterns`: the same from the engine's
  rating patterns with their counts (memory follows the number of patterns, not of responses); the ordinal
  model as a frequency-weighted likelihood over the covariate patterns.
* :func:`importance_performance` -> :class:`ImportancePerformance`: importance-performance analysis
  (Martilla & James 1977): each driver's share of explained variance against its mean rating, split at
  the average share (1/p) and the average of the drivers' mean ratings into "fix first" (high importance,
  low performance), "keep up" (high, high), "low priority" (low, low) and "possible overkill" (low, high).
* :func:`analyze_by_segment` -> :class:`SegmentDrivers`: the analysis per department/channel/segment,
  with :meth:`SegmentDrivers.compare` giving a bootstrap interval for the difference of a driver's
  importance between two segments (independent resamples within each segment, percentile interval of
  the difference of the draws).

Analysis only: DataFrames and plain arguments in, results out; no files, no params.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import charts
from helpers.results import displayable
from helpers.drivers import (NONNEGATIVE_METHODS, DriverInputError, as_driver_list, consistent_interval, driver_rows,
                             importance_table, relative_importance, vif)
from helpers.formatting import (NA, fmt_interval, fmt_number, fmt_p_value, fmt_percent, interval_decimals,
                                md_escape, reader_table)

ORDINAL_MAX_ROWS = 100_000  # above this many rows (patterns, from rating patterns) the ordinal check is subsampled
QUADRANTS = ("fix first", "keep up", "low priority", "possible overkill")
# Okabe & Ito (2008) colours, told apart under every common colour-vision deficiency; each quadrant also has its
# own marker shape and is named in the legend and the labels
QUADRANT_COLOURS = {"fix first": "#D55E00", "keep up": "#0072B2", "low priority": "#999999",
                    "possible overkill": "#E69F00"}
QUADRANT_MARKERS = {"fix first": "D", "keep up": "o", "low priority": "s", "possible overkill": "^"}
BAR_COLOUR = "#0072B2"  # an attribute whose higher rating goes with a higher outcome
NEGATIVE_COLOUR = "#E69F00"  # ... with a lower outcome (drawn hatched too)


def _label(name: str) -> str:
    """attr_resolution -> Resolution; csat -> CSAT."""
    if name.lower() in ("csat", "nps", "ces"):
        return name.upper()
    return name.removeprefix("attr_").replace("_", " ").capitalize()


def _md(name: str) -> str:
    """An attribute's label for Markdown text (escaped: the name comes from the data)."""
    return md_escape(_label(name))


def _names(names, limit: int = 6) -> str:
    """Escaped labels joined for text; beyond ``limit`` names: "A, B, ... and 12 more"."""
    names = list(names)
    shown = ", ".join(_md(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _chart_text(text: str) -> str:
    """Free text for a matplotlib label: ``$`` would start mathtext (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def _chart_label(name: str) -> str:
    return _chart_text(_label(name))


def _pct(x: float) -> str:
    return fmt_percent(x, 0)


def headed_table(frame: pd.DataFrame, **kwargs) -> str:
    """:func:`helpers.formatting.reader_table` of a frame whose column names are already reader headers (shown as
    written: "95% CI", "Mean rating (1-5)")."""
    return reader_table(frame, labels={c: str(c) for c in frame.columns}, **kwargs)


def share_text(table: pd.DataFrame, driver: str) -> tuple[str, str]:
    """A driver's share of explained variance and its 95% interval as the page prints them, in tables and in
    sentences alike: ``("23%", "22% to 25%")``; decimals where the interval's ends would print alike
    (:func:`helpers.formatting.interval_decimals`), the same decimals for the share. No interval: ``NA``."""
    row = table.loc[driver]
    if "share_low" not in table or not np.isfinite(row["share_low"]) or not np.isfinite(row["share_high"]):
        return fmt_percent(row["share"], 0), NA
    d = interval_decimals(100 * row["share_low"], 100 * row["share_high"])
    return fmt_percent(row["share"], d), fmt_interval(row["share_low"], row["share_high"], d, percent=True)


def _share_with_ci(table: pd.DataFrame, driver: str, ci: int = 95) -> str:
    point, interval = share_text(table, driver)
    return point + (f" ({ci}% CI {interval})" if interval != NA else "")


# ----------------------------------------------------------------------------------------------------
# Ordinal check
# ----------------------------------------------------------------------------------------------------
@displayable
@dataclass
class OrdinalCheck:
    """Proportional-odds model of the ordinal outcome. ``table`` indexed by driver: ``odds_ratio``
    (per one point higher rating), ``or_low``, ``or_high``, ``p_value``, ``std_log_odds`` (b_j * sd_j),
    ``ordinal_rank``, ``shapley_rank`` (when given) and ``agree`` (same rank)."""
    table: pd.DataFrame
    outcome: str
    n: int
    spearman: float | None
    notes: list[str] = field(default_factory=list)
    n_available: int | None = None  # complete rows before subsampling (None: all were used)

    @property
    def subsampled(self) -> bool:
        return self.n_available is not None and self.n_available > self.n

    @property
    def disagreements(self) -> list[str]:
        if "agree" not in self.table:
            return []
        return self.table.index[~self.table["agree"]].tolist()

    def summary(self) -> str:
        t = self.table.sort_values("ordinal_rank")
        top = t.index[0]
        text = (f"An ordinal (proportional-odds) model of {_md(self.outcome)} on the same {len(t)} attributes "
                f"({self._rows_text()}) ranks {_md(top)} first: each extra point on it multiplies the odds "
                f"of a higher {_md(self.outcome)} rating by {t.loc[top, 'odds_ratio']:.2f} "
                f"(95% CI {fmt_interval(t.loc[top, 'or_low'], t.loc[top, 'or_high'], 2)}).")
        if "shapley_rank" in t:
            dis = self.disagreements
            if not dis:
                text += " Its ranking agrees with the variance decomposition for every attribute."
            else:
                shown = ", ".join(f"{_md(d)} (ordinal #{t.loc[d, 'ordinal_rank']}, Shapley #{t.loc[d, 'shapley_rank']})"
                                  for d in dis[:6]) + (f" and {len(dis) - 6} more" if len(dis) > 6 else "")
                text += f" The two rankings differ for {shown}; rank correlation {self.spearman:.2f}."
                if t["shapley_rank"].idxmin() == top:
                    text += " Both agree on the top driver."
        return text

    def _rows_text(self) -> str:
        if self.subsampled:
            return (f"fitted on a random subsample of {self.n:,} of the {self.n_available:,} complete responses, "
                    "which keeps the fit fast; at this size the intervals are narrow either way")
        return f"{self.n:,} responses"

    def report_table(self) -> pd.DataFrame:
        """Odds ratios for people: attribute, odds ratio with interval, p-value, the two ranks."""
        t = self.table.sort_values("ordinal_rank")
        out = pd.DataFrame({"Attribute": [_label(d) for d in t.index],
                            "Odds ratio per point": t["odds_ratio"].round(2).to_numpy(),
                            "95% CI": [fmt_interval(a, b, 2) for a, b in zip(t["or_low"], t["or_high"])],
                            "p-value": [fmt_p_value(p) for p in t["p_value"]],
                            "Ordinal rank": t["ordinal_rank"].to_numpy()})
        if "shapley_rank" in t:
            out["Shapley rank"] = t["shapley_rank"].to_numpy()
        return out.set_index("Attribute")

    def reader_table_html(self) -> str:
        """The odds ratios as an HTML table for readers (no index, intervals and p-values as the text has them)."""
        t = self.table.sort_values("ordinal_rank")
        rows = {"Attribute": [_label(d) for d in t.index],
                "Odds ratio per extra point": [fmt_number(v, 2) for v in t["odds_ratio"]],
                "95% CI": [fmt_interval(a, b, 2) for a, b in zip(t["or_low"], t["or_high"])],
                "p-value": [fmt_p_value(p) for p in t["p_value"]],
                "Rank in this model": t["ordinal_rank"].to_numpy()}
        if "shapley_rank" in t:
            rows["Rank by share of explained variance"] = t["shapley_rank"].to_numpy()
        return headed_table(pd.DataFrame(rows), formats={"Odds ratio per extra point": "text", "95% CI": "text"})

    def title(self) -> str:
        """The chart's finding in words."""
        if "shapley_rank" in self.table and not self.disagreements:
            return "The ordinal model ranks the attributes in the same order"
        if "shapley_rank" in self.table:
            return f"The ordinal model orders {len(self.disagreements)} attributes differently"
        top = self.table["ordinal_rank"].idxmin()
        return f"{_chart_label(top)} moves the odds of a higher rating most"

    def plot(self, ax=None):
        ax = charts.new_axis(ax)
        t = self.table.sort_values("odds_ratio")
        y = np.arange(len(t))
        # the interval as a segment from bound to bound (never a negative error-bar length)
        ax.hlines(y, t["or_low"], t["or_high"], color=BAR_COLOUR, lw=1.5)
        ax.plot(t["odds_ratio"], y, "o", color=BAR_COLOUR)
        ax.axvline(1.0, color="#6e7781", lw=1, ls="--")
        ax.set_yticks(y, [_chart_label(i) for i in t.index], fontsize=11)
        ax.set_xlabel("Odds ratio of a higher rating per extra point (95% CI; 1 = no effect)", fontsize=11)
        ax.set_title(self.title(), fontsize=12)
        return ax


def _prop_odds_model_class():
    """statsmodels' OrderedModel with the analytic score of the proportional-odds likelihood.

    OrderedModel differentiates its log-likelihood numerically (k+1 likelihood passes per gradient), which
    takes tens of seconds on 50,000 responses. With ``u_i = theta_{y_i} - x_i'b``, ``l_i = theta_{y_i - 1} -
    x_i'b``, ``p_i = F(u_i) - F(l_i)`` and ``f = F'``: ``dlogL/db = -sum x_i (f(u_i) - f(l_i)) / p_i``,
    ``dlogL/dtheta_k = sum_{y_i = k} f(u_i)/p_i - sum_{y_i = k+1} f(l_i)/p_i``, chained to statsmodels'
    threshold parameters ``theta_1 = a_1``, ``theta_k = theta_{k-1} + exp(a_k)``. The Hessian for the
    standard errors is the central difference of this score. Same likelihood, same estimates (the tests
    compare with plain OrderedModel)."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel
    from statsmodels.tools.numdiff import approx_fprime

    class PropOddsModel(OrderedModel):
        freq_weights = None  # None: one row each (WeightedPropOddsModel sets the patterns' counts)

        def score(self, params):
            params = np.asarray(params, dtype=float)
            low, upp = self._bounds(params)
            prob = self.prob(low, upp) + 1e-20
            fu, fl = self.pdf(upp), self.pdf(low)
            fu = np.where(np.isfinite(upp), fu, 0.0)
            fl = np.where(np.isfinite(low), fl, 0.0)
            ru, rl = fu / prob, fl / prob
            if self.freq_weights is not None:
                ru, rl = ru * self.freq_weights, rl * self.freq_weights
            g_beta = -(self.exog * (ru - rl)[:, None]).sum(axis=0)
            K = self.k_levels - 1
            code = np.asarray(self.endog, dtype=int)
            g_theta = np.bincount(code, weights=ru, minlength=K + 1)[:K]
            g_theta -= np.bincount(code, weights=rl, minlength=K + 1)[1:K + 1]
            a = params[-K:]
            tail = np.cumsum(g_theta[::-1])[::-1]  # sum_{j >= i} g_theta_j
            g_a = np.concatenate(([tail[0]], np.exp(a[1:]) * tail[1:]))
            return np.concatenate((g_beta, g_a))

        def hessian(self, params):
            h = approx_fprime(np.asarray(params, dtype=float), self.score, centered=True)
            return (h + h.T) / 2

    return PropOddsModel


def _weighted_prop_odds_model_class():
    """:func:`_prop_odds_model_class` with frequency weights: ``WeightedPropOddsModel(endog, exog,
    freq_weights=c)`` fits the distinct covariate patterns (rows ``endog``/``exog``) each standing for ``c_p``
    identical rows. statsmodels' OrderedModel takes no weights, so the subclass weights the log-likelihood,
    ``logL = sum_p c_p log P(y_p | x_p)``, its analytic score (each pattern's term times ``c_p``) and the start
    values (the threshold start values from the weighted outcome frequencies): the same function of the
    parameters as the unweighted likelihood of the expanded rows, so the same estimates and Hessian (standard
    errors; tests/test_drivers_engine.py compares the fit with the expanded rows' to 1e-6). ``n_rows`` is the
    number of rows ``sum c_p`` (statsmodels' ``nobs`` stays the number of patterns)."""
    base = _prop_odds_model_class()

    class WeightedPropOddsModel(base):
        def __init__(self, endog, exog, freq_weights=None, **kwds):
            super().__init__(endog, exog, **kwds)
            w = np.ones(len(self.endog)) if freq_weights is None else np.asarray(freq_weights, dtype=float)
            if w.shape != (len(self.endog),) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise DriverInputError(f"frequency weights: expected {len(self.endog)} finite counts >= 0, got "
                                       f"shape {w.shape}")
            self.freq_weights = w
            self.n_rows = float(w.sum())  # statsmodels' nobs stays the number of model rows (patterns)

        def loglike(self, params):
            return float(self.freq_weights @ self.loglikeobs(params))

        @property
        def start_params(self):
            freq = np.bincount(self.endog, weights=self.freq_weights) / self.freq_weights.sum()
            start = self.transform_reverse_threshold_params(self.distr.ppf(np.clip(freq.cumsum(), 0, 1)))
            return np.concatenate((np.zeros(self.k_vars), start))

    return WeightedPropOddsModel


def fit_prop_odds(model):
    """Maximum likelihood of a proportional-odds ``model``: BFGS from the start values, then Newton steps
    (analytic score, Hessian from its central differences) until the parameters move less than 1e-10. Newton
    steps do not depend on the scale of the objective (statsmodels divides it by the number of model rows, the
    patterns for a weighted fit, the rows for the expanded one), so a weighted and an expanded fit end at the
    same maximum to rounding. Returns the statsmodels results (``mle_retvals['converged']``)."""
    first = model.fit(method="bfgs", disp=False, maxiter=500)
    try:
        polished = model.fit(start_params=np.asarray(first.params), method="newton", disp=False, maxiter=50,
                             tol=1e-10)
    except (np.linalg.LinAlgError, ValueError):
        return first
    if np.all(np.isfinite(np.asarray(polished.params))) and np.isfinite(polished.llf) and \
            polished.llf >= first.llf - 1e-9 * abs(first.llf):
        return polished
    return first


def ordinal_check(data: pd.DataFrame, outcome: str, drivers, shapley_rank: pd.Series | None = None,
                  ci: float = 0.95, max_rows: int | None = ORDINAL_MAX_ROWS, seed=None) -> OrdinalCheck:
    """Fit ``OrderedModel(outcome ~ drivers, distr="logit")`` on complete rows (numeric drivers only).

    Case weights are not supported by statsmodels' OrderedModel; the fit is unweighted and says so when
    used next to a weighted variance decomposition.

    Large data: with more than ``max_rows`` complete rows (default 100,000; None = no limit) the model is
    fitted on a simple random subsample of ``max_rows`` of them, drawn with ``numpy.random.default_rng(seed)``
    (reproducible for a fixed seed). The result says so (``n`` = rows fitted, ``n_available`` = complete rows,
    a note, and the summary text). This is an approximation: the estimates are those of a sample of 100,000
    responses, whose standard errors are at most a few thousandths on the log-odds scale, so the ranking
    check is unaffected in practice, while the fit on a million rows would take minutes
    (:func:`ordinal_check_from_patterns` fits every complete response from their rating patterns)."""
    drivers = [d for d in drivers if pd.api.types.is_numeric_dtype(data[d])]
    notes = []
    df = data[[outcome, *drivers]].apply(pd.to_numeric, errors="coerce").dropna()
    n_available = None
    if max_rows is not None and len(df) > max_rows:
        n_available = len(df)
        keep = np.sort(np.random.default_rng(seed).choice(len(df), size=int(max_rows), replace=False))
        df = df.iloc[keep]
        notes.append(f"the ordinal model was fitted on a random subsample of {len(df):,} of the "
                     f"{n_available:,} complete responses (seeded, reproducible)")
    df = df.loc[:, [outcome] + [d for d in drivers if df[d].std() > 0]]
    drivers = list(df.columns[1:])
    levels = np.sort(df[outcome].unique())
    if len(levels) < 3:
        raise DriverInputError(f"outcome {outcome!r} has {len(levels)} distinct values in the complete rows; "
                               "an ordinal model needs at least 3")
    if len(df) < len(drivers) + len(levels) + 5:
        raise DriverInputError(f"{len(df)} complete rows are too few for an ordinal model with "
                               f"{len(drivers)} drivers and {len(levels)} outcome levels")
    y = pd.Series(pd.Categorical(df[outcome], categories=levels, ordered=True), index=df.index)
    res = _prop_odds_model_class()(y, df[drivers], distr="logit").fit(method="bfgs", disp=False, maxiter=500)
    return _ordinal_result(res, outcome, drivers, df[drivers].std(), len(df), ci, shapley_rank, notes, n_available)


def _ordinal_result(res, outcome: str, drivers: list[str], sd: pd.Series, n: int, ci: float,
                    shapley_rank: pd.Series | None, notes: list[str], n_available: int | None) -> OrdinalCheck:
    """The :class:`OrdinalCheck` of a fitted proportional-odds model ``res``: odds ratios with Wald intervals,
    p-values, the standardized log-odds ``b_j * sd_j`` (``sd``: the drivers' standard deviations in the fitted
    rows) and its ranking against ``shapley_rank``."""
    from scipy.stats import norm, spearmanr

    if not res.mle_retvals.get("converged", True):
        notes.append("the ordinal model did not fully converge")
    b = res.params[drivers]
    se = res.bse[drivers]
    z = norm.ppf(0.5 + ci / 2)
    t = pd.DataFrame({"odds_ratio": np.exp(b), "or_low": np.exp(b - z * se), "or_high": np.exp(b + z * se),
                      "p_value": res.pvalues[drivers], "std_log_odds": b * sd})
    t.index.name = "driver"
    t["ordinal_rank"] = t["std_log_odds"].abs().rank(ascending=False, method="min").astype(int)
    rho = None
    if shapley_rank is not None:
        sr = shapley_rank.reindex(t.index)
        # re-rank among the drivers in this model
        t["shapley_rank"] = sr.rank(method="min").astype(int)
        t["agree"] = t["shapley_rank"] == t["ordinal_rank"]
        rho = float(spearmanr(t["shapley_rank"], t["ordinal_rank"]).statistic) if len(t) > 2 else None
    return OrdinalCheck(table=t, outcome=outcome, n=int(n), spearman=rho, notes=notes, n_available=n_available)


def ordinal_check_from_patterns(patterns: pd.DataFrame, outcome: str, drivers,
                                shapley_rank: pd.Series | None = None, ci: float = 0.95,
                                max_rows: int | None = ORDINAL_MAX_ROWS, seed=None) -> OrdinalCheck:
    """:func:`ordinal_check` from the distinct rating patterns of the selection with their counts
    (:func:`helpers.engine.poisson_bootstrap.rating_patterns` of columns including ``[outcome, *drivers]``,
    missing values kept) instead of its rows.

    The complete patterns of ``[outcome, *drivers]`` (listwise deletion, as on rows) are the covariate patterns
    of the proportional-odds model, each with its number of rows as a frequency weight
    (:func:`_weighted_prop_odds_model_class`: the expanded rows' likelihood, so the same estimates and standard
    errors, fitted to convergence by :func:`fit_prop_odds`). Ratings are integers, so the patterns are few and
    the fit uses every complete response (the row path subsamples above ``max_rows`` rows). Only when there are
    more than ``max_rows`` distinct patterns is the model fitted on a simple random sample of ``max_rows`` rows
    without replacement, drawn in pattern form (multivariate hypergeometric counts,
    ``numpy.random.default_rng(seed)``); the result then says so as :func:`ordinal_check` does (``n``,
    ``n_available``, a note). A driver constant in the complete rows is left out; ``sd_j`` of the standardized
    log-odds is the drivers' standard deviation over the rows (divisor n - 1)."""
    drivers = as_driver_list(drivers)
    cols = list(patterns.attrs.get("columns") or [])
    absent = [c for c in [outcome, *drivers] if c not in cols]
    if absent:
        raise DriverInputError(f"the rating patterns have columns {cols}; the ordinal model needs {absent}")
    X = patterns[[f"x{cols.index(c)}" for c in [outcome, *drivers]]].to_numpy(float)
    c = patterns["count"].to_numpy(float)
    ok = ~np.isnan(X).any(axis=1) & (c > 0)
    df = pd.DataFrame(X[ok], columns=[outcome, *drivers])
    df["_count"] = c[ok]
    df = df.groupby([outcome, *drivers], sort=True, as_index=False)["_count"].sum()  # patterns of these columns
    notes = []
    n_available = None
    n = int(df["_count"].sum())
    if max_rows is not None and len(df) > max_rows:
        n_available = n
        rng = np.random.default_rng(seed)
        df["_count"] = rng.multivariate_hypergeometric(df["_count"].to_numpy("int64"), int(max_rows))
        df = df[df["_count"] > 0].reset_index(drop=True)
        n = int(df["_count"].sum())
        notes.append(f"the ordinal model was fitted on a random subsample of {n:,} of the {n_available:,} complete "
                     "responses (seeded, reproducible)")
    drivers = [d for d in drivers if df[d].nunique() > 1]  # a constant driver (sd 0) is left out, as on rows
    levels = np.sort(df[outcome].unique())
    if len(levels) < 3:
        raise DriverInputError(f"outcome {outcome!r} has {len(levels)} distinct values in the complete rows; "
                               "an ordinal model needs at least 3")
    if n < len(drivers) + len(levels) + 5:
        raise DriverInputError(f"{n} complete rows are too few for an ordinal model with "
                               f"{len(drivers)} drivers and {len(levels)} outcome levels")
    w = df["_count"].to_numpy(float)
    values = df[drivers].to_numpy(float)
    mean = (w @ values) / w.sum()
    sd = pd.Series(np.sqrt((w @ (values - mean) ** 2) / (w.sum() - 1)), index=drivers)
    y = pd.Series(pd.Categorical(df[outcome], categories=levels, ordered=True), index=df.index)
    model = _weighted_prop_odds_model_class()(y, df[drivers], freq_weights=w, distr="logit")
    return _ordinal_result(fit_prop_odds(model), outcome, drivers, sd, n, ci, shapley_rank, notes, n_available)


# ----------------------------------------------------------------------------------------------------
# Importance-performance analysis
# ----------------------------------------------------------------------------------------------------
@displayable
@dataclass
class ImportancePerformance:
    """``table`` indexed by driver: ``share`` (of explained variance), ``performance`` (mean rating),
    ``quadrant``, ``opportunity`` (share x gap to the best rating). ``fix_first`` lists the "fix first"
    drivers, most important first."""
    table: pd.DataFrame
    importance_cut: float
    performance_cut: float
    scale_max: float | None = None

    @property
    def fix_first(self) -> list[str]:
        t = self.table[self.table["quadrant"] == "fix first"]
        return t.sort_values("share", ascending=False).index.tolist()

    def summary(self) -> str:
        ff = self.fix_first
        if not ff:
            keep = self.table[self.table["quadrant"] == "keep up"].sort_values("share", ascending=False)
            return ("No attribute is both more important than average and rated below average: "
                    + (f"keep up {_names(keep.index, 10)}." if len(keep) else "nothing to fix first."))
        t = self.table
        parts = [f"{_md(d)} ({_pct(t.loc[d, 'share'])} of explained variance, rated "
                 f"{fmt_number(t.loc[d, 'performance'], 2)})" for d in ff]
        return ("Fix first - important but rated below the attributes' average of "
                f"{self.performance_cut:.2f}: " + "; ".join(parts) + ".")

    def title(self) -> str:
        """The map's finding in words."""
        ff = self.fix_first
        if not ff:
            return "No attribute is both important and rated below average"
        names = [_chart_label(d) for d in ff[:3]]
        text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"Fix first: {text} (important, rated below average)"

    def plot(self, ax=None):
        ax = charts.new_axis(ax)
        t = self.table
        for q in QUADRANTS:
            s = t[t["quadrant"] == q]
            if len(s):
                ax.scatter(s["performance"], 100 * s["share"], s=90, color=QUADRANT_COLOURS[q],
                           marker=QUADRANT_MARKERS[q], label=q, zorder=3, edgecolor="white", linewidth=0.6)
        for d, row in t.iterrows():
            ax.annotate(_chart_label(d), (row["performance"], 100 * row["share"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=11)
        ax.axvline(self.performance_cut, color="#6e7781", lw=1, ls="--")
        ax.axhline(100 * self.importance_cut, color="#6e7781", lw=1, ls="--")
        ax.set_xlabel("Performance: mean rating (1-5 scale)", fontsize=11)
        ax.set_ylabel("Importance: % of explained variance", fontsize=11)
        ax.set_title(self.title(), fontsize=12)
        ax.tick_params(labelsize=10)
        ax.legend(loc="best", fontsize=10, frameon=False)
        return ax


def importance_performance(importance: pd.DataFrame, data: pd.DataFrame, weights=None,
                           scale_max: float | None = None) -> ImportancePerformance:
    """Quadrants from an importance table (index = drivers, column ``share``) and the drivers' (weighted)
    mean ratings in ``data``. Categorical drivers (no mean rating) are left out."""
    drivers = [d for d in importance.index if d in data.columns and pd.api.types.is_numeric_dtype(data[d])]
    if not drivers:
        raise DriverInputError("no numeric driver to place on the importance-performance map")
    w = np.ones(len(data)) if weights is None else (
        data[weights].to_numpy(dtype=float) if isinstance(weights, str) else np.asarray(weights, dtype=float))
    perf = {}
    for d in drivers:
        x = data[d].to_numpy(dtype=float, na_value=np.nan)
        ok = ~np.isnan(x) & (w > 0)
        perf[d] = float(np.average(x[ok], weights=w[ok])) if ok.any() else np.nan
    top = scale_max if scale_max is not None else float(np.nanmax([data[d].max() for d in drivers]))
    return importance_performance_from_means(importance, pd.Series(perf), top)


def importance_performance_from_means(importance: pd.DataFrame, performance: pd.Series,
                                      scale_max: float) -> ImportancePerformance:
    """Quadrants from an importance table (index = drivers, column ``share``) and the drivers' mean ratings
    ``performance`` (index = drivers; :func:`importance_performance` computes them from rows,
    :func:`analyze_drivers_from_patterns` from rating patterns); ``scale_max``: the best rating."""
    drivers = list(performance.index)
    perf = performance
    top = scale_max
    t = pd.DataFrame({"share": importance.loc[drivers, "share"], "performance": pd.Series(perf)})
    t.index.name = "driver"
    icut = 1.0 / len(importance)
    pcut = float(t["performance"].mean())
    high_i = t["share"] >= icut
    high_p = t["performance"] >= pcut
    t["quadrant"] = np.select([high_i & ~high_p, high_i & high_p, ~high_i & ~high_p],
                              ["fix first", "keep up", "low priority"], "possible overkill")
    t["opportunity"] = t["share"] * (top - t["performance"])
    return ImportancePerformance(table=t, importance_cut=icut, performance_cut=pcut, scale_max=top)


# ----------------------------------------------------------------------------------------------------
# The main result
# ----------------------------------------------------------------------------------------------------
@displayable
@dataclass
class DriverAnalysis:
    """Drivers of ``outcome`` for one group of responses (``label``).

    ``table`` indexed by driver, most important first: ``importance`` (R^2 units), ``share``, ``ci_low``/
    ``ci_high`` (R^2 units) and ``share_low``/``share_high`` when bootstrapped, ``rank``, ``sign``,
    ``signed_importance``, ``performance`` (mean rating), ``quadrant``, ``vif``."""
    table: pd.DataFrame
    outcome: str
    label: str
    r2: float
    n: int
    method: str
    ci: float
    warnings: list[str]
    dropped: dict[str, str]
    ipa: ImportancePerformance | None = None
    ordinal: OrdinalCheck | None = None
    draws: np.ndarray | None = None
    r2_ci: tuple[float, float] | None = None
    attrs: dict = field(default_factory=dict)
    boot_r2: np.ndarray | None = None  # R^2 of each bootstrap replicate (rows of ``draws``)

    @property
    def fix_first(self) -> list[str]:
        return self.ipa.fix_first if self.ipa is not None else []

    def summary(self) -> str:
        """Plain-language Markdown: R^2, the top drivers with intervals, fix first, and the notes (attributes
        left out, attributes indistinguishable from zero, bootstrap draws). Free text is escaped."""
        t = self.table
        top = t.index[0]
        ci = int(round(100 * self.ci))
        if self.r2_ci:
            d = interval_decimals(100 * self.r2_ci[0], 100 * self.r2_ci[1])
            r2 = (f"{fmt_percent(self.r2, d)} ({ci}% CI "
                  f"{fmt_interval(self.r2_ci[0], self.r2_ci[1], d, percent=True)})")
        else:
            r2 = _pct(self.r2)
        who = f"the {len(t)} attributes together explain" if len(t) > 1 else f"{_md(top)}, the only attribute, explains"
        head = (f"For {md_escape(self.label)} ({self.n:,} responses), {who} {r2} "
                f"of the variation in {_md(self.outcome)}. {_md(top)} is the strongest driver: "
                f"{share_text(t, top)[0]} of explained variance"
                + (f" ({ci}% CI {share_text(t, top)[1]})" if share_text(t, top)[1] != NA else ""))
        head += "."
        if len(t) > 1:
            nxt = t.index[1:3]
            head += " Next come " + " and ".join(f"{_md(d)} ({_pct(t.loc[d, 'share'])})" for d in nxt) + "."
            if "share_low" in t and t.loc[top, "share_low"] <= t.loc[t.index[1], "share_high"]:
                head += (f" The intervals of {_md(top)} and {_md(t.index[1])} overlap, so their order is "
                         "not certain.")
        ff = self.fix_first
        if ff:
            head += (" Fix first: " + _names(ff, 10)
                     + " - more important than average but rated below the other attributes.")
        # a negative direction is worth a note only for an attribute that matters (1% of R^2 or more)
        neg = [d for d in t.index if t.loc[d, "sign"] < 0 and t.loc[d, "share"] >= 0.01]
        if neg:
            head += (" Note: higher ratings of " + _names(neg)
                     + " go with lower overall scores once the other attributes are held fixed "
                       "(usually overlap between attributes, not a real harm).")
        notes = self.notes()
        if notes:
            head += " " + " ".join(notes)
        if self.warnings:
            head += " Caution: " + "; ".join(md_escape(w) for w in self.warnings) + "."
        return head

    def notes(self) -> list[str]:
        """Markdown sentences: attributes left out (and why), attributes whose importance cannot be told
        apart from zero, and how many bootstrap re-samples gave the intervals (and why, when capped)."""
        out = []
        if self.dropped:
            out.append("Left out of the analysis: " + "; ".join(f"{_md(k)} ({md_escape(v)})"
                                                                for k, v in self.dropped.items()) + ".")
        zero = [d for d in self.attrs.get("ci_at_zero", []) if d in self.table.index]
        if zero:
            out.append(f"{_names(zero)} {'adds' if len(zero) == 1 else 'add'} almost nothing: the importance "
                       "cannot be told apart from zero, so the interval is shown from 0 (a re-sampled importance "
                       "near zero lies above the estimate; see the method notes).")
        n_boot = self.attrs.get("n_boot", 0)
        if n_boot:
            text = f"Intervals from {n_boot:,} bootstrap re-samples of the responses"
            reason = self.attrs.get("n_boot_reason", "")
            if reason:
                asked = self.attrs.get("n_boot_requested", n_boot)
                text += f" ({md_escape(reason.split(': ', 1)[-1])}; {asked:,} were requested)"
            out.append(text + ".")
        if (not self.attrs.get("exact", True) and self.attrs.get("fallback")
                and self.attrs["fallback"] not in self.warnings):
            out.append(md_escape(self.attrs["fallback"]) + ".")
        return out

    def report_table(self) -> pd.DataFrame:
        """The ranked table for people: attribute, share of explained variance with its interval, mean
        rating, quadrant, direction."""
        t = self.table
        texts = [share_text(t, d) for d in t.index]
        out = pd.DataFrame({"Attribute": [_label(d) for d in t.index], "Rank": t["rank"].to_numpy(),
                            "Share of explained variance": [a for a, _ in texts]})
        if "share_low" in t:
            out[f"{int(round(100 * self.ci))}% CI"] = [b for _, b in texts]
        if "performance" in t:
            out["Mean rating"] = t["performance"].round(2).to_numpy()
            out["Quadrant"] = t["quadrant"].to_numpy()
        out["Direction"] = ["higher is better" if s > 0 else ("higher is worse" if s < 0 else "factor")
                            for s in t["sign"]]
        return out.set_index("Attribute")

    def reader_table_html(self) -> str:
        """:meth:`report_table` as an HTML table for readers (no index; shares and intervals as in the text)."""
        out = self.report_table().reset_index()
        out = out.rename(columns={"Mean rating": "Mean rating (1-5)"})
        formats = {c: "text" for c in out.columns if c not in ("Rank",)}
        if "Mean rating (1-5)" in out:
            formats["Mean rating (1-5)"] = "number:2"
        return headed_table(out, formats=formats)

    def analyst_table_html(self) -> str:
        """For analysts: importance in points of R² with its interval, direction and variance inflation."""
        t = self.table
        ci = int(round(100 * self.ci))
        out = pd.DataFrame({"Attribute": [_label(d) for d in t.index],
                            "Importance (points of R²)": [fmt_number(100 * v, 1) for v in t["importance"]]})
        if "ci_low" in t:
            out[f"{ci}% CI"] = [fmt_interval(100 * a, 100 * b, 1) for a, b in zip(t["ci_low"], t["ci_high"])]
        out["Direction"] = ["higher is better" if v > 0 else ("higher is worse" if v < 0 else "factor")
                            for v in t["sign"]]
        if "vif" in t:
            out["Variance inflation (VIF)"] = [fmt_number(v, 2) for v in t["vif"]]
        return headed_table(out, formats={c: "text" for c in out.columns})

    def title(self) -> str:
        """The chart's finding in words."""
        t = self.table
        top = t.index[0]
        point, _ = share_text(t, top)
        text = f"{_chart_label(top)} drives {_chart_label(self.outcome)} most: {point} of explained variance"
        return text if len(text) <= 80 else f"{_chart_label(top)} drives {_chart_label(self.outcome)} most ({point})"

    def plot(self, ax=None, max_attributes: int = 30):
        """Horizontal bars: share of explained variance with the bootstrap interval (a segment from its
        lower to its upper bound, so an interval that starts at 0 is drawn as it is); bar colour = direction.
        With more than ``max_attributes`` attributes the most important ones are drawn and the title says so."""
        t = self.table
        shown = t.iloc[:max_attributes] if max_attributes and len(t) > max_attributes else t
        if ax is None:
            ax = charts.new_axis(None, figsize=(9, max(4.5, 0.28 * len(shown) + 1.5)))
        shown = shown.iloc[::-1]
        y = np.arange(len(shown))
        colours = [NEGATIVE_COLOUR if s < 0 else BAR_COLOUR for s in shown["sign"]]
        bars = ax.barh(y, 100 * shown["share"], color=colours, alpha=0.85)
        for bar, s in zip(bars, shown["sign"]):
            if s < 0:
                bar.set_hatch("//")
        if "share_low" in shown:
            low, high = 100 * shown["share_low"].to_numpy(), 100 * shown["share_high"].to_numpy()
            ax.hlines(y, low, high, color="#24292f", lw=1, zorder=3)
            for end in (low, high):
                ax.plot(end, y, marker="|", linestyle="none", color="#24292f", markersize=7, zorder=3)
        ax.set_yticks(y, [_chart_label(i) for i in shown.index], fontsize=11 if len(shown) <= 20 else 9)
        ax.set_xlabel(f"Share of explained variance in {_chart_label(self.outcome)} (%)"
                      + (f", with {int(round(100 * self.ci))}% CI" if "share_low" in shown else ""), fontsize=11)
        ax.tick_params(axis="x", labelsize=10)
        more = f" (top {len(shown)} of {len(t)})" if len(shown) < len(t) else ""
        ax.set_title(self.title() + more, fontsize=12)
        return ax


def analyze_drivers(data: pd.DataFrame, outcome: str, drivers, method: str = "shapley", weights=None,
                    n_boot: int = 500, ci: float = 0.95, seed=None, missing: str = "listwise",
                    label: str = "all responses", ordinal: bool = True, scale_max: float | None = None,
                    min_n: int | None = None, ordinal_max_rows: int | None = ORDINAL_MAX_ROWS, *, filters=None,
                    start=None, end=None) -> DriverAnalysis:
    """Full driver analysis of one group: :func:`helpers.drivers.relative_importance` plus performance,
    quadrants, VIF and (``ordinal=True``) the proportional-odds check.

    ``min_n`` (default ``max(30, 10 * number of drivers)``): below it a warning is added.
    ``ordinal_max_rows``: above this many complete rows the ordinal check is fitted on a random subsample of
    that size drawn with ``seed`` (see :func:`ordinal_check`; the result and its summary say so).
    Large data: the bootstrap of :func:`helpers.drivers.relative_importance` draws counts of distinct rows
    above ``helpers.drivers.COLLAPSE_MIN_ROWS`` rows (the same bootstrap distribution, see there).
    ``data`` may be a Dataset; ``filters``/``start``/``end`` select the responses as in
    :func:`helpers.drivers.relative_importance` (customer columns such as segment joined in DuckDB)."""
    drivers = as_driver_list(drivers)
    data = driver_rows(data, outcome, drivers, weights, filters, start, end)
    t = relative_importance(data, outcome, drivers, method=method, weights=weights, n_boot=n_boot, ci=ci,
                            seed=seed, missing=missing)
    numeric = [d for d in t.table.index if pd.api.types.is_numeric_dtype(data[d])]

    def vif_of(cols):
        return vif(data, cols, weights=weights)

    def ipa_of(table):
        return importance_performance(table, data, weights=weights, scale_max=scale_max)

    result = _analysis_from_importance(t, outcome, drivers, ci, label, min_n, numeric, vif_of, ipa_of)
    if ordinal and len(numeric) >= 1:
        try:
            result.ordinal = ordinal_check(data, outcome, numeric, shapley_rank=result.table["rank"], ci=ci,
                                           seed=seed, max_rows=ordinal_max_rows)
            if weights is not None:
                result.ordinal.notes.append("the ordinal model is unweighted (statsmodels OrderedModel takes no "
                                            "case weights)")
        except (DriverInputError, np.linalg.LinAlgError, ValueError) as e:
            result.warnings.append(f"ordinal check not available: {e}")
    return result


def _analysis_from_importance(t, outcome: str, drivers: list[str], ci: float, label: str, min_n: int | None,
                              numeric: list[str], vif_of, ipa_of) -> DriverAnalysis:
    """The :class:`DriverAnalysis` of an importance result ``t`` (:func:`helpers.drivers.relative_importance`
    or its pattern twin): share intervals, the at-zero rule, the sample warning, VIF (``vif_of(columns)``) and
    the importance-performance map (``ipa_of(table)``); no ordinal check."""
    attrs = dict(t.attrs)
    table = t.table.sort_values("importance", ascending=False).copy()
    draws, boot_r2 = t.draws, t.boot_r2
    if draws is not None:
        order = [list(t.index).index(d) for d in table.index]
        draws = draws[:, order]
        shares = draws / boot_r2[:, None]
        a = (1 - ci) / 2
        low, high, zero = consistent_interval(table["share"], np.quantile(shares, a, axis=0),
                                              np.quantile(shares, 1 - a, axis=0),
                                              attrs["method_used"] in NONNEGATIVE_METHODS)
        # one rule for both columns: an importance that cannot be told apart from 0 starts at 0 in both
        at_zero = [d for d, z in zip(table.index, zero) if z or d in attrs.get("ci_at_zero", [])]
        table["share_low"], table["share_high"] = low, high
        table.loc[at_zero, ["share_low", "ci_low"]] = 0.0
        attrs["ci_at_zero"] = at_zero
    warnings = list(attrs.get("warnings", []))
    min_n = min_n if min_n is not None else max(30, 10 * len(drivers))
    if attrs["n"] < min_n and not any("fewer than 10 per driver" in w for w in warnings):
        warnings.append(f"only {attrs['n']} responses (fewer than {min_n}): read the intervals")
    numeric = [d for d in table.index if d in numeric]
    if len(numeric) >= 2:
        try:
            table["vif"] = vif_of(numeric).reindex(table.index)
        except DriverInputError:
            table["vif"] = np.nan
        high = table.index[table["vif"] > 5].tolist()
        if high:
            warnings.append("strong overlap between attributes (VIF > 5: " + ", ".join(_label(h) for h in high)
                            + "): importance is shared between them")
    ipa = None
    if numeric:
        ipa = ipa_of(table)
        table["performance"] = ipa.table["performance"].reindex(table.index)
        table["quadrant"] = ipa.table["quadrant"].reindex(table.index)
    oc = None
    return DriverAnalysis(table=table, outcome=outcome, label=label, r2=attrs["r2"], n=attrs["n"],
                          method=attrs["method_used"], ci=ci, warnings=warnings, dropped=attrs["dropped"],
                          ipa=ipa, ordinal=oc, draws=draws, r2_ci=attrs.get("r2_ci"), attrs=attrs, boot_r2=boot_r2)


# ----------------------------------------------------------------------------------------------------
# The same analysis from rating patterns (engine aggregates instead of rows)
# ----------------------------------------------------------------------------------------------------
def _corr_from_moments(n: float, s: np.ndarray, SS: np.ndarray, X: np.ndarray, c: np.ndarray):
    """Correlation matrix and SDs from the count ``n``, sums ``s`` and cross products ``SS`` of the complete
    patterns ``X`` (counts ``c``): the formula of ``helpers.drivers._weighted_corr`` for unweighted rows,
    ``C = S/n - m m'`` (``S = SS/n``, ``m = s/n``), with its centred fallback when more than 6 digits would
    cancel. The sums of integer ratings are exact in floating point, so the matrix is the row-level one bit
    for bit."""
    m = s / n
    S = SS / n
    C = S - np.outer(m, m)
    d = np.diag(C)
    if np.all(d > 0) and np.all(np.diag(S) / d < 1e6):
        sd = np.sqrt(d)
        return C / np.outer(sd, sd), sd
    Xc = X - m
    C = (Xc * c[:, None]).T @ Xc / n
    sd = np.sqrt(np.clip(np.diag(C), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = C / np.outer(sd, sd)
    return R, sd


def _pattern_corr(X: np.ndarray, c: np.ndarray):
    """(R, sd, n) of complete patterns ``X`` with counts ``c`` (float)."""
    n = float(c.sum())
    return (*_corr_from_moments(n, c @ X, (X * c[:, None]).T @ X, X, c), n)


def _pattern_bootstrap(X: np.ndarray, c: np.ndarray, design, n_boot: int, seed, method_used: str,
                       chunk: int = 50):
    """Pattern bootstrap: replicate b weights pattern p by its count in a re-sample of the n rows,
    ``(W_b1..W_bP) ~ Multinomial(n, c / n)`` - exactly the distribution of the row bootstrap's counts summed
    within patterns (as ``helpers.drivers._bootstrap`` does for large data), so the intervals are the row
    bootstrap's up to Monte-Carlo error at any n. (The Poisson weights of ``helpers.engine.poisson_bootstrap``,
    ``W_bp ~ Poisson(c_p)``, agree only up to O(1/n): with 14 rows and 6 attributes they left 15% of the
    replicates singular against 3-4% for the row bootstrap.) Then the correlation of the weighted patterns
    (centred once at the sample means: correlations do not change with a shift) and the importances of the
    kept players. Returns the usable draws and their R^2 (the row bootstrap's rule: at least max(10, 90%)
    usable)."""
    from helpers.engine.poisson_bootstrap import _replicate_importances  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    n_rows = int(c.sum())
    p_rows = c / c.sum()
    Xc = X - (c @ X) / c.sum()
    k = X.shape[1]
    iu = np.triu_indices(k)
    prods = Xc[:, iu[0]] * Xc[:, iu[1]]  # patterns x k(k+1)/2
    draws, r2s = [], []
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        W = rng.multinomial(n_rows, p_rows, size=b).astype(float)
        nb = W.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (W @ Xc) / nb[:, None]
            upper = (W @ prods) / nb[:, None]
            S = np.empty((b, k, k))
            S[:, iu[0], iu[1]] = upper
            S[:, iu[1], iu[0]] = upper
            C = S - m[:, :, None] * m[:, None, :]
            sd = np.sqrt(np.clip(np.einsum("bii->bi", C), 0, None))
            corr = C / (sd[:, :, None] * sd[:, None, :])
        ok = np.all(np.isfinite(corr.reshape(b, -1)), axis=1)
        imp = np.full((b, len(design.players)), np.nan)
        r2 = np.full(b, np.nan)
        if ok.any():  # a singular replicate gives NaN, as in the row bootstrap
            imp[ok], r2[ok] = _replicate_importances(corr[ok], len(design.players), method_used)
        draws.append(imp)
        r2s.append(r2)
        done += b
    draws, r2s = np.vstack(draws), np.concatenate(r2s)
    good = np.all(np.isfinite(draws), axis=1)
    if n_boot < 10:
        raise DriverInputError(f"n_boot = {n_boot}: at least 10 bootstrap re-samples are needed for intervals "
                               "(n_boot = 0 for none)")
    if good.sum() < max(10, 0.9 * n_boot):
        raise DriverInputError(f"only {int(good.sum())} of {n_boot} bootstrap samples gave a usable model "
                               "(singular in the others): too few rows or categories too rare")
    return draws[good], r2s[good]


def patterns_usable_rows(patterns: pd.DataFrame, outcome: str, drivers: list[str]) -> int:
    """Complete rows of ``outcome`` and the answered ``drivers`` (a driver nobody answered does not count
    against them) in :func:`helpers.engine.poisson_bootstrap.rating_patterns` of ``[outcome, *drivers]``."""
    cols = list(patterns.attrs["columns"])
    X = patterns[[f"x{i}" for i in range(len(cols))]].to_numpy(float)
    c = patterns["count"].to_numpy(float)
    if not len(c):
        return 0
    have = ~np.isnan(X)
    answered = [cols.index(d) for d in drivers if (have[:, cols.index(d)] & (c > 0)).any()]
    ok = have[:, [cols.index(outcome), *answered]].all(axis=1)
    return int(c[ok].sum())


def analyze_drivers_from_patterns(patterns: pd.DataFrame, outcome: str, drivers, n_boot: int = 500,
                                  ci: float = 0.95, seed=None, label: str = "all responses",
                                  min_n: int | None = None, method: str = "shapley", ordinal: bool = False,
                                  ordinal_max_rows: int | None = ORDINAL_MAX_ROWS) -> DriverAnalysis:
    """:func:`analyze_drivers` (listwise deletion, unweighted, numeric ratings) from the
    distinct rating patterns of the selection with their counts
    (:func:`helpers.engine.poisson_bootstrap.rating_patterns` of ``[outcome, *drivers]``, missing values
    kept) instead of its rows: memory follows the number of patterns, not of responses.

    Point estimates are the row-level ones: the correlation matrix of the complete patterns is that of the
    complete rows (:func:`_corr_from_moments`), the cleaning (attributes never answered, constant or aliased),
    Shapley values, signs, ranks and R^2 go through the same code as :func:`helpers.drivers.relative_importance`;
    the VIF comes from the patterns complete in the kept attributes and each mean rating from the patterns in
    which that attribute is answered, as :func:`helpers.drivers.vif` and :func:`importance_performance` do on
    rows. Intervals: the pattern bootstrap (:func:`_pattern_bootstrap`: multinomial pattern counts, the row
    bootstrap's distribution; tests/test_drivers_patterns.py checks the agreement within Monte-Carlo error),
    then the same percentile intervals, at-zero rule and R^2 interval. The random draws differ from the row
    path's, so intervals agree within Monte-Carlo error, not digit for digit. ``ordinal=True`` adds the
    proportional-odds check fitted on the same patterns with frequency weights
    (:func:`ordinal_check_from_patterns`, seeded by ``seed`` where it must subsample)."""
    from helpers.drivers import (MAX_EXACT, NONNEGATIVE_METHODS, DriverImportance, _Design,  # noqa: PLC0415
                                 _drop_degenerate, bootstrap_draws,
                                 canonical_method)

    asked, method = method, canonical_method(method)
    drivers = as_driver_list(drivers)
    cols = list(patterns.attrs.get("columns") or [])
    if cols[:1] != [outcome] or any(d not in cols for d in drivers):
        raise DriverInputError(f"the rating patterns have columns {cols}; expected [{outcome!r}, *drivers]")
    X_all = patterns[[f"x{i}" for i in range(len(cols))]].to_numpy(float)
    c_all = patterns["count"].to_numpy(float)
    have = ~np.isnan(X_all) & (c_all > 0)[:, None]
    n_total = int(c_all.sum())
    dropped = {}
    players = []
    for d in drivers:
        if not have[:, cols.index(d)].any():
            dropped[d] = "all values missing"
        else:
            players.append(d)
    if not have[:, 0].any():
        raise DriverInputError(f"outcome {outcome!r} is missing in all {n_total} rows")
    if not players:
        raise DriverInputError(f"none of the drivers {drivers} is usable: {dropped}")
    idx = [0, *[cols.index(d) for d in players]]
    ok = have[:, idx].all(axis=1)
    X, c = X_all[ok][:, idx], c_all[ok]
    n_rows = int(c.sum())
    if n_rows < 3:
        raise DriverInputError(f"only {n_rows} usable rows for outcome {outcome!r} and drivers "
                               f"{list(drivers)} (listwise deletion); expected at least drivers + 2")
    corr, sd, _ = _pattern_corr(X, c)
    if not np.isfinite(sd[0]) or sd[0] <= 0:
        raise DriverInputError(f"outcome {outcome!r} is constant in the {n_rows} usable rows; nothing to explain")
    q = len(players)
    if n_rows < q + 2:
        raise DriverInputError(f"{n_rows} usable rows for {q} driver columns (listwise deletion); expected at "
                               f"least {q + 2} (drivers + 2)")
    design = _Design(X=X, w=np.ones(0), columns=list(players), players=list(players),
                     player_cols=[np.array([i]) for i in range(q)], categorical=[False] * q, dropped=dropped)
    corr, design = _drop_degenerate(corr, design, sd)
    X = design.X  # the kept columns (outcome first)
    q = len(design.columns)
    table, imp, r2, info = importance_table(corr, design, method, MAX_EXACT)
    warnings = []
    if info["fallback"]:
        warnings.append(info["fallback"])
    if n_rows < 10 * q:
        warnings.append(f"only {n_rows} responses for {q} driver columns (fewer than 10 per driver): "
                        "importances are unstable, read the intervals")
    draws = r2_draws = None
    n_used, boot_reason, at_zero = 0, "", []
    if n_boot and n_boot > 0:
        n_used, boot_reason = bootstrap_draws(n_boot, len(design.players), n_rows, q, info["method_used"])
        draws, r2_draws = _pattern_bootstrap(X, c, design, n_used, seed, info["method_used"])
        alpha = (1 - ci) / 2
        lo, hi = np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0)
        lo, hi, zero = consistent_interval(imp, lo, hi, info["method_used"] in NONNEGATIVE_METHODS)
        at_zero = [p for p, z in zip(design.players, zero) if z]
        table["ci_low"], table["ci_high"] = lo, hi
        r2_lo, r2_hi, _ = consistent_interval(r2, *np.nanquantile(r2_draws, [alpha, 1 - alpha]), nonnegative=False)
        table.attrs["r2_ci"] = (float(r2_lo), float(r2_hi))
    table.attrs.update(r2=r2, n=n_rows, method=asked, method_used=info["method_used"], exact=info["exact"],
                       fallback=info["fallback"], missing="listwise", dropped=dict(design.dropped),
                       weighted=False, ci=ci, ci_method="percentile", n_boot=int(n_used),
                       n_boot_requested=int(n_boot or 0), n_boot_reason=boot_reason,
                       n_boot_usable=0 if draws is None else int(draws.shape[0]), ci_at_zero=at_zero,
                       warnings=warnings, outcome=outcome, columns=list(design.columns), filters={},
                       bootstrap="multinomial patterns" if draws is not None else "")
    t = DriverImportance.from_table(table, draws, r2_draws)

    def vif_of(names):
        """:func:`helpers.drivers.vif` from the patterns complete in ``names``."""
        j = [cols.index(d) for d in names]
        rows = have[:, j].all(axis=1)
        if not rows.any():
            raise DriverInputError(f"no complete rows for {names}: VIF undefined")
        R, sdv, _ = _pattern_corr(X_all[rows][:, j], c_all[rows])
        if np.any(sdv <= 0):
            raise DriverInputError(f"constant driver(s) {[n for n, v in zip(names, sdv) if v <= 0]}: VIF undefined")
        try:
            inv = np.linalg.inv(R)
        except np.linalg.LinAlgError:
            raise DriverInputError(f"drivers {names} are perfectly collinear: VIF is infinite") from None
        return pd.Series(np.diag(inv), index=pd.Index(names, name="driver"), name="vif")

    def ipa_of(table):
        """:func:`importance_performance` with each mean rating over the patterns that answer it."""
        perf = {}
        for d in table.index:
            j = cols.index(d)
            a = have[:, j]
            perf[d] = float(np.average(X_all[a, j], weights=c_all[a])) if a.any() else np.nan
        top = float(np.nanmax([np.nanmax(X_all[have[:, cols.index(d)], cols.index(d)]) for d in table.index]))
        return importance_performance_from_means(table, pd.Series(perf), top)

    result = _analysis_from_importance(t, outcome, drivers, ci, label, min_n, list(design.players), vif_of, ipa_of)
    if ordinal:
        try:
            result.ordinal = ordinal_check_from_patterns(patterns, outcome, list(result.table.index),
                                                         shapley_rank=result.table["rank"], ci=ci, seed=seed,
                                                         max_rows=ordinal_max_rows)
        except (DriverInputError, np.linalg.LinAlgError, ValueError) as e:
            result.warnings.append(f"ordinal check not available: {e}")
    return result


# ----------------------------------------------------------------------------------------------------
# By segment
# ----------------------------------------------------------------------------------------------------
@displayable
@dataclass
class SegmentDrivers:
    """Driver analyses per level of ``segment``. ``table`` (long): segment, driver, importance, share,
    ci_low, ci_high, rank, n. ``sizes``: responses per segment and whether it was analysed."""
    segment: str
    outcome: str
    results: dict[str, DriverAnalysis]
    sizes: pd.DataFrame
    warnings: list[str]

    @property
    def table(self) -> pd.DataFrame:
        rows = []
        for seg, res in self.results.items():
            t = res.table.reset_index()
            t.insert(0, self.segment, seg)
            t["n"] = res.n
            t["r2"] = res.r2
            rows.append(t)
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

    def shares(self) -> pd.DataFrame:
        """segments x drivers matrix of shares of explained variance."""
        t = self.table
        return t.pivot(index=self.segment, columns="driver", values="share")

    def compare(self, a: str, b: str, ci: float = 0.95) -> pd.DataFrame:
        """Difference of importance (R^2 units) ``a - b`` per driver, with a percentile interval from the
        two segments' independent bootstrap draws, and whether the interval excludes 0."""
        for s in (a, b):
            if s not in self.results:
                raise DriverInputError(f"segment {s!r} was not analysed; available: {sorted(self.results)}")
        ra, rb = self.results[a], self.results[b]
        if ra.draws is None or rb.draws is None:
            raise DriverInputError("segment comparison needs bootstrap draws: run with n_boot > 0")
        common = [d for d in ra.table.index if d in rb.table.index]
        da = ra.draws[:, [list(ra.table.index).index(d) for d in common]]
        db = rb.draws[:, [list(rb.table.index).index(d) for d in common]]
        m = min(len(da), len(db))
        diff = da[:m] - db[:m]
        q = (1 - ci) / 2
        out = pd.DataFrame({"importance_" + str(a): ra.table.loc[common, "importance"].to_numpy(),
                            "importance_" + str(b): rb.table.loc[common, "importance"].to_numpy()},
                           index=pd.Index(common, name="driver"))
        out["difference"] = out.iloc[:, 0] - out.iloc[:, 1]
        out["ci_low"] = np.quantile(diff, q, axis=0)
        out["ci_high"] = np.quantile(diff, 1 - q, axis=0)
        out["differs"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
        return out

    def summary(self) -> str:
        if not self.results:
            return f"No {md_escape(self.segment)} had enough responses for a driver analysis."
        tops = {s: r.table.index[0] for s, r in self.results.items()}
        common = pd.Series(tops).value_counts()
        text = (f"Top driver of {_md(self.outcome)} by {md_escape(self.segment)}: "
                + "; ".join(f"{md_escape(s)}: {_md(d)} ({_share_with_ci(self.results[s].table, d)})"
                            for s, d in tops.items()) + ".")
        if len(common) == 1 and len(tops) > 1:
            text += f" {_md(common.index[0])} leads everywhere."
        skipped = self.sizes.index[~self.sizes["analysed"]].tolist()
        if skipped:
            text += " Too few responses to analyse: " + ", ".join(md_escape(x) for x in skipped) + "."
        return text

    def plot(self, ax=None):
        """Heatmap of shares of explained variance, segments x drivers."""
        import seaborn as sns
        ax = charts.new_axis(ax)
        s = self.shares() * 100
        s.columns = [_chart_label(c) for c in s.columns]
        s.index = [_chart_text(i) for i in s.index]
        sns.heatmap(s, annot=s.shape[1] <= 20, fmt=".0f", cmap="Blues", annot_kws={"fontsize": 11},
                    cbar_kws={"label": "Share of explained variance (%)"}, ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize=11)
        ax.figure.axes[-1].yaxis.label.set_size(11)
        ax.set_title(self.title(), fontsize=12)
        return ax

    def title(self) -> str:
        """The heatmap's finding in words."""
        if not self.results:
            return f"No {_chart_text(self.segment)} had enough answers"
        tops = pd.Series({s: r.table.index[0] for s, r in self.results.items()})
        if tops.nunique() == 1:
            return f"{_chart_label(tops.iloc[0])} leads in every {_chart_text(self.segment)}"
        return f"The top driver differs by {_chart_text(self.segment)} ({tops.nunique()} different leaders)"


def analyze_by_segment(data: pd.DataFrame, outcome: str, drivers, segment: str | None = None, method: str = "shapley",
                       weights=None, n_boot: int = 300, ci: float = 0.95, seed=None, missing: str = "listwise",
                       min_n: int | None = None, ordinal: bool = False, *, by=None, filters=None, start=None,
                       end=None) -> SegmentDrivers:
    """:func:`analyze_drivers` for each level of ``segment`` with at least ``min_n`` usable responses
    (default ``max(30, 10 * number of drivers)``); smaller segments are listed in ``sizes`` and warned about.
    ``by`` is another name of ``segment``; ``data`` may be a Dataset, and ``segment`` a customer column
    (joined in DuckDB); ``filters``/``start``/``end`` select the responses (see :mod:`helpers.selection`)."""
    from helpers import selection as sel  # noqa: PLC0415

    segment = sel.canonical(by if by is not None else segment) if (by is not None or segment is not None) else None
    if segment is None:
        raise DriverInputError("analyze_by_segment needs the grouping column: segment= (or by=)")
    drivers = as_driver_list(drivers)
    if not isinstance(data, pd.DataFrame) or filters or start is not None or end is not None:
        data = driver_rows(data, outcome, drivers, weights, filters, start, end, extra=[segment])
    if segment not in data.columns:
        raise DriverInputError(f"segment column {segment!r} is not in the data")
    drivers = as_driver_list(drivers)
    min_n = min_n if min_n is not None else max(30, 10 * len(drivers))
    if missing == "listwise":
        # a driver with no answer at all in a segment is dropped from that segment's analysis, so it does
        # not count against the segment's complete rows (e.g. an attribute asked in one department only)
        present = data[drivers].notna()
        answered = present.groupby(data[segment], observed=True).transform("any")
        usable = data[outcome].notna() & (present | ~answered).all(axis=1)
    else:
        usable = data[outcome].notna()
    counts = usable.groupby(data[segment], observed=True).sum()
    sizes = pd.DataFrame({"n": counts.astype(int), "analysed": counts >= min_n})
    sizes.index.name = segment
    results, warnings = {}, []
    ss = np.random.SeedSequence(seed)
    for (lev, ok), child in zip(sizes["analysed"].items(), ss.spawn(len(sizes))):
        if not ok:
            warnings.append(f"{segment} {lev!r}: only {sizes.loc[lev, 'n']} usable responses (< {min_n}); skipped")
            continue
        part = data[data[segment] == lev]
        w = weights if (weights is None or isinstance(weights, str)) else np.asarray(weights)[(data[segment] == lev).to_numpy()]
        results[str(lev)] = analyze_drivers(part, outcome, drivers, method=method, weights=w, n_boot=n_boot, ci=ci,
                                            seed=child, missing=missing, label=f"{segment} {lev}",
                                            ordinal=ordinal, min_n=min_n)
    return SegmentDrivers(segment=segment, outcome=outcome, results=results, sizes=sizes, warnings=warnings)


# ----------------------------------------------------------------------------------------------------
# Selecting the responses for a report
# ----------------------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    """The kit's one slug rule (:func:`helpers.formatting.slug`), so "technical_support" finds "Technical Support"
    as the runner names it."""
    from helpers.formatting import slug

    return slug(name)


def select_responses(responses: pd.DataFrame, department: str = "all", period_start: str = "",
                     period_end: str = "", date_column: str = "response_date") -> pd.DataFrame:
    """Responses of one department (display name or slug, e.g. "Technical Support" or
    "technical_support"; "all" = every department) answered between ``period_start`` and ``period_end``
    (ISO dates, inclusive; "" = no bound)."""
    out = responses
    if department and department.lower() != "all":
        names = pd.unique(responses["department"].dropna())
        match = [n for n in names if n == department or _slug(n) == _slug(department)]
        if not match:
            raise DriverInputError(f"department {department!r} has no responses; departments in the data: "
                                   + ", ".join(sorted(map(str, names))) + " (or 'all')")
        out = out[out["department"] == match[0]]
    dates = pd.to_datetime(out[date_column])
    for bound, op in ((period_start, "ge"), (period_end, "le")):
        if bound:
            try:
                day = pd.Timestamp(bound)
            except ValueError:
                raise DriverInputError(f"period bound {bound!r} is not an ISO date (YYYY-MM-DD)") from None
            out = out[getattr(dates, op)(day)]
            dates = dates.loc[out.index]
    if out.empty:
        raise DriverInputError(f"no responses for department {department!r} between {period_start or 'the start'} "
                               f"and {period_end or 'the end'}")
    return out
