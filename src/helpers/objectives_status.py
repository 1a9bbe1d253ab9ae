"""The objective's window, OKR progress, and the status rule on P(target met); the simple trend forecast.

Pure functions, used by :mod:`helpers.objectives`; no files, no params. The forecast that feeds the status is
:mod:`helpers.objectives_forecast` (a calendar-aware structural model chosen on held-out periods).

Window (:class:`Window`)
    An objective is judged on its KPI over its own window, computed from the underlying rows (a quarter's
    median from its tickets): ``month`` (the deadline's month), ``quarter`` (the deadline's quarter),
    ``year`` (1 January of the deadline's year to the deadline), ``objective`` (start to deadline) or
    ``rolling N months`` (the N months ending at the deadline). Declared with ``window:`` in the params file,
    else inferred: an objective of three months or less is judged over its whole span (``Q3 2026`` when it is
    a calendar quarter), a longer one over the last period of its ``frequency`` (the deadline's month, or
    quarter for ``frequency: quarter``).

Progress (:func:`progress_score`)
    Signed and never clipped: ``(current - baseline) / (target - baseline)`` when the target is on the good
    side of the baseline for the objective's direction (1 = target reached, negative = moved the wrong way,
    above 1 = beyond the target); when the target is on the wrong side of the baseline the score is
    ``sign * (current - baseline) / |target - baseline|`` with ``sign`` = +1 to raise, -1 to lower, so a move
    the wrong way stays negative (and a SMART warning names the objective). Expected progress is the elapsed
    share of the objective's time, ``(as_of - start) / (deadline - start)`` clipped to 0..1.

Status rule (:func:`classify_status`), in this order:

1. **no data** - the KPI cannot be measured for the objective (or, after the deadline, its window is not in
   the data).
2. **too little data** - the window holds (after the deadline) or will hold (before it: observed so far plus
   the recent n per period for the rest) fewer than ``min_responses`` observations.
3. Deadline passed (``as_of >= window end``): **achieved** if the observed window value meets the target,
   else **missed**; the detail says "within the margin of error" when the window's 95% confidence interval
   contains the target.
4. Before the deadline, with ``p = P(window value meets the target)`` from the forecast:
   **achieved** if the latest value's 95% confidence interval is past the target *and* ``p >= 0.975`` (the
   window forecast clears the target too); **on track** if ``p >= 0.8``; **at risk** if ``0.2 <= p < 0.8``,
   detailed as "ahead but uncertain" (``p >= 0.5``: the forecast's median meets the target) or "behind";
   **off track** if ``p < 0.2``.

"Meets" means ``>= target`` to raise a metric and ``<= target`` to lower it.

Simple trend forecast (:func:`forecast_at`, :func:`forecast_path`)
    The earlier rule's forecast, kept as the baseline the calibration backtest compares against: a linear
    trend fitted by OLS to the last ``window`` values, with the classical prediction interval for a new
    observation (Montgomery, Peck & Vining, *Introduction to Linear Regression Analysis*, 5th ed., eq. 2.45;
    statsmodels' ``obs_ci_lower/upper``). It ignores seasonality, autocorrelation and the KPI's bounds
    (clipped), which is why the status no longer uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STATUSES = ("achieved", "on track", "at risk", "off track", "missed", "too little data", "no data")
"""Every status, best first; ``helpers.charts.PALETTE`` has a colour for each."""

DEFAULT_LEVEL = 0.80
"""Default prediction-interval level of the deadline forecast (two-sided)."""

P_ON_TRACK = 0.8
"""P(met) at or above which an open objective is on track."""
P_OFF_TRACK = 0.2
"""P(met) below which an open objective is off track (in between: at risk)."""
P_AHEAD = 0.5
"""At risk with P(met) at or above this is "ahead but uncertain", below it "behind"."""
P_ACHIEVED_EARLY = 0.975
"""Before the deadline, "achieved" needs P(met) at or above this as well as a current value past the target."""
WINDOW_KINDS = ("month", "quarter", "year", "objective", "rolling")


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
    periods = pd.to_datetime(s["period"])
    if isinstance(periods.dtype, np.dtype) and len(periods):  # naive: vectorised period_start (same values)
        unit = pd.Series([period_start(periods.iloc[0], freq)]).dtype  # the dtype period_start's values take
        periods = periods.dt.to_period("M" if freq == "month" else "Q").dt.to_timestamp().astype(unit)
    else:
        periods = periods.map(lambda p: period_start(p, freq))
    s = s.assign(period=periods)
    s = s[np.isfinite(s["value"].astype(float))]
    return s.sort_values("period").reset_index(drop=True)


def _clip(values, bounds):
    lo, hi = bounds
    return np.clip(np.asarray(values, dtype=float), -np.inf if lo is None else lo, np.inf if hi is None else hi)


def _observed_up_to(series: pd.DataFrame, as_of, window: int, freq: str = "month", *,
                    cleaned: bool = False) -> pd.DataFrame:
    s = series if cleaned else _clean_series(series, freq)
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
    # imported here: statsmodels.api costs ~0.8 s at import, paid by every process that only parses objectives
    from statsmodels.regression.linear_model import OLS  # noqa: PLC0415 - statsmodels.api's OLS
    from statsmodels.tools.tools import add_constant  # noqa: PLC0415

    fit = OLS(s["value"].to_numpy(dtype=float), add_constant(t)).fit()
    t_new = np.array([months_between(origin, p) for p in periods], dtype=float)
    frame = fit.get_prediction(np.column_stack([np.ones_like(t_new), t_new])).summary_frame(alpha=1 - level)
    return ("linear trend", float(fit.params[1]), _clip(frame["mean"], bounds),
            _clip(frame["obs_ci_lower"], bounds), _clip(frame["obs_ci_upper"], bounds))


def forecast_at(series: pd.DataFrame, deadline, as_of, *, level: float = DEFAULT_LEVEL, window: int = 24,
                min_points: int = 4, bounds: tuple[float | None, float | None] = (None, None),
                freq: str = "month", cleaned: bool = False) -> Forecast | None:
    """Forecast the metric for the deadline's month from the monthly ``series`` up to ``as_of``.

    Returns ``None`` when the series has no value up to ``as_of``. When the deadline month is not after
    the last observed month, the observed value of the deadline month (or the last month before it) is
    returned (``method='observed'``) with its confidence interval. The fit uses the last ``window``
    months; see the module docstring for the model and the interval. ``freq="quarter"`` works on a
    quarterly series the same way (the deadline's quarter is forecast; the time axis stays in months).
    ``cleaned``: ``series`` is already as :func:`_clean_series` returns it (the backtest cleans once).
    """
    if not cleaned:
        series = _clean_series(series, freq)
    s = _observed_up_to(series, as_of, window=10_000, freq=freq, cleaned=True)
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
    s = _observed_up_to(series, as_of, window, freq, cleaned=True)
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


def progress_score(current: float, baseline: float, target: float, direction: str | None = None) -> float:
    """Signed OKR score, never clipped (module docstring); NaN when undefined.

    ``(current - baseline) / (target - baseline)``; with ``direction`` given and the target on the wrong side
    of the baseline, ``sign * (current - baseline) / |target - baseline|`` (``sign`` +1 raise, -1 lower).
    """
    if not all(np.isfinite([current, baseline, target])) or target == baseline:
        return float("nan")
    if direction is not None and meets(baseline, target, direction):  # target on the wrong side
        sign = 1.0 if direction == "raise" else -1.0
        return float(sign * (current - baseline) / abs(target - baseline))
    return float((current - baseline) / (target - baseline))


def expected_progress(start, deadline, as_of) -> float:
    """The elapsed share of the objective's time, ``(as_of - start) / (deadline - start)``, clipped to 0..1."""
    start, deadline, as_of = pd.Timestamp(start), pd.Timestamp(deadline), pd.Timestamp(as_of)
    total = (deadline - start).total_seconds()
    return float(np.clip((as_of - start).total_seconds() / total, 0.0, 1.0)) if total > 0 else 1.0


def classify_status(*, p_met: float, deadline_passed: bool, met: bool | None = None,
                    current_clears: bool = False, target_in_ci: bool = False,
                    too_little_data: bool = False) -> tuple[str, str]:
    """The status and its detail by the documented rule (module docstring): ``(status, detail)``.

    ``met``: after the deadline, whether the observed window value meets the target (None: no data);
    ``current_clears``: the latest value's 95% CI is past the target; ``target_in_ci``: after the deadline,
    the window's 95% CI contains the target; ``p_met``: P(window value meets the target) before it.
    """
    if too_little_data:
        return "too little data", ""
    if deadline_passed:
        if met is None:
            return "no data", ""
        detail = "within the margin of error" if target_in_ci else ""
        return ("achieved" if met else "missed"), detail
    if p_met is None or not np.isfinite(p_met):
        return "no data", ""
    if current_clears and p_met >= P_ACHIEVED_EARLY:
        return "achieved", "early"
    if p_met >= P_ON_TRACK:
        return "on track", ""
    if p_met < P_OFF_TRACK:
        return "off track", ""
    return "at risk", ("ahead but uncertain" if p_met >= P_AHEAD else "behind")


@dataclass(frozen=True)
class Window:
    """The period an objective is judged on (module docstring): kind, first and last day, reader label."""

    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    label: str
    declared: bool = False

    @property
    def days(self) -> int:
        return int((self.end - self.start).days) + 1


def _quarter_label(ts: pd.Timestamp) -> str:
    return f"Q{(ts.month - 1) // 3 + 1} {ts.year}"


def make_window(kind: str, start, deadline, *, months: int | None = None, declared: bool = False) -> Window:
    """The window of ``kind`` ending at ``deadline`` (``start`` is the objective's start, for ``objective``)."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(deadline).normalize()
    if kind == "month":
        ws = month_start(end)
        return Window(kind, ws, end, f"{ws:%b %Y}", declared)
    if kind == "quarter":
        ws = period_start(end, "quarter")
        return Window(kind, ws, end, _quarter_label(end), declared)
    if kind == "year":
        ws = pd.Timestamp(year=end.year, month=1, day=1)
        return Window(kind, ws, end, f"{end.year} to {end:%d %b}", declared)
    if kind == "rolling":
        ws = end - pd.DateOffset(months=months) + pd.Timedelta(days=1)
        return Window(kind, ws, end, f"the {months} months to {end:%d %b %Y}", declared)
    if kind == "objective":
        return Window(kind, start, end, f"{start:%d %b %Y} to {end:%d %b %Y}", declared)
    raise ValueError(f"window must be one of {list(WINDOW_KINDS)}, got {kind!r}")


def infer_window(start, deadline, frequency: str = "month") -> Window:
    """The window of an objective that declares none (module docstring)."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(deadline).normalize()
    if (end - start).days <= 92:
        if start == month_start(end):
            return make_window("month", start, end)
        if start == period_start(end, "quarter") and end == period_end(start, "quarter"):
            return make_window("quarter", start, end)
        return make_window("objective", start, end)
    return make_window("quarter" if frequency == "quarter" else "month", start, end)
