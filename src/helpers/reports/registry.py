"""The reports a run renders, registered in one place, and the page protocol every report notebook follows.

The runner reads :data:`REPORTS` (it hard-codes no notebook name): one entry per report notebook in
``notebooks/reports/`` with its kind (``department``: one page per department params file; ``company``: one
company-wide page), the parameters it takes beyond :data:`COMMON_PARAMETERS` (each named in
:data:`PARAMETER_SOURCES`, which says where the runner takes its value) and its title. Adding a report is one
entry here plus its notebook; the runner checks the notebook's ``parameters`` cell declares every parameter
listed.

**Page protocol.** Every report notebook ends with
``write_report_summary(summary_path, title=..., department=..., status_counts=..., warnings=..., headline=...,
objectives=..., kpis=..., charts=...)`` (:func:`helpers.reports.write_report_summary`). After a notebook ran,
the runner reads that summary (:func:`check_summary`): a notebook that finished without writing it, or wrote
an invalid one, is a failed report; so is a page that shows fewer charts (``<img>``) than ``charts`` says it
was meant to (:func:`charts_problem`: a chart that silently did not render).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

__all__ = ["ReportSpec", "REPORTS", "COMMON_PARAMETERS", "PARAMETER_SOURCES", "reports", "parameter_values",
           "check_registry", "check_summary", "charts_problem", "count_images"]

KINDS = ("department", "company")

# every report gets these (the runner fills them in for each run)
COMMON_PARAMETERS = ("data_source", "report_config", "as_of", "run_id", "summary_path")

# the other parameters a report may take, and where the runner takes each value from
PARAMETER_SOURCES = {
    "department": "the department's slug (department reports) or \"all\" (company-wide reports)",
    "params_file": "the department's params file params/departments/<slug>.yaml (department reports)",
    "outcome": "`outcome` of params/report.yaml (left out when unset)",
    "drivers": "`drivers` of params/report.yaml (a list, empty = every attr_* column)",
}


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """One registered report.

    ``name``: output file stem (company-wide: ``<name>.html``; department: ``<name>_<slug>.html``);
    ``notebook``: file name in the notebooks folder; ``kind``: ``department`` or ``company``; ``title``: the
    page title until the notebook's summary gives its own (``{department}`` is replaced by the department's
    display name); ``parameters``: the parameters the runner passes beyond :data:`COMMON_PARAMETERS`.

    For the run's schedule (:func:`helpers.reports.runner.schedule_order`): ``shares`` names the run-wide results
    the page computes when it is the first to need them (kept in the run folder; a page that needs one while
    another computes it waits for it), so the runner starts one page per shared result first and no worker
    waits; ``cost`` is the page's typical time relative to an average department page, used when the output
    folder has no previous run to take the times from (a department page's is scaled by its number of
    objectives)."""
    name: str
    notebook: str
    kind: str
    title: str
    parameters: tuple[str, ...] = ()
    shares: tuple[str, ...] = ()
    cost: float = 1.0


# the run-wide results pages share (each computed once per run, by the first page that needs it)
OBJECTIVES_WORTH = "objectives worth chain"  # helpers.objectives_report: every department's objectives priced
COMPANY_WORTH = "company worth chain"  # helpers.drivers_report.company_worth_analysis
WINDOW_THEMES = "window themes"  # helpers.voice_report.window_themes

# costs measured on the demo data (bench/bench_reports.py): a department page ~3.5 s, the drivers page ~3.7 s
# (it also computes every department's driver analysis), retention ~2.5 s and voice ~1.5 s once the shared
# results exist
REPORTS: tuple[ReportSpec, ...] = (
    ReportSpec("department", "department_report.ipynb", "department", "{department} report",
               ("department", "params_file"), shares=(OBJECTIVES_WORTH, WINDOW_THEMES), cost=1.0),
    ReportSpec("satisfaction_drivers", "satisfaction_drivers.ipynb", "company", "Satisfaction drivers",
               ("department", "outcome", "drivers"), shares=(COMPANY_WORTH,), cost=1.1),
    ReportSpec("retention_forecast", "retention_forecast.ipynb", "company", "Retention forecast",
               shares=(COMPANY_WORTH,), cost=0.7),
    ReportSpec("voice_of_customer", "voice_of_customer.ipynb", "company", "Voice of the customer", ("department",),
               shares=(WINDOW_THEMES,), cost=0.4),
)


def check_registry(specs: tuple[ReportSpec, ...] = REPORTS) -> None:
    """Raise ``ValueError`` naming the entry when the registry is inconsistent (unknown kind or parameter,
    duplicate name or notebook, a name that is not a file-name-safe slug)."""
    names, notebooks = set(), set()
    for spec in specs:
        where = f"report registry entry {spec.name!r}"
        if not re.fullmatch(r"[a-z0-9_]+", spec.name):
            raise ValueError(f"{where}: the name must be lower-case letters, digits and '_' (it names files)")
        if spec.kind not in KINDS:
            raise ValueError(f"{where}: kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
        unknown = [p for p in spec.parameters if p not in PARAMETER_SOURCES]
        if unknown:
            raise ValueError(f"{where}: parameters {', '.join(unknown)} have no source; known: "
                             f"{', '.join(PARAMETER_SOURCES)}")
        if not (isinstance(spec.cost, (int, float)) and spec.cost > 0):
            raise ValueError(f"{where}: cost {spec.cost!r}; expected a positive number (relative page time)")
        if isinstance(spec.shares, str) or not all(isinstance(x, str) and x for x in spec.shares):
            raise ValueError(f"{where}: shares must be a tuple of names of shared results")
        if spec.name in names or spec.notebook in notebooks:
            raise ValueError(f"{where}: its name or notebook is registered twice")
        names.add(spec.name)
        notebooks.add(spec.notebook)


def reports(kind: str | None = None, specs: tuple[ReportSpec, ...] | None = None) -> tuple[ReportSpec, ...]:
    """The registered reports (of one ``kind``), in registry order."""
    specs = REPORTS if specs is None else specs
    check_registry(specs)
    return tuple(s for s in specs if kind is None or s.kind == kind)


def parameter_values(spec: ReportSpec, cfg, *, department: str = "", params_file: str = "") -> dict:
    """The values of ``spec.parameters`` for one report (``department``: the slug, department reports only).
    A parameter whose source is unset (e.g. no ``outcome`` in report.yaml) is left out: the notebook's
    default applies."""
    values = {
        "department": department if spec.kind == "department" else "all",
        "params_file": params_file if spec.kind == "department" else None,
        "outcome": getattr(cfg, "outcome", None),
        "drivers": list(getattr(cfg, "drivers", []) or []),
    }
    return {name: values[name] for name in spec.parameters if values.get(name) is not None}


# ------------------------------------------------------------------------------------------------ page protocol

def check_summary(path: str | Path) -> tuple[dict, str | None]:
    """``(summary, problem)``: the summary the notebook wrote with ``write_report_summary`` and, when it breaks
    the page protocol, one plain sentence saying how (else None)."""
    path = Path(path)
    if not path.is_file():
        return {}, ("the notebook finished without writing its summary: its last step must be "
                    "write_report_summary(summary_path, title=..., ...) (the page protocol)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"the notebook's summary {path.name} is not readable JSON ({type(exc).__name__})"
    if not isinstance(summary, dict):
        return {}, f"the notebook's summary {path.name} is not a JSON object"
    problems = []
    if not isinstance(summary.get("title"), str) or not summary["title"].strip():
        problems.append("no title")
    counts = summary.get("status_counts", {})
    if not isinstance(counts, dict) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                           for v in counts.values()):
        problems.append("status_counts must map each status to a whole number >= 0")
    for key in ("warnings",):
        value = summary.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{key} must be a list of sentences")
    for key in ("objectives", "kpis"):
        value = summary.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            problems.append(f"{key} must be a list of mappings")
    if not isinstance(summary.get("headline", ""), str):
        problems.append("headline must be a sentence")
    charts = summary.get("charts")
    if charts is not None and (isinstance(charts, bool) or not isinstance(charts, int) or charts < 0):
        problems.append("charts must be a whole number >= 0")
    if problems:
        return summary, f"the notebook's summary breaks the page protocol: {'; '.join(problems)}"
    return summary, None


_IMG = re.compile(r"<img\b", re.I)


def count_images(html: str) -> int:
    """How many ``<img>`` elements a rendered page has."""
    return len(_IMG.findall(html))


def charts_problem(summary: dict, html: str) -> str | None:
    """A plain sentence when the page shows fewer charts than its summary says it was meant to, else None."""
    wanted = summary.get("charts")
    if wanted is None:
        return None
    shown = count_images(html)
    if shown >= int(wanted):
        return None
    return (f"the page was meant to show {wanted} chart{'s' if wanted != 1 else ''} and shows {shown}: charts did "
            "not render (draw them with helpers.charts.show_figure, which embeds the image whatever the "
            "matplotlib backend); the executed notebook shows which are missing")
