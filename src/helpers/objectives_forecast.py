"""A calendar-aware forecast of an objective's window aggregate, and the probability of meeting its target.

Pure functions on a KPI series per period (``period``, ``value``, ``ci_low``, ``ci_high``, ``n``); used by
:mod:`helpers.objectives`. No files, no params.

Scale (:func:`kpi_scale`)
    The model works on a scale where the KPI is unbounded, so forecasts and intervals respect its bounds:
    the logit of ``(x - lo) / (hi - lo)`` for bounded KPIs (percentages, NPS, CES), the log for KPIs bounded
    below only (hours, counts per day), the identity otherwise. Proportions are squeezed as in the
    empirical logit, ``(k + 1/2) / (n + 1)``, whose sampling variance is ``1/(k + 1/2) + 1/(n - k + 1/2)``
    (Cox & Snell, *Analysis of Binary Data*, 2nd ed., 1989, sec. 3.2); so six months of 3/3 = 100% carry a
    large variance, not zero. Other KPIs take their sampling variance from the period's 95% interval,
    ``((g(hi) - g(lo)) / (2 * 1.96))^2`` on the model scale ``g`` (a Poisson count: ``1 / (count + 1/2)``).

Model (:class:`StructuralModel`, a statsmodels ``MLEModel``)
    A structural time-series model (Harvey, *Forecasting, Structural Time Series Models and the Kalman
    Filter*, 1989; Durbin & Koopman, *Time Series Analysis by State Space Methods*, 2nd ed., 2012, ch. 3) on
    the regular grid of periods (missing periods are missing observations)::

        y_t = mu_t + gamma_t + a_t + e_t,   e_t ~ N(0, sigma2_irregular + v_t)

    with ``v_t`` the *known* sampling variance of period ``t`` (from its n, see above), ``mu_t`` a level
    (random walk), a local linear trend (level and slope both random walks) or a deterministic linear
    trend, ``gamma_t`` an optional fixed calendar effect (dummy seasonal, 12 months or 4 quarters) and
    ``a_t`` an optional stationary AR(1). Parameters by maximum likelihood (Kalman filter; diffuse initial
    level/trend/seasonal, stationary AR; BFGS with forward differences, the likelihood evaluated on statsmodels'
    compiled filter directly, :data:`FIT_PATH`).

Candidates and averaging (:func:`select_model`)
    ``local level``; ``local linear trend`` (the recent pace continues, and may change); ``linear trend``;
    ``linear trend + AR(1)``; and, with at least three years of history (36 months, 12 quarters),
    ``local level + calendar`` and ``linear trend + AR(1) + calendar``. Each is fitted on the history minus
    its last ``h`` periods (``h = min(6, n // 3)`` months, at least 1; a whole year when a calendar effect is
    a candidate, so it must predict a year it has not seen) and scored by the mean Gaussian log predictive
    density of those held-out periods (sampling error included). The forecast averages the candidates,
    refitted on the whole history, with weights proportional to their held-out predictive likelihood
    ``exp(-h * score)``: a clearly better model takes (nearly) all the weight, close ones share it, which
    carries the uncertainty of the choice into the interval. With fewer than 6 periods there is no model:
    the last value is carried forward with its sampling error only, and the result says so (``method``
    starts with ``"no change"``).

Window aggregate and P(met) (:func:`forecast_window`)
    The objective's window (e.g. the deadline's quarter) is the n-weighted mean, on the model scale, of the
    periods it contains: those already observed enter with their observed values, the others with the
    forecast's joint distribution (``Cov(Z a_i, Z a_j) = Z T^(j-i) P_i Z'``) plus each future period's
    irregular and sampling variance at the recent n per period (:func:`future_sampling`: the
    per-observation variance over the mean n of the last three periods). That gives a normal distribution
    ``N(m, s^2)`` on the model scale; the prediction interval is its back-transformed quantiles and
    ``P(met) = P(window value past the target)`` = ``Phi((m - g(target)) / s)`` for a KPI to raise,
    ``1 - Phi(...)`` to lower. The calibration of these intervals and probabilities is measured by
    :mod:`helpers.objectives_backtest`.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from statsmodels.tsa.statespace.initialization import Initialization
from statsmodels.tsa.statespace.mlemodel import MLEModel

Z95 = float(stats.norm.ppf(0.975))
MIN_MODEL_PERIODS = 6
"""Fewer periods of history than this: no model, the last value carried forward (said so)."""
SEASONAL_MIN_CYCLES = 3
"""A calendar effect is a candidate only with at least this many years of history (two to fit on, the
last year held out, so a calendar effect has to predict a whole year it has not seen to be chosen)."""
FREQ_PERIODS = {"month": 12, "quarter": 4}
PROPORTION_UNITS = ("%",)


# --------------------------------------------------------------------------------------------- scales
@dataclass(frozen=True)
class Scale:
    """The model scale of a KPI: ``logit`` on its bounds, ``log`` above its lower bound, or ``identity``."""

    kind: str
    lo: float = 0.0
    hi: float = 1.0
    proportion: bool = False  # a share of n (empirical-logit variance)

    def forward(self, x, n=None):
        x = np.asarray(x, dtype=float)
        if self.kind == "logit":
            q = (x - self.lo) / (self.hi - self.lo)
            n = np.asarray(np.inf if n is None else n, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.where(np.isfinite(n) & (n > 0), (q * n + 0.5) / (n + 1), np.clip(q, 1e-6, 1 - 1e-6))
            q = np.clip(q, 1e-9, 1 - 1e-9)
            return np.log(q / (1 - q))
        if self.kind == "log":
            return np.log(np.maximum(x - self.lo, 1e-6))
        return x

    def inverse(self, y):
        y = np.asarray(y, dtype=float)
        if self.kind == "logit":
            return self.lo + (self.hi - self.lo) * special.expit(y)  # = stats.logistic.cdf, bit for bit
        if self.kind == "log":
            return self.lo + np.exp(y)
        return y

    def target(self, value: float) -> float:
        """A target on the model scale (a target at a bound maps to -inf/+inf)."""
        if self.kind == "logit":
            q = (value - self.lo) / (self.hi - self.lo)
            if q <= 0:
                return -math.inf
            if q >= 1:
                return math.inf
            return math.log(q / (1 - q))
        if self.kind == "log":
            return math.log(value - self.lo) if value > self.lo else -math.inf
        return float(value)

    def sampling_variance(self, value, ci_low, ci_high, n):
        """Each period's sampling variance on this scale (module docstring)."""
        value, lo, hi, n = (np.asarray(a, dtype=float) for a in (value, ci_low, ci_high, n))
        if self.proportion:
            k = (value - self.lo) / (self.hi - self.lo) * n
            with np.errstate(divide="ignore", invalid="ignore"):
                var = 1 / (k + 0.5) + 1 / (n - k + 0.5)
            return np.where(n > 0, var, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = ((self.forward(hi, n) - self.forward(lo, n)) / (2 * Z95)) ** 2
        return var


def kpi_scale(unit: str, bounds, kind: str = "") -> Scale:
    """The model scale for a KPI with ``unit`` and ``bounds`` (``helpers.kpis.KPIS``)."""
    lo, hi = bounds if bounds else (None, None)
    finite = (lambda v: v is not None and np.isfinite(v))
    if finite(lo) and finite(hi):
        return Scale("logit", float(lo), float(hi), proportion=unit in PROPORTION_UNITS and kind != "nps")
    if finite(lo):
        return Scale("log", float(lo), math.inf)
    return Scale("identity", -math.inf, math.inf)


# --------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Spec:
    """One candidate model: a level (random walk) or deterministic trend, optional AR(1), optional calendar."""

    name: str
    level: str  # "random walk" | "local linear trend" | "trend"
    ar: bool = False
    seasonal: bool = False


CANDIDATES = (Spec("local level", "random walk"), Spec("local linear trend", "local linear trend"),
              Spec("linear trend", "trend"),
              Spec("linear trend + AR(1)", "trend", ar=True),
              Spec("local level + calendar", "random walk", seasonal=True),
              Spec("linear trend + AR(1) + calendar", "trend", ar=True, seasonal=True))


class StructuralModel(MLEModel):
    """The structural model of the module docstring with known, time-varying sampling variances."""

    def __init__(self, endog, sampling_var, spec: Spec, period: int = 12):
        endog = np.asarray(endog, dtype=float)
        self.spec, self.period = spec, period
        trend = spec.level in ("trend", "local linear trend")
        walk = spec.level in ("random walk", "local linear trend")
        self._slope_walk = slope_walk = spec.level == "local linear trend"
        k_season = period - 1 if spec.seasonal else 0
        k_states = 1 + int(trend) + int(spec.ar) + k_season
        k_posdef = max(int(walk) + int(slope_walk) + int(spec.ar), 1)
        super().__init__(endog, k_states=k_states, k_posdef=k_posdef)
        self._v = np.nan_to_num(np.asarray(sampling_var, dtype=float), nan=0.0)
        design = np.zeros((1, k_states))
        transition = np.zeros((k_states, k_states))
        selection = np.zeros((k_states, k_posdef))
        design[0, 0] = 1.0
        transition[0, 0] = 1.0
        i, shock = 1, 0
        if walk:
            selection[0, shock] = 1.0
            shock += 1
        if trend:
            transition[0, i] = 1.0
            transition[i, i] = 1.0
            if slope_walk:
                selection[i, shock] = 1.0
                shock += 1
            i += 1
        self._ar_index = None
        if spec.ar:
            design[0, i] = 1.0
            selection[i, shock] = 1.0
            self._ar_index = i
            i += 1
        if k_season:
            design[0, i] = 1.0
            transition[i, i:i + k_season] = -1.0
            for j in range(1, k_season):
                transition[i + j, i + j - 1] = 1.0
        self["design"] = design
        self["transition"] = transition
        self["selection"] = selection
        self["obs_cov"] = np.zeros((1, 1, self.nobs))
        self["state_cov"] = np.zeros((k_posdef, k_posdef))
        init = Initialization(k_states)
        if self._ar_index is None:
            init.set(None, "diffuse")
        else:
            a = self._ar_index
            init.set((0, a), "diffuse")
            init.set((a, a + 1), "stationary")
            if a + 1 < k_states:
                init.set((a + 1, k_states), "diffuse")
        self.ssm.initialization = init

    @property
    def param_names(self):
        names = ["sigma2.irregular"]
        if self.spec.level != "trend":
            names.append("sigma2.level")
        if self._slope_walk:
            names.append("sigma2.slope")
        if self.spec.ar:
            names += ["ar.phi", "sigma2.ar"]
        return names

    @property
    def start_params(self):
        y = self.endog[:, 0] if self.endog.ndim > 1 else self.endog
        d = np.diff(y[np.isfinite(y)])
        var = float(np.nanvar(d)) / 2 if d.size > 1 else 0.1
        var = max(var - float(np.mean(self._v)), 1e-4)
        out = [var]
        if self.spec.level != "trend":
            out.append(var / 4)
        if self._slope_walk:
            out.append(var / 100)
        if self.spec.ar:
            out += [0.3, var]
        return np.array(out)

    def transform_params(self, unconstrained):
        p = np.array(unconstrained, dtype=float) ** 2
        if self.spec.ar:
            k = len(p) - 2
            p[k] = np.tanh(unconstrained[k]) * 0.98
        return p

    def untransform_params(self, constrained):
        p = np.sqrt(np.abs(np.array(constrained, dtype=float)))
        if self.spec.ar:
            k = len(p) - 2
            p[k] = np.arctanh(np.clip(constrained[k] / 0.98, -0.999, 0.999))
        return p

    def update(self, params, **kwargs):
        params = super().update(params, **kwargs)
        self["obs_cov"] = (params[0] + self._v)[None, None, :]
        shocks = []
        j = 1
        if self.spec.level != "trend":
            shocks.append(params[j])
            j += 1
        if self._slope_walk:
            shocks.append(params[j])
            j += 1
        if self.spec.ar:
            self["transition", self._ar_index, self._ar_index] = params[j]
            shocks.append(params[j + 1])
        if not shocks:
            shocks = [0.0]
        self["state_cov"] = np.diag(shocks)
        return params


@dataclass
class FittedModel:
    """A fitted candidate: the spec, its parameters and the state at the last period."""

    spec: Spec
    params: np.ndarray
    state: np.ndarray
    state_cov: np.ndarray
    transition: np.ndarray
    design: np.ndarray
    shock_cov: np.ndarray
    sigma2_irregular: float
    loglike: float

    def paths(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the signal ``Z a_{T+1..T+h}`` (without irregular and sampling noise)."""
        T, Z, RQR = self.transition, self.design[0], self.shock_cov
        a, P = self.state.copy(), self.state_cov.copy()
        means, covs, states = np.zeros(horizon), [], []
        for h in range(horizon):
            a = T @ a
            P = T @ P @ T.T + RQR
            means[h] = float(Z @ a)
            states.append(P.copy())
        cov = np.zeros((horizon, horizon))
        for i in range(horizon):
            M = states[i]
            for j in range(i, horizon):
                c = float(Z @ M @ Z)
                cov[i, j] = cov[j, i] = c
                M = T @ M
        return means, cov


FIT_CACHE_SIZE = 512
"""Fits kept per process (:func:`fit_model`): a report fits the same history again (objectives on one series,
the backtest's origins), and a fit is a pure function of its inputs."""
_fit_cache: OrderedDict = OrderedDict()


def fit_model(y: np.ndarray, v: np.ndarray, spec: Spec, period: int = 12,
              start_params=None) -> FittedModel | None:
    """Maximum-likelihood fit of one candidate; ``None`` when it does not converge to finite values.

    Deterministic in its inputs, so a fit of the very same ``y``, ``v``, spec, period and start is taken from
    a small per-process cache (the same object: callers only read it)."""
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    start = None if start_params is None else np.asarray(start_params, dtype=float)
    key = (y.tobytes(), v.tobytes(), spec, int(period), None if start is None else start.tobytes(), FIT_PATH)
    if key in _fit_cache:
        _fit_cache.move_to_end(key)
        return _fit_cache[key]
    fitted = _fit_model(y, v, spec, period, start)
    _fit_cache[key] = fitted
    while len(_fit_cache) > FIT_CACHE_SIZE:
        _fit_cache.popitem(last=False)
    return fitted


def _fit_model(y: np.ndarray, v: np.ndarray, spec: Spec, period: int = 12,
               start_params=None) -> FittedModel | None:
    model = StructuralModel(y, v, spec, period)
    reference = FIT_PATH == "statsmodels"
    likelihood = None if reference else _FilterLikelihood.bind(model)
    loglike = (lambda u: model.loglike(u, transformed=False)) if likelihood is None else likelihood
    memo: dict = {}

    def objective(u):
        key = u.tobytes()
        if key not in memo:
            if len(memo) > 16:
                memo.clear()
            ll = loglike(u)
            memo[key] = -ll if np.isfinite(ll) else 1e12
        return memo[key]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            start = model.untransform_params(model.start_params) if start_params is None else \
                model.untransform_params(start_params)
            options = {"gtol": 1e-4, "maxiter": 80}
            if reference:  # scipy's own finite differences
                opt = optimize.minimize(objective, start, method="BFGS", options=options)
            else:  # the same differences, each step's f(x) reused (_forward_gradient)
                opt = optimize.minimize(objective, start, jac=lambda u: _forward_gradient(objective, u),
                                        method="BFGS", options=options)
            params = model.transform_params(opt.x)
            if likelihood is None:
                res = model.filter(params, cov_type="none")
                loglike_at = float(res.llf)
                # the state after the last observation: filtered state and its covariance at T
                state = np.asarray(res.filter_results.filtered_state[:, -1], dtype=float)
                state_cov = np.asarray(res.filter_results.filtered_state_cov[:, :, -1], dtype=float)
            else:  # the same filter at the optimum (the results object of model.filter is not needed)
                loglike_at, state, state_cov = likelihood.final_state(opt.x)
                model.update(params)
        except (np.linalg.LinAlgError, ValueError):
            return None
    if not np.all(np.isfinite(params)) or not np.isfinite(loglike_at):
        return None
    if not (np.all(np.isfinite(state)) and np.all(np.isfinite(state_cov))):
        return None
    R = model["selection"]
    Q = model["state_cov"]
    return FittedModel(spec, np.asarray(params, dtype=float), state, state_cov, np.array(model["transition"]),
                       np.array(model["design"]), R @ Q @ R.T, float(params[0]), loglike_at)


FIT_PATH = "filter"
"""How :func:`fit_model` evaluates the likelihood: ``"filter"`` (default) runs statsmodels' compiled Kalman filter
directly (:class:`_FilterLikelihood`) with the forward differences of :func:`_forward_gradient`; ``"statsmodels"``
is the plain ``MLEModel.loglike`` with scipy's finite differences (the reference the tests and
``bench/bench_objectives.py`` compare with). Both give the same likelihood values, steps and fits (bit for bit on
statsmodels 0.15 / scipy 1.17); the first in about half the CPU time."""

_EPS_STEP = math.sqrt(np.finfo(float).eps)


def _forward_gradient(objective, u: np.ndarray) -> np.ndarray:
    """Forward-difference gradient ``(f(u + h e_i) - f(u)) / h`` with scipy's BFGS default step (the absolute
    ``h = sqrt(machine eps)``; a relative one where ``u + h == u``), as ``scipy.optimize._numdiff``'s
    ``approx_derivative(method="2-point", abs_step=h)`` computes it, minus its per-call overhead; ``f(u)`` comes
    from ``objective``'s memo (BFGS has just evaluated it)."""
    u = np.asarray(u, dtype=float)
    f0 = objective(u)
    h = np.full(u.shape, _EPS_STEP)
    sign = (u >= 0).astype(float) * 2 - 1
    h = np.where((u + h) - u == 0, _EPS_STEP * sign * np.maximum(1.0, np.abs(u)), h)
    grad = np.empty(u.size)
    for i in range(u.size):
        shifted = u.copy()
        shifted[i] = u[i] + h[i]
        grad[i] = (objective(shifted) - f0) / ((u[i] + h[i]) - u[i])
    return grad


class _FilterLikelihood:
    """``model.loglike(u, transformed=False)`` of a :class:`StructuralModel` evaluated on statsmodels' compiled
    Kalman filter directly: the parameters are written into the filter's own copies of the system matrices and
    the filter rerun, skipping ``MLEModel``'s per-call bookkeeping (parameter handling, ``update`` through
    ``__setitem__``, copying every matrix into the representation and re-checking the filter; about half the
    time of a call on these small models). The same compiled filter on the same numbers, so the same value.

    :meth:`bind` checks that on the model's start values and returns ``None`` (use ``model.loglike``) if the
    values differ or statsmodels' internals are not as expected."""

    def __init__(self, model: StructuralModel):
        self.model = model
        ssm = model.ssm
        prefix = ssm.prefix
        self._statespace = ssm._statespaces[prefix]
        self._filter = ssm._kalman_filters[prefix]
        matrices = ssm._representations[prefix]
        self._obs_cov, self._state_cov = matrices["obs_cov"], matrices["state_cov"]
        self._transition = matrices["transition"]
        self._initialization = ssm.initialization
        spec = model.spec
        self._n_walks = int(spec.level != "trend") + int(model._slope_walk)
        self._ar = model._ar_index

    @classmethod
    def bind(cls, model: StructuralModel) -> _FilterLikelihood | None:
        try:
            u = model.untransform_params(model.start_params)
            expected = model.loglike(u, transformed=False)  # also builds the filter for likelihood evaluation
            likelihood = cls(model)
            value = likelihood(u)
            if value == expected or not (np.isfinite(expected) or np.isfinite(value)):
                return likelihood
        except (AttributeError, KeyError, TypeError, np.linalg.LinAlgError, ValueError):
            pass
        return None

    def __call__(self, u: np.ndarray) -> float:
        params = self.model.transform_params(u)  # as StructuralModel.update sets them
        self._obs_cov[0, 0, :] = params[0] + self.model._v
        shocks = list(params[1:1 + self._n_walks])
        if self._ar is not None:
            j = 1 + self._n_walks
            self._transition[self._ar, self._ar, 0] = params[j]
            shocks.append(params[j + 1])
        self._state_cov[:, :, 0] = np.diag(shocks or [0.0])
        self._statespace.initialize(self._initialization, complex_step=False)
        self._filter()
        return np.sum(self._filter.loglikelihood)

    def final_state(self, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The log-likelihood at ``u`` and the filtered state and its covariance after the last period (what
        ``model.filter(...).filter_results.filtered_state[:, -1]`` holds: the filter keeps the latest state in
        both columns of its memory-saving arrays)."""
        loglike = float(self(u))
        state = np.array(np.asarray(self._filter.filtered_state)[:, -1], dtype=float)
        state_cov = np.array(np.asarray(self._filter.filtered_state_cov)[:, :, -1], dtype=float)
        return loglike, state, state_cov


def _holdout_score(y, v, spec, period, h) -> tuple[float, np.ndarray | None]:
    fitted = fit_model(y[:-h], v[:-h], spec, period)
    if fitted is None:
        return math.inf, None
    mean, cov = fitted.paths(h)
    var = np.diag(cov) + fitted.sigma2_irregular + v[-h:]
    obs = np.isfinite(y[-h:])
    if not obs.any():
        return math.inf, fitted.params
    return float(-np.mean(stats.norm.logpdf(y[-h:][obs], mean[obs], np.sqrt(var[obs])))), fitted.params


MIN_WEIGHT = 0.02
"""Candidates with less held-out weight than this are left out of the average (not refitted)."""


@dataclass
class Ensemble:
    """Fitted candidates with their held-out weights (summing to 1), best first."""

    members: list[tuple[float, FittedModel]]

    @property
    def name(self) -> str:
        """The leading model, and how many others share the weight (``detail`` lists them all)."""
        lead = self.members[0][1].spec.name
        others = len(self.members) - 1
        if not others:
            return lead
        return f"mostly {lead} ({self.members[0][0]:.0%}), averaged with {others} other model{'s' * (others > 1)}"

    @property
    def detail(self) -> str:
        return ", ".join(f"{m.spec.name} {w:.0%}" for w, m in self.members)


def select_model(y: np.ndarray, v: np.ndarray, period: int = 12,
                 candidates=CANDIDATES) -> tuple[Ensemble | None, pd.DataFrame]:
    """Weigh ``candidates`` on held-out periods (module docstring) and refit them on all of ``y``.

    Each candidate's weight is proportional to its held-out predictive likelihood, ``exp(-h * score)``
    (``score`` = mean negative log predictive density of the ``h`` held-out periods), so a clearly better
    model takes (nearly) all the weight and close ones are averaged, which carries the uncertainty of the
    choice into the forecast (predictive-likelihood weights; cf. Eklund & Karlsson, *Econometric Reviews*
    2007). Returns the :class:`Ensemble` (``None`` with fewer than :data:`MIN_MODEL_PERIODS` observed periods)
    and a table of candidates with their scores and weights.
    """
    n_obs = int(np.isfinite(y).sum())
    if n_obs < MIN_MODEL_PERIODS:
        return None, pd.DataFrame(columns=["model", "holdout_score", "weight"])
    seasonal = n_obs >= SEASONAL_MIN_CYCLES * period
    h = period if seasonal else max(1, min(period // 2, n_obs // 3))
    rows = []
    for spec in candidates:
        if spec.seasonal and not seasonal:
            continue
        if spec.ar and n_obs < 10:
            continue
        score, params = _holdout_score(y, v, spec, period, h)
        rows.append({"model": spec.name, "holdout_score": score, "spec": spec, "params": params})
    table = pd.DataFrame(rows)
    scores = table["holdout_score"].to_numpy(dtype=float)
    if not np.isfinite(scores).any():
        weights = np.full(len(scores), 1.0 / len(scores))
    else:
        loglik = np.where(np.isfinite(scores), -h * scores, -np.inf)
        weights = np.exp(loglik - np.max(loglik))
        weights /= weights.sum()
    table["weight"] = weights
    members = []
    for i in np.argsort(-weights, kind="stable"):
        if weights[i] < MIN_WEIGHT and members:
            continue
        fitted = fit_model(y, v, table["spec"].iloc[i], period, start_params=table["params"].iloc[i])
        if fitted is not None:
            members.append((float(weights[i]), fitted))
    table = table.drop(columns=["spec", "params"])
    if not members:
        return None, table
    total = sum(w for w, _ in members)
    return Ensemble([(w / total, m) for w, m in members]), table


# --------------------------------------------------------------------------------------------- forecasts
@dataclass(frozen=True)
class WindowForecast:
    """The forecast of an objective's window aggregate: point, interval, P(met), how it was made."""

    window_start: pd.Timestamp
    window_end: pd.Timestamp
    value: float
    low: float
    high: float
    level: float
    mean_model: float  # on the model scale
    sd_model: float
    method: str
    n_points: int
    p_met: float = float("nan")
    path: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    components: tuple = ()  # (weight, mean, sd) of each model on the model scale

    def probability(self, target: float, direction: str, scale: Scale) -> float:
        """P(window value past ``target``) under the forecast distribution."""
        if self.components:
            return mixture_prob_met(self.components, target, direction, scale)
        return prob_met(self.mean_model, self.sd_model, target, direction, scale)


def mixture_prob_met(components, target: float, direction: str, scale: Scale) -> float:
    """P(met) under a mixture of normals on the model scale: the weighted sum of each component's."""
    return float(sum(w * prob_met(m, sd, target, direction, scale) for w, m, sd in components))


def mixture_moments(components) -> tuple[float, float]:
    """Mean and standard deviation of a mixture of normals ``(weight, mean, sd)``."""
    mean = sum(w * m for w, m, _ in components)
    var = sum(w * (sd ** 2 + m ** 2) for w, m, sd in components) - mean ** 2
    return float(mean), math.sqrt(max(var, 0.0))


def mixture_quantile(components, q: float) -> float:
    """The ``q`` quantile of a mixture of normals (root of its CDF; exact for one component)."""
    if len(components) == 1 or all(sd == components[0][2] and m == components[0][1] for _, m, sd in components):
        _, m, sd = components[0]
        return float(m + sd * special.ndtri(q)) if sd > 0 else float(m)  # ndtri = stats.norm.ppf
    lo = min(m - 10 * max(sd, 1e-9) for _, m, sd in components)
    hi = max(m + 10 * max(sd, 1e-9) for _, m, sd in components)

    weights = [w for w, _, _ in components]
    means = np.array([m for _, m, _ in components], dtype=float)
    sds = np.array([sd for _, _, sd in components], dtype=float)
    spread = sds > 0
    safe_sds = np.where(spread, sds, 1.0)

    def cdf(x):
        # stats.norm.cdf is special.ndtr; one vectorised call per evaluation, summed in the same order
        phi = np.where(spread, special.ndtr((x - means) / safe_sds), (x >= means).astype(float)).tolist()
        return sum(w * c for w, c in zip(weights, phi)) - q

    return float(optimize.brentq(cdf, lo, hi, xtol=1e-10))


def prob_met(mean: float, sd: float, target: float, direction: str, scale: Scale) -> float:
    """``P(X >= target)`` (raise) or ``P(X <= target)`` (lower) for ``g(X) ~ N(mean, sd^2)``."""
    t = scale.target(target)
    if not np.isfinite(mean):
        return float("nan")
    if sd <= 0 or not np.isfinite(sd):
        above = mean >= t
        return float(above if direction == "raise" else mean <= t)
    p_above = float(special.ndtr(-((t - mean) / sd))) if np.isfinite(t) else float(t < 0)  # = stats.norm.sf
    return p_above if direction == "raise" else 1.0 - p_above


def regular_grid(series: pd.DataFrame, freq: str, scale: Scale, per_day: bool = False) -> pd.DataFrame:
    """The series on a complete grid of periods (missing periods as NaN) with model-scale values ``y`` and
    sampling variances ``v``. ``per_day``: values are counts, modelled as counts per day."""
    s = series.sort_values("period")
    step = "MS" if freq == "month" else "QS"
    grid = pd.date_range(s["period"].iloc[0], s["period"].iloc[-1], freq=step)
    s = s.set_index("period").reindex(grid)
    s.index.name = "period"
    s = s.reset_index()
    n = s["n"].to_numpy(dtype=float)
    if per_day:
        count = s["count"].to_numpy(dtype=float) if "count" in s else n
        days = s["days"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log((count + 0.5) / days)
            v = 1 / (count + 0.5)
    else:
        y = scale.forward(s["value"].to_numpy(dtype=float), n)
        v = scale.sampling_variance(s["value"], s["ci_low"], s["ci_high"], n)
    y, v = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(v, dtype=float))
    bad = ~np.isfinite(y) | ~np.isfinite(v)
    s["y"] = np.where(bad, np.nan, y)
    s["v"] = np.where(bad, np.nan, v)
    return s


RECENT_N_PERIODS = 3
"""The n of a future period is forecast as the mean n of this many latest observed periods."""


def future_sampling(g: pd.DataFrame, period: int = 12) -> tuple[float, float]:
    """The n and the sampling variance (model scale) expected for a future period of the grid ``g``.

    The sampling variance of a period is inversely proportional to its n (``v_t = u / n_t``: binomial,
    median and Poisson variances alike), so the future period's is ``u / n_next`` with ``u`` the mean of
    ``v_t * n_t`` over the last ``period`` observed periods (the per-observation variance) and ``n_next`` the
    mean n of the last :data:`RECENT_N_PERIODS` (a no-change forecast of n). Averaging ``v_t`` itself over a
    year instead would carry the larger variances of the year's earlier, smaller periods into the forecast
    of a growing series (measured on the demo: 1.3 to 1.6 times the realised periods' variance at 1 to 6
    months ahead). Without n: the mean ``v_t`` of the last ``period`` periods."""
    v = g["v"].to_numpy(dtype=float)
    observed = np.isfinite(g["y"].to_numpy(dtype=float)) & np.isfinite(v)
    mean_v = float(np.nanmean(v[observed][-period:])) if observed.any() else float("nan")
    if "n" not in g:
        return float("nan"), mean_v
    n = g["n"].to_numpy(dtype=float)
    ok = observed & np.isfinite(n) & (n > 0)
    if not ok.any():
        return float("nan"), mean_v
    per_obs = float(np.mean((v * n)[ok][-period:]))
    n_next = float(np.mean(n[ok][-RECENT_N_PERIODS:]))
    return n_next, per_obs / n_next


def forecast_window(series: pd.DataFrame, window_start, window_end, *, freq: str = "month",
                    scale: Scale = Scale("identity", -math.inf, math.inf), level: float = 0.8,
                    target: float | None = None, direction: str = "raise", per_day: bool = False,
                    candidates=CANDIDATES, selected=None, grid: pd.DataFrame | None = None) -> WindowForecast | None:
    """Forecast the aggregate of the periods in ``[window_start, window_end]`` from ``series`` (complete
    periods up to the as-of date, at ``freq``); ``None`` without data. See the module docstring.

    ``selected``: the ``(fitted, table)`` of :func:`select_model` for this very series (:func:`model_for`),
    to forecast several windows from one model choice (the backtest does); ``grid``: :func:`regular_grid` of
    this very series (with its finite values), computed once for those windows."""
    s = series[np.isfinite(series["value"].astype(float))]
    if s.empty:
        return None
    g = regular_grid(s, freq, scale, per_day) if grid is None else grid
    y, v = g["y"].to_numpy(dtype=float), g["v"].to_numpy(dtype=float)
    observed = np.isfinite(y)
    if not observed.any():
        return None
    period = FREQ_PERIODS[freq]
    step = pd.DateOffset(months=12 // period)
    last = g["period"].iloc[-1]
    ws, we = pd.Timestamp(window_start), pd.Timestamp(window_end)
    w_periods = [p for p in pd.date_range(_period_floor(ws, freq), we, freq="MS" if freq == "month" else "QS")]
    future = [p for p in w_periods if p > last]
    past = [p for p in w_periods if p <= last]
    horizon = 0 if not future else _steps(last, future[-1], freq)
    recent_n, recent_v = future_sampling(g, period)

    if selected is not None:
        fitted, table = selected
    else:
        fitted, table = select_model(y, v, period, candidates) if horizon > 0 else (None, pd.DataFrame())
    if horizon > 0 and fitted is not None:
        members = [(w, *m.paths(horizon), m.sigma2_irregular) for w, m in fitted.members]
        method = fitted.name
    elif horizon > 0:  # too little history: no change, sampling error only
        last_y = y[observed][-1]
        members = [(1.0, np.full(horizon, last_y), np.full((horizon, horizon), float(v[observed][-1])), 0.0)]
        method = "no change (too little history for a model)"
    else:
        members = [(1.0, np.zeros(0), np.zeros((0, 0)), 0.0)]
        method = "observed"

    # the window aggregate: n-weighted mean of its periods on the model scale, per member model
    weights, known, idx = [], [], []
    grid_rows = {}  # period -> (y, n) of the grid's first row of that period
    if past:
        for p, y_p, n_p in zip(g["period"], y, g["n"].to_numpy(dtype=float)):
            grid_rows.setdefault(p, (float(y_p), float(n_p)))
    for p in w_periods:
        overlap = _overlap_share(p, ws, we, freq)
        if p <= last:
            if p not in grid_rows or not np.isfinite(grid_rows[p][0]):
                continue
            y_p, n_p = grid_rows[p]
            weights.append(overlap * n_p)
            known.append(y_p)
            idx.append(None)
        else:
            weights.append(overlap * (recent_n if np.isfinite(recent_n) else 1.0))
            known.append(0.0)
            idx.append(_steps(last, p, freq) - 1)
    if not weights:
        return None
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    components = []
    for share, mean, cov, irregular in members:
        m = float(sum(wi * (x if h is None else mean[h]) for wi, x, h in zip(w, known, idx)))
        fut = [(wi, h) for wi, h in zip(w, idx) if h is not None]
        var = sum(wi * wj * cov[hi, hj] for wi, hi in fut for wj, hj in fut)
        var += sum(wi ** 2 * (irregular + recent_v) for wi, _ in fut)
        components.append((share, m, math.sqrt(max(var, 0.0))))
    components = tuple(components)
    z = float(special.ndtri(0.5 + level / 2))  # = stats.norm.ppf, without its per-call overhead
    alpha = (1 - level) / 2
    q_lo, q_mid, q_hi = (mixture_quantile(components, q) for q in (alpha, 0.5, 1 - alpha))
    m, sd = mixture_moments(components)
    back = (lambda x: math.exp(x)) if per_day else (lambda x: float(scale.inverse(x)))
    value, lo, hi = back(q_mid), back(q_lo), back(q_hi)
    # the per-period path for the chart (each period's own prediction interval, moments of the average)
    if horizon <= 0:
        path = pd.DataFrame()
    else:
        periods = [last + step * (h + 1) for h in range(horizon)]
        pm = sum(share * mean for share, mean, _, _ in members)
        pv = sum(share * (np.diag(cov) + irregular + recent_v + mean ** 2) for share, mean, cov, irregular
                 in members) - pm ** 2
        band = np.column_stack([pm, pm - z * np.sqrt(pv), pm + z * np.sqrt(pv)])
        band = np.exp(band) if per_day else scale.inverse(band)
        path = pd.DataFrame({"period": periods, "value": band[:, 0], "low": band[:, 1], "high": band[:, 2]})
    p_met = float("nan")
    if target is not None:
        t_scale = Scale("log", 0.0, math.inf) if per_day else scale
        p_met = mixture_prob_met(components, target, direction, t_scale)
    return WindowForecast(ws, we, value, float(lo), float(hi), level, m, sd, method, int(observed.sum()),
                          p_met, path, table, components)


def model_for(series: pd.DataFrame, *, freq: str = "month", scale: Scale = Scale("identity", -math.inf, math.inf),
              per_day: bool = False, candidates=CANDIDATES, grid: pd.DataFrame | None = None):
    """The model :func:`forecast_window` would choose for ``series``: ``(fitted or None, candidates table)``
    (``grid`` as in :func:`forecast_window`)."""
    s = series[np.isfinite(series["value"].astype(float))]
    if s.empty:
        return None, pd.DataFrame()
    g = regular_grid(s, freq, scale, per_day) if grid is None else grid
    return select_model(g["y"].to_numpy(dtype=float), g["v"].to_numpy(dtype=float), FREQ_PERIODS[freq], candidates)


def _period_floor(ts: pd.Timestamp, freq: str) -> pd.Timestamp:
    ts = pd.Timestamp(year=ts.year, month=ts.month, day=1)
    if freq == "quarter":
        ts = ts - pd.DateOffset(months=(ts.month - 1) % 3)
    return ts


def _steps(last: pd.Timestamp, p: pd.Timestamp, freq: str) -> int:
    months = (p.year - last.year) * 12 + (p.month - last.month)
    return months if freq == "month" else months // 3


def _overlap_share(p: pd.Timestamp, ws: pd.Timestamp, we: pd.Timestamp, freq: str) -> float:
    end = p + pd.DateOffset(months=1 if freq == "month" else 3) - pd.Timedelta(days=1)
    days = (end - p).days + 1
    inside = (min(end, we) - max(p, ws)).days + 1
    return max(inside, 0) / days


__all__ = ["CANDIDATES", "FittedModel", "Scale", "Spec", "StructuralModel", "WindowForecast", "fit_model",
           "forecast_window", "future_sampling", "kpi_scale", "model_for", "prob_met", "regular_grid", "select_model"]
