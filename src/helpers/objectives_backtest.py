"""How well calibrated are the objectives' forecasts? A backtest over the history.

:func:`backtest_series` steps the as-of date back through a KPI series: at each origin it forecasts the next
1..``max_horizon`` periods from the history up to the origin only (the same model choice as the report,
:func:`helpers.objectives_forecast.forecast_window`), and compares with what was then observed. Three checks:

- **Coverage**: the share of realised values inside their ``level`` (80%) prediction interval; a calibrated
  forecast covers about 80%, with a binomial standard error of ``sqrt(0.8 * 0.2 / n)`` (forecasts from one
  series overlap in time, so the effective n is smaller and the band wider).
- **PIT** (probability integral transform, ``pit`` per forecast): P(forecast <= realised value); uniform
  on 0..1 when calibrated (Gneiting, Balabdaoui & Raftery, *JRSS B* 2007): a hump in the middle means
  intervals too wide, mass at the ends too narrow, a mean away from 0.5 a biased forecast.
- **Reliability** (a reliability diagram in table form; Murphy & Winkler, *Applied Statistics* 1977): for each
  forecast, P(value past a threshold) at several thresholds (the origin's value and +/- 0.5 and 1 standard
  deviation of the period-to-period changes, each as "raise" and "lower"), the share of those events that
  happened, per bin of predicted probability. Calibrated: the share met in a bin matches the bin's mean P.

:func:`backtest_objectives` runs it on every objective of a department's plan (its own metric, filters and
frequency), :class:`Backtest` holds the rows and gives :meth:`Backtest.coverage`, :meth:`Backtest.reliability`
and a one-line :meth:`Backtest.summary`. Each forecast also records whether the earlier simple rule (a linear
trend by OLS, :func:`helpers.objectives_status.forecast_at`) covered the realised value, for comparison.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from helpers.objectives_forecast import Scale, forecast_window, kpi_scale, model_for, regular_grid
from helpers.objectives_status import _clean_series, _observed_up_to, _predict, period_end, period_start

BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Bins of predicted probability for the reliability table."""


@dataclass
class Backtest:
    """Backtest rows: ``forecasts`` (one per series, origin and horizon) and ``events`` (P and outcome)."""

    forecasts: pd.DataFrame
    events: pd.DataFrame
    level: float = 0.8
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(len(self.forecasts))

    def coverage(self, by: str | None = None, column: str = "covered") -> pd.DataFrame | float:
        """Share of realised values inside the prediction interval (``column="covered_simple"``: the simple
        trend's); ``by`` a column name (e.g. ``"series"``, ``"horizon"``) gives a table with n and a Wilson CI."""
        f = self.forecasts.dropna(subset=[column])
        if by is None:
            return float(f[column].mean()) if len(f) else float("nan")
        rows = []
        for key, g in f.groupby(by, sort=True):
            k, n = int(g[column].sum()), len(g)
            lo, hi = _wilson(k, n)
            rows.append({by: key, "forecasts": n, "coverage": k / n, "ci_low": lo, "ci_high": hi})
        return pd.DataFrame(rows)

    def reliability(self, bins: Sequence[float] = BINS) -> pd.DataFrame:
        """Per bin of predicted P(met): events, mean predicted P, share that happened (95% Wilson CI)."""
        e = self.events.dropna(subset=["p"])
        labels = [f"{a:.0%}-{b:.0%}" for a, b in zip(bins[:-1], bins[1:])]
        cut = pd.cut(e["p"], bins=list(bins), include_lowest=True, labels=labels)
        rows = []
        for label, g in e.groupby(cut, observed=True):
            k, n = int(g["met"].sum()), len(g)
            lo, hi = _wilson(k, n)
            rows.append({"predicted": str(label), "events": n,
                         "mean predicted": float(g["p"].mean()), "share met": k / n, "ci_low": lo, "ci_high": hi})
        return pd.DataFrame(rows, columns=["predicted", "events", "mean predicted", "share met", "ci_low",
                                           "ci_high"])  # the columns even without events with a P

    def summary(self) -> str:
        """One line for stakeholders: how often the intervals held the realised value."""
        if self.n == 0:
            return "The forecasts could not be backtested: too little history."
        k = int(self.forecasts["covered"].sum())
        lo, hi = _wilson(k, self.n)
        horizons = self.forecasts["horizon"]
        text = (f"Backtested on {self.n} past forecasts ({int(horizons.min())} to {int(horizons.max())} periods "
                f"ahead), the {self.level:.0%} prediction intervals held the realised value {k / self.n:.0%} of the "
                f"time (95% CI {lo:.0%} to {hi:.0%}; calibrated: {self.level:.0%})")
        simple = self.forecasts["covered_simple"].dropna()
        if len(simple):
            text += f"; the earlier straight-line rule's held it {simple.mean():.0%} of the time"
        return text + "."

    @property
    def table(self) -> pd.DataFrame:
        return self.forecasts

    def plot(self, ax=None):
        """The reliability diagram: share met against mean predicted probability, with the diagonal."""
        from helpers.charts import ACCENT, new_axis  # noqa: PLC0415

        ax = new_axis(ax)
        r = self.reliability()
        ax.plot([0, 1], [0, 1], color="#8c959f", linestyle="--", linewidth=1, label="calibrated")
        ax.errorbar(r["mean predicted"], r["share met"], yerr=[r["share met"] - r["ci_low"], r["ci_high"] -
                    r["share met"]], fmt="o", color=ACCENT, label="backtest (95% CI)")
        ax.set_xlabel("predicted probability of meeting the threshold")
        ax.set_ylabel("share that met it")
        ax.set_title("Forecast probabilities against outcomes")
        ax.legend(loc="upper left", frameon=False)
        return ax


def _wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def backtest_series(series: pd.DataFrame, *, name: str = "series", freq: str = "month",
                    scale: Scale = Scale("identity", -math.inf, math.inf), level: float = 0.8,
                    max_horizon: int = 6, origins: int | Sequence[int] | None = None, min_history: int = 12,
                    history: int = 36, per_day: bool = False, simple: bool = True, spacing: int = 3) -> Backtest:
    """Backtest the window forecast on one series (module docstring).

    ``origins``: how many origins, stepping back ``spacing`` periods from the last one whose ``max_horizon``
    periods ahead were all observed (default: every origin with ``min_history`` periods of history), or
    explicit row positions of the origin periods. Each origin forecasts the periods ``origin + 1 ..
    origin + max_horizon`` that were then observed.
    """
    s = series.sort_values("period").reset_index(drop=True)
    s = s[np.isfinite(s["value"].astype(float))].reset_index(drop=True)
    step = 1 if freq == "month" else 3
    last_origin = len(s) - 2
    if origins is None:
        chosen = list(range(min_history - 1, last_origin + 1))
    elif isinstance(origins, int):
        newest = len(s) - 1 - max_horizon
        chosen = sorted(i for i in range(newest, min_history - 2, -max(spacing, 1))[:origins] if i >= 0)
    else:
        chosen = [int(i) for i in origins]
    rows, events = [], []
    spread = float(np.nanstd(np.diff(s["value"].to_numpy(dtype=float)))) if len(s) > 2 else 0.0
    # the simple rule's cleaned series once (its rows are s's rows when periods are distinct period starts)
    clean = _clean_series(s, freq) if simple else None
    if clean is not None and not (len(clean) == len(s) and clean["period"].is_unique
                                  and (clean["period"].to_numpy() == s["period"].to_numpy()).all()):
        clean = None
    for i in chosen:
        hist = s.iloc[max(0, i + 1 - history):i + 1]
        hist_clean = None if clean is None else clean.iloc[max(0, i + 1 - history):i + 1]
        origin_period = hist["period"].iloc[-1]
        as_of = period_end(origin_period, freq)
        try:  # the history's grid once for the model choice and every horizon (hist has finite values only)
            grid = regular_grid(hist, freq, scale, per_day) if len(hist) else None
            selected = model_for(hist, freq=freq, scale=scale, per_day=per_day, grid=grid)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue
        simple_intervals = {}
        if simple:  # the straight line of every horizon at once (one fit per origin)
            targets = [origin_period + pd.DateOffset(months=step * h) for h in range(1, max_horizon + 1)]
            simple_intervals = simple_rule_intervals(hist if hist_clean is None else hist_clean, targets, as_of,
                                                     level=level, bounds=(scale.lo, scale.hi), freq=freq,
                                                     cleaned=hist_clean is not None)
        for h in range(1, max_horizon + 1):
            target_period = origin_period + pd.DateOffset(months=step * h)
            realised = s[s["period"] == target_period]
            if realised.empty:
                continue
            truth = float(realised["value"].iloc[0])
            we = period_end(target_period, freq)
            try:
                f = forecast_window(hist, target_period, we, freq=freq, scale=scale, level=level,
                                    per_day=per_day, selected=selected, grid=grid)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                continue
            if f is None:
                continue
            covered_simple = np.nan
            if target_period in simple_intervals:
                low, high = simple_intervals[target_period]
                covered_simple = float(low <= truth <= high)
            rows.append({"series": name, "origin": origin_period, "horizon": h, "period": target_period,
                         "realised": truth, "forecast": f.value, "low": f.low, "high": f.high,
                         "method": f.method, "covered": float(f.low <= truth <= f.high),
                         "covered_simple": covered_simple,
                         "pit": f.probability(truth, "lower", Scale("log", 0.0, math.inf) if per_day else scale)})
            base = float(hist["value"].iloc[-1])
            for k in (-1.0, -0.5, 0.0, 0.5, 1.0):
                threshold = base + k * spread
                if scale.kind == "logit" and not scale.lo < threshold < scale.hi:
                    continue
                if scale.kind == "log" and threshold <= scale.lo:
                    continue
                for direction in ("raise", "lower"):
                    p = f.probability(threshold, direction, Scale("log", 0.0, math.inf) if per_day else scale)
                    met = truth >= threshold if direction == "raise" else truth <= threshold
                    events.append({"series": name, "origin": origin_period, "horizon": h, "threshold": threshold,
                                   "direction": direction, "p": p, "met": float(met)})
    return Backtest(pd.DataFrame(rows, columns=["series", "origin", "horizon", "period", "realised", "forecast",
                                                "low", "high", "method", "covered", "covered_simple", "pit"]),
                    pd.DataFrame(events, columns=["series", "origin", "horizon", "threshold", "direction", "p",
                                                  "met"]), level)


def simple_rule_intervals(series: pd.DataFrame, target_periods, as_of, *, level: float, bounds, freq: str = "month",
                          cleaned: bool = False, window: int = 24, min_points: int = 4) -> dict:
    """The earlier simple rule's prediction intervals (:func:`helpers.objectives_status.forecast_at`: a straight
    line by OLS over the last ``window`` months up to ``as_of``) for several target periods from one fit:
    ``{target period: (low, high)}`` for the targets past the last observed period, empty when the rule does not
    draw a line (fewer than ``min_points`` periods). ``forecast_at(series, period_end(p), as_of, ...)`` of each
    target gives the same interval with ``method == "linear trend"``; the backtest used to call it per horizon."""
    s = series if cleaned else _clean_series(series, freq)
    observed = _observed_up_to(s, as_of, window=10_000, freq=freq, cleaned=True)
    if observed.empty:
        return {}
    last = observed["period"].iloc[-1]
    ahead = {t: p for t in target_periods if (p := period_start(period_end(t, freq), freq)) > last}
    recent = _observed_up_to(s, as_of, window, freq, cleaned=True)
    if not ahead or len(recent) < min_points:
        return {}
    _, _, _, lows, highs = _predict(recent, list(ahead.values()), level, min_points, bounds)
    return {t: (float(lo), float(hi)) for t, lo, hi in zip(ahead, lows, highs)}


def combine(backtests: Sequence[Backtest]) -> Backtest:
    """One backtest from several (e.g. every objective of a department)."""
    parts = [b for b in backtests if b is not None]
    if not parts:
        return Backtest(pd.DataFrame(columns=["series", "origin", "horizon", "period", "realised", "forecast",
                                              "low", "high", "method", "covered", "covered_simple", "pit"]),
                        pd.DataFrame(columns=["series", "origin", "horizon", "threshold", "direction", "p", "met"]))
    return Backtest(pd.concat([b.forecasts for b in parts], ignore_index=True),
                    pd.concat([b.events for b in parts], ignore_index=True), parts[0].level,
                    [n for b in parts for n in b.notes])


def backtest_objectives(evaluation, *, origins: int = 6, max_horizon: int = 6, min_history: int = 12,
                        history: int = 36, spacing: int = 3) -> Backtest:
    """Backtest every objective of an :class:`helpers.objectives.ObjectiveEvaluation` on its own KPI series
    (as evaluated: complete periods up to the as-of date, counts per day): the last ``origins`` origins."""
    parts = []
    for oid, s in evaluation.series.items():
        if s is None or len(s) < min_history + 1:
            continue
        o = evaluation.plan.get(oid)
        info = evaluation.metrics.get(o.metric)
        scale = kpi_scale(info.unit if info else "", info.bounds if info else (None, None),
                          info.kind if info else "")
        parts.append(backtest_series(s, name=oid, freq=o.frequency, scale=scale, level=evaluation.level,
                                     max_horizon=max_horizon if o.frequency == "month" else max(1, max_horizon // 3),
                                     origins=origins, min_history=min_history, history=history,
                                     spacing=spacing if o.frequency == "month" else 1,
                                     per_day=bool(info is not None and info.per_day)))
    return combine(parts)


__all__ = ["BINS", "Backtest", "backtest_objectives", "backtest_series", "combine", "simple_rule_intervals"]
