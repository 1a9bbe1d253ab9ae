"""The fast likelihood path of the objectives' forecast fits gives what the plain statsmodels path gives.

``helpers.objectives_forecast.FIT_PATH = "statsmodels"`` is the reference: ``MLEModel.loglike`` and scipy's own
finite differences. The default ``"filter"`` path (compiled Kalman filter called directly, forward differences
without scipy's per-call overhead) must give the same likelihood values, the same fits and the same forecasts.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize._numdiff import approx_derivative

import helpers.objectives_forecast as F


def _series(n: int, seed: int, *, missing: int = 0, season: float = 0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = np.cumsum(rng.normal(0, 0.05, n)) + 0.01 * t
    y = 0.4 + level + season * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.08, n)
    v = rng.uniform(0.002, 0.02, n)
    if missing:
        y[rng.choice(np.arange(1, n - 1), missing, replace=False)] = np.nan
    return y, v


@pytest.fixture
def fit_path():
    """Set ``FIT_PATH`` for a test and restore it (the fit cache is keyed on the path)."""
    saved = F.FIT_PATH

    def use(path: str):
        F.FIT_PATH = path

    yield use
    F.FIT_PATH = saved


@pytest.mark.parametrize("spec", F.CANDIDATES, ids=lambda s: s.name)
def test_filter_likelihood_equals_statsmodels_loglike(spec):
    y, v = _series(40, 3, missing=3, season=0.2)
    model = F.StructuralModel(y, v, spec, 12)
    likelihood = F._FilterLikelihood.bind(model)
    assert likelihood is not None
    rng = np.random.default_rng(11)
    start = model.untransform_params(model.start_params)
    for _ in range(25):  # interleaved, so neither path leans on state the other left behind
        u = start + rng.normal(0, 1.0, start.size)
        expected = model.loglike(u, transformed=False)
        assert likelihood(u) == expected


def test_filter_likelihood_falls_back_when_statsmodels_internals_differ(fit_path, monkeypatch):
    y, v = _series(30, 5)
    spec = F.CANDIDATES[0]
    broken = F.StructuralModel(y, v, spec, 12)
    del broken.ssm._statespaces  # internals not as statsmodels 0.15 keeps them: no fast path
    assert F._FilterLikelihood.bind(broken) is None
    # and a fit then runs on model.loglike and still gives the reference fit
    fit_path("statsmodels")
    ref = F._fit_model(y, v, spec, 12)
    fit_path("filter")
    monkeypatch.setattr(F._FilterLikelihood, "bind", classmethod(lambda cls, model: None))
    fallback = F._fit_model(y, v, spec, 12)
    np.testing.assert_allclose(fallback.params, ref.params, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("u", [np.array([0.3, -1.2, 0.0]), np.array([2e9, -3e9, 1e-12])])
def test_forward_gradient_equals_scipy_two_point(u):
    def f(x):
        return float(np.sum(np.sin(x) * x ** 2) + x[0] * x[1])

    scipy_grad = approx_derivative(f, u, method="2-point", abs_step=math.sqrt(np.finfo(float).eps), f0=f(u))
    np.testing.assert_array_equal(F._forward_gradient(f, u), scipy_grad)


@pytest.mark.parametrize("spec", F.CANDIDATES, ids=lambda s: s.name)
@pytest.mark.parametrize("seed", [1, 2])
def test_fit_model_same_fit_on_both_paths(spec, seed, fit_path):
    y, v = _series(38, seed, missing=2, season=0.3)
    fits = {}
    for path in ("statsmodels", "filter"):
        fit_path(path)
        fits[path] = F._fit_model(y, v, spec, 12)
    ref, fast = fits["statsmodels"], fits["filter"]
    assert (ref is None) == (fast is None)
    if ref is None:
        return
    np.testing.assert_allclose(fast.params, ref.params, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(fast.state, ref.state, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.state_cov, ref.state_cov, rtol=1e-10, atol=1e-14)
    assert fast.loglike == pytest.approx(ref.loglike, rel=1e-12)


def test_fit_model_same_fit_from_a_given_start(fit_path):
    y, v = _series(30, 9)
    spec = F.Spec("linear trend + AR(1)", "trend", ar=True)
    start = np.array([0.004, 0.5, 0.002])
    fits = {}
    for path in ("statsmodels", "filter"):
        fit_path(path)
        fits[path] = F.fit_model(y, v, spec, 12, start_params=start)
    np.testing.assert_allclose(fits["filter"].params, fits["statsmodels"].params, rtol=1e-10, atol=1e-14)


def test_forecast_window_same_forecast_and_p_met_on_both_paths(fit_path):
    rng = np.random.default_rng(4)
    periods = pd.date_range("2023-01-01", periods=40, freq="MS")
    n = rng.integers(80, 200, len(periods))
    share = np.clip(0.55 + 0.004 * np.arange(40) + 0.05 * np.sin(np.arange(40) / 2), 0.05, 0.95)
    k = rng.binomial(n, share)
    value = 100 * k / n
    se = 100 * np.sqrt(share * (1 - share) / n)
    series = pd.DataFrame({"period": periods, "value": value, "ci_low": value - 1.96 * se,
                           "ci_high": value + 1.96 * se, "n": n})
    scale = F.kpi_scale("%", (0, 100))
    out = {}
    for path in ("statsmodels", "filter"):
        fit_path(path)
        out[path] = F.forecast_window(series, "2026-07-01", "2026-09-30", scale=scale, target=72.0)
    ref, fast = out["statsmodels"], out["filter"]
    assert fast.method == ref.method
    for attr in ("value", "low", "high", "p_met", "mean_model", "sd_model"):
        assert getattr(fast, attr) == pytest.approx(getattr(ref, attr), rel=1e-9, abs=1e-12), attr
    pd.testing.assert_frame_equal(fast.candidates, ref.candidates, rtol=1e-9)


@pytest.mark.parametrize("case", ["constant", "short", "no sampling error", "heavy tails"])
def test_fit_model_same_fit_on_both_paths_on_awkward_series(case, fit_path):
    rng = np.random.default_rng(17)
    if case == "constant":
        y, v = np.full(20, 0.7), np.full(20, 0.01)
    elif case == "short":
        y, v = rng.normal(0, 1, 6), rng.uniform(0.01, 0.1, 6)
    elif case == "no sampling error":
        t = np.arange(30)
        y, v = 0.05 * t + np.sin(2 * np.pi * t / 12), np.zeros(30)
    else:
        y, v = rng.standard_t(2, 26) * 3, rng.uniform(0, 0.5, 26)
    for spec in F.CANDIDATES:
        fits = []
        for path in ("statsmodels", "filter"):
            fit_path(path)
            fits.append(F._fit_model(y, v, spec, 12))
        ref, fast = fits
        assert (ref is None) == (fast is None), spec.name
        if ref is not None:
            np.testing.assert_allclose(fast.params, ref.params, rtol=1e-10, atol=1e-14, err_msg=spec.name)
            assert fast.loglike == pytest.approx(ref.loglike, rel=1e-12), spec.name


def test_scale_inverse_and_normal_quantiles_equal_scipy_stats_distributions():
    """expit/ndtri replace stats.logistic.cdf/stats.norm.ppf on the hot path: the same values bit for bit."""
    from scipy import stats

    rng = np.random.default_rng(2)
    y = np.concatenate([rng.normal(0, 5, 5000), [np.inf, -np.inf, np.nan, 0.0, 800.0, -800.0]])
    scale = F.kpi_scale("%", (0, 100))
    np.testing.assert_array_equal(scale.inverse(y), 0 + 100 * stats.logistic.cdf(y))
    np.testing.assert_array_equal(scale.inverse(y.reshape(-1, 2)), 100 * stats.logistic.cdf(y.reshape(-1, 2)))
    for q in (0.1, 0.5, 0.9, 0.975, 1e-9):
        assert F.mixture_quantile(((1.0, 0.3, 2.0),), q) == float(0.3 + 2.0 * stats.norm.ppf(q))
