"""The department report's glue: parameters in, every section's content out (used by
``notebooks/reports/department_report.ipynb``, which stays thin).

:func:`prepare_department_report` reads ``params/report.yaml`` and the department's params file, loads the
data, and evaluates the objectives (:func:`helpers.objectives.evaluate_objectives`). Nothing here raises
for a bad department file, absent data or an unknown department: the problem becomes a message shown in
the report (naming the file and field) and the remaining sections still render. The sections:

- executive summary: :meth:`DepartmentReport.status_table_html` (badges; all free text escaped);
- one section per objective: :meth:`DepartmentReport.objective_markdown` and ``plot_objective``; for CSAT/NPS
  objectives what meeting the target is worth (:meth:`DepartmentReport.worth`, ``helpers.impact_report``; one
  chain per run, cached);
- the cascade tree: :meth:`DepartmentReport.plot_cascade`;
- drivers and "fix first": :meth:`DepartmentReport.drivers` (``helpers.drivers_analysis``);
- what customers say: :meth:`DepartmentReport.customers_say_html` (``helpers.voice_report``; escaped, no ids),
  with the costliest theme no rating question asks about when it is estimable;
- customers to call back: :meth:`DepartmentReport.call_backs_html` (unhappy customers with a comment not yet
  followed up, the "contacted within 48 hours" KPI; ids only with ``show_customer_ids``);
- the department's customers' retention: :meth:`DepartmentReport.retention` (``helpers.retention``);
- data quality: :meth:`DepartmentReport.data_quality` and :meth:`DepartmentReport.all_warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.errors import KitError, ParamsError
from helpers.formatting import fmt_interval, fmt_number, fmt_percent, html_escape, md_escape, reader_table, shorten
from helpers.objectives import (ObjectiveEvaluation, ObjectivePlan, chance_text, department_slug, evaluate_objectives,
                                format_value, load_objectives, period_label)
from helpers.objectives_status import STATUSES


def _esc(text) -> str:
    """Free text for the Markdown this module builds: inert as Markdown and as HTML (helpers.formatting)."""
    return md_escape(text)


_NOT_FOR_KPIS = ("response_id", "ticket_id", "customer_id", "comment")


class DepartmentData:
    """One department's slice of a ``helpers.data.Dataset``: ``.responses`` and ``.tickets`` hold only the
    department's rows, selected in DuckDB before any pandas frame is built (``Dataset.frame(table,
    department=...)``), with the same columns, dtypes and row order as the full frames. Everything else
    (``.con``, ``.customers``, ``.org``, ``.departments``, ``.warnings``...) is the full dataset's.

    The objectives of a department only use its own responses and tickets (``KpiSource`` always filters
    them by department), so evaluating them on this slice gives the same numbers while the large tables
    are never materialised in full (at 5,000,000 tickets the full frame alone takes seconds and gigabytes).
    """

    def __init__(self, dataset, department: str):
        self._dataset = dataset
        self.department = department
        self._frames: dict[str, pd.DataFrame] = {}
        self._source: DepartmentData | None = None

    def for_kpis(self) -> DepartmentData:
        """A lean copy for the KPI engine: without the columns no KPI or objective filter reads (the row
        ids, customer id, free-text comment) and with the remaining text columns (department, team,
        agent_id, channel) as pandas categoricals, so the engine's row selections move integer codes
        instead of strings. Same rows, same values: the KPIs come out identical."""
        lean = DepartmentData(self._dataset, self.department)
        lean._source = self
        return lean

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._dataset, name)

    def _department_frame(self, table: str) -> pd.DataFrame:
        if table not in self._frames and self._source is not None:
            df = self._source._department_frame(table)
            df = df.drop(columns=[c for c in _NOT_FOR_KPIS if c in df.columns])
            text = [c for c in df.columns if pd.api.types.is_string_dtype(df[c].dtype)]
            self._frames[table] = df.astype({c: "category" for c in text})
        if table not in self._frames:
            self._frames[table] = self._dataset.frame(table, department=self.department)
        return self._frames[table]

    @property
    def responses(self) -> pd.DataFrame:
        return self._department_frame("responses")

    @property
    def tickets(self) -> pd.DataFrame:
        return self._department_frame("tickets")


def _resolve(path: str | Path, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


@dataclass
class DepartmentReport:
    """Everything the department report shows, computed once."""

    slug: str
    department: str
    params_file: str
    as_of: pd.Timestamp | None
    as_of_note: str = ""
    dataset: object | None = None
    config: object | None = None
    plan: ObjectivePlan | None = None
    evaluation: ObjectiveEvaluation | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def department_data(self) -> DepartmentData | None:
        """The dataset restricted (in DuckDB) to this department's responses and tickets; built once."""
        if self.dataset is None:
            return None
        view = self.__dict__.get("_department_data")
        if view is None or view.department != self.department or view._dataset is not self.dataset:
            view = DepartmentData(self.dataset, self.department)
            self.__dict__["_department_data"] = view
        return view

    # ------------------------------------------------------------------ summary
    @property
    def title(self) -> str:
        company = getattr(self.config, "company", "") or ""
        return f"{self.department} objectives" + (f" - {company}" if company else "")

    def status_counts(self) -> dict[str, int]:
        if self.evaluation is None:
            return {s: 0 for s in STATUSES}
        return self.evaluation.status_counts()

    def headline_markdown(self) -> str:
        """Title line, as-of date and the plain-language summary (escaped)."""
        when = f"{self.as_of:%d %B %Y}" if self.as_of is not None else "the last date in the data"
        lines = [_esc(self.evaluation.summary()) if self.evaluation is not None
                 else f"**{_esc(self.department)}**, as of **{when}**."]
        if self.as_of_note:
            lines.append(f"*As of {when}: {_esc(self.as_of_note)}.*")
        for p in self.problems:
            lines.append(f"**Could not evaluate the objectives:** {_esc(self.reader_text(p))}")
        return "\n\n".join(lines)

    def status_table_html(self) -> str:
        """The status table for readers: status first (visible on a phone), the objective with its owner, now
        (95% CI, n), target, the forecast for the window it is judged on and the chance of meeting it. Free
        text escaped; numbers as in the objectives' sentences (``format_value``)."""
        from helpers.charts import status_badge_html  # noqa: PLC0415

        if self.evaluation is None:
            return ('<p class="objective-status-missing">No objectives to show: '
                    + "; ".join(html_escape(self.reader_text(p)) for p in self.problems) + "</p>")
        head = ("<tr><th>Status</th><th>Objective</th><th>Now</th><th>Target</th><th>Forecast for the window</th>"
                '<th class="num">Chance</th></tr>')
        body = []
        for _, r in self.evaluation.table.iterrows():
            indent = f' style="padding-left:{0.6 + 1.2 * int(r["level"]):.1f}rem"' if int(r["level"]) else ""
            target = str(r["target_text"]).split(" (from")[0]
            lab = (lambda text: f'<span class="cell-label">{text}: </span>')
            body.append(
                "<tr>"
                f'<td>{status_badge_html(r["status"])}'
                + (f'<div class="status-detail">{html_escape(r["status_detail"])}</div>' if r["status_detail"] else "")
                + "</td>"
                f'<td{indent}>{html_escape(r["title"])}'
                f'<div class="owner">{html_escape(r["owner"])} &middot; judged on {html_escape(r["window"])}</div></td>'
                f'<td>{lab("Now")}{html_escape(r["current_text"])}</td>'
                f'<td>{lab("Target")}{html_escape(target)} by {html_escape(r["deadline_text"])}</td>'
                f'<td>{lab("Forecast")}{html_escape(r["forecast_text"])}</td>'
                f'<td class="num">{lab("Chance")}{html_escape(self._chance_text(r))}</td>'
                "</tr>")
        return (f'<table class="kit-table dept-status" id="status-table"><thead>{head}</thead>'
                f'<tbody>{"".join(body)}</tbody></table>')

    # ------------------------------------------------------------------ charts
    def show_chart(self, fig, alt: str) -> None:
        """Show a chart through ``helpers.charts.show_figure`` (PNG with its alt text) and count it for the
        page protocol (``charts_shown``)."""
        from helpers.charts import show_figure  # noqa: PLC0415

        show_figure(fig, alt=alt)
        self.__dict__["charts_shown"] = self.charts_shown + 1

    @property
    def charts_shown(self) -> int:
        return int(self.__dict__.get("charts_shown", 0))

    # ------------------------------------------------------------------ first screen
    @property
    def names(self) -> dict[str, str]:
        """person_id -> display name (the org table), for agents and owners (read once per dataset; a copy)."""
        cached = self.__dict__.get("_names")
        if cached is None or cached[0] is not self.dataset:
            org = getattr(self.dataset, "org", None) if self.dataset is not None else None
            names = {} if org is None or not {"person_id", "name"} <= set(org.columns) else \
                dict(zip(org["person_id"].astype(str), org["name"].astype(str)))
            cached = self.__dict__["_names"] = (self.dataset, names)
        return dict(cached[1])

    def kpi_tiles(self):
        """The KPI tiles (``helpers.kpi_tiles``), built once from the evaluation."""
        if "_tiles" not in self.__dict__:
            from helpers.kpi_tiles import tiles_from_evaluation  # noqa: PLC0415

            self.__dict__["_tiles"] = tiles_from_evaluation(self.evaluation, names=self.names)
        return self.__dict__["_tiles"]

    def headline(self) -> str:
        """One plain sentence: how many objectives are where, and the one to look at first with its chance."""
        if self.evaluation is None:
            return f"{self.department}: no objectives could be evaluated."
        counts = {k: v for k, v in self.status_counts().items() if v}
        n = sum(counts.values())
        text = (f"{self.department}, {self.as_of:%d %B %Y}: {n} objective{'s' if n != 1 else ''}, "
                + ", ".join(f"{v} {k}" for k, v in counts.items()))
        first = self.evaluation.look_first()
        if first is not None:
            text += f"; look first at \"{first['title']}\" ({chance_percent(first['p_met'])} chance of meeting it)"
        return text + "."

    def verdict_html(self) -> str:
        """The verdict block: a badge with the count per status (statuses with objectives only) and the
        "look first" objective with its owner and chance of meeting the target."""
        from helpers.charts import status_badge_html  # noqa: PLC0415

        if self.evaluation is None:
            return ('<div class="dept-verdict" id="status-counts"><p class="objective-status-missing">No objectives '
                    "to show: " + "; ".join(html_escape(self.reader_text(p)) for p in self.problems) + "</p></div>")
        counts = [(k, v) for k, v in self.status_counts().items() if v]
        items = "".join(f'<li><span class="count">{v}</span> {status_badge_html(k)}</li>' for k, v in counts)
        first = self.evaluation.look_first()
        if first is not None:
            look = (f'<p class="look-first"><strong>Look first:</strong> {html_escape(first["title"])} '
                    f'<span class="owner">&middot; {html_escape(first["owner"])}</span>: '
                    f'<strong>{chance_percent(first["p_met"])}</strong> chance of meeting the target of '
                    f'{html_escape(first["target_text"].split(" (from")[0])} for {html_escape(first["window"])}.</p>')
        else:
            look = f'<p class="look-first">{html_escape(self._no_look_first())}</p>'
        n = len(self.evaluation.table)
        return (f'<div class="dept-verdict" id="status-counts"><p class="verdict-lead">{n} objective'
                f'{"s" if n != 1 else ""} as of {self.as_of:%d %b %Y}:</p><ul class="status-counts">{items}</ul>'
                f"{look}</div>")

    def _no_look_first(self) -> str:
        """Why there is no "look first" objective, in words."""
        counts = self.status_counts()
        unjudged = counts.get("no data", 0) + counts.get("too little data", 0)
        if unjudged:
            return (f"No objective to look at first: {unjudged} of {sum(counts.values())} cannot be judged yet "
                    "(no data or too little data), the others are closed.")
        return "No open objective: every objective is achieved or missed."

    def first_screen_html(self) -> str:
        """What a director sees first: the verdicts, then one tile per KPI of the objectives."""
        from helpers.kpi_tiles import tiles_html  # noqa: PLC0415

        return f'<div class="dept-first-screen">{self.verdict_html()}{tiles_html(self.kpi_tiles())}</div>'

    # ------------------------------------------------------------------ objectives
    @property
    def objective_ids(self) -> list[str]:
        return [] if self.evaluation is None else list(self.evaluation.table["id"])

    def objective_markdown(self, objective_id: str) -> str:
        """The objective's section text: who, what, now (interval, n), progress, forecast, change test."""
        from helpers.charts import status_badge_html  # noqa: PLC0415

        r = self.evaluation.row(objective_id)
        o = self.plan.get(objective_id)
        info = self.evaluation.metrics.get(o.metric)
        parent = f" Part of *{_esc(self.plan.get(o.parent).title)}*." if o.parent else ""
        filters = _scope_text(o.filters, self.names)
        window = o.judged_on
        how = "as declared" if window.declared else "inferred from the dates and frequency"
        status = r["status"] + (f" ({r['status_detail']})" if r["status_detail"] else "")
        lines = [
            f"### {_esc(o.title)} {status_badge_html(r['status'])}",
            f"Owner: **{_esc(r['owner'])}**. {_esc(r['metric_label'])}"
            + (f" ({_esc(filters)})" if filters else "")
            + f": target {_esc(format_value(o.target, info))} from a baseline of "
              f"{_esc(format_value(r['baseline'], info))}, "
              f"between {o.start:%d %b %Y} and {o.deadline:%d %b %Y}, judged on {_esc(window.label)} "
              f"({how}).{parent}",
            f"- **Status:** {_esc(status)}",
            f"- **Now:** {_esc(r['current_text'])}",
            f"- **Progress:** {_esc(r['progress_text'])} of the way from baseline to target"
            + (" (negative: it moved the wrong way)" if str(r["progress_text"]).lstrip().startswith("-") else ""),
            f"- **Forecast for {_esc(window.label)}:** {_esc(r['forecast_text'])}; chance of meeting the target: "
            f"{_esc(self._chance_text(r))}",
            f"- **Assessment:** {_esc(r['sentence'])}",
        ]
        worth = self.worth_text(objective_id)
        if worth:
            lines.append(f"- **What meeting it is worth:** {_esc(worth)}")
        if r["change"]:
            lines.append(f"- **Last period against the one before:** {_esc(r['change'])}")
        if o.note:
            lines.append(f"- **Note:** {_esc(o.note)}")
        return "\n".join(lines)

    def _objective_bits(self, objective_id: str) -> dict:
        """What the objective's title, alt text, axis label and chart are made of: its row, objective, KPI, value
        format, whether it is closed and its name with its scope; built once per objective and evaluation."""
        cache = self.__dict__.get("_bits")
        if cache is None or cache[0] is not self.evaluation or cache[1] is not self.plan:
            cache = self.__dict__["_bits"] = (self.evaluation, self.plan, {})
        if objective_id not in cache[2]:
            cache[2][objective_id] = self._make_objective_bits(objective_id)
        return cache[2][objective_id]

    def _make_objective_bits(self, objective_id: str) -> dict:
        from helpers.objectives import format_value  # noqa: PLC0415

        r = self.evaluation.row(objective_id)
        o = self.plan.get(objective_id)
        info = self.evaluation.metrics.get(o.metric)
        fmt = (lambda v: format_value(v, info))
        closed = r["status"] in ("achieved", "missed") and r["forecast_method"] == "observed"
        return {"r": r, "o": o, "info": info, "fmt": fmt, "closed": closed,
                "name": (info.label if info else o.metric) + (f" ({_scope_text(o.filters, self.names)})"
                                                              if o.filters else "")}

    def objective_chart_title(self, objective_id: str) -> str:
        """The chart's finding, e.g. ``Median first response time (team Invoicing): 14.2 h in Oct 2026,
        forecast 14.8 h for Dec 2026 - target 12.0 h, 9% chance``."""
        b = self._objective_bits(objective_id)
        r, fmt = b["r"], b["fmt"]
        if not np.isfinite(r["current"]):
            return f"{b['name']}: no data to judge - target {fmt(r['target'])} for {r['window']}"
        now = f"{fmt(r['current'])} in {r['current_label']}"
        if b["closed"]:
            return f"{b['name']}: {now} - target {fmt(r['target'])}, {r['status']}"
        if r["status"] == "too little data":
            return f"{b['name']}: {now} - target {fmt(r['target'])}, too little data to judge"
        chance = f", {chance_percent(r['p_met'])} chance" if np.isfinite(r["p_met"]) else ""
        return (f"{b['name']}: {now}, forecast {fmt(r['forecast'])} for {r['window']} - target "
                f"{fmt(r['target'])}{chance}")

    def objective_alt(self, objective_id: str) -> str:
        """Alt text of an objective's chart: what it shows, the value, the target and the status."""
        b = self._objective_bits(objective_id)
        r = b["r"]
        return (f"Trend chart of {b['name']} by {'quarter' if b['o'].frequency == 'quarter' else 'month'} with 95% "
                f"confidence band. {self.objective_chart_title(objective_id)}. Status: {r['status']}. "
                f"Owner: {r['owner']}.")

    def objective_ylabel(self, objective_id: str) -> str:
        b = self._objective_bits(objective_id)
        info = b["info"]
        if info is None:
            return b["o"].metric
        unit = {"%": "%", "points": "points, -100 to +100", "hours": "hours", "score": "score 1-7",
                "count": "per day", "currency": "currency"}.get(info.unit, info.unit)
        return f"{info.label} ({'per day' if info.per_day else unit})"

    def plot_objective(self, objective_id: str, ax=None):
        """The objective's trend for readers (``helpers.charts.kpi_trend``): finding as title, units on the
        axis, the window it is judged on shaded, target and deadline in neutral grey, status by label and
        marker shape; the y-range set by the recent periods, the forecast and the target."""
        import textwrap  # noqa: PLC0415

        from helpers.charts import kpi_trend  # noqa: PLC0415

        b = self._objective_bits(objective_id)
        o, r, info = b["o"], b["r"], b["info"]
        per = "quarterly" if o.frequency == "quarter" else "monthly"
        percent = 100.0 if info and info.unit in ("%", "percent") else None
        return kpi_trend(self.evaluation.series.get(objective_id), target=o.target, deadline=o.deadline,
                         start=o.start, forecast=self.evaluation.forecasts.get(objective_id), status=r["status"],
                         title=textwrap.fill(self.objective_chart_title(objective_id), 95),
                         ylabel=self.objective_ylabel(objective_id), value_label=f"{per} value",
                         window=(r["window_start"], r["window_end"]), window_label=str(r["window"]),
                         bounds=info.bounds if info else None, percent=percent, ax=ax)

    def plot_cascade(self, ax=None):
        if self.evaluation is None:
            return None
        return self.evaluation.plot_cascade(ax=ax)

    def cascade_alt(self) -> str:
        """Alt text of the cascade chart: every objective with its owner and status, top-down."""
        if self.evaluation is None:
            return "No objectives."
        parts = [f"{r['title']} ({r['owner']}): {r['status']}" for _, r in self.evaluation.cascade().iterrows()]
        return "Tree of objectives from the director down to representatives, boxes by status. " + "; ".join(parts)

    def cascade_markdown(self) -> str:
        """The tree as an indented list (for readers of the text, and when the chart is too small)."""
        if self.evaluation is None:
            return "No objectives."
        lines = []
        for _, r in self.evaluation.cascade().iterrows():
            lines.append("  " * int(r["level"]) + f"- {_esc(r['title'])} - {_esc(r['owner'])}: **{_esc(r['status'])}**")
        return "\n".join(lines)

    # ------------------------------------------------------------------ drivers and retention
    def _period(self, months: int = 12) -> tuple[str, str]:
        end = self.as_of if self.as_of is not None else pd.Timestamp.today().normalize()
        start = end - pd.DateOffset(months=months) + pd.Timedelta(days=1)
        return f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"

    def drivers(self, n_boot: int | None = None, months: int | None = None):
        """The department's one driver analysis (``helpers.drivers_report.department_driver_analysis``: the same
        period, seed, bootstrap count and sample rule as the drivers page, so both pages show the same shares).

        Returns ``(DriverAnalysis or None, message)``; the message explains a missing analysis. The single
        call site of the driver analysis on this page."""
        if self.dataset is None:
            return None, "No data loaded."
        from helpers.drivers_report import DEPARTMENT_N_BOOT, department_driver_analysis  # noqa: PLC0415

        kwargs = {"n_boot": n_boot or DEPARTMENT_N_BOOT}
        if months is not None:
            kwargs["period"] = self._period(months)
        try:
            # engine aggregates; the department's rows are read only when no engine can be reached
            result = department_driver_analysis(self.dataset, self.config, self.department, self.as_of,
                                                responses=lambda: self.department_data.responses, **kwargs)
        except (KitError, ValueError) as exc:
            return None, f"No driver analysis for {self.department}: {exc}"
        if result.analysis is None:
            start, end = result.period
            return None, f"No driver analysis for {self.department} between {start} and {end}: {result.message}"
        return result.analysis, ""

    def drivers_alt(self, analysis) -> str:
        """Alt text of the drivers chart: the top attributes with their shares and the "fix first" list."""
        from helpers.formatting import column_label  # noqa: PLC0415

        t = analysis.table
        top = [f"{column_label(d)} {fmt_percent(t.loc[d, 'share'])}" for d in list(t.index)[:3]]
        fix = [column_label(d) for d in analysis.ipa.fix_first]
        return (f"Bar chart of each attribute's share of explained {column_label(analysis.outcome) if hasattr(analysis, 'outcome') else 'satisfaction'} "
                f"variance with 95% intervals, and an importance-performance map. Largest shares: {', '.join(top)}. "
                + (f"Fix first: {', '.join(fix)}." if fix else "No attribute is both important and rated below average."))

    def first_contacts(self) -> pd.DataFrame:
        """``customer_id, first_contact``: each customer's first ticket or survey answer with this department up
        to the as-of date (from the department's rows, :class:`DepartmentData`)."""
        parts = []
        for table, col in (("tickets", "created_at"), ("responses", "response_date")):
            if table not in getattr(self.dataset, "tables", (table,)):  # survey-only data: no tickets
                continue
            frame = getattr(self.department_data, table)
            when = pd.to_datetime(frame[col])
            keep = when.notna()
            if self.as_of is not None:
                keep &= when <= self.as_of + pd.Timedelta(days=1)
            parts.append(pd.DataFrame({"customer_id": frame.loc[keep, "customer_id"].astype(str).to_numpy(),
                                       "first_contact": when[keep].to_numpy()}))
        if not parts:
            return pd.DataFrame({"customer_id": pd.Series(dtype=str), "first_contact": pd.Series(dtype="datetime64[ns]")})
        both = pd.concat(parts, ignore_index=True)
        return both.groupby("customer_id", as_index=False)["first_contact"].min()

    def department_customers(self) -> pd.DataFrame:
        """Customers who had a ticket or a survey response with this department up to the as-of date (the
        customers keep the table's order): rows for an analyst (the whole customers table is read). The page's
        retention section does not use it: :meth:`retention` counts these customers in the engine."""
        ids = set(self.first_contacts()["customer_id"])
        customers = self.dataset.customers
        return customers[customers["customer_id"].astype(str).isin(ids)]

    def retention(self):
        """Survival of this department's customers by segment, counted with delayed entry:
        ``(KaplanMeierResult or None, message)``.

        A customer enters the risk set at their first contact with the department (left truncation), not at
        signup: they were, by that selection, still customers until then, and counting that time as survived
        would inflate survival (:func:`delayed_entry_survival`). Time is months since signup.

        Computed from the engine of the report config (entry day, exit day and churn per customer counted by SQL,
        :func:`helpers.engine.retention_queries.department_survival`: no customer row is read); the rows below
        only when the engine cannot be opened or a query fails (the same curves, tests/test_retention_engine_*)."""
        if self.dataset is None:
            return None, "No data loaded."
        missing = getattr(self.dataset, "missing_reason", lambda _what: "")("retention")
        if missing:  # survey-only data (issue 12): the one-line reason, naming the table it needs
            return None, missing
        from helpers.engine import EngineError, open_report_engine  # noqa: PLC0415
        from helpers.engine.retention_queries import department_survival  # noqa: PLC0415
        from helpers.retention import customer_durations, months_between  # noqa: PLC0415

        try:
            engine = open_report_engine(self.dataset, self.config)[0] if hasattr(self.dataset, "con") else None
            if engine is not None:
                try:
                    return department_survival(engine, self.department, self.as_of)
                except EngineError:
                    pass  # a query the engine cannot run: the rows below give the same curves
                finally:
                    engine.close()
            customers = self.department_customers()
            if customers.empty:
                return None, f"No customers contacted {self.department} up to the as-of date."
            frame = customer_durations(customers, as_of=self.as_of)
            contacts = self.first_contacts().set_index("customer_id")["first_contact"]
            first = pd.to_datetime(frame["customer_id"].astype(str).map(contacts))
            frame["entry"] = months_between(pd.to_datetime(frame["signup_date"]), first).clip(lower=0).to_numpy()
            group = "segment" if customers["segment"].nunique() > 1 else None
            return delayed_entry_survival(frame, "duration", "event", "entry", group=group), ""
        except (KitError, ValueError) as exc:
            return None, f"No retention analysis for {self.department}: {exc}"

    def retention_title(self, survival, months: int = 12) -> str:
        parts = []
        groups = [None] if survival.group is None else list(survival.medians[survival.group])
        for g in groups:
            v, _, _ = survival_at_with_ci(survival, months, g)
            if np.isfinite(v):
                who = "all" if g is None else str(g).replace("_", " ")
                parts.append(f"{who} {fmt_percent(v)}")
        return (f"Still customers {months} months after signup: " + ", ".join(parts)) if parts else \
            "Customer survival since signup"

    def plot_retention(self, survival, ax=None):
        """Survival curves by segment (delayed entry), with segment names for readers and the finding as title."""
        import textwrap  # noqa: PLC0415

        from helpers.charts import CHART_FONT_PT, NEUTRAL, new_axis  # noqa: PLC0415

        ax = survival.plot(ax=new_axis(ax))
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [str(x).replace("_", " ").capitalize() for x in labels], title="Segment",
                  fontsize=CHART_FONT_PT, title_fontsize=CHART_FONT_PT, frameon=False, loc="upper right")
        ax.yaxis.set_major_formatter(__import__("matplotlib.ticker", fromlist=["PercentFormatter"])
                                     .PercentFormatter(xmax=1.0, decimals=0))
        ax.set_ylabel("Still a customer (%)", fontsize=CHART_FONT_PT)
        ax.set_xlabel("Months since signup (each customer counted from their first contact with "
                      f"{self.department})", fontsize=CHART_FONT_PT)
        ax.axvline(12, color=NEUTRAL, linestyle=":", linewidth=1)
        ax.tick_params(labelsize=CHART_FONT_PT)
        ax.set_title("")
        ax.set_title(textwrap.fill(self.retention_title(survival), 95), loc="left", fontsize=12)
        return ax

    def retention_alt(self, survival) -> str:
        return (f"Kaplan-Meier curves of the share of {self.department}'s customers still customers by months since "
                f"signup, by segment, with 95% bands, each customer counted from their first contact with the "
                f"department. {self.retention_text(survival)}")

    def retention_text(self, survival, months: tuple[int, ...] = (12, 24)) -> str:
        """Plain sentences: per segment, the share still customers ``months`` after signup with its 95% CI."""
        from helpers.formatting import fmt_estimate  # noqa: PLC0415

        parts = []
        groups = [None] if survival.group is None else list(survival.medians[survival.group])
        for g in groups:
            bits = []
            for m in months:
                s, lo, hi = survival_at_with_ci(survival, m, g)
                if np.isfinite(s):
                    share, ci = fmt_estimate(s, lo, hi, percent=True)
                    bits.append(f"{share} after {m} months (95% CI {ci})")
            who = "All customers" if g is None else f"{str(g).replace('_', ' ').capitalize()} customers"
            if bits:
                parts.append(f"{who}: " + "; ".join(bits) + ".")
        return " ".join(parts)

    # ------------------------------------------------------------------ what customers say (issue 13)
    def customers_say(self, months: int = 12):
        """The department's "What customers say" (:func:`helpers.voice_report.what_customers_say`) over the page's
        ``months``-month window: ``(CustomersSay or None, message)``; the message is one line saying why the
        section is missing (no data, no survey answers, no comments). The result holds no customer or response
        id (only theme shares, effects and comment texts), so it is the same whatever ``show_customer_ids``."""
        if self.dataset is None:
            return None, "No data loaded."
        if not self.dataset.has("responses"):
            return None, ("What customers say needs the survey answers with their comments (the responses "
                          "table): add responses.csv")
        if not self.dataset.has("responses", "comment"):
            return None, "The survey answers carry no comments, so there is nothing customers said to show."
        if "_customers_say" not in self.__dict__:
            from helpers.voice_report import what_customers_say  # noqa: PLC0415

            start, end = self._period(months)
            try:
                self.__dict__["_customers_say"] = (what_customers_say(self.dataset, self.department, start, end,
                                                                      config=self.config), "")  # once per run
            except (KitError, ValueError, np.linalg.LinAlgError) as exc:
                self.__dict__["_customers_say"] = (None, f"No comment themes for {self.department}: {exc}")
        return self.__dict__["_customers_say"]

    def customers_say_html(self) -> str:
        """The section's body for readers: how many comments, the top themes (share with 95% CI, change against
        the 12 months before with its test, CSAT effect with 95% CI) and three example comments, every text
        escaped (:meth:`CustomersSay.html`); or one line saying why it is missing."""
        say, message = self.customers_say()
        if say is None:
            return f'<p class="dept-note">{html_escape(self.reader_text(message))}</p>'
        start, end = (pd.Timestamp(d) for d in say.period)
        if say.n_comments == 0:
            return (f'<p class="dept-note">No comments from {html_escape(self.department)}\'s customers between '
                    f"{start:%b %Y} and {end:%b %Y}.</p>")
        lead = (f"<p>{say.n_comments:,} comments about {html_escape(self.department)} between {start:%b %Y} and "
                f"{end:%b %Y}; the {len(say.table)} most frequent themes:</p>")
        return lead + _narrow(say.html())

    # ------------------------------------------------------------------ customers to call back (issue 13)
    def call_backs(self):
        """The department's unhappy customers with a comment of the last weeks not yet followed up, with the
        "contacted within 48 hours" KPI (:func:`helpers.voice_report.customers_to_call_back`), up to the page's
        as-of date; customer ids only when ``show_customer_ids`` is on in report.yaml. ``(CallBackList or None,
        message)``."""
        if self.dataset is None:
            return None, "No data loaded."
        if "_call_backs" not in self.__dict__:
            from helpers.engine import EngineError, open_report_engine  # noqa: PLC0415
            from helpers.voice_report import customers_to_call_back  # noqa: PLC0415

            ids = bool(getattr(self.config, "show_customer_ids", False))
            end = self.as_of if self.as_of is not None else self.dataset.default_as_of()
            # the report's engine (DuckDB or Spark) orders and cuts the list and counts; DuckDB over the dataset
            # when it cannot be opened or a query fails (the same list: tests/test_voice_followup_engine.py)
            engine, note = open_report_engine(self.dataset, self.config) if hasattr(self.dataset, "con") \
                else (None, None)
            try:
                try:
                    calls = customers_to_call_back(self.dataset, self.department, end, show_customer_ids=ids,
                                                   engine=engine)
                except EngineError as exc:
                    if engine is None:
                        raise
                    from helpers.formatting import clip_text  # noqa: PLC0415

                    calls = customers_to_call_back(self.dataset, self.department, end, show_customer_ids=ids)
                    note = (f"The {engine.name} engine could not give this list ({clip_text(exc)}); DuckDB "
                            "computed it over the run's copy of the data.")
                if note:  # said on the page, not only in the log
                    import dataclasses  # noqa: PLC0415

                    calls = dataclasses.replace(calls, engine_note=note)
                self.__dict__["_call_backs"] = (calls, "")
            except (KitError, ValueError) as exc:
                self.__dict__["_call_backs"] = (None, f"No list of customers to call back: {exc}")
            finally:
                if engine is not None:
                    engine.close()
        return self.__dict__["_call_backs"]

    def call_backs_html(self) -> str:
        """The section's body (:meth:`helpers.voice_report.CallBackList.html`: every text escaped, cards on a
        phone) or one line saying why it is missing."""
        calls, message = self.call_backs()
        if calls is None:
            return f'<p class="dept-note">{html_escape(self.reader_text(message))}</p>'
        return calls.html()

    # ------------------------------------------------------------------ what meeting an objective is worth (issue 15)
    WORTH_N_BOOT = 200
    WORTH_HORIZON = 12
    WORTH_SEED = 15

    def worth(self):
        """What meeting each satisfaction objective (CSAT, NPS) is worth over :attr:`WORTH_HORIZON` months
        (:func:`helpers.impact_report.objective_worth`, joint customer bootstrap with :attr:`WORTH_N_BOOT`
        resamples): ``(table or None, message)``, ``table`` indexed by objective id; the message is one line
        saying what is missing when the chain cannot be estimated.

        Cost: one chain per KPI takes a few seconds on 20,000 customers. Within a report run (data from the run's
        snapshot) the chain is computed once for every department's objectives (one chain prices them all, with
        the same resamples, so each department's numbers are those of its own chain) and cached in the run
        folder (``cache/worth/``, keyed by the objectives, as-of date, settings and the data's fingerprint; a lock
        lets one report compute while the others wait); outside a run only this department's objectives."""
        if "_worth" not in self.__dict__:
            self.__dict__["_worth"] = self._compute_worth()
        return self.__dict__["_worth"]

    def _worth_objectives(self) -> list:
        from helpers.impact_report import PRICEABLE  # noqa: PLC0415

        return [] if self.plan is None else [o for o in self.plan.objectives if o.metric in PRICEABLE]

    def _compute_worth(self):
        if self.dataset is None or not self._worth_objectives():
            return None, ""
        what = "What meeting the satisfaction objectives is worth"
        if not self.dataset.has("customers"):
            return None, (f"{what} needs the customers table (signup and churn dates, monthly revenue): add "
                          "customers.csv.")
        if not self.dataset.has("customers", "monthly_revenue"):
            return None, f"{what} needs the customers' monthly revenue, which the customers table does not have."
        if not self.dataset.has("responses"):
            return None, f"{what} needs the survey answers (the responses table): add responses.csv."
        from helpers.engine.worth_sample import DEFAULT_SIZE  # noqa: PLC0415
        from helpers.impact_report import objective_worth, objective_worth_engine  # noqa: PLC0415

        currency = getattr(self.config, "currency", "") or "EUR"
        settings = {"version": 1, "as_of": f"{self.as_of:%Y-%m-%d}", "n_boot": self.WORTH_N_BOOT,
                    "seed": self.WORTH_SEED, "horizon": self.WORTH_HORIZON, "currency": currency,
                    "data": str(getattr(self.dataset, "fingerprint", "")), "sample": DEFAULT_SIZE}
        folder = _worth_cache_folder(self.dataset)
        plans = _all_plans(self.plan, Path(self.params_file).parent) if folder is not None else [self.plan]
        settings["objectives"] = [[p.department, o.id, o.metric, float(o.target),
                                   {k: list(v) for k, v in o.filters.items()}]
                                  for p in plans for o in p.objectives]

        def compute():
            # the report's engine: levels by GROUP BY, the chain on a seeded customer sample (stated in the notes
            # when it is not every customer); the frames only when the engine cannot be opened
            from helpers.engine import open_report_engine  # noqa: PLC0415

            engine, note = open_report_engine(self.dataset, self.config)
            if engine is None:
                result = objective_worth(plans, self.dataset.customers, self.dataset.responses, as_of=self.as_of,
                                         horizon=self.WORTH_HORIZON, n_boot=self.WORTH_N_BOOT, seed=self.WORTH_SEED,
                                         currency=currency)
                result.notes.extend([note] if note else [])
                return result
            try:
                return objective_worth_engine(plans, engine, as_of=self.as_of, horizon=self.WORTH_HORIZON,
                                              n_boot=self.WORTH_N_BOOT, seed=self.WORTH_SEED, currency=currency,
                                              sample_seed=self.WORTH_SEED)
            finally:
                engine.close()

        try:
            result = _cached(folder, "objectives", settings, compute)
        except (KitError, ValueError, np.linalg.LinAlgError) as exc:
            return None, f"{what} cannot be estimated on this data: {exc}"
        table = result.table[result.table["department"] == self.department].set_index("objective")
        return table.assign(currency=result.currency), ""

    def worth_text(self, objective_id: str) -> str:
        """One sentence for the objective's section: what meeting its target is worth (customers kept after
        12 months and revenue over them, each with its 95% CI, money in the report's currency), or why it is not
        priced; "" for an objective on another KPI."""
        from helpers.formatting import column_label, fmt_currency, interval_decimals  # noqa: PLC0415
        from helpers.impact_report import PRICEABLE  # noqa: PLC0415

        o = self.plan.get(objective_id)
        if o.metric not in PRICEABLE:
            return ""
        table, message = self.worth()
        if table is None:
            return self.reader_text(message)
        if objective_id not in table.index:
            return "not priced."
        r = table.loc[objective_id]
        label, h = column_label(o.metric), self.WORTH_HORIZON
        unit = "%" if o.metric == "csat" else ""
        value = (lambda v: f"{fmt_number(v, 1, signed=o.metric == 'nps')}{unit}")
        now = f"{label} {value(r['current'])} in the last 12 months' answers"
        note = str(r["note"] or "")
        if note.startswith("target already met"):
            return (f"not priced: the last 12 months' answers taken together ({label} {value(r['current'])}) meet "
                    "the target already, so raising them is not needed to reach it (the status above is about the "
                    "period the objective is judged on).")
        if note:
            why = ("its filter names something survey answers do not carry" if "filter" in note else
                   "no rise of the ratings reaches it" if "no uniform rise" in note else
                   "there are no answers for it in the last 12 months" if "no " in note else note)
            return f"not priced: {why}."
        cur = str(r["currency"])
        d = interval_decimals(r["extra_kept_low"], r["extra_kept_high"], least=0, most=2)
        money = (lambda v: fmt_currency(v, cur))  # unsigned: "+" before "€" lets a browser break the line there
        more = "more" if r["extra_revenue"] >= 0 else "less"
        return (f"about {fmt_number(r['extra_kept'], d)} more customers kept after {h} months (95% CI "
                f"{fmt_interval(r['extra_kept_low'], r['extra_kept_high'], d)}) and {money(abs(r['extra_revenue']))} "
                f"{more} revenue over those {h} months (95% CI {money(r['extra_revenue_low'])} to "
                f"{money(r['extra_revenue_high'])}), "
                f"if {self.department}'s ratings rose by {fmt_number(r['rating_change'], 2)} points on average, enough "
                f"to lift {label} from {value(r['current'])} (last 12 months) to the target of {value(r['target'])}. "
                f"This is {WORTH_ASSOCIATION}.")

    # ------------------------------------------------------------------ teams and agents
    FUNNEL_BY = (("team", "team", "teams", "tickets"), ("agent_id", "agent", "agents", "tickets"))

    def funnel_period(self, months: int = 6) -> tuple[str, str]:
        return self._period(months)

    def funnels(self, months: int = 6) -> tuple[list[dict], list[str]]:
        """Funnel plots (``helpers.funnel``) of every objective KPI that tickets carry, by team and by agent,
        over the last ``months`` months: ``([{"result", "by", "unit", "units"}...], notes)``. The notes say
        which KPIs cannot be compared by team (survey answers carry no team or agent) or why one is missing."""
        from helpers.funnel import SUPPORTED_KINDS  # noqa: PLC0415
        from helpers.kpis import KPIS  # noqa: PLC0415

        if self.evaluation is None or self.dataset is None:
            return [], []
        start, end = self.funnel_period(months)
        engine = self._funnel_engine()
        try:
            return self._funnels(engine, start, end, SUPPORTED_KINDS, KPIS)
        finally:
            if engine is not None:
                engine.close()

    def _funnel_engine(self):
        """The report config's engine over this dataset (aggregates: no ticket row reaches pandas), or None when
        it cannot be opened (the funnels are then computed from the department's rows, with the same result)."""
        settings = getattr(self.config, "engine", None)
        if settings is None:
            return None
        try:
            return settings.connect(dataset=self.dataset)
        except Exception:  # noqa: BLE001 - the row path gives the same funnels (tests/test_funnel_engine.py)
            return None

    def _funnel_result(self, engine, metric: str, column: str, start, end):
        from helpers.funnel import funnel, funnel_from_engine  # noqa: PLC0415
        from helpers.kpis import KPIS  # noqa: PLC0415

        if engine is not None:
            try:
                return funnel_from_engine(engine, metric, column, filters={"department": self.department},
                                          start=start, end=end)
            except KitError:
                raise
            except Exception:  # noqa: BLE001 - an engine query that fails falls back to the rows
                pass
        k = KPIS[metric]
        frame = self.department_data.tickets
        dates = pd.to_datetime(frame[k.date_column])
        frame = frame[(dates >= pd.Timestamp(start)) & (dates < pd.Timestamp(end) + pd.Timedelta(days=1))]
        return funnel(frame, metric, column)

    def _funnels(self, engine, start, end, SUPPORTED_KINDS, KPIS) -> tuple[list[dict], list[str]]:
        out, notes, seen = [], [], []
        for oid in self.objective_ids:
            metric = self.plan.get(oid).metric
            if metric in seen:
                continue
            seen.append(metric)
            k = KPIS.get(metric)
            if k is None or k.kind not in SUPPORTED_KINDS:
                continue
            if k.table != "tickets":
                notes.append(f"{k.label} comes from survey answers, which carry no team or agent, so it is not "
                             "compared by team here.")
                continue
            if "tickets" not in getattr(self.dataset, "tables", ("tickets",)):  # survey-only data (issue 12)
                notes.append(self.dataset.missing_reason(metric))
                continue
            for column, unit, units, _ in self.FUNNEL_BY:
                try:
                    result = self._funnel_result(engine, metric, column, start, end)
                except (KitError, ValueError) as exc:
                    notes.append(f"{k.label} by {unit}: {exc}")
                    continue
                if len(result.table) < 2:
                    notes.append(f"{k.label} by {unit}: fewer than two {units} with enough tickets to compare.")
                    continue
                out.append({"result": result, "by": column, "unit": unit, "units": units})
        return out, notes

    def _unit_name(self, code: str, by: str) -> str:
        return self.names.get(code, code) if by == "agent_id" else code

    def _funnel_value(self, result, v) -> str:
        if result.unit == "%":
            return fmt_percent(v, 1, share=False)
        if result.unit == "hours":
            return f"{fmt_number(v, 1)} h"
        return fmt_number(v, 1)

    def funnel_title(self, item: dict) -> str:
        """The funnel chart's finding: which units lie outside the limits (only those are named)."""
        r, start_end = item["result"], self.funnel_period()
        when = f"{pd.Timestamp(start_end[0]):%b %Y} to {pd.Timestamp(start_end[1]):%b %Y}"
        flagged = r.flagged.assign(_name=[self._unit_name(u, item["by"]) for u in r.flagged["unit"]]).sort_values(
            ["direction", "_name"], ascending=[False, True])  # worse first, then by name (never a ranking)
        if flagged.empty:
            return (f"{r.label} by {item['unit']}, {when}: no {item['unit']} differs from the department "
                    f"({self._funnel_value(r, r.centre)}) by more than chance")
        parts = [f"{self._unit_name(u, item['by'])} {d} ({self._funnel_value(r, v)})"
                 for u, d, v in zip(flagged["unit"], flagged["direction"], flagged["value"])]
        return (f"{r.label} by {item['unit']}, {when}: {', '.join(parts)} vs department "
                f"{self._funnel_value(r, r.centre)}")

    def funnel_alt(self, item: dict) -> str:
        r = item["result"]
        return (f"Funnel plot of {r.label} for {len(r.table)} {item['units']} against their number of tickets, with "
                f"95% and 99.8% control limits around the department value. {self.funnel_title(item)}.")

    def plot_funnel(self, item: dict, ax=None):
        import textwrap  # noqa: PLC0415

        from helpers.charts import funnel_plot  # noqa: PLC0415

        names = self.names if item["by"] == "agent_id" else {}
        ax = funnel_plot(item["result"], ax=ax, names=names, unit_label="tickets")
        ax.set_title(textwrap.fill(self.funnel_title(item), 95), loc="left", fontsize=12)
        return ax

    def funnel_table_html(self, item: dict) -> str:
        """Every unit for readers, in alphabetical order (not a ranking): n, value, the 95% limits at its n,
        and whether it lies outside them."""
        r = item["result"]
        notes = "".join(f'<p class="dept-note">{html_escape(n[:1].upper() + n[1:])}.</p>' for n in r.notes)
        t = r.table.assign(name=[self._unit_name(u, item["by"]) for u in r.table["unit"]]).sort_values("name")
        outside = [("no" if o == "" else f"{d}, outside the {o} limits") for o, d in zip(t["outside"], t["direction"])]
        limits = [f"{self._funnel_value(r, lo)} to {self._funnel_value(r, hi)}"
                  for lo, hi in zip(t["low_95"], t["high_95"])]
        frame = pd.DataFrame({"name": t["name"].to_numpy(), "n": t["n"].to_numpy(),
                              "value": [self._funnel_value(r, v) for v in t["value"]], "limits": limits,
                              "outside": outside})
        return notes + _narrow(reader_table(frame, labels={"name": item["unit"].capitalize(), "n": "Tickets",
                                           "value": r.label, "limits": "Expected range (95%)",
                                           "outside": "Outside the limits?"},
                            formats={"n": "int", "value": "text", "limits": "text", "outside": "text"}))

    # ------------------------------------------------------------------ data quality
    def data_quality(self) -> pd.DataFrame:
        """Per objective (index: title): periods with data, first and last, n in the current period, status
        and the message of an objective without data."""
        if self.evaluation is None:
            return pd.DataFrame(columns=["objective", "metric", "periods with data", "first", "last", "n now",
                                         "status", "message"]).set_index("objective")
        rows = []
        for _, r in self.evaluation.table.iterrows():
            s = self.evaluation.series.get(r["id"])
            has = s is not None and len(s) > 0
            rows.append({"objective": r["title"], "metric": r["metric_label"],
                         "periods with data": int(len(s)) if has else 0,
                         "first": f"{s['period'].min():%Y-%m}" if has else "",
                         "last": f"{s['period'].max():%Y-%m}" if has else "",
                         "n now": int(r["n"]) if np.isfinite(r["n"]) else 0,
                         "status": r["status"], "message": r["reason"]})
        return pd.DataFrame(rows).set_index("objective")

    def missing_values(self) -> pd.DataFrame:
        """Missing share of this department's survey and ticket fields (all periods up to the as-of date)."""
        if self.dataset is None:
            return pd.DataFrame(columns=["table", "column", "rows", "missing", "missing share"]).set_index(
                ["table", "column"])
        from helpers.engine import quote_ident  # noqa: PLC0415

        out = []
        for table, cols in (("responses", ["csat", "nps", "ces", *self.dataset.attributes]),
                            ("tickets", ["team", "agent_id", "first_response_at", "resolved_at",
                                         "contacts_to_resolve"])):
            if not self.dataset.has(table):  # the data has no such table (issue 12)
                continue
            present = set(self.dataset.columns(table))  # asked once (a DESCRIBE each time)
            cols = [c for c in cols if c in present]
            if not cols:
                continue
            # counted in DuckDB: no row of the department reaches pandas (issue 14)
            counts = ", ".join(f"count(*) - count({quote_ident(c)})" for c in cols)
            rows, *missing = self.dataset.con.execute(
                f"SELECT count(*), {counts} FROM {quote_ident(table)} WHERE department = $department",
                {"department": self.department}).fetchone()
            for c, miss in zip(cols, missing):
                out.append({"table": table, "column": c, "rows": int(rows), "missing": int(miss),
                            "missing share": f"{miss / rows:.1%}" if rows else "n/a"})
        if not out:
            return pd.DataFrame(columns=["table", "column", "rows", "missing", "missing share"]).set_index(
                ["table", "column"])
        return pd.DataFrame(out).set_index(["table", "column"])

    def data_quality_html(self) -> str:
        """The data behind each objective as a reader table (messages worded for readers)."""
        dq = self.data_quality().reset_index()
        if dq.empty:
            return "<p>No objectives.</p>"

        def span(first, last):
            if not first:
                return "none"
            return f"{pd.Timestamp(first):%b %Y} to {pd.Timestamp(last):%b %Y}"

        frame = pd.DataFrame({"objective": dq["objective"], "metric": dq["metric"],
                              "periods": dq["periods with data"],
                              "span": [span(f, l) for f, l in zip(dq["first"], dq["last"])],
                              "n": dq["n now"], "status": dq["status"],
                              "note": [self.reader_text(m) if m else "-" for m in dq["message"].fillna("")]})
        return _narrow(reader_table(frame, labels={"objective": "Objective", "metric": "KPI", "periods": "Periods with data",
                                           "span": "Data from", "n": "n now", "status": "Status", "note": "Note"},
                            formats={"periods": "int", "n": "int", "span": "text", "note": "text"}))

    def missing_values_html(self) -> str:
        """Completeness of this department's survey and ticket fields as a reader table."""
        from helpers.formatting import column_label  # noqa: PLC0415

        mv = self.missing_values().reset_index()
        if mv.empty:
            return "<p>No data loaded.</p>"
        share = [m / r if r else float("nan") for m, r in zip(mv["missing"], mv["rows"])]
        frame = pd.DataFrame({"table": [{"responses": "Survey answers", "tickets": "Tickets"}.get(t, t)
                                        for t in mv["table"]],
                              "field": [column_label(c) for c in mv["column"]],
                              "rows": mv["rows"], "missing": mv["missing"], "share": share})
        return _narrow(reader_table(frame, labels={"table": "Table", "field": "Field", "rows": "Rows",
                                           "missing": "Missing", "share": "Missing share"},
                            formats={"rows": "int", "missing": "int", "share": "percent:1"}))

    def summary_objectives(self) -> list[dict]:
        """The page protocol's objective records; a CSAT/NPS objective's record also has ``worth``: what meeting it
        is worth (``customers_kept`` and ``revenue`` over ``horizon_months`` with their 95% ``*_low``/``*_high``
        and the ``currency``), or ``{"note": ...}`` saying why it is not priced."""
        if self.evaluation is None:
            return []
        return [{"id": r["id"], "title": r["title"], "owner": r["owner"], "status": r["status"],
                 "p_met": float(r["p_met"]) if np.isfinite(float(r["p_met"])) and r["status"] not in
                 ("no data", "too little data") else None, "kpi": r["metric"],
                 **({"worth": w} if (w := self._worth_record(r["id"])) else {})}
                for _, r in self.evaluation.table.iterrows()]

    def _worth_record(self, objective_id: str) -> dict | None:
        from helpers.impact_report import PRICEABLE  # noqa: PLC0415

        if self.plan is None or self.plan.get(objective_id).metric not in PRICEABLE:
            return None
        table, message = self.worth()
        if table is None or objective_id not in table.index:
            return {"note": self.reader_text(message) or "not priced"}
        r = table.loc[objective_id]
        if r["note"] or not np.isfinite(r["extra_kept"]):
            return {"note": self.worth_text(objective_id)}
        return {"horizon_months": self.WORTH_HORIZON, "currency": str(r["currency"]),
                **{f"customers_kept{s}": float(r[f"extra_kept{s}"]) for s in ("", "_low", "_high")},
                **{f"revenue{s}": float(r[f"extra_revenue{s}"]) for s in ("", "_low", "_high")}}

    def summary_kpis(self) -> list[dict]:
        """The page protocol's KPI records (the tiles)."""
        return [t.to_summary() for t in self.kpi_tiles()]

    def all_warnings(self) -> list[str]:
        """Problems, SMART-lint and evaluation warnings, and the data's warnings about this department."""
        out = list(self.problems)
        if self.evaluation is not None:
            out += self.evaluation.warnings
        elif self.plan is not None:
            out += list(self.plan.warnings)
        if self.dataset is not None:
            out += [w for w in getattr(self.dataset, "warnings", []) if self.department in w]
            out += [f.message() for f in getattr(self.dataset, "excluded", []) if f.kind == "future"]
        seen, unique = set(), []
        for w in out:
            if w not in seen:
                seen.add(w)
                unique.append(w)
        return unique

    def warnings_markdown(self) -> str:
        ws = self.reader_warnings()
        return "\n".join(f"- {_esc(w)}" for w in ws) if ws else "No warnings."

    def reader_text(self, text: str) -> str:
        """A message for stakeholders: the objectives file's path becomes "the objectives file", an objective's
        id its title, and setting names plain words (no paths or code names on the page).

        For the messages written for analysts, which by the kit's rule name the file, objective and field to fix:
        problems loading the objectives file or the data, the evaluation's and the data's warnings, and text
        from the KPI layer inside them. The objectives' own texts for readers (``sentence``, ``reason``,
        ``current_text``, ``forecast_text``) come clean from :mod:`helpers.objectives` and are shown as they are."""
        import re  # noqa: PLC0415

        from helpers.formatting import column_label  # noqa: PLC0415

        out = str(text or "")
        paths = {self.params_file, str(getattr(self.plan, "path", "") or "")} - {""}
        for p in sorted(paths, key=len, reverse=True):
            out = out.replace(f"{p}: ", "").replace(p, "the objectives file")
        if self.plan is not None:
            for o in self.plan.objectives:
                out = out.replace(f"objective {o.id!r}: ", f"\"{o.title}\": ").replace(repr(o.id), f"\"{o.title}\"")
        out = re.sub(r"fewer than min_responses\s*=\s*(\d+)", r"fewer than the minimum of \1", out)
        out = re.sub(r"min_responses\s*=\s*(\d+)", r"the minimum of \1", out)
        # a data file's location is the analyst's business, not the reader's: "responses (/srv/x.csv): ..."
        out = re.sub(r"\s*\((?:/|[A-Za-z]:\\)[^()]*\)", "", out)
        out = re.sub(r"\bno (\w+) data\b", lambda m: f"no {self._metric_label(m.group(1))} data", out)
        out = re.sub(r"\b(agent_id|first_response_at|resolved_at|contacts_to_resolve|response_date|created_at)\b",
                     lambda m: column_label(m.group(1)).lower(), out)
        for person, name in self.names.items():
            out = out.replace(f"'{person}'", f"'{name}'")
        out = re.sub(r", field '[\w.]+'", "", out)
        out = re.sub(r"(^|: )field '[\w.]+': ", r"\1", out)
        out = re.sub(r"metric '(\w+)' cannot be computed: KPI '\1': ",
                     lambda m: f"{self._metric_label(m.group(1))} cannot be computed: ", out)
        out = re.sub(r"filter (\w+)='([^']*)' matches no rows in (responses|tickets)",
                     lambda m: (f"no {'survey answers' if m.group(3) == 'responses' else 'tickets'} have "
                                f"{column_label(m.group(1)).lower()} '{m.group(2)}'"), out)
        return out.replace("min_responses", "the minimum number of answers")

    def _metric_label(self, metric: str) -> str:
        info = self.evaluation.metrics.get(metric) if self.evaluation is not None else None
        return info.label if info is not None else metric

    def reader_warnings(self) -> list[str]:
        """:meth:`all_warnings` worded for readers (:meth:`reader_text`)."""
        return [self.reader_text(w) for w in self.all_warnings()]

    @staticmethod
    def _chance_text(r) -> str:
        """The chance of meeting the target as shown: n/a without a verdict (no data, too little data),
        "closed" after the deadline, else :func:`chance_percent`."""
        if r["status"] in ("no data", "too little data"):
            return "n/a"
        if str(r["chance_text"]) == "closed":
            return "closed"
        return chance_percent(r["p_met"])

    # ------------------------------------------------------------------ calibration
    def calibration(self, origins: int = 2, max_horizon: int = 6):
        """The backtest of this department's objective forecasts (``helpers.objectives_backtest``), computed
        once: the last ``origins`` as-of dates stepped back, 1..``max_horizon`` periods ahead each."""
        if self.evaluation is None:
            return None
        cached = self.__dict__.get("_calibration")
        if cached is None:
            from helpers.objectives_backtest import backtest_objectives  # noqa: PLC0415

            cached = backtest_objectives(self.evaluation, origins=origins, max_horizon=max_horizon)
            self.__dict__["_calibration"] = cached
        return cached

    def calibration_markdown(self, link: bool = True) -> str:
        """One line: how often past forecasts' intervals held the realised value (``link``: to the detail)."""
        bt = self.calibration()
        if bt is None:
            return ""
        if not link:
            return _esc(bt.summary())
        return f"*How reliable are these forecasts?* {_esc(bt.summary())} [Details](#calibration-detail)."

    def calibration_table_html(self) -> str:
        """The reliability table as a reader table."""
        table = self.calibration_table()
        if table.empty:
            return "<p>No past forecasts to check yet.</p>"
        return _narrow(reader_table(table, formats={c: "text" for c in table.columns if c != "Events"} | {"Events": "int"}))

    def calibration_table(self) -> pd.DataFrame:
        """The reliability table for readers: predicted chance, events, share that happened (95% CI)."""
        bt = self.calibration()
        if bt is None or bt.n == 0:
            return pd.DataFrame(columns=["Predicted chance", "Events", "Mean predicted", "Share that happened"])
        r = bt.reliability()
        return pd.DataFrame({"Predicted chance": r["predicted"], "Events": r["events"],
                             "Mean predicted": [f"{p:.0%}" for p in r["mean predicted"]],
                             "Share that happened": [f"{m:.0%} ({lo:.0%} to {hi:.0%})" for m, lo, hi in
                                                     zip(r["share met"], r["ci_low"], r["ci_high"])]})


def prepare_department_report(department: str, params_file: str = "", data_source: str = "",
                              report_config: str = "params/report.yaml", as_of: str = "",
                              level: float | None = None) -> DepartmentReport:
    """Load settings, objectives and data for one department and evaluate its objectives.

    ``department`` is the params file's slug (``customer_service``); ``params_file`` overrides the file
    (default ``params/departments/<slug>.yaml``); ``data_source`` "" uses report.yaml's; ``as_of`` "" = the
    last day of the last complete month in the data (``Dataset.default_as_of``). Relative paths are taken from
    the working directory, else the repository root. Config and data come from the report layer's one loader
    (:func:`helpers.reports.loader.load_report_inputs`).
    Problems are collected in ``.problems`` (shown in the report), never raised; only an ``as_of`` that is not a
    date is a :class:`ParamsError`.
    """
    from helpers.config import load_report_config, repo_root  # noqa: PLC0415

    root = repo_root()
    slug = department_slug(department) if department else ""
    path = _resolve(params_file or f"params/departments/{slug}.yaml", root)
    try:
        as_of_day = pd.Timestamp(as_of) if as_of else None
    except ValueError:
        raise ParamsError("as_of", f"{shorten(as_of)} is not an ISO date (YYYY-MM-DD)") from None
    report = DepartmentReport(slug=slug, department=department.replace("_", " ").title(), params_file=str(path),
                              as_of=as_of_day)
    try:
        report.plan = load_objectives(path) if path.exists() else None
        if report.plan is None:
            known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
            report.problems.append(f"{path}: field 'department': unknown department {department!r}: no such params "
                                   f"file; departments with objectives are {known}")
        else:
            report.department = report.plan.department
    except KitError as exc:
        report.problems.append(str(exc))
    try:  # the report layer's one loader of config + dataset (snapshot-aware, column mapping, min_responses)
        from helpers.reports.loader import load_report_inputs  # noqa: PLC0415

        source = str(_resolve(data_source, root)) if data_source else ""
        inputs = load_report_inputs(source, _resolve(report_config, root))
        report.config, report.dataset = inputs.config, inputs.dataset
    except KitError as exc:
        report.problems.append(str(exc))
        try:
            report.config = load_report_config(_resolve(report_config, root))
        except KitError:
            pass
    if report.dataset is not None and report.as_of is None:
        report.as_of = report.dataset.default_as_of()
        report.as_of_note = ("the last day of the last complete month in the data (the default; a partly "
                             "observed month is not treated as finished)")
    if report.plan is not None and report.dataset is not None:
        min_n = int(getattr(report.config, "min_responses", 1) or 1)
        kwargs = {"engine": getattr(report.config, "engine", None), **({} if level is None else {"level": level})}
        report.evaluation = evaluate_objectives(report.plan, report.department_data.for_kpis(), report.as_of, min_n=1,
                                                min_responses=min_n, **kwargs)
    return report


def survival_at_with_ci(survival, t: float, group=None) -> tuple[float, float, float]:
    """``(S(t), low, high)`` from a Kaplan-Meier table (the step value at the last event time <= t); NaN
    beyond the last observed time."""
    tab = survival.table if survival.group is None else survival.table[survival.table[survival.group] == group]
    if tab.empty or t > float(tab["time"].max()) * 1.0 + 1e-9 and not np.isfinite(t):
        return float("nan"), float("nan"), float("nan")
    last = survival.medians
    if survival.group is not None:
        last = last[last[survival.group] == group]
    if len(last) and t > float(last["last_time"].iloc[0]):
        return float("nan"), float("nan"), float("nan")
    before = tab[tab["time"] <= t]
    if before.empty:
        return 1.0, 1.0, 1.0
    row = before.iloc[-1]
    return float(row["survival"]), float(row["ci_low"]), float(row["ci_high"])


def delayed_entry_survival(data: pd.DataFrame, duration: str = "duration", event: str = "event",
                           entry: str = "entry", group: str | None = None, alpha: float = 0.05):
    """Kaplan-Meier survival with delayed entry (left truncation), by ``group``: a subject is at risk at time
    ``t`` only when ``entry < t <= duration``, so time before a subject was selected into the sample (here:
    before a customer's first contact with the department) counts for nobody (Klein & Moeschberger,
    *Survival Analysis*, 2nd ed., 4.6). Computed with statsmodels ``SurvfuncRight(time, status, entry=)``;
    Greenwood variance and log-log intervals as in :func:`helpers.retention.kaplan_meier`; the median by
    ``quantile`` with its ``cloglog`` interval. Returns a :class:`helpers.retention.KaplanMeierResult`.
    Rows with entry at or after their duration (no time at risk) are left out."""
    from scipy import stats  # noqa: PLC0415
    from statsmodels.duration.survfunc import SurvfuncRight  # noqa: PLC0415

    from helpers.engine.retention_queries import loglog_survival_interval  # noqa: PLC0415
    from helpers.retention import KaplanMeierResult  # noqa: PLC0415

    frame = data[[c for c in (duration, event, entry, group) if c]].copy()
    frame = frame[np.isfinite(frame[duration].astype(float)) & np.isfinite(frame[entry].astype(float))]
    frame = frame[frame[entry].astype(float) < frame[duration].astype(float)]
    if frame.empty:
        raise KitError("no customer has time at risk after entering the sample (entry before the end)")
    z = stats.norm.ppf(1 - alpha / 2)
    keys = [None] if group is None else sorted(frame[group].dropna().unique(), key=str)
    rows, meds = [], []
    for k in keys:
        part_df = frame if k is None else frame[frame[group] == k]
        d = part_df[duration].to_numpy(float)
        e = part_df[event].to_numpy(float)
        en = part_df[entry].to_numpy(float)
        sf = SurvfuncRight(d, e, entry=en)
        s = np.asarray(sf.surv_prob, float)
        se = np.asarray(sf.surv_prob_se, float)
        lo, hi = loglog_survival_interval(s, se, z)
        part = pd.DataFrame({"time": sf.surv_times, "survival": s, "ci_low": lo, "ci_high": hi,
                             "at_risk": np.asarray(sf.n_risk, "int64"), "events": np.asarray(sf.n_events, "int64")})
        if part.empty:
            part = pd.DataFrame({"time": [float(d.max())], "survival": [1.0], "ci_low": [1.0], "ci_high": [1.0],
                                 "at_risk": [len(d)], "events": [0]})
        if group is not None:
            part.insert(0, group, k)
        rows.append(part)
        med, lo_m, hi_m = float("nan"), float("nan"), float("inf")
        if (s <= 0.5).any():
            med = float(sf.quantile(0.5))
            with np.errstate(divide="ignore", invalid="ignore"):
                ci = sf.quantile_ci(0.5, alpha=alpha, method="cloglog")
            lo_m = float(ci[0]) if ci[0] is not None else float("nan")
            hi_m = float(ci[1]) if ci[1] is not None else float("inf")
        mrow = {"n": len(d), "events": int(e.sum()), "median": med, "ci_low": lo_m, "ci_high": hi_m,
                "last_time": float(d.max()), "survival_at_end": float(s[-1]) if len(s) else 1.0}
        meds.append({group: k, **mrow} if group is not None else mrow)
    return KaplanMeierResult(table=pd.concat(rows, ignore_index=True), medians=pd.DataFrame(meds), group=group,
                             alpha=alpha, log_rank_note="curves with delayed entry are not compared by a test here")


WORTH_ASSOCIATION = "an association under stated assumptions, not the result of a controlled experiment"


def _worth_cache_folder(dataset) -> Path | None:
    """``<run folder>/cache/worth`` when the data is a report run's snapshot, else None (no cache)."""
    from helpers.drivers_report import _cache_folder  # noqa: PLC0415

    drivers = _cache_folder(dataset)
    return drivers.parent / "worth" if drivers is not None else None


def _all_plans(own: ObjectivePlan, folder: Path) -> list[ObjectivePlan]:
    """This department's plan and every other readable objectives file of its folder (in file-name order), so
    one chain prices every department's objectives in a run."""
    plans = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if Path(str(own.path)).resolve() == path.resolve():
            plans.append(own)
            continue
        try:
            plans.append(load_objectives(path))
        except KitError:
            continue  # that department's own page reports the problem
    if own not in plans:
        plans.append(own)
    return plans


def _cached(folder: Path | None, name: str, settings: dict, compute):
    """``compute()`` once per ``settings`` in ``folder`` (a pickle keyed by a hash of the settings; an exclusive
    lock while computing, so parallel reports of one run wait for the first instead of computing again); no
    folder: compute."""
    import fcntl  # noqa: PLC0415
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415
    import pickle  # noqa: PLC0415

    if folder is None:
        return compute()
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]
    file = folder / f"{name}-{key}.pkl"

    def read():
        try:
            with file.open("rb") as fh:
                cached = pickle.load(fh)  # noqa: S301 - written by this function into the run's own folder
            return cached[1] if cached[0] == settings else None
        except Exception:  # noqa: BLE001 - missing or unreadable: computed again
            return None

    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / f"{name}-{key}.lock").open("w")
    except OSError:
        return compute()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = read()
        if found is not None:
            return found
        result = compute()
        try:
            from helpers.reports import atomic_write_bytes  # noqa: PLC0415

            atomic_write_bytes(file, pickle.dumps((settings, result), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass
        return result


def _scope_text(filters, names) -> str:
    from helpers.kpi_tiles import _scope  # noqa: PLC0415

    return _scope(filters, names)


def _narrow(table_html: str) -> str:
    """A reader table in a wrapper the department page's CSS narrows on a phone (smaller text, wrapping cells)."""
    return f'<div class="dept-table">{table_html}</div>'


def chance_percent(p) -> str:
    """A probability for readers (:func:`helpers.objectives.chance_text`: whole percent as in the objectives'
    sentences, "<1%" and ">99%" where that shows 0% or 100%, "n/a" when missing)."""
    return chance_text(p)
