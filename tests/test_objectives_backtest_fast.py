"""The backtest's simple-rule comparison fits the straight line once per origin: the same intervals, and so
the same ``covered_simple``, as :func:`helpers.objectives_status.forecast_at` called per horizon (the earlier
implementation, kept here as the reference)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers.objectives_backtest import backtest_series, simple_rule_intervals
from helpers.objectives_forecast import Scale, kpi_scale
from helpers.objectives_status import _clean_series, forecast_at, period_end

PERCENT = kpi_scale("%", (0, 100))


def _series(months: int, seed: int, freq: str = "month") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2023-01-01", periods=months, freq="MS" if freq == "month" else "QS")
    value = np.clip(60 + 0.4 * np.arange(months) + rng.normal(0, 3, months), 1, 99)
    n = rng.integers(60, 300, months)
    se = np.sqrt(value * (100 - value) / n)
    return pd.DataFrame({"period": periods, "value": value, "ci_low": value - 1.96 * se,
                         "ci_high": value + 1.96 * se, "n": n})


@pytest.mark.parametrize("freq", ["month", "quarter"])
@pytest.mark.parametrize("cleaned", [False, True])
@pytest.mark.parametrize("history", [3, 4, 9, 30])
def test_simple_rule_intervals_equal_forecast_at_per_target(freq, cleaned, history):
    s = _series(40, history, freq)
    hist = s.iloc[:history]
    series = _clean_series(hist, freq) if cleaned else hist
    origin = hist["period"].iloc[-1]
    as_of = period_end(origin, freq)
    step = 1 if freq == "month" else 3
    targets = [origin + pd.DateOffset(months=step * h) for h in range(-1, 7)]  # one already observed
    got = simple_rule_intervals(series, targets, as_of, level=0.8, bounds=(0, 100), freq=freq, cleaned=cleaned)
    for t in targets:
        f = forecast_at(series, period_end(t, freq), as_of, level=0.8, window=24, bounds=(0, 100), freq=freq,
                        cleaned=cleaned)
        if f is None or f.method != "linear trend":
            assert t not in got
        else:
            assert got[t] == pytest.approx((f.low, f.high), rel=1e-12, abs=1e-12)
    assert bool(got) == (history >= 4)


def _covered_simple_per_horizon(series, *, freq, scale, level, max_horizon, origins, history=36):
    """covered_simple as the backtest computed it before: forecast_at per origin and horizon."""
    s = series.sort_values("period").reset_index(drop=True)
    step = 1 if freq == "month" else 3
    out = {}
    for i in origins:
        hist = s.iloc[max(0, i + 1 - history):i + 1]
        origin = hist["period"].iloc[-1]
        for h in range(1, max_horizon + 1):
            tp = origin + pd.DateOffset(months=step * h)
            realised = s[s["period"] == tp]
            if realised.empty:
                continue
            b = forecast_at(hist, period_end(tp, freq), period_end(origin, freq), level=level, window=24,
                            bounds=(scale.lo, scale.hi), freq=freq)
            truth = float(realised["value"].iloc[0])
            out[(origin, h)] = float(b.low <= truth <= b.high) if b is not None and b.method == "linear trend" \
                else math.nan
    return out


def test_backtest_covered_simple_as_with_forecast_at_per_horizon():
    s = _series(34, 21)
    origins = [5, 14, 20, 27, 30]
    bt = backtest_series(s, name="x", scale=PERCENT, max_horizon=6, origins=origins, min_history=6)
    expected = _covered_simple_per_horizon(s, freq="month", scale=PERCENT, level=0.8, max_horizon=6, origins=origins)
    got = {(o, h): c for o, h, c in zip(bt.forecasts["origin"], bt.forecasts["horizon"], bt.forecasts["covered_simple"])}
    assert got.keys() == expected.keys() and len(got) > 20
    for key, value in expected.items():
        assert (math.isnan(value) and math.isnan(got[key])) or got[key] == value, key
    assert np.isfinite(bt.forecasts["covered_simple"]).sum() > 20


def test_backtest_without_simple_rule_leaves_covered_simple_empty():
    s = _series(20, 3)
    bt = backtest_series(s, name="x", scale=Scale("identity", -math.inf, math.inf), max_horizon=3, origins=[10, 15],
                         min_history=6, simple=False)
    assert bt.forecasts["covered_simple"].isna().all() and bt.n > 0
