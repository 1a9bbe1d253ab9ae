"""What satisfaction is worth: attribute -> CSAT -> churn hazard -> customers kept -> revenue, with intervals.

:func:`what_if` answers "if the ratings of one attribute rose by ``delta`` points, what would happen to CSAT,
churn, the customers kept and their revenue over the next ``horizon`` months?" by joining four links:

1. **attribute -> CSAT**: the slope :math:`w_a` of CSAT on attribute *a* in the multiple regression of the
   survey's CSAT on all attribute ratings (OLS over answered surveys, the drivers model), so an improvement
   of *d* raises each CSAT answer, hence a customer's true mean CSAT, by :math:`w_a d`;
2. **CSAT -> hazard**: the Cox log hazard ratio :math:`\\beta` per point of true satisfaction, corrected for
   rating noise by regression calibration (:mod:`helpers.churn_link`), adjusted for the covariates; the
   hazard of every customer is multiplied by :math:`\\exp(\\beta w_a d)`;
3. **hazard -> customers kept**: for each customer active at the as-of date with tenure :math:`t_0`,
   :math:`S_i(h) = \\exp\\{-[H_0(t_0 + h) - H_0(t_0)]\\, e^{\\eta_i}\\}` (Cox baseline cumulative hazard
   :math:`H_0`, Efron increments; :math:`\\eta_i = \\beta \\hat T_i + \\gamma' Z_i` with :math:`\\hat T_i` the
   customer's calibrated satisfaction, or the covariates' mean for a customer who never answered). With the
   corrected link (``integrate=True``, the default) each customer's hazard is also spread by the leftover
   uncertainty about their satisfaction, :math:`T_i \\mid \\text{ratings} \\sim N(\\hat T_i, v_i)`,
   :math:`v_i = \\tau^2(1 - \\lambda(k_i))` (:math:`\\tau^2` without ratings), keeping its mean:
   :math:`S_i(h) = E_Z \\exp\\{-\\Delta H_0\\, e^{\\eta_i + \\beta \\sqrt{v_i} Z - \\beta^2 v_i / 2}\\}` (3-point
   Gauss-Hermite): customers alike on their ratings differ in true satisfaction, and the less satisfied of
   them leave first; without the spread the chain overstated the demo's counterfactual effect by ~10% (see
   below). Beyond the
   longest observed tenure :math:`H_0` is extended linearly with its average slope over the last 12 months
   (stated in the result's notes). Expected customers kept after *H* months = :math:`\\sum_i S_i(H)`;
4. **kept -> revenue**: expected revenue over the horizon, discounted, :math:`\\sum_i m_i \\sum_{h=1}^{H}
   S_i(h) / (1 + r)^h` (``monthly_revenue`` :math:`m_i` received at the end of each month the customer is
   still there; *r* the monthly rate equivalent to the annual discount rate), i.e. the customer value of
   Fader & Hardie (2010) truncated at *H* months with the Cox survival in place of the sBG.

Intervals come from resampling customers (with their answers) and redoing every link in each replicate: the
regression, the calibration, the Cox fit and its baseline; percentile intervals of the differences
(what-if minus as-is), so the uncertainty of all links is carried through together (not multiplied point
estimates). They describe the expected value for today's customers, not the chance variation of who
actually leaves.

:func:`revenue_at_risk` uses links 2-4 with a per-customer shift instead of link 1: the expected revenue
over the horizon lost to dissatisfaction relative to every customer below a reference satisfaction (default:
the median of today's customers) being at it, per segment (or any grouping column, e.g. each customer's main
department), with the same joint bootstrap.

Every result is an association under stated assumptions (the regression slope is the effect of the
attribute on CSAT; rating noise is random; proportional hazards; the covariates capture the rest), not the
result of a controlled experiment. Not corrected here: noise in the *attribute* ratings themselves, which
attenuates link 1 the way noise in CSAT attenuates link 2 (the slope is per point of an observed attribute
rating), and department-specific slopes (link 1 is pooled over all answers: "every interaction improves").

:func:`what_if_many` runs several changes (attributes, satisfaction itself with ``attribute`` = the outcome,
a raise to a reference level, each optionally reaching only part of a customer's experience: ``exposure``)
on the same resamples, so a page's whole set of numbers costs one chain. Above ``max_predicted`` of today's
customers the resamples evaluate links 3-4 on a stratified random sample of them (estimate + the resample's
change on the sample, scaled up per group; the estimates use everyone).

Checked in ``tests/test_impact.py`` on a synthetic company whose every link is known (slope, hazard ratio,
expected extra customers kept and revenue within the intervals). Coverage of the 95% intervals by
simulation (200 replications): customers kept 0.930, revenue 0.940 with 3,000 customers and 200 resamples
(``bench/bench_impact.py --coverage 200``); 0.915 and 0.915 with 1,500 customers and 50 resamples (slow
test); a 40-replication version runs with every test run.

Checked against a counterfactual (``tests/test_counterfactual.py``, ``bench/bench_impact.py
--counterfactual 10``): the demo company generated again from the same draws with every customer's latent
satisfaction 0.3 points higher from 2025-11-01 (:mod:`helpers.demo`). On 10 such companies of 4,000
customers, ``what_if(..., "csat", 0.3)`` on the factual data estimates the expected extra customers kept
over 12 months (given the true hazards) at 0.97-1.12 times its value (mean 1.02); its 95% interval held it in
9 of 10, and the realised difference (which also carries the chance of who leaves, sd ~10 customers) in 6
of 10. Without the spread of link 3 (``integrate=False``) the estimate was 4-22% high (mean 10%) and held
the expected number in 6 of 10; a Cox fit on the true latent satisfaction is 2-5% high on the same data
(estimation and the baseline's extrapolation). The naive chain (``corrected=False``) understates: its
upper end was below the expected number in 10 and below the realised difference in 9 of 10.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from helpers import churn_link as CL
from helpers.errors import KitError, TableInputError
from helpers.formatting import (CURRENCY_SYMBOLS, column_label, fmt_currency, fmt_interval, fmt_number,
                                interval_decimals, shorten)
from helpers.retention import customer_durations, monthly_discount_rate

ASSOCIATION_NOTE = ("This is an association under stated assumptions (the attribute's regression slope is its "
                    "effect on CSAT, rating noise is random, proportional hazards), not the result of a "
                    "controlled experiment.")


class ImpactInputError(TableInputError):
    """Input to the satisfaction-value chain is unusable; names table, column, rows and what was expected."""


class ImpactError(KitError):
    """A link of the chain cannot be estimated from these data (says which and what is missing)."""


# ----------------------------------------------------------------------------------------------------
# Link 1: attribute -> CSAT from per-customer cross-products (resampled with the customers)
# ----------------------------------------------------------------------------------------------------

def driver_crossproducts(responses: pd.DataFrame, attributes: Sequence[str], outcome: str = "csat",
                         customer: str = "customer_id") -> pd.DataFrame:
    """Per customer, the sums over their complete answers of v v' (upper triangle), v = [1, attributes,
    outcome]: the sufficient statistics of the OLS of ``outcome`` on the attributes, so a bootstrap over
    customers only re-weights these rows. Index: customer id; columns ``cp_i_j``."""
    cols = list(attributes) + [outcome]
    r = responses[[customer, *cols]].dropna()
    if r.empty:
        raise ImpactError(f"no survey answer has {outcome} and all of {shorten(list(attributes))} answered, "
                          "so the attribute -> CSAT regression cannot be fitted")
    v = np.column_stack([np.ones(len(r)), r[cols].to_numpy("float64")])
    m = v.shape[1]
    ia, ib = np.triu_indices(m)
    prod = pd.DataFrame(v[:, ia] * v[:, ib], columns=[f"cp_{i}_{j}" for i, j in zip(ia, ib)])
    prod[customer] = r[customer].to_numpy()
    return prod.groupby(customer, sort=True).sum()


def driver_crossproducts_sql(con, attributes: Sequence[str], outcome: str = "csat", table: str = "responses",
                             customer: str = "customer_id", as_of: object = None,
                             date: str = "response_date") -> pd.DataFrame:
    """:func:`driver_crossproducts` computed in DuckDB (one row per customer comes back to Python)."""
    q = CL.sql_identifier
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]
    except Exception as exc:  # noqa: BLE001
        raise ImpactInputError(f"cannot be read from the database ({type(exc).__name__})", table=table) from None
    missing = [c for c in [customer, outcome, *attributes] if c not in cols]
    if missing:
        raise ImpactInputError(f"has no column(s) {shorten(missing)}", table=table,
                               expected="the attribute ratings and the outcome")
    v = ["1.0"] + [f"CAST({q(c)} AS DOUBLE)" for c in [*attributes, outcome]]
    ia, ib = np.triu_indices(len(v))
    sums = ", ".join(f"sum({v[i]} * {v[j]}) AS cp_{i}_{j}" for i, j in zip(ia, ib))
    where = " AND ".join(f"{q(c)} IS NOT NULL" for c in [*attributes, outcome])
    params: list = []
    if as_of not in (None, ""):
        where += f" AND CAST({q(date)} AS DATE) <= CAST(? AS DATE)"
        params.append(str(pd.Timestamp(as_of).date()))
    out = con.execute(f"SELECT {q(customer)} AS {q(customer)}, {sums} FROM {q(table)} WHERE {where} "
                      f"GROUP BY {q(customer)} ORDER BY {q(customer)}", params).df()
    if out.empty:
        raise ImpactError(f"no survey answer has {outcome} and all of {shorten(list(attributes))} answered, "
                          "so the attribute -> CSAT regression cannot be fitted")
    return out.set_index(customer)


def _ols_from_crossproducts(cp: np.ndarray, weights: np.ndarray, m: int) -> np.ndarray:
    """Coefficients [intercept, attributes] of the OLS of the outcome (last element of v) on the rest."""
    tot = weights @ cp  # BLAS (the chain runs with one BLAS thread)
    M = np.zeros((m, m))
    ia, ib = np.triu_indices(m)
    M[ia, ib] = tot
    M[ib, ia] = tot
    XtX, Xty = M[:-1, :-1], M[:-1, -1]
    try:
        return np.linalg.solve(XtX, Xty)
    except np.linalg.LinAlgError:
        raise ImpactError("the attribute ratings are collinear; the attribute -> CSAT slope is not "
                          "identified") from None


# ----------------------------------------------------------------------------------------------------
# Links 3-4: survival and revenue of today's customers
# ----------------------------------------------------------------------------------------------------

def _extended_cumhaz(fit: CL.CoxFit, t: np.ndarray, tail_months: float = 12.0) -> np.ndarray:
    """H0(t) with a linear extension beyond the last event time (average slope over its last 12 months)."""
    t_last, h_last = float(fit.baseline_times[-1]), float(fit.baseline_cumhaz[-1])
    start = max(0.0, t_last - tail_months)
    slope = (h_last - float(fit.cumulative_hazard(start))) / (t_last - start) if t_last > start else 0.0
    return np.where(t <= t_last, fit.cumulative_hazard(np.minimum(t, t_last)), h_last + slope * (t - t_last))


def _cumhaz_increments(fit: CL.CoxFit, t0_values: np.ndarray, horizon: int) -> np.ndarray:
    """H0(t0 + h) - H0(t0) for each distinct tenure t0 (rows) and h = 1..horizon (columns), float32."""
    h = np.arange(1, horizon + 1)
    grid = _extended_cumhaz(fit, (t0_values[:, None] + h[None, :]).ravel()).reshape(len(t0_values), horizon)
    return (grid - _extended_cumhaz(fit, t0_values)[:, None]).astype(np.float32)


def _kept_and_revenue(fit: CL.CoxFit, t0_values: np.ndarray, t0_index: np.ndarray, eta: np.ndarray,
                      shifts: list, revenue: np.ndarray, horizon: int, monthly_rate: float, groups: np.ndarray,
                      n_groups: int, weights: np.ndarray | None = None, increments: np.ndarray | None = None):
    """Per group: expected customers kept after ``horizon`` months and discounted expected revenue over
    it as-is, and (lists, one per element of ``shifts``) their changes when the linear predictor is shifted
    by the shift (a number, or one per customer). Tenures come as distinct values
    ``t0_values`` and each customer's index into them (tenures repeat: whole days), so the baseline is
    evaluated once per distinct tenure. ``weights``: one per customer (None: 1), e.g. a resample's
    weights of a sample's customers. ``increments``: the baseline's increments per customer,
    ``_cumhaz_increments(fit, t0_values, horizon)[t0_index]``, when the caller has them (the same for every
    linear predictor of one fit)."""
    h = np.arange(1, horizon + 1)
    if increments is None:
        increments = _cumhaz_increments(fit, t0_values, horizon)[t0_index]
    disc = ((1 + monthly_rate) ** -h.astype(float)).astype(np.float32)
    # float32 for the n x horizon survival matrix (halves the time on 1,000,000 customers); sums in float64,
    # and the what-if differences are taken per customer before summing, so they keep their precision; the
    # discounting is a matrix-vector product (BLAS sgemv: ~3x faster than einsum here; the chain runs with one
    # BLAS thread, _one_blas_thread)
    neg_E = increments * np.exp(eta).astype(np.float32)[:, None]
    np.negative(neg_E, out=neg_E)
    S0 = np.exp(neg_E)
    if weights is not None:
        revenue = revenue * weights
    kept = np.bincount(groups, S0[:, -1] if weights is None else weights * S0[:, -1], n_groups)
    rev = np.bincount(groups, revenue * (S0 @ disc), n_groups)
    extra_kept, extra_rev = [], []
    D = np.empty_like(S0)
    for shift in shifts:
        mult = np.exp(np.asarray(shift, dtype="float64")).astype(np.float32)  # scalar, or one per customer
        np.multiply(neg_E, mult[:, None] if mult.ndim else mult, out=D)
        np.exp(D, out=D)
        D -= S0
        extra_kept.append(np.bincount(groups, D[:, -1] if weights is None else weights * D[:, -1], n_groups))
        extra_rev.append(np.bincount(groups, revenue * (D @ disc), n_groups))
    return kept, rev, extra_kept, extra_rev


# ----------------------------------------------------------------------------------------------------
# The chain
# ----------------------------------------------------------------------------------------------------

_SYMBOL_CODES = {sym.strip(): code for code, sym in CURRENCY_SYMBOLS.items() if sym.strip()}


def resolve_currency(currency: str | None = None) -> str:
    """The ISO code money is shown in: ``currency`` if given (a symbol such as ``$`` is read as its code),
    else ``currency:`` of ``params/report.yaml`` (:class:`helpers.config.ReportConfig`, default EUR); ``""``
    (plain numbers) when that cannot be read."""
    if currency is None:
        try:
            from helpers.config import load_report_config
            currency = getattr(load_report_config(), "currency", "") or ""
        except Exception:  # noqa: BLE001 - no readable params: amounts without a currency, never a crash
            currency = ""
    text = str(currency).strip()
    return _SYMBOL_CODES.get(text, text.upper())


def _money(value: float, currency: str) -> str:
    """Signed amount in the currency (helpers.formatting.fmt_currency): +€1,234 / -$56 / +1,234 SEK."""
    return fmt_currency(value, currency, signed=True) if value != 0 else fmt_currency(0, currency)


def _money_interval(low: float, high: float, currency: str) -> str:
    """A signed money interval, ends low to high: "+€1,200 to +€3,400"."""
    lo, hi = sorted((float(low), float(high)))
    return f"{_money(lo, currency)} to {_money(hi, currency)}"


def _decimals(lo: float, hi: float, least: int = 2, most: int = 4) -> int:
    """Fewest decimals (>= ``least``) at which the interval's ends print differently
    (:func:`helpers.formatting.interval_decimals`)."""
    return interval_decimals(lo, hi, least=least, most=most)


@dataclass
class WhatIfResult:
    """The chain's answer. ``table``: one row per group of ``by`` and ``all``: ``customers`` (active at the
    as-of date), ``kept`` (expected still customers after ``horizon`` months, as is), ``extra_kept`` with
    ``extra_kept_low``/``_high``, ``revenue`` (expected discounted revenue over the horizon, as is) and
    ``extra_revenue`` with interval. ``links``: the CSAT change, the hazard ratio of the change and the
    per-point link (estimate, interval). ``boot``: the replicates."""

    table: pd.DataFrame
    links: pd.DataFrame
    boot: pd.DataFrame
    attribute: str
    delta: float
    horizon: int
    level: float
    corrected: bool
    currency: str
    annual_discount_rate: float
    n_boot: int
    by: str
    notes: list[str] = field(default_factory=list)
    outcome: str = "csat"

    def link(self, name: str) -> tuple[float, float, float]:
        row = self.links.set_index("link").loc[name]
        return float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])

    @property
    def direct(self) -> bool:
        """True when the shift is of the outcome (CSAT) itself, not of an attribute (no link 1)."""
        return self.attribute == self.outcome

    def _what(self) -> str:
        """"Raising Ease ratings by 0.5 points" / "Raising CSAT by 0.3 points"."""
        way = "Raising" if self.delta > 0 else "Lowering"
        pts = f"{abs(self.delta):g} point{'s' if abs(self.delta) != 1 else ''}"
        if self.direct:
            return f"{way} {column_label(self.outcome)} by {pts}"
        return f"{way} {column_label(self.attribute)} ratings by {pts}"

    def headline(self) -> str:
        """One sentence: what the change goes with over the horizon, with intervals, and that it is an
        association under stated assumptions."""
        a = self.table.set_index(self.by).loc["all"]
        lvl = f"{self.level:.0%}"
        return (f"{self._what()} goes with {fmt_number(a['extra_kept'], signed=True)} customers kept after "
                f"{self.horizon} months ({lvl} CI {fmt_number(a['extra_kept_low'], signed=True)} to "
                f"{fmt_number(a['extra_kept_high'], signed=True)}) and {_money(a['extra_revenue'], self.currency)} "
                f"revenue ({_money_interval(a['extra_revenue_low'], a['extra_revenue_high'], self.currency)}): an "
                "association under stated assumptions, not the result of a controlled experiment.")

    def summary(self) -> str:
        allrow = self.table.set_index(self.by).loc["all"]
        hr, hlo, hhi = self.link("hazard_ratio_of_change")
        lvl = f"{self.level:.0%}"
        cur = self.currency
        dh = _decimals(hlo, hhi)
        text = f"{self._what()}: "
        if not self.direct:
            dc, dlo, dhi = self.link("csat_change")
            dd = _decimals(dlo, dhi)
            text += (f"{dc:+.{dd}f} {column_label(self.outcome)} points ({lvl} CI {dlo:+.{dd}f} to "
                     f"{dhi:+.{dd}f}), ")
        text += (f"a churn hazard {hr:.{dh}f} times today's ({lvl} CI {fmt_interval(hlo, hhi, dh)}), "
                 f"{fmt_number(allrow['extra_kept'], signed=True)} of today's {fmt_number(allrow['customers'])} "
                 f"customers still customers after {self.horizon} months "
                 f"({fmt_number(allrow['extra_kept_low'], signed=True)} to "
                 f"{fmt_number(allrow['extra_kept_high'], signed=True)}) and "
                 f"{_money(allrow['extra_revenue'], cur)} revenue over those months "
                 f"({_money_interval(allrow['extra_revenue_low'], allrow['extra_revenue_high'], cur)}; "
                 f"discounted at {self.annual_discount_rate:.0%} a year). ")
        if not self.corrected:
            text += "The satisfaction-churn link was NOT corrected for rating noise (naive). "
        text += ASSOCIATION_NOTE
        if self.notes:
            text += " " + " ".join(self.notes)
        return text

    def plot(self, ax=None):
        from helpers.charts import ACCENT, new_axis
        ax = new_axis(ax)
        tab = self.table
        y = np.arange(len(tab))
        ax.errorbar(tab["extra_kept"], y, xerr=[tab["extra_kept"] - tab["extra_kept_low"],
                                                tab["extra_kept_high"] - tab["extra_kept"]],
                    fmt="o", color=ACCENT, capsize=3)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(y, tab[self.by].astype(str))
        ax.set_xlabel(f"Extra customers kept after {self.horizon} months ({self.level:.0%} CI)")
        ax.set_title(f"What {self.delta:+g} on {column_label(self.attribute)} is worth")
        return ax


def what_if(customers: pd.DataFrame, responses: pd.DataFrame | None, attribute: str, delta: float, *,
            horizon: int = 12, as_of: object = None, covariates: Sequence[str] = ("segment",),
            by: str = "segment", outcome: str = "csat", attributes: Sequence[str] | None = None,
            revenue: str = "monthly_revenue", annual_discount_rate: float = 0.10, corrected: bool = True,
            n_boot: int = 200, level: float = 0.95, seed: int = 0, max_customers: int | None = 200_000,
            min_events: int = 20, currency: str | None = None, ratings: pd.DataFrame | None = None,
            crossproducts: pd.DataFrame | None = None, integrate: bool = True) -> WhatIfResult:
    """If the ratings of ``attribute`` rose by ``delta`` points, what would happen over ``horizon`` months
    (module docstring)? ``attribute`` = ``outcome`` (e.g. ``"csat"``) shifts satisfaction itself by ``delta``
    points (links 2-4 only; the CSAT change is ``delta`` exactly). ``currency``: an ISO code (default: the
    ``currency:`` of params/report.yaml, :func:`resolve_currency`). ``customers`` and ``responses`` are the
    data contract's tables (``customer_id``,
    ``signup_date``, ``end_date``, ``by``/``covariates``, ``revenue``; ``customer_id``, ``response_date``,
    ``outcome``, the ``attr_*`` ratings). ``corrected=False`` uses the naive link (the observed mean rating)
    for comparison. Large data: pass ``ratings`` (:func:`helpers.churn_link.rating_summary_sql`) and
    ``crossproducts`` (:func:`driver_crossproducts_sql`, with ``attributes`` in the same order), computed in
    the engine and cut at ``as_of``; ``responses`` is then not read (may be None). Customers with a missing
    revenue get their group's median (counted in ``notes``).

    Raises :class:`ImpactInputError` (missing column, unknown attribute, bad horizon or rate) and
    :class:`ImpactError` / :class:`helpers.churn_link.ChurnLinkError` when a link cannot be estimated (no
    answered attribute, no repeated ratings, too few churn events, no active customer).
    """
    return what_if_many(customers, responses, [(attribute, delta)], horizon=horizon, as_of=as_of,
                        covariates=covariates, by=by, outcome=outcome, attributes=attributes, revenue=revenue,
                        annual_discount_rate=annual_discount_rate, corrected=corrected, n_boot=n_boot, level=level,
                        seed=seed, max_customers=max_customers, min_events=min_events, currency=currency,
                        ratings=ratings, crossproducts=crossproducts, integrate=integrate)[0]


def what_if_many(customers: pd.DataFrame, responses: pd.DataFrame | None, scenarios: Sequence[tuple], *,
                 horizon: int = 12, as_of: object = None, covariates: Sequence[str] = ("segment",),
                 by: str = "segment", outcome: str = "csat", attributes: Sequence[str] | None = None,
                 revenue: str = "monthly_revenue", annual_discount_rate: float = 0.10, corrected: bool = True,
                 n_boot: int = 200, level: float = 0.95, seed: int = 0, max_customers: int | None = 200_000,
                 min_events: int = 20, currency: str | None = None, ratings: pd.DataFrame | None = None,
                 crossproducts: pd.DataFrame | None = None,
                 max_predicted: int | None = 100_000, integrate: bool = True,
                 population: pd.DataFrame | None = None, sample_fraction: float = 1.0) -> list[WhatIfResult]:
    """:func:`what_if` for several changes at once, sharing every resample's regression, calibration and Cox
    fit (so their intervals come from the same resamples and cost one chain): ``scenarios`` is a list of
    ``(attribute, delta)`` or ``(attribute, delta, exposure)``, ``exposure`` a Series by customer id of the
    share (0-1) of each customer's experience the change reaches (e.g. their share of answers about one
    department; customers not in it: 0). ``max_predicted``: above this many of today's customers, each
    resample's predictions are evaluated on a stratified random sample of them (:func:`_prediction_sets`).
    ``customers`` may be a seeded sample of the customers: then ``population`` (per group of ``by``: the
    population's active ``customers`` and their monthly ``revenue``) and ``sample_fraction`` turn its sums
    into population figures with the sampling error in the intervals (:func:`_chain`).
    Returns one :class:`WhatIfResult` per scenario."""
    scen = []
    for sc in scenarios:
        if len(sc) not in (2, 3):
            raise ImpactInputError(f"scenario {shorten(sc)} is not (attribute, delta[, exposure])",
                                   table="parameters")
        scen.append((sc[0], sc[1] if sc[0] is None else float(sc[1]), sc[2] if len(sc) == 3 else None))
    if not scen:
        raise ImpactInputError("no scenario given", table="parameters", expected="[(attribute, delta), ...]")
    with _one_blas_thread():
        results, notes = _chain(
            customers, responses, scen, horizon=horizon, as_of=as_of, covariates=covariates, by=by,
            outcome=outcome, attributes=attributes, revenue=revenue, annual_discount_rate=annual_discount_rate,
            corrected=corrected, n_boot=n_boot, level=level, seed=seed, max_customers=max_customers,
            min_events=min_events, ratings=ratings, crossproducts=crossproducts, max_predicted=max_predicted,
            integrate=integrate, population=population, sample_fraction=sample_fraction)
    cur = resolve_currency(currency)
    return [WhatIfResult(table=table, links=links, boot=boot, attribute=a, delta=d, horizon=int(horizon),
                         level=level, corrected=corrected, currency=cur, annual_discount_rate=annual_discount_rate,
                         n_boot=len(boot), by=by, notes=list(notes), outcome=outcome)
            for (table, links, boot), (a, d, _) in zip(results, scen)]


_SQRT_2PI = np.sqrt(2 * np.pi)

# 3-point Gauss-Hermite rule for E f(Z), Z ~ N(0, 1): nodes 0, +-sqrt(3), weights 2/3, 1/6, 1/6 (exact for
# polynomials up to degree 5; 5 and 15 points change the demo's predictions by less than 0.1%)
GAUSS_HERMITE_3 = ((0.0, 2 / 3), (np.sqrt(3.0), 1 / 6), (-np.sqrt(3.0), 1 / 6))


def _prediction_sets(a_idx: np.ndarray, groups: np.ndarray, n_groups: int, max_predicted: int | None,
                     rng: np.random.Generator, min_per_group: int = 2_000):
    """Today's customers (positions 0..n-1) for the point estimates, and for the resamples either the same
    (None) or a stratified random sample: per group min(N_g, max(share x N_g, min_per_group)) customers with
    share = max_predicted / n, and the scale-up N_g / n_g per group. A resample's change is then
    estimate(all) + scale x (resample(sample) - estimate(sample)): the sampling error enters only through
    the resample-to-resample differences, a few percent of the estimate, so the intervals move by a small
    fraction of their width (checked in tests/test_impact.py)."""
    n = len(a_idx)
    full = np.arange(n)
    if max_predicted is None or n <= max_predicted:
        return full, None, None
    share = max_predicted / n
    parts = []
    for g in range(n_groups):
        members = np.flatnonzero(groups == g)
        take = min(len(members), max(int(np.ceil(share * len(members))),
                                     min(min_per_group, max_predicted // max(n_groups, 1))))
        parts.append(np.sort(rng.choice(members, size=take, replace=False)) if take < len(members) else members)
    sub = np.sort(np.concatenate(parts))
    counts_full = np.bincount(groups, minlength=n_groups).astype("float64")
    counts_sub = np.bincount(groups[sub], minlength=n_groups).astype("float64")
    scale = np.divide(counts_full, counts_sub, out=np.ones(n_groups), where=counts_sub > 0)
    return full, sub, scale


def _one_blas_thread():
    """One BLAS thread while the chain runs (its matrix-vector products are small: on a shared machine a
    multi-threaded BLAS stalls them; threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _chain(customers, responses, scenarios, *, horizon, as_of, covariates, by, outcome, attributes,
           revenue, annual_discount_rate, corrected, n_boot, level, seed, max_customers, min_events, ratings,
           crossproducts, max_predicted=100_000, integrate=True, population=None, sample_fraction=1.0):
    """The body of :func:`what_if`, :func:`what_if_many` and :func:`revenue_at_risk`. ``scenarios`` is a list
    of (attribute, delta, exposure), all sharing each resample's fits: the shift of true satisfaction is
    slope x delta (slope 1 when attribute is the outcome itself), times the customer's ``exposure`` (a Series
    by customer id, 0 where missing; None = 1 for everyone). Attribute None: delta is a reference level
    ("median" or a number) to which every customer below it is raised (link 1 unused; the shift is
    E[max(T, r) | ratings] - E[T | ratings], module docstring). ``population`` (a seeded sample of the
    customers, :mod:`helpers.engine.worth_sample`): per group of ``by`` the population's ``customers`` (active)
    and ``revenue`` (their monthly revenue), and ``sample_fraction`` = sample size / customers: the sums over
    the sample's active customers become population figures by ratio estimators per group (:func:`_to_population`);
    in each resample the predictions are weighted by the resample's counts rescaled to carry the finite-population
    correction, w = 1 - c + c f, c = sqrt(1 - sample_fraction) (Rao & Wu 1988), so the intervals include the
    sampling error (c = 0, every customer: the row path). Returns [(table, links, boot) per scenario], notes."""
    kinds = ["reference" if a is None else "direct" if a == outcome else "attribute" for a, _, _ in scenarios]
    any_attr = "attribute" in kinds
    if not any_attr:
        attributes = []
        if crossproducts is None:
            crossproducts = pd.DataFrame()
    precomputed = ratings is not None and crossproducts is not None
    if precomputed and attributes is None:
        raise ImpactInputError("precomputed cross-products need the attribute list they were computed with",
                               table="parameters", expected="attributes=[...] in the same order")
    for col in ("customer_id", "signup_date", "end_date", by, *covariates):
        if col not in customers.columns:
            raise ImpactInputError(f"has no column {shorten(col)}", column=None,
                                   expected="customer_id, signup_date, end_date and the segment/covariates")
    if revenue not in customers.columns:
        raise ImpactInputError(f"has no revenue column {shorten(revenue)}, so the revenue link of the chain "
                               "cannot be computed", expected="a monthly revenue (or margin) per customer")
    if responses is None and not precomputed:
        raise ImpactInputError("is missing", table="responses",
                               expected="the survey answers, or precomputed ratings and crossproducts")
    attrs = list(attributes) if attributes is not None else \
        [c for c in responses.columns if str(c).startswith("attr_")]
    if not precomputed:
        for col in ("customer_id", "response_date", outcome):
            if col not in responses.columns:
                raise ImpactInputError(f"has no column {shorten(col)}", table="responses")
    for (attribute, delta, _), kind in zip(scenarios, kinds):
        if kind == "attribute" and (attribute not in attrs or (not precomputed and attribute not in
                                                               responses.columns)):
            raise ImpactInputError(f"has no attribute {shorten(attribute)}", table="responses",
                                   expected=f"one of {shorten(attrs, 200)}")
        if kind == "reference":
            if not (delta == "median" or (isinstance(delta, (int, float)) and np.isfinite(delta))):
                raise ImpactInputError(f"reference {shorten(delta)} is neither 'median' nor a number",
                                       table="parameters", expected="'median' or a satisfaction level such as 4.2")
        elif not np.isfinite(delta):
            raise ImpactInputError(f"delta {shorten(delta)} is not a number", table="parameters")
    if not isinstance(horizon, (int, np.integer)) or horizon < 1 or horizon > 120:
        raise ImpactInputError(f"horizon {shorten(horizon)} is not a whole number of months 1-120",
                               table="parameters")
    d_month = monthly_discount_rate(annual_discount_rate)
    rng = np.random.default_rng(seed)
    notes: list[str] = []

    as_of_ts = pd.Timestamp(as_of) if as_of not in (None, "") else None
    if as_of_ts is not None:  # customers who signed up later were not customers yet
        customers = customers[pd.to_datetime(customers["signup_date"]) <= as_of_ts]
    frame = customer_durations(customers, as_of=as_of)
    if precomputed:  # e.g. rating_summary_sql / driver_crossproducts_sql, already cut at as_of
        summary, cp = ratings, crossproducts
    else:
        resp = responses
        if as_of_ts is not None:
            resp = responses[pd.to_datetime(responses["response_date"]) <= as_of_ts]
        summary = CL.rating_summary(resp, outcome, as_of=None)
        cp = driver_crossproducts(resp, attrs, outcome) if any_attr else pd.DataFrame()
    m = len(attrs) + 2
    j_attrs = [1 + attrs.index(a) if kind == "attribute" else 0 for (a, _, _), kind in zip(scenarios, kinds)]

    # customers x covariates (same indicator columns for the Cox set and today's customers)
    Zdf, _ = CL.covariate_design(frame, list(covariates))
    ok_cov = Zdf.notna().all(axis=1).to_numpy()
    if not ok_cov.all():
        notes.append(f"{int((~ok_cov).sum()):,} customers with a missing {', '.join(covariates)} were left out.")
    frame, Zdf = frame[ok_cov].reset_index(drop=True), Zdf[ok_cov].reset_index(drop=True)
    Zdf = Zdf.loc[:, Zdf.nunique() > 1]
    ids = frame["customer_id"].to_numpy()
    srow = pd.Series(np.arange(len(summary)), index=summary["customer_id"].to_numpy())
    pos = srow.reindex(ids).to_numpy()
    rated = ~np.isnan(pos)
    if not rated.any():
        raise ImpactInputError(f"no customer has a {outcome} rating in the responses", column="customer_id",
                               expected="the same customer ids in customers and responses")
    pos_r = pos[rated].astype(int)
    k_all = np.full(len(ids), np.nan)
    w_all = np.full(len(ids), np.nan)
    ss_all = np.zeros(len(ids))
    k_all[rated] = summary["n_ratings"].to_numpy("float64")[pos_r]
    w_all[rated] = summary["mean_rating"].to_numpy("float64")[pos_r]
    ss_all[rated] = summary["within_ss"].to_numpy("float64")[pos_r]
    Z_all = Zdf.to_numpy("float64")
    cp_pos = pd.Series(np.arange(len(cp)), index=cp.index).reindex(ids).to_numpy()
    has_cp = ~np.isnan(cp_pos)
    if any_attr and has_cp.sum() < len(attrs) + 2:
        raise ImpactError(f"only {int(has_cp.sum())} customers answered every attribute; the attribute -> "
                          "CSAT regression needs more")
    cp_mat = cp.to_numpy("float64")[cp_pos[has_cp].astype(int)]

    # today's customers (population of the prediction, fixed)
    active = frame["event"].to_numpy() == 0
    if not active.any():
        raise ImpactError("no customer is active at the as-of date, so there is nobody to keep")
    rev = pd.to_numeric(frame[revenue], errors="coerce")
    if rev.notna().sum() == 0:
        raise ImpactInputError(f"column {shorten(revenue)} has no values", expected="monthly revenue per customer")
    grp_all = frame[by].astype(str)
    rev_known = rev.fillna(0.0).to_numpy("float64")[active]  # the revenue the population totals sum
    miss_rev = rev.isna() & active
    if miss_rev.any():
        rev = rev.fillna(rev.groupby(grp_all).transform("median")).fillna(rev.median())
        notes.append(f"{int(miss_rev.sum()):,} of today's customers have no {revenue}; their group's median "
                     "was used.")
    levels = sorted(grp_all[active].unique())
    g_code = pd.Categorical(grp_all[active], categories=levels).codes
    t0 = frame["duration"].to_numpy("float64")[active]
    t0_values, t0_index = np.unique(t0, return_inverse=True)
    rev_a = rev.to_numpy("float64")[active]
    n_groups = len(levels)
    scaler = None
    if population is not None:
        max_predicted = None  # the sample is the prediction set
        scaler = _PopulationScaler(population, levels, g_code, rev_known, sample_fraction, notes)
    exposures = []
    for _, _, expo in scenarios:
        if expo is None:
            exposures.append(1.0)
            continue
        e = pd.to_numeric(pd.Series(expo), errors="coerce").reindex(ids).fillna(0.0).to_numpy("float64")[active]
        if np.any(e < 0) or np.any(e > 1):
            raise ImpactInputError("has values outside 0..1", table="exposure",
                                   expected="the share of each customer's experience the change reaches")
        exposures.append(e)

    # the Cox set: customers with ratings (seeded sample above max_customers)
    cox_idx = np.flatnonzero(rated)
    if max_customers is not None and len(cox_idx) > max_customers:
        cox_idx = np.sort(rng.choice(cox_idx, size=int(max_customers), replace=False))
        notes.append(f"The Cox model was fitted on a random sample of {int(max_customers):,} customers with "
                     f"ratings (seed {seed}).")
    ev = frame["event"].to_numpy("float64")[cox_idx]
    if ev.sum() < min_events:
        raise CL.ChurnLinkError(f"only {int(ev.sum())} churn events among customers with {outcome} ratings; at "
                                f"least {min_events} are needed to estimate the satisfaction-churn link")
    if np.sum(k_all[cox_idx] >= 2) == 0:
        raise CL.ChurnLinkError(f"no customer has two or more {outcome} ratings, so the noise in a single rating "
                                "cannot be estimated and the satisfaction-churn link cannot be corrected")
    cd = CL.CoxData(frame["duration"].to_numpy("float64")[cox_idx], ev)
    Zc = Z_all[cox_idx]
    Zcs = cd.sort(Zc) if Zc.size else np.empty((len(cox_idx), 0))
    # today's customers: the prediction set (all of them for the point estimates; in the resamples a
    # stratified random sample when there are more than max_predicted, see _prediction_sets)
    a_idx = np.flatnonzero(active)
    full, sub, scale = _prediction_sets(a_idx, g_code, n_groups, max_predicted, rng)
    if sub is not None:
        notes.append(f"In the resamples, the chain's predictions were evaluated on a stratified random sample of "
                     f"{len(sub):,} of today's {len(full):,} customers (each resample's change from the "
                     "full-data fit, scaled up per group; the estimates themselves use everyone).")

    def prediction_set(rows_a: np.ndarray) -> dict:
        """The arrays of the customers ``rows_a`` (indices into today's customers) the prediction needs."""
        idx = a_idx[rows_a]
        t0v, t0i = np.unique(frame["duration"].to_numpy("float64")[idx], return_inverse=True)
        return {"Z": Z_all[idx], "k": k_all[idx], "w": w_all[idx], "rated": rated[idx], "t0_values": t0v,
                "t0_index": t0i, "t0": t0[rows_a], "rev": rev_a[rows_a], "groups": g_code[rows_a],
                "exposures": [e if np.ndim(e) == 0 else e[rows_a] for e in exposures]}

    P_full = prediction_set(full)
    P_sub = prediction_set(sub) if sub is not None else None

    def fit_links(f_all: np.ndarray, init=None, info=None):
        """Links 1-2 with customer weights ``f_all`` (1 = the data as they are): slopes, calibration, Cox."""
        coefs = _ols_from_crossproducts(cp_mat, f_all[has_cp], m) if any_attr else None
        slopes = [float(coefs[j]) if kind == "attribute" else float(kind == "direct")
                  for kind, j in zip(kinds, j_attrs)]
        fc = f_all[cox_idx]
        cal = CL.calibrate_ratings(k_all[cox_idx], w_all[cox_idx], ss_all[cox_idx], Zc, weights=fc,
                                   rating=outcome)
        x_cox = cal.predicted if corrected else w_all[cox_idx]
        X = np.column_stack([cd.sort(x_cox), Zcs])
        try:
            fit = CL.cox_efron(None, None, X, weights=cd.sort(fc), init=init, data=cd, sorted_input=True,
                               fixed_information=info, max_iter=30 if info is not None else 50)
        except CL.ChurnLinkError:
            if info is None:
                raise
            fit = CL.cox_efron(None, None, X, weights=cd.sort(fc), init=init, data=cd, sorted_input=True)
        return fit, slopes, cal

    def predict(fit, slopes, cal, P: dict, weights: np.ndarray | None = None):
        """Links 3-4 for the prediction set ``P``: per group kept and revenue as is, and per scenario their
        changes; the reference level per scenario (NaN for attribute/direct scenarios). ``weights``: per
        customer of ``P`` (a resample of a sample; None: 1)."""
        Za, k_a, w_a, rated_a = P["Z"], P["k"], P["w"], P["rated"]
        # calibrated satisfaction (covariates' mean for customers who never answered)
        prior = np.einsum("ij,j->i", np.column_stack([np.ones(len(k_a)), Za]), cal.alpha)
        if corrected:
            lam = np.where(rated_a, cal.reliability(np.where(rated_a, k_a, 1.0)), 0.0)
            x_a = prior + lam * (np.where(rated_a, w_a, prior) - prior)
        else:
            x_a = np.where(rated_a, w_a, prior)
        eta = fit.coef[0] * x_a + (np.einsum("ij,j->i", Za, fit.coef[1:]) if Za.size else 0.0)
        shifts, refs = [], []
        for kind, sl, (_, dl, _), ex in zip(kinds, slopes, scenarios, P["exposures"]):
            if kind != "reference":
                shifts.append(fit.coef[0] * sl * dl * ex)
                refs.append(np.nan)
                continue
            # raise to the reference: E[max(T, r)] - E[T] for T ~ N(x_a, v) (v = 0: naive)
            if dl != "median":
                ref = float(dl)
            else:
                ref = float(np.median(x_a)) if weights is None else _weighted_median(x_a, weights)
            if corrected:
                v = np.where(rated_a, cal.true_variance * (1 - lam), cal.true_variance)
            else:
                v = np.zeros(len(x_a))
            sd = np.sqrt(v)
            gap = ref - x_a
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(sd > 0, gap / np.where(sd > 0, sd, 1.0), 0.0)
            # the standard normal cdf and pdf as scipy.stats.norm computes them, without its per-call overhead
            gain = np.where(sd > 0, gap * special.ndtr(z) + sd * (np.exp(-z ** 2 / 2.0) / _SQRT_2PI),
                            np.maximum(gap, 0.0))
            shifts.append(fit.coef[0] * gain)
            refs.append(ref)
        # corrected: each customer's hazard spread by the leftover uncertainty about their satisfaction,
        # N(0, v) on the satisfaction scale with v = tau^2 (1 - lambda), mean-preserving (module docstring)
        if corrected and integrate:
            spread = np.sqrt(np.where(rated_a, cal.true_variance * (1 - lam), cal.true_variance)) * fit.coef[0]
            nodes = [(eta + spread * zk - spread ** 2 / 2, wk) for zk, wk in GAUSS_HERMITE_3]
        else:
            nodes = [(eta, 1.0)]
        kb = rb = 0.0
        dks = drs = None
        increments = _cumhaz_increments(fit, P["t0_values"], horizon)[P["t0_index"]]  # the same for every node
        for eta_k, wk in nodes:
            k_, r_, dk_, dr_ = _kept_and_revenue(fit, P["t0_values"], P["t0_index"], eta_k, shifts, P["rev"],
                                                 horizon, d_month, P["groups"], n_groups, weights, increments)
            kb, rb = kb + wk * k_, rb + wk * r_
            dks = [wk * d for d in dk_] if dks is None else [a + wk * d for a, d in zip(dks, dk_)]
            drs = [wk * d for d in dr_] if drs is None else [a + wk * d for a, d in zip(drs, dr_)]
        if scaler is not None:
            kb, rb, dks, drs = scaler.scale(kb, rb, dks, drs, weights)
        return kb, rb, dks, drs, refs

    n_all = len(ids)
    fit0, slopes0, cal0 = fit_links(np.ones(n_all))
    kb0, rb0, dks0, drs0, refs0 = predict(fit0, slopes0, cal0, P_full)
    if P_sub is not None:
        _, _, dks_s0, drs_s0, refs_s0 = predict(fit0, slopes0, cal0, P_sub)
    t_last = float(fit0.baseline_times[-1])
    if np.max(t0) + horizon > t_last:
        n_ext = int(np.sum(t0 + horizon > t_last))
        notes.append(f"For {n_ext:,} of today's customers the horizon reaches beyond the longest tenure with "
                     f"churn seen ({t_last:.0f} months); their baseline hazard there is the average of the last "
                     "12 months.")
    rows, failed, reasons = [[] for _ in scenarios], 0, []
    for _ in range(int(n_boot)):
        # a resample of customers: Multinomial(n, 1/n) counts, drawn as the counts of n uniform picks
        f = np.bincount(rng.integers(0, n_all, n_all), minlength=n_all).astype("float64")
        try:
            fit, slopes, cal = fit_links(f, init=fit0.coef, info=fit0.information)
            w_pred = scaler.weights(f[a_idx]) if scaler is not None else None
            _, _, dks, drs, refs = predict(fit, slopes, cal, P_sub if P_sub is not None else P_full, w_pred)
        except KitError as exc:
            failed += 1
            reasons.append(str(exc))
            if failed > 0.1 * n_boot:
                break
            continue
        if P_sub is not None:  # the full-data estimate plus the resample's change on the sample, scaled up
            dks = [d0 + scale * (d - s0) for d0, d, s0 in zip(dks0, dks, dks_s0)]
            drs = [d0 + scale * (d - s0) for d0, d, s0 in zip(drs0, drs, drs_s0)]
            refs = [r0 + (r - s0) for r0, r, s0 in zip(refs0, refs, refs_s0)]
        for i, (slope, dk, dr, ref) in enumerate(zip(slopes, dks, drs, refs)):
            rows[i].append([slope, fit.coef[0], *dk, *dr, dk.sum(), dr.sum(), ref])
    if failed > 0.1 * n_boot:
        raise ImpactError(f"{failed} of the first {failed + len(rows[0])} bootstrap resamples could not be fitted, "
                          f"so the interval would not be trustworthy; most often: "
                          f"{max(set(reasons), key=reasons.count)}")
    if failed:
        notes.append(f"{failed} of {n_boot} bootstrap resamples could not be fitted and were left out.")
    names = levels + ["all"]
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    counts = np.bincount(g_code, minlength=n_groups) if scaler is None else scaler.customers
    beta0 = float(fit0.coef[0])
    results = []
    for i_s, ((_, delta, _), kind) in enumerate(zip(scenarios, kinds)):
        slope0, dk0, dr0 = slopes0[i_s], dks0[i_s], drs0[i_s]
        boot = pd.DataFrame(rows[i_s], columns=["slope", "log_hr", *[f"extra_kept_{g}" for g in levels],
                                                *[f"extra_revenue_{g}" for g in levels], "extra_kept_all",
                                                "extra_revenue_all", "reference"])
        est_k = np.r_[dk0, dk0.sum()]
        est_r = np.r_[dr0, dr0.sum()]
        tab = []
        for i, g in enumerate(names):
            klo, khi = np.quantile(boot[f"extra_kept_{g}"], q)
            rlo, rhi = np.quantile(boot[f"extra_revenue_{g}"], q)
            tab.append({by: g, "customers": int(counts.sum() if g == "all" else counts[i]),
                        "kept": float(kb0.sum() if g == "all" else kb0[i]), "extra_kept": float(est_k[i]),
                        "extra_kept_low": klo, "extra_kept_high": khi,
                        "revenue": float(rb0.sum() if g == "all" else rb0[i]), "extra_revenue": float(est_r[i]),
                        "extra_revenue_low": rlo, "extra_revenue_high": rhi})
        b_slope, b_beta = boot["slope"].to_numpy(), boot["log_hr"].to_numpy()
        if kind == "reference":
            delta = 0.0
        links = pd.DataFrame([
            {"link": "attribute_to_csat_slope", "estimate": slope0, **dict(zip(("ci_low", "ci_high"),
                                                                                np.quantile(b_slope, q)))},
            {"link": "csat_change", "estimate": slope0 * delta,
             **dict(zip(("ci_low", "ci_high"), np.sort(np.quantile(b_slope * delta, q))))},
            {"link": "hazard_ratio_per_csat_point", "estimate": np.exp(beta0),
             **dict(zip(("ci_low", "ci_high"), np.exp(np.quantile(b_beta, q))))},
            {"link": "hazard_ratio_of_change", "estimate": float(np.exp(beta0 * slope0 * delta)),
             **dict(zip(("ci_low", "ci_high"), np.sort(np.exp(np.quantile(b_beta * b_slope * delta, q)))))},
        ])
        if kind == "direct":
            links = links[links["link"] != "attribute_to_csat_slope"].reset_index(drop=True)
        if kind == "reference":
            links = pd.DataFrame([
                {"link": "reference", "estimate": refs0[i_s], **dict(zip(("ci_low", "ci_high"),
                                                                   np.quantile(boot["reference"], q)))},
                {"link": "hazard_ratio_per_csat_point", "estimate": np.exp(beta0),
                 **dict(zip(("ci_low", "ci_high"), np.exp(np.quantile(b_beta, q))))}])
        results.append((pd.DataFrame(tab), links, boot))
    return results, notes


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` with ``weights``: the smallest value whose cumulative weight reaches half
    (the mean of the two middle values when it is exactly half, as ``np.median`` for equal weights)."""
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    half = cw[-1] / 2
    i = int(np.searchsorted(cw, half))
    if np.isclose(cw[i], half, rtol=1e-12, atol=0) and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2)
    return float(v[i])


class _PopulationScaler:
    """Sums over a sample's active customers per group -> population figures (:func:`_chain`, ``population``):
    customers kept x N_g / n_g(w), revenue x R_g / r_g(w) (ratio estimators, Cochran 1977, ch. 6), n_g(w) and
    r_g(w) the sample's (weighted) customers and monthly revenue in the group; when the sample is every
    customer the factors are 1 exactly. Groups of the population without a sampled customer cannot be
    predicted: they are named in the notes."""

    def __init__(self, population: pd.DataFrame, levels: list, groups: np.ndarray, revenue_known: np.ndarray,
                 fraction: float, notes: list):
        pop = population.copy()
        pop.index = pop.index.astype(str)
        missing = [g for g in pop.index if g not in set(levels)]
        if missing:
            lost = int(pop.loc[missing, "customers"].sum())
            notes.append(f"{lost:,} of today's {int(pop['customers'].sum()):,} customers are in groups without a "
                         "customer in the sample and are not in these figures.")
        n_g = np.bincount(groups, minlength=len(levels)).astype("float64")
        pop = pop.reindex(levels)
        self.customers = pop["customers"].fillna(pd.Series(n_g, index=levels)).to_numpy("int64")
        self.revenue = pop["revenue"].fillna(0.0).to_numpy("float64")
        self.groups, self.revenue_known, self.n_groups = groups, revenue_known, len(levels)
        self.all = fraction >= 1.0
        self.c = 0.0 if self.all else float(np.sqrt(max(0.0, 1.0 - fraction)))

    def weights(self, counts: np.ndarray) -> np.ndarray | None:
        """Prediction weights of a resample (its counts of the sample's active customers): 1 - c + c f."""
        return None if self.c == 0 else (1.0 - self.c) + self.c * counts

    def scale(self, kb, rb, dks, drs, weights: np.ndarray | None):
        if self.all:
            return kb, rb, dks, drs
        w = np.ones(len(self.groups)) if weights is None else weights
        n_w = np.bincount(self.groups, w, self.n_groups)
        r_w = np.bincount(self.groups, w * self.revenue_known, self.n_groups)
        sk = np.divide(self.customers, n_w, out=np.zeros(self.n_groups), where=n_w > 0)
        sr = np.divide(self.revenue, r_w, out=sk.copy(), where=r_w > 0)
        return kb * sk, rb * sr, [d * sk for d in dks], [d * sr for d in drs]


# ----------------------------------------------------------------------------------------------------
# Revenue at risk
# ----------------------------------------------------------------------------------------------------

@dataclass
class RevenueAtRiskResult:
    """Expected revenue over the horizon lost to dissatisfaction relative to a reference level. ``table``: one
    row per group of ``by`` and ``all``: ``customers`` (active), ``kept`` and ``revenue`` (expected, as is),
    ``customers_at_risk`` (customers who would still be there after the horizon if everyone below the
    reference were at it) and ``revenue_at_risk`` (discounted), each with ``_low``/``_high``. ``reference``:
    the reference satisfaction (CSAT points) with interval."""

    table: pd.DataFrame
    links: pd.DataFrame
    boot: pd.DataFrame
    reference: tuple[float, float, float]
    reference_rule: str
    horizon: int
    level: float
    corrected: bool
    currency: str
    annual_discount_rate: float
    n_boot: int
    by: str
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        """One sentence: revenue at risk over the horizon with its interval, and what kind of claim it is."""
        a = self.table.set_index(self.by).loc["all"]
        return (f"{fmt_currency(a['revenue_at_risk'], self.currency)} of revenue over the next {self.horizon} "
                f"months ({self.level:.0%} CI {fmt_currency(a['revenue_at_risk_low'], self.currency)} to "
                f"{fmt_currency(a['revenue_at_risk_high'], self.currency)}) goes with customers below "
                f"{self.reference_rule} satisfaction: an association under stated assumptions, not the result of "
                "a controlled experiment.")

    def summary(self) -> str:
        tab = self.table.set_index(self.by)
        allrow = tab.loc["all"]
        ref, rlo, rhi = self.reference
        cur, lvl = self.currency, f"{self.level:.0%}"
        groups = tab.drop(index="all").sort_values("revenue_at_risk", ascending=False)
        top = groups.index[0] if len(groups) else None
        dr = interval_decimals(rlo, rhi, least=2)
        text = (f"If every customer below {self.reference_rule} satisfaction ({ref:.{dr}f} CSAT points, {lvl} CI "
                f"{fmt_interval(rlo, rhi, dr)}) were at that level, about "
                f"{fmt_number(allrow['customers_at_risk'])} more of today's {fmt_number(allrow['customers'])} "
                f"customers would still be customers after {self.horizon} months "
                f"({fmt_interval(allrow['customers_at_risk_low'], allrow['customers_at_risk_high'], 0)}): "
                f"{fmt_currency(allrow['revenue_at_risk'], cur)} of revenue over those months is at risk from "
                f"dissatisfaction ({fmt_currency(allrow['revenue_at_risk_low'], cur)} to "
                f"{fmt_currency(allrow['revenue_at_risk_high'], cur)}, discounted at "
                f"{self.annual_discount_rate:.0%} a year)")
        if top is not None and len(groups) > 1:
            text += (f"; the most is in {column_label(self.by).lower()} {top} "
                     f"({fmt_currency(groups.loc[top, 'revenue_at_risk'], cur)}, "
                     f"{fmt_currency(groups.loc[top, 'revenue_at_risk_low'], cur)} to "
                     f"{fmt_currency(groups.loc[top, 'revenue_at_risk_high'], cur)})")
        text += ". "
        if not self.corrected:
            text += "The satisfaction-churn link was NOT corrected for rating noise (naive). "
        text += ("This is an association under stated assumptions (rating noise is random, proportional hazards), "
                 "not the result of a controlled experiment.")
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


def revenue_at_risk(customers: pd.DataFrame, responses: pd.DataFrame | None, *, reference: float | str = "median",
                    horizon: int = 12, as_of: object = None, covariates: Sequence[str] = ("segment",),
                    by: str = "segment", outcome: str = "csat", revenue: str = "monthly_revenue",
                    annual_discount_rate: float = 0.10, corrected: bool = True, n_boot: int = 200,
                    level: float = 0.95, seed: int = 0, max_customers: int | None = 200_000,
                    min_events: int = 20, currency: str | None = None,
                    ratings: pd.DataFrame | None = None,
                    max_predicted: int | None = 100_000, integrate: bool = True) -> RevenueAtRiskResult:
    """Expected revenue over ``horizon`` months lost to dissatisfaction, relative to every customer below the
    ``reference`` satisfaction being at it (``"median"``: the median calibrated satisfaction of today's
    customers, re-estimated in every resample; or a number on the CSAT scale), per group of ``by`` (a
    segment, or e.g. each customer's main department merged into ``customers``).

    Links 2-4 of :func:`what_if` with a per-customer shift instead of link 1: a customer's true satisfaction
    T given their ratings is taken as N(E[T | ratings], tau^2 (1 - lambda(k))) (the calibration model;
    tau^2 for a customer without ratings), and the regression-calibration substitute of max(T, r) is its
    expectation, E[max(T, r)] = m + (r - m) Phi(z) + s phi(z), z = (r - m) / s; the hazard is multiplied by
    exp(beta (E[max(T, r)] - m)). Intervals: the same joint customer bootstrap.
    """
    if not (reference == "median" or (isinstance(reference, (int, float)) and np.isfinite(reference))):
        raise ImpactInputError(f"reference {shorten(reference)} is neither 'median' nor a number",
                               table="parameters", expected="'median' or a satisfaction level such as 4.2")
    with _one_blas_thread():
        [(table, links, boot)], notes = _chain(
            customers, responses, [(None, reference, None)], horizon=horizon, as_of=as_of, covariates=covariates,
            by=by, outcome=outcome, attributes=None, revenue=revenue, annual_discount_rate=annual_discount_rate,
            corrected=corrected, n_boot=n_boot, level=level, seed=seed, max_customers=max_customers,
            min_events=min_events, ratings=ratings, crossproducts=None, max_predicted=max_predicted,
            integrate=integrate)
    table = table.rename(columns={c: c.replace("extra_kept", "customers_at_risk").replace("extra_revenue",
                                                                                        "revenue_at_risk")
                                  for c in table.columns})
    row = links.set_index("link").loc["reference"]
    return RevenueAtRiskResult(table=table, links=links, boot=boot,
                               reference=(float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])),
                               reference_rule=("the median" if reference == "median"
                                               else f"a reference of {reference}"),
                               horizon=int(horizon), level=level, corrected=corrected,
                               currency=resolve_currency(currency),
                               annual_discount_rate=annual_discount_rate, n_boot=len(boot), by=by, notes=notes)
