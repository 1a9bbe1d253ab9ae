"""Forecast of a KPI at an objective's deadline, OKR progress, and the status rule.

Pure functions on a monthly KPI series (a DataFrame with ``period``, ``value``, ``ci_low``, ``ci_high``,
``n``), used by :mod:`helpers.objectives`; no files, no params.

Forecast (:func:`forecast_at`)
    A linear trend fitted by ordinary least squares to the last ``window`` monthly values up to the as-of
    date (``value_t = a + b * t + e_t``, ``t`` = month index, statsmodels ``OLS``). The forecast at the
    deadline month ``t0`` is ``a + b * t0`` with the classical prediction interval for a new observation

        ``yhat0 +/- t_{1-alpha/2, m-2} * s * sqrt(1 + 1/m + (t0 - tbar)^2 / sum (t - tbar)^2)``

    (Montgomery, Peck & Vining, *Introduction to Linear Regression Analysis*, 5th ed., eq. 2.45; the same
    as statsmodels' ``get_prediction().summary_frame()['obs_ci_lower'/'obs_ci_upper']``). The residual
    variance ``s^2`` contains the month-to-month sampling noise of the KPI estimate, so a month with few
    responses widens the band honestly. Why a linear trend and not ETS/ARIMA: objectives run from one to
    twelve months and the fit uses at most about two years of monthly points; a trend is what a director
    asks about ("at this pace, where will we be?"), has an exact interval, and extrapolates no seasonality
    that 24 points cannot estimate. With fewer than ``min_points`` (4) months the forecast falls back to
    "no change": the last value with its own confidence interval, and the result says so
    (``method='last value'``). Forecasts and intervals are clipped to the metric's possible range.

Progress (:func:`progress_score`)
    The OKR-style score ``(current - baseline) / (target - baseline)`` clipped to 0..1 (same formula for
    "lower" objectives, where both differences are negative). Expected progress is the elapsed share of
    the objective's time, ``(as_of - start) / (deadline - start)`` clipped to 0..1.

Status rule (:func:`classify_status`), applied in this order:

1. **no data** - no value for the metric in the objective's data up to the as-of date.
2. Deadline passed (``as_of >= deadline``): **achieved** if the value of the deadline's month (the last
   month with data up to the deadline) meets the target, else **missed**.
3. **achieved** - before the deadline, the current month's confidence interval lies entirely on the good
   side of the target (reached, with evidence: a point estimate that only touches the target is not
   enough and is judged by the forecast like any other).
4. **on track** - the forecast's prediction interval at the deadline lies entirely on the good side of
   the target (with the default 80% interval: at least a 90% chance of reaching it under the trend model).
5. **off track** - the prediction interval lies entirely on the bad side of the target.
6. **at risk** - the prediction interval straddles the target.

"Meets" means ``>= target`` for objectives that raise a metric and ``<= target`` for those that lower
it; an interval bound equal to the target counts as clearing it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

STATUSES = ("achieved", "on track", "at risk", "off track", "missed", "no data")
"""Every status, best first; ``helpers.charts.PALETTE`` has a colour for each."""

DEFAULT_LEVEL = 0.80
"""Default prediction-interval level of the deadline forecast (two-sided)."""


@dataclass(frozen=True)
class Forecast:
    """The metric forecast for one month: point, prediction interval, and how it was made."""

    period: pd.Timestamp
    value: float
    low: float
    high: float
    level: float
    method: str  # "linear trend" | "last value" | "observed"
    n_points: int
    slope_per_month: float = float("nan")


def month_start(when) -> pd.Timestamp:
    """The first day of the month containing ``when``."""
    ts = pd.Timestamp(when)
    return pd.Timestamp(year=ts.year, month=ts.month, day=1)


FREQ_MONTHS = {"month": 1, "quarter": 3}
"""Period lengths an objective can be tracked at (``frequency`` in the params file)."""


def period_start(when, freq: str = "month") -> pd.Timestamp:
    """The first day of the month (or quarter) containing ``when``."""
    ts = month_start(when)
    step = FREQ_MONTHS[freq]
    return ts - pd.DateOffset(months=(ts.month - 1) % step)


def period_end(start, freq: str = "month") -> pd.Timestamp:
    """The last day of the period starting at ``start``."""
    return pd.Timestamp(start) + pd.DateOffset(months=FREQ_MONTHS[freq]) - pd.Timedelta(days=1)


def months_between(first, later) -> int:
    """Whole calendar months from the month of ``first`` to the month of ``later`` (may be negative)."""
    a, b = pd.Timestamp(first), pd.Timestamp(later)
    return (b.year - a.year) * 12 + (b.month - a.month)


def _clean_series(series: pd.DataFrame, freq: str = "month") -> pd.DataFrame:
    s = series.loc[:, [c for c in ("period", "value", "ci_low", "ci_high", "n") if c in series.columns]]
    s = s.assign(period=pd.to_datetime(s["period"]).map(lambda p: period_start(p, freq)))
    s = s[np.isfinite(s["value"].astype(float))]
    return s.sort_values("period").reset_index(drop=True)


def _clip(values, bounds):
    lo, hi = bounds
    return np.clip(np.asarray(values, dtype=float), -np.inf if lo is None else lo, np.inf if hi is None else hi)


def _observed_up_to(series: pd.DataFrame, as_of, window: int, freq: str = "month") -> pd.DataFrame:
    s = _clean_series(series, freq)
    s = s[s["period"] <= period_start(as_of, freq)]
    if s.empty:
        return s
    return s[s["period"] > s["period"].iloc[-1] - pd.DateOffset(months=window)]


def _predict(s: pd.DataFrame, periods: list[pd.Timestamp], level: float, min_points: int, bounds):
    """(method, slope, values, lows, highs) for ``periods`` from the observed window ``s``."""
    last = s.iloc[-1]
    if len(s) < min_points:
        value = float(last["value"])
        low, high = float(last.get("ci_low", np.nan)), float(last.get("ci_high", np.nan))
        if not (np.isfinite(low) and np.isfinite(high)):
            low = high = value
        k = len(periods)
        return "last value", float("nan"), np.full(k, value), np.full(k, low), np.full(k, high)
    origin = s["period"].iloc[0]
    t = np.array([months_between(origin, p) for p in s["period"]], dtype=float)
    fit = sm.OLS(s["value"].to_numpy(dtype=float), sm.add_constant(t)).fit()
    t_new = np.array([months_between(origin, p) for p in periods], dtype=float)
    frame = fit.get_prediction(np.column_stack([np.ones_like(t_new), t_new])).summary_frame(alpha=1 - level)
    return ("linear trend", float(fit.params[1]), _clip(frame["mean"], bounds),
            _clip(frame["obs_ci_lower"], bounds), _clip(frame["obs_ci_upper"], bounds))


def forecast_at(series: pd.DataFrame, deadline, as_of, *, level: float = DEFAULT_LEVEL, window: int = 24,
                min_points: int = 4, bounds: tuple[float | None, float | None] = (None, None),
                freq: str = "month") -> Forecast | None:
    """Forecast the metric for the deadline's month from the monthly ``series`` up to ``as_of``.

    Returns ``None`` when the series has no value up to ``as_of``. When the deadline month is not after
    the last observed month, the observed value of the deadline month (or the last month before it) is
    returned (``method='observed'``) with its confidence interval. The fit uses the last ``window``
    months; see the module docstring for the model and the interval. ``freq="quarter"`` works on a
    quarterly series the same way (the deadline's quarter is forecast; the time axis stays in months).
    """
    s = _observed_up_to(series, as_of, window=10_000, freq=freq)
    if s.empty:
        return None
    target_period = period_start(deadline, freq)
    if target_period <= s["period"].iloc[-1]:
        upto = s[s["period"] <= target_period]
        if upto.empty:
            return None
        row = upto.iloc[-1]
        return Forecast(target_period, float(row["value"]), float(row.get("ci_low", np.nan)),
                        float(row.get("ci_high", np.nan)), level, "observed", len(upto))
    s = _observed_up_to(series, as_of, window, freq)
    method, slope, v, lo, hi = _predict(s, [target_period], level, min_points, bounds)
    return Forecast(target_period, float(v[0]), float(lo[0]), float(hi[0]), level, method, len(s), slope)


def forecast_path(series: pd.DataFrame, deadline, as_of, *, level: float = DEFAULT_LEVEL, window: int = 24,
                  min_points: int = 4, bounds=(None, None), freq: str = "month") -> pd.DataFrame:
    """Monthly forecasts from the last observed month to the deadline's month (the chart's band).

    Columns ``period``, ``value``, ``low``, ``high``; empty when the deadline month has been observed.
    The same model as :func:`forecast_at`, so the band's last point is the deadline forecast.
    """
    s = _observed_up_to(series, as_of, window, freq)
    if s.empty or period_start(deadline, freq) <= s["period"].iloc[-1]:
        return pd.DataFrame({"period": pd.Series(dtype="datetime64[ns]"), "value": pd.Series(dtype=float),
                             "low": pd.Series(dtype=float), "high": pd.Series(dtype=float)})
    periods = list(pd.date_range(s["period"].iloc[-1], period_start(deadline, freq),
                                 freq="MS" if freq == "month" else "QS"))
    _, _, v, lo, hi = _predict(s, periods, level, min_points, bounds)
    return pd.DataFrame({"period": periods, "value": v, "low": lo, "high": hi})


def meets(value: float, target: float, direction: str) -> bool:
    """Whether ``value`` reaches ``target`` (``>=`` to raise a metric, ``<=`` to lower it)."""
    return value >= target if direction == "raise" else value <= target


def progress_score(current: float, baseline: float, target: float) -> float:
    """OKR score: the share of the way from baseline to target, clipped to 0..1 (NaN when undefined)."""
    if not all(np.isfinite([current, baseline, target])) or target == baseline:
        return float("nan")
    return float(np.clip((current - baseline) / (target - baseline), 0.0, 1.0))


def expected_progress(start, deadline, as_of) -> float:
    """The elapsed share of the objective's time, ``(as_of - start) / (deadline - start)``, clipped to 0..1."""
    start, deadline, as_of = pd.Timestamp(start), pd.Timestamp(deadline), pd.Timestamp(as_of)
    total = (deadline - start).total_seconds()
    return float(np.clip((as_of - start).total_seconds() / total, 0.0, 1.0)) if total > 0 else 1.0


def classify_status(*, target: float, direction: str, deadline, as_of, current: float | None = None,
                    current_low: float | None = None, current_high: float | None = None,
                    forecast: Forecast | None = None) -> str:
    """The objective's status by the documented rule (module docstring); returns one of :data:`STATUSES`.

    ``current*`` describe the latest month up to ``as_of``; ``forecast`` is the deadline forecast (for a
    passed deadline, the observed value of the deadline month).
    """
    if direction not in ("raise", "lower"):
        raise ValueError(f"direction must be 'raise' or 'lower', got {direction!r}")
    if current is None or not np.isfinite(current) or forecast is None or not np.isfinite(forecast.value):
        return "no data"
    if pd.Timestamp(as_of) >= pd.Timestamp(deadline):
        if forecast.method != "observed":  # the deadline's period has no data: nothing to judge it on
            return "no data"
        return "achieved" if meets(forecast.value, target, direction) else "missed"
    good_side_low = current_low if direction == "raise" else current_high
    if good_side_low is not None and np.isfinite(good_side_low) and meets(good_side_low, target, direction):
        return "achieved"
    worst, best = (forecast.low, forecast.high) if direction == "raise" else (forecast.high, forecast.low)
    if meets(worst, target, direction):
        return "on track"
    if not meets(best, target, direction):
        return "off track"
    return "at risk"
