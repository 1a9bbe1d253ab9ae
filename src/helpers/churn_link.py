"""The satisfaction -> churn link, corrected for the noise in a customer's mean rating.

A Cox model of churn on a customer's *observed* mean rating (e.g. mean CSAT over their survey answers) is
attenuated toward "no effect": one rating measures satisfaction with error, so the mean of a few ratings
spreads customers out more than their true satisfaction does (regression dilution). This module corrects
it by **regression calibration** with repeated ratings of the same customer (Rosner, Willett & Spiegelman
1989, Statistics in Medicine; Rosner, Spiegelman & Willett 1990 and 1992, Am. J. Epidemiol., the latter for
random within-person error measured by replicates; Carroll, Ruppert, Stefanski & Crainiceanu, *Measurement
Error in Nonlinear Models*, 2nd ed. 2006, ch. 4 (regression calibration, the calibration function from
replicate data) and ch. 14 (survival data; Prentice 1982, Biometrika, for the induced hazard)).

Model (classical, non-differential error)
-----------------------------------------
Customer *i* has true satisfaction :math:`T_i` (their long-run mean rating) and answers
:math:`k_i \\ge 1` ratings :math:`W_{ij} = T_i + U_{ij}`, :math:`U_{ij}` independent, mean 0, variance
:math:`\\sigma_u^2`; the churn hazard is :math:`h_0(t)\\exp(\\beta T_i + \\gamma' Z_i)` with covariates
:math:`Z_i` (segment, ...). With :math:`\\bar W_i` the mean of the *k_i* ratings:

* error variance, pooled within customers (one-way ANOVA):
  :math:`\\hat\\sigma_u^2 = \\sum_i \\sum_j (W_{ij} - \\bar W_i)^2 / \\sum_i (k_i - 1)`;
* the calibration model :math:`T_i = Z_i'\\alpha + \\varepsilon_i`, :math:`\\mathrm{Var}\\,\\varepsilon =
  \\tau^2`: :math:`\\hat\\alpha` is OLS of :math:`\\bar W` on *Z* (unbiased, :math:`E[\\bar W | Z] =
  Z'\\alpha`), and by the method of moments
  :math:`\\hat\\tau^2 = [\\mathrm{RSS} - \\hat\\sigma_u^2 \\sum_i (1 - h_{ii}) / k_i] / (n - p)`
  (:math:`h_{ii}` the leverages; :math:`E\\,\\mathrm{RSS} = \\tau^2 (n - p) + \\sigma_u^2 \\sum (1 - h_{ii})/k_i`);
* the best linear predictor of true satisfaction (exact conditional mean under normality):
  :math:`\\hat T_i = E[T_i | \\bar W_i, Z_i] = Z_i'\\hat\\alpha + \\lambda(k_i)(\\bar W_i - Z_i'\\hat\\alpha)`,
  with the **reliability** of a mean of *k* ratings (given the covariates)
  :math:`\\lambda(k) = \\tau^2 / (\\tau^2 + \\sigma_u^2 / k)`;
* the Cox model (Efron ties) is refitted with :math:`\\hat T_i` in place of :math:`\\bar W_i`.
  With the same *k* for everyone this divides the naive log hazard ratio by :math:`\\lambda(k)` exactly; with
  varying *k* each customer's mean is shrunk by its own reliability.

Intervals: a nonparametric bootstrap over customers (Carroll et al. 2006 recommend it for regression
calibration, whose analytic standard errors are involved): each replicate
resamples customers with replacement (multinomial counts used as frequency weights), re-estimates
:math:`\\sigma_u^2`, :math:`\\alpha`, :math:`\\tau^2`, the calibrated values and both Cox fits; percentile
intervals. The correction's own uncertainty is therefore in the interval.

What the corrected ratio means, and what it assumes
--------------------------------------------------
It is the hazard ratio per point of a customer's *true mean rating* (what their mean would be over many
answers), holding the covariates fixed. It assumes that the error has the same variance for every customer
and carries no information about churn beyond T (non-differential). It is an association under these
assumptions, not a controlled experiment.

Regression calibration is itself an approximation for the Cox model: the leftover uncertainty about a
customer's T (variance :math:`\\tau^2(1 - \\lambda(k))`) acts like a frailty, and the survivors of a risk set
are selected on it, so when churn is common and the link strong the correction falls short (Carroll et al.
2006, ch. 14; risk-set regression calibration, Xie, Wang & Prentice 2001, JRSS-B, would remove most of it and
is not implemented). Measured by simulation (``tests/test_impact.py``; T ~ N(., 0.8^2), one rating's error
sd 0.9, k = 1..6): true log-HR -1 with about half the customers churning -> corrected -0.92 on average
(naive -0.59); with a fifth churning -0.96; log-HR -0.7 with 30% churning -> -0.69.

On the kit's demo (``helpers.demo``; truth: HR 0.30 per point of *latent* satisfaction) the naive HR is
about 0.40 and the corrected one about 0.31 (20,000 customers, seed 42: 0.309; the latent covariate among
customers with answers gives 0.303). The demo's ratings are the latent value rounded and clipped to 1-5, so
the classical model above holds only approximately there, and two departures pull in opposite directions:
(a) the *expected* rating is a compressed function of the latent value near the top of the scale (a customer
at latent 5.5 expects 4.9), so per point of expected rating the true HR is steeper: a Cox fit on the exact
expected rating gives 0.24; (b) the rating noise is not constant: its variance falls from about 0.66 at
latent 3 to below 0.1 above latent 5.5 (clipping at 5), so the pooled error variance over-shrinks the means
of satisfied customers. In addition the number of ratings a customer gives grows with how long they stay
(ratings follow tickets), which the non-differential model does not describe. ``tests/test_impact.py``
measures these numbers on the demo; the net remaining gap there is within the bootstrap interval.

Contents
--------
* :func:`rating_summary` (pandas) and :func:`rating_summary_sql` (DuckDB) - per-customer count, mean and
  within-customer sum of squares of a rating (the sufficient statistics of the calibration).
* :func:`calibrate_ratings` - the calibration above (optionally with frequency weights) -> :class:`Calibration`.
* :func:`cox_efron` - a vectorised Cox partial-likelihood Newton solver with Efron ties and integer frequency
  weights (matches statsmodels ``PHReg(ties="efron")`` and R ``coxph``; used for the bootstrap refits, where
  ``PHReg`` takes ~18 s per fit on 1,000,000 customers).
* :func:`fit_churn_link` - naive and corrected hazard ratios with bootstrap intervals -> :class:`ChurnLinkResult`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import KitError, TableInputError
from helpers.formatting import shorten

ASSOCIATION_NOTE = ("This is an association under stated assumptions (ratings measure satisfaction with random "
                    "error of constant size that says nothing about churn beyond satisfaction itself; "
                    "proportional hazards), not the result of a controlled experiment.")


class ChurnLinkInputError(TableInputError):
    """Input to the satisfaction -> churn link is unusable; names table, column, rows and what was expected."""


class ChurnLinkError(KitError):
    """The satisfaction -> churn link cannot be estimated from these data (says what is missing)."""


# ----------------------------------------------------------------------------------------------------
# Per-customer rating statistics
# ----------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("n_ratings", "mean_rating", "within_ss")


def rating_summary(responses: pd.DataFrame, rating: str = "csat", customer: str = "customer_id",
                   as_of: object = None, date: str = "response_date", table: str = "responses") -> pd.DataFrame:
    """Per customer with at least one answered ``rating``: ``n_ratings`` (k), ``mean_rating`` and
    ``within_ss`` = sum_j (W_ij - mean_i)^2 (0 for k = 1). Answers dated after ``as_of`` are left out."""
    need = [customer, rating] + ([date] if as_of not in (None, "") else [])
    missing = [c for c in need if c not in responses.columns]
    if missing:
        raise ChurnLinkInputError(f"has no column(s) {shorten(missing)}", table=table,
                                  expected=f"a customer id and the rating column ({shorten(rating)})")
    r = responses[need]
    if as_of not in (None, ""):
        r = r[pd.to_datetime(r[date]) <= pd.Timestamp(as_of)]
    vals = pd.to_numeric(r[rating], errors="coerce")
    bad = vals.isna() & r[rating].notna()
    if bad.any():
        raise ChurnLinkInputError("is not numeric", table=table, column=rating, n_rows=int(bad.sum()),
                                  examples=list(r.loc[bad, rating].head(5)), expected="numeric ratings")
    r = pd.DataFrame({customer: r[customer].to_numpy(), "w": vals.to_numpy("float64")}).dropna()
    g = r.groupby(customer, sort=True)["w"]
    out = pd.DataFrame({"n_ratings": g.size(), "mean_rating": g.mean()})
    var = g.var(ddof=1).fillna(0.0)
    out["within_ss"] = var.to_numpy() * (out["n_ratings"].to_numpy() - 1)
    return out.reset_index().rename(columns={"index": customer})


def sql_identifier(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def rating_summary_sql(con, table: str = "responses", rating: str = "csat", customer: str = "customer_id",
                       as_of: object = None, date: str = "response_date") -> pd.DataFrame:
    """:func:`rating_summary` computed in DuckDB (``con``: a DuckDB connection holding ``table``), so only
    one row per customer comes back to Python: ``count``, ``avg`` and ``var_samp * (count - 1)``."""
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {sql_identifier(table)}").fetchall()]
    except Exception as exc:  # noqa: BLE001 - the engine's message is kept, the table named
        raise ChurnLinkInputError(f"cannot be read from the database ({type(exc).__name__})", table=table,
                                  expected="a table with one row per survey answer") from None
    need = [customer, rating] + ([date] if as_of not in (None, "") else [])
    missing = [c for c in need if c not in cols]
    if missing:
        raise ChurnLinkInputError(f"has no column(s) {shorten(missing)}", table=table,
                                  expected=f"a customer id and the rating column ({shorten(rating)})")
    q = sql_identifier
    where, params = f"{q(rating)} IS NOT NULL", []
    if as_of not in (None, ""):
        where += f" AND CAST({q(date)} AS DATE) <= CAST(? AS DATE)"
        params.append(str(pd.Timestamp(as_of).date()))
    sql = (f"SELECT {q(customer)} AS {q(customer)}, count(*) AS n_ratings, "
           f"avg(CAST({q(rating)} AS DOUBLE)) AS mean_rating, "
           f"coalesce(var_samp(CAST({q(rating)} AS DOUBLE)) * (count(*) - 1), 0.0) AS within_ss "
           f"FROM {q(table)} WHERE {where} GROUP BY {q(customer)} ORDER BY {q(customer)}")
    try:
        out = con.execute(sql, params).df()
    except Exception as exc:  # noqa: BLE001
        raise ChurnLinkInputError(f"column {shorten(rating)} could not be averaged ({shorten(str(exc), 120)})",
                                  table=table, expected="numeric ratings") from None
    out["n_ratings"] = out["n_ratings"].astype("int64")
    return out


# ----------------------------------------------------------------------------------------------------
# Regression calibration
# ----------------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    """Regression-calibration estimates: ``error_variance`` (sigma_u^2 of one rating), ``true_variance``
    (tau^2, variance of true satisfaction given the covariates), ``total_true_variance`` (including the
    covariates' part), ``alpha`` (calibration coefficients on [1, Z]), ``predicted`` (E[T | mean, k, Z] per
    customer) and ``mean_inverse_k`` (weighted mean of 1/k)."""

    error_variance: float
    true_variance: float
    total_true_variance: float
    alpha: np.ndarray
    predicted: np.ndarray
    mean_inverse_k: float
    n_repeated: int
    repeat_df: float

    def reliability(self, k) -> np.ndarray:
        """lambda(k) = tau^2 / (tau^2 + sigma_u^2 / k): share of the variance of a mean of k ratings (given
        the covariates) that is true difference between customers."""
        k = np.asarray(k, dtype="float64")
        return self.true_variance / (self.true_variance + self.error_variance / k)

    @property
    def overall_reliability(self) -> float:
        """tau^2 / (tau^2 + sigma_u^2 * mean(1/k)): the attenuation factor of the observed mean over this
        customer mix (given the covariates); naive log-HR ~ this x corrected log-HR."""
        return float(self.true_variance / (self.true_variance + self.error_variance * self.mean_inverse_k))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum_i a_i b_i (einsum: no BLAS, whose threads stall on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


def _weighted_gram(cols: list, f: np.ndarray) -> np.ndarray:
    """X'FX for the columns ``cols`` of X and weights f (p x p, one dot product per pair)."""
    p = len(cols)
    G = np.empty((p, p))
    for a in range(p):
        fa = f * cols[a]
        for b in range(a, p):
            G[a, b] = G[b, a] = _dot(fa, cols[b])
    return G


def calibrate_ratings(n_ratings, mean_rating, within_ss, Z: np.ndarray | None = None,
                      weights: np.ndarray | None = None, rating: str = "csat") -> Calibration:
    """Regression calibration with replicates (module docstring; Carroll et al. 2006 ch. 4).

    ``Z``: covariate matrix without intercept (n x q; None = none); ``weights``: integer frequency weights
    (bootstrap counts). Raises :class:`ChurnLinkError` when no customer has two or more ratings, or when the
    ratings show no true difference between customers beyond their noise (tau^2 <= 0)."""
    k = np.asarray(n_ratings, dtype="float64")
    w = np.asarray(mean_rating, dtype="float64")
    ss = np.asarray(within_ss, dtype="float64")
    f = np.ones_like(k) if weights is None else np.asarray(weights, dtype="float64")
    rep = (k >= 2) & (f > 0)
    repeat_df = _dot(f, np.where(rep, k - 1, 0.0))
    if repeat_df <= 0:
        raise ChurnLinkError(f"no customer has two or more {rating} ratings, so the noise in a single rating "
                             "cannot be estimated and the satisfaction-churn link cannot be corrected; needed: "
                             "repeated ratings of the same customers")
    s_u2 = _dot(f, ss) / repeat_df
    n_eff = float(f.sum())
    cols = [np.ones(len(k))] + ([] if Z is None or np.size(Z) == 0 else
                                list(np.ascontiguousarray(np.asarray(Z, dtype="float64").reshape(len(k), -1).T)))
    fk = f / k
    XtX, XkX = _weighted_gram(cols, f), _weighted_gram(cols, fk)
    try:
        XtX_inv = np.linalg.inv(XtX)
    except np.linalg.LinAlgError:
        raise ChurnLinkError("the covariates of the calibration model are collinear (a segment with no "
                             "customers?)") from None
    fw = f * w
    alpha = XtX_inv @ np.array([_dot(c, fw) for c in cols])
    fitted = alpha[0] * cols[0]
    for a_j, c in zip(alpha[1:], cols[1:]):
        fitted += a_j * c
    resid = w - fitted
    rss = _dot(f, resid * resid)
    # sum_i f_i (1 - h_ii) / k_i with h_ii = x_i'(X'FX)^{-1} x_i the leverage of one copy of customer i:
    # sum f/k - tr[(X'FX)^{-1} X'(F/K)X] (one p x p product instead of n of them)
    lev_sum = float(fk.sum() - np.sum(XtX_inv * XkX))
    p = len(cols)
    tau2 = (rss - s_u2 * lev_sum) / (n_eff - p)
    if not np.isfinite(tau2) or tau2 <= 0:
        raise ChurnLinkError(f"the customers' mean {rating} ratings differ no more than their rating noise "
                             f"(error variance {s_u2:.3g} of one rating), so the reliability of the mean is 0 "
                             "and true satisfaction cannot be separated from noise")
    lam = tau2 / (tau2 + s_u2 / k)
    pred = fitted + lam * resid
    fmean = _dot(f, fitted) / n_eff
    total = tau2 + _dot(f, (fitted - fmean) ** 2) / n_eff
    return Calibration(error_variance=s_u2, true_variance=float(tau2), total_true_variance=total, alpha=alpha,
                       predicted=pred, mean_inverse_k=float(fk.sum() / n_eff),
                       n_repeated=int(np.sum(rep)), repeat_df=repeat_df)


# ----------------------------------------------------------------------------------------------------
# Cox partial likelihood with Efron ties and frequency weights (vectorised)
# ----------------------------------------------------------------------------------------------------

@dataclass
class CoxFit:
    """Cox fit: ``coef``, ``se`` (inverse observed information), ``loglik`` (Efron partial), ``n_iter``,
    ``information`` (observed information matrix at ``coef``; None for fixed-information refits)."""

    coef: np.ndarray
    se: np.ndarray
    loglik: float
    n_iter: int
    information: np.ndarray | None = None
    baseline_times: np.ndarray | None = None   # distinct event times
    baseline_cumhaz: np.ndarray | None = None  # H0 at those times (covariates = 0)

    def cumulative_hazard(self, t) -> np.ndarray:
        """Baseline H0(t) (step function, 0 before the first event time). Beyond the last event time it is
        *not* extrapolated (use :func:`extrapolated_cumhaz`)."""
        idx = np.searchsorted(self.baseline_times, np.asarray(t, dtype="float64"), side="right")
        return np.where(idx > 0, self.baseline_cumhaz[np.maximum(idx - 1, 0)], 0.0)


class CoxData:
    """Survival times sorted once, grouped by distinct time; reused for every refit (bootstrap)."""

    def __init__(self, time, event):
        time = np.asarray(time, dtype="float64")
        self.order = np.argsort(time, kind="mergesort")
        t = time[self.order]
        self.event = np.asarray(event, dtype="float64")[self.order]
        self.starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        self.times = t[self.starts]
        self.group = np.repeat(np.arange(len(self.starts)), np.diff(np.r_[self.starts, len(t)]))
        self.n_groups = len(self.starts)

    def sort(self, a):
        return np.asarray(a, dtype="float64")[self.order]


def _block_starts(sorted_ids: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins (``np.r_[True, a[1:] != a[:-1]]`` without its overhead)."""
    out = np.empty(len(sorted_ids), dtype=bool)
    out[:1] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=out[1:])
    return out


def _column_sums(r: np.ndarray, M: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group sums of r * M[:, j] for every column j (groups = contiguous row blocks at ``starts``)."""
    return np.add.reduceat(r[:, None] * M, starts, axis=0)


SECANT_REFITS = True
"""Fixed-information refits (bootstrap) update the matrix by BFGS (:func:`cox_efron` ``secant``); False: the plain
iteration, the reference path the tests compare with."""


def cox_efron(time, event, X, weights=None, init=None, max_iter: int = 50, tol: float = 1e-9,
              data: CoxData | None = None, sorted_input: bool = False,
              fixed_information: np.ndarray | None = None, secant: bool | None = None) -> CoxFit:
    """Maximise the Cox partial likelihood with Efron's tie correction (Efron 1977) by Newton-Raphson with
    step halving. For distinct event time j with tied events D_j of total weight d_j, risk set R_j:

        l(b) = sum_j [ sum_{D_j} w x'b - sum_{l=0}^{d_j-1} log(S0_j - (l/d_j) A0_j) ],
        S0_j = sum_{R_j} w exp(x'b),  A0_j = sum_{D_j} w exp(x'b),

    with integer frequency weights ``w`` read as replicated rows (a bootstrap resample). Gradient and Hessian
    use per-time sums of w e^{x'b} (1, x, x x') and per-time sums over l of 1/phi, c/phi, 1/phi^2, c/phi^2,
    c^2/phi^2 (c = l/d_j), so a fit costs O(n p^2) per iteration. Reference: statsmodels
    ``PHReg(ties="efron")``, R ``coxph`` (tests).

    ``fixed_information`` (bootstrap refits): iterate b <- b + I0^{-1} U(b) with the full-sample information
    I0 instead of the replicate's own (the same root, reached in a few more but much cheaper steps); the
    returned ``se`` is then NaN. ``secant`` (default :data:`SECANT_REFITS`): after each such step the matrix
    is updated by BFGS from the change of the gradient (Nocedal & Wright 2006, eq. 6.19; the update is kept
    positive definite, s'y > 0), so the iteration converges superlinearly: ~4.5 instead of ~6.5 steps from
    the full-sample estimate on the demo's bootstrap refits, to the same root (same ``tol``); ``False``: the
    plain fixed-matrix iteration (the reference the tests compare with).

    Rows of weight 0 (a resample's customers not drawn) add nothing to any sum and are dropped first.
    """
    X = np.asarray(X, dtype="float64")
    if X.ndim == 1:
        X = X[:, None]
    cd = data if data is not None else CoxData(time, event)
    if not sorted_input:
        X = X[cd.order]
    X = np.asfortranarray(X)  # column sums below; no BLAS (its threads stall on a busy machine)
    n, p = X.shape
    f = np.ones(n) if weights is None else (np.asarray(weights, dtype="float64") if sorted_input
                                            else cd.sort(weights))
    event, group, starts, times = cd.event, cd.group, cd.starts, cd.times
    if weights is not None and not np.all(f != 0):  # a resample: the customers not drawn add nothing
        rows = np.flatnonzero(f != 0)
        X, f, event, group = np.asfortranarray(X[rows]), f[rows], event[rows], group[rows]
        new = _block_starts(group)
        starts, times, group = np.flatnonzero(new), times[group[new]], np.cumsum(new) - 1
        n = len(rows)
    ev = event * f  # weighted event indicator
    ev_rows = np.flatnonzero(ev > 0)
    if len(ev_rows) == 0:
        raise ChurnLinkError("no churn events: the Cox model has nothing to fit")
    ev_w = ev[ev_rows]
    X_ev = np.asfortranarray(X[ev_rows])
    e_group = group[ev_rows]
    e_starts = np.flatnonzero(_block_starts(e_group))
    gsel = e_group[e_starts]  # distinct times with events
    d = np.add.reduceat(ev_w, e_starts)
    d_int = np.rint(d).astype(np.int64)
    if np.any(np.abs(d - d_int) > 1e-9):
        raise ChurnLinkInputError("are not whole numbers", table="weights",
                                  expected="integer frequency weights (e.g. bootstrap counts)")
    ng = len(gsel)
    rep_g = np.repeat(np.arange(ng), d_int)  # one entry per tied event l = 0..d_j - 1 of each time j
    first = np.cumsum(d_int) - d_int  # where each time's entries start (contiguous blocks)
    c = (np.arange(len(rep_g)) - first[rep_g]) / d_int[rep_g]

    def per_time(v):
        return np.add.reduceat(v, first)
    sx = np.einsum("i,ij->j", ev_w, X_ev)
    ia, ib = np.triu_indices(p)
    fixed = fixed_information is not None
    XX = None if fixed else np.asfortranarray(X[:, ia] * X[:, ib])
    XX_ev = None if XX is None else np.asfortranarray(XX[ev_rows])
    beta = np.zeros(p) if init is None else np.asarray(init, dtype="float64").copy()

    def revcum(a):
        return np.cumsum(a[::-1], axis=0)[::-1][gsel]

    last: dict = {}

    def evaluate(b, level):
        """level 0: log-likelihood; 1: + gradient; 2: + information (minus the Hessian)."""
        eta = np.einsum("ij,j->i", X, b)
        shift = eta.max()
        r = f * np.exp(eta - shift)
        S0 = revcum(np.add.reduceat(r, starts))
        re = r[ev_rows]
        A0 = np.add.reduceat(re, e_starts)
        phi = S0[rep_g] - c * A0[rep_g]
        if not np.all(phi > 0):
            return -np.inf, None, None
        ll = float(np.einsum("i,i->", ev_w, eta[ev_rows]) - np.sum(np.log(phi)) - shift * len(rep_g))
        if level == 0:
            return ll, None, None
        inv = 1.0 / phi
        q0 = per_time(inv)
        q1 = per_time(c * inv)
        last.update(b=b, q0=q0, shift=shift)  # the baseline's increments at b, if b is the optimum
        S1 = revcum(_column_sums(r, X, starts))
        A1 = _column_sums(re, X_ev, e_starts)
        grad = sx - (S1 * q0[:, None] - A1 * q1[:, None]).sum(axis=0)
        if level == 1:
            return ll, grad, None
        inv2 = inv * inv
        s0 = per_time(inv2)
        s1 = per_time(c * inv2)
        s2 = per_time(c * c * inv2)
        S2 = revcum(_column_sums(r, XX, starts))
        A2 = _column_sums(re, XX_ev, e_starts)
        h2 = (S2 * q0[:, None] - A2 * q1[:, None]).sum(axis=0)
        H2 = np.zeros((p, p))
        H2[ia, ib] = h2
        H2[ib, ia] = h2
        outer = (np.einsum("g,ga,gb->ab", s0, S1, S1) - np.einsum("g,ga,gb->ab", s1, S1, A1)
                 - np.einsum("g,ga,gb->ab", s1, A1, S1) + np.einsum("g,ga,gb->ab", s2, A1, A1))
        return ll, grad, H2 - outer

    ll, grad, info = evaluate(beta, 1 if fixed else 2)
    if fixed:
        info = np.asarray(fixed_information, dtype="float64")
    secant = SECANT_REFITS if secant is None else bool(secant)
    it = 0
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            raise ChurnLinkError("the Cox model is singular (a covariate does not vary among the customers "
                                 "or is collinear with another)") from None
        lam = 1.0
        while True:  # the trial point's gradient (and information) are kept when it is accepted
            ll_new, grad_new, info_new = evaluate(beta + lam * step, 1 if fixed else 2)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-10 * max(1.0, abs(ll)):
                break
            lam /= 2
            if lam < 1e-6:
                raise ChurnLinkError("the Cox model did not converge (step halving failed)")
        if fixed and secant:  # BFGS on the information (the Hessian of -l): y = U_k - U_{k+1} ~ I s
            s, y = lam * step, grad - grad_new
            sy, Is = float(s @ y), info @ s
            if sy > 1e-12 * np.sqrt(float(s @ s) * float(y @ y)) and np.max(np.abs(s)) > 1e3 * tol:
                info = info - np.outer(Is, Is) / float(s @ Is) + np.outer(y, y) / sy
        beta, ll, grad = beta + lam * step, ll_new, grad_new
        if not fixed:
            info = info_new
        if np.max(np.abs(lam * step)) < tol:
            break
    else:
        raise ChurnLinkError(f"the Cox model did not converge in {max_iter} iterations (a covariate may "
                             "separate churners perfectly)")
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 50:
        raise ChurnLinkError("the Cox model ran to an infinite coefficient (a covariate separates churners)")
    # baseline cumulative hazard at x = 0 (Efron's increments: sum_l 1 / (S0_j - (l/d_j) A0_j), the
    # estimator of R survfit.coxph for Efron ties; Breslow's d_j / S0_j when there are no ties)
    if "b" in last and np.array_equal(last["b"], beta):  # the last evaluation was at the optimum
        inc = last["q0"] * np.exp(-last["shift"])
    else:
        eta = np.einsum("ij,j->i", X, beta)
        shift = eta.max()
        r = f * np.exp(eta - shift)
        S0 = revcum(np.add.reduceat(r, starts))
        A0 = np.add.reduceat(r[ev_rows], e_starts)
        inc = per_time(1.0 / (S0[rep_g] - c * A0[rep_g])) * np.exp(-shift)
    base_t, base_h = times[gsel], np.cumsum(inc)
    if fixed:
        return CoxFit(coef=beta, se=np.full(p, np.nan), loglik=ll, n_iter=it, baseline_times=base_t,
                      baseline_cumhaz=base_h)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        raise ChurnLinkError("the Cox information matrix is singular") from None
    return CoxFit(coef=beta, se=np.sqrt(np.clip(np.diag(cov), 0, None)), loglik=ll, n_iter=it, information=info,
                  baseline_times=base_t, baseline_cumhaz=base_h)


# ----------------------------------------------------------------------------------------------------
# The corrected link with bootstrap intervals
# ----------------------------------------------------------------------------------------------------

RATING_TERM = "satisfaction"


@dataclass
class ChurnLinkResult:
    """Naive and measurement-error-corrected hazard ratios of churn per point of satisfaction.

    ``table``: one row per model (``naive``: Cox on the observed mean rating, Wald interval as R ``coxph``;
    ``corrected``: regression calibration, bootstrap percentile interval) and term (``satisfaction`` and
    the covariates' indicator columns), with ``coef`` (log hazard ratio), ``hazard_ratio``, ``ci_low``,
    ``ci_high``, ``interval`` (how it was computed) and a reader ``label``. ``reliability``: the reliability
    of a customer's mean rating by number of ratings k (and ``all`` = the attenuation factor over this
    customer mix), with bootstrap intervals. ``boot``: the bootstrap replicates (one row each)."""

    table: pd.DataFrame
    reliability: pd.DataFrame
    calibration: Calibration
    boot: pd.DataFrame
    n_customers: int
    n_events: int
    n_repeated: int
    n_without_ratings: int
    n_boot: int
    level: float
    rating_label: str
    covariates: list[str]
    notes: list[str] = field(default_factory=list)

    def hazard_ratio(self, model: str = "corrected") -> tuple[float, float, float]:
        """(hazard ratio, ci_low, ci_high) per point of satisfaction for ``model`` naive or corrected."""
        row = self.table[(self.table["model"] == model) & (self.table["term"] == RATING_TERM)].iloc[0]
        return float(row["hazard_ratio"]), float(row["ci_low"]), float(row["ci_high"])

    def plot(self, ax=None):
        from helpers.charts import ACCENT, new_axis
        ax = new_axis(ax)
        rows = [self.hazard_ratio("naive"), self.hazard_ratio("corrected")]
        labels = [f"observed mean {self.rating_label}\n(naive)", f"true {self.rating_label}\n(corrected)"]
        for y, (hr, lo, hi) in enumerate(rows):
            ax.errorbar([hr], [y], xerr=[[hr - lo], [hi - hr]], fmt="o", color=ACCENT, capsize=4)
        ax.axvline(1, color="grey", lw=1, ls="--")
        ax.set_yticks([0, 1], labels)
        ax.set_xlabel(f"Hazard ratio of churn per point of {self.rating_label} ({self.level:.0%} CI)")
        ax.set_title(f"Churn hazard ratio per point of {self.rating_label}: {rows[0][0]:.2f} as observed, "
                     f"{rows[1][0]:.2f} corrected for rating noise")
        return ax

    def summary(self) -> str:
        hr_n, lo_n, hi_n = self.hazard_ratio("naive")
        hr_c, lo_c, hi_c = self.hazard_ratio("corrected")
        rel = self.reliability.set_index("k")
        r1 = rel.loc["1", "reliability"] if "1" in rel.index else np.nan
        r_all = rel.loc["all", "reliability"]
        lvl = f"{self.level:.0%}"
        adj = f", holding {', '.join(self.covariates)} fixed" if self.covariates else ""
        text = (f"Among {self.n_customers:,} customers with at least one {self.rating_label} rating "
                f"({self.n_events:,} of whom left), each point of a customer's observed mean {self.rating_label} "
                f"goes with a {abs(1 - hr_n):.0%} {'lower' if hr_n < 1 else 'higher'} churn hazard (hazard ratio "
                f"{hr_n:.2f}, {lvl} CI {lo_n:.2f}-{hi_n:.2f}){adj}. A single rating is a noisy measure of "
                f"satisfaction: from customers who rated more than once, one rating's reliability is {r1:.2f} "
                f"and that of the customers' mean ratings {r_all:.2f} (1 = no noise), which weakens the "
                f"observed link. Corrected for this noise (regression calibration), each point of true "
                f"satisfaction goes with a hazard ratio of {hr_c:.2f} ({lvl} CI {lo_c:.2f}-{hi_c:.2f}, "
                f"bootstrap over customers, {self.n_boot} resamples). " + ASSOCIATION_NOTE)
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


def covariate_design(frame: pd.DataFrame, covariates: Sequence[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Covariates -> numeric columns: text/category/bool become indicators (first sorted level =
    reference, as :func:`helpers.retention.fit_cox`)."""
    if not covariates:
        return pd.DataFrame(index=frame.index), {}
    X = frame[list(covariates)]
    labels: dict[str, str] = {}
    cat = [c for c in covariates if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])]
    for c in cat:
        levels = sorted(X[c].dropna().astype(str).unique())
        for lv in levels[1:]:
            labels[f"{c}_{lv}"] = f"{c} = {lv} (vs {levels[0]})"
    if cat:
        X = pd.get_dummies(X.astype({c: str for c in cat}).where(X.notna()), columns=cat, drop_first=True,
                           dtype="float64")
    for c in X.columns:
        labels.setdefault(c, f"each unit of {c}")
    return X.astype("float64"), labels


def fit_churn_link(survival: pd.DataFrame, ratings: pd.DataFrame, covariates: Sequence[str] = ("segment",), *,
                   duration: str = "duration", event: str = "event", customer: str = "customer_id",
                   rating_label: str = "CSAT", n_boot: int = 200, level: float = 0.95, seed: int = 0,
                   max_customers: int | None = 200_000, min_events: int = 20,
                   min_repeated: int = 30) -> ChurnLinkResult:
    """Hazard ratio of churn per point of satisfaction, naive and corrected for rating noise.

    ``survival``: one row per customer with ``customer``, ``duration`` (months), ``event`` (1 = churned) and
    the ``covariates`` (e.g. the output of :func:`helpers.retention.customer_durations`). ``ratings``: the
    output of :func:`rating_summary` / :func:`rating_summary_sql` (``n_ratings``, ``mean_rating``,
    ``within_ss`` per customer). Customers without a rating are left out (counted in the result).

    Naive: Cox (Efron ties) on [mean rating, covariates]. Corrected: regression calibration (module
    docstring), Cox on [E(true | mean, k, covariates), covariates], with a bootstrap over customers that
    redoes the calibration and the Cox fit in every replicate (``n_boot``; warm-started at the full-sample
    estimate with its information, updated by BFGS, :func:`cox_efron`). Above ``max_customers`` customers a seeded random sample of that size is
    analysed (stated in ``notes``; the interval then reflects the sample).

    Raises :class:`ChurnLinkInputError` for missing columns, bad values or no customer in both tables, and
    :class:`ChurnLinkError` when the link cannot be estimated: no (or fewer than ``min_repeated``) customers
    with repeated ratings, fewer than ``min_events`` churn events, no true variation beyond the noise.
    """
    covariates = list(covariates or [])
    for col in [customer, duration, event, *covariates]:
        if col not in survival.columns:
            raise ChurnLinkInputError(f"has no column {shorten(col)}; it has {shorten(list(survival.columns))}",
                                      table="customers", expected="customer id, duration, event and the covariates "
                                      "(e.g. the output of helpers.retention.customer_durations)")
    for col in [customer, *SUMMARY_COLUMNS]:
        if col not in ratings.columns:
            raise ChurnLinkInputError(f"has no column {shorten(col)}", table="ratings",
                                      expected="the output of rating_summary() / rating_summary_sql()")
    if not (0 < level < 1):
        raise ChurnLinkInputError(f"level {shorten(level)} is not between 0 and 1", table="parameters",
                                  expected="e.g. 0.95")
    if int(n_boot) != n_boot or n_boot < 20:
        raise ChurnLinkInputError(f"n_boot {shorten(n_boot)} is too small for a bootstrap interval",
                                  table="parameters", expected="n_boot >= 20 (200 or more for a 95% interval)")
    k_all = pd.to_numeric(ratings["n_ratings"], errors="coerce")
    bad = ~(k_all >= 1) | (pd.to_numeric(ratings["within_ss"], errors="coerce") < 0) | \
        pd.to_numeric(ratings["mean_rating"], errors="coerce").isna() | \
        pd.to_numeric(ratings["within_ss"], errors="coerce").isna()
    if bad.any():
        raise ChurnLinkInputError("has rows without a valid count (>= 1), mean and within-customer sum of "
                                  "squares (>= 0)", table="ratings", n_rows=int(bad.sum()),
                                  examples=list(ratings.loc[bad, customer].head(5)),
                                  expected="the output of rating_summary()")
    surv = survival[[customer, duration, event, *[c for c in covariates if c not in (customer, duration, event)]]]
    d = pd.to_numeric(surv[duration], errors="coerce")
    e = pd.to_numeric(surv[event], errors="coerce")
    if d.isna().any() or (d < 0).any():
        bad = d.isna() | (d < 0)
        raise ChurnLinkInputError("has missing or negative durations", table="customers", column=duration,
                                  n_rows=int(bad.sum()), examples=list(surv.loc[bad, customer].head(5)),
                                  expected="months >= 0 on every row")
    if not e.isin([0, 1]).all():
        bad = ~e.isin([0, 1])
        raise ChurnLinkInputError("is not a 0/1 churn flag", table="customers", column=event,
                                  n_rows=int(bad.sum()), examples=list(surv.loc[bad, customer].head(5)),
                                  expected="1 = churned, 0 = still a customer")
    data = surv.merge(ratings[[customer, *SUMMARY_COLUMNS]], on=customer, how="inner")
    n_without = int(len(surv) - len(data))
    notes: list[str] = []
    if len(data) == 0:
        raise ChurnLinkInputError("no customer has both a churn record and a rating", table="customers",
                                  column=customer, expected="the same customer ids in customers and responses")
    Zdf, labels = covariate_design(data, covariates)
    keep = Zdf.notna().all(axis=1).to_numpy()
    if not keep.all():
        notes.append(f"{int((~keep).sum()):,} customers with a missing {', '.join(covariates)} were left out.")
        data, Zdf = data[keep], Zdf[keep]
    rng = np.random.default_rng(seed)
    if max_customers is not None and len(data) > max_customers:
        pick = np.sort(rng.choice(len(data), size=int(max_customers), replace=False))
        notes.append(f"The model was fitted on a random sample of {int(max_customers):,} of the {len(data):,} "
                     f"customers with ratings (seed {seed}).")
        data, Zdf = data.iloc[pick], Zdf.iloc[pick]
    const = [c for c in Zdf.columns if Zdf[c].nunique() < 2]
    if const:
        notes.append(f"Left out of the model because they do not vary: {', '.join(map(str, const))}.")
        Zdf = Zdf.drop(columns=const)
    n = len(data)
    time_ = data[duration].to_numpy("float64")
    ev = data[event].to_numpy("float64")
    k = data["n_ratings"].to_numpy("float64")
    wbar = data["mean_rating"].to_numpy("float64")
    ss = data["within_ss"].to_numpy("float64")
    n_events = int(ev.sum())
    if n_events < min_events:
        raise ChurnLinkError(f"only {n_events} churn events among the {n:,} customers with {rating_label} "
                             f"ratings; at least {min_events} are needed to estimate the satisfaction-churn "
                             "link (wait for more history, or widen the customer selection)")
    n_rep = int(np.sum(k >= 2))
    if n_rep == 0:
        raise ChurnLinkError(f"no customer has two or more {rating_label} ratings, so the noise in a single "
                             "rating cannot be estimated and the satisfaction-churn link cannot be corrected; "
                             "needed: repeated ratings of the same customers")
    if n_rep < min_repeated:
        raise ChurnLinkError(f"only {n_rep} customers have two or more {rating_label} ratings; at least "
                             f"{min_repeated} are needed to estimate the noise in a single rating")
    Z = Zdf.to_numpy("float64")
    cal = calibrate_ratings(k, wbar, ss, Z, rating=rating_label)
    cd = CoxData(time_, ev)
    Zs = cd.sort(Z) if Z.size else np.empty((n, 0))
    naive = cox_efron(None, None, np.column_stack([cd.sort(wbar), Zs]), data=cd, sorted_input=True)
    corr = cox_efron(None, None, np.column_stack([cd.sort(cal.predicted), Zs]), data=cd, sorted_input=True)
    ks = [int(v) for v in range(1, int(min(10, k.max())) + 1)]
    boot_rows, failed, reasons = [], 0, []
    for _ in range(int(n_boot)):
        f = rng.multinomial(n, np.full(n, 1.0 / n)).astype("float64")
        try:
            cb = calibrate_ratings(k, wbar, ss, Z, weights=f, rating=rating_label)
            Xb, fb = np.column_stack([cd.sort(cb.predicted), Zs]), cd.sort(f)
            try:  # cheap refit first; a replicate far from the full sample gets a full Newton fit
                fit = cox_efron(None, None, Xb, weights=fb, init=corr.coef, data=cd, sorted_input=True,
                                fixed_information=corr.information, max_iter=30)
            except ChurnLinkError:
                fit = cox_efron(None, None, Xb, weights=fb, init=corr.coef, data=cd, sorted_input=True)
        except KitError as exc:
            failed += 1
            reasons.append(str(exc))
            if failed > 0.1 * n_boot:
                break
            continue
        boot_rows.append([*fit.coef, cb.overall_reliability, *cb.reliability(ks), cb.error_variance,
                          cb.true_variance])
    if failed > 0.1 * n_boot:
        raise ChurnLinkError(f"{failed} of the first {failed + len(boot_rows)} bootstrap resamples could not be "
                             f"fitted (of {n_boot}), so the interval "
                             f"would not be trustworthy; most often: {max(set(reasons), key=reasons.count)}")
    if failed:
        notes.append(f"{failed} of {n_boot} bootstrap resamples could not be fitted and were left out.")
    terms = [RATING_TERM, *Zdf.columns]
    boot = pd.DataFrame(boot_rows, columns=[*terms, "reliability_all", *[f"reliability_{v}" for v in ks],
                                            "error_variance", "true_variance"])
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    z = stats.norm.ppf(q[1])
    lab = {RATING_TERM: f"per point of {rating_label}", **labels}
    rows = []
    for j, t in enumerate(terms):
        b, se = naive.coef[j], naive.se[j]
        rows.append({"model": "naive", "term": t, "label": lab.get(t, t), "coef": b, "hazard_ratio": np.exp(b),
                     "ci_low": np.exp(b - z * se), "ci_high": np.exp(b + z * se), "interval": "Wald"})
    for j, t in enumerate(terms):
        lo, hi = np.quantile(boot[t], q)
        rows.append({"model": "corrected", "term": t, "label": lab.get(t, t), "coef": corr.coef[j],
                     "hazard_ratio": np.exp(corr.coef[j]), "ci_low": np.exp(lo), "ci_high": np.exp(hi),
                     "interval": "bootstrap percentile"})
    table = pd.DataFrame(rows)
    rel_rows = []
    counts = pd.Series(k).value_counts()
    for v in ks:
        lo, hi = np.quantile(boot[f"reliability_{v}"], q)
        rel_rows.append({"k": str(v), "customers": int(counts.get(float(v), 0)),
                         "reliability": float(cal.reliability(v)), "ci_low": lo, "ci_high": hi})
    lo, hi = np.quantile(boot["reliability_all"], q)
    rel_rows.append({"k": "all", "customers": n, "reliability": cal.overall_reliability, "ci_low": lo,
                     "ci_high": hi})
    return ChurnLinkResult(table=table, reliability=pd.DataFrame(rel_rows), calibration=cal, boot=boot,
                           n_customers=n, n_events=n_events, n_repeated=n_rep, n_without_ratings=n_without,
                           n_boot=len(boot), level=level, rating_label=rating_label, covariates=covariates,
                           notes=notes)
