"""``relate(outcome, by, data)``: does an outcome differ between groups? The right test for the types involved,
effect sizes with intervals, the pairwise differences that survive a multiplicity correction, and small groups
flagged (what Qualtrics' Stats iQ calls "relate").

The outcome's kind (``kind=`` overrides it):

* ``"proportion"`` (CSAT top-2-box, first-contact resolution, reopen rate, any 0/1 or true/false column):
  Pearson's chi-square test of independence on the groups x {yes, no} table (``scipy.stats.chi2_contingency``,
  no continuity correction); effect size Cramer's V; per group the share with its Wilson interval; pairwise
  the difference with Newcombe's hybrid score interval and the two-proportion z-test
  (:func:`helpers.kpis.compare_proportions`).
* ``"nps"``: chi-square on the groups x {detractor, passive, promoter} table; per group the NPS with its
  adjusted-Wald interval; pairwise the adjusted-Wald difference and z-test (Rocks 2016;
  :func:`helpers.kpis.compare_nps`).
* ``"mean"`` (CES, any roughly symmetric number): Welch's heteroscedastic one-way ANOVA (Welch 1951;
  ``statsmodels.stats.oneway.anova_oneway(use_var="unequal")``; for two groups the same p-value as Welch's
  t-test); effect size eta squared; per group the mean with its t interval; pairwise Welch t-tests with their
  intervals (:func:`helpers.kpis.compare_means`).
* ``"skewed"`` (durations such as resolution or first-response hours, or a number with |skewness| > 1):
  Kruskal-Wallis H test (``scipy.stats.kruskal``); effect size epsilon squared ``H / (n - 1)`` (Tomczak &
  Tomczak 2014); per group the median with its exact order-statistic interval; pairwise Mann-Whitney U
  p-values (``scipy.stats.mannwhitneyu``) and the difference of medians with a seeded percentile-bootstrap
  interval.
* ``"ordinal"`` (attribute ratings 1-5, raw CSAT or CES answers when asked for): the proportional-odds model
  ``logit P(Y <= j) = theta_j - x'b`` with group indicators (statsmodels ``OrderedModel``, McCullagh 1980),
  likelihood-ratio test against the thresholds-only model (chi-square, k - 1 df); odds ratios of a higher
  rating against the first group with Wald intervals; when the model cannot be fitted, the Kruskal-Wallis
  test instead (said in ``notes``). Pairwise: Mann-Whitney U p-values and the difference of mean ratings
  with its Welch interval. Above ``max_model_rows`` rows the model is fitted on a seeded subsample (stated).

Every overall effect size comes with a 95% interval (``effect_ci``, ``effect_ci_method``; in ``.overall``, the
summary and the notebook display):

* Cramér's V (proportions, NPS): the noncentrality ``lambda`` of the chi-square statistic inverted (Smithson
  2003, *Confidence Intervals*, ch. 5; Steiger 2004): ``lambda_L`` and ``lambda_U`` solve
  ``P(chi2'(df, lambda) <= X2) = 0.975`` and ``0.025`` (0 when not reachable), and
  ``V = sqrt(lambda / (n (min(r, c) - 1)))``. The interval is for the population V; the sample V, which
  estimates ``sqrt((df + lambda) / ...)``, is biased upward when differences are small and the table wide (a
  note says so when it lies above the upper end).
* eta squared (means): the noncentral-F inversion of the classical one-way ANOVA F (Steiger 2004; Smithson 2003;
  MBESS ``conf.limits.ncf``), ``eta2 = lambda / (lambda + N)``; the limits of lambda agree with R effectsize's
  ``eta_squared(alternative = "two.sided")``, which maps them as ``lambda / (lambda + df_error)``.
* epsilon squared (skewed and ordinal outcomes): bias-corrected percentile bootstrap (Efron 1982, ch. 10; as R
  effectsize's ``rank_epsilon_squared``, which bootstraps): ``n_boot`` resamples of the rows within each group
  (seeded), ``z0 = Phi^-1(share of replicates below the estimate)``, ends at the ``Phi(2 z0 -/+ 1.96)``
  quantiles; each replicate's H from counts of the distinct values (ties corrected), no re-sorting.

Pairwise p-values are adjusted with Holm's step-down method (Holm 1979; ``statsmodels multipletests``), which
controls the family-wise error rate; a pair "survives" when its adjusted p-value is below ``alpha``. Groups with
fewer than ``min_responses`` observations are flagged ``small`` (their estimates are shown, with wide
intervals); groups with fewer than 2 are left out of the tests and named in ``notes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from helpers import kpis as K
from helpers import selection as sel
from helpers.errors import KitError
from helpers.formatting import column_label, fmt_interval, fmt_number, fmt_p_value, shorten
from helpers.results import ResultDisplay

__all__ = ["relate", "RelateResult", "RelateError", "KINDS"]

KINDS = ("proportion", "nps", "mean", "skewed", "ordinal")
MAX_MODEL_ROWS = 20_000
_KPI_KINDS = {"top_box": "proportion", "share_eq1": "proportion", "flag": "proportion", "nps": "nps",
              "mean": "mean", "median_hours": "skewed", "mean_hours": "mean"}


class RelateError(KitError):
    """``relate`` cannot run: the message names the outcome, the grouping and what is wrong."""


@dataclass(frozen=True, repr=False)
class RelateResult(ResultDisplay):
    """The outcome of :func:`relate`: ``test`` (name), ``statistic``, ``df``, ``p_value``, ``effect_size``
    (``effect_name``), ``table`` (per group: n, estimate, interval, ``small``), ``pairwise`` (every pair: the
    difference b - a with its interval, raw and Holm-adjusted p, ``significant``), ``notes``."""

    outcome: str
    by: str
    kind: str
    test: str
    statistic: float
    df: float | tuple
    p_value: float
    effect_size: float
    effect_name: str
    table: pd.DataFrame
    pairwise: pd.DataFrame
    alpha: float = 0.05
    min_responses: int = 30
    unit: str = ""
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    effect_ci: tuple[float, float] = (np.nan, np.nan)
    effect_ci_method: str = ""

    @property
    def overall(self) -> pd.DataFrame:
        """One row: the test, its statistic, df, p-value and the effect size with its 95% interval and method."""
        return pd.DataFrame([{"test": self.test, "statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                              "effect": self.effect_name, "effect_size": self.effect_size,
                              "ci_low": self.effect_ci[0], "ci_high": self.effect_ci[1],
                              "interval_method": self.effect_ci_method}])

    def _effect_text(self) -> str:
        lo, hi = self.effect_ci
        ci = (f", 95% CI {fmt_interval(lo, hi, 3)}" if np.isfinite(lo) and np.isfinite(hi) else
              ", no interval (n_boot=0)" if self.kind in ("skewed", "ordinal") else "")
        return f"{self.effect_name} {fmt_number(self.effect_size, 3)}{ci}"

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.p_value) and self.p_value < self.alpha)

    def surviving(self) -> pd.DataFrame:
        """The pairwise differences that survive the Holm correction."""
        return self.pairwise[self.pairwise["significant"]]

    def summary(self) -> str:
        name, by = column_label(self.outcome), column_label(self.by)
        df = self.df if isinstance(self.df, tuple) else (self.df,)
        dfs = ", ".join(fmt_number(d, 0 if float(d).is_integer() else 1) for d in df)
        head = (f"{name} {'differs' if self.significant else 'does not differ significantly'} between "
                f"{by.lower() if by[:1].isupper() and by[1:].islower() else by} groups ({self.test}: statistic "
                f"{fmt_number(self.statistic, 2)}, df {dfs}, {fmt_p_value(self.p_value, prefix=True)}; "
                f"{self._effect_text()}).")
        surv = self.surviving()
        if len(self.pairwise):
            if len(surv):
                shown = "; ".join(f"{r.b} vs {r.a} {fmt_number(r.difference, 1, signed=True)} "
                                  f"({fmt_interval(r.ci_low, r.ci_high, 1)})" for r in surv.head(3).itertuples())
                more = f" and {len(surv) - 3} more" if len(surv) > 3 else ""
                head += (f" {len(surv)} of {len(self.pairwise)} pairwise differences survive Holm's correction: "
                         f"{shorten(shown, 300).strip(chr(39))}{more}.")
            else:
                head += f" No pairwise difference survives Holm's correction ({len(self.pairwise)} pairs)."
        small = self.table.loc[self.table["small"], "group"].astype(str).tolist()
        if small:
            head += (f" Small groups (fewer than {self.min_responses}): {', '.join(small[:5])}"
                     + (f" and {len(small) - 5} more" if len(small) > 5 else "") + "; read their intervals.")
        return head

    def plot(self, ax=None):
        """Each group's estimate with its interval (small groups hollow)."""
        t = self.table.rename(columns={"estimate": "value"})
        metric = self.outcome if self.outcome in K.KPIS else None
        return K.forest_plot(t.assign(metric=metric or self.outcome) if metric else t, metric=metric, by=["group"],
                             min_responses=self.min_responses, ax=ax,
                             title=f"{column_label(self.outcome)} by {column_label(self.by)} ({self.test}, "
                                   f"{fmt_p_value(self.p_value, prefix=True)})")

    def _display_frame(self):
        t = self.table
        out = pd.DataFrame({"group": t["group"].astype(str), "n": t["n"],
                            "estimate": [fmt_number(v, 1) for v in t["estimate"]],
                            "95% CI": [fmt_interval(a, b) for a, b in zip(t["ci_low"], t["ci_high"])],
                            "small": np.where(t["small"], "yes", "")})
        return out, {"n": "int"}

    _full_table_hint = ("`.table` (groups), `.pairwise` (every pair with Holm-adjusted p), `.overall` (test and "
                        "effect size with its interval)")

    def _repr_html_(self) -> str:
        from helpers.formatting import html_escape  # noqa: PLC0415

        html = ResultDisplay._repr_html_(self)
        lo, hi = self.effect_ci
        line = (f'<p class="kit-result-effect">Effect size: {html_escape(self._effect_text())}'
                + (f" ({html_escape(self.effect_ci_method)})" if np.isfinite(lo) else "") + ".</p>")
        cut = html.find('<p class="kit-result-hint">')
        return html[:cut] + line + html[cut:] if cut >= 0 else html + line


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: sorted ascending, ``p~_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j))`` (the same numbers as statsmodels ``multipletests(method="holm")``, which the tests check; computed
    here because that function runs a garbage collection on every call)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


# ---------------------------------------------------------------------------------------------- data
def _locate(con_or_frame, outcome: str, by: str) -> tuple[str, list[str], str | None]:
    """(table, columns to fetch, date column) for an outcome: a KPI name or a column of responses/tickets."""
    if outcome in K.KPIS:
        k = K.KPIS[outcome]
        if k.kind in ("median_hours", "mean_hours"):
            cols = ["created_at", K._TIME_COLUMNS[k.column]]
        elif k.column is None:
            raise RelateError(f"relate: {outcome!r} is a count or customer KPI; relate needs one value per "
                              "response or ticket (e.g. csat, nps, ces, fcr, resolution_hours, attr_speed)")
        else:
            cols = [k.column]
        return k.table, cols, k.date_column
    if isinstance(con_or_frame, pd.DataFrame):
        return "data", [outcome], None
    for table, date in (("responses", "response_date"), ("tickets", "created_at"), ("customers", "signup_date")):
        cols = sel.table_columns(con_or_frame, table)
        if cols and outcome in cols:
            return table, [outcome], date
    raise RelateError(f"relate: outcome {outcome!r} is neither a KPI ({', '.join(sorted(K.KPIS))}) nor a column "
                      "of responses, tickets or customers")


def _outcome_values(frame: pd.DataFrame, outcome: str) -> pd.Series:
    if outcome in K.KPIS and K.KPIS[outcome].kind in ("median_hours", "mean_hours"):
        k = K.KPIS[outcome]
        if k.column + "_hours" not in frame.columns and "created_at" in frame.columns:
            return pd.Series(K.ticket_hours(frame, k.column), index=frame.index)
    col = K.KPIS[outcome].column if outcome in K.KPIS and K.KPIS[outcome].column in frame.columns else outcome
    if col not in frame.columns:
        raise RelateError(f"relate: the data has no column {outcome!r} (columns: {', '.join(map(str, frame.columns))})")
    return frame[col]


def _infer_kind(outcome: str, y: pd.Series) -> str:
    if outcome in K.KPIS:
        kind = _KPI_KINDS.get(K.KPIS[outcome].kind)
        if kind:
            return kind
    if pd.api.types.is_bool_dtype(y) or set(pd.unique(y.dropna())) <= {0, 1, True, False}:
        return "proportion"
    if not pd.api.types.is_numeric_dtype(y):
        raise RelateError(f"relate: outcome {outcome!r} is text ({y.dtype}); expected a rating, a number or a flag")
    v = y.dropna().to_numpy(dtype=float)
    if v.size and np.all(v == np.round(v)) and len(np.unique(v)) <= 11 and v.min() >= 0:
        return "ordinal"
    return "skewed" if v.size > 2 and abs(stats.skew(v)) > 1 else "mean"


# ---------------------------------------------------------------------------------------------- relate
def relate(outcome: str, by: str, data, *, filters=None, start=None, end=None, kind: str | None = None,
           alpha: float = 0.05, min_responses: int = 30, max_model_rows: int = MAX_MODEL_ROWS,
           seed: int = 0, n_boot: int = 500) -> RelateResult:
    """Test whether ``outcome`` differs between the groups of ``by`` and say how (see the module docstring).

    ``outcome``: a KPI name (``csat``, ``nps``, ``ces``, ``fcr``, ``reopen_rate``, ``resolution_hours``,
    ``first_response_hours``) or a column (``attr_speed``); ``by``: a column of the outcome's table or of
    ``customers`` (segment, region, ...: joined in DuckDB); ``data``: a Dataset or a DataFrame with both
    columns. ``filters``/``start``/``end`` select the rows as everywhere in the kit (:mod:`helpers.selection`).
    ``n_boot``: bootstrap resamples for the intervals of differences of medians and of epsilon squared (skewed
    and ordinal outcomes; 0: none).
    """
    if kind is not None and kind not in KINDS:
        raise RelateError(f"relate: kind={kind!r}; expected one of {KINDS}")
    by = sel.canonical(by) if isinstance(by, str) else by
    if not isinstance(by, str):
        raise RelateError(f"relate: by must be one column name, got {shorten(by)}")
    if isinstance(data, pd.DataFrame):
        table, cols, date_col = _locate(data, outcome, by)
        try:
            frame = sel.select_rows(data, "data", filters, None, start=start, end=end,
                                    date_column=date_col if date_col in data.columns else None, what="relate")
        except sel.SelectionError as exc:
            raise RelateError(str(exc)) from None
        if by not in frame.columns:
            raise RelateError(f"relate: the data has no column {by!r} to group by (columns: "
                              f"{', '.join(map(str, frame.columns))})")
    else:
        con = sel.connection_of(data)
        table, cols, date_col = _locate(con, outcome, by)
        try:
            frame = sel.select_rows(con, table, filters, [*cols, by], start=start, end=end, date_column=date_col,
                                    what=f"relate {outcome} by {by}")
        except sel.SelectionError as exc:
            raise RelateError(str(exc)) from None
    y = _outcome_values(frame, outcome)
    g = frame[by]
    keep = y.notna() & g.notna()
    y, g = y[keep], g[keep]
    if outcome in K.KPIS and K.KPIS[outcome].kind == "top_box" and kind in (None, "proportion"):
        y = y.isin([4, 5]).astype(float)  # top-2-box
    if outcome in K.KPIS and K.KPIS[outcome].kind == "share_eq1" and kind in (None, "proportion"):
        y = (y == 1).astype(float)
    kind = kind or _infer_kind(outcome, y)
    if pd.api.types.is_bool_dtype(y) or y.dtype == object:
        y = y.astype(float)
    levels = sorted(pd.unique(g), key=str)
    groups = {lev: y[(g == lev).to_numpy()].to_numpy(dtype=float) for lev in levels}
    notes = []
    tiny = [str(lev) for lev, v in groups.items() if v.size < 2]
    if tiny:
        notes.append(f"left out of the tests (fewer than 2 observations): {', '.join(tiny)}")
    tested = {lev: v for lev, v in groups.items() if v.size >= 2}
    if len(tested) < 2:
        raise RelateError(f"relate: {outcome} by {by}: fewer than two groups with 2 or more observations "
                          f"(groups: {', '.join(f'{lev} (n = {v.size})' for lev, v in groups.items()) or 'none'})")
    runner = {"proportion": _proportion, "nps": _nps, "mean": _mean, "skewed": _skewed, "ordinal": _ordinal}[kind]
    test, stat, dfree, p, effect, effect_name, rows, pairs, more = runner(tested, alpha, max_model_rows,
                                                                         (seed, n_boot))
    notes.extend(more)
    effect_ci, ci_method = _effect_interval(kind, tested, float(effect), stat, dfree, seed, n_boot, notes)
    table = pd.DataFrame(rows)
    table["small"] = table["n"] < min_responses
    for lev in tiny:
        table = pd.concat([table, pd.DataFrame([{"group": lev, "n": groups[lev].size, "estimate": np.nan,
                                                 "ci_low": np.nan, "ci_high": np.nan, "small": True}])],
                          ignore_index=True)
    pw = pd.DataFrame(pairs, columns=["a", "b", "difference", "ci_low", "ci_high", "p_value"])
    pw["p_adjusted"] = _holm(pw["p_value"].to_numpy(dtype=float))
    pw["significant"] = pw["p_adjusted"] < alpha
    pw = pw.sort_values("p_adjusted", kind="stable").reset_index(drop=True)
    unit = K.KPIS[outcome].unit if outcome in K.KPIS else ""
    return RelateResult(outcome, by, kind, test, float(stat), dfree, float(p), float(effect), effect_name, table,
                        pw, alpha, min_responses, unit, tuple(notes), effect_ci=effect_ci, effect_ci_method=ci_method)


# ---------------------------------------------------------------------------------------------- effect intervals
def noncentrality_limits(cdf, observed: float, level: float = 0.95) -> tuple[float, float]:
    """The noncentrality parameters whose distribution puts ``observed`` at its ``(1 + level) / 2`` and
    ``(1 - level) / 2`` quantiles (Smithson 2003; Steiger & Fouladi 1997): ``lambda_L`` solves
    ``cdf(observed, lambda_L) = (1 + level) / 2``, ``lambda_U`` solves ``cdf(observed, lambda_U) = (1 - level) / 2``
    (``cdf`` decreases in lambda); a limit that no lambda >= 0 reaches is 0."""
    from scipy.optimize import brentq  # noqa: PLC0415

    def solve(p: float) -> float:
        def f(lam):
            return float(cdf(observed, lam)) - p
        if not np.isfinite(observed) or f(0.0) <= 0:
            return 0.0
        top = max(10.0, 2.0 * observed)
        for _ in range(60):
            if f(top) < 0:
                break
            top *= 2
        return float(brentq(f, 0.0, top, xtol=1e-10, rtol=1e-12))

    return solve((1 + level) / 2), solve((1 - level) / 2)


def cramers_v_interval(chi2: float, df: int, n: int, m: int, level: float = 0.95) -> tuple[float, float]:
    """Cramér's V interval from the chi-square statistic (noncentral chi-square inversion, Smithson 2003):
    ``V = sqrt(lambda / (n m))`` at the limits of lambda, ``m = min(rows, columns) - 1``."""
    lo, hi = noncentrality_limits(lambda x, lam: stats.ncx2.cdf(x, df, lam) if lam > 0 else stats.chi2.cdf(x, df),
                                  chi2, level)
    return tuple(float(min(1.0, np.sqrt(lam / (n * max(m, 1))))) for lam in (lo, hi))


def eta_squared_interval(f_value: float, df1: float, df2: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Eta squared interval from the one-way ANOVA F (noncentral-F inversion, Steiger 2004; Smithson 2003):
    ``eta2 = lambda / (lambda + N)`` at the limits of lambda."""
    lo, hi = noncentrality_limits(lambda x, lam: stats.ncf.cdf(x, df1, df2, lam) if lam > 0 else
                                  stats.f.cdf(x, df1, df2), f_value, level)
    return lo / (lo + n), hi / (hi + n)


BOOT_WORK = 20_000_000
"""Row draws an effect-size bootstrap may make (resamples x rows): above it fewer resamples (at least 200) are
drawn, and the interval says how many."""


def _cells(data: list[np.ndarray]):
    """The distinct (value, group) cells of the pooled data, sorted by value: (cell value id, cell group, cell
    size, index of the first cell of each distinct value, each row's cell)."""
    k = len(data)
    y = np.concatenate(data)
    g = np.concatenate([np.full(v.size, j) for j, v in enumerate(data)])
    _, value_id = np.unique(y, return_inverse=True)
    cells, row_cell, cell_n = np.unique(value_id * k + g, return_inverse=True, return_counts=True)
    cell_value, cell_group = cells // k, cells % k
    starts = np.r_[0, np.flatnonzero(np.diff(cell_value)) + 1]
    return cell_value, cell_group, cell_n, starts, row_cell, g


def kruskal_from_counts(T: np.ndarray, cell_value: np.ndarray, cell_group: np.ndarray, starts: np.ndarray,
                        k: int) -> np.ndarray:
    """Kruskal-Wallis H (ties corrected) for each row of ``T`` (counts of each (value, group) cell, cells sorted
    by value): average rank of a value ``= (copies of smaller values) + (copies + 1) / 2``, ``R_j`` the rank sum
    of group j, ``H = (12 / (N (N + 1)) sum_j R_j^2 / n_j - 3 (N + 1)) / (1 - sum_u (t_u^3 - t_u) / (N^3 - N))``."""
    T = np.atleast_2d(np.asarray(T, dtype=float))
    Tu = np.add.reduceat(T, starts, axis=1)
    rank = np.cumsum(Tu, axis=1) - Tu + (Tu + 1) / 2
    contrib = T * rank[:, cell_value]
    R = np.stack([contrib[:, cell_group == j].sum(axis=1) for j in range(k)], axis=1)
    nj = np.stack([T[:, cell_group == j].sum(axis=1) for j in range(k)], axis=1)
    N = T.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = 12.0 / (N * (N + 1)) * np.where(nj > 0, R ** 2 / nj, 0.0).sum(axis=1) - 3.0 * (N + 1)
        ties = 1.0 - (Tu ** 3 - Tu).sum(axis=1) / (N ** 3 - N)
        return np.where(ties > 0, h / ties, 0.0)


def _epsilon_squared_replicates(data: list[np.ndarray], n_boot: int, seed) -> np.ndarray:
    """epsilon squared = H / (N - 1) for ``n_boot`` resamples of the rows within each group: each replicate is a
    count per (value, group) cell (multinomial over a group's cells when it has few distinct values, as 1-5
    ratings do; else row draws counted per cell), and H comes from the counts (:func:`kruskal_from_counts`)
    without re-sorting."""
    k = len(data)
    cell_value, cell_group, cell_n, starts, row_cell, g = _cells(data)
    N, C = int(cell_n.sum()), cell_value.size
    groups = []
    for j in range(k):
        mine = np.flatnonzero(cell_group == j)
        local = np.searchsorted(mine, row_cell[g == j]) if mine.size > 1000 else None
        groups.append((mine, cell_n[mine] / cell_n[mine].sum(), int(cell_n[mine].sum()), local))
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    widest = max(C, max(n for _, _, n, local in groups if local is not None) if any(
        gr[3] is not None for gr in groups) else 0)
    block = max(1, int(4_000_000 // max(widest, 1)))
    for b0 in range(0, n_boot, block):
        b = min(block, n_boot - b0)
        T = np.zeros((b, C))
        for mine, prob, n, local in groups:
            if local is None:
                T[:, mine] = rng.multinomial(n, prob, size=b)
            else:
                draws = local[rng.integers(0, n, size=(b, n))] + (np.arange(b) * mine.size)[:, None]
                T[:, mine] = np.bincount(draws.ravel(), minlength=b * mine.size).reshape(b, mine.size)
        out[b0:b0 + b] = kruskal_from_counts(T, cell_value, cell_group, starts, k) / (N - 1)
    return out


def bias_corrected_interval(estimate: float, replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected percentile interval (Efron 1982; Efron & Tibshirani 1993, sec. 14.3 with acceleration 0):
    ``z0 = Phi^-1(#{replicates < estimate} / B)`` (ties counted half, kept within [1/(B+1), B/(B+1)]),
    ends at the ``Phi(2 z0 + z_{(1 -/+ level)/2})`` quantiles of the replicates."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 10:
        return np.nan, np.nan
    share = (np.sum(r < estimate) + 0.5 * np.sum(r == estimate)) / r.size
    share = min(max(share, 1.0 / (r.size + 1)), r.size / (r.size + 1))
    z0 = stats.norm.ppf(share)
    z = stats.norm.ppf((1 + level) / 2)
    lo, hi = np.quantile(r, stats.norm.cdf([2 * z0 - z, 2 * z0 + z]))
    return float(lo), float(hi)


def _effect_interval(kind, groups, effect, stat, dfree, seed, n_boot, notes):
    """The 95% interval of the overall effect size and the name of its method (see the module docstring)."""
    data = [np.asarray(v, dtype=float) for v in groups.values()]
    n = int(sum(v.size for v in data))
    if kind in ("proportion", "nps"):
        if kind == "proportion":
            rows = 2 if any((v > 0).any() for v in data) and any((v <= 0).any() for v in data) else 1
        else:
            rows = sum(1 for lo_, hi_ in ((0, 6), (7, 8), (9, 10))
                       if any(((v >= lo_) & (v <= hi_)).any() for v in data))
        m = min(rows, len(data)) - 1
        if m < 1 or not np.isfinite(stat):
            return (np.nan, np.nan), ""
        lo, hi = cramers_v_interval(float(stat), int(dfree), n, m)
        if effect > hi:
            notes.append(f"Cramér's V of the sample ({effect:.3f}) lies above its interval: with many groups and "
                         "small differences the sample V overstates the population V (the interval is for the latter)")
        return (lo, hi), "noncentral chi-square inversion (Smithson 2003)"
    if kind == "mean":
        allv = np.concatenate(data)
        k = len(data)
        ssb = float(sum(v.size * (v.mean() - allv.mean()) ** 2 for v in data))
        ssw = float(sum(((v - v.mean()) ** 2).sum() for v in data))
        if ssw <= 0 or n <= k:
            return (np.nan, np.nan), ""
        f_classic = (ssb / (k - 1)) / (ssw / (n - k))
        lo, hi = eta_squared_interval(f_classic, k - 1, n - k, n)
        if effect > hi:
            notes.append(f"eta squared of the sample ({effect:.3f}) lies above its interval: it overstates the "
                         "population value when differences are small (the interval is for the latter)")
        return (lo, hi), "noncentral-F inversion of the one-way ANOVA F (Steiger 2004)"
    if not n_boot:
        return (np.nan, np.nan), ""
    allv = np.concatenate(data)
    if np.all(allv == allv[0]):
        return (0.0, 0.0), "every value equal"
    used = int(n_boot)
    if len(np.unique(allv)) > 1000 and used * n > BOOT_WORK:
        used = max(200, BOOT_WORK // n)
    reps = _epsilon_squared_replicates(data, used, seed)
    lo, hi = bias_corrected_interval(effect, reps)
    return (lo, hi), (f"bias-corrected percentile bootstrap, {used} resamples within groups (seed {seed})"
                      + (f"; {int(n_boot)} asked, fewer drawn on {n:,} rows" if used < n_boot else ""))


# ---------------------------------------------------------------------------------------------- tests per kind
def _cramers_v(chi2: float, n: int, shape: tuple[int, int]) -> float:
    return float(np.sqrt(chi2 / (n * max(min(shape) - 1, 1))))


def _chi_square(table: np.ndarray, n_levels: int, *, testable: bool, untestable: str):
    """``(chi2, p, df, notes)``: Pearson's chi-square test of independence on ``table`` (no continuity
    correction), or p = 1 with the note ``untestable`` when ``testable`` is false; notes expected counts below 5."""
    if not testable:
        return 0.0, 1.0, n_levels - 1, [f"{untestable}: no test possible (p set to 1)"]
    chi2, p, dfree, expected = stats.chi2_contingency(table, correction=False)
    notes = (["some expected counts are below 5: the chi-square p-value is approximate"]
             if (expected < 5).any() else [])
    return chi2, p, dfree, notes


def _estimate_row(level, n: int, estimate) -> dict:
    """One group's row of the estimates table from a :class:`helpers.kpis.Estimate`-like value."""
    return {"group": level, "n": int(n), "estimate": estimate.value, "ci_low": estimate.ci_low,
            "ci_high": estimate.ci_high}


def _pairwise(levels: list, compare) -> list[tuple]:
    """Every pair of levels ``(a, b, difference, ci_low, ci_high, p)`` from ``compare(i, j)`` (a comparison
    result with ``difference``, ``ci_low``, ``ci_high``, ``p_value``)."""
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(levels), 2):
        c = compare(i, j)
        pairs.append((a, b, c.difference, c.ci_low, c.ci_high, c.p_value))
    return pairs


def _proportion(groups, alpha, max_rows, seed):
    levels = list(groups)
    k_yes = np.array([int((groups[lev] > 0).sum()) for lev in levels])
    n = np.array([groups[lev].size for lev in levels])
    table = np.vstack([k_yes, n - k_yes])
    chi2, p, dfree, notes = _chi_square(table, len(levels), testable=not (table.sum(axis=1) == 0).any(),
                                        untestable="every observation has the same value")
    rows = [_estimate_row(lev, int(m), K.proportion(int(k), int(m))) for lev, k, m in zip(levels, k_yes, n)]
    pairs = _pairwise(levels, lambda i, j: K.compare_proportions(int(k_yes[i]), int(n[i]), int(k_yes[j]), int(n[j])))
    return ("chi-square test of independence", chi2, int(dfree), p, _cramers_v(chi2, int(n.sum()), table.shape),
            "Cramér's V", rows, pairs, notes)


def _nps(groups, alpha, max_rows, seed):
    levels = list(groups)
    counts = []
    for lev in levels:
        v = groups[lev]
        counts.append((int((v >= 9).sum()), int((v <= 6).sum()), int(v.size)))
    P = np.array([c[0] for c in counts])
    D = np.array([c[1] for c in counts])
    n = np.array([c[2] for c in counts])
    table = np.vstack([D, n - P - D, P])
    table = table[table.sum(axis=1) > 0]
    chi2, p, dfree, notes = _chi_square(table, len(levels), testable=table.shape[0] >= 2,
                                        untestable="every answer is in the same NPS group")
    rows = [_estimate_row(lev, c[2], K.nps_from_counts(*c)) for lev, c in zip(levels, counts)]
    pairs = _pairwise(levels, lambda i, j: K._compare_nps_counts(counts[i], counts[j], 0.95))
    return ("chi-square test on promoters/passives/detractors", chi2, int(dfree), p,
            _cramers_v(chi2, int(n.sum()), table.shape), "Cramér's V", rows, pairs, notes)


def _mean(groups, alpha, max_rows, seed):
    from statsmodels.stats.oneway import anova_oneway  # noqa: PLC0415

    levels = list(groups)
    data = [groups[lev] for lev in levels]
    notes = []
    if all(np.var(v) == 0 for v in data):
        stat, p, dfree = 0.0, 1.0, (len(levels) - 1, np.nan)
        notes.append("every group is constant: no test possible (p set to 1)")
    else:
        res = anova_oneway(data, use_var="unequal")
        stat, p = float(res.statistic), float(res.pvalue)
        dfree = (float(res.df[0]), float(res.df[1]))
    allv = np.concatenate(data)
    sst = float(((allv - allv.mean()) ** 2).sum())
    ssb = float(sum(v.size * (v.mean() - allv.mean()) ** 2 for v in data))
    rows = _mean_rows(levels, data)
    pairs = _pairwise(levels, lambda i, j: K.compare_means(data[i], data[j]))
    return ("Welch's ANOVA", stat, dfree, p, ssb / sst if sst > 0 else 0.0, "eta²", rows, pairs, notes)


def _mean_rows(levels, data):
    """Each group's mean with its t interval."""
    rows = []
    for lev, v in zip(levels, data):
        lo, hi = K.t_interval(v.mean(), v.std(ddof=1), v.size)
        rows.append({"group": lev, "n": int(v.size), "estimate": float(v.mean()), "ci_low": float(lo),
                     "ci_high": float(hi)})
    return rows


def _median_rows(levels, data):
    rows = []
    for lev, v in zip(levels, data):
        lo, hi, _ = K.median_order_interval(np.sort(v))
        rows.append({"group": lev, "n": int(v.size), "estimate": float(np.median(v)), "ci_low": lo, "ci_high": hi})
    return rows


def _skewed(groups, alpha, max_rows, seed):
    levels = list(groups)
    data = [groups[lev] for lev in levels]
    allv = np.concatenate(data)
    notes = []
    if np.all(allv == allv[0]):
        stat, p = 0.0, 1.0
        notes.append("every value is the same: no test possible (p set to 1)")
    else:
        stat, p = stats.kruskal(*data)
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(levels), 2):
        seed_, n_boot = seed
        if n_boot:
            c = K.compare_medians(data[i], data[j], n_boot=n_boot, seed=seed_)
            diff, lo, hi = c.difference, c.ci_low, c.ci_high
        else:
            diff, lo, hi = float(np.median(data[j]) - np.median(data[i])), np.nan, np.nan
        pm = 1.0 if np.all(np.concatenate([data[i], data[j]]) == data[i][0]) else float(
            stats.mannwhitneyu(data[j], data[i], alternative="two-sided").pvalue)
        pairs.append((a, b, diff, lo, hi, pm))
    return ("Kruskal-Wallis test", float(stat), len(levels) - 1, float(p), float(stat) / (allv.size - 1),
            "epsilon²", _median_rows(levels, data), pairs, notes)


def _ordinal(groups, alpha, max_rows, seed):
    levels = list(groups)
    data = [groups[lev] for lev in levels]
    y = np.concatenate(data)
    g = np.concatenate([[i] * v.size for i, v in enumerate(data)])
    notes = []
    rows = _mean_rows(levels, data)
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(levels), 2):
        both = np.concatenate([data[i], data[j]])
        pm = 1.0 if np.all(both == both[0]) else float(stats.mannwhitneyu(data[j], data[i]).pvalue)
        c = K.compare_means(data[i], data[j]) if np.var(both) > 0 else None
        pairs.append((a, b, float(data[j].mean() - data[i].mean()), c.ci_low if c else 0.0,
                      c.ci_high if c else 0.0, pm))
    test, stat, dfree, p = None, np.nan, len(levels) - 1, np.nan
    if len(np.unique(y)) >= 2:
        try:
            test, stat, p, odds = _proportional_odds(y, g, levels, max_rows, seed, notes)
            for r in rows:
                r.update(odds.get(r["group"], {}))
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
            notes.append(f"proportional-odds model not available ({shorten(str(exc), 100)}); Kruskal-Wallis used")
    if test is None:
        if len(np.unique(y)) < 2:
            stat, p = 0.0, 1.0
            notes.append("every rating is the same: no test possible (p set to 1)")
        else:
            stat, p = (float(x) for x in stats.kruskal(*data))
        test = "Kruskal-Wallis test"
    eps = float(stats.kruskal(*data)[0]) / (y.size - 1) if len(np.unique(y)) >= 2 else 0.0
    return (test, stat, dfree, p, eps, "epsilon² (rank)", rows, pairs, notes)


def _proportional_odds(y, g, levels, max_rows, seed, notes):
    """LR test of the group indicators in a proportional-odds (cumulative logit) model, and each group's odds
    ratio of a higher rating against the first group (Wald interval)."""
    import warnings  # noqa: PLC0415

    from statsmodels.miscmodels.ordinal_model import OrderedModel  # noqa: PLC0415

    seed = seed[0]
    if y.size > max_rows:
        idx = np.random.default_rng(seed).choice(y.size, max_rows, replace=False)
        y, g = y[idx], g[idx]
        notes.append(f"proportional-odds model fitted on a random subsample of {max_rows:,} rows (seed {seed})")
    cats = np.unique(y)
    yc = pd.Series(pd.Categorical(y, categories=cats, ordered=True))
    X = pd.DataFrame({f"g{i}": (g == i).astype(float) for i in range(1, len(levels))})
    X = X.loc[:, X.sum() > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = OrderedModel(yc, X, distr="logit").fit(method="bfgs", disp=False, maxiter=500)
    counts = np.bincount(np.searchsorted(cats, y), minlength=len(cats)).astype(float)
    ll0 = float((counts[counts > 0] * np.log(counts[counts > 0] / counts.sum())).sum())
    lr = max(2 * (float(fit.llf) - ll0), 0.0)
    p = float(stats.chi2.sf(lr, X.shape[1]))
    odds = {levels[0]: {"odds_ratio": 1.0, "or_low": 1.0, "or_high": 1.0}}
    ci = np.asarray(fit.conf_int())
    names = list(fit.model.exog_names)
    for col in X.columns:
        j = names.index(col)
        odds[levels[int(col[1:])]] = {"odds_ratio": float(np.exp(fit.params.iloc[j])),
                                      "or_low": float(np.exp(ci[j, 0])), "or_high": float(np.exp(ci[j, 1]))}
    return "proportional-odds likelihood-ratio test", lr, p, odds
