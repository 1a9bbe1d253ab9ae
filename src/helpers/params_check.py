"""Do the params match the data? Checked at ``--dry-run`` and before a run, after the data is loaded and
before any report executes (``helpers.reports.runner.prepare_data`` calls :func:`check_params_for_run`).

>>> check = check_params(dataset, cfg, "params")    # cfg: helpers.config.ReportConfig
>>> check.problems                                  # ParamsProblem(file, field, message), all at once
>>> check.raise_for_problems()                      # ParamsMismatchError listing every one

Each params file is valid on its own (``helpers.config``, ``helpers.objectives`` check that); this module
checks what only the data can say, and lists every mismatch with its file and field:

- a department file whose ``department`` does not occur in the data (compared by name and by slug, so
  ``customer_service`` matches "Customer Service"); when *none* of them occurs the first line says that these
  params were written for other data (the demo's params against a company's own data);
- an objective on a KPI the data cannot compute: its table is absent (a survey-only data set has no tickets,
  so ``fcr`` cannot be computed), or its column is (no ``nps`` question); the reason is
  :func:`helpers.data.missing_reason`'s;
- an objective's ``filters:`` naming a column that neither the KPI's table nor (for survey and ticket KPIs) the
  customers table has (``team`` on a survey KPI: responses have no team), or a value that occurs in none of
  the department's rows (``team: Front Dsk``); the rules are :mod:`helpers.selection`'s (alias ``agent`` ->
  ``agent_id``; values by exact name, case or slug), so a filter that passes here selects rows in the run, and
  the message lists the values that exist;
- retention settings naming columns the customer table (or ``retention.file``) does not have, e.g. a wrong
  ``event_column``; settings written for a customers table the data does not have;
- ``outcome`` or ``drivers`` naming ratings the responses do not have.

Softer findings (retention settings left at their defaults on data without customers: the retention report
explains; a numeric-looking text column in the retention file) are ``warnings``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import KitError, ParamsError
from helpers.formatting import shorten, slug

__all__ = ["ParamsCheck", "ParamsMismatchError", "ParamsProblem", "check_params", "check_params_for_run"]


@dataclass(frozen=True)
class ParamsProblem:
    """One mismatch between a params file and the data: the file, the field and what is wrong."""

    file: str
    field: str
    message: str
    objective: str = ""
    severity: str = "error"

    def text(self) -> str:
        where = f"{self.file}: objective {shorten(self.objective)}, field {shorten(self.field)}" if self.objective \
            else (f"{self.file}: field {shorten(self.field)}" if self.field else self.file)
        return f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.text()


class ParamsMismatchError(ParamsError):
    """The params do not match the data; ``.problems`` lists every mismatch (a :class:`ParamsProblem`)."""

    def __init__(self, problems: Sequence[ParamsProblem]):
        self.problems = list(problems)
        first = self.problems[0]
        self.path, self.field = first.file, first.field
        if len(self.problems) == 1:
            msg = first.text()
        else:
            msg = (f"{len(self.problems)} problems: the params do not match the data; all of them:\n"
                   + "\n".join(f"  {i}. {p.text()}" for i, p in enumerate(self.problems, 1)))
        KitError.__init__(self, msg)


@dataclass
class ParamsCheck:
    """What :func:`check_params` found: ``problems`` (errors) and ``warnings``."""

    problems: list[ParamsProblem] = field(default_factory=list)
    warnings: list[ParamsProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ParamsMismatchError(self.problems)

    def warning_texts(self) -> list[str]:
        return [w.text() for w in self.warnings]


def department_files(params_dir: str | os.PathLike[str]) -> list[Path]:
    folder = Path(params_dir) / "departments"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml"))


def _shown_names(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(shorten(n, 40) for n in list(names)[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _check_departments(dataset, params_dir: Path, check: ParamsCheck) -> list:
    """Department files against the data's departments; returns the plans whose department is in the data."""
    from helpers.objectives import load_objectives  # noqa: PLC0415

    files = department_files(params_dir)
    in_data = {slug(d): d for d in dataset.departments}
    plans, unmatched = [], []
    for f in files:
        try:
            plan = load_objectives(f)
        except KitError:
            continue  # the file itself is invalid: the runner's params check reports it
        if slug(plan.department) in in_data:
            plans.append(plan)
        else:
            unmatched.append((f, plan))
    data_names = _shown_names(dataset.departments)
    if files and unmatched and len(unmatched) == len(files):
        check.problems.append(ParamsProblem(
            str(Path(params_dir) / "departments"), "department",
            f"none of the {len(files)} department{'s' if len(files) != 1 else ''} in "
            f"{Path(params_dir).name}/departments/ occur{'s' if len(files) == 1 else ''} in the data: these params "
            f"were written for other data. The data's departments are {data_names}; write one "
            "departments/<slug>.yaml per department you report on (copy one, set `department:` to the name in the "
            "data and replace its objectives)"))
    for f, plan in unmatched:
        check.problems.append(ParamsProblem(
            str(f), "department", f"{shorten(plan.department)} is not a department in the data; the departments in "
                                  f"the data are {data_names} (remove the file or correct the name)"))
    return plans


def _check_objectives(dataset, plans, check: ParamsCheck) -> None:
    """Each objective's KPI and filters against the data. The values every filter is matched against are read
    first, in one query per column (:func:`_distinct_values`; one query per filter took 22.6 s at 1,000,000
    customers), then each filter's message is written in file and objective order."""
    from helpers.data import kpi_needs, missing_reason  # noqa: PLC0415

    found: list[tuple] = []  # (plan, objective, key, values, table, problem message or a _Lookup)
    lookups: dict = {}
    for plan in plans:
        for o in plan.objectives:
            try:
                reason = missing_reason(o.metric, dataset)
                table, _ = kpi_needs(o.metric)
            except KeyError:
                continue  # not a KPI of the registry: helpers.objectives refuses it itself
            if reason:
                found.append((plan, o, None, None, table, f"{shorten(o.metric)} cannot be computed on this data: "
                                                          f"{reason}"))
                continue
            for key, values in dict(o.filters).items():
                found.append((plan, o, key, values, table,
                              _filter_lookup(dataset, table, plan.department, o.metric, key, lookups)))
    available = _distinct_values(dataset.con, [x[5] for x in found if isinstance(x[5], _Lookup)])
    for plan, o, key, values, table, got in found:
        if key is None:
            check.problems.append(ParamsProblem(str(plan.path), "metric", got, objective=o.id))
            continue
        message = _values_problem(got, available[got], table, plan.department, key, values) \
            if isinstance(got, _Lookup) else got
        if message.startswith(_NO_ROWS_YET):
            # a value with no rows may be a team that has not worked yet (or a typo): the objective is
            # judged "no data" and the dry run and the page say so; the other objectives still run
            check.warnings.append(ParamsProblem(str(plan.path), f"filters.{key}", message[len(_NO_ROWS_YET):],
                                                objective=o.id, severity="warning"))
        elif message:
            check.problems.append(ParamsProblem(str(plan.path), f"filters.{key}", message, objective=o.id))


_NO_ROWS_YET = "\0no-rows:"  # marks a filter value that occurs in no row (a warning, not an error)


@dataclass(frozen=True)
class _Lookup:
    """Where a filter's values are looked up: ``column`` of ``source`` (a FROM item: the KPI's table, joined
    with customers for a customer column), in the rows of ``departments`` (None: every row)."""

    source: str
    column: str
    departments: tuple | None


def _filter_lookup(dataset, table: str, department: str, metric: str, key: str, cache: dict) -> "str | _Lookup":
    """What is wrong with an objective's filter column ``key`` on this data (a message), or where its values are
    looked up (a :class:`_Lookup`): the column must be in the KPI's table or (survey and ticket KPIs) in
    ``customers`` (joined on ``customer_id``), by :mod:`helpers.selection`'s rules (alias ``agent`` ->
    ``agent_id``). ``cache``: the FROM items found so far, by (table, column)."""
    from helpers import selection as sel  # noqa: PLC0415
    from helpers.schema import TABLES  # noqa: PLC0415

    column = sel.canonical(key)
    own = dataset.columns(table)
    if column not in own and column in TABLES["customers"].column_names and not dataset.has("customers"):
        return (f"{shorten(metric)} by {column!r} needs the customers table ({column} comes from it): add "
                "customers.csv or drop the filter")
    if column in dataset.absent_columns.get(table, []) or (
            column not in own and column in dataset.absent_columns.get("customers", [])):
        where = table if column in own else "customers"
        return (f"the {where} data has no {column!r} column to filter {shorten(metric)} by (add it to {where}.csv "
                "or drop the filter)")
    con = dataset.con
    if (table, column) not in cache:
        try:
            cache[table, column] = sel.source_sql(con, table, [column], what="")[0]
        except sel.SelectionError:
            cache[table, column] = None
    source = cache[table, column]
    if source is None:
        joinable = [c for c in (sel.table_columns(con, "customers") or []) if c != "customer_id"] \
            if table != "customers" and "customer_id" in own else []
        usable = [c for c in own if c not in dataset.absent_columns.get(table, [])]
        named = f"{column!r} (the filter {key!r})" if column != key else repr(column)
        return (f"{shorten(metric)} is computed from {table}, which has no column {named} to filter by; its "
                f"columns are {_shown_names(usable, 30)}"
                + (f", and the customers' {_shown_names(joinable, 30)} can filter it too" if joinable else ""))
    if table != "customers" and "department" in own:
        names = tuple(d for d in dataset.departments if slug(d) == slug(department)) or (department,)
        return _Lookup(source, column, names)
    return _Lookup(source, column, None)


def _distinct_values(con, lookups) -> dict:
    """The distinct non-null values of each lookup's column in its departments' rows, in one query per
    (source, column): ``SELECT DISTINCT department, column ... WHERE department IN (every department asked)``
    (or ``SELECT DISTINCT column`` when the rows are not scoped), split by department here."""
    groups: dict = {}
    for lk in dict.fromkeys(lookups):
        groups.setdefault((lk.source, lk.column, lk.departments is None), []).append(lk)
    out = {}
    for (source, column, unscoped), members in groups.items():
        quoted = '"' + column.replace('"', '""') + '"'
        if unscoped:
            values = [r[0] for r in con.execute(f"SELECT DISTINCT {quoted} FROM {source}").fetchall()
                      if r[0] is not None]
            out.update({lk: values for lk in members})
            continue
        names = list(dict.fromkeys(d for lk in members for d in lk.departments))
        rows = con.execute(f'SELECT DISTINCT "department", {quoted} FROM {source} WHERE "department" IN '
                           f'({", ".join("?" for _ in names)})', names).fetchall()
        for lk in members:
            wanted = set(lk.departments)
            out[lk] = list(dict.fromkeys(v for d, v in rows if d in wanted and v is not None))
    return out


def _values_problem(lookup: _Lookup, available: list, table: str, department: str, key: str, values) -> str:
    """The message for the filter values that select no rows (every value must occur in the department's rows
    under :mod:`helpers.selection`'s rules: exact name, case or slug, as the objective's evaluation will select
    them), or "" when each selects some; the message lists the values that exist."""
    from helpers import selection as sel  # noqa: PLC0415

    bad = sel.unmatched_values(values, available)
    if not bad:
        return ""
    scope = f"{department}'s {table}" if lookup.departments is not None else table
    shown = shorten(bad[0], 60) if len(bad) == 1 else ", ".join(shorten(b, 40) for b in bad)
    return (f"{_NO_ROWS_YET}{key}={shown} matches no rows of {scope} (the objective will have no data; check "
            f"the spelling): {lookup.column} has the values {sel.listing(available)} (names match exactly, by case "
            "or by slug)")


_RETENTION_KEYS = ("id_column", "start_column", "end_column", "duration_column", "event_column", "segment_column")


def _check_retention(dataset, cfg, config_file: Path | None, check: ParamsCheck) -> None:
    from helpers.config import RetentionConfig, resolve_retention_file  # noqa: PLC0415
    from helpers.data import (TABLE_NEEDS, load_retention_table, retention_column_problems,  # noqa: PLC0415
                              retention_file_columns)

    r = cfg.retention
    where = str(config_file) if config_file else "params/report.yaml"
    if r.file:
        try:
            path = resolve_retention_file(cfg, where)
        except ParamsError as exc:
            check.problems.append(ParamsProblem(where, "retention.file", str(exc).split(": ", 1)[-1]))
            return
        if not path.is_file():
            check.problems.append(ParamsProblem(where, "retention.file", f"{path} does not exist (a .csv or .parquet "
                                                                         "customer table)"))
            return
        try:
            columns = retention_file_columns(path)
        except KitError as exc:
            check.problems.append(ParamsProblem(where, "retention.file", str(exc)))
            return
        source = str(path)
    elif not dataset.has("customers"):
        explicit = {k: getattr(r, k) for k in _RETENTION_KEYS if getattr(r, k) != getattr(RetentionConfig(), k)}
        if explicit:
            check.problems.append(ParamsProblem(
                where, f"retention.{next(iter(explicit))}",
                "the retention settings name columns of the customers table, but the data has no customers table; "
                f"{TABLE_NEEDS['customers']} (or set retention.file to a customer export)"))
        else:
            check.warnings.append(ParamsProblem(where, "retention", TABLE_NEEDS["customers"] + " (the retention "
                                                                     "report says so)", severity="warning"))
        return
    else:
        absent = set(dataset.absent_columns.get("customers", []))
        columns = [c for c in dataset.columns("customers") if c not in absent]
        source = dataset.files.get("customers", dataset.origin)
    for p in retention_column_problems(r, columns, source):
        key = next(k for k in _RETENTION_KEYS if getattr(r, k) == p.column)
        check.problems.append(ParamsProblem(where, f"retention.{key}",
                                            f"{shorten(p.column)} is not a column of {source}; the columns are "
                                            f"{_shown_names(columns, 30)}"))
    if r.file and not check.problems:
        import warnings  # noqa: PLC0415
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                frame = load_retention_table(cfg, config_path=where)
            except KitError as exc:
                check.problems.append(ParamsProblem(where, "retention.file", str(exc)))
                return
        from helpers.errors import DataProblem  # noqa: PLC0415
        for d in frame.attrs.get("data_problems", []):
            check.warnings.append(ParamsProblem(where, "retention.file", DataProblem.from_dict(d).message(),
                                                severity="warning"))


def _check_ratings(dataset, cfg, config_file: Path | None, check: ParamsCheck) -> None:
    where = str(config_file) if config_file else "params/report.yaml"
    outcome = cfg.outcome
    have = set(dataset.attributes) | {c for c in ("csat", "nps", "ces") if dataset.has("responses", c)}
    if outcome not in have:
        check.problems.append(ParamsProblem(where, "outcome", f"{shorten(outcome)} is not a rating the responses "
                                                              f"have; they have {_shown_names(sorted(have))}"))
    missing = [d for d in cfg.drivers if d not in dataset.attributes]
    if missing:
        check.problems.append(ParamsProblem(where, "drivers", f"{_shown_names(missing)} not in the responses; the "
                                                              f"attribute ratings there are "
                                                              f"{_shown_names(dataset.attributes) or 'none'}"))


def check_params(dataset, cfg=None, params_dir: str | os.PathLike[str] | None = None, *,
                 config_file: str | os.PathLike[str] | None = None) -> ParamsCheck:
    """Every mismatch between the params (``cfg``, a ``ReportConfig``, default: read from
    ``params_dir/report.yaml``; the department files in ``params_dir/departments/``) and a loaded
    ``helpers.data.Dataset``. Nothing is raised: see :meth:`ParamsCheck.raise_for_problems`."""
    from helpers.config import config_path, load_report_config  # noqa: PLC0415

    if cfg is None:
        config_file = Path(config_file) if config_file else Path(params_dir or "params") / "report.yaml"
        cfg = load_report_config(config_file)
    config_file = Path(config_file) if config_file else config_path(cfg)
    if params_dir is None and config_file is not None:
        params_dir = config_file.parent
    check = ParamsCheck()
    plans = _check_departments(dataset, Path(params_dir), check) if params_dir is not None else []
    _check_objectives(dataset, plans, check)
    _check_retention(dataset, cfg, config_file, check)
    _check_ratings(dataset, cfg, config_file, check)
    return check


def check_params_for_run(cfg, dataset, *, dry_run: bool) -> list[str]:
    """The runner's check (``--dry-run`` and before every run), on the params folder ``cfg`` was read from
    (nothing is checked for a config built in code): raises :class:`ParamsMismatchError` listing every
    mismatch; returns the warnings as text. In a run (not a dry run) a department file whose department is not
    in the data is left to the run (its page says so) unless *none* of them is: then the params were written
    for other data and nothing runs."""
    from helpers.config import config_path  # noqa: PLC0415

    path = config_path(cfg)
    if path is None:
        return []
    check = check_params(dataset, cfg, path.parent, config_file=path)
    if not dry_run:
        other_data = any(p.field == "department" and p.file.endswith("departments") for p in check.problems)
        check.problems = [p for p in check.problems if p.field != "department" or other_data]
    check.raise_for_problems()
    return check.warning_texts()
