"""Loading and validating the four tables of the data contract (``data/README.md``, ``helpers.schema``).

>>> ds = load_dataset("data/demo")                       # folder of <table>.parquet / <table>.csv files
>>> ds = load_dataset("exports/cx.duckdb")               # DuckDB file with tables customers, responses, ...
>>> ds.con.sql("SELECT department, avg(csat) FROM responses GROUP BY ALL").df()   # aggregate in DuckDB
>>> ds.responses                                          # pandas frame (cached), contract dtypes
>>> ds.snapshot("build/run/data.duckdb")                  # validated tables in one file ...
>>> load_dataset("build/run/data.duckdb", validate=False)  # ... read back fast, no re-validation

How it works: DuckDB (embedded, in memory) reads the files; the column mapping renames the user's columns
to the contract's names; validation runs as SQL aggregates over the raw columns (one scan per table for
types, missing values, ranges and order rules; one aggregate each for duplicate keys and foreign keys), so
a million customers and ten million tickets validate in seconds without building pandas frames. The typed
tables are then views (Parquet, DuckDB) or in-memory tables (CSV, parsed once) named ``customers``,
``responses``, ``tickets`` and ``org`` in ``Dataset.con``; pandas frames are built on first access.

Hard problems raise :class:`helpers.errors.DataContractError` naming the table, file, column, number of
rows, up to five example ids (the table's key; ``row N`` when the key itself is missing) and what was
expected. Soft problems (a department with fewer than ``min_responses`` responses, tickets without an
agent, mostly-missing ratings, departments unknown to ``org``) are collected in ``Dataset.warnings`` and
emitted as :class:`DataQualityWarning`.

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
import warnings as _warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from helpers.errors import DataContractError, ParamsError
from helpers.formatting import shorten
from helpers.schema import (DUCKDB_TYPES, PANDAS_DTYPES, TABLES, Column, Table, allowed_values_text,
                            attribute_column)

TABLE_ORDER = ("customers", "responses", "tickets", "org")
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
    # local files only: no extension auto-install/-load (e.g. httpfs), timestamps read in UTC
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    try:  # no progress bars in notebook outputs or logs
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses the setting; it then shows no bar anyway
    return con


# --- typed expressions over raw columns ------------------------------------------------------------------

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
            # via TIMESTAMPTZ first: a UTC offset (+02:00, Z) is applied, not dropped (the session is UTC)
            return (f"COALESCE(CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP), "
                    f"TRY_CAST({raw} AS TIMESTAMP))")
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
    shown: tuple[tuple[str, str], ...] = ()  # (label, SQL) of values to show for the first offending row


@dataclass
class _RawTable:
    spec: Table
    file: str             # shown in errors
    relation: str         # SQL relation with the raw rows
    raw_types: dict[str, str]  # contract column -> raw DuckDB type
    raw_names: dict[str, str]  # contract column -> raw column name
    columns: tuple[Column, ...]  # contract columns present (incl. extra attr_*), in contract order


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


def _find_table_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in TABLE_ORDER:
        candidates = [folder / f"{name}{s}" for s in FILE_SUFFIXES if (folder / f"{name}{s}").is_file()]
        if not candidates:
            raise DataContractError(name, "file not found", source=str(folder),
                                    expected=f"{name}.parquet or {name}.csv in the data folder "
                                             f"(found: {', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'})")
        if len(candidates) > 1:
            raise DataContractError(name, f"two files for one table ({', '.join(p.name for p in candidates)})",
                                    source=str(folder), expected="exactly one file per table; remove the other")
        found[name] = candidates[0]
    return found


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
               mapping: dict[str, str]) -> _RawTable:
    described = _describe(con, relation)
    for theirs in mapping:
        if theirs not in described:
            raise DataContractError(spec.name, "named in column_mapping (params/report.yaml) is not in the file",
                                    source=file, column=theirs,
                                    expected=f"one of the file's columns: {_shown(described, quote=False)}")
    renamed: dict[str, str] = {}  # contract name -> raw name
    for raw in described:
        ours = mapping.get(raw, raw)
        if ours in renamed:
            raise DataContractError(spec.name, f"appears twice after the column mapping "
                                    f"({shorten(renamed[ours])} and {shorten(raw)})", source=file, column=ours,
                                    expected="one column per contract column; drop or rename one")
        renamed[ours] = raw
    missing = [c for c in spec.column_names if c not in renamed]
    if missing:
        raise DataContractError(
            spec.name, "is missing" + (f" (all missing: {_shown(missing)})" if len(missing) > 1 else ""),
            source=file,
            column=missing[0],
            expected=f"the contract columns {', '.join(spec.column_names)} (see data/README.md); add the column "
                     "(it may be empty) or map one of your columns to it in params/report.yaml column_mapping")
    extra = [c for c in renamed if c not in spec.column_names and attribute_column(spec, c) is None]
    if extra:
        raise DataContractError(
            spec.name, "is not in the contract" + (f" (all extra: {_shown(extra)})" if len(extra) > 1 else ""),
            source=file,
            column=extra[0],
            expected=f"only the contract columns {', '.join(spec.column_names)}"
                     + (f" and {spec.extra_prefix}* ratings" if spec.extra_prefix else "")
                     + "; drop the column or map it to a contract column in params/report.yaml column_mapping")
    columns = list(spec.columns) + [attribute_column(spec, c) for c in renamed
                                    if c not in spec.column_names]
    return _RawTable(spec=spec, file=file, relation=relation,
                     raw_types={c.name: described[renamed[c.name]] for c in columns},
                     raw_names={c.name: renamed[c.name] for c in columns}, columns=tuple(columns))


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


def _csv_read_error(name: str, path: Path, exc: Exception) -> DataContractError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    encoding = _encoding_hint(path)
    if encoding:
        return DataContractError(name, f"cannot be read as CSV: {encoding}", source=str(path),
                                 expected="a UTF-8 text file with a header row")
    delim = csv_delimiter(path)
    sep = f"; its header line looks {_DELIMITERS[delim]}-delimited ({delim!r})" if delim != "," else ""
    return DataContractError(name, f"cannot be read as CSV: {first}{sep}", source=str(path),
                             expected="a UTF-8 CSV file with a header row, comma- (or semicolon-) delimited")


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
        if c.dtype != "string":
            checks.append(_Check(c.name, f"{raw} IS NOT NULL AND {typed[c.name]} IS NULL",
                                 "has values of the wrong type", f"{what} ({meaning})"))
        if not c.nullable:
            checks.append(_Check(c.name, f"{typed[c.name]} IS NULL" if c.dtype != "string"
                                 else f"({raw} IS NULL OR trim(CAST({raw} AS VARCHAR)) = '')",
                                 "is empty", f"a value in every row ({meaning})"))
        if c.min is not None or c.max is not None:
            conds = ([f"{typed[c.name]} < {c.min}"] if c.min is not None else []) + \
                    ([f"{typed[c.name]} > {c.max}"] if c.max is not None else [])
            checks.append(_Check(c.name, "(" + " OR ".join(conds) + ")",
                                 "has values out of range", f"{what} ({meaning})"))
        if c.allowed:
            checks.append(_Check(c.name, f"{typed[c.name]} NOT IN ({', '.join(map(_lit, c.allowed))})",
                                 "has values not allowed", f"one of {', '.join(c.allowed)}"))
    for earlier, later in rt.spec.ordered:
        checks.append(_Check(later, f"{typed[later]} < {typed[earlier]}", f"is before {earlier!r}",
                             f"{later} on or after {earlier}",
                             shown=((earlier, typed[earlier]), (later, typed[later]))))
    return checks


def _column(rt: _RawTable, name: str) -> Column:
    return next(c for c in rt.columns if c.name == name)


def _bad_values(con, rt: _RawTable, check: _Check, limit: int = 5) -> list[object]:
    """Up to ``limit`` distinct offending raw values of a check's column (shown, shortened, in the message)."""
    raw = quote_ident(rt.raw_names[check.column])
    return [r[0] for r in con.execute(f"SELECT DISTINCT {raw} FROM {rt.relation} WHERE {check.condition} "
                                      f"LIMIT {limit}").fetchall()]


def _key_examples(con, rt: _RawTable, condition: str, limit: int = 5) -> list[str]:
    key = quote_ident(rt.raw_names[rt.spec.key])
    rows = con.execute(
        f"SELECT CAST({key} AS VARCHAR), rn FROM (SELECT row_number() OVER () AS rn, * FROM {rt.relation}) "
        f"WHERE {condition} LIMIT {limit}").fetchall()
    return [k if k not in (None, "") else f"row {rn}" for k, rn in rows]


def _validate_table(con: duckdb.DuckDBPyConnection, rt: _RawTable) -> int:
    """Run the per-table checks in one scan; raise on the first failing one. Returns the row count."""
    checks = _checks(rt)
    aggs = ", ".join(f"count(*) FILTER (WHERE {ch.condition})" for ch in checks)
    counts = con.execute(f"SELECT count(*){', ' + aggs if aggs else ''} FROM {rt.relation}").fetchone()
    n = counts[0]
    if n == 0:
        raise DataContractError(rt.spec.name, "has no rows (an empty table)", source=rt.file,
                                expected=f"at least one {rt.spec.name} row")
    for ch, bad in zip(checks, counts[1:]):
        if bad:
            problem, expected = ch.problem, ch.expected
            if ch.shown:  # e.g. both dates of the first row whose end is before its start
                first = con.execute("SELECT " + ", ".join(f"CAST({sql} AS VARCHAR)" for _, sql in ch.shown)
                                    + f" FROM {rt.relation} WHERE {ch.condition} LIMIT 1").fetchone()
                problem += " (first: " + ", ".join(f"{label} {_plain(v, 40) if v else 'empty'}"
                                                  for (label, _), v in zip(ch.shown, first)) + ")"
            if ch.problem == "has values of the wrong type":
                values = _bad_values(con, rt, ch)
                problem += f" ({_shown(values, 5)})"
                expected += _decimal_comma_hint(rt, _column(rt, ch.column), values)
            raise DataContractError(rt.spec.name, problem, source=rt.file, column=ch.column, n_rows=bad,
                                    examples=_key_examples(con, rt, ch.condition), expected=expected)
    key = quote_ident(rt.raw_names[rt.spec.key])
    key_s = f"CAST({key} AS VARCHAR)"
    dup = con.execute(f"SELECT count(*), sum(n) FROM (SELECT {key_s} AS k, count(*) AS n FROM {rt.relation} "
                      f"GROUP BY k HAVING count(*) > 1)").fetchone()
    if dup[0]:
        examples = [r[0] for r in con.execute(
            f"SELECT {key_s} AS k FROM {rt.relation} GROUP BY k HAVING count(*) > 1 ORDER BY k LIMIT 5").fetchall()]
        raise DataContractError(rt.spec.name, f"has duplicate ids ({dup[0]} id{'s' if dup[0] > 1 else ''} used more than once)",
                                source=rt.file, column=rt.spec.key, n_rows=int(dup[1]), examples=examples,
                                expected=f"each {rt.spec.key} exactly once")
    return n


def _typed_select(rt: _RawTable) -> str:
    cols = ", ".join(f"{_typed_expr(c, quote_ident(rt.raw_names[c.name]), rt.raw_types[c.name])} "
                     f"AS {quote_ident(c.name)}" for c in rt.columns)
    return f"SELECT {cols} FROM {rt.relation}"


def _check_foreign_keys(con: duckdb.DuckDBPyConnection, files: dict[str, str]) -> None:
    for spec in (TABLES[t] for t in TABLE_ORDER):
        for c in spec.columns:
            if not c.references:
                continue
            parent, parent_col = c.references.split(".")
            cond = (f"c.{quote_ident(c.name)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {_TYPED}{parent} p "
                    f"WHERE p.{quote_ident(parent_col)} = c.{quote_ident(c.name)})")
            n = con.execute(f"SELECT count(*) FROM {_TYPED}{spec.name} c WHERE {cond}").fetchone()[0]
            if n:
                ex = con.execute(f"SELECT c.{quote_ident(spec.key)}, c.{quote_ident(c.name)} "
                                 f"FROM {_TYPED}{spec.name} c WHERE {cond} LIMIT 5").fetchall()
                raise DataContractError(
                    spec.name, f"refers to ids missing from {parent}.{parent_col} (e.g. {shorten(ex[0][1])})",
                    source=files[spec.name], column=c.name, n_rows=n, examples=[r[0] for r in ex],
                    expected=f"every {c.name} to match a {parent}.{parent_col} (in {files[parent]})")


def _soft_warnings(con: duckdb.DuckDBPyConnection, min_responses: int, attributes: list[str]) -> list[str]:
    out: list[str] = []
    small = con.execute("SELECT o.department, count(r.department) AS n FROM (SELECT DISTINCT department "
                        "FROM org UNION SELECT DISTINCT department FROM responses) o LEFT JOIN responses r "
                        "ON r.department = o.department GROUP BY o.department HAVING count(r.department) < ? "
                        "ORDER BY o.department", [min_responses]).fetchall()
    for dept, n in small:
        out.append(f"responses: department {shorten(dept)} has only {n} survey responses (fewer than "
                   f"min_responses={min_responses}); its KPIs and drivers are unreliable")
    n_tickets, no_agent = con.execute("SELECT count(*), count(*) FILTER (WHERE agent_id IS NULL) "
                                      "FROM tickets").fetchone()
    if no_agent:
        out.append(f"tickets: {no_agent} of {n_tickets} tickets ({no_agent / n_tickets:.1%}) have no agent_id; "
                   "they count for their department but for no representative")
    ratings = ["csat", "nps", "ces", *attributes]
    row = con.execute("SELECT count(*), " + ", ".join(f"count({quote_ident(r)})" for r in ratings)
                      + " FROM responses").fetchone()
    for r, present in zip(ratings, row[1:]):
        missing = 1 - present / row[0]
        if missing > MISSING_SHARE_WARNING:
            out.append(f"responses: {missing:.0%} of the responses have no {shorten(r)} answer; results on it rest "
                       f"on {present} answers")
    org_depts = {d for (d,) in con.execute("SELECT DISTINCT department FROM org").fetchall()}
    for table in ("responses", "tickets"):
        unknown = [d for (d,) in con.execute(f"SELECT DISTINCT department FROM {table} ORDER BY 1").fetchall()
                   if d not in org_depts]
        if unknown:
            out.append(f"{table}: department{'s' if len(unknown) > 1 else ''} "
                       f"{_shown(unknown)} not in org.department; they have no people "
                       "to assign objectives to")
    teams = con.execute("SELECT DISTINCT t.department, t.team FROM tickets t WHERE t.team IS NOT NULL AND NOT EXISTS "
                        "(SELECT 1 FROM org o WHERE o.department = t.department AND o.team = t.team) "
                        "ORDER BY 1, 2").fetchall()
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


def _last_day_until(con: duckdb.DuckDBPyConnection, today: _dt.date) -> _dt.date | None:
    """The last day with responses or tickets, not counting rows after ``today``."""
    lit = f"DATE '{today.isoformat()}'"
    last = con.execute(
        f"SELECT max(d) FROM (SELECT response_date AS d FROM {_TYPED}responses WHERE response_date <= {lit} "
        f"UNION ALL SELECT CAST(created_at AS DATE) FROM {_TYPED}tickets WHERE CAST(created_at AS DATE) <= {lit})"
    ).fetchone()[0]
    return None if last is None else _day(last)


def _cut_by_date(con: duckdb.DuckDBPyConnection, files: Mapping[str, str], as_of: _dt.date | None,
                 today: _dt.date, cut_before: _dt.date | None = None) -> tuple[_dt.date, list[DateFinding]]:
    """Create the views ``customers``, ``responses``, ``tickets``, ``org`` over the typed tables, without rows
    dated after the cut-off (``min(as_of, today)``) and with later events after it read as empty; return the
    cut-off and what was cut. ``cut_before``: the tables were already cut there (a snapshot), so a cut-off on or
    after it has nothing to find (no scan). Raises :class:`DataContractError` when a dated table is left
    without rows."""
    cutoff = today if as_of is None else min(as_of, today)
    if cut_before is not None and cutoff >= cut_before:
        for name in TABLE_ORDER:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {_TYPED}{name}")
        return cut_before, []
    lit_cut, lit_today = f"DATE '{cutoff.isoformat()}'", f"DATE '{today.isoformat()}'"
    findings: list[DateFinding] = []
    for name in TABLE_ORDER:
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

def _hash_files(paths: Mapping[str, Path], extra: object = None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, p in paths.items():
        h.update(f"{name}\0{p.suffix}\0".encode())
        with p.open("rb") as fh:
            while chunk := fh.read(FINGERPRINT_CHUNK):
                h.update(chunk)
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


# --- the dataset -----------------------------------------------------------------------------------------

class Dataset:
    """The four contract tables: in DuckDB (``.con``: tables/views customers, responses, tickets, org) and
    as pandas frames built on first access (``.customers`` ...; ids str, dates datetime64, numbers float64
    with NaN, ``reopened`` boolean). ``.warnings`` lists soft data problems, ``.fingerprint`` hashes the
    inputs (file bytes and column mapping), ``.source`` is where the data came from. ``.excluded`` lists the
    rows and values dated after the cut-off (:class:`DateFinding`; ``.excluded_table()`` as a frame), ``.as_of``
    the as-of date the data was cut at (None: today)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, fingerprint: str, warnings: list[str],
                 files: dict[str, str], excluded: list[DateFinding] | None = None,
                 as_of: pd.Timestamp | None = None):
        self.con = con
        self.source = source
        self.origin = source  # the original data location (a snapshot keeps its source's)
        self.fingerprint = fingerprint
        self.warnings = list(warnings)
        self.files = files
        self.excluded = list(excluded or [])
        self.as_of = as_of
        self.cutoff: pd.Timestamp | None = None  # the day the tables were cut at: min(as_of, today)

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
        counts = ", ".join(f"{t}={self.count(t):,}" for t in TABLE_ORDER)
        return f"<Dataset {self.source!r} {counts}; {len(self.warnings)} warnings>"

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {_table_name(table)}").fetchone()[0]

    def columns(self, table: str) -> list[str]:
        return list(_describe(self.con, _table_name(table)))

    def frame(self, table: str) -> pd.DataFrame:
        """A table as a pandas frame with the contract's dtypes (a fresh frame; prefer the cached attributes)."""
        spec = TABLES[_table_name(table)]
        dtypes, select = {}, []
        for name in self.columns(table):
            col = spec.column(name) if name in spec.column_names else attribute_column(spec, name)
            dtypes[name] = PANDAS_DTYPES[col.dtype]
            # numbers as DOUBLE and dates as TIMESTAMP already in DuckDB: Arrow then converts without copies
            cast = {"integer": "DOUBLE", "float": "DOUBLE", "date": "TIMESTAMP"}.get(col.dtype)
            select.append(f"CAST({quote_ident(name)} AS {cast}) AS {quote_ident(name)}" if cast
                          else quote_ident(name))
        relation = self.con.sql(f"SELECT {', '.join(select)} FROM {spec.name}")
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
        """Sorted department names found in org, responses and tickets."""
        rows = self.con.execute("SELECT department FROM org UNION SELECT department FROM responses "
                                "UNION SELECT department FROM tickets").fetchall()
        return sorted(r[0] for r in rows if r[0] is not None)

    @cached_property
    def attributes(self) -> list[str]:
        """The attribute-rating (``attr_*``) columns of responses, in table order."""
        prefix = TABLES["responses"].extra_prefix or "attr_"
        return [c for c in self.columns("responses") if c.startswith(prefix)]

    def date_range(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last day with responses or tickets (rows after the cut-off are not counted)."""
        lo, hi = self.con.execute(
            "SELECT min(d), max(d) FROM (SELECT response_date AS d FROM responses "
            "UNION ALL SELECT CAST(created_at AS DATE) FROM tickets)").fetchone()
        return pd.Timestamp(lo), pd.Timestamp(hi)

    def default_as_of(self, today: object = None) -> pd.Timestamp:
        """The as-of date a report uses when none is given: :func:`default_as_of` of the data's last date."""
        last = self.date_range()[1]
        if pd.isna(last):
            raise DataContractError("dataset", "has no responses or tickets", source=self.origin,
                                    expected="dated rows to take the as-of date from")
        return default_as_of(last, today=today)

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the loaded, validated, column-mapped tables (and fingerprint, warnings) into one DuckDB file,
        atomically (a temporary file renamed into place). ``load_dataset(path, validate=False)`` reads it
        back without re-validating; its fingerprint is this dataset's."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        for p in (tmp, Path(str(tmp) + ".wal")):
            p.unlink(missing_ok=True)
        alias = "__kit_snapshot"
        self.con.execute(f"ATTACH {_lit(str(tmp))} AS {alias}")
        try:
            for t in TABLE_ORDER:
                self.con.execute(f"CREATE TABLE {alias}.main.{t} AS SELECT * FROM {t}")
            self.con.execute(f"CREATE TABLE {alias}.main.{META_TABLE} (key VARCHAR, value VARCHAR)")
            meta = {"fingerprint": self.fingerprint, "source": self.origin,
                    "warnings": json.dumps(self.warnings), "files": json.dumps(self.files),
                    "excluded": json.dumps([f.to_dict() for f in self.excluded]),
                    "as_of": "" if self.as_of is None else self.as_of.date().isoformat(),
                    "cutoff": "" if self.cutoff is None else self.cutoff.date().isoformat(),
                    "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
            self.con.executemany(f"INSERT INTO {alias}.main.{META_TABLE} VALUES (?, ?)", list(meta.items()))
        finally:
            self.con.execute(f"DETACH {alias}")
        os.replace(tmp, path)
        return path

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


def _table_name(table: str) -> str:
    if table not in TABLES:
        raise KeyError(f"unknown table {shorten(table)}; the tables are {', '.join(TABLE_ORDER)}")
    return table


def load_dataset(source: str | os.PathLike[str], column_mapping: Mapping[str, Mapping[str, str]] | None = None,
                 validate: bool = True, *, min_responses: int = 30, emit_warnings: bool = True,
                 as_of: object = None, today: object = None) -> Dataset:
    """Load the four contract tables from a folder (``<table>.parquet`` or ``<table>.csv``) or a DuckDB
    file (tables ``customers``, ``responses``, ``tickets``, ``org``; or a kit snapshot).

    ``column_mapping`` (``{table: {their column: contract column}}``, as in ``params/report.yaml``) renames
    the user's columns before validation; it is ignored for snapshots (already mapped). With
    ``validate=True`` every check of ``data/README.md`` runs and the first failure raises
    :class:`DataContractError`; soft problems go to ``Dataset.warnings`` (and ``warnings.warn`` with
    :class:`DataQualityWarning` unless ``emit_warnings=False``). ``validate=False`` only checks the
    columns: use it for snapshots written by :meth:`Dataset.snapshot`.

    ``as_of`` (a date; None or "" = today) cuts the data as it was on that day: rows dated later are left out
    and later events read as empty (see the module docstring); never later than ``today`` (default: the
    machine's date), since nothing after today can be real. ``as_of=LAST_COMPLETE_MONTH`` cuts at
    :func:`default_as_of` of the data up to today (what a report run uses by default; a partly observed last
    month is left out). The cuts are in ``Dataset.excluded`` and ``Dataset.warnings``; ``Dataset.as_of`` is
    the date cut at.
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
    con = _connect()
    try:
        return _load(con, src, mapping, validate, min_responses, emit_warnings, as_of_day, today_day)
    except BaseException:
        con.close()
        raise


def _load(con, src: Path, mapping, validate: bool, min_responses: int, emit_warnings: bool,
          as_of: _dt.date | None, today: _dt.date) -> Dataset:
    raw_tables: dict[str, _RawTable] = {}
    files: dict[str, str] = {}
    if src.is_dir():
        paths = _find_table_files(src)
        for name, p in paths.items():
            files[name] = str(p)
            rel = f"__raw_{name}"
            if p.name.endswith((".csv", ".csv.gz")):
                nulls = "[" + ", ".join(map(_lit, CSV_NULLS)) + "]"
                try:
                    con.execute(f"CREATE TEMP TABLE {rel} AS SELECT * FROM read_csv({_lit(str(p))}, "
                                f"all_varchar = true, header = true, nullstr = {nulls})")
                except duckdb.Error as exc:
                    raise _csv_read_error(name, p, exc) from None
            else:
                try:
                    con.execute(f"CREATE VIEW {rel} AS SELECT * FROM read_parquet({_lit(str(p))})")
                except duckdb.Error as exc:
                    raise DataContractError(name, f"cannot be read as Parquet: {str(exc).splitlines()[0]}",
                                            source=str(p), expected="a Parquet file") from None
            raw_tables[name] = _raw_table(con, TABLES[name], str(p), rel, mapping.get(name, {}))
        fingerprint = _hash_files(paths, mapping)
        meta: dict[str, str] = {}
    elif _is_duckdb_file(src):
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
        for name in TABLE_ORDER:
            if name not in present:
                raise DataContractError(name, "table not found in the DuckDB file", source=str(src),
                                        expected=f"tables {', '.join(TABLE_ORDER)} (found: "
                                                 f"{', '.join(sorted(present)) or 'none'})")
            files[name] = f"{src}:{name}"
            raw_tables[name] = _raw_table(con, TABLES[name], files[name], f"__src.main.{name}",
                                          {} if meta else mapping.get(name, {}))
        fingerprint = meta.get("fingerprint") or _hash_files({"duckdb": src}, mapping)
    else:
        raise DataContractError("dataset", "is neither a folder nor a DuckDB file", source=str(src),
                                expected="a folder with customers, responses, tickets and org as .parquet/.csv "
                                         "files, or a .duckdb file with those tables")

    for name, rt in raw_tables.items():
        if validate:
            _validate_table(con, rt)
        kind = "TABLE" if rt.relation.startswith("__raw_") and files[name].endswith((".csv", ".csv.gz")) \
            else "VIEW"
        select = f"SELECT * FROM {rt.relation}" if meta else _typed_select(rt)
        con.execute(f"CREATE {kind} {_TYPED}{name} AS {select}")
        if kind == "TABLE":
            con.execute(f"DROP TABLE {rt.relation}")

    if validate:
        _check_foreign_keys(con, files)
    excluded = [DateFinding.from_dict(d) for d in json.loads(meta.get("excluded", "[]"))]
    if as_of == LAST_COMPLETE_MONTH:
        last = _last_day_until(con, today)
        as_of = None if last is None else default_as_of(last, today=today).date()
    # messages name the original files (a snapshot remembers them)
    cutoff, new_cuts = _cut_by_date(con, json.loads(meta["files"]) if meta.get("files") else files, as_of, today,
                                    _day(meta["cutoff"]) if meta.get("cutoff") else None)
    excluded += new_cuts
    attributes = [c.name for c in raw_tables["responses"].columns if attribute_column(TABLES["responses"], c.name)]
    if validate:
        found = date_warnings(excluded) + _soft_warnings(con, min_responses, attributes)
    else:
        found = json.loads(meta.get("warnings", "[]")) + date_warnings(new_cuts)
    if emit_warnings:
        for w in found:
            _warnings.warn(w, DataQualityWarning, stacklevel=3)
    kept_as_of = pd.Timestamp(as_of) if as_of is not None else (
        pd.Timestamp(meta["as_of"]) if meta.get("as_of") else None)
    dataset = Dataset(con, str(src), fingerprint, found, files, excluded=excluded, as_of=kept_as_of)
    dataset.cutoff = pd.Timestamp(cutoff)
    # where the data originally came from (a snapshot remembers its source; shown to readers, not the
    # temporary path of a run folder)
    dataset.origin = (meta or {}).get("source", str(src))
    return dataset


# --- data quality summary --------------------------------------------------------------------------------

def data_quality_summary(dataset: Dataset) -> pd.DataFrame:
    """One row per table and column: rows, missing values and share, smallest and largest value (dates as
    ISO text), computed in DuckDB. For the data-health section of notebooks."""
    rows = []
    for t in TABLE_ORDER:
        cols = dataset.columns(t)
        aggs = ", ".join(f"count({quote_ident(c)}), CAST(min({quote_ident(c)}) AS VARCHAR), "
                         f"CAST(max({quote_ident(c)}) AS VARCHAR)" for c in cols)
        res = dataset.con.execute(f"SELECT count(*), {aggs} FROM {t}").fetchone()
        n = res[0]
        spec = TABLES[t]
        for i, c in enumerate(cols):
            present, lo, hi = res[1 + 3 * i: 4 + 3 * i]
            col = spec.column(c) if c in spec.column_names else attribute_column(spec, c)
            show_range = col.dtype not in ("string", "boolean")
            rows.append({"table": t, "column": c, "type": col.dtype, "rows": n, "missing": n - present,
                         "missing_share": (n - present) / n if n else float("nan"),
                         "min": lo if show_range else None, "max": hi if show_range else None})
    return pd.DataFrame(rows)


# --- entry points driven by params/report.yaml -----------------------------------------------------------

def is_snapshot(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a DuckDB file written by :meth:`Dataset.snapshot`."""
    p = Path(path)
    if not p.is_file() or not _is_duckdb_file(p):
        return False
    con = _connect()
    try:
        con.execute(f"ATTACH {_lit(str(p))} AS __probe (READ_ONLY)")
        return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = '__probe' "
                                "AND table_name = ?", [META_TABLE]).fetchone()[0])
    except duckdb.Error:
        return False
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
    named = {"id_column": r.id_column, "start_column": r.start_column, "end_column": r.end_column,
             "duration_column": r.duration_column, "event_column": r.event_column,
             "segment_column": r.segment_column}
    for key, column in named.items():
        if column and column not in frame.columns:
            raise DataContractError("retention", f"named by retention.{key} is not in the table", source=source,
                                    column=column, expected=f"one of the columns {_shown(frame.columns, quote=False)}")
    if frame.empty:
        raise DataContractError("retention", "has no rows", source=source, expected="at least one customer")
    return frame
