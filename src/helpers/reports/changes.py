"""What changed since the previous complete run: objectives whose status changed, KPIs whose latest complete
period changed significantly, new warnings, or "the latest period is unchanged since the last run".

A notebook cannot see the previous run, so the runner compares each report's summary (``write_report_summary``:
``objectives``, ``kpis``, ``warnings``) with the same report's summary in the previous complete run (the newest
run folder with a ``manifest.json``) and puts the result at the top of the department page and in the index.

**KPI rule.** Each ``kpis`` entry carries the latest complete period's ``value`` with its 95% interval
``ci_low``-``ci_high`` and ``period``. For one KPI, between the previous run (0) and this run (1):

- same ``period`` and the same value (to 1e-9 relative): **unchanged** (a weekly run over a monthly KPI);
- otherwise the two estimates are compared as independent estimates with normal sampling error, the
  standard error taken from each 95% interval as ``se = (ci_high - ci_low) / (2 * 1.959964)``:
  ``z = (v1 - v0) / sqrt(se0^2 + se1^2)``; the change is **significant** when ``|z| > 1.959964`` (two-sided
  5% level; Altman & Bland 2003, "Interaction revisited: the difference between two estimates", BMJ 326:219).
  A different value for the *same* period means the data were revised; it is tested the same way and said so;
- without an interval on either side the change is shown but not called significant ("no interval").

Successive months of one department share no responses, so independence holds for a new period; for a revised
period (overlapping data) the test is conservative.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

__all__ = ["KpiChange", "StatusChange", "ReportChanges", "compare_summaries", "kpi_change", "previous_run",
           "load_summaries", "STATUS_RANK", "Z_95"]

Z_95 = 1.959964
# attention needed, most first: the order departments are listed in and what counts as "worse"
STATUS_RANK = {"missed": 0, "off track": 1, "at risk": 2, "too little data": 3, "no data": 3, "on track": 4,
               "achieved": 5}


@dataclasses.dataclass
class KpiChange:
    kpi: str
    label: str
    unit: str
    period_before: str
    period_after: str
    before: float | None
    after: float | None
    z: float | None
    verdict: str  # "unchanged" | "significant" | "not significant" | "no interval" | "new" | "revised ..." prefix
    significant: bool = False

    @property
    def same_period(self) -> bool:
        return self.period_before == self.period_after

    def sentence(self) -> str:
        fmt = lambda v: _fmt_value(v, self.unit)  # noqa: E731
        if self.verdict == "unchanged":
            return f"{self.label}: the latest period ({self.period_after}) is unchanged since the last run."
        if self.verdict == "new":
            return f"{self.label}: new in this run ({fmt(self.after)} in {self.period_after})."
        if self.same_period:
            head = f"{self.label}, {self.period_after}: revised from {fmt(self.before)} to {fmt(self.after)}"
        else:
            head = (f"{self.label}: {fmt(self.after)} in {self.period_after} (last run: {fmt(self.before)} in "
                    f"{self.period_before})")
        if self.verdict == "no interval":
            return head + "; no interval to judge whether the change is real."
        if self.significant:
            direction = "up" if (self.after or 0) > (self.before or 0) else "down"
            return head + f": a significant change ({direction}; 95% level)."
        return head + ": within the noise (not significant at the 95% level)."


@dataclasses.dataclass
class StatusChange:
    id: str
    title: str
    before: str
    after: str

    @property
    def worse(self) -> bool:
        return STATUS_RANK.get(self.after, 3) < STATUS_RANK.get(self.before, 3)

    def sentence(self) -> str:
        if not self.before:
            return f"{self.title}: new objective, {self.after}."
        return f"{self.title}: {self.before} \u2192 {self.after}."


@dataclasses.dataclass
class ReportChanges:
    """One report's changes since the previous complete run (``first_run``: there is none to compare with)."""
    previous_run_id: str = ""
    previous_as_of: str = ""
    first_run: bool = True
    report_in_previous: bool = False
    previous_failed: bool = False   # the report was in the previous run but failed there
    status_changes: list[StatusChange] = dataclasses.field(default_factory=list)
    kpis: list[KpiChange] = dataclasses.field(default_factory=list)
    new_warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def significant_kpis(self) -> list[KpiChange]:
        return [k for k in self.kpis if k.significant]

    @property
    def unchanged(self) -> bool:
        """The latest period of every KPI is the same as in the last run, and no status changed."""
        return (not self.first_run and self.report_in_previous and bool(self.kpis)
                and all(k.verdict == "unchanged" for k in self.kpis) and not self.status_changes)

    def headline(self) -> str:
        """One sentence for the top of the page and the index."""
        if self.first_run:
            return "First run: there is no earlier run to compare with."
        if self.previous_failed:
            return f"This report failed in the last run ({self.previous_run_id}): nothing to compare with."
        if not self.report_in_previous:
            return f"This report was not in the last run ({self.previous_run_id}): nothing to compare with."
        if self.unchanged:
            periods = sorted({k.period_after for k in self.kpis})
            notes = len(self.new_warnings)
            more = f"; {notes} new data note{'s' if notes != 1 else ''}" if notes else ""
            return (f"The latest period ({', '.join(periods)}) is unchanged since the last run "
                    f"({self.previous_run_id}, as of {self.previous_as_of}): same data, same statuses{more}.")
        parts = []
        if self.status_changes:
            worse = sum(1 for s in self.status_changes if s.worse)
            n = len(self.status_changes)
            parts.append(f"{n} objective{'s' if n != 1 else ''} changed status"
                         + (f" ({worse} worse)" if worse else ""))
        sig = self.significant_kpis
        if sig:
            parts.append(f"{len(sig)} KPI{'s' if len(sig) != 1 else ''} changed significantly")
        if self.new_warnings:
            parts.append(f"{len(self.new_warnings)} new data note{'s' if len(self.new_warnings) != 1 else ''}")
        if not parts:
            parts.append("no objective changed status and no KPI changed significantly")
        text = "; ".join(parts)
        return f"Since the last run ({self.previous_run_id}, as of {self.previous_as_of}): {text}."

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["headline"] = self.headline()
        d["unchanged"] = self.unchanged
        d["status_changes"] = [dict(dataclasses.asdict(s), worse=s.worse) for s in self.status_changes]
        return d


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _fmt_value(v, unit: str) -> str:
    from helpers.formatting import NA, fmt_number
    if not _finite(v):
        return NA
    decimals = 0 if abs(float(v)) >= 100 else 1
    text = fmt_number(v, decimals)
    if unit in ("%", "percent"):
        return text + "%"
    return f"{text} {unit}".strip()


def _se(entry: dict) -> float | None:
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    if not (_finite(lo) and _finite(hi)) or float(hi) < float(lo):
        return None
    return (float(hi) - float(lo)) / (2 * Z_95)


def kpi_change(before: dict | None, after: dict) -> KpiChange:
    """The run-over-run change of one KPI entry (see the module doc for the rule)."""
    label = str(after.get("label") or after.get("kpi") or "KPI")
    unit = str(after.get("unit") or "")
    v1 = after.get("value")
    period1 = str(after.get("period") or "")
    if before is None:
        return KpiChange(str(after.get("kpi", "")), label, unit, "", period1, None, v1 if _finite(v1) else None,
                         None, "new")
    v0 = before.get("value")
    period0 = str(before.get("period") or "")
    v0 = float(v0) if _finite(v0) else None
    v1 = float(v1) if _finite(v1) else None
    common = dict(kpi=str(after.get("kpi", "")), label=label, unit=unit, period_before=period0,
                  period_after=period1, before=v0, after=v1)
    if period0 == period1 and (v0 == v1 or (v0 is not None and v1 is not None
                                            and abs(v1 - v0) <= 1e-9 * max(1.0, abs(v0)))):
        return KpiChange(**common, z=0.0 if v0 is not None else None, verdict="unchanged")
    se0, se1 = _se(before), _se(after)
    if v0 is None or v1 is None or se0 is None or se1 is None or (se0 == 0 and se1 == 0):
        return KpiChange(**common, z=None, verdict="no interval")
    z = (v1 - v0) / math.sqrt(se0 ** 2 + se1 ** 2)
    significant = abs(z) > Z_95
    return KpiChange(**common, z=z, verdict="significant" if significant else "not significant",
                     significant=significant)


def compare_summaries(current: dict, previous: dict | None, *, previous_run_id: str = "",
                      previous_as_of: str = "") -> ReportChanges:
    """``current`` vs ``previous`` summary of the same report (``previous`` None: the report was not in the
    previous run; ``previous_run_id`` empty: there is no previous run)."""
    changes = ReportChanges(previous_run_id=previous_run_id, previous_as_of=previous_as_of,
                            first_run=not previous_run_id, report_in_previous=previous is not None)
    if previous is None:
        return changes
    before = {str(o.get("id")): o for o in previous.get("objectives", []) or [] if isinstance(o, dict)}
    for o in current.get("objectives", []) or []:
        if not isinstance(o, dict):
            continue
        old = before.get(str(o.get("id")))
        status = str(o.get("status") or "")
        old_status = str((old or {}).get("status") or "")
        if old is None or old_status != status:
            changes.status_changes.append(StatusChange(str(o.get("id", "")), str(o.get("title") or o.get("id", "")),
                                                       old_status, status))
    old_kpis = {_kpi_key(k): k for k in previous.get("kpis", []) or [] if isinstance(k, dict)}
    for k in current.get("kpis", []) or []:
        if isinstance(k, dict):
            changes.kpis.append(kpi_change(old_kpis.get(_kpi_key(k)), k))
    old_warnings = set(previous.get("warnings", []) or [])
    changes.new_warnings = [w for w in current.get("warnings", []) or [] if w not in old_warnings]
    return changes


def _kpi_key(entry: dict) -> str:
    return str(entry.get("id") or entry.get("kpi") or entry.get("label") or "")


# ------------------------------------------------------------------------------------------------ run folders

def previous_run(out: Path, exclude: str = "") -> dict | None:
    """The newest complete run in ``out`` (a folder with a readable ``manifest.json``; not ``exclude``):
    ``{"run_id", "as_of", "path", "manifest"}``, or None."""
    from helpers.reports.runner import list_runs
    for run in list_runs(Path(out)):
        if run["run_id"] == exclude:
            continue
        try:
            manifest = json.loads((run["path"] / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("reproduces"):
            continue
        return {"run_id": run["run_id"], "as_of": run["as_of"], "path": str(run["path"]), "manifest": manifest}
    return None


def load_summaries(run_dir: Path, manifest: dict) -> dict[str, dict]:
    """``{report name: summary}`` of a finished run (reports whose summary is missing or unreadable left out)."""
    out = {}
    for r in manifest.get("reports", []):
        rel = r.get("summary")
        if not rel or r.get("status") != "ok":
            continue
        try:
            out[r["name"]] = json.loads((Path(run_dir) / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


def changes_for_report(name: str, summary: dict, previous: dict | None) -> ReportChanges:
    """This run's ``summary`` of report ``name`` against the previous run (:func:`previous_run`'s dict)."""
    if previous is None:
        return ReportChanges()
    old = load_summaries(Path(previous["path"]), previous["manifest"]).get(name)
    changes = compare_summaries(summary, old, previous_run_id=previous["run_id"],
                                previous_as_of=str(previous.get("as_of", "")))
    changes.previous_failed = old is None and any(r.get("name") == name and r.get("status") != "ok"
                                                  for r in previous["manifest"].get("reports", []))
    return changes


# ------------------------------------------------------------------------------------------------ the index

ROLLUP_ORDER = ("achieved", "on track", "at risk", "off track", "missed", "too little data", "no data")


def rollup(manifest: dict) -> dict[str, int]:
    """Objectives by status summed over the run's department reports (statuses in :data:`ROLLUP_ORDER` first)."""
    total: dict[str, int] = {}
    for r in manifest.get("reports", []):
        if r.get("kind") != "department" or r.get("status") != "ok":
            continue
        for key, n in (r.get("status_counts") or {}).items():
            try:
                total[str(key)] = total.get(str(key), 0) + int(n)
            except (TypeError, ValueError):
                continue
    ordered = {k: total[k] for k in ROLLUP_ORDER if total.get(k)}
    ordered.update({k: v for k, v in total.items() if k not in ordered and v})
    return ordered


def attention_key(report: dict) -> tuple:
    """Sort key: failed reports first, then most objectives missed/off track, then at risk, then the rest."""
    counts = report.get("status_counts") or {}
    get = lambda k: int(counts.get(k, 0) or 0)  # noqa: E731
    return (0 if report.get("status") != "ok" else 1, -(get("missed") + get("off track")), -get("at risk"),
            -get("too little data") - get("no data"), str(report.get("department_name") or report.get("name")))


COMPANY_KPIS = ("csat", "nps", "fcr")


def company_kpis(snapshot: str | Path, as_of: str, kpis: tuple[str, ...] = COMPANY_KPIS, config=None,
                 notes: list[str] | None = None) -> list[dict]:
    """The company's headline KPIs for the as-of month (the last complete month of a run), each with its 95%
    interval and n, and its change against the month before (``helpers.kpis.compare_kpi``: the KPI's own test;
    ``change_significant`` at the 5% level), computed from engine aggregates by the engine the run's report
    config selects (``config``: a :class:`helpers.config.ReportConfig` or the path of its report.yaml; its
    ``engine:``, as every page: :func:`helpers.engine.open_report_engine`; DuckDB over the snapshot by default and
    without a config; the rows only when no engine opens). Entries have the ``kpis`` fields of the page protocol,
    so :func:`kpi_change` compares them run over run. A KPI that cannot be computed is left out; ``notes``
    (a list) receives one sentence per KPI left out and the engine's note when it could not be opened."""
    import pandas as pd

    from helpers.data import load_dataset
    from helpers.engine import open_report_engine
    from helpers.kpis import KPIS, compare_kpi

    end = pd.Timestamp(as_of)
    start = end.replace(day=1)
    prev_end = start - pd.Timedelta(days=1)
    prev_start = prev_end.replace(day=1)
    out = []
    if isinstance(config, (str, Path)):
        from helpers.config import load_report_config

        config = load_report_config(config)
    ds = load_dataset(snapshot, validate=False, emit_warnings=False)
    engine, engine_note = open_report_engine(ds, config)
    notes = [] if notes is None else notes
    if engine_note:
        notes.append(f"Company KPIs: {engine_note}")
    try:
        for name in kpis:
            try:
                cmp = compare_kpi(name, ds, period_a=(prev_start, prev_end), period_b=(start, end), engine=engine)
            except (ValueError, KeyError) as exc:  # KitError is a ValueError: no data, too few answers, ...
                from helpers.formatting import clip_text  # noqa: PLC0415

                label = getattr(KPIS.get(name), "label", name)
                notes.append(f"The company's {label} for {start:%B %Y} is not shown: {clip_text(exc, 200)}")
                continue
            b = cmp.b
            out.append({"kpi": name, "label": getattr(KPIS.get(name), "label", name), "value": float(b.value),
                        "ci_low": float(b.ci_low), "ci_high": float(b.ci_high), "n": int(b.n),
                        "unit": "%" if b.unit == "%" else ("points" if name == "nps" else b.unit),
                        "period": start.strftime("%B %Y"), "previous_period": prev_start.strftime("%B %Y"),
                        "previous_value": float(cmp.a.value), "change": float(cmp.difference),
                        "change_ci_low": float(cmp.ci_low), "change_ci_high": float(cmp.ci_high),
                        "change_significant": cmp.significant()})
    finally:
        if engine is not None:
            engine.close()
        ds.close()
    from helpers.reports import _json_safe
    return [_json_safe(e) for e in out]


def look_first(summary: dict) -> str:
    """The objective to look at first (worst status, then lowest chance of meeting its target), in words."""
    from helpers.formatting import fmt_chance
    # open objectives that can be judged (as the department page's own "look first"): the lowest chance first
    objectives = [o for o in summary.get("objectives", []) or [] if isinstance(o, dict)
                  and o.get("status") in ("on track", "at risk", "off track")]
    if not objectives:
        return ""

    def key(o):
        p = o.get("p_met")
        return (p if _finite(p) else 2.0, STATUS_RANK.get(str(o["status"]), 3))

    o = min(objectives, key=key)
    chance = f", {fmt_chance(o['p_met'])} chance of meeting its target" if _finite(o.get("p_met")) else ""
    return f"{o.get('title') or o.get('id')} ({o['status']}{chance})"


def run_changes(previous: dict | None, reports: list[dict], company: list[dict]) -> dict:
    """The run-level summary of what changed for the index: ``first_run``, the previous run's id and as-of,
    ``unchanged`` (every department report's latest period unchanged), and one sentence per KPI (department or
    company) that changed significantly since the previous run."""
    if previous is None:
        return {"first_run": True}
    dept = [r.get("changes") or {} for r in reports if r.get("kind") == "department" and r.get("status") == "ok"]
    sentences = []
    for r in reports:
        for k in (r.get("changes") or {}).get("kpis", []) or []:
            if k.get("significant"):
                change = KpiChange(**{f.name: k.get(f.name) for f in dataclasses.fields(KpiChange)})
                sentences.append(f"{r.get('department_name') or r.get('title')}: {change.sentence()}")
    prev_company = {k.get("kpi"): k for k in previous["manifest"].get("company_kpis", []) or []}
    for k in company:
        if k.get("kpi") in prev_company:
            change = kpi_change(prev_company[k["kpi"]], k)
            if change.significant:
                sentences.append(f"Company: {change.sentence()}")
    return {"first_run": False, "previous_run_id": previous["run_id"], "previous_as_of": previous.get("as_of", ""),
            "unchanged": bool(dept) and all(c.get("unchanged") for c in dept), "kpi_sentences": sentences}
