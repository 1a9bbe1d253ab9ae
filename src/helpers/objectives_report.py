"""The department report's glue: parameters in, every section's content out (used by
``notebooks/reports/department_report.ipynb``, which stays thin).

:func:`prepare_department_report` reads ``params/report.yaml`` and the department's params file, loads the
data, and evaluates the objectives (:func:`helpers.objectives.evaluate_objectives`). Nothing here raises
for a bad department file, absent data or an unknown department: the problem becomes a message shown in
the report (naming the file and field) and the remaining sections still render. The sections:

- executive summary: :meth:`DepartmentReport.status_table_html` (badges; all free text escaped);
- one section per objective: :meth:`DepartmentReport.objective_markdown` and ``plot_objective``;
- the cascade tree: :meth:`DepartmentReport.plot_cascade`;
- drivers and "fix first": :meth:`DepartmentReport.drivers` (``helpers.drivers_analysis``);
- the department's customers' retention: :meth:`DepartmentReport.retention` (``helpers.retention``);
- data quality: :meth:`DepartmentReport.data_quality` and :meth:`DepartmentReport.all_warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.errors import KitError, ParamsError
from helpers.formatting import html_escape, md_escape, shorten
from helpers.objectives import (ObjectiveEvaluation, ObjectivePlan, department_slug, evaluate_objectives,
                                format_value, load_objectives, period_label)
from helpers.objectives_status import STATUSES


def _esc(text) -> str:
    """Free text for the Markdown this module builds: inert as Markdown and as HTML (helpers.formatting)."""
    return md_escape(text)


_NOT_FOR_KPIS = ("response_id", "ticket_id", "customer_id", "comment")


class DepartmentData:
    """One department's slice of a ``helpers.data.Dataset``: ``.responses`` and ``.tickets`` hold only the
    department's rows, selected in DuckDB (``WHERE department = ?``) before any pandas frame is built, with
    the same columns, dtypes and row order as the full frames (``Dataset.frame``). Everything else
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
            from helpers.data import quote_ident  # noqa: PLC0415
            from helpers.schema import PANDAS_DTYPES, TABLES, attribute_column  # noqa: PLC0415

            spec = TABLES[table]
            dtypes, select = {}, []
            for name in self._dataset.columns(table):
                col = spec.column(name) if name in spec.column_names else attribute_column(spec, name)
                dtypes[name] = PANDAS_DTYPES[col.dtype]
                cast = {"integer": "DOUBLE", "float": "DOUBLE", "date": "TIMESTAMP"}.get(col.dtype)
                select.append(f"CAST({quote_ident(name)} AS {cast}) AS {quote_ident(name)}" if cast
                              else quote_ident(name))
            result = self._dataset.con.sql(
                f"SELECT {', '.join(select)} FROM {spec.name} WHERE department = $department",
                params={"department": self.department})
            arrow = (getattr(result, "to_arrow_table", None) or result.arrow)()
            import pyarrow as pa  # noqa: PLC0415
            df = arrow.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
            self._frames[table] = df.astype(dtypes)
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
            lines.append(f"**Could not evaluate the objectives:** {_esc(p)}")
        return "\n\n".join(lines)

    def status_table_html(self) -> str:
        if self.evaluation is None:
            return ('<p class="objective-status-missing">No objectives to show: '
                    + "; ".join(html_escape(p) for p in self.problems) + "</p>")
        return self.evaluation.status_table_html()

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
        filters = "; ".join(f"{k}: {', '.join(v)}" for k, v in o.filters.items())
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
            f"- **Progress:** {_esc(r['progress_text'])} of the way from baseline to target (negative: moved "
            "the wrong way)",
            f"- **Forecast for {_esc(window.label)}:** {_esc(r['forecast_text'])}; chance of meeting the target: "
            f"{_esc(r['chance_text'])}",
            f"- **Assessment:** {_esc(r['sentence'])}",
        ]
        if r["change"]:
            lines.append(f"- **Last period against the one before:** {_esc(r['change'])}")
        if o.note:
            lines.append(f"- **Note:** {_esc(o.note)}")
        return "\n".join(lines)

    def plot_objective(self, objective_id: str, ax=None):
        return self.evaluation.plot_objective(objective_id, ax=ax)

    def plot_cascade(self, ax=None):
        if self.evaluation is None:
            return None
        return self.evaluation.plot_cascade(ax=ax)

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

    def drivers(self, n_boot: int = 200, months: int = 12):
        """Drivers of the run's outcome for this department over the last ``months`` months.

        Returns ``(DriverAnalysis or None, message)``; the message explains a missing analysis. The
        proportional-odds check (``DriverAnalysis.ordinal``) is not fitted here: the department report does
        not show it (the satisfaction-drivers report does), and on large data it is the slowest part.
        """
        if self.dataset is None:
            return None, "No data loaded."
        from helpers.drivers_analysis import analyze_drivers, select_responses  # noqa: PLC0415

        start, end = self._period(months)
        outcome = getattr(self.config, "outcome", "csat") or "csat"
        drivers = list(getattr(self.config, "drivers", []) or []) or list(self.dataset.attributes)
        try:
            data = select_responses(self.department_data.responses, self.department, start, end)
            result = analyze_drivers(data, outcome, drivers, n_boot=n_boot, seed=0, ordinal=False,
                                     label=f"{self.department}, {start} to {end}",
                                     min_n=getattr(self.config, "min_responses", None))
        except (KitError, ValueError) as exc:
            return None, f"No driver analysis for {self.department} between {start} and {end}: {exc}"
        return result, ""

    def department_customers(self) -> pd.DataFrame:
        """Customers who had a ticket or a survey response with this department up to the as-of date
        (the customer ids are selected in DuckDB; the customers keep the table's order)."""
        params = {"department": self.department}
        until = ""
        if self.as_of is not None:
            params["until"] = (self.as_of + pd.Timedelta(days=1)).to_pydatetime()
            until = " AND CAST({col} AS TIMESTAMP) <= $until"
        sql = " UNION ".join(f"SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id FROM {table} "
                             f"WHERE department = $department" + until.format(col=col)
                             for table, col in (("tickets", "created_at"), ("responses", "response_date")))
        ids = self.dataset.con.sql(sql, params=params).fetchnumpy()["customer_id"]
        customers = self.dataset.customers
        return customers[customers["customer_id"].astype(str).isin(set(ids.tolist()))]

    def retention(self):
        """Kaplan-Meier survival of this department's customers by segment: ``(result or None, message)``.

        The customers are those who contacted the department; they were, by that selection, still
        customers when they did, so the curve is a description of this group, not a causal effect.
        """
        if self.dataset is None:
            return None, "No data loaded."
        from helpers.retention import customer_durations, kaplan_meier  # noqa: PLC0415

        try:
            customers = self.department_customers()
            if customers.empty:
                return None, f"No customers contacted {self.department} up to the as-of date."
            frame = customer_durations(customers, as_of=self.as_of)
            group = "segment" if customers["segment"].nunique() > 1 else None
            return kaplan_meier(frame, "duration", "event", group=group), ""
        except (KitError, ValueError) as exc:
            return None, f"No retention analysis for {self.department}: {exc}"

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
                         "status": r["status"], "message": r["message"]})
        return pd.DataFrame(rows).set_index("objective")

    def missing_values(self) -> pd.DataFrame:
        """Missing share of this department's survey and ticket fields (all periods up to the as-of date)."""
        if self.dataset is None:
            return pd.DataFrame(columns=["table", "column", "rows", "missing", "missing share"]).set_index(
                ["table", "column"])
        out = []
        for table, cols in (("responses", ["csat", "nps", "ces", *self.dataset.attributes]),
                            ("tickets", ["team", "agent_id", "first_response_at", "resolved_at",
                                         "contacts_to_resolve"])):
            df = getattr(self.department_data, table)
            for c in cols:
                if c in df.columns:
                    miss = int(df[c].isna().sum())
                    out.append({"table": table, "column": c, "rows": len(df), "missing": miss,
                                "missing share": f"{miss / len(df):.1%}" if len(df) else "n/a"})
        return pd.DataFrame(out).set_index(["table", "column"])

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
        ws = self.all_warnings()
        return "\n".join(f"- {_esc(w)}" for w in ws) if ws else "No warnings."

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

    def calibration_markdown(self) -> str:
        """One line: how often past forecasts' intervals held the realised value, linking to the detail."""
        bt = self.calibration()
        if bt is None:
            return ""
        return f"*How reliable are these forecasts?* {_esc(bt.summary())} [Details](#calibration-detail)."

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
    last day of the last complete month in the data (``Dataset.default_as_of``). Relative paths are taken from the working directory, else the repository root.
    Problems are collected in ``.problems`` (shown in the report), never raised; only an ``as_of`` that is not a
    date is a :class:`ParamsError`.
    """
    from helpers.config import load_report_config, repo_root, resolve_data_source  # noqa: PLC0415
    from helpers.data import is_snapshot, load_dataset  # noqa: PLC0415

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
        report.config = load_report_config(_resolve(report_config, root))
    except KitError as exc:
        report.problems.append(str(exc))
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
    try:
        source = Path(data_source) if data_source else resolve_data_source(report.config) if report.config \
            else None
        if source is not None:
            source = _resolve(source, root)
            mapping = getattr(report.config, "column_mapping", None) or None
            min_responses = int(getattr(report.config, "min_responses", 30) or 30)
            if is_snapshot(source):
                report.dataset = load_dataset(source, validate=False, min_responses=min_responses,
                                              emit_warnings=False)
            else:
                report.dataset = load_dataset(source, column_mapping=mapping, min_responses=min_responses,
                                              emit_warnings=False)
    except KitError as exc:
        report.problems.append(str(exc))
    if report.dataset is not None and report.as_of is None:
        report.as_of = report.dataset.default_as_of()
        report.as_of_note = ("the last day of the last complete month in the data (the default; a partly "
                             "observed month is not treated as finished)")
    if report.plan is not None and report.dataset is not None:
        min_n = int(getattr(report.config, "min_responses", 1) or 1)
        kwargs = {} if level is None else {"level": level}
        report.evaluation = evaluate_objectives(report.plan, report.department_data.for_kpis(), report.as_of, min_n=1,
                                                min_responses=min_n, **kwargs)
    return report
