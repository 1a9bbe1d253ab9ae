"""Everything the ``satisfaction_drivers`` report notebook shows, prepared in one call.

:func:`prepare_drivers_report` reads the run settings (``params/report.yaml`` via :mod:`helpers.config`)
and the data (:func:`helpers.data.load_dataset`), selects the responses (department, period) and runs
the analyses of :mod:`helpers.drivers_analysis`. The notebook only displays the result. Input problems
(an unknown department, too few responses...) do not crash the report: they become ``warnings`` shown
at the top, and the sections that cannot be computed say so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.drivers_analysis import (DriverAnalysis, SegmentDrivers, _label, _md, _names, _pct,
                                      analyze_by_segment, analyze_drivers, select_responses)
from helpers.errors import KitError
from helpers.formatting import md_escape, shorten

SEED = 20261125  # fixed so a report run is reproducible


@dataclass
class DriversReport:
    department: str
    outcome: str
    drivers: list[str]
    period: tuple[str, str]
    n_boot: int
    company: str = ""
    source: str = ""
    main: DriverAnalysis | None = None
    by_department: SegmentDrivers | None = None
    differences: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """Plain text (escape it for Markdown with :func:`helpers.formatting.md_escape`)."""
        who = "all departments" if self.department.lower() == "all" else self.department
        return f"Drivers of {_label(self.outcome)}: {who}"

    def headline_markdown(self) -> str:
        """Period, outcome, attributes, data source and the notes; all free text escaped for Markdown."""
        lines = [f"**Period:** {md_escape(self.period[0])} to {md_escape(self.period[1])} · "
                 f"**Outcome:** {_md(self.outcome)} · "
                 f"**Attributes ({len(self.drivers)}):** {', '.join(_md(d) for d in self.drivers)}"]
        if self.source:
            lines.append(f"**Data:** {md_escape(self.source)}")
        if self.main is not None and self.main.attrs.get("n_boot"):
            a = self.main.attrs
            text = f"**Intervals:** {a['n_boot']:,} bootstrap re-samples of the responses"
            if a.get("n_boot_reason"):
                text += f" ({a.get('n_boot_requested', a['n_boot']):,} requested; " + md_escape(
                    a["n_boot_reason"].split(": ", 1)[-1]) + ")"
            lines.append(text + ".")
        if self.warnings:
            lines.append("**Please note:**\n\n" + "\n".join(f"- {md_escape(w)}" for w in self.warnings))
        return "\n\n".join(lines)

    def what_to_fix_markdown(self) -> str:
        """The plain-language answer for directors."""
        m = self.main
        if m is None:
            return "*No driver analysis could be made for this selection (see the notes above).*"
        t = m.table
        top = t.index[0]
        out = [f"- **{_md(top)} matters most** for {_md(self.outcome)}: "
               f"{_pct(t.loc[top, 'share'])} of what the attributes explain"
               + (f" (95% CI {_pct(t.loc[top, 'share_low'])}-{_pct(t.loc[top, 'share_high'])})" if "share_low" in t
                  else "") + "."]
        ff = m.fix_first
        if ff:
            out.append("- **Fix first:** " + ", ".join(
                f"{_md(d)} (rated {t.loc[d, 'performance']:.2f}, {_pct(t.loc[d, 'share'])} of importance)"
                for d in ff) + ". These matter more than average and are rated below the other attributes.")
        else:
            out.append("- No attribute is both important and rated below average: protect the strongest ones.")
        keep = [d for d in t.index if t.loc[d].get("quadrant") == "keep up"]
        if keep:
            out.append("- **Keep up:** " + _names(keep, 10) + " (important and already rated well).")
        over = [d for d in t.index if t.loc[d].get("quadrant") == "possible overkill"]
        if over:
            out.append("- **Possible overkill:** " + _names(over, 10)
                       + " (rated well but matter less; do not add effort here first).")
        out.append(f"- Together the attributes explain {_pct(m.r2)} of the differences in {_md(self.outcome)} "
                   f"between {m.n:,} responses; the rest depends on things the survey does not ask about.")
        if m.ordinal is not None:
            dis = m.ordinal.disagreements
            out.append("- A second model that treats the rating as ordered categories "
                       + ("gives the same order of attributes." if not dis else
                          "broadly agrees; it orders " + _names(dis) + " differently.")
                       + (f" (Fitted on a seeded random subsample of {m.ordinal.n:,} of the "
                          f"{m.ordinal.n_available:,} complete responses.)" if m.ordinal.subsampled else ""))
        return "\n".join(out)


def _load(data_source: str, report_config: str):
    from helpers.config import load_report_config, repo_root, resolve_data_source
    from helpers.data import is_snapshot, load_dataset

    root = repo_root()
    cfg_path = Path(report_config)
    if not cfg_path.is_absolute():
        cfg_path = root / cfg_path
    cfg = load_report_config(cfg_path)
    source = Path(data_source) if data_source else resolve_data_source(cfg)
    if not source.is_absolute():
        source = root / source
    snapshot = is_snapshot(source)  # a run's snapshot is validated already; a user's DuckDB file is not
    ds = load_dataset(source, column_mapping=None if snapshot else (cfg.column_mapping or None),
                      validate=not snapshot)
    return cfg, ds


def prepare_drivers_report(department: str = "all", outcome: str = "", drivers: list | None = None,
                           period_start: str = "", period_end: str = "", n_boot: int = 500,
                           data_source: str = "", report_config: str = "params/report.yaml",
                           as_of: str = "", seed: int = SEED) -> DriversReport:
    """Load, select and analyse. ``outcome`` "" = the config's outcome; ``drivers`` [] = the config's
    drivers or else every ``attr_*`` column; ``as_of`` caps ``period_end``."""
    report = DriversReport(department=department or "all", outcome=outcome, drivers=list(drivers or []),
                           period=(period_start, period_end), n_boot=int(n_boot))
    try:
        cfg, ds = _load(data_source, report_config)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    report.company, report.source = cfg.company, ds.origin
    report.warnings.extend(ds.excluded_messages(future_only=True))  # future-dated rows left out (helpers.data)
    report.outcome = outcome or cfg.outcome
    report.drivers = list(drivers or cfg.drivers or ds.attributes)
    responses = ds.responses
    missing_cols = [c for c in [report.outcome, *report.drivers] if c not in responses.columns]
    if missing_cols:
        report.warnings.append(f"responses has no column {missing_cols}; available ratings: "
                               + ", ".join(c for c in responses.columns if c in ("csat", "nps", "ces")
                                           or c.startswith("attr_")))
        return report
    end = period_end
    for name, value in (("as_of", as_of), ("period_end", period_end)):  # a notebook run directly: unchecked
        try:
            pd.Timestamp(value or "2000-01-01")
        except ValueError:
            report.warnings.append(f"{name} {shorten(value)} is not an ISO date (YYYY-MM-DD)")
            return report
    if as_of and (not end or pd.Timestamp(as_of) < pd.Timestamp(end)):
        end = as_of
    dates = pd.to_datetime(responses["response_date"])
    report.period = (period_start or str(dates.min().date()), end or str(dates.max().date()))
    try:
        in_period = select_responses(responses, "all", period_start, end)
        selected = select_responses(in_period, report.department)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    if report.department.lower() != "all":
        report.department = str(selected["department"].iloc[0])
    try:
        report.main = analyze_drivers(selected, report.outcome, report.drivers, n_boot=report.n_boot, seed=seed,
                                      label=report.department if report.department != "all" else "all departments",
                                      min_n=max(cfg.min_responses, 10 * len(report.drivers)))
        report.warnings.extend(report.main.warnings)
        if report.main.dropped:
            report.warnings.append("left out of the analysis: " + "; ".join(
                f"{_label(k)} ({v})" for k, v in report.main.dropped.items()))
    except KitError as exc:
        report.warnings.append(f"{report.department}: {exc}")
    try:
        seg = analyze_by_segment(in_period, report.outcome, report.drivers, "department",
                                 n_boot=min(report.n_boot, 300), seed=seed,
                                 min_n=max(cfg.min_responses, 10 * len(report.drivers)))
        report.by_department = seg
        report.warnings.extend(seg.warnings)
        rows = []
        names = sorted(seg.results)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if report.department not in ("all", a, b):
                    continue
                c = seg.compare(a, b).reset_index()
                c = c[c["differs"]]
                for _, r in c.iterrows():
                    rows.append({"driver": _label(r["driver"]), "department A": a, "department B": b,
                                 "difference (R² points)": r["difference"], "ci_low": r["ci_low"],
                                 "ci_high": r["ci_high"]})
        report.differences = pd.DataFrame(rows)
    except KitError as exc:
        report.warnings.append(f"comparison across departments: {exc}")
    return report
