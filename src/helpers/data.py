"""Loading and validating the four tables of the data contract (``data/README.md``, ``helpers.schema``).

>>> ds = load_dataset("data/demo")                       # folder of <table>.parquet / <table>.csv files
>>> ds = load_dataset("exports/cx.duckdb")               # DuckDB file with tables customers, responses, ...
>>> ds.con.sql("SELECT department, avg(csat) FROM responses GROUP BY ALL").df()   # aggregate in DuckDB
>>> ds.responses                                          # pandas frame (cached), contract dtypes
>>> ds.snapshot("build/run/data.duckdb")                  # validated tables in one file ...
>>> load_dataset("build/run/data.duckdb", validate=False)  # ... read back fast, no re-validation
>>> ds.snapshot("build/run/data.duckdb", by_reference=True)  # Parquet: views + file references, no rows copied
>>> ds.snapshot("reports/r1/data.duckdb", by_reference=True, store="reports/.data")  # CSV...: stored once, referenced

How it works: DuckDB (embedded, in memory) reads the files; the column mapping renames the user's columns
to the contract's names; validation runs as SQL aggregates over the raw columns (one scan per table for
types, missing values, ranges and order rules; one aggregate each for duplicate keys and foreign keys), so
a million customers and ten million tickets validate in seconds without building pandas frames. Memory
follows the answer, not the rows: no query keeps more than a referenced table's keys (the foreign keys are
anti joins over the two key columns; ids in increasing order are proven unique by one streaming pass, other
orders are counted in DuckDB's hash aggregate, which spills past ``engine.duckdb.memory_limit``); only counts
and a few example rows come back to Python (``tests/test_data_memory.py``). The typed
tables are then views (Parquet, DuckDB) or in-memory tables (CSV, parsed once) named ``customers``,
``responses``, ``tickets`` and ``org`` in ``Dataset.con``; pandas frames are built on first access.

Only ``responses`` is required: ``customers``, ``tickets`` and ``org`` are optional, and a table without a
file is absent (``Dataset.tables``, ``Dataset.has``; no view in ``Dataset.con``; ``Dataset.tickets`` raises
:class:`helpers.errors.MissingTableError` with the reason). :func:`missing_reason` gives the one-line reason a
table, KPI or section cannot be shown ("Retention needs the customers table (signup and churn dates): add
customers.csv"). Nullable contract columns a file lacks read as empty (``Dataset.absent_columns``).

Hard problems are collected over all tables in one pass and raised together as one
:class:`helpers.errors.DataValidationError` (a ``DataContractError``): per problem the table, file, column, rule,
number of rows, up to five example ids (the table's key; ``row N`` when the key itself is missing), the offending
values, what was expected and a suggested setting when the values show one (a 1-10 scale, US dates, a decimal
comma, counts for a flag...). :func:`data_quality_html` renders them as a page. Soft problems (a department with
fewer than ``min_responses`` responses, tickets without an agent, mostly-missing ratings, departments unknown to
``org``, numeric-looking text columns) are collected in ``Dataset.warnings`` (``Dataset.problems`` as
``DataProblem``) and emitted as :class:`DataQualityWarning`.

Dates beyond the as-of date. ``load_dataset(source, as_of=None)`` reads the data as it was on ``as_of``
(default: today). A row dated (``Table.dated_by``: signup, answer, ticket opened) after that day is left out
of every table view and snapshot; a later event of a kept row (``end_date``, ``first_response_at``,
``resolved_at``) after it reads as empty, i.e. not yet happened (a churn after the as-of is censored there).
Nothing after *today* can be real, so the cut-off is never later than today, whatever ``as_of`` says. Each cut
is a :class:`DateFinding` (table, column, count, example ids with their dates) in ``Dataset.excluded`` and a
line in ``Dataset.warnings``, so the reports' data-quality sections show it; a table left with no rows is a
:class:`DataContractError` ("too little history before <date>").
"""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import re
import shutil
import warnings as _warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from helpers.errors import DataContractError, DataProblem, DataValidationError, MissingTableError, ParamsError
from helpers.formatting import html_escape, shorten
from helpers.schema import (DUCKDB_TYPES, PANDAS_DTYPES, TABLES, Column, Table, allowed_values_text,
                            attribute_column)

TABLE_ORDER = ("customers", "responses", "tickets", "org")
FRAME_ROW_LIMIT_ENV = "SATISFACTION_KIT_MAX_FRAME_ROWS"
"""Environment variable: the most rows :meth:`Dataset.frame` reads into pandas (unset or 0: no limit). The report
runner sets it in report kernels (:data:`helpers.reports.runner.KERNEL_DEFAULTS`), where every figure comes from
engine aggregates and a table read as rows is only a fallback after an engine query failed: above the limit that
section is left out with a clear message instead of the kernel running out of memory."""
REQUIRED_TABLES = tuple(t for t in TABLE_ORDER if TABLES[t].required)  # ("responses",): a survey-only start
TABLE_NEEDS = {
    "customers": "Retention needs the customers table (signup and churn dates): add customers.csv",
    "tickets": "Ticket KPIs (first-contact resolution, reopen rate, response and resolution times, ticket volume) "
               "need the tickets table: add tickets.csv",
    "org": "Teams and people (owners' names, representatives, the cascade) need the org table: add org.csv",
    "responses": "Survey KPIs and drivers need the responses table: add responses.csv",
}
"""Per table: the one-line reason a section that needs it cannot be shown when the data has no such table."""
FILE_SUFFIXES = (".parquet", ".csv", ".csv.gz")
DUCKDB_SUFFIXES = (".duckdb", ".ddb", ".db")
META_TABLE = "_kit_meta"
CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
MISSING_SHARE_WARNING = 0.5
FINGERPRINT_CHUNK = 1 << 22
LAST_COMPLETE_MONTH = "last complete month"  # load_dataset(as_of=...): cut at :func:`default_as_of` of the data
_TYPED = "__typed_"  # every contract table typed, before the as-of cut; the views without prefix are after it


class DataQualityWarning(UserWarning):
    """A soft data problem: the data loads, but some results may be unreliable (see ``Dataset.warnings``)."""


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted for DuckDB (user column names may hold spaces, quotes, keywords)."""
    return '"' + str(name).replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _plain(value: object, limit: int = 60) -> str:
    """Text from a file for a message, unquoted, at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(values, limit: int = 12, quote: bool = True) -> str:
    """Values from a file for a message: each shortened, at most ``limit`` of them, then how many more."""
    values = list(values)
    shown = [shorten(v, 60) if quote else _plain(v) for v in values[:limit]]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(shown) + more


def _connect() -> duckdb.DuckDBPyConnection:
    """A new in-memory connection: local files only (no extension auto-install/-load, e.g. httpfs), timestamps
    read in UTC, no progress bars, and the memory limit, threads and spill folder of ``engine.duckdb``
    (:func:`helpers.engine.duckdb_engine.duckdb_connection`; 768MB per connection by default)."""
    from helpers.engine.duckdb_engine import duckdb_connection  # noqa: PLC0415 - helpers.engine imports data lazily

    return duckdb_connection()


# --- typed expressions over raw columns ------------------------------------------------------------------

_OFFSET_SPACE = r"\s+([+-]\d{2}(:?\d{2})?)$"  # "08:33:00 -0700" -> "08:33:00-0700"
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


def _typed_expr(col: Column, raw: str, raw_type: str) -> str:
    """SQL turning the raw column ``raw`` (DuckDB type ``raw_type``) into the contract type, NULL when it
    cannot be converted (the type check compares: raw set but typed NULL = wrong type)."""
    t = raw_type.upper()
    numeric_raw = any(k in t for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))
    if col.dtype == "string":
        if "DOUBLE" in t or "FLOAT" in t or "DECIMAL" in t or "REAL" in t:
            # ids exported as floats (1.0) read back as '1'
            return (f"CASE WHEN {raw} = trunc({raw}) THEN CAST(CAST({raw} AS HUGEINT) AS VARCHAR) "
                    f"ELSE CAST({raw} AS VARCHAR) END")
        return f"CAST({raw} AS VARCHAR)"
    if col.dtype in ("integer", "float"):
        if t in _INTEGER_TYPES:  # native integers (Parquet, DuckDB): nothing to check or round
            return f"CAST({raw} AS {'BIGINT' if col.dtype == 'integer' else 'DOUBLE'})"
        v = f"TRY_CAST({raw} AS DOUBLE)"
        v = f"(CASE WHEN isnan({v}) THEN NULL ELSE {v} END)"
        if col.dtype == "integer":
            return f"(CASE WHEN {v} = trunc({v}) AND NOT isinf({v}) THEN CAST({v} AS BIGINT) END)"
        return v
    if col.dtype == "date":
        if t == "VARCHAR":
            return f"COALESCE(TRY_CAST({raw} AS DATE), CAST(TRY_CAST({raw} AS TIMESTAMP) AS DATE))"
        return f"TRY_CAST({raw} AS DATE)"
    if col.dtype == "timestamp":
        if t == "VARCHAR":
            # via TIMESTAMPTZ: a UTC offset (+02:00, -0700, -07, Z, a zone name) is applied, never dropped (the
            # session is UTC). A space before the offset ("08:33:00 -0700") is removed first: DuckDB's TIMESTAMPTZ
            # refuses that form and its TIMESTAMP cast silently drops any offset, so it is never the fallback.
            text = (f"(CASE WHEN {raw} LIKE '% -%' OR {raw} LIKE '% +%' THEN "
                    f"regexp_replace(trim({raw}), {_lit(_OFFSET_SPACE)}, '\\1') ELSE {raw} END)")
            return f"CAST(TRY_CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP)"
        return f"TRY_CAST({raw} AS TIMESTAMP)"
    if col.dtype == "boolean":
        if t == "BOOLEAN":
            return raw
        if numeric_raw:
            return f"(CASE WHEN {raw} = 1 THEN TRUE WHEN {raw} = 0 THEN FALSE END)"
        s = f"lower(trim(CAST({raw} AS VARCHAR)))"
        return (f"(CASE WHEN {s} IN ({', '.join(map(_lit, _TRUE))}) THEN TRUE "
                f"WHEN {s} IN ({', '.join(map(_lit, _FALSE))}) THEN FALSE END)")
    raise AssertionError(col.dtype)


_TYPE_WORDS = {"string": "text", "integer": "whole numbers", "float": "numbers", "date": "dates (YYYY-MM-DD)",
               "timestamp": "timestamps (YYYY-MM-DD HH:MM:SS)", "boolean": "true/false values"}


@dataclass
class _Check:
    column: str | None
    condition: str  # SQL over the raw relation, true for offending rows
    problem: str
    expected: str
    kind: str = ""  # type | empty | range | allowed | order
    shown: tuple[tuple[str, str], ...] = ()  # (label, SQL) of values to show for the first offending row


@dataclass
class _RawTable:
    spec: Table
    file: str             # shown in errors
    relation: str         # SQL relation with the raw rows
    raw_types: dict[str, str]  # contract column -> raw DuckDB type
    raw_names: dict[str, str]  # contract column -> raw column name
    columns: tuple[Column, ...]  # contract columns present (incl. extra attr_*), in contract order
    absent: tuple[Column, ...] = ()  # nullable contract columns the file does not have (read as empty)
    dimensions: tuple[Column, ...] = ()  # extra text columns kept as dimensions (``load_dataset(dimensions=)``)

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Every column of the typed table: present contract columns, then dimensions (absent ones separately)."""
        return self.columns + self.dimensions


def dimension_column(name: str) -> Column:
    """The contract of an extra column kept as a dimension (text, usable in filters and breakdowns)."""
    return Column(name, "string", "Extra column kept from the export as a dimension (text).")


def column_spec(table: str, name: str) -> Column:
    """The contract of a column of a loaded table: a contract column, an ``attr_*`` rating or a dimension."""
    spec = TABLES[table]
    if name in spec.column_names:
        return spec.column(name)
    return attribute_column(spec, name) or dimension_column(name)


# --- locating the tables ---------------------------------------------------------------------------------

def _is_duckdb_file(path: Path) -> bool:
    if path.suffix.lower() in DUCKDB_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
        return head[8:12] == b"DUCK"
    except OSError:
        return False


def _find_table_files(folder: Path) -> tuple[dict[str, Path], list[DataProblem]]:
    """The table files of a folder (``responses`` required; the other tables optional: a missing file means
    the table is absent) and the problems found (no responses file, two files for one table)."""
    found: dict[str, Path] = {}
    problems: list[DataProblem] = []
    for name in TABLE_ORDER:
        candidates = [folder / f"{name}{s}" for s in FILE_SUFFIXES if (folder / f"{name}{s}").is_file()]
        if not candidates:
            if name in REQUIRED_TABLES:
                problems.append(DataProblem(
                    name, "file not found", source=str(folder), rule="table",
                    expected=f"{name}.parquet or {name}.csv in the data folder (the one required table; customers, "
                             f"tickets and org are optional) (found: "
                             f"{', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'})"))
            continue
        if len(candidates) > 1:
            problems.append(DataProblem(name, f"two files for one table ({', '.join(p.name for p in candidates)})",
                                        source=str(folder), rule="table",
                                        expected="exactly one file per table; remove the other"))
            continue
        found[name] = candidates[0]
    return found, problems


def _check_mapping(column_mapping: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    if not column_mapping:
        return {}
    from pydantic import ValidationError

    from helpers.config import ReportConfig
    try:
        return ReportConfig(column_mapping={k: dict(v) for k, v in column_mapping.items()}).column_mapping
    except ValidationError as exc:
        raise ParamsError("column_mapping argument", exc.errors()[0]["msg"].removeprefix("Value error, "),
                          field="column_mapping") from None
    except (TypeError, AttributeError):
        raise ParamsError("column_mapping argument", "expected {table: {their column: contract column}}",
                          field="column_mapping") from None


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {r[0]: r[1] for r in rows}


def _raw_table(con: duckdb.DuckDBPyConnection, spec: Table, file: str, relation: str,
               mapping: dict[str, str], dimensions: tuple[str, ...] = ()) -> tuple[_RawTable | None, list[DataProblem]]:
    """The raw relation's columns matched to the contract (after the mapping), and every structural problem:
    a mapped column the file lacks, a column twice, a required column missing, a column not in the contract.
    A nullable contract column the file lacks is absent (read as empty), not a problem; ``attr_*`` ratings are
    only those present. ``dimensions`` are extra columns kept as text. None when the table cannot be typed."""
    described = _describe(con, relation)
    problems: list[DataProblem] = []
    for theirs in mapping:
        if theirs not in described:
            problems.append(DataProblem(spec.name, "named in column_mapping (params/report.yaml) is not in the file",
                                        source=file, column=theirs, rule="mapping",
                                        expected=f"one of the file's columns: {_shown(described, quote=False)}"))
    renamed: dict[str, str] = {}  # contract name -> raw name
    for raw in described:
        ours = mapping.get(raw, raw)
        if ours in renamed:
            problems.append(DataProblem(spec.name, f"appears twice after the column mapping "
                                        f"({shorten(renamed[ours])} and {shorten(raw)})", source=file, column=ours,
                                        rule="mapping", expected="one column per contract column; drop or rename one"))
            continue
        renamed[ours] = raw
    missing = [c for c in spec.columns if c.name not in renamed and not c.nullable]
    for c in missing:
        problems.append(DataProblem(
            spec.name, "is missing", source=file, column=c.name, rule="required column",
            expected=f"the required columns {', '.join(x.name for x in spec.columns if not x.nullable)} (see "
                     "data/README.md; the others may be left out); add the column or map one of your columns to it "
                     "in params/report.yaml column_mapping"))
    kept = set(dimensions)
    extra = [c for c in renamed if c not in spec.column_names and attribute_column(spec, c) is None and c not in kept]
    for c in extra:
        problems.append(DataProblem(
            spec.name, "is not in the contract", source=file, column=c, rule="extra column",
            expected=f"only the contract columns {', '.join(spec.column_names)}"
                     + (f" and {spec.extra_prefix}* ratings" if spec.extra_prefix else "")
                     + "; drop the column, map it to a contract column in params/report.yaml column_mapping, or keep "
                       "it as a dimension in an export profile"))
    if missing or any(p.rule == "mapping" and p.column in renamed for p in problems):
        return None, problems
    standard = [c for c in spec.columns if c.name in renamed]
    absent = tuple(c for c in spec.columns if c.name not in renamed and c.nullable
                   and attribute_column(spec, c.name) is None)
    attrs = [attribute_column(spec, c) for c in renamed if c not in spec.column_names and c not in kept
             and attribute_column(spec, c) is not None]
    dims = tuple(dimension_column(c) for c in renamed if c in kept and c not in spec.column_names)
    columns = standard + attrs
    return _RawTable(spec=spec, file=file, relation=relation,
                     raw_types={c.name: described[renamed[c.name]] for c in (*columns, *dims)},
                     raw_names={c.name: renamed[c.name] for c in (*columns, *dims)}, columns=tuple(columns),
                     absent=absent, dimensions=dims), problems


# --- hints for CSV files that are not what the kit expects (delimiter, decimal mark, encoding) -------------

_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+\s*$")


def _header_line(path: Path, limit: int = 65536) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(limit)
    return head.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")


def csv_delimiter(path: str | os.PathLike[str]) -> str:
    """The likely delimiter of a CSV file: the candidate (``, ; tab |``) that occurs most often in its header
    line (ties go to the comma). A header line is short and has no quoted numbers, so counting is enough."""
    line = _header_line(Path(path))
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def first_non_utf8(path: str | os.PathLike[str], chunk: int = 1 << 20) -> tuple[int, int, bytes] | None:
    """Where a file stops being UTF-8: ``(byte offset, line number, the offending bytes)``, or None when it
    is valid UTF-8 throughout (read in chunks; an incremental decoder so a character split between chunks
    is not an error)."""
    import codecs
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # exc.start counts from the decoder's buffered bytes + this block; locate it in this block
                pending = len(exc.object) - len(block)
                at = max(0, exc.start - pending)
                bad = exc.object[exc.start: exc.start + 4]
                return offset + at, lines + block[:at].count(b"\n"), bytes(bad)
            if not block:
                return None
            offset += len(block)
            lines += block.count(b"\n")


def _encoding_hint(path: Path) -> str | None:
    """A sentence saying the file is not UTF-8 (where, which bytes, what to do), or None if it is."""
    where = first_non_utf8(path)
    if where is None:
        return None
    offset, line, bad = where
    try:
        as_latin = bad[:1].decode("cp1252")
    except UnicodeDecodeError:
        as_latin = ""
    guess = (f" (in Latin-1/Windows-1252 the byte 0x{bad[0]:02X} is {as_latin!r}: the file is probably "
             "Latin-1 or Windows-1252)") if as_latin else ""
    return (f"the file is not UTF-8: byte 0x{bad[0]:02X} at byte offset {offset:,} (line {line}){guess}; "
            f"save it as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 {path.name} > {path.stem}.utf8.csv`, or "
            "\"CSV UTF-8\" in Excel's Save As)")


def _csv_read_problem(name: str, path: Path, exc: Exception) -> DataProblem:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    encoding = _encoding_hint(path)
    if encoding:
        return DataProblem(name, f"cannot be read as CSV: {encoding}", source=str(path), rule="file",
                           expected="a UTF-8 text file with a header row",
                           suggestion="or declare the file's encoding (`read: {encoding: cp1252}`) in its export profile")
    delim = csv_delimiter(path)
    sep = f"; its header line looks {_DELIMITERS[delim]}-delimited ({delim!r})" if delim != "," else ""
    return DataProblem(name, f"cannot be read as CSV: {first}{sep}", source=str(path), rule="file",
                       expected="a UTF-8 CSV file with a header row, comma- (or semicolon-) delimited")


def _csv_read_error(name: str, path: Path, exc: Exception) -> DataContractError:
    return DataValidationError([_csv_read_problem(name, path, exc)])


def _decimal_comma_hint(rt: "_RawTable", column: Column, values: list[object]) -> str:
    """For a number column whose bad values look like ``10,5``: say so, with the file's delimiter."""
    if column.dtype not in ("integer", "float") or not rt.file.endswith((".csv", ".csv.gz")):
        return ""
    texts = [str(v) for v in values if v is not None]
    if not texts or not all(_DECIMAL_COMMA.match(t) for t in texts):
        return ""
    delim = csv_delimiter(rt.file)
    return (f"; the values use a decimal comma (e.g. {shorten(texts[0], 30)}) in a "
            f"{_DELIMITERS[delim]}-delimited file ({delim!r} in the header line), as a spreadsheet set to a "
            "European locale writes them: export the numbers with a decimal point (10.5), e.g. save as "
            "\"CSV UTF-8 (comma delimited)\" with English number formats")


# --- validation ------------------------------------------------------------------------------------------

def _checks(rt: _RawTable) -> list[_Check]:
    checks: list[_Check] = []
    typed = {c.name: _typed_expr(c, quote_ident(rt.raw_names[c.name]), rt.raw_types[c.name]) for c in rt.columns}
    for c in rt.columns:
        raw = quote_ident(rt.raw_names[c.name])
        what = f"{_TYPE_WORDS[c.dtype]}" + (f" {allowed_values_text(c)}" if c.min is not None or
                                             c.max is not None else "")
        meaning = c.description.split(";")[0].split(",")[0].rstrip(".")
        wrong = f"{raw} IS NOT NULL AND {typed[c.name]} IS NULL"
        if c.dtype != "string":
            checks.append(_Check(c.name, wrong, "has values of the wrong type", f"{what} ({meaning})", kind="type"))
        if not c.nullable:  # empty, not a value of the wrong type (that is its own problem)
            checks.append(_Check(c.name, f"{typed[c.name]} IS NULL AND NOT ({wrong})" if c.dtype != "string"
                                 else f"({raw} IS NULL OR trim(CAST({raw} AS VARCHAR)) = '')",
                                 "is empty", f"a value in every row ({meaning})", kind="empty"))
        if c.min is not None or c.max is not None:
            conds = ([f"{typed[c.name]} < {c.min}"] if c.min is not None else []) + \
                    ([f"{typed[c.name]} > {c.max}"] if c.max is not None else [])
            checks.append(_Check(c.name, "(" + " OR ".join(conds) + ")",
                                 "has values out of range", f"{what} ({meaning})", kind="range"))
        if c.allowed:
            checks.append(_Check(c.name, f"{typed[c.name]} NOT IN ({', '.join(map(_lit, c.allowed))})",
                                 "has values not allowed", f"one of {', '.join(c.allowed)}", kind="allowed"))
    present = {c.name for c in rt.columns}
    for earlier, later in rt.spec.ordered:
        if earlier in present and later in present:
            checks.append(_Check(later, f"{typed[later]} < {typed[earlier]}", f"is before {earlier!r}",
                                 f"{later} on or after {earlier}", kind="order",
                                 shown=((earlier, typed[earlier]), (later, typed[later]))))
    return checks


def _column(rt: _RawTable, name: str) -> Column:
    return next(c for c in rt.all_columns if c.name == name)


def _bad_values(con, rt: _RawTable, check: _Check, limit: int = 6) -> list[object]:
    """Up to ``limit`` distinct offending raw values of a check's column (shown, shortened, in the message),
    the most frequent first."""
    raw = quote_ident(rt.raw_names[check.column])
    return [r[0] for r in con.execute(f"SELECT {raw} AS v, count(*) AS n FROM {rt.relation} WHERE {check.condition} "
                                      f"GROUP BY v ORDER BY n DESC, CAST(v AS VARCHAR) LIMIT {limit}").fetchall()]


def _key_examples(con, rt: _RawTable, condition: str, limit: int = 5) -> list[str]:
    if rt.spec.key not in rt.raw_names:
        return []
    key = quote_ident(rt.raw_names[rt.spec.key])
    rows = con.execute(
        f"SELECT CAST({key} AS VARCHAR), rn FROM (SELECT row_number() OVER () AS rn, * FROM {rt.relation}) "
        f"WHERE {condition} LIMIT {limit}").fetchall()
    return [k if k not in (None, "") else f"row {rn}" for k, rn in rows]


_RATING_PREFIXES = ("csat", "nps", "ces")
_US_DATE = r"^\s*(\d{1,2})/(\d{1,2})/(\d{2,4})"
_DOT_DATE = r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})"


def _suggestion(con, rt: _RawTable, check: _Check, values: list[object]) -> str | None:
    """A setting that would fix a failing check, when the offending values show one (a 1-10 scale, US dates,
    a decimal comma, currency text, blanks, text labels, counts where a flag is expected)."""
    col = _column(rt, check.column)
    raw = quote_ident(rt.raw_names[check.column])
    texts = [str(v) for v in values if v is not None]
    is_rating = col.name in _RATING_PREFIXES or col.name.startswith(rt.spec.extra_prefix or "\0")
    if check.kind == "range" and is_rating and col.max is not None:
        typed = _typed_expr(col, raw, rt.raw_types[col.name])
        lo, hi = con.execute(f"SELECT min({typed}), max({typed}) FROM {rt.relation}").fetchone()
        if lo is not None and hi is not None and float(hi).is_integer() and 0 <= lo and hi <= 100:
            first = 0 if lo == 0 else 1
            return (f"values {lo:g}-{hi:g} found: is this a {first}-{hi:g} scale? set `scale: [{first}, {hi:g}]` "
                    "for this column in its export profile")
        return None
    if check.kind != "type" or not texts:
        return None
    if col.dtype in ("date", "timestamp"):
        stats = con.execute(
            f"SELECT count(*), max(TRY_CAST(regexp_extract({raw}, {_lit(_US_DATE)}, 1) AS INTEGER)), "
            f"max(TRY_CAST(regexp_extract({raw}, {_lit(_US_DATE)}, 2) AS INTEGER)), "
            f"count(*) FILTER (WHERE regexp_matches(upper({raw}), '\\d\\s*[AP]\\.?M\\.?\\s*$')), "
            f"count(*) FILTER (WHERE regexp_matches({raw}, {_lit(_DOT_DATE)})) "
            f"FROM {rt.relation} WHERE {check.condition} AND regexp_matches({raw}, "
            f"{_lit(_US_DATE + '|' + _DOT_DATE)})").fetchone()
        n, first, second, twelve, dotted = stats
        time = " %I:%M %p" if twelve else (" %H:%M" if col.dtype == "timestamp" else "")
        key = "date_format" if col.dtype == "date" else "timestamp_format"
        if dotted:
            return f"looks like day.month.year dates: set `read: {{{key}: '%d.%m.%Y{time}'}}` in the export profile"
        if n:
            if first and first > 12:
                fmt, what = "%d/%m/%Y", "day/month/year dates"
            elif second and second > 12:
                fmt, what = "%m/%d/%Y", "US dates (month/day/year)"
            else:
                fmt, what = "%m/%d/%Y", "US or European dates (month/day or day/month: say which)"
            return f"looks like {what}: set `read: {{{key}: '{fmt}{time}'}}` in the export profile"
        return None
    if col.dtype in ("integer", "float"):
        if all(not t.strip() for t in texts):
            return "blank text is not a number: list it as a missing-value code (`read: {missing: ['', ' ']}` in the export profile)"
        if any(re.search(r"[$€£¥]|\b[A-Z]{3}\b", t) for t in texts) or all(_THOUSANDS.match(t) for t in texts):
            return ("values carry a currency or thousands separators (e.g. " + shorten(texts[0], 30) + "): set "
                    "`thousands: ','` (or `currency: USD`) for this column in the export profile")
        if is_rating and all(re.search(r"[A-Za-z]", t) for t in texts):
            return ("text labels found: map them to numbers with a label map for this column in its export profile "
                    "(e.g. `labels: {" + ", ".join(f"{shorten(t, 20)}: ..." for t in texts[:2]) + "}`)")
        return None
    if col.dtype == "boolean":
        counts = [t for t in texts if re.fullmatch(r"\s*\d+(\.0+)?\s*", t)]
        if counts and len(counts) == len(texts):
            return (f"counts found ({', '.join(counts[:3])}): read them as true when above 0 (`count_to_boolean: "
                    "true` for this column in its export profile)")
    return None


_THOUSANDS = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$")


def _check_problem(con, rt: _RawTable, ch: _Check, bad: int) -> DataProblem:
    problem, expected, values = ch.problem, ch.expected, []
    if ch.shown:  # e.g. both dates of the first row whose end is before its start
        first = con.execute("SELECT " + ", ".join(f"CAST({sql} AS VARCHAR)" for _, sql in ch.shown)
                            + f" FROM {rt.relation} WHERE {ch.condition} LIMIT 1").fetchone()
        problem += " (first: " + ", ".join(f"{label} {_plain(v, 40) if v else 'empty'}"
                                          for (label, _), v in zip(ch.shown, first)) + ")"
    elif ch.kind in ("type", "range", "allowed"):
        values = _bad_values(con, rt, ch)
        if ch.kind == "type":
            expected += _decimal_comma_hint(rt, _column(rt, ch.column), values)
    return DataProblem(rt.spec.name, problem, source=rt.file, column=ch.column, n_rows=int(bad),
                       examples=_key_examples(con, rt, ch.condition), values=values, expected=expected,
                       suggestion=None if "decimal comma" in expected else _suggestion(con, rt, ch, values),
                       rule=ch.kind)


# numeric-looking text: a text column whose non-blank values are (almost) all numbers with many distinct values
NUMERIC_TEXT_SHARE = 0.95
NUMERIC_TEXT_DISTINCT = 20


def _numeric_text_candidates(rt: _RawTable) -> list[Column]:
    """Text columns that are neither ids, references nor free text (a numeric-looking one is worth a word)."""
    skip = {rt.spec.key, "comment", "name"}
    return [c for c in rt.all_columns if c.dtype == "string" and c.name not in skip and not c.references
            and "VARCHAR" in rt.raw_types[c.name].upper()]


def _numeric_text_aggregates(raw: str) -> list[str]:
    num = f"TRY_CAST(trim({raw}) AS DOUBLE)"
    return [f"count(*) FILTER (WHERE {raw} IS NOT NULL AND trim({raw}) <> '')",
            f"count({num})", f"count(*) FILTER (WHERE {raw} IS NOT NULL AND trim({raw}) = '')",
            f"approx_count_distinct({num})"]


def numeric_text_problem(table: str, column: str, counts: tuple, examples_sql=None, *, source: str | None = None,
                         offenders: list[object] | None = None, keys: list[str] | None = None) -> DataProblem | None:
    """The warning for a numeric-looking text column, or None: ``counts`` are (non-blank values, values that
    read as numbers, blank values, distinct numbers). Flagged when at least 95% of the non-blank values are
    numbers with more than 20 distinct ones: as text, such a column becomes a category with one level per
    value (a Cox model with thousands of covariates) and its blanks are not missing numbers."""
    filled, numeric, blanks, distinct = (int(x or 0) for x in counts)
    if not filled or numeric < NUMERIC_TEXT_SHARE * filled or distinct <= NUMERIC_TEXT_DISTINCT:
        return None
    others = filled - numeric
    bad = [f"{blanks:,} blank{'s' if blanks != 1 else ''}"] if blanks else []
    bad += [f"{others:,} non-numeric value{'s' if others != 1 else ''}"] if others else []
    what = (f"is numeric-looking text ({distinct:,} distinct numbers" + (", " + ", ".join(bad) if bad else "") + ")"
            + (": blanks are not numbers" if blanks else ""))
    return DataProblem(table, what, source=source, column=column, n_rows=blanks + others if bad else None,
                       examples=keys or [], values=offenders or [], rule="numeric text", severity="warning",
                       expected="a number column (blank = missing) or text categories",
                       suggestion=f"read it as a number (blanks as missing); as "
                                  f"text it is a category with {distinct:,} levels (e.g. that many Cox covariates)")


def numeric_text_columns(frame: pd.DataFrame, table: str = "table", source: str | None = None,
                         key: str | None = None) -> list[DataProblem]:
    """:func:`numeric_text_problem` for every text column of a pandas frame (e.g. a retention export's
    ``TotalCharges`` with blanks ``" "``): the warnings, naming the blanks and other offenders."""
    out: list[DataProblem] = []
    for name in frame.columns:
        s = frame[name]
        if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)) or name == key:
            continue
        text = s.dropna().astype(str)
        stripped = text.str.strip()
        nums = pd.to_numeric(stripped, errors="coerce")
        filled = int((stripped != "").sum())
        counts = (filled, int(nums.notna().sum()), int((stripped == "").sum()), int(nums.nunique()))
        bad_mask = nums.isna()
        offenders = list(dict.fromkeys(text[bad_mask].tolist()))[:6]
        keys = ([str(k) for k in frame.loc[bad_mask[bad_mask].index[:5], key]] if key in frame.columns
                else [f"row {i + 1}" for i in list(bad_mask[bad_mask].index[:5])])
        p = numeric_text_problem(table, str(name), counts, source=source, offenders=offenders, keys=keys)
        if p is not None:
            out.append(p)
    return out


def _validate_table(con: duckdb.DuckDBPyConnection, rt: _RawTable) -> tuple[int, list[DataProblem]]:
    """Every per-table check in one scan; returns the row count and all problems found (with examples and
    values, fetched only for failing checks), numeric-looking text columns as warnings."""
    checks = _checks(rt)
    texts = _numeric_text_candidates(rt)
    aggs = [f"count(*) FILTER (WHERE {ch.condition})" for ch in checks]
    for c in texts:
        aggs += _numeric_text_aggregates(quote_ident(rt.raw_names[c.name]))
    counts = con.execute(f"SELECT count(*){', ' + ', '.join(aggs) if aggs else ''} FROM {rt.relation}").fetchone()
    n = counts[0]
    if n == 0:
        return 0, [DataProblem(rt.spec.name, "has no rows (an empty table)", source=rt.file, rule="rows",
                               expected=f"at least one {rt.spec.name} row" + (
                                   "" if rt.spec.name in REQUIRED_TABLES else
                                   f" (or no {rt.spec.name} file at all: the table is optional)"))]
    problems = [_check_problem(con, rt, ch, bad) for ch, bad in zip(checks, counts[1:1 + len(checks)]) if bad]
    rest = counts[1 + len(checks):]
    for i, c in enumerate(texts):
        found = numeric_text_problem(rt.spec.name, c.name, rest[4 * i: 4 * i + 4], source=rt.file)
        if found is not None:
            raw = quote_ident(rt.raw_names[c.name])
            cond = f"{raw} IS NOT NULL AND TRY_CAST(trim({raw}) AS DOUBLE) IS NULL"
            found.values = [r[0] for r in con.execute(
                f"SELECT DISTINCT {raw} FROM {rt.relation} WHERE {cond} LIMIT 6").fetchall()]
            found.examples = _key_examples(con, rt, cond)
            problems.append(found)
    if rt.spec.key in rt.raw_names:
        key = quote_ident(rt.raw_names[rt.spec.key])
        key_s = f"CAST({key} AS VARCHAR)"
        dup = (0, None) if _keys_increasing(con, rt.relation, key, key_s) else con.execute(
            f"SELECT count(*), sum(n) FROM (SELECT {key_s} AS k, count(*) AS n FROM {rt.relation} "
            f"WHERE {key} IS NOT NULL GROUP BY k HAVING count(*) > 1)").fetchone()
        if dup[0]:
            examples = [r[0] for r in con.execute(
                f"SELECT {key_s} AS k FROM {rt.relation} WHERE {key} IS NOT NULL GROUP BY k HAVING count(*) > 1 "
                f"ORDER BY k LIMIT 5").fetchall()]
            problems.append(DataProblem(
                rt.spec.name, f"has duplicate ids ({dup[0]} id{'s' if dup[0] > 1 else ''} used more than once)",
                source=rt.file, column=rt.spec.key, n_rows=int(dup[1]), examples=examples, rule="unique",
                expected=f"each {rt.spec.key} exactly once"))
    return n, problems


def _keys_increasing(con: duckdb.DuckDBPyConnection, relation: str, key: str, key_text: str) -> bool:
    """Whether the set keys of ``relation``, in its order, are strictly increasing (as text), so that none can
    repeat: one streaming pass comparing each key with the one before (memory independent of the rows; it stops
    at the first key that is not larger). Exports keyed by sequential ids pass and need no duplicate count, which
    holds every distinct key in a hash table (600 MB for 10M ticket ids); any other order falls back to it."""
    return not con.execute(f"SELECT 1 FROM (SELECT k, lag(k) OVER () AS before FROM (SELECT {key_text} AS k FROM "
                           f"{relation} WHERE {key} IS NOT NULL)) WHERE k <= before LIMIT 1").fetchall()


def _typed_select(rt: _RawTable) -> str:
    cols = [f"{_typed_expr(c, quote_ident(rt.raw_names[c.name]), rt.raw_types[c.name])} AS {quote_ident(c.name)}"
            for c in rt.columns]
    cols += [f"CAST(NULL AS {DUCKDB_TYPES[c.dtype]}) AS {quote_ident(c.name)}" for c in rt.absent]
    cols += [f"CAST({quote_ident(rt.raw_names[c.name])} AS VARCHAR) AS {quote_ident(c.name)}" for c in rt.dimensions]
    return f"SELECT {', '.join(cols)} FROM {rt.relation}"


def _check_foreign_keys(con: duckdb.DuckDBPyConnection, files: dict[str, str],
                        present: Mapping[str, object], broken_keys: set[str] = frozenset()) -> list[DataProblem]:
    """Every reference between present tables (a reference to an absent table is not checked: a survey-only
    data set has responses without a customers table; nor one to a table whose key column already has a
    problem, ``broken_keys``: the references would only repeat it)."""
    problems: list[DataProblem] = []
    for spec in (TABLES[t] for t in TABLE_ORDER if t in present):
        for c in spec.columns:
            if not c.references:
                continue
            parent, parent_col = c.references.split(".")
            if parent not in present or parent in broken_keys:
                continue
            # Both queries read only the two key columns and hash the parent's keys (a correlated NOT EXISTS
            # made DuckDB materialise every column of the child table first: 1.1 GB and minutes at 10M tickets).
            col, ref = quote_ident(c.name), quote_ident(parent_col)
            parent_keys = f"SELECT {ref} AS v FROM {_TYPED}{parent} WHERE {ref} IS NOT NULL"
            n = con.execute(f"SELECT count(*) FROM (SELECT {col} AS v FROM {_TYPED}{spec.name} WHERE {col} IS NOT "
                            f"NULL) c ANTI JOIN ({parent_keys}) p ON c.v = p.v").fetchone()[0]
            if n:  # the first five in the table's order: a mark join streams the child rows in order
                ex = con.execute(f"SELECT {quote_ident(spec.key)}, {col} FROM {_TYPED}{spec.name} WHERE {col} IS NOT "
                                 f"NULL AND {col} NOT IN ({parent_keys}) LIMIT 5").fetchall()
                values = list(dict.fromkeys(r[1] for r in ex))
                problems.append(DataProblem(
                    spec.name, f"refers to ids missing from {parent}.{parent_col} (e.g. {shorten(ex[0][1])})",
                    source=files[spec.name], column=c.name, n_rows=n, examples=[r[0] for r in ex], values=values,
                    rule="reference",
                    expected=f"every {c.name} to match a {parent}.{parent_col} (in {files[parent]})"))
    return problems


def _soft_warnings(con: duckdb.DuckDBPyConnection, min_responses: int, attributes: list[str],
                   present: Mapping[str, object] | None = None, absent: Mapping[str, list[str]] | None = None
                   ) -> list[str]:
    present = TABLE_ORDER if present is None else present
    absent = absent or {}
    has_org, has_tickets = "org" in present, "tickets" in present
    out: list[str] = []
    depts = ("SELECT DISTINCT department FROM org UNION " if has_org else "") + "SELECT DISTINCT department FROM responses"
    # responses counted per department first (one small group per department), then matched to the departments
    # (joining the rows themselves to the departments built a hash table of every response)
    small = con.execute(f"SELECT o.department, coalesce(r.n, 0) AS n FROM ({depts}) o LEFT JOIN (SELECT department, "
                        "count(*) AS n FROM responses WHERE department IS NOT NULL GROUP BY department) r "
                        "ON r.department = o.department WHERE coalesce(r.n, 0) < ? ORDER BY o.department",
                        [min_responses]).fetchall()
    for dept, n in small:
        out.append(f"responses: department {shorten(dept)} has only {n} survey responses (fewer than "
                   f"min_responses={min_responses}); its KPIs and drivers are unreliable")
    if has_tickets and "agent_id" not in absent.get("tickets", []):
        n_tickets, no_agent = con.execute("SELECT count(*), count(*) FILTER (WHERE agent_id IS NULL) "
                                          "FROM tickets").fetchone()
        if no_agent:
            out.append(f"tickets: {no_agent} of {n_tickets} tickets ({no_agent / n_tickets:.1%}) have no agent_id; "
                       "they count for their department but for no representative")
    ratings = [r for r in ("csat", "nps", "ces") if r not in absent.get("responses", [])] + list(attributes)
    row = con.execute("SELECT count(*), " + ", ".join(f"count({quote_ident(r)})" for r in ratings)
                      + " FROM responses").fetchone()
    for r, present_n in zip(ratings, row[1:]):
        missing = 1 - present_n / row[0] if row[0] else 0
        if missing > MISSING_SHARE_WARNING:
            out.append(f"responses: {missing:.0%} of the responses have no {shorten(r)} answer; results on it rest "
                       f"on {present_n} answers")
    if not has_org:
        return out
    org_depts = {d for (d,) in con.execute("SELECT DISTINCT department FROM org").fetchall()}
    for table in ("responses", "tickets") if has_tickets else ("responses",):
        unknown = [d for (d,) in con.execute(f"SELECT DISTINCT department FROM {table} ORDER BY 1").fetchall()
                   if d not in org_depts]
        if unknown:
            out.append(f"{table}: department{'s' if len(unknown) > 1 else ''} "
                       f"{_shown(unknown)} not in org.department; they have no people "
                       "to assign objectives to")
    if has_tickets and "team" not in absent.get("tickets", []):
        # the distinct pairs first (a few hundred), then those not in org (no correlated scan of every ticket)
        teams = con.execute("SELECT t.department, t.team FROM (SELECT DISTINCT department, team FROM tickets WHERE "
                            "team IS NOT NULL) t WHERE NOT EXISTS (SELECT 1 FROM org o WHERE o.department = "
                            "t.department AND o.team = t.team) ORDER BY 1, 2").fetchall()
        if teams:
            shown = ", ".join(_plain(f"{d}/{t}") for d, t in teams[:5]) + (f" (+{len(teams) - 5} more)" if len(teams) > 5 else "")
            out.append(f"tickets: team{'s' if len(teams) > 1 else ''} {shown} not in org (department/team); "
                       "their tickets count for the department but for no team")
    return out


# --- dates beyond the as-of date -------------------------------------------------------------------------

@dataclass(frozen=True)
class DateFinding:
    """Rows (or values) dated after the cut-off of :func:`load_dataset`, per table and column.

    ``kind`` is ``"future"`` (after today: impossible, a data error to fix in the source) or ``"after_as_of"``
    (real, but later than the report's as-of date); ``action`` is ``"row left out"`` (the row's own date,
    ``Table.dated_by``) or ``"read as empty"`` (a later event of a kept row: not yet happened on the cut-off).
    ``examples`` are up to five ``(row id, date)`` pairs, latest first.
    """

    table: str
    column: str
    kind: str
    action: str
    n_rows: int
    cutoff: str
    examples: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def message(self) -> str:
        when = f"after today ({self.cutoff})" if self.kind == "future" else f"after the as-of date {self.cutoff}"
        rows = f"{self.n_rows:,} row{'s' if self.n_rows != 1 else ''}"
        shown = ", ".join(f"{shorten(k, 40)} ({d})" for k, d in self.examples)
        more = f" (+{self.n_rows - len(self.examples):,} more)" if self.n_rows > len(self.examples) else ""
        where = self.table + (f" ({self.source})" if self.source else "")
        if self.action == "row left out":
            what = (f"{rows} dated {when} in column {shorten(self.column)} e.g. {shown}{more}; "
                    f"{'they are' if self.n_rows != 1 else 'it is'} left out of the analyses")
        else:
            what = (f"column {shorten(self.column)} is {when} in {rows} e.g. {shown}{more}; "
                    f"read as empty (not yet happened on {self.cutoff})")
        if self.kind == "future":
            what += ("; a date in the future is a data error: check the export"
                     if not (self.table == "customers" and self.column == "end_date")
                     else "; a planned end date counts as still a customer")
        return f"{where}: {what}"

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "column": self.column, "kind": self.kind, "action": self.action,
                "n_rows": self.n_rows, "cutoff": self.cutoff, "examples": [list(e) for e in self.examples],
                "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "DateFinding":
        return cls(table=str(d["table"]), column=str(d["column"]), kind=str(d["kind"]), action=str(d["action"]),
                   n_rows=int(d["n_rows"]), cutoff=str(d["cutoff"]),
                   examples=tuple((str(a), str(b)) for a, b in d.get("examples", ())),
                   source=str(d.get("source", "")))


def date_warnings(findings: list[DateFinding]) -> list[str]:
    """The cuts as report warnings: each future date (a data error) in full, with examples; the rows and values
    a past as-of date leaves out in one sentence per cut-off (they are not a problem, only not in the report)."""
    out = [f.message() for f in findings if f.kind == "future"]
    for cutoff in dict.fromkeys(f.cutoff for f in findings if f.kind != "future"):
        cut = [f for f in findings if f.kind != "future" and f.cutoff == cutoff]
        rows = [f"{f.n_rows:,} {f.table if f.n_rows != 1 else f.table.rstrip('s')}" for f in cut
                if f.action == "row left out"]
        values = [f"{f.n_rows:,} {f.column}" for f in cut if f.action != "row left out"]
        text = f"Data dated after the as-of date {cutoff} is not part of this report"
        text += f": {', '.join(rows)} left out" if rows else ""
        n_values = sum(f.n_rows for f in cut if f.action != "row left out")
        text += (f"; later events read as not yet happened on {cutoff} ({', '.join(values)} "
                 f"value{'s' if n_values != 1 else ''})") if values else ""
        out.append(text + ".")
    return out


def _day(value: object) -> _dt.date:
    return pd.Timestamp(value).date()


def _dated_union(tables, *, prefix: str = "", until: str | None = None) -> str:
    """SQL: one column ``d`` with the response days and ticket days of the present tables (None: no table)."""
    parts = []
    for table, expr in (("responses", "response_date"), ("tickets", "CAST(created_at AS DATE)")):
        if table in tables:
            where = f" WHERE {expr} <= {until}" if until else ""
            parts.append(f"SELECT {expr} AS d FROM {prefix}{table}{where}")
    return " UNION ALL ".join(parts)


def _last_day_until(con: duckdb.DuckDBPyConnection, today: _dt.date, tables=TABLE_ORDER) -> _dt.date | None:
    """The last day with responses or tickets, not counting rows after ``today``."""
    lit = f"DATE '{today.isoformat()}'"
    last = con.execute(f"SELECT max(d) FROM ({_dated_union(tables, prefix=_TYPED, until=lit)})").fetchone()[0]
    return None if last is None else _day(last)


def _cut_by_date(con: duckdb.DuckDBPyConnection, files: Mapping[str, str], as_of: _dt.date | None,
                 today: _dt.date, cut_before: _dt.date | None = None,
                 tables=TABLE_ORDER) -> tuple[_dt.date, list[DateFinding]]:
    """Create the views ``customers``, ``responses``, ``tickets``, ``org`` over the typed tables, without rows
    dated after the cut-off (``min(as_of, today)``) and with later events after it read as empty; return the
    cut-off and what was cut. ``cut_before``: the tables were already cut there (a snapshot), so a cut-off on or
    after it has nothing to find (no scan). Raises :class:`DataContractError` when a dated table is left
    without rows."""
    cutoff = today if as_of is None else min(as_of, today)
    tables = [t for t in TABLE_ORDER if t in tables]
    if cut_before is not None and cutoff >= cut_before:
        for name in tables:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {_TYPED}{name}")
        return cut_before, []
    lit_cut, lit_today = f"DATE '{cutoff.isoformat()}'", f"DATE '{today.isoformat()}'"
    findings: list[DateFinding] = []
    for name in tables:
        spec, typed = TABLES[name], f"{_TYPED}{name}"
        if not spec.dated_by:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {typed}")
            continue
        day = f"CAST({quote_ident(spec.dated_by)} AS DATE)"
        kept = f"({day} IS NULL OR {day} <= {lit_cut})"
        # (column, action, kind, condition)
        conds: list[tuple[str, str, str, str]] = [
            (spec.dated_by, "row left out", "future", f"{day} > {lit_today}"),
            (spec.dated_by, "row left out", "after_as_of", f"{day} > {lit_cut} AND {day} <= {lit_today}")]
        for later in spec.later_dates:
            lday = f"CAST({quote_ident(later)} AS DATE)"
            conds += [(later, "read as empty", "future", f"{kept} AND {lday} > {lit_today}"),
                      (later, "read as empty", "after_as_of",
                       f"{kept} AND {lday} > {lit_cut} AND {lday} <= {lit_today}")]
        if cutoff == today:
            conds = [c for c in conds if c[2] == "future"]
        counts = con.execute("SELECT count(*), count(*) FILTER (WHERE " + kept + "), "
                             + ", ".join(f"count(*) FILTER (WHERE {c[3]})" for c in conds)
                             + f" FROM {typed}").fetchone()
        n_all, n_kept = counts[0], counts[1]
        for (column, action, kind, cond), n in zip(conds, counts[2:]):
            if not n:
                continue
            ex = con.execute(f"SELECT CAST({quote_ident(spec.key)} AS VARCHAR), CAST({quote_ident(column)} AS VARCHAR) "
                             f"FROM {typed} WHERE {cond} ORDER BY {quote_ident(column)} DESC, 1 LIMIT 5").fetchall()
            findings.append(DateFinding(name, column, kind, action, int(n),
                                        today.isoformat() if kind == "future" else cutoff.isoformat(),
                                        tuple((str(k), str(d)) for k, d in ex), files.get(name, "")))
        if n_all and not n_kept:
            first = con.execute(f"SELECT CAST(min({day}) AS VARCHAR) FROM {typed}").fetchone()[0]
            when = f"today ({cutoff})" if cutoff == today else f"the as-of date {cutoff}"
            if _dt.date.fromisoformat(str(first)[:10]) > today:
                # no as-of can help: every row is in the future, and nothing after today is read as real
                raise DataContractError(
                    name, f"has no rows dated on or before today ({today}): all {n_all:,} rows are dated in "
                          f"the future (the first on {str(first)[:10]})", source=files.get(name),
                    column=spec.dated_by, expected="dates up to today: check the export's dates (and this "
                                                   "machine's clock); an as-of date cannot move 'today'")
            raise DataContractError(
                name, f"has no rows dated on or before {when}: too little history before {cutoff} "
                      f"(all {n_all:,} rows are later)", source=files.get(name), column=spec.dated_by,
                expected=f"an as-of date on or after {first}, the first {spec.dated_by}")
        replace = ", ".join(f"CASE WHEN CAST({quote_ident(c)} AS DATE) > {lit_cut} THEN NULL "
                            f"ELSE {quote_ident(c)} END AS {quote_ident(c)}" for c in spec.later_dates)
        con.execute(f"CREATE VIEW {name} AS SELECT *{f' REPLACE ({replace})' if replace else ''} "
                    f"FROM {typed} WHERE {kept}")
    return cutoff, findings


# --- fingerprint -----------------------------------------------------------------------------------------

def _hash_files(paths: Mapping[str, Path], extra: object = None, references: dict | None = None) -> str:
    """BLAKE2b-128 over every file's name, suffix and bytes, then ``extra`` (the column mapping...). With
    ``references`` (a dict), also records per table the file's immutable reference in the same read: absolute
    path, size, modification time (ns) and the BLAKE2b-128 of its bytes (what a snapshot by reference checks)."""
    h = hashlib.blake2b(digest_size=16)
    for name, p in paths.items():
        h.update(f"{name}\0{p.suffix}\0".encode())
        own = hashlib.blake2b(digest_size=16) if references is not None else None
        before = p.stat() if own is not None else None
        with p.open("rb") as fh:
            while chunk := fh.read(FINGERPRINT_CHUNK):
                h.update(chunk)
                if own is not None:
                    own.update(chunk)
        if own is not None:
            references[name] = {"path": os.path.abspath(p), "size": before.st_size, "mtime_ns": before.st_mtime_ns,
                                "blake2b": own.hexdigest()}
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _file_blake2b(path: Path) -> str:
    own = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while chunk := fh.read(FINGERPRINT_CHUNK):
            own.update(chunk)
    return own.hexdigest()


def reference_changes(references: Mapping[str, Mapping[str, object]], *, content: bool = False) -> list[str]:
    """What changed in the files a snapshot by reference points to (``[]``: nothing), one sentence per file.

    ``references``: ``{table: {"path", "size", "mtime_ns", "blake2b"}}`` (:attr:`Dataset.file_references`). A
    file that is gone or has another size has changed; one with the recorded size and modification time is taken
    as unchanged unless ``content=True``; otherwise its bytes are hashed again and compared (a file that was only
    touched or copied, same bytes, is unchanged)."""
    changes = []
    for table, ref in references.items():
        path = Path(str(ref.get("path", "")))
        try:
            st = path.stat()
        except OSError:
            changes.append(f"{table}: {path} is gone (the run read it; it was {int(ref.get('size', 0)):,} bytes)")
            continue
        if st.st_size != ref.get("size"):
            changes.append(f"{table}: {path} changed (size {int(ref.get('size', 0)):,} -> {st.st_size:,} bytes)")
            continue
        if st.st_mtime_ns == ref.get("mtime_ns") and not content:
            continue
        if _file_blake2b(path) != ref.get("blake2b"):
            when = _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC).isoformat(timespec="seconds")
            changes.append(f"{table}: {path} changed (same size, other content; modified {when})")
    return changes


# --- the run store: validated tables once per data fingerprint ----------------------------------------------

RUN_STORE = ".data"  # a report output folder's run store (helpers.reports.runner): <out>/.data/<key>/<table>.parquet
STORE_VERSION = 1
STORE_RECORD = "entry.json"
_STORE_TMP = ".tmp-"


def _store_code_digest() -> str:
    """BLAKE2b of the modules that shape the typed tables (reading, typing, export profiles): a kit whose typing
    rules changed does not reuse tables typed by an older one."""
    h = hashlib.blake2b(digest_size=8)
    here = Path(__file__).resolve().parent
    for name in ("data.py", "schema.py", "sources.py"):
        try:
            h.update((here / name).read_bytes())
        except OSError:  # pragma: no cover - an installed kit without sources
            h.update(name.encode())
    return h.hexdigest()


def store_key(fingerprint: str, source: str | os.PathLike[str], mapping: object = None,
              dimensions: object = None) -> str:
    """The name of a dataset's entry in a run store: BLAKE2b-128 of the data's fingerprint (source bytes and what
    shaped the tables), the source's absolute location, the column mapping and kept dimensions, the store's
    format and the kit's typing code (:func:`_store_code_digest`). Equal keys hold the same typed tables."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"version": STORE_VERSION, "code": _store_code_digest(), "fingerprint": fingerprint,
                         "source": os.path.abspath(source), "mapping": mapping or {},
                         "dimensions": {t: list(c) for t, c in sorted((dimensions or {}).items()) if c}},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


def read_store_entry(store: str | os.PathLike[str], key: str, *, content: bool = True) -> dict | None:
    """The record of the run store's entry ``key`` (``store/<key>/entry.json``: tables, files, soft problems,
    per table the Parquet file's reference) or None when there is none or it cannot be trusted: its record is
    unreadable or of another key, or a file is gone or changed (:func:`reference_changes`; ``content=True``
    hashes the files' bytes again)."""
    folder = Path(store) / key
    try:
        record = json.loads((folder / STORE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or record.get("version") != STORE_VERSION:
        return None
    refs = record.get("references") or {}
    if set(refs) != set(record.get("tables") or ()) or reference_changes(refs, content=content):
        return None
    return record


def write_store_entry(dataset: "Dataset", store: str | os.PathLike[str]) -> dict:
    """Store ``dataset``'s typed tables (validated, column-mapped, *before* the as-of cut) once under
    ``store/<key>/<table>.parquet`` (:func:`store_key`) and return the entry's record; an entry already there
    whose files are intact is reused as it is (nothing written). Written by DuckDB's ``COPY ... TO`` (streams,
    spills past ``engine.duckdb.memory_limit``; no pandas frame) into ``store/.tmp-<key>-<pid>``, then renamed
    into place in one step, so an entry is complete or absent. A damaged entry is replaced."""
    if dataset.store_inputs is None:
        raise ValueError(f"{dataset.source}: only a dataset loaded from its source can be stored (not a snapshot)")
    store = Path(os.path.abspath(store))
    key = store_key(dataset.fingerprint, dataset.source, **dataset.store_inputs)
    found = read_store_entry(store, key)
    if found is not None:
        return found
    final = store / key
    tmp = store / f"{_STORE_TMP}{key}-{os.getpid()}"
    if tmp.exists():
        import shutil  # noqa: PLC0415
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        references: dict[str, dict[str, object]] = {}
        for t in dataset.tables:
            out = tmp / f"{t}.parquet"
            dataset.con.execute(f"COPY (SELECT * FROM {_TYPED}{t}) TO {_lit(str(out))} "
                                "(FORMAT parquet, COMPRESSION zstd)")
            st = out.stat()
            references[t] = {"path": str(final / out.name), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                             "blake2b": _file_blake2b(out)}
        record = {"version": STORE_VERSION, "key": key, "fingerprint": dataset.fingerprint,
                  "source": dataset.origin, "tables": list(dataset.tables), "files": dataset.files,
                  "absent_columns": dataset.absent_columns, "dimensions": dataset.dimensions,
                  "problems": [p.to_dict() for p in dataset.problems], "validated": dataset.validated,
                  "references": references,
                  "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        (tmp / STORE_RECORD).write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
        if final.exists():  # damaged (read_store_entry refused it): set aside, then replaced in one step
            import shutil  # noqa: PLC0415
            aside = store / f"{_STORE_TMP}{key}-{os.getpid()}-damaged"
            os.replace(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        import shutil  # noqa: PLC0415
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def adopt_store_entry(snapshot: str | os.PathLike[str], store: str | os.PathLike[str]) -> str | None:
    """Make the snapshot ``snapshot`` (a copy of a run's ``data.duckdb``) read its run-store entry from ``store``
    instead of another output folder's run store; the entry's key, or None when there was nothing to do (a
    snapshot that copies its data, references source files, or already reads from ``store``).

    Why: a reproduction into another output folder copies the run's snapshot, whose views read
    ``<original output folder>/.data/<key>/<table>.parquet``; that folder's ``--keep`` prunes the entry once none
    of *its* runs uses it, and the reproduction lost its data. Here ``store`` gets the entry (its files hard-linked,
    else copied: the same bytes and modification times, written into a temporary folder and renamed into place,
    an entry already there and intact is used as it is), and the snapshot's ``__raw_<table>`` views, its
    references and the entry's record point at ``store``; so the new folder's pruning keeps the entry while the
    reproduction is there. Run on a copy the caller owns (no other process reads it)."""
    snapshot, store = Path(snapshot), Path(os.path.abspath(store))
    meta = snapshot_meta(snapshot)
    key = meta.get("store") or ""
    if not key or meta.get("storage") != "reference":
        return None
    references = json.loads(meta.get("references") or "{}")
    paths = {t: Path(str(ref.get("path", ""))) for t, ref in references.items()}
    homes = {p.parent for p in paths.values()}
    if len(homes) != 1:
        return None
    home = homes.pop()
    target = store / key
    if home.name != key or os.path.abspath(home) == os.path.abspath(target):
        return None
    if read_store_entry(store, key) is None:  # not there (or damaged): give the store this entry
        store.mkdir(parents=True, exist_ok=True)
        tmp = store / f"{_STORE_TMP}{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in home.iterdir():
            if f.is_file() and f.name != STORE_RECORD:
                try:
                    os.link(f, tmp / f.name)
                except OSError:  # another file system, or no hard links: a copy with the same times
                    shutil.copy2(f, tmp / f.name)
        record = json.loads((home / STORE_RECORD).read_text(encoding="utf-8"))
        for ref in (record.get("references") or {}).values():
            ref["path"] = str(target / Path(str(ref.get("path", ""))).name)
        (tmp / STORE_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    for table, ref in references.items():
        ref["path"] = str(target / paths[table].name)
    con = _connect()
    try:
        con.execute(f"ATTACH {_lit(str(snapshot))} AS __adopt")
        for table, ref in references.items():
            con.execute(f"CREATE OR REPLACE VIEW __adopt.main.__raw_{table} AS "
                        f"SELECT * FROM read_parquet({_lit(ref['path'])})")
        con.execute(f"UPDATE __adopt.main.{META_TABLE} SET value = ? WHERE key = 'references'",
                    [json.dumps(references)])
        con.execute("DETACH __adopt")
    finally:
        con.close()
    return key


def store_entries(store: str | os.PathLike[str]) -> list[str]:
    """The keys of a run store's entries (complete or not; not the temporary folders of a write under way)."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and not d.name.startswith("."))


# --- the dataset -----------------------------------------------------------------------------------------

def _frame_row_limit() -> int:
    """:data:`FRAME_ROW_LIMIT_ENV` as a number (0: no limit, also when it is not a whole number)."""
    try:
        return max(0, int(os.environ.get(FRAME_ROW_LIMIT_ENV, "") or 0))
    except ValueError:
        return 0


class Dataset:
    """The contract tables the data has: in DuckDB (``.con``: views customers, responses, tickets, org) and
    as pandas frames built on first access (``.customers`` ...; ids str, dates datetime64, numbers float64
    with NaN, ``reopened`` boolean). ``.warnings`` lists soft data problems, ``.fingerprint`` hashes the
    inputs (file bytes and column mapping), ``.source`` is where the data came from. ``.excluded`` lists the
    rows and values dated after the cut-off (:class:`DateFinding`; ``.excluded_table()`` as a frame), ``.as_of``
    the as-of date the data was cut at (None: today).

    Only ``responses`` is required: ``.tables`` lists the tables present, ``.has("tickets")`` asks, and an
    absent table is absent everywhere (no view in ``.con``; ``.tickets`` raises
    :class:`helpers.errors.MissingTableError`, also an ``AttributeError``, with the reason). ``.absent_columns``
    lists the nullable contract columns the files did not have (read as empty columns, e.g. no ``nps``
    question); ``.missing_reason(what)`` gives the one-line reason a table, KPI or section cannot be shown."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, fingerprint: str, warnings: list[str],
                 files: dict[str, str], excluded: list[DateFinding] | None = None,
                 as_of: pd.Timestamp | None = None, tables: tuple[str, ...] | None = None,
                 absent_columns: Mapping[str, list[str]] | None = None):
        self.tables = tuple(t for t in TABLE_ORDER if tables is None or t in tables)
        self.absent_columns = {t: list(c) for t, c in (absent_columns or {}).items() if c}
        self.problems: list[DataProblem] = []  # the soft problems as DataProblem (numeric-looking text ...)
        self.dimensions: dict[str, list[str]] = {}  # extra text columns kept per table
        self.con = con
        self.source = source
        self.origin = source  # the original data location (a snapshot keeps its source's)
        self.fingerprint = fingerprint
        self.warnings = list(warnings)
        self.files = files
        self.excluded = list(excluded or [])
        self.as_of = as_of
        self.cutoff: pd.Timestamp | None = None  # the day the tables were cut at: min(as_of, today)
        # per table the file read and its immutable reference (path, size, mtime_ns, blake2b): folder sources,
        # and snapshots by reference (which read those files); {} otherwise
        self.file_references: dict[str, dict[str, object]] = {}
        self.storage = "files"  # where the rows live: "files" (the source), "copy"/"reference" (a kit snapshot)
        self.validated = True  # loaded with validate=True (a run store keeps only what its entry says)
        # what shaped the tables besides the source's bytes (column mapping, kept dimensions): the run store's
        # key (:func:`store_key`); None for a snapshot (its tables are already cut)
        self.store_inputs: dict[str, object] | None = None
        self.store_key = ""  # the run store entry the tables were read from or stored in ("" : none)

    def excluded_messages(self, future_only: bool = False) -> list[str]:
        """The cuts as sentences for a report's data-quality section (``future_only``: only the dates after
        today, i.e. the data errors, not the rows a past as-of date leaves out)."""
        return date_warnings([f for f in self.excluded if f.kind == "future" or not future_only])

    def excluded_table(self) -> pd.DataFrame:
        """One row per table, column and kind of cut: rows, what was done, the cut-off date, example ids."""
        cols = ["table", "column", "kind", "action", "rows", "cutoff", "examples"]
        return pd.DataFrame([{"table": f.table, "column": f.column, "kind": f.kind, "action": f.action,
                              "rows": f.n_rows, "cutoff": f.cutoff,
                              "examples": ", ".join(f"{k} ({d})" for k, d in f.examples)} for f in self.excluded],
                            columns=cols)

    def __repr__(self) -> str:
        counts = ", ".join(f"{t}={self.count(t):,}" for t in self.tables)
        return f"<Dataset {self.source!r} {counts}; {len(self.warnings)} warnings>"

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether the data has ``table`` (and, if given, ``column`` as a column it really had, not one read
        as empty because the file lacked it)."""
        if _table_name(table) not in self.tables:
            return False
        if column is None:
            return True
        return column in self.columns(table) and column not in self.absent_columns.get(table, [])

    def missing_reason(self, what: str) -> str:
        """The one-line reason ``what`` (a table, a KPI name of ``helpers.kpis.KPIS`` or a section:
        ``retention``, ``tickets``, ``people``) cannot be shown on this data, or ``""`` when it can, e.g.
        ``"Retention needs the customers table (signup and churn dates): add customers.csv"``."""
        return missing_reason(what, self)

    def _require(self, table: str) -> str:
        if _table_name(table) not in self.tables:
            raise MissingTableError(table, TABLE_NEEDS[table], source=self.origin)
        return table

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {self._require(table)}").fetchone()[0]

    def columns(self, table: str) -> list[str]:
        return list(_describe(self.con, self._require(table)))

    def frame(self, table: str, department: str | None = None) -> pd.DataFrame:
        """A table as a pandas frame with the contract's dtypes (a fresh frame; prefer the cached attributes).
        ``department``: only that department's rows, selected in DuckDB (same columns, dtypes and row order)."""
        spec = TABLES[self._require(table)]
        dtypes, select = {}, []
        for name in self.columns(table):
            col = column_spec(table, name)
            dtypes[name] = PANDAS_DTYPES[col.dtype]
            # numbers as DOUBLE and dates as TIMESTAMP already in DuckDB: Arrow then converts without copies
            cast = {"integer": "DOUBLE", "float": "DOUBLE", "date": "TIMESTAMP"}.get(col.dtype)
            select.append(f"CAST({quote_ident(name)} AS {cast}) AS {quote_ident(name)}" if cast
                          else quote_ident(name))
        where, params = ("", None) if department is None else ("WHERE department = $department",
                                                                {"department": department})
        limit = _frame_row_limit()
        if limit:
            rows = self.con.execute(f"SELECT count(*) FROM {spec.name} {where}", params or {}).fetchall()[0][0]
            if rows > limit:
                part = f" of {shorten(department)}" if department is not None else ""
                raise DataContractError(
                    f"{spec.name}{part}", f"{rows:,} rows are more than this process reads into memory ({limit:,}, "
                    f"{FRAME_ROW_LIMIT_ENV}); the figures that need them are computed by the engine instead")
        relation = self.con.sql(f"SELECT {', '.join(select)} FROM {spec.name} {where}", params=params)
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        df = fetch().to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        return df.astype(dtypes)

    @cached_property
    def customers(self) -> pd.DataFrame:
        return self.frame("customers")

    @cached_property
    def responses(self) -> pd.DataFrame:
        return self.frame("responses")

    @cached_property
    def tickets(self) -> pd.DataFrame:
        return self.frame("tickets")

    @cached_property
    def org(self) -> pd.DataFrame:
        return self.frame("org")

    @cached_property
    def departments(self) -> list[str]:
        """Sorted department names found in org, responses and tickets (those present: without an org table
        the departments are those of the responses and tickets)."""
        union = " UNION ".join(f"SELECT DISTINCT department FROM {t}" for t in ("org", "responses", "tickets")
                               if t in self.tables)
        rows = self.con.execute(union).fetchall()
        return sorted(r[0] for r in rows if r[0] is not None)

    @cached_property
    def attributes(self) -> list[str]:
        """The attribute-rating (``attr_*``) columns of responses, in table order."""
        prefix = TABLES["responses"].extra_prefix or "attr_"
        return [c for c in self.columns("responses") if c.startswith(prefix)]

    def date_range(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last day with responses or tickets (rows after the cut-off are not counted)."""
        lo, hi = self.con.execute(f"SELECT min(d), max(d) FROM ({_dated_union(self.tables)})").fetchone()
        return pd.Timestamp(lo), pd.Timestamp(hi)

    def default_as_of(self, today: object = None) -> pd.Timestamp:
        """The as-of date a report uses when none is given: :func:`default_as_of` of the data's last date."""
        last = self.date_range()[1]
        if pd.isna(last):
            raise DataContractError("dataset", "has no responses or tickets", source=self.origin,
                                    expected="dated rows to take the as-of date from")
        return default_as_of(last, today=today)

    def snapshot(self, path: str | os.PathLike[str], *, by_reference: bool = False,
                 store: str | os.PathLike[str] | None = None) -> Path:
        """Write the loaded, validated, column-mapped tables (and fingerprint, warnings) into one DuckDB file,
        atomically (a temporary file renamed into place). ``load_dataset(path, validate=False)`` reads it
        back without re-validating; its fingerprint is this dataset's.

        ``by_reference=True`` (what a report run uses): when every table is a Parquet file of a folder (absolute
        paths), the file holds no rows, only views: per table the raw read (``read_parquet`` of the file), the
        typed select and the as-of cut, exactly those this dataset queries, plus each file's immutable reference
        (:attr:`file_references`: path, size, modification time, BLAKE2b of the bytes). Reading it checks the
        references first (:func:`reference_changes`) and refuses files that changed since, with a
        :class:`DataContractError` naming them; so every reader sees exactly the validated, cut data, and the
        file stays a few hundred KB whatever the data's size. Other sources (CSV files, a DuckDB file, a source
        set) are copied as with ``by_reference=False``, unless ``store`` names a run store (a report run's
        ``<out>/.data``): then their typed tables are written there once per data (:func:`write_store_entry`:
        ``<store>/<key>/<table>.parquet``; a second run on the same data reuses the entry) and the snapshot
        references those Parquet files exactly like a Parquet source's. A snapshot loaded from a snapshot is
        always copied. :attr:`storage` of the loaded snapshot says which ("reference" or "copy")."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        for p in (tmp, Path(str(tmp) + ".wal")):
            p.unlink(missing_ok=True)
        views = self._reference_views() if by_reference else None
        references, store_key_ = (self.file_references, self.store_key) if views is not None else ({}, "")
        if views is None and by_reference and store is not None and self.store_inputs is not None \
                and self.storage == "files":
            record = write_store_entry(self, store)
            views, references, store_key_ = self._store_views(record), record["references"], record["key"]
            self.store_key = store_key_
        alias = "__kit_snapshot"
        self.con.execute(f"ATTACH {_lit(str(tmp))} AS {alias}")
        try:
            if views is not None:
                home = self.con.execute("SELECT current_database()").fetchone()[0]
                self.con.execute(f"USE {alias}")
                try:  # DuckDB's own serialisation of each view, created in the snapshot (resolved there)
                    for sql in views:
                        self.con.execute(sql)
                finally:
                    self.con.execute(f"USE {quote_ident(home)}")
            else:
                for t in self.tables:
                    self.con.execute(f"CREATE TABLE {alias}.main.{t} AS SELECT * FROM {t}")
            self.con.execute(f"CREATE TABLE {alias}.main.{META_TABLE} (key VARCHAR, value VARCHAR)")
            meta = {"fingerprint": self.fingerprint, "source": self.origin,
                    "warnings": json.dumps(self.warnings), "files": json.dumps(self.files),
                    "excluded": json.dumps([f.to_dict() for f in self.excluded]),
                    "as_of": "" if self.as_of is None else self.as_of.date().isoformat(),
                    "cutoff": "" if self.cutoff is None else self.cutoff.date().isoformat(),
                    "tables": json.dumps(list(self.tables)), "absent_columns": json.dumps(self.absent_columns),
                    "dimensions": json.dumps(self.dimensions),
                    "problems": json.dumps([p.to_dict() for p in self.problems]),
                    "storage": "reference" if views is not None else "copy",
                    "references": json.dumps(references), "store": store_key_,
                    "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
            self.con.executemany(f"INSERT INTO {alias}.main.{META_TABLE} VALUES (?, ?)", list(meta.items()))
        finally:
            self.con.execute(f"DETACH {alias}")
        os.replace(tmp, path)
        return path

    def _reference_views(self) -> list[str] | None:
        """The ``CREATE VIEW`` statements (raw read, typed select, as-of cut per table, in that order) that
        rebuild this dataset's tables from its files, or None when a table is not a Parquet file read in place
        (CSV is parsed into memory, DuckDB sources and snapshots are attached under names a snapshot cannot
        keep)."""
        if self.storage != "files" or not self.tables or set(self.tables) - set(self.file_references):
            return None
        found = self._own_views()
        views = []
        for t in self.tables:
            file = Path(str(self.file_references[t]["path"]))
            names = (f"__raw_{t}", f"{_TYPED}{t}", t)
            if not (file.is_absolute() and file.suffix.lower() == ".parquet" and all(n in found for n in names)):
                return None
            if f"read_parquet({_lit(str(file))})" not in found[names[0]]:
                return None  # read through a relative path (the snapshot would depend on the reader's folder)
            views += [found[n] for n in names]
        return views

    def _own_views(self) -> dict[str, str]:
        """``{view name: CREATE VIEW statement}`` of the views of this dataset's connection (DuckDB's own
        serialisation)."""
        home = self.con.execute("SELECT current_database()").fetchone()[0]
        return dict(self.con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal "
            "AND NOT temporary", [home]).fetchall())

    def _store_views(self, record: Mapping[str, object]) -> list[str]:
        """The ``CREATE VIEW`` statements that rebuild this dataset's tables from a run store entry: per table the
        read of the stored Parquet file (typed already), the typed view over it and this dataset's as-of cut."""
        found, views = self._own_views(), []
        for t in self.tables:
            file = str(record["references"][t]["path"])  # type: ignore[index]
            views += [f"CREATE VIEW __raw_{t} AS SELECT * FROM read_parquet({_lit(file)});",
                      f"CREATE VIEW {_TYPED}{t} AS SELECT * FROM __raw_{t};", found[t]]
        return views

    def close(self) -> None:
        self.con.close()


def default_as_of(last_date: object, today: object = None) -> pd.Timestamp:
    """The last day of the last *complete* calendar month in the data, never after ``today``.

    ``last_date`` is the data's last day (rows after ``today`` do not count: they are future-dated errors).
    When that day is a month's last day the month is complete and it is the answer; otherwise the month is only
    partly observed and the answer is the last day of the month before. So the default report never treats a
    half-observed month (or quarter) as a finished period, and never lets one future-dated row move "now".
    """
    today_ts = pd.Timestamp(today if today is not None else _dt.date.today()).normalize()
    last = min(pd.Timestamp(last_date).normalize(), today_ts)
    if last.is_month_end:
        return last
    return (last - pd.offsets.MonthEnd(1)).normalize()


_TICKET_COLUMNS = {"share_eq1": "contacts_to_resolve", "flag": "reopened"}
_HOURS_COLUMNS = {"first_response": "first_response_at", "resolution": "resolved_at"}
_SECTIONS = {"retention": "customers", "churn": "customers", "customers": "customers", "tickets": "tickets",
             "people": "org", "org": "org", "teams": "org", "cascade": "org", "responses": "responses",
             "drivers": "responses", "survey": "responses"}


def kpi_needs(metric: str) -> tuple[str, tuple[str, ...]]:
    """The table and the columns a KPI of ``helpers.kpis.KPIS`` needs, e.g. ``("tickets",
    ("contacts_to_resolve",))`` for ``fcr``; ``KeyError`` for an unknown KPI."""
    from helpers.kpi_registry import KPIS  # noqa: PLC0415 - the registry alone
    k = KPIS[metric]
    if k.table == "responses":
        cols = (k.column,) if k.column else ()
    elif k.table == "tickets":
        cols = ((_TICKET_COLUMNS[k.kind],) if k.kind in _TICKET_COLUMNS else
                (_HOURS_COLUMNS[k.column],) if k.column in _HOURS_COLUMNS else ())
    else:
        cols = ("signup_date", "end_date") if k.kind in ("retention", "churn") else ((k.column,) if k.column else ())
    return k.table, cols


def missing_reason(what: str, dataset: "Dataset | None" = None, *, tables=None,
                   absent_columns: Mapping[str, list[str]] | None = None) -> str:
    """The one-line reason ``what`` (a table name, a KPI name or a section: ``retention``, ``tickets``,
    ``people``) cannot be shown on the data, or ``""`` when it can. Give a loaded ``dataset``, or ``tables``
    (the tables present) and ``absent_columns`` ({table: [columns read as empty]})."""
    if dataset is not None:
        tables, absent_columns = dataset.tables, dataset.absent_columns
    tables = TABLE_ORDER if tables is None else tuple(tables)
    absent_columns = absent_columns or {}
    if what in TABLES or what in _SECTIONS:
        table = what if what in TABLES else _SECTIONS[what]
        return "" if table in tables else TABLE_NEEDS[table]
    try:
        table, columns = kpi_needs(what)
    except KeyError:
        raise KeyError(f"{shorten(what)} is neither a table, a section ({', '.join(_SECTIONS)}) nor a KPI") from None
    from helpers.kpi_registry import KPIS  # noqa: PLC0415
    label = KPIS[what].label
    if table not in tables:
        what = {"customers": " (signup and churn dates)", "tickets": " (one row per ticket)"}.get(table, "")
        return f"{label} needs the {table} table{what}: add {table}.csv"
    gone = [c for c in columns if c in absent_columns.get(table, [])]
    if gone:
        return (f"{label} needs the {table} column{'s' if len(gone) > 1 else ''} {_shown(gone)}, which the data "
                f"does not have: add {'them' if len(gone) > 1 else 'it'} to {table}.csv or map one of your columns "
                "in column_mapping")
    return ""


def _table_name(table: str) -> str:
    if table not in TABLES:
        raise KeyError(f"unknown table {shorten(table)}; the tables are {', '.join(TABLE_ORDER)}")
    return table


def load_dataset(source: str | os.PathLike[str], column_mapping: Mapping[str, Mapping[str, str]] | None = None,
                 validate: bool = True, *, min_responses: int = 30, emit_warnings: bool = True,
                 as_of: object = None, today: object = None,
                 dimensions: Mapping[str, Sequence[str]] | None = None,
                 store: str | os.PathLike[str] | None = None) -> Dataset:
    """Load the contract tables from a folder (``<table>.parquet`` or ``<table>.csv``) or a DuckDB file
    (tables ``customers``, ``responses``, ``tickets``, ``org``; or a kit snapshot). Only ``responses`` is
    required: a table without a file is absent (``Dataset.tables``, ``Dataset.has``), never an empty table.

    ``column_mapping`` (``{table: {their column: contract column}}``, as in ``params/report.yaml``) renames
    the user's columns before validation; it is ignored for snapshots (already mapped). ``dimensions``
    (``{table: [column, ...]}``) are extra columns kept as text (filters, breakdowns) instead of being refused.
    With ``validate=True`` every check of ``data/README.md`` runs over every table, and *all* problems found
    are raised together as one :class:`helpers.errors.DataValidationError` (a ``DataContractError``; its
    ``.problems`` are :class:`helpers.errors.DataProblem` with rows, example keys, offending values and a
    suggested setting; :func:`data_quality_html` renders them). Soft problems go to ``Dataset.warnings`` (and
    ``warnings.warn`` with :class:`DataQualityWarning` unless ``emit_warnings=False``) and, as
    ``DataProblem``, to ``Dataset.problems``. ``validate=False`` only checks the columns: use it for snapshots
    written by :meth:`Dataset.snapshot`.

    ``as_of`` (a date; None or "" = today) cuts the data as it was on that day: rows dated later are left out
    and later events read as empty (see the module docstring); never later than ``today`` (default: the
    machine's date), since nothing after today can be real. ``as_of=LAST_COMPLETE_MONTH`` cuts at
    :func:`default_as_of` of the data up to today (what a report run uses by default; a partly observed last
    month is left out). The cuts are in ``Dataset.excluded`` and ``Dataset.warnings``; ``Dataset.as_of`` is
    the date cut at.

    ``store`` (a run store, see :meth:`Dataset.snapshot`): a folder source whose entry is there, intact and of
    the same key (:func:`store_key`: the files' bytes, the folder, the mapping, the dimensions, the kit's
    typing code) is read from the stored Parquet files instead of parsing its CSV files again; the validation
    they passed is not repeated (its soft problems are kept in the entry; the as-of cut and the warnings that
    depend on it are computed again). The result is the same dataset.
    """
    src = Path(source)
    try:
        today_day = _day(today if today is not None else _dt.date.today())
        as_of_day = None if as_of is None or (isinstance(as_of, str) and not as_of.strip()) else \
            as_of if as_of == LAST_COMPLETE_MONTH else _day(as_of)
    except (ValueError, TypeError):
        raise ParamsError("as_of", f"{shorten(as_of)} is not a date (YYYY-MM-DD)", field="as_of") from None
    if not src.exists():
        raise DataContractError("dataset", "data source not found", source=str(src),
                                expected="a folder of table files (.parquet/.csv) or a .duckdb file "
                                         "(for the demo data run `make data`)")
    mapping = _check_mapping(column_mapping)
    dims = {t: tuple(str(c) for c in cols) for t, cols in (dimensions or {}).items() if cols}
    unknown = [t for t in dims if t not in TABLES]
    if unknown:
        raise ParamsError("dimensions argument", f"unknown table {shorten(unknown[0])}; the tables are "
                                                 f"{', '.join(TABLE_ORDER)}", field="dimensions")
    con = _connect()
    try:
        return _load(con, src, mapping, validate, min_responses, emit_warnings, as_of_day, today_day, dims, store)
    except BaseException:
        con.close()
        raise


def _open_folder(con, paths: Mapping[str, Path], problems: list[DataProblem]) -> dict[str, tuple[str, str]]:
    """Each table file of a folder (:func:`_find_table_files`) as a raw relation: ``{table: (file shown in
    messages, relation)}``. Files are read through their absolute path (a snapshot by reference keeps the
    views, which must not depend on the reader's working folder); messages show the path as given."""
    relations: dict[str, tuple[str, str]] = {}
    for name, p in paths.items():
        rel = f"__raw_{name}"
        absolute = os.path.abspath(p)
        if p.name.endswith((".csv", ".csv.gz")):
            nulls = "[" + ", ".join(map(_lit, CSV_NULLS)) + "]"
            try:
                con.execute(f"CREATE TEMP TABLE {rel} AS SELECT * FROM read_csv({_lit(absolute)}, "
                            f"all_varchar = true, header = true, nullstr = {nulls})")
            except duckdb.Error as exc:
                problems.append(_csv_read_problem(name, p, exc))
                continue
        else:
            try:
                con.execute(f"CREATE VIEW {rel} AS SELECT * FROM read_parquet({_lit(absolute)})")
            except duckdb.Error as exc:
                problems.append(DataProblem(name, f"cannot be read as Parquet: {str(exc).splitlines()[0]}",
                                            source=str(p), expected="a Parquet file", rule="file"))
                continue
        relations[name] = (str(p), rel)
    return relations


def _open_duckdb(con, src: Path, problems: list[DataProblem]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Each table of a DuckDB file (or kit snapshot) as a relation, and the snapshot's metadata (or {})."""
    try:
        con.execute(f"ATTACH {_lit(str(src))} AS __src (READ_ONLY)")
    except duckdb.Error as exc:
        raise DataContractError("dataset", f"cannot open the DuckDB file: {str(exc).splitlines()[0]}",
                                source=str(src), expected="a DuckDB database file") from None
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = '__src' AND schema_name = 'main' "
        "UNION SELECT view_name FROM duckdb_views() WHERE database_name = '__src' "
        "AND schema_name = 'main'").fetchall()}
    meta = dict(con.execute(f"SELECT key, value FROM __src.main.{META_TABLE}").fetchall()) \
        if META_TABLE in present else {}
    relations: dict[str, tuple[str, str]] = {}
    for name in TABLE_ORDER:
        if name not in present:
            if name in REQUIRED_TABLES:
                problems.append(DataProblem(name, "table not found in the DuckDB file", source=str(src), rule="table",
                                            expected=f"a table {name} (the one required table; "
                                                     f"{', '.join(t for t in TABLE_ORDER if t != name)} are optional) "
                                                     f"(found: {', '.join(sorted(present)) or 'none'})"))
            continue
        relations[name] = (f"{src}:{name}", f"__src.main.{name}")
    return relations, meta


def _check_references(references: Mapping[str, Mapping[str, object]], src: Path, meta: Mapping[str, str]) -> None:
    """Refuse a snapshot by reference whose files changed since it was written (:func:`reference_changes`)."""
    changes = reference_changes(references)
    if changes:
        raise DataContractError(
            "dataset", "the data this snapshot refers to changed since it was validated"
                       f"{' on ' + meta['created_at'] if meta.get('created_at') else ''}: " + "; ".join(changes),
            source=str(src), expected=f"the files it validated (fingerprint {str(meta.get('fingerprint', ''))[:16]}); "
                                      "restore them, or start a new run on the current data")


def _load(con, src: Path, mapping, validate: bool, min_responses: int, emit_warnings: bool,
          as_of: _dt.date | None, today: _dt.date, dimensions: Mapping[str, tuple[str, ...]] | None = None,
          store: str | os.PathLike[str] | None = None) -> Dataset:
    dimensions = dict(dimensions or {})
    problems: list[DataProblem] = []
    meta: dict[str, str] = {}
    references: dict[str, dict[str, object]] = {}  # per table its file's immutable reference (Parquet, snapshots)
    if src.is_dir():
        paths, found_files = _find_table_files(src)
        problems += found_files
        fingerprint = _hash_files(paths, mapping if not dimensions else {"mapping": mapping, "dimensions": dimensions},
                                  references)
        if store is not None and not found_files:
            record = read_store_entry(store, store_key(fingerprint, src, mapping, dimensions))
            if record is not None and (record.get("validated") or not validate) \
                    and set(record.get("tables") or ()) == set(paths):
                return _load_stored(con, src, record, paths, fingerprint, validate, min_responses, emit_warnings,
                                    as_of, today, {"mapping": mapping, "dimensions": dimensions})
        relations = _open_folder(con, paths, problems)
    elif _is_duckdb_file(src):
        relations, meta = _open_duckdb(con, src, problems)
        fingerprint = meta.get("fingerprint") or _hash_files({"duckdb": src}, mapping)
        if meta.get("storage") == "reference":  # a snapshot by reference: its files must be the ones validated
            references = json.loads(meta.get("references") or "{}")
            _check_references(references, src, meta)
        if meta:  # a snapshot: already mapped; its kept dimensions are its own
            dimensions = {t: tuple(c) for t, c in json.loads(meta.get("dimensions", "{}")).items()}
    elif src.suffix.lower() in (".yaml", ".yml"):  # a source set: exports read through profiles (helpers.sources)
        from helpers.sources import read_source_set
        loaded = read_source_set(con, src, problems)
        relations, fingerprint, dimensions = loaded.tables, loaded.fingerprint, {**loaded.dimensions, **dimensions}
        if mapping:  # report.yaml's column_mapping renames the set's columns too: other data, other fingerprint
            fingerprint = hashlib.blake2b(json.dumps([fingerprint, mapping], sort_keys=True).encode(),
                                          digest_size=16).hexdigest()
    else:
        raise DataContractError("dataset", "is neither a folder nor a DuckDB file", source=str(src),
                                expected="a folder with responses (and optionally customers, tickets, org) as "
                                         ".parquet/.csv files, or a .duckdb file with those tables")
    # (export profiles register their prepared relations here, as {table: (file shown, relation)})
    files = {name: file for name, (file, _) in relations.items()}

    raw_tables: dict[str, _RawTable] = {}
    for name, (file, relation) in relations.items():
        rt, found = _raw_table(con, TABLES[name], file, relation, {} if meta else mapping.get(name, {}),
                               dimensions.get(name, ()))
        problems += found
        if rt is not None:
            raw_tables[name] = rt
    if validate:
        for rt in raw_tables.values():
            problems += _validate_table(con, rt)[1]
    for name, rt in raw_tables.items():
        kind = "TABLE" if rt.relation.startswith("__raw_") and files[name].endswith((".csv", ".csv.gz")) \
            else "VIEW"
        select = f"SELECT * FROM {rt.relation}" if meta else _typed_select(rt)
        con.execute(f"CREATE {kind} {_TYPED}{name} AS {select}")
        if kind == "TABLE":
            con.execute(f"DROP TABLE {rt.relation}")
    if validate:
        broken = {p.table for p in problems if p.severity == "error" and p.column == TABLES[p.table].key}
        problems += _check_foreign_keys(con, files, raw_tables, broken)
    if any(p.severity == "error" for p in problems):
        raise DataValidationError(problems)
    tables = tuple(raw_tables)
    absent = json.loads(meta["absent_columns"]) if meta.get("absent_columns") else \
        {name: [c.name for c in rt.absent] for name, rt in raw_tables.items() if rt.absent}

    excluded = [DateFinding.from_dict(d) for d in json.loads(meta.get("excluded", "[]"))]
    if as_of == LAST_COMPLETE_MONTH:
        last = _last_day_until(con, today, tables)
        as_of = None if last is None else default_as_of(last, today=today).date()
    # messages name the original files (a snapshot remembers them)
    cutoff, new_cuts = _cut_by_date(con, json.loads(meta["files"]) if meta.get("files") else files, as_of, today,
                                    _day(meta["cutoff"]) if meta.get("cutoff") else None, tables)
    excluded += new_cuts
    attributes = [c.name for c in raw_tables["responses"].columns if attribute_column(TABLES["responses"], c.name)]
    soft = [p for p in problems if p.severity != "error"]
    if validate:
        found = date_warnings(excluded) + [p.message() for p in soft] + _soft_warnings(
            con, min_responses, attributes, tables, absent)
    else:
        found = json.loads(meta.get("warnings", "[]")) + date_warnings(new_cuts)
        soft = [DataProblem.from_dict(d) for d in json.loads(meta.get("problems", "[]"))]
    if emit_warnings:
        for w in found:
            _warnings.warn(w, DataQualityWarning, stacklevel=3)
    kept_as_of = pd.Timestamp(as_of) if as_of is not None else (
        pd.Timestamp(meta["as_of"]) if meta.get("as_of") else None)
    dataset = Dataset(con, str(src), fingerprint, found, files, excluded=excluded, as_of=kept_as_of, tables=tables,
                      absent_columns=absent)
    dataset.problems = soft
    dataset.dimensions = {t: list(c) for t, c in dimensions.items() if t in tables}
    dataset.cutoff = pd.Timestamp(cutoff)
    dataset.storage = (meta.get("storage") or "copy") if meta else "files"
    dataset.file_references = {t: r for t, r in references.items() if t in tables}
    # where the data originally came from (a snapshot remembers its source; shown to readers, not the
    # temporary path of a run folder)
    dataset.origin = (meta or {}).get("source", str(src))
    dataset.validated = validate
    dataset.store_inputs = None if meta else {"mapping": mapping, "dimensions": dimensions}
    return dataset


def _load_stored(con, src: Path, record: Mapping[str, object], paths: Mapping[str, Path], fingerprint: str,
                 validate: bool, min_responses: int, emit_warnings: bool, as_of, today: _dt.date,
                 store_inputs: dict[str, object]) -> Dataset:
    """The dataset of a folder source read from its run store entry (:func:`read_store_entry`): the stored
    Parquet files are the typed tables (views, nothing parsed); the as-of cut and the warnings that depend on it
    are computed as :func:`_load` does, the soft problems found when the entry was validated are its record's."""
    tables = tuple(t for t in TABLE_ORDER if t in record["tables"])  # type: ignore[operator]
    refs: Mapping[str, Mapping[str, object]] = record["references"]  # type: ignore[assignment]
    for t in tables:
        con.execute(f"CREATE VIEW __raw_{t} AS SELECT * FROM read_parquet({_lit(str(refs[t]['path']))})")
        con.execute(f"CREATE VIEW {_TYPED}{t} AS SELECT * FROM __raw_{t}")
    files = {t: str(paths[t]) for t in tables}
    absent = {t: list(c) for t, c in dict(record.get("absent_columns") or {}).items() if t in tables}
    if as_of == LAST_COMPLETE_MONTH:
        last = _last_day_until(con, today, tables)
        as_of = None if last is None else default_as_of(last, today=today).date()
    cutoff, excluded = _cut_by_date(con, files, as_of, today, None, tables)
    if validate:
        soft = [DataProblem.from_dict(d) for d in record.get("problems") or []]  # type: ignore[union-attr]
        attributes = [c for c in _describe(con, f"{_TYPED}responses") if attribute_column(TABLES["responses"], c)]
        found = date_warnings(excluded) + [p.message() for p in soft] + _soft_warnings(
            con, min_responses, attributes, tables, absent)
    else:
        soft, found = [], date_warnings(excluded)
    if emit_warnings:
        for w in found:
            _warnings.warn(w, DataQualityWarning, stacklevel=4)
    dataset = Dataset(con, str(src), fingerprint, found, files, excluded=excluded,
                      as_of=pd.Timestamp(as_of) if as_of is not None else None, tables=tables, absent_columns=absent)
    dataset.problems = soft
    dataset.dimensions = {t: list(c) for t, c in dict(record.get("dimensions") or {}).items() if t in tables}
    dataset.cutoff = pd.Timestamp(cutoff)
    dataset.file_references = {t: dict(refs[t]) for t in tables}  # the stored files are what it reads
    dataset.validated = validate
    dataset.store_inputs = store_inputs
    dataset.store_key = str(record["key"])
    return dataset


# --- data quality summary --------------------------------------------------------------------------------

def data_quality_summary(dataset: Dataset) -> pd.DataFrame:
    """One row per table and column: rows, missing values and share, smallest and largest value (dates as
    ISO text), computed in DuckDB. For the data-health section of notebooks."""
    rows = []
    for t in dataset.tables:
        cols = dataset.columns(t)
        aggs = ", ".join(f"count({quote_ident(c)}), CAST(min({quote_ident(c)}) AS VARCHAR), "
                         f"CAST(max({quote_ident(c)}) AS VARCHAR)" for c in cols)
        res = dataset.con.execute(f"SELECT count(*), {aggs} FROM {t}").fetchone()
        n = res[0]
        spec = TABLES[t]
        for i, c in enumerate(cols):
            present, lo, hi = res[1 + 3 * i: 4 + 3 * i]
            col = column_spec(t, c)
            show_range = col.dtype not in ("string", "boolean")
            rows.append({"table": t, "column": c, "type": col.dtype, "rows": n, "missing": n - present,
                         "missing_share": (n - present) / n if n else float("nan"),
                         "min": lo if show_range else None, "max": hi if show_range else None})
    return pd.DataFrame(rows)


def data_quality_html(problems, *, title: str = "Data quality", source: str = "") -> str:
    """A self-contained HTML page listing every data problem (a :class:`helpers.errors.DataValidationError`,
    its ``.problems`` or any list of :class:`helpers.errors.DataProblem`): per table, one row per problem with
    the column, the rule, the number of rows, example row keys, the offending values, what was expected and the
    suggested setting. Every text is HTML-escaped (values come from the user's files)."""
    items = list(getattr(problems, "problems", problems) or [])
    errors = sum(p.severity == "error" for p in items)
    head = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html_escape(title)}</title><style>body{{font-family:sans-serif;margin:2em;max-width:80em}}"
            "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 6px;"
            "text-align:left;vertical-align:top}th{background:#f2f2f2}.error{color:#a00}.warning{color:#a60}"
            "code{white-space:pre-wrap}</style></head><body>")
    out = [head, f"<h1>{html_escape(title)}</h1>"]
    if source:
        out.append(f"<p>Data: <code>{html_escape(source)}</code></p>")
    if not items:
        out.append("<p>No problems found.</p></body></html>\n")
        return "".join(out)
    out.append(f"<p>{errors} problem{'s' if errors != 1 else ''} to fix before the data can be used"
               + (f", {len(items) - errors} warning{'s' if len(items) - errors != 1 else ''}" if len(items) > errors
                  else "") + ". Every problem is listed; fix them all, then run <code>--dry-run</code> again.</p>")
    for table in dict.fromkeys(p.table for p in items):
        rows = [p for p in items if p.table == table]
        files = sorted({p.source for p in rows if p.source})
        out.append(f"<h2>{html_escape(table)}</h2>" + (f"<p><code>{html_escape(', '.join(files))}</code></p>"
                                                        if files else ""))
        out.append("<table><thead><tr><th>severity</th><th>column</th><th>problem</th><th>rows</th>"
                   "<th>example rows</th><th>values found</th><th>expected</th><th>suggestion</th></tr></thead><tbody>")
        for p in rows:
            cells = [f'<span class="{html_escape(p.severity)}">{html_escape(p.severity)}</span>',
                     html_escape(p.column or ""), html_escape(p.problem),
                     "" if p.n_rows is None else f"{p.n_rows:,}",
                     html_escape(", ".join(shorten(e, 40) for e in p.examples[:5])),
                     html_escape(", ".join(shorten(v, 40) for v in p.values[:6])),
                     html_escape(p.expected or ""), html_escape(p.suggestion or "")]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
    out.append("</body></html>\n")
    return "".join(out)


# --- entry points driven by params/report.yaml -----------------------------------------------------------

def is_snapshot(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a DuckDB file written by :meth:`Dataset.snapshot` (a yes is remembered for that
    version of the file: a department report asks four times, each with a new connection)."""
    p = Path(path)
    if not p.is_file() or not _is_duckdb_file(p):
        return False
    st = p.stat()
    key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _SNAPSHOT_FILES:
        return True
    found = _probe_snapshot(p)
    if found:  # a no may be passing (a file still being written, or locked by its writer): asked again
        _SNAPSHOT_FILES.add(key)
    return found


_SNAPSHOT_FILES: set[tuple] = set()


def _probe_snapshot(p: Path) -> bool:
    con = _connect()
    try:
        con.execute(f"ATTACH {_lit(str(p))} AS __probe (READ_ONLY)")
        return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = '__probe' "
                                "AND table_name = ?", [META_TABLE]).fetchone()[0])
    except duckdb.Error:
        return False
    finally:
        con.close()


def snapshot_meta(path: str | os.PathLike[str]) -> dict[str, str]:
    """The record a kit snapshot keeps (fingerprint, source, as_of, cutoff, ``storage`` "reference" or "copy",
    ``references`` as JSON, ...) without loading its tables; ``{}`` when ``path`` is not a kit snapshot."""
    p = Path(path)
    if not p.is_file() or not _is_duckdb_file(p):
        return {}
    con = _connect()
    try:
        con.execute(f"ATTACH {_lit(str(p))} AS __probe (READ_ONLY)")
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = '__probe' "
                           "AND table_name = ?", [META_TABLE]).fetchone()[0]:
            return {}
        return dict(con.execute(f"SELECT key, value FROM __probe.main.{META_TABLE}").fetchall())
    except duckdb.Error:
        return {}
    finally:
        con.close()


def load_report_dataset(data_source: str = "", report_config: str | os.PathLike[str] = "params/report.yaml",
                        validate: bool | None = None, *, emit_warnings: bool = True,
                        as_of: object = None) -> Dataset:
    """The dataset a report notebook works on: ``data_source`` (a folder, a .duckdb file or a run's
    snapshot; ``""`` = what ``report_config`` says) loaded with that config's column mapping and
    ``min_responses``, cut at ``as_of`` (see :func:`load_dataset`). ``validate=None`` validates everything
    except kit snapshots (validated when written).
    """
    from helpers.config import load_report_config, resolve_data_source
    cfg = load_report_config(report_config)
    source = Path(data_source) if data_source else resolve_data_source(cfg)
    if validate is None:
        validate = not is_snapshot(source)
    return load_dataset(source, column_mapping=cfg.column_mapping or None, validate=validate,
                        min_responses=cfg.min_responses, emit_warnings=emit_warnings, as_of=as_of)


def load_retention_table(settings: object, dataset: Dataset | None = None, *,
                         config_path: str | os.PathLike[str] = "params/report.yaml") -> pd.DataFrame:
    """The customer table of the retention analysis, as configured in the ``retention`` section of
    ``params/report.yaml`` (``settings`` is a ``ReportConfig`` or its ``RetentionConfig``).

    Without ``retention.file`` this is ``dataset.customers``; with it, the file (CSV or Parquet; types
    detected by DuckDB, e.g. a telecom export's ``tenure`` as a number and ``Churn`` as Yes/No text). The
    columns the settings name must exist and the table must have rows, else :class:`DataContractError`
    names the file and column. Turning the columns into durations and churn flags is
    ``helpers.retention.survival_frame_from_settings``.
    """
    from helpers.config import ReportConfig, resolve_retention_file
    cfg = settings if isinstance(settings, ReportConfig) else ReportConfig(retention=settings)
    r = cfg.retention
    path = resolve_retention_file(cfg, config_path)
    if path is None:
        if dataset is None:
            raise ParamsError(config_path, "no retention.file is set, so the dataset's customers table is "
                                           "used: pass the loaded dataset", field="retention.file")
        frame, source = dataset.customers, dataset.files.get("customers", dataset.source)
    else:
        if not path.is_file():
            raise DataContractError("retention", "file not found", source=str(path),
                                    expected="a .csv or .parquet customer table (retention.file)")
        con = _connect()
        try:
            if path.suffix.lower() == ".parquet":
                relation = f"read_parquet({_lit(str(path))})"
            else:  # ids and the churn flag as written (Yes/No must not become booleans)
                text = [c for c in (r.id_column, r.event_column) if c]
                header = con.execute(f"DESCRIBE SELECT * FROM read_csv({_lit(str(path))})").fetchall()
                known = {h[0] for h in header}
                types = "{" + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in text if c in known) + "}"
                relation = f"read_csv({_lit(str(path))}" + (f", types = {types})" if types != "{}" else ")")
            frame = con.execute(f"SELECT * FROM {relation}").df()
        except duckdb.Error as exc:
            if path.suffix.lower() != ".parquet":
                raise _csv_read_error("retention", path, exc) from None
            raise DataContractError("retention", f"cannot be read: {str(exc).splitlines()[0]}",
                                    source=str(path), expected="a CSV file with a header row or a Parquet file") \
                from None
        finally:
            con.close()
        source = str(path)
    problems = retention_column_problems(r, list(frame.columns), source)
    if problems:
        raise DataValidationError(problems)
    if frame.empty:
        raise DataContractError("retention", "has no rows", source=source, expected="at least one customer")
    if path is not None:  # a raw export: a number column written as text (blanks " ") is named, not a category
        found = numeric_text_columns(frame, "retention", source, key=r.id_column)
        frame.attrs["data_problems"] = [p.to_dict() for p in found]
        for p in found:
            _warnings.warn(p.message(), DataQualityWarning, stacklevel=2)
    return frame


def retention_column_problems(retention: object, columns: Sequence[str], source: str) -> list[DataProblem]:
    """Every column the ``retention`` settings (a ``RetentionConfig``) name that is not among ``columns``, as
    problems naming the setting (``retention.event_column``) and the columns there are."""
    r = retention
    named = {"id_column": r.id_column, "start_column": r.start_column, "end_column": r.end_column,
             "duration_column": r.duration_column, "event_column": r.event_column,
             "segment_column": r.segment_column}
    return [DataProblem("retention", f"named by retention.{key} is not in the table", source=source, column=column,
                        rule="retention setting", expected=f"one of the columns {_shown(columns, quote=False)}")
            for key, column in named.items() if column and column not in columns]


def retention_file_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a retention file (CSV header or Parquet schema), without reading its rows."""
    path = Path(path)
    con = _connect()
    try:
        relation = f"read_parquet({_lit(str(path))})" if path.suffix.lower() == ".parquet" \
            else f"read_csv({_lit(str(path))})"
        return list(_describe(con, relation))
    except duckdb.Error as exc:
        if path.suffix.lower() != ".parquet":
            raise _csv_read_error("retention", path, exc) from None
        raise DataContractError("retention", f"cannot be read: {str(exc).splitlines()[0]}", source=str(path),
                                expected="a CSV file with a header row or a Parquet file") from None
    finally:
        con.close()
