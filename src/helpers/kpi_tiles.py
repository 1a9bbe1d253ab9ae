"""KPI tiles for the first screen of the department page: for each KPI of the department's objectives, the
latest period's value with its 95% interval and n, the change against the period before with its test
(``helpers.kpis.compare_kpi``, as computed by the objectives' evaluation), the distance to the target and a
small sparkline of the last periods.

The tiles are built from an ``ObjectiveEvaluation`` (its series, comparisons and targets), so every number
on a tile is the same number, rounded the same way (``helpers.objectives.format_value``), as in the status
table below it. One tile per KPI: the KPI of the highest objective in the cascade that uses it, with that
objective's scope (a team, a channel...) and target.

The HTML is plain ``div``/``span`` markup styled by the ``/* department page */`` rules of ``kit.css``; the
sparkline is drawn with spans whose heights are inline styles (pages allow no scripts and no external or
inline SVG), with a ``role="img"`` and an ``aria-label`` that reads the values out.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.formatting import fmt_number, fmt_p_value, html_escape

__all__ = ["KpiTile", "sparkline_html", "tiles_from_evaluation", "tiles_html"]

_FILTER_NAMES = {"team": "team", "agent": "agent", "channel": "channel", "segment": "segment", "region": "region"}


@dataclass
class KpiTile:
    """One tile. Numbers are on the KPI's reporting scale (percent, points, hours); texts are ready to show."""

    kpi: str
    label: str
    scope: str
    unit: str
    objective_id: str
    objective_title: str
    status: str
    period: str
    value: float
    ci_low: float
    ci_high: float
    n: float
    value_text: str
    interval_text: str
    previous_period: str = ""
    change: float = float("nan")
    change_p: float = float("nan")
    change_significant: bool | None = None
    change_text: str = ""
    change_note: str = ""
    target: float = float("nan")
    target_met: bool | None = None
    target_text: str = ""
    distance_text: str = ""
    spark: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["period", "value"]))
    higher_is_better: bool = True

    def to_summary(self) -> dict:
        """The page protocol's KPI record (``write_report_summary(kpis=...)``)."""
        return {"kpi": self.kpi, "label": self.label + (f" ({self.scope})" if self.scope else ""),
                "value": _finite_or_none(self.value), "ci_low": _finite_or_none(self.ci_low),
                "ci_high": _finite_or_none(self.ci_high), "n": None if not np.isfinite(self.n) else int(self.n),
                "period": self.period, "unit": self.unit, "change": _finite_or_none(self.change),
                "change_significant": self.change_significant, "value_text": self.value_text,
                "target": _finite_or_none(self.target)}


def _finite_or_none(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _scope(filters: Mapping[str, tuple[str, ...]], names: Mapping[str, str]) -> str:
    parts = []
    for key, values in filters.items():
        shown = [names.get(v, v) if key == "agent" else v for v in values]
        parts.append(f"{_FILTER_NAMES.get(key, key)} {', '.join(shown)}")
    return "; ".join(parts)


def _difference_text(diff: float, unit: str, per_day: bool) -> str:
    if per_day:
        return f"{fmt_number(diff, 1, signed=True)} per day"
    if unit in ("%", "points"):  # one decimal, as the NPS value itself: a 0.4-point change is not "0 points"
        text = fmt_number(diff, 1, signed=True)
        return f"{text} {'point' if text.lstrip('+-') == '1.0' else 'points'}"
    if unit == "hours":
        return f"{fmt_number(diff, 1, signed=True)} h"
    return fmt_number(diff, 2, signed=True)


def tiles_from_evaluation(evaluation, *, periods: int = 12, names: Mapping[str, str] | None = None) -> list[KpiTile]:
    """One :class:`KpiTile` per KPI of the evaluated objectives (cascade order), from the evaluation's series
    (value, interval, n, sparkline over the last ``periods`` periods), its period-over-period comparison and
    the objective's target. ``names`` maps agent ids to display names (the org table)."""
    from helpers.objectives import format_value  # noqa: PLC0415
    from helpers.objectives_status import meets  # noqa: PLC0415

    if evaluation is None:
        return []
    names = dict(names or {})
    if not names:
        org = getattr(getattr(evaluation, "dataset", None), "org", None)
        if org is not None:
            names = dict(zip(org["person_id"].astype(str), org["name"].astype(str)))
    order = [oid for oid in evaluation.cascade()["id"]] if len(evaluation.table) else []
    chosen: dict[str, str] = {}
    levels = evaluation.table.set_index("id")["level"]
    for oid in sorted(order, key=lambda i: (int(levels[i]), order.index(i))):
        metric = evaluation.plan.get(oid).metric
        chosen.setdefault(metric, oid)
    tiles = []
    for oid in order:
        o = evaluation.plan.get(oid)
        if chosen.get(o.metric) != oid:
            continue
        r = evaluation.row(oid)
        info = evaluation.metrics.get(o.metric)
        fmt = (lambda v, info=info: format_value(v, info))
        series = evaluation.series.get(oid)
        series = series.dropna(subset=["value"]).sort_values("period") if series is not None else None
        unit = info.unit if info else ""
        per_day = bool(info and info.per_day)
        label = (info.label + (" per day" if per_day else "")) if info else o.metric
        scope = _scope(o.filters, names)
        if info is not None and info.table == "customers":  # customers carry no department: company-wide
            scope = f"all customers{', ' + scope if scope else ''}"
        tile = KpiTile(kpi=o.metric, label=label, scope=scope, unit=unit, objective_id=oid,
                       objective_title=str(r["title"]), status=str(r["status"]), period="", value=float("nan"),
                       ci_low=float("nan"), ci_high=float("nan"), n=float("nan"), value_text="n/a",
                       interval_text="", target=float(o.target), target_text=fmt(o.target),
                       higher_is_better=bool(info.higher_is_better) if info else o.direction == "raise")
        if series is not None and len(series):
            last = series.iloc[-1]
            from helpers.objectives import period_label  # noqa: PLC0415

            tile.period = period_label(last["period"], o.frequency)
            tile.value, tile.n = float(last["value"]), float(last.get("n", np.nan))
            tile.ci_low, tile.ci_high = float(last.get("ci_low", np.nan)), float(last.get("ci_high", np.nan))
            from helpers.objectives import value_and_interval  # noqa: PLC0415 (rounded as the "Now" cell)

            tile.value_text, ci = value_and_interval(tile.value, tile.ci_low, tile.ci_high, info)
            if ci:
                tile.interval_text = f"95% CI {ci}"
            tile.spark = series[["period", "value"]].tail(periods).reset_index(drop=True)
            met = meets(tile.value, o.target, o.direction)
            tile.target_met = bool(met)
            gap = abs(tile.value - o.target)
            gap_text = _difference_text(gap, unit, per_day).lstrip("+")
            tile.distance_text = (f"meets it by {gap_text}" if met else f"{gap_text} to go")
            if len(series) >= 2:
                tile.previous_period = period_label(series.iloc[-2]["period"], o.frequency)
        change = evaluation.changes.get(oid) if hasattr(evaluation, "changes") else None
        if change is not None and np.isfinite(getattr(change, "difference", np.nan)):
            tile.change, tile.change_p = float(change.difference), float(change.p_value)
            tile.change_significant = bool(change.significant())
            tile.change_text = f"{_difference_text(tile.change, unit, per_day)} vs {tile.previous_period}"
            tile.change_note = (("significant, " if tile.change_significant else "within noise, ")
                                + fmt_p_value(tile.change_p, prefix=True))
            if getattr(change, "sample", None):  # an engine test of medians on seeded samples: say how large
                tile.change_note += "; tested on seeded samples of " + " and ".join(
                    f"{fmt_number(m)} of {fmt_number(n)}" for m, n in change.sample.values())
        tiles.append(tile)
    return tiles


def sparkline_html(values, *, target: float | None = None, height: int = 24, label: str = "") -> str:
    """A step sparkline as HTML: one short dash per period at its height (a span whose inline ``height``
    places its top border), the last period darker, the target as a dashed line. ``values`` are floats
    (oldest first); the vertical range spans the values and the target. ``role="img"`` with ``label``."""
    v = np.asarray([float(x) for x in values], dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return ""
    pool = np.append(finite, target) if target is not None and np.isfinite(target) else finite
    lo, hi = float(pool.min()), float(pool.max())
    span = hi - lo if hi > lo else 1.0

    def px(x):
        return int(round(2 + (x - lo) / span * (height - 4)))

    points = []
    for i, x in enumerate(v):
        cls = "spark-pt spark-last" if i == len(v) - 1 else "spark-pt"
        h = px(x) if np.isfinite(x) else 0
        points.append(f'<span class="{cls}" style="height:{h}px"></span>')
    target_line = (f'<span class="spark-target" style="height:{px(target)}px"></span>'
                   if target is not None and np.isfinite(target) else "")
    return (f'<span class="kpi-spark" role="img" aria-label="{html_escape(label)}" '
            f'style="height:{height}px">{target_line}{"".join(points)}</span>')


def _tile_html(t: KpiTile) -> str:
    from helpers.charts import status_badge_html  # noqa: PLC0415

    change = ""
    if t.change_text:
        mark = "●" if t.change_significant else "○"
        cls = "kpi-change significant" if t.change_significant else "kpi-change"
        change = (f'<div class="{cls}"><span aria-hidden="true">{mark}</span> {html_escape(t.change_text)} '
                  f'<span class="kpi-note">({html_escape(t.change_note)})</span></div>')
    spark_label = ""
    if len(t.spark):
        first, last = t.spark["period"].iloc[0], t.spark["period"].iloc[-1]
        spark_label = (f"{t.label} from {pd.Timestamp(first):%b %Y} to {pd.Timestamp(last):%b %Y}, between "
                       f"{fmt_number(t.spark['value'].min(), 1)} and {fmt_number(t.spark['value'].max(), 1)}; "
                       f"target {t.target_text}")
    spark = sparkline_html(t.spark["value"], target=t.target, label=spark_label) if len(t.spark) else ""
    n = f"n = {fmt_number(t.n)}" if np.isfinite(t.n) else ""
    interval = " · ".join(x for x in (t.interval_text, n) if x)
    target_cls = "kpi-target met" if t.target_met else "kpi-target"
    distance = f": {html_escape(t.distance_text)}" if t.distance_text else ""
    return ('<div class="kpi-tile">'
            f'<div class="kpi-label">{html_escape(t.label)}'
            + (f' <span class="kpi-scope">{html_escape(t.scope)}</span>' if t.scope else "")
            + "</div>"
            f'<div class="kpi-value-row"><span class="kpi-value">{html_escape(t.value_text)}</span> '
            f'<span class="kpi-period">{html_escape(t.period)}</span>{spark}</div>'
            f'<div class="kpi-interval">{html_escape(interval)}</div>'
            f"{change}"
            f'<div class="{target_cls}">Target {html_escape(t.target_text)}{distance} '
            f"{status_badge_html(t.status)}</div>"
            "</div>")


def tiles_html(tiles: list[KpiTile]) -> str:
    """The tiles as a wrapping grid (``div.kpi-tiles``); an empty list gives a sentence saying so."""
    if not tiles:
        return '<p class="kpi-tiles-empty">No KPI to show: the department has no objective with data.</p>'
    return '<div class="kpi-tiles">' + "".join(_tile_html(t) for t in tiles) + "</div>"
