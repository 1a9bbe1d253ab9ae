"""Department objectives: SMART objectives from params, cascading goals, verdicts with a probability.

A department's objectives live in ``params/departments/<slug>.yaml`` (format in ``params/README.md``).
This module

- loads and validates them (:func:`load_objectives`, :func:`load_department`) into an
  :class:`ObjectivePlan`; any schema problem raises :class:`helpers.errors.ObjectiveError` naming the file,
  the objective id and the field;
- lints them for SMART problems (:func:`lint_objectives`: warnings, not errors; a target on the wrong side
  of a computed baseline is warned at evaluation);
- evaluates them (:func:`evaluate_objectives` -> :class:`ObjectiveEvaluation`), each on its own window
  (``Objective.judged_on``: the deadline's month or quarter, the year to the deadline, the objective's span or
  a rolling window; :mod:`helpers.objectives_status`): the window's value computed from its rows with its
  interval and n ("now": the window so far, or the latest period before it begins), signed OKR progress,
  a calendar-aware forecast of the window with P(target met) (:mod:`helpers.objectives_forecast`), and a
  status by explicit thresholds on that probability (or, after the deadline, on the observed window).

Counts (ticket volume, responses) are judged per day, since months differ in length. The default as-of date
is the last day of the last complete month in the data (:func:`helpers.data.default_as_of`).

The KPI values come from ``helpers.kpis.kpi_series`` (computed in DuckDB) by default; any callable
``series_provider(metric, filters, start, end, freq) -> DataFrame[period, value, ci_low, ci_high, n]`` can be
passed instead (tests use constructed series; called with ``freq=None`` it should return the one value of the
window ``start .. end``, else the window is approximated by the n-weighted mean of its periods). One objective
failing (metric absent from the data, no data in its period) becomes a row with status ``"no data"`` and a
message; it never stops the others.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.errors import KitError, ObjectiveError
from helpers.formatting import shorten
from helpers.params_yaml import load_params_yaml
from helpers.results import displayable
from helpers.objectives_status import (DEFAULT_LEVEL, FREQ_MONTHS, STATUSES, Forecast, Window, classify_status,
                                       expected_progress, forecast_at, infer_window, make_window, meets,
                                       month_start, months_between, period_end, period_start, progress_score)

ROLES = ("director", "manager", "representative")
DIRECTIONS = ("raise", "lower")
FILTER_KEYS = ("channel", "team", "segment", "region", "agent")
"""The usual filters (examples in messages); any other column of the data can filter too (checked at --dry-run)."""
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOP_LEVEL_KEYS = ("department", "people", "objectives")
OBJECTIVE_KEYS = ("id", "title", "metric", "filters", "baseline", "target", "direction", "start", "deadline",
                  "owner", "parent", "frequency", "window", "note")
REQUIRED_OBJECTIVE_KEYS = ("id", "title", "metric", "baseline", "target", "start", "deadline", "owner")
MAX_OBJECTIVES_PER_OWNER = 2
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

@dataclass(frozen=True)
class MetricInfo:
    """What the objectives need to know about a KPI."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    bounds: tuple[float | None, float | None]
    periodic: bool = True  # has a time dimension (can be tracked month by month)
    kind: str = ""  # the KPI's estimator kind in helpers.kpis ("count" KPIs are judged per day)
    table: str = ""  # responses | tickets | customers

    @property
    def per_day(self) -> bool:
        """Counts are compared and forecast per day (periods differ in length)."""
        return self.kind == "count"


def metric_registry() -> dict[str, MetricInfo]:
    """The KPIs an objective may use: the registry ``helpers.kpis.KPIS`` (label, unit, direction, bounds)."""
    from helpers.kpi_registry import KPIS  # noqa: PLC0415 (the registry alone: no pandas/SciPy statistics)

    out = {}
    for name, spec in KPIS.items():
        get = spec.get if isinstance(spec, Mapping) else (lambda key, default=None, s=spec: getattr(s, key, default))
        bounds = get("bounds", None) or (None, None)
        out[name] = MetricInfo(name, str(get("label", name)), str(get("unit", "")),
                               bool(get("higher_is_better", True)), tuple(bounds), bool(get("periodic", True)),
                               str(get("kind", "") or ""), str(get("table", "") or ""))
    return out


# --------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Owner:
    """Who owns an objective: a person id from ``org`` (preferred) or a plain name, and a role."""

    role: str
    person: str | None = None
    name: str | None = None

    def label(self, names: Mapping[str, str] | None = None) -> str:
        """"Name (role)" using ``names`` (person_id -> display name) when the person is known."""
        who = (names or {}).get(self.person or "", None) or self.name or self.person or "unassigned"
        return f"{who} ({self.role})"

    @property
    def key(self) -> str:
        return self.person or self.name or ""


@dataclass(frozen=True)
class Baseline:
    """A fixed value, or a period (start, end) whose KPI value is the baseline."""

    value: float | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None

    def describe(self) -> str:
        if self.value is not None:
            return f"{self.value:g}"
        return f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"


@dataclass(frozen=True)
class Objective:
    """One SMART objective (see ``params/README.md`` for each field)."""

    id: str
    title: str
    metric: str
    target: float
    direction: str
    start: pd.Timestamp
    deadline: pd.Timestamp
    owner: Owner
    baseline: Baseline
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    parent: str | None = None
    frequency: str = "month"
    note: str = ""
    window: Window | None = None

    @property
    def judged_on(self) -> Window:
        """The window the objective is judged on (declared, or inferred; ``helpers.objectives_status``)."""
        return self.window if self.window is not None else infer_window(self.start, self.deadline, self.frequency)


@dataclass(frozen=True)
class ObjectivePlan:
    """A department's objectives as loaded from its params file."""

    path: str
    department: str
    objectives: tuple[Objective, ...]
    people: Mapping[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        return [o.id for o in self.objectives]

    def get(self, objective_id: str) -> Objective:
        for o in self.objectives:
            if o.id == objective_id:
                return o
        raise KeyError(f"{self.path}: no objective {objective_id!r}; objectives are {self.ids}")

    def children(self, objective_id: str | None) -> list[Objective]:
        """Objectives whose parent is ``objective_id`` (``None``: the top-level ones), in file order."""
        return [o for o in self.objectives if o.parent == objective_id]

    def depth(self, objective_id: str) -> int:
        d, o = 0, self.get(objective_id)
        while o.parent is not None:
            d, o = d + 1, self.get(o.parent)
        return d


# ---------------------------------------------------------------------------------------------- loading
def _as_timestamp(value, path, oid, fld) -> pd.Timestamp:
    if isinstance(value, (date, datetime)):
        return pd.Timestamp(value).normalize()
    if isinstance(value, str):
        try:
            return pd.Timestamp(date.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ObjectiveError(path, f"expected a date as YYYY-MM-DD, got {shorten(value)}", objective_id=oid, field=fld)


def _as_number(value, path, oid, fld) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ObjectiveError(path, f"expected a number, got {shorten(value)} ({type(value).__name__})",
                             objective_id=oid, field=fld)
    return float(value)


def _as_text(value, path, oid, fld, *, required=True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ObjectiveError(path, f"expected non-empty text, got {shorten(value)}", objective_id=oid, field=fld)
    return value.strip()


def _parse_owner(raw, path, oid) -> Owner:
    if not isinstance(raw, Mapping):
        raise ObjectiveError(path, "expected a mapping like {person: <org person_id>, role: manager}, "
                             f"got {shorten(raw)}", objective_id=oid, field="owner")
    unknown = set(raw) - {"person", "name", "role"}
    if unknown:
        raise ObjectiveError(path, f"unknown key(s) {shorten(sorted(unknown, key=str), 200)}; expected person, name, role",
                             objective_id=oid, field="owner")
    role = raw.get("role")
    if role not in ROLES:
        raise ObjectiveError(path, f"role must be one of {list(ROLES)}, got {shorten(role)}", objective_id=oid,
                             field="owner.role")
    person = raw.get("person")
    name = raw.get("name")
    if person is None and name is None:
        raise ObjectiveError(path, "give the owner's org person id (person) or a name", objective_id=oid,
                             field="owner.person")
    if person is not None:
        person = _as_text(str(person) if isinstance(person, int) else person, path, oid, "owner.person")
    if name is not None:
        name = _as_text(name, path, oid, "owner.name")
    return Owner(role=role, person=person, name=name)


def _parse_baseline(raw, path, oid) -> Baseline:
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"value", "start", "end"}
        if unknown:
            raise ObjectiveError(path, f"unknown key(s) {shorten(sorted(unknown, key=str), 200)}; give a number, {{value: x}} or "
                                 "{start: date, end: date}", objective_id=oid, field="baseline")
        if "value" in raw:
            return Baseline(value=_as_number(raw["value"], path, oid, "baseline.value"))
        if "start" not in raw or "end" not in raw:
            raise ObjectiveError(path, "a baseline period needs both start and end", objective_id=oid,
                                 field="baseline")
        start = _as_timestamp(raw["start"], path, oid, "baseline.start")
        end = _as_timestamp(raw["end"], path, oid, "baseline.end")
        if end < start:
            raise ObjectiveError(path, f"baseline end {end:%Y-%m-%d} is before its start {start:%Y-%m-%d}",
                                 objective_id=oid, field="baseline.end")
        return Baseline(start=start, end=end)
    return Baseline(value=_as_number(raw, path, oid, "baseline"))


def _parse_filters(raw, path, oid) -> dict[str, tuple[str, ...]]:
    """An objective's ``filters:``: column -> text or a list of text. Any column name is accepted here (the
    contract's channel/team/agent_id..., a customer dimension such as segment, region, plan or any column an
    export profile keeps); whether the data has it, and the values, is checked against the data at
    ``--dry-run`` (:mod:`helpers.params_check`, by :mod:`helpers.selection`'s rules). The short names of
    :data:`helpers.selection.ALIASES` (``agent`` -> ``agent_id``) stay accepted. Refused here: keys that are
    not text, the department (the file's own), two keys naming one column, and values that are not text."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ObjectiveError(path, f"expected a mapping like {{channel: phone}}, got {shorten(raw)}", objective_id=oid,
                             field="filters")
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for key, val in raw.items():
        if not isinstance(key, str) or not _FILTER_KEY.match(key):
            raise ObjectiveError(path, f"a filter must be a column name (letters, digits, _), got {shorten(key)}; "
                                       f"e.g. {list(FILTER_KEYS)} or a customers column such as plan",
                                 objective_id=oid, field=f"filters.{key[:40] if isinstance(key, str) else shorten(key, 40)}")
        column = FILTER_COLUMNS.get(key, key)
        if column == "department":
            raise ObjectiveError(path, "filters cannot name the department: the file's department already selects "
                                       "its rows", objective_id=oid, field=f"filters.{key}")
        if column in seen:
            raise ObjectiveError(path, f"filters {seen[column]!r} and {key!r} name the same column {column!r}; keep "
                                       "one", objective_id=oid, field=f"filters.{key}")
        seen[column] = key
        vals = val if isinstance(val, list) else [val]
        if not vals or not all(isinstance(v, str) and v for v in vals):
            raise ObjectiveError(path, f"expected text or a list of text, got {shorten(val)}", objective_id=oid,
                                 field=f"filters.{key}")
        out[key] = tuple(vals)
    return out


def _parse_objective(raw, index: int, path: str, metrics: Mapping[str, MetricInfo]) -> Objective:
    if not isinstance(raw, Mapping):
        raise ObjectiveError(path, f"objective #{index + 1} must be a mapping of fields, got {shorten(raw)}",
                             field="objectives")
    oid = raw.get("id")
    if not isinstance(oid, str) or not _ID_PATTERN.match(oid):
        raise ObjectiveError(path, f"objective #{index + 1} needs an id of letters, digits, '-', '_' or '.', "
                             f"got {shorten(oid)}", field="id")
    unknown = sorted(set(raw) - set(OBJECTIVE_KEYS), key=str)
    if unknown:
        raise ObjectiveError(path, f"unknown field(s) {shorten(unknown, 200)}; allowed fields are {list(OBJECTIVE_KEYS)}",
                             objective_id=oid, field=shorten(unknown[0]).strip("'"))
    for key in REQUIRED_OBJECTIVE_KEYS:
        if raw.get(key) is None:
            raise ObjectiveError(path, "is missing (required)", objective_id=oid, field=key)
    metric = _as_text(raw["metric"], path, oid, "metric")
    if metric not in metrics:
        raise ObjectiveError(path, f"unknown metric {shorten(metric)}; known metrics are {sorted(metrics)}",
                             objective_id=oid, field="metric")
    if not metrics[metric].periodic:
        trackable = sorted(k for k, v in metrics.items() if v.periodic)
        raise ObjectiveError(path, f"metric {metric!r} has no time dimension in the data contract, so it cannot "
                             f"be tracked against a deadline; trackable metrics are {trackable}",
                             objective_id=oid, field="metric")
    direction = raw.get("direction")
    if direction is None:
        direction = "raise" if metrics[metric].higher_is_better else "lower"
    elif direction not in DIRECTIONS:
        raise ObjectiveError(path, f"direction must be 'raise' or 'lower', got {shorten(direction)}", objective_id=oid,
                             field="direction")
    start = _as_timestamp(raw["start"], path, oid, "start")
    deadline = _as_timestamp(raw["deadline"], path, oid, "deadline")
    if deadline <= start:
        raise ObjectiveError(path, f"deadline {deadline:%Y-%m-%d} is not after start {start:%Y-%m-%d}",
                             objective_id=oid, field="deadline")
    target = _as_number(raw["target"], path, oid, "target")
    baseline = _parse_baseline(raw["baseline"], path, oid)
    if baseline.value is not None and baseline.value == target:
        raise ObjectiveError(path, f"target equals the baseline ({target:g}): nothing to achieve",
                             objective_id=oid, field="target")
    if baseline.value is not None and meets(baseline.value, target, direction):
        raise ObjectiveError(path, f"target {target:g} is already met by the baseline {baseline.value:g} "
                             f"for direction {direction!r}", objective_id=oid, field="target")
    frequency = raw.get("frequency", "month")
    if frequency not in FREQ_MONTHS:
        raise ObjectiveError(path, f"frequency must be one of {list(FREQ_MONTHS)}, got {shorten(frequency)}",
                             objective_id=oid, field="frequency")
    window = _parse_window(raw.get("window"), start, deadline, frequency, path, oid)
    parent = raw.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ObjectiveError(path, f"expected the id of another objective, got {shorten(parent)}", objective_id=oid,
                             field="parent")
    return Objective(id=oid, title=_as_text(raw["title"], path, oid, "title"), metric=metric, target=target,
                     direction=direction, start=start, deadline=deadline, owner=_parse_owner(raw["owner"], path, oid),
                     baseline=baseline, filters=_parse_filters(raw.get("filters"), path, oid), parent=parent,
                     frequency=frequency, window=window,
                     note=_as_text(raw.get("note"), path, oid, "note", required=False))


_ROLLING = re.compile(r"^rolling\s+(\d+)\s+months?$")


def _parse_window(raw, start, deadline, frequency, path, oid) -> Window | None:
    """``window:`` of the params file: month, quarter, year, objective or "rolling N months" (None: inferred)."""
    if raw is None:
        return None
    text = raw.strip().lower() if isinstance(raw, str) else None
    match = _ROLLING.match(text or "")
    if text not in ("month", "quarter", "year", "objective") and not match:
        raise ObjectiveError(path, f"window must be month, quarter, year, objective or 'rolling N months', got "
                             f"{shorten(raw)}", objective_id=oid, field="window")
    if frequency == "quarter" and (text == "month" or (match and int(match.group(1)) % 3)):
        raise ObjectiveError(path, f"window {shorten(raw)} is shorter than the objective's frequency (quarter)",
                             objective_id=oid, field="window")
    if match:
        months = int(match.group(1))
        if not 1 <= months <= 36:
            raise ObjectiveError(path, f"a rolling window needs 1 to 36 months, got {months}", objective_id=oid,
                                 field="window")
        return make_window("rolling", start, deadline, months=months, declared=True)
    return make_window(text, start, deadline, declared=True)


def _check_tree(objectives: list[Objective], path: str) -> None:
    by_id: dict[str, Objective] = {}
    for o in objectives:
        if o.id in by_id:
            raise ObjectiveError(path, "duplicate id (each objective needs its own)", objective_id=o.id, field="id")
        by_id[o.id] = o
    for o in objectives:
        if o.parent is not None and o.parent not in by_id:
            raise ObjectiveError(path, f"parent {shorten(o.parent)} does not exist; objectives are {list(by_id)}",
                                 objective_id=o.id, field="parent")
    for o in objectives:
        seen, cur = [o.id], o
        while cur.parent is not None:
            if cur.parent in seen:
                cycle = " -> ".join(seen[seen.index(cur.parent):] + [cur.parent])
                raise ObjectiveError(path, f"parents form a cycle: {cycle}", objective_id=o.id, field="parent")
            seen.append(cur.parent)
            cur = by_id[cur.parent]


def _parse_people(raw, path) -> dict[str, object]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ObjectiveError(path, f"expected a mapping (director, managers, representatives), got {shorten(raw)}",
                             field="people")
    unknown = set(raw) - {"director", "managers", "representatives"}
    if unknown:
        raise ObjectiveError(path, f"unknown key(s) {shorten(sorted(unknown, key=str), 200)}; expected director, managers, "
                             "representatives", field="people")
    people: dict[str, object] = {}
    if raw.get("director") is not None:
        if not isinstance(raw["director"], str):
            raise ObjectiveError(path, f"expected a person id, got {shorten(raw['director'])}", field="people.director")
        people["director"] = raw["director"]
    for key in ("managers", "representatives"):
        val = raw.get(key)
        if val is None:
            continue
        if val == "org":
            people[key] = "org"
        elif isinstance(val, list) and all(isinstance(v, str) for v in val):
            people[key] = tuple(val)
        else:
            raise ObjectiveError(path, f"expected a list of person ids or 'org' (take them from the org table), "
                                 f"got {shorten(val)}", field=f"people.{key}")
    return people


def parse_objectives(document, path: str = "<objectives>", *,
                     metrics: Mapping[str, MetricInfo] | None = None) -> ObjectivePlan:
    """Validate an already-parsed YAML document (a dict) into an :class:`ObjectivePlan`."""
    metrics = metric_registry() if metrics is None else metrics
    if not isinstance(document, Mapping):
        raise ObjectiveError(path, f"expected a mapping with keys {list(TOP_LEVEL_KEYS)}, got "
                             f"{type(document).__name__}")
    unknown = sorted(set(document) - set(TOP_LEVEL_KEYS), key=str)
    if unknown:
        raise ObjectiveError(path, f"unknown key(s) {shorten(unknown, 200)}; expected {list(TOP_LEVEL_KEYS)}",
                             field=shorten(unknown[0]).strip("'"))
    department = document.get("department")
    if not isinstance(department, str) or not department.strip():
        raise ObjectiveError(path, f"expected the department's name as in the data, got {shorten(department)}",
                             field="department")
    raw_objectives = document.get("objectives")
    if not isinstance(raw_objectives, list) or not raw_objectives:
        raise ObjectiveError(path, "expected a non-empty list of objectives", field="objectives")
    objectives = [_parse_objective(raw, i, path, metrics) for i, raw in enumerate(raw_objectives)]
    _check_tree(objectives, path)
    plan = ObjectivePlan(path=path, department=department.strip(), objectives=tuple(objectives),
                         people=_parse_people(document.get("people"), path))
    return ObjectivePlan(path=plan.path, department=plan.department, objectives=plan.objectives,
                         people=plan.people, warnings=tuple(lint_objectives(plan, metrics=metrics)))


def load_objectives(path) -> ObjectivePlan:
    """Read and validate ``params/departments/<slug>.yaml``; raises ``ObjectiveError`` naming file/id/field."""
    path = Path(path)
    # bounded size, UTF-8, no YAML anchors/aliases (an alias bomb is refused, not expanded); names file and line
    document = load_params_yaml(path, error=ObjectiveError)
    return parse_objectives(document, str(path))


def department_slug(name: str) -> str:
    """``"Technical Support"`` -> ``"technical_support"`` (the params file name)."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def load_department(slug: str, params_dir="params/departments") -> ObjectivePlan:
    """Load ``<params_dir>/<slug>.yaml``; an unknown department lists the ones that exist."""
    params_dir = Path(params_dir)
    path = params_dir / f"{slug}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise ObjectiveError(path, f"unknown department {shorten(slug)}: no such params file; departments with "
                             f"objectives are {known}", field="department")
    return load_objectives(path)


# ------------------------------------------------------------------------------------------------- lint
def lint_objectives(plan: ObjectivePlan, *, metrics: Mapping[str, MetricInfo] | None = None) -> list[str]:
    """SMART warnings that need no data: perfect-score targets, too many objectives for one owner, a child
    whose deadline is after its parent's, a direction against the metric's good direction."""
    metrics = metric_registry() if metrics is None else metrics
    out = []
    for o in plan.objectives:
        info = metrics.get(o.metric)
        if info is not None:
            best = info.bounds[1] if info.higher_is_better else info.bounds[0]
            if best is not None and o.direction == ("raise" if info.higher_is_better else "lower") and \
                    meets(o.target, best, o.direction):
                out.append(f"{plan.path}: objective {o.id!r}: target {o.target:g} is the best possible "
                           f"{info.label} ({best:g}); a perfect score is not achievable, set a stretch but "
                           "realistic target")
            if o.direction != ("raise" if info.higher_is_better else "lower"):
                out.append(f"{plan.path}: objective {o.id!r}: direction {o.direction!r} works against "
                           f"{info.label}, where {'higher' if info.higher_is_better else 'lower'} is better")
        if o.parent is not None:
            parent = plan.get(o.parent)
            if o.deadline > parent.deadline:
                out.append(f"{plan.path}: objective {o.id!r}: deadline {o.deadline:%Y-%m-%d} is after its "
                           f"parent {parent.id!r}'s deadline {parent.deadline:%Y-%m-%d}")
    counts: dict[str, list[str]] = {}
    for o in plan.objectives:
        counts.setdefault(o.owner.key, []).append(o.id)
    for owner, ids in counts.items():
        if len(ids) > MAX_OBJECTIVES_PER_OWNER:
            out.append(f"{plan.path}: owner {owner!r} has {len(ids)} objectives ({', '.join(ids)}); more than "
                       f"{MAX_OBJECTIVES_PER_OWNER} dilutes focus")
    return out


def plausibility_warning(objective: Objective, series: pd.DataFrame, baseline: float, path: str = "") -> str | None:
    """Warn when the improvement needed per month exceeds the best month-over-month change in ``series``.

    Needed per month: ``|target - baseline| / months(start -> deadline)`` (calendar months, the
    deadline's day counted, so 1 Jul - 30 Sep is 3 months); best change: the largest
    period-over-period move in the objective's direction over the whole history (consecutive periods
    only), per month (a quarterly series' change divided by 3).
    """
    s = series.dropna(subset=["value"]).sort_values("period")
    if len(s) < 3 or not np.isfinite(baseline):
        return None
    step = FREQ_MONTHS[objective.frequency]
    periods = pd.to_datetime(s["period"]).map(month_start)
    gaps = np.array([months_between(a, b) for a, b in zip(periods.iloc[:-1], periods.iloc[1:])])
    diffs = np.diff(s["value"].to_numpy(dtype=float))[gaps == step] / step
    if diffs.size == 0:
        return None
    best = float(diffs.max() if objective.direction == "raise" else -diffs.min())
    months = max(months_between(objective.start, objective.deadline + pd.Timedelta(days=1)), 1)
    needed = abs(objective.target - baseline) / months
    if best <= 0 or needed > best:
        return (f"{path}: objective {objective.id!r}: needs {needed:.3g} per month from {baseline:.3g} to "
                f"{objective.target:g} over {months} month(s), more than the best {objective.frequency}-over-"
                f"{objective.frequency} change ever seen ({max(best, 0):.3g} per month); the target is not "
                "plausible from history")
    return None


# ------------------------------------------------------------------------------------------- evaluation
SeriesProvider = Callable[..., pd.DataFrame]
"""``provider(metric, filters, start, end, freq="month") -> DataFrame[period, value, ci_low, ci_high, n]``."""

TABLE_COLUMNS = ["id", "parent", "level", "title", "owner", "owner_role", "metric", "metric_label", "direction",
                 "start", "deadline", "window", "window_start", "window_end", "current", "ci_low", "ci_high", "n",
                 "current_period", "current_label", "baseline", "target", "progress", "expected_progress",
                 "forecast", "forecast_low", "forecast_high", "forecast_method", "p_met", "status",
                 "status_detail", "sentence", "change", "message", "reason"]
"""``message``: why an objective has no verdict, for the analyst (file, objective id, field: where to fix it);
``reason``: the same for readers (no path, id or KPI code name), used in ``sentence``."""


from helpers.selection import ALIASES as FILTER_COLUMNS  # noqa: E402  (agent -> agent_id, customer -> customer_id)
"""Filter keys of the params file that have a different column name in the data contract (the one alias table of
:mod:`helpers.selection`, shared by every analysis function)."""


class KpiSource:
    """KPI values for one department from a ``helpers.data.Dataset``.

    ``series`` (per period), ``window_value`` (one value for a window: ``freq=None``), ``estimate`` (one pooled
    value for a period, ``compute_kpi``) and ``compare`` (period-over-period test; counts per day). With an
    ``engine`` (:mod:`helpers.engine`; DuckDB over the dataset's connection by default, Spark from the report
    config) the series and windows of the responses' and tickets' KPIs and every comparison come from engine
    aggregates (:func:`helpers.engine.aggregates.kpi_series_from_aggregates`, ``compare_from_aggregates``:
    grouped counts, sums, sums of squares, order statistics, retention counts; segment filters joined in the
    engine), so no rows reach pandas; the numbers equal ``helpers.kpis.kpi_series``/``compare_kpi`` on the rows
    (tests/test_objectives_engine.py, tests/test_compare_engine.py). The bootstrap comparison of medians reads
    at most 20,000 values per period (all of them below that: the same numbers; a seeded sample above, said in
    the comparison's method). The series of customer KPIs (retention, churn) are counted by
    ``helpers.kpis.kpi_series`` in the dataset's DuckDB. The department filter
    applies to the KPIs of responses and tickets; customers carry no department, so customer KPIs are
    company-wide unless the objective filters them by segment or region.
    """

    def __init__(self, dataset, department: str, *, freq: str = "month", engine=None):
        from helpers import kpis  # noqa: PLC0415

        self.kpis, self.dataset, self.department, self.freq = kpis, dataset, department, freq
        self.engine = engine

    def filters(self, metric: str, filters: Mapping[str, tuple[str, ...]]) -> dict:
        table = self.kpis.KPIS[metric].table
        merged: dict = {} if table == "customers" else {"department": self.department}
        for key, vals in filters.items():
            merged[FILTER_COLUMNS.get(key, key)] = list(vals) if len(vals) > 1 else vals[0]
        return merged

    def _engine_for(self, metric: str):
        """The engine when it aggregates ``metric`` (responses and tickets KPIs), else None."""
        if self.engine is None:
            return None
        from helpers.engine.aggregates import _KPI_TABLE  # noqa: PLC0415

        return self.engine if metric in _KPI_TABLE else None

    def series(self, metric, filters, start, end, freq: str | None = "") -> pd.DataFrame:
        freq = freq if freq != "" else self.freq
        engine = self._engine_for(metric)
        if engine is not None:
            from helpers import selection as sel  # noqa: PLC0415
            from helpers.engine import aggregates as A  # noqa: PLC0415

            try:
                return A.kpi_series_from_aggregates(engine, metric, freq=freq, filters=self.filters(metric, filters),
                                                    start=start, end=end, resolve=True)
            except sel.SelectionError as exc:  # as helpers.kpis.kpi_series words it
                raise self.kpis.KPIError(metric, str(exc)) from None
        return self.kpis.kpi_series(self.dataset.con, metric, freq=freq, by=None,
                                    filters=self.filters(metric, filters), start=start, end=end)

    def __call__(self, metric, filters, start, end, freq: str | None = "") -> pd.DataFrame:
        return self.series(metric, filters, start, end, freq)

    def window_value(self, metric, filters, start, end) -> pd.DataFrame:
        """The KPI over ``start .. end`` from its rows (one row: period, value, ci_low, ci_high, n)."""
        return self.series(metric, filters, start, end, freq=None)

    def estimate(self, metric, filters, start, end):
        return self.kpis.compute_kpi(metric, self.dataset, filters=self.filters(metric, filters), start=start,
                                     end=end)

    def compare(self, metric, filters, period_a, period_b):
        """The period-over-period test (``helpers.kpis.compare_kpi``; on the engine when there is one)."""
        f = self.filters(metric, filters)
        return self.kpis.compare_kpi(metric, self.dataset, self.dataset, filters_a=f, filters_b=f,
                                     period_a=period_a, period_b=period_b, engine=self.engine)


def kpi_series_provider(dataset, department: str, *, freq: str = "month", engine=None) -> KpiSource:
    """The default KPI source for ``evaluate_objectives`` (kept for callers that want a callable)."""
    return KpiSource(dataset, department, freq=freq, engine=engine)


class _EngineFallback(Exception):
    """The configured engine could not be opened: ``engine`` is the DuckDB fallback, ``note`` says so."""

    def __init__(self, engine, note: str):
        super().__init__(note)
        self.engine, self.note = engine, note


def _open_kpi_engine(dataset, engine):
    """``(engine, owned)``: ``engine`` as given (an :class:`helpers.engine.Engine`; ``False``: none, the
    ``helpers.kpis`` path), opened from :class:`helpers.engine.EngineSettings` (the report config's ``engine:``;
    closed by the caller), or by default DuckDB over the dataset's own connection."""
    if engine is False or dataset is None:
        return None, False
    from helpers.engine import DuckDBEngine, Engine, EngineSettings  # noqa: PLC0415

    if isinstance(engine, Engine):
        return engine, False
    if isinstance(engine, (EngineSettings, Mapping)):
        settings = engine if isinstance(engine, EngineSettings) else EngineSettings.model_validate(dict(engine))
        base = getattr(dataset, "_dataset", dataset)  # a department slice: the full dataset's tables
        try:
            return settings.connect(dataset=base), True
        except KitError as exc:  # e.g. Spark not installed or unreachable: DuckDB over the dataset, said once
            fallback, _ = _open_kpi_engine(dataset, None)
            raise _EngineFallback(fallback, f"The {settings.kind} engine is not available ({exc}); the KPIs "
                                  "were computed with DuckDB.") from None
    con = getattr(dataset, "con", None)
    if con is None:
        return None, False
    try:
        import duckdb  # noqa: PLC0415

        if not isinstance(con, duckdb.DuckDBPyConnection):
            return None, False
    except ImportError:  # pragma: no cover
        return None, False
    return DuckDBEngine(con), False


def format_value(value: float, info: "MetricInfo | None") -> str:
    """A KPI value in its unit for text: ``81.3%``, ``+32``, ``9.1 h``, ``41.2 per day``; ``n/a`` when missing."""
    if value is None or not np.isfinite(value):
        return "n/a"
    unit = info.unit if info else ""
    if info is not None and info.per_day:
        return f"{value:,.1f} per day"
    if unit in ("share", "proportion", "rate", "fraction"):
        return f"{100 * value:.1f}%"
    if unit in ("hours", "h"):
        return f"{value:.1f} h"
    if unit in ("percent", "%"):
        return f"{value:.1f}%"
    if unit == "points":
        return f"{value:+.0f}" if abs(value) >= 10 else f"{value:+.1f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _unit_decimals(values, info: "MetricInfo | None") -> int:
    """The decimals :func:`format_value` gives the largest of ``values`` (in the unit shown)."""
    unit = info.unit if info else ""
    big = max((abs(float(v)) for v in values if v is not None and np.isfinite(v)), default=0.0)
    if info is not None and info.per_day or unit in ("hours", "h", "percent", "%", "share", "proportion", "rate",
                                                       "fraction"):
        return 1
    if unit == "points":
        return 0 if big >= 10 else 1
    return 0 if big >= 100 else 1 if big >= 10 else 2


def value_and_interval(value: float, low: float, high: float, info: "MetricInfo | None") -> tuple[str, str]:
    """A KPI value and its interval for text, rounded alike: the unit's usual decimals (:func:`format_value`,
    from the largest of the three), more only where the two ends would print alike
    (:func:`helpers.formatting.interval_decimals`); ``("+14", "-10 to +37")``, ``("81.3%", "78.5% to 83.6%")``.
    The interval is ``""`` when an end is missing."""
    from helpers.formatting import fmt_number, interval_decimals  # noqa: PLC0415

    if value is None or not np.isfinite(value):
        return "n/a", ""
    scale = 100.0 if info is not None and not info.per_day and info.unit in ("share", "proportion", "rate",
                                                                               "fraction") else 1.0
    has_ci = all(v is not None and np.isfinite(v) for v in (low, high))
    d = _unit_decimals([value, low, high] if has_ci else [value], info)
    if has_ci:
        low, high = sorted((float(low), float(high)))
        d = interval_decimals(low * scale, high * scale, least=d, most=d + 2)
    unit = info.unit if info else ""
    signed = unit == "points" and not (info is not None and info.per_day)

    def text(v: float) -> str:
        number = fmt_number(v * scale, d, signed=signed)
        if info is not None and info.per_day:
            return f"{number} per day"
        if scale != 1.0 or unit in ("percent", "%"):
            return f"{number}%"
        if unit in ("hours", "h"):
            return f"{number} h"
        return number

    return text(float(value)), (f"{text(low)} to {text(high)}" if has_ci else "")


def chance_text(p) -> str:
    """A chance for readers: whole percent, but "<1%" / ">99%" where rounding shows 0% or 100% (a forecast never
    makes an open objective impossible or certain); "n/a" when missing."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(v):
        return "n/a"
    from helpers.formatting import fmt_percent  # noqa: PLC0415

    text = fmt_percent(v)
    return {"0%": "<1%", "100%": ">99%"}.get(text, text)


FILTER_LABELS = {"team": "team", "channel": "channel", "segment": "segment", "region": "region", "agent": "agent",
                 "agent_id": "agent", "plan": "plan"}
"""How a filter reads in a reason: ``team Invoicing``, ``channel fax``."""


def filter_label(key: str) -> str:
    """A filter's name in a reader's sentence: :data:`FILTER_LABELS`, else the column's label in lower case
    (``contract_type`` -> ``contract type``)."""
    from helpers.formatting import column_label  # noqa: PLC0415

    return FILTER_LABELS.get(key) or column_label(key).lower()


OPEN_STATUSES = ("on track", "at risk", "off track")
"""Statuses of objectives still open (deadline ahead, not yet achieved): the candidates for "look first"."""


@displayable
@dataclass
class ObjectiveEvaluation:
    """Every objective of a plan evaluated as of a date: ``.table`` (one row per objective), charts, tree."""

    plan: ObjectivePlan
    as_of: pd.Timestamp
    table: pd.DataFrame
    series: dict[str, pd.DataFrame]
    forecasts: dict[str, pd.DataFrame]
    warnings: list[str]
    level: float = DEFAULT_LEVEL
    metrics: Mapping[str, MetricInfo] = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    """objective id -> ``helpers.kpis.Comparison`` of the last period with the period before (or None)."""
    as_of_note: str = ""
    """How the as-of date was chosen, when it was not given (stated in the summary)."""

    def status_counts(self) -> dict[str, int]:
        """Objectives per status, every status present (zeros included), best first."""
        counts = self.table["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in STATUSES}

    def row(self, objective_id: str) -> pd.Series:
        """The objective's row of :attr:`table` (a copy; the first when an id repeats)."""
        positions = self.__dict__.get("_row_positions")
        if positions is None or positions[0] is not self.table or positions[1] != len(self.table):
            ids = list(self.table["id"])
            positions = (self.table, len(ids), {i: ids.index(i) for i in dict.fromkeys(ids)})
            self.__dict__["_row_positions"] = positions
        if objective_id not in positions[2]:
            raise KeyError(f"no objective {objective_id!r}; objectives are {list(self.table['id'])}")
        return self.table.iloc[positions[2][objective_id]].copy()

    def cascade(self) -> pd.DataFrame:
        """The objective tree in depth-first order: id, parent, level, title, owner, status, label."""
        order: list[str] = []

        def walk(parent):  # depth-first, file order among siblings
            for child in self.plan.children(parent):
                order.append(child.id)
                walk(child.id)

        walk(None)
        t = self.table.set_index("id").loc[order].reset_index()
        return t[["id", "parent", "level", "title", "owner", "status", "metric_label", "target", "current"]]

    def plot(self, ax=None):
        """The result's overview chart: the cascade tree coloured by status (see :meth:`plot_cascade`)."""
        return self.plot_cascade(ax=ax)

    def plot_cascade(self, ax=None):
        """The cascade tree (director -> managers -> representatives), each node coloured by status."""
        from helpers.charts import cascade_tree  # noqa: PLC0415

        return cascade_tree(self.cascade(), ax=ax)

    def status_table_html(self) -> str:
        """The executive summary table (HTML, every free text escaped) with coloured status badges."""
        from helpers.charts import status_table_html  # noqa: PLC0415

        columns = {"title": "Objective", "owner": "Owner", "window_text": "Judged on", "current_text": "Now",
                   "target_text": "Target", "deadline_text": "Deadline", "forecast_text": "Forecast for the window",
                   "chance_text": "Chance to meet it", "progress_text": "Progress", "status": "Status",
                   "sentence": "In one sentence"}
        return status_table_html(self.table, columns)

    def look_first(self) -> pd.Series | None:
        """The open objective with the lowest P(met) (ties: the higher level in the cascade, then file order);
        never one already achieved, missed or without data. ``None`` when no objective is open."""
        open_ = self.table[self.table["status"].isin(OPEN_STATUSES) & np.isfinite(self.table["p_met"].astype(float))]
        if open_.empty:
            return None
        order = open_.assign(_order=range(len(open_))).sort_values(["p_met", "level", "_order"], kind="stable")
        return order.iloc[0]

    def summary(self) -> str:
        """One paragraph for the director: how many objectives are where, and what needs attention first."""
        c = self.status_counts()
        n = len(self.table)
        parts = [f"{v} {k}" for k, v in c.items() if v]
        text = f"{self.plan.department}, as of {self.as_of:%d %B %Y}: {n} objective{'s' if n != 1 else ''} - " \
               + ", ".join(parts) + "."
        first = self.look_first()
        if first is not None:
            text += (f" Look first at \"{first['title']}\" ({first['owner']}): {chance_text(first['p_met'])} chance of "
                     f"meeting its target. {first['sentence']}")
        else:
            text += " No open objective needs attention."
        return text


def _row_for(o: Objective, plan: ObjectivePlan, names: Mapping[str, str], info: MetricInfo | None,
             as_of: pd.Timestamp) -> dict:
    w = o.judged_on
    return {"id": o.id, "parent": o.parent, "level": plan.depth(o.id), "title": o.title,
            "owner": o.owner.label(names), "owner_role": o.owner.role, "metric": o.metric,
            "metric_label": info.label if info else o.metric, "direction": o.direction, "start": o.start,
            "deadline": o.deadline, "window": w.label, "window_start": w.start, "window_end": w.end,
            "current": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": np.nan, "current_period": pd.NaT,
            "current_label": "", "baseline": o.baseline.value if o.baseline.value is not None else np.nan,
            "target": o.target, "progress": np.nan, "expected_progress": expected_progress(o.start, o.deadline, as_of),
            "forecast": np.nan, "forecast_low": np.nan, "forecast_high": np.nan, "forecast_method": "",
            "p_met": np.nan, "status": "no data", "status_detail": "", "sentence": "", "change": "", "message": "",
            "reason": ""}


def _days(start, end) -> float:
    return float((pd.Timestamp(end) - pd.Timestamp(start)).days + 1)


def _per_day_series(s: pd.DataFrame, freq: str) -> pd.DataFrame:
    """A count series as counts per day (``count``, ``days`` kept): periods differ in length."""
    days = np.array([_days(p, period_end(p, freq)) for p in s["period"]], dtype=float)
    return s.assign(count=s["value"], days=days, value=s["value"] / days, ci_low=s["ci_low"] / days,
                    ci_high=s["ci_high"] / days)


def _window_value(o: Objective, source, start, end, s: pd.DataFrame, per_day: bool) -> dict | None:
    """The KPI over ``start .. end`` computed from its rows (``source.window_value``, else the provider called
    with ``freq=None``); for a provider that only gives periods, the n-weighted mean of the periods inside the
    window with the interval of that mean (an approximation, said in the method). None without data."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    row = None
    try:
        if hasattr(source, "window_value"):
            w = pd.DataFrame(source.window_value(o.metric, dict(o.filters), start, end))
        else:
            w = pd.DataFrame(source(o.metric, dict(o.filters), start, end, freq=None))
        if len(w) == 1 and np.isfinite(float(w["value"].iloc[0])):
            row = {k: float(w[k].iloc[0]) if k in w else np.nan for k in ("value", "ci_low", "ci_high", "n")}
    except (KitError, ValueError, KeyError, LookupError, TypeError):
        row = None
    if row is None:
        inside = s[(s["period"] >= period_start(start, o.frequency)) & (s["period"] <= end)]
        if inside.empty:
            return None
        if per_day:  # s is per day already: back to counts
            count = float(inside["count"].sum())
            days = float(inside["days"].sum())
            return {"value": count / days, "ci_low": np.nan, "ci_high": np.nan, "n": count}
        n = inside["n"].to_numpy(dtype=float)
        wts = n / n.sum() if np.isfinite(n).all() and n.sum() > 0 else np.full(len(inside), 1 / len(inside))
        value = float(np.dot(wts, inside["value"]))
        se = np.sqrt(np.sum((wts * (inside["ci_high"] - inside["ci_low"]).to_numpy(dtype=float) / 3.92) ** 2))
        return {"value": value, "ci_low": value - 1.96 * se, "ci_high": value + 1.96 * se, "n": float(np.nansum(n))}
    if per_day:
        days = _days(start, end)
        row = {"value": row["value"] / days, "ci_low": row["ci_low"] / days, "ci_high": row["ci_high"] / days,
               "n": row["n"]}
    return row


def _baseline_value(o: Objective, series: pd.DataFrame, source=None, per_day: bool = False) -> tuple[float, str]:
    """The fixed baseline, or the KPI over the baseline period from its rows (``source.window_value``, pooled;
    a count per day), else the n-weighted mean of the period values."""
    if o.baseline.value is not None:
        return o.baseline.value, ""
    try:
        w = _window_value(o, source, o.baseline.start, o.baseline.end, series, per_day)
    except Exception as exc:  # noqa: BLE001 - e.g. a duckdb error: the baseline becomes a message
        return float("nan"), f"cannot compute the baseline for {o.baseline.describe()}: {exc}"
    if w is None or not np.isfinite(w["value"]):
        return float("nan"), f"no data in the baseline period {o.baseline.describe()}"
    return float(w["value"]), ""


def _period_over_period(o: Objective, s: pd.DataFrame, as_of: pd.Timestamp, source):
    """The last period with data against the period before it (``source.compare``; counts per day), or None."""
    if not hasattr(source, "compare") or len(s) < 2:
        return None
    cur, prev = s["period"].iloc[-1], s["period"].iloc[-2]
    if months_between(prev, cur) != FREQ_MONTHS[o.frequency]:
        return None
    end_of = (lambda p: min(period_end(p, o.frequency), as_of))
    try:
        return source.compare(o.metric, dict(o.filters), (prev, end_of(prev)), (cur, end_of(cur)))
    except (KitError, ValueError, KeyError):
        return None


def period_label(when, freq: str = "month") -> str:
    """``Jul 2026`` for a month, ``Q3 2026`` for a quarter."""
    ts = pd.Timestamp(when)
    return f"Q{(ts.month - 1) // 3 + 1} {ts.year}" if freq == "quarter" else f"{ts:%b %Y}"


def _sentence(o: Objective, r: dict, info: MetricInfo | None, level: float) -> str:
    """The plain-language verdict; every status has one (no lookup can fail)."""
    fmt = (lambda v: format_value(v, info))
    status, detail = r["status"], r["status_detail"]
    if status == "no data":
        return f"No data to judge this objective: {r['reason']}." if r["reason"] else \
            "No data to judge this objective."
    value, ci = value_and_interval(r["current"], r["ci_low"], r["ci_high"], info)
    cur = f"{value} in {r['current_label']}"
    if ci:
        cur += f" (95% CI {ci}, n={int(r['n']):,})"
    tgt = f"the target of {fmt(o.target)} for {r['window']}"
    if status == "too little data":
        return f"Too little data to judge: {r['reason'] or 'fewer observations than the minimum'}; now {cur}."
    if status in ("achieved", "missed") and r["forecast_method"] == "observed":
        verb = "Reached" if status == "achieved" else "Missed"
        margin = " (within the margin of error)" if detail else ""
        return f"{verb} {tgt}: {cur}{margin}."
    chance = f"{chance_text(r['p_met'])} chance of meeting it" if np.isfinite(r["p_met"]) else "chance unknown"
    fc_value, fc_interval = value_and_interval(r["forecast"], r["forecast_low"], r["forecast_high"], info)
    fc = (f"the forecast for {r['window']} is {fc_value} ({level:.0%} prediction interval {fc_interval}; "
          f"{r['forecast_method']})")
    lead = {"achieved": "Achieved early", "on track": "On track", "off track": "Off track",
            "at risk": f"At risk, {detail}" if detail else "At risk"}.get(status, status.capitalize())
    return f"{lead}: now {cur}; {fc}: {chance}, {tgt}."


def _default_as_of(dataset, fetched: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The default as-of date: the last day of the last complete calendar month in the data, never after
    today (``helpers.data.default_as_of``); from the dataset when there is one, else from the series."""
    from helpers.data import default_as_of  # noqa: PLC0415

    if hasattr(dataset, "date_range"):
        try:
            return default_as_of(dataset.date_range()[1])
        except (KitError, ValueError, TypeError):
            pass
    lasts = [pd.Timestamp(s["period"].max()) for s in fetched.values() if not s.empty]
    if not lasts:
        return default_as_of(pd.Timestamp.today())
    return default_as_of(max(lasts) + pd.offsets.MonthEnd(0))


def _with_display_text(table: pd.DataFrame, metrics: Mapping[str, MetricInfo], level: float) -> pd.DataFrame:
    """Add the formatted ``*_text`` columns the status table shows."""
    def text(row, what):
        info = metrics.get(row["metric"])
        if what == "current":
            if not np.isfinite(row["current"]):
                return "n/a"
            value, ci = value_and_interval(row["current"], row["ci_low"], row["ci_high"], info)
            n = f", n={int(row['n']):,}" if np.isfinite(row["n"]) else ""
            return f"{value}{f' (95% CI {ci})' if ci else ''}{n}, {row['current_label']}"
        if what == "forecast":
            if not np.isfinite(row["forecast"]):
                return "n/a"
            if row["forecast_method"] == "observed":
                return f"{format_value(row['forecast'], info)} (observed)"
            value, pi = value_and_interval(row["forecast"], row["forecast_low"], row["forecast_high"], info)
            return f"{value} ({level:.0%} PI {pi})" if pi else value
        if what == "target":
            return f"{format_value(row['target'], info)} (from {format_value(row['baseline'], info)})"
        if what == "progress":
            if not np.isfinite(row["progress"]):
                return "n/a"
            return f"{row['progress']:.0%} (expected {row['expected_progress']:.0%})"
        if what == "chance":
            if row["status"] in ("achieved", "missed") and row["forecast_method"] == "observed":
                return "closed"
            return chance_text(row["p_met"])
        if what == "window":
            return str(row["window"])
        return ""

    extra = {f"{w}_text": [text(r, w) for _, r in table.iterrows()]
             for w in ("current", "target", "forecast", "progress", "chance", "window")}
    extra["deadline_text"] = [f"{d:%d %b %Y}" for d in table["deadline"]]
    return table.assign(**extra)


def _is_sample_kpi(info: MetricInfo | None) -> bool:
    """KPIs whose n counts survey answers or tickets (``min_responses`` applies), not customers at risk."""
    return info is None or info.table in ("responses", "tickets", "")


def evaluate_objectives(plan: ObjectivePlan, dataset=None, as_of=None, *, series_provider: SeriesProvider | None = None,
                        level: float = DEFAULT_LEVEL, history: int = 36, min_n: int = 1,
                        min_responses: int | None = None, names: Mapping[str, str] | None = None,
                        metrics: Mapping[str, MetricInfo] | None = None, engine=None) -> ObjectiveEvaluation:
    """Evaluate every objective of ``plan`` as of ``as_of`` (default: the last day of the last complete month
    in the data, :func:`helpers.data.default_as_of`), each on its own window (``Objective.judged_on``).

    ``dataset`` is a ``helpers.data.Dataset`` (its ``org`` gives owners' names; its connection feeds
    ``helpers.kpis.kpi_series``); ``series_provider`` replaces the KPI engine (see module docstring).
    Periods with fewer than ``min_n`` observations are ignored; a window with fewer than ``min_responses``
    answers or tickets is "too little data". The forecast uses the last ``history`` periods
    (:func:`helpers.objectives_forecast.forecast_window`). Never raises for one objective's data problem:
    that objective gets status ``"no data"`` and a message naming the file, objective and field.

    ``engine``: where the KPIs of responses and tickets are aggregated (:class:`KpiSource`): None = DuckDB over
    the dataset's connection; an :class:`helpers.engine.Engine`; the report config's ``engine`` settings
    (:class:`helpers.engine.EngineSettings`, opened over the dataset and closed here); ``False`` = the
    ``helpers.kpis`` path. Ignored with a ``series_provider``.
    """
    note = ""
    try:
        opened, owned = (None, False) if series_provider is not None else _open_kpi_engine(dataset, engine)
    except _EngineFallback as fb:
        opened, owned, note = fb.engine, False, fb.note
    try:
        result = _evaluate_objectives(plan, dataset, as_of, series_provider=series_provider, level=level,
                                      history=history, min_n=min_n, min_responses=min_responses, names=names,
                                      metrics=metrics, engine=opened)
        if note:
            result.warnings.append(note)
        return result
    finally:
        if owned:
            opened.close()


def _evaluate_objectives(plan: ObjectivePlan, dataset=None, as_of=None, *, series_provider: SeriesProvider | None = None,
                        level: float = DEFAULT_LEVEL, history: int = 36, min_n: int = 1,
                        min_responses: int | None = None, names: Mapping[str, str] | None = None,
                        metrics: Mapping[str, MetricInfo] | None = None, engine=None) -> ObjectiveEvaluation:
    """:func:`evaluate_objectives` with its engine open (None: the ``helpers.kpis`` path)."""
    from helpers.objectives_forecast import forecast_window, kpi_scale  # noqa: PLC0415

    if isinstance(plan, (str, Path)):  # a department's slug or file: load its plan (unknown ones are listed)
        plan = load_objectives(plan) if str(plan).endswith((".yaml", ".yml")) else load_department(str(plan))
    if not isinstance(plan, ObjectivePlan):
        raise ObjectiveError("evaluate_objectives", f"expected an ObjectivePlan (load_department('billing')), a "
                             f"department slug or a params file, got {type(plan).__name__}")
    metrics = metric_registry() if metrics is None else metrics
    warnings = list(plan.warnings)
    if names is None:
        names = {}
        org = getattr(dataset, "org", None)
        if org is not None and {"person_id", "name"} <= set(org.columns):
            names = dict(zip(org["person_id"].astype(str), org["name"].astype(str)))
    department_known = True
    known = getattr(dataset, "departments", None)
    if known is not None and plan.department not in known:
        department_known = False
        warnings.append(f"{plan.path}: field 'department': {plan.department!r} is not in the data; departments "
                        f"in the data are {list(known)}")
    if series_provider is None and dataset is not None and department_known:
        try:
            series_provider = kpi_series_provider(dataset, plan.department, engine=engine)
        except ImportError:
            warnings.append("helpers.kpis is not available: objectives cannot be computed")
    if names:
        for o in plan.objectives:
            if o.owner.person and o.owner.person not in names:
                warnings.append(f"{plan.path}: objective {o.id!r}, field 'owner.person': {o.owner.person!r} is "
                                "not in the org table")

    as_of_note = ""
    fetched: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    for o in plan.objectives:
        if series_provider is None:
            errors[o.id] = "no KPI data source" if department_known else \
                f"department {plan.department!r} is not in the data"
            continue
        try:
            s = series_provider(o.metric, dict(o.filters), None, pd.Timestamp(as_of) if as_of is not None else None,
                                freq=o.frequency)
            s = pd.DataFrame(s).copy()
            missing = {"period", "value"} - set(s.columns)
            if missing:
                raise KitError(f"the KPI series lacks columns {sorted(missing)}")
            for col in ("ci_low", "ci_high", "n"):
                if col not in s.columns:
                    s[col] = np.nan
            s["period"] = pd.to_datetime(s["period"]).map(lambda p, f=o.frequency: period_start(p, f))
            for col in ("value", "ci_low", "ci_high", "n"):
                s[col] = pd.to_numeric(s[col], errors="coerce").astype(float)
            s = s[np.isfinite(s["value"]) & ~(s["n"] < min_n)].sort_values("period").reset_index(drop=True)
            fetched[o.id] = s[["period", "value", "ci_low", "ci_high", "n"]]
        except (KitError, ValueError, KeyError, LookupError) as exc:  # one objective's failure stays its own
            errors[o.id] = f"metric {o.metric!r} cannot be computed: {exc}"
        except Exception as exc:  # noqa: BLE001 - e.g. a duckdb error for a column absent from the data
            errors[o.id] = f"metric {o.metric!r} cannot be computed ({type(exc).__name__}: {exc})"

    if as_of is None:
        as_of = _default_as_of(dataset, fetched)
        as_of_note = "the last day of the last complete month in the data (the default)"
    as_of = pd.Timestamp(as_of).normalize()

    rows, series_out, forecasts, changes = [], {}, {}, {}
    for o in plan.objectives:
        info = metrics.get(o.metric)
        per_day = bool(info is not None and info.per_day)
        w = o.judged_on
        r = _row_for(o, plan, names, info, as_of)
        where = f"{plan.path}: objective {o.id!r}"
        label = info.label if info is not None else o.metric
        scope = ", ".join(f"{filter_label(k)} {' or '.join(v)}" for k, v in o.filters.items())
        s = fetched.get(o.id)
        if s is not None:  # complete periods only: a half-month (or half-quarter) is not a finished period
            s = s[s["period"].map(lambda p, f=o.frequency: period_end(p, f)) <= as_of].reset_index(drop=True)
            if per_day:
                s = _per_day_series(s, o.frequency)
        series_out[o.id] = s if s is not None else pd.DataFrame(columns=["period", "value", "ci_low", "ci_high", "n"])
        deadline_passed = as_of >= w.end
        if o.id in errors:
            r["message"] = f"{where}, field 'metric': {errors[o.id]}"
            r["reason"] = errors[o.id].replace(f"metric {o.metric!r}", label, 1)
        elif s is None or s.empty:
            r["message"] = (f"{where}, field 'metric': no {o.metric} data for this department"
                            f"{' with filters ' + str(dict(o.filters)) if o.filters else ''} up to {as_of:%Y-%m-%d}")
            r["reason"] = (f"no {label} data for this department{' for ' + scope if scope else ''} up to "
                           f"{as_of:%d %b %Y}")
        elif as_of >= o.start and s["period"].max() < period_start(o.start, o.frequency) - pd.DateOffset(
                months=FREQ_MONTHS[o.frequency]):
            r["message"] = (f"{where}, field 'start': no {o.metric} data since {s['period'].max():%Y-%m}, before "
                            f"the objective's period starting {o.start:%Y-%m-%d}")
            r["reason"] = (f"no {label} data since {s['period'].max():%b %Y}, before the objective's period "
                           f"starting {o.start:%d %b %Y}")
        elif deadline_passed and period_end(s["period"].max(), o.frequency) < w.end:
            r["message"] = (f"{where}, field 'deadline': the deadline {o.deadline:%Y-%m-%d} has passed but its "
                            f"window ({w.label}) is not fully in the data (the data ends in "
                            f"{period_label(s['period'].max(), o.frequency)})")
            r["reason"] = r["message"].split(": ", 2)[-1].replace(f"{o.deadline:%Y-%m-%d}", f"{o.deadline:%d %b %Y}")
        else:
            _judge(o, r, s, w, as_of, series_provider, info, per_day, level, history, min_responses, where,
                   forecasts, forecast_window, kpi_scale)
            baseline, msg = _baseline_value(o, fetched[o.id], series_provider, per_day)
            r["baseline"] = baseline
            if msg:
                warnings.append(f"{where}, field 'baseline': {msg}")
            r["progress"] = progress_score(r["current"], baseline, o.target, o.direction)
            if np.isfinite(baseline) and meets(baseline, o.target, o.direction):
                warnings.append(f"{where}, field 'target': target {format_value(o.target, info)} is on the wrong "
                                f"side of the baseline {format_value(baseline, info)} for a KPI to {o.direction} "
                                "(the baseline already meets it); progress is measured from the baseline and a "
                                "move the wrong way shows as negative")
            warn = plausibility_warning(o, s if per_day else fetched[o.id], baseline, plan.path)
            if warn:
                warnings.append(warn)
            changes[o.id] = _period_over_period(o, s, as_of, series_provider)
            if changes[o.id] is not None:
                r["change"] = changes[o.id].describe()
        if r["message"] and r["status"] == "no data":
            warnings.append(r["message"])
        r["sentence"] = _sentence(o, r, info, level)
        rows.append(r)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = _with_display_text(table, metrics, level)
    return ObjectiveEvaluation(plan=plan, as_of=as_of, table=table, series=series_out, forecasts=forecasts,
                               warnings=warnings, level=level, metrics=metrics, changes=changes,
                               as_of_note=as_of_note)


def _judge(o, r, s, w, as_of, source, info, per_day, level, history, min_responses, where, forecasts,
           forecast_window, kpi_scale) -> None:
    """Fill ``r`` with "now", the window forecast, P(met) and the status (rule: ``helpers.objectives_status``)."""
    deadline_passed = as_of >= w.end
    cohort_kpi = info is not None and info.kind in ("retention", "churn")  # a window so far is not comparable
    if deadline_passed:
        now = _window_value(o, source, w.start, w.end, s, per_day)
        label = w.label
    elif as_of >= w.start and not cohort_kpi:
        now = _window_value(o, source, w.start, as_of, s, per_day)
        label = f"{w.label} so far (to {as_of:%d %b})"
    else:
        now = None
    if now is None:  # the window has not begun (or no rows in it yet): the latest complete period
        last = s.iloc[-1]
        now = {k: float(last[k]) for k in ("value", "ci_low", "ci_high", "n")}
        label = period_label(last["period"], o.frequency)
    r.update(current=now["value"], ci_low=now["ci_low"], ci_high=now["ci_high"], n=now["n"],
             current_period=s["period"].iloc[-1], current_label=label)
    sample_kpi = _is_sample_kpi(info)
    if deadline_passed:
        met = meets(now["value"], o.target, o.direction)
        in_ci = bool(np.isfinite(now["ci_low"]) and np.isfinite(now["ci_high"])
                     and min(now["ci_low"], now["ci_high"]) <= o.target <= max(now["ci_low"], now["ci_high"]))
        thin = bool(min_responses and sample_kpi and np.isfinite(now["n"]) and now["n"] < min_responses)
        status, detail = classify_status(p_met=np.nan, deadline_passed=True, met=met, target_in_ci=in_ci,
                                         too_little_data=thin)
        r.update(forecast=now["value"], forecast_low=now["ci_low"], forecast_high=now["ci_high"],
                 forecast_method="observed", p_met=float(met), status=status, status_detail=detail)
        if thin:
            r["message"] = (f"{where}: its window {w.label} has {int(now['n'])} observations, fewer than "
                            f"min_responses = {min_responses}")
            r["reason"] = (f"its period {w.label} has {int(now['n'])} answers or tickets, fewer than the minimum of "
                           f"{min_responses}")
        return
    scale = kpi_scale(info.unit if info else "", info.bounds if info else (None, None), info.kind if info else "")
    hist = s.iloc[-history:] if history else s
    try:
        fc = forecast_window(hist, w.start, w.end, freq=o.frequency, scale=scale, level=level, target=o.target,
                             direction=o.direction, per_day=per_day)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # a degenerate series: said, not raised
        r["message"] = f"{where}: the forecast of {w.label} failed on this history ({type(exc).__name__}: {exc})"
        r["reason"] = f"the forecast of {w.label} failed on this history"
        return
    if fc is None or not np.isfinite(fc.p_met):
        r["message"] = f"{where}: no history to forecast {w.label} from"
        r["reason"] = f"no history to forecast {w.label} from"
        return
    forecasts[o.id] = fc.path
    expected_n = _expected_window_n(s, w, as_of, o.frequency)
    thin = bool(min_responses and sample_kpi and np.isfinite(expected_n) and expected_n < min_responses)
    good_side = now["ci_low"] if o.direction == "raise" else now["ci_high"]
    clears = bool(np.isfinite(good_side) and meets(good_side, o.target, o.direction))
    status, detail = classify_status(p_met=fc.p_met, deadline_passed=False, current_clears=clears,
                                     too_little_data=thin)
    r.update(forecast=fc.value, forecast_low=fc.low, forecast_high=fc.high, forecast_method=fc.method,
             p_met=fc.p_met, status=status, status_detail=detail)
    if thin:
        r["reason"] = (f"its period {w.label} is expected to hold about {expected_n:.0f} answers or tickets, "
                       f"fewer than the minimum of {min_responses}")
        r["message"] = (f"{where}: its window {w.label} is expected to hold about {expected_n:.0f} observations, "
                        f"fewer than min_responses = {min_responses}")


def _expected_window_n(s: pd.DataFrame, w: Window, as_of: pd.Timestamp, freq: str) -> float:
    """Observations the window will hold: those observed in it so far plus the recent n per period for the rest."""
    step = FREQ_MONTHS[freq]
    n = s["n"].to_numpy(dtype=float)
    if "count" in s:
        n = s["count"].to_numpy(dtype=float)
    recent = float(np.nanmean(n[-(12 // step):])) if len(n) else float("nan")
    periods = pd.date_range(period_start(w.start, freq), w.end, freq="MS" if freq == "month" else "QS")
    total = 0.0
    for p in periods:
        share = min(1.0, max(0.0, (min(period_end(p, freq), w.end) - max(p, w.start)).days + 1) /
                    ((period_end(p, freq) - p).days + 1))
        seen = s[s["period"] == p]
        total += share * (float(seen["n"].iloc[0]) if not seen.empty and p <= as_of else recent)
    return total


def escape(text) -> str:
    """HTML-escape any free text (names, titles, comments) before it goes into a report."""
    return html.escape("" if text is None else str(text), quote=True)


__all__ = ["Baseline", "DEFAULT_LEVEL", "Forecast", "KpiSource", "MetricInfo", "Objective", "ObjectiveEvaluation",
           "ObjectivePlan", "Owner", "STATUSES", "classify_status", "department_slug", "evaluate_objectives",
           "forecast_at", "format_value", "kpi_series_provider", "lint_objectives", "load_department",
           "load_objectives", "metric_registry", "parse_objectives", "period_label", "plausibility_warning",
           "progress_score"]
