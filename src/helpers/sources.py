"""Export profiles: read a company's own exports (survey tool, helpdesk, CRM) into the data contract.

A **profile** (``params/sources/<name>.yaml``, one per exported table) says how to read one export and turn
it into one contract table (``data/README.md``): where the file is (a path or a glob), how to read it
(encoding, delimiter, decimal and thousands marks, header rows, Excel sheet, date and timestamp formats, time
zone, missing-value codes), which export column feeds which contract column, and how values are recoded
(label maps, rating scales with a top box, reverse-scored items, N/A codes, counts to booleans, currency
strings, a timestamp derived from another plus minutes). Extra export columns are kept as text dimensions
under their own name (filters and breakdowns: ``kpi_series(con, "csat", by="plan")``) or ignored with a note.
A **source set** (``params/sources/<set>.yaml``: ``tables: {responses: <profile>, ...}``) names the profile
of each table; pointing ``data_source`` (``params/report.yaml``) or :func:`helpers.data.load_dataset` at it
loads the tables through their profiles and validates them like any other data::

    >>> from helpers.data import load_dataset
    >>> ds = load_dataset("params/sources/samples.yaml")     # the shipped samples of three export layouts
    >>> load_profile("params/sources/survey_tool.yaml").columns["csat"].scale
    (1.0, 10.0)

How it works (DuckDB throughout, no hand-written parser): each file is read by DuckDB's ``read_csv`` with
the declared options (UTF-8, Latin-1 and UTF-16 natively; any other Python codec through pandas), ``.xlsx``
by pandas with openpyxl, Parquet by ``read_parquet``; every value is read as text into one staging table
(only the columns the profile uses). One SQL ``SELECT`` then recodes all columns at once (vectorised), and
one aggregate over the staging table counts, per column, the values that could not be recoded (a label not
in the map, a number outside the declared scale, a date not in the declared formats ...). All problems of
all tables are reported together with the contract's own checks on the recoded tables, as one
:class:`helpers.errors.DataValidationError` (each :class:`helpers.errors.DataProblem` with the export column,
rule, rows, example ids, the offending values, and a suggested setting when one fits).

Rating scales (decision: **rescale to the contract's scale**, which every KPI, objective and driver analysis
uses today; carrying other scales into the contract would need every consumer to learn them). For a column
with ``scale: [lo, hi]`` (the export's scale; the contract's scale when not given):

1. ``reverse: true`` first turns the export's scale around, ``v -> lo + hi - v`` (an effort item where
   7 = easy becomes 7 = hard, as the contract's CES);
2. without ``top_box``: linear, ``c_lo + (v - lo) (c_hi - c_lo) / (hi - lo)``, rounded half up (1-10 onto
   1-5: 1,2 -> 1; 3,4 -> 2; 5,6 -> 3; 7,8 -> 4; 9,10 -> 5);
3. with ``top_box: [a, hi]`` (csat and ``attr_*``): the top box maps onto the contract's top box 4-5 and the
   rest onto 1-3, each piece linearly, rounded half up (1-10 with top box 9-10: 9 -> 4, 10 -> 5, 1..8 ->
   1..3). The CSAT KPI (share of 4-5) then equals the share in the declared top box exactly.

NPS is 0-10 by definition and is never rescaled. ``Promoter/Passive/Detractor`` labels cannot become the
0-10 answer: ``labels: {Promoter: 10, Passive: 8, Detractor: 0}`` (one value in each band) keeps the NPS KPI
(% promoters - % detractors) and its interval exact, but a mean of ``nps`` or a driver analysis with outcome
``nps`` is meaningless on such values; the load adds a note saying so. The same holds for two-label
satisfaction (``Good: 5, Bad: 1``: the CSAT share is exact, its mean is not).

Times. A timestamp with a UTC offset in any form (``2025-01-03 08:33:00 -0700``, ``...-0700``, ``-07:00``,
``T`` separator, ``Z``) is converted by its offset; one without is read in ``read.timezone`` (an IANA zone,
default UTC). All end in ``read.output_timezone`` (default UTC, the kit's convention), naive. A ``date``
column read from a timestamp takes the day in that zone.

Errors in a profile (unknown keys, wrong types, a rule that cannot apply to its column) raise
:class:`helpers.errors.ParamsError` naming the file and the field, all problems of the file at once.
"""
from __future__ import annotations

import glob as _glob
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helpers.errors import DataContractError, DataProblem, DataValidationError, KitError, ParamsError
from helpers.formatting import shorten
from helpers.params_yaml import load_params_yaml
from helpers.schema import ATTRIBUTE_PREFIX, TABLES, Column, Table

RATING_SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}  # attr_*: ATTRIBUTE_SCALE
ATTRIBUTE_SCALE = (1, 5)
CONTRACT_TOP_BOX = (4, 5)  # csat and attr_* (top-2-box on 1-5)
DEFAULT_MISSING = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
NATIVE_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin-1": "latin-1", "latin1": "latin-1",
                    "iso-8859-1": "latin-1", "iso8859-1": "latin-1", "utf-16": "utf-16", "utf16": "utf-16"}
_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_OFFSET = r"([+-]\d\d:?\d\d|Z|UTC)$"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def rating_scale(column: str) -> tuple[int, int] | None:
    """The contract's scale of a rating column (csat 1-5, nps 0-10, ces 1-7, ``attr_*`` 1-5), else None."""
    if column in RATING_SCALES:
        return RATING_SCALES[column]
    if column.startswith(ATTRIBUTE_PREFIX) and len(column) > len(ATTRIBUTE_PREFIX):
        return ATTRIBUTE_SCALE
    return None


# --- the profile (pydantic) ------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ReadOptions(_Strict):
    """How to read the file (``read:`` in a profile)."""

    format: Literal["csv", "xlsx", "parquet"] | None = None  # None: from the file's suffix
    encoding: str = "utf-8"
    delimiter: str | None = None  # None: detected by DuckDB's sniffer
    quote: str = '"'
    decimal: Literal[".", ","] = "."
    thousands: Literal[",", ".", " ", "'"] | None = None
    header_row: int = Field(1, ge=1)  # the line (Excel: row) holding the column names
    skip_after_header: int = Field(0, ge=0)  # rows after it that are not data (question text, import ids)
    sheet: str | int | None = None  # .xlsx: sheet name or 0-based index (None: the first)
    missing: list[str] = Field(default_factory=lambda: list(DEFAULT_MISSING))
    date_format: list[str] = Field(default_factory=list)  # strptime formats, e.g. "%m/%d/%Y"
    timestamp_format: list[str] = Field(default_factory=list)  # e.g. "%m/%d/%Y %I:%M %p"
    timezone: str = "UTC"  # zone of timestamps written without an offset
    output_timezone: str = "UTC"  # the one zone every timestamp ends in (naive)

    @field_validator("date_format", "timestamp_format", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("missing", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else v

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {shorten(v)}; e.g. utf-8, latin-1, cp1252, utf-16") from None
        return v.lower()

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError(f"must be one character (got {shorten(v)}); a tab is written \"\\t\"")
        return v

    @field_validator("timezone", "output_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {shorten(v)}; use an IANA name such as UTC, Europe/Berlin, "
                             "America/Denver") from None
        return v

    @model_validator(mode="after")
    def _marks(self) -> ReadOptions:
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"decimal and thousands marks are both {self.decimal!r}")
        if self.delimiter is not None and self.delimiter == self.decimal == ",":
            raise ValueError("decimal is ',' and the delimiter too: a decimal-comma file is usually "
                             "';'-delimited (set delimiter: ';')")
        return self


class Derived(_Strict):
    """A timestamp computed from another contract column plus an amount (``first_response_at`` from
    ``created_at`` plus the export's "first reply time in minutes")."""

    start: str  # a contract column of the same table (already recoded), e.g. created_at
    add: str  # an export column holding the amount
    unit: Literal["second", "minute", "hour", "day"] = "minute"


class ColumnRule(_Strict):
    """How one contract column is made (a value under ``columns:``; a plain string is ``source:``)."""

    source: str | None = Field(None, alias="from")  # the export column
    value: Any = None  # a constant for every row (e.g. the department of a one-team helpdesk)
    derive: Derived | None = None
    labels: dict[str, Any] | None = None  # export text -> value (case and surrounding spaces ignored)
    scale: tuple[float, float] | None = None  # the export's rating scale
    top_box: tuple[float, float] | int | None = None  # [a, hi] on the export's scale, or N = top-N box
    reverse: bool = False  # the export's scale runs the other way (7 = easy for an effort item)
    na_codes: list[Any] = Field(default_factory=list)  # answers meaning "not applicable" -> missing
    count_to_boolean: bool = False  # a count (reopens) -> true when > 0
    currency: str | None = None  # "USD": values like "USD 1,234.50", "$1,234.50"; other codes are errors
    format: list[str] = Field(default_factory=list)  # date/timestamp formats for this column
    timezone: str | None = None  # zone of this column's timestamps without offset (default read.timezone)
    decimal: Literal[".", ","] | None = None  # overrides read.decimal for this column
    thousands: Literal[",", ".", " ", "'"] | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys(cls, v: Any) -> Any:
        if isinstance(v, dict):  # YAML reads Yes/No/true as booleans and 1 as a number: labels are text
            return {("yes" if k else "no") if isinstance(k, bool) else str(k): val for k, val in v.items()}
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else ReadOptions._zone(v)

    @field_validator("currency")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError(f"a three-letter currency code such as USD or EUR (got {shorten(v)})")
        return v

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnRule:
        given = [k for k, v in (("from", self.source), ("value", self.value), ("derive", self.derive))
                 if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of from (an export column), value (a constant) or derive"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.scale is not None and not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale [{self.scale[0]:g}, {self.scale[1]:g}] must be [lowest, highest]")
        return self


class Profile(_Strict):
    """One export profile (``params/sources/<name>.yaml``)."""

    table: str
    description: str = ""
    file: str  # a path or a glob (*, ?, [..]); relative to the repository root, absolute as written
    read: ReadOptions = Field(default_factory=ReadOptions)
    columns: dict[str, ColumnRule] = Field(default_factory=dict)  # contract column -> rule
    dimensions: dict[str, str] = Field(default_factory=dict)  # name in the table -> export column (kept as text)
    ignore: list[str] = Field(default_factory=list)  # export columns dropped without a note
    path: str = Field("", exclude=True)  # where the profile was read from (messages)

    @field_validator("columns", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"from": r} if isinstance(r, str) else r for k, r in v.items()}
        return v

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if v not in TABLES:
            raise ValueError(f"unknown table {shorten(v)}; the tables are {', '.join(TABLES)}")
        return v

    @field_validator("dimensions", mode="before")
    @classmethod
    def _dims(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):  # [Plan, Region]: keep the export's names
            v = {str(c): str(c) for c in v}
        return v

    @model_validator(mode="after")
    def _rules_fit_columns(self) -> Profile:
        spec = TABLES[self.table]
        problems: list[str] = []
        for name, rule in self.columns.items():
            col = contract_column(spec, name)
            where = f"columns.{name}"
            if col is None:
                problems.append(f"{where}: {shorten(name)} is not a column of the {self.table} contract; the "
                                f"columns are {', '.join(spec.column_names)}"
                                + (f" (and {spec.extra_prefix}* ratings)" if spec.extra_prefix else "")
                                + f"; keep other columns under dimensions:")
                continue
            problems += [f"{where}: {p}" for p in _rule_problems(name, col, rule, self.columns)]
        for dim in self.dimensions:
            if contract_column(spec, dim) is not None:
                problems.append(f"dimensions.{dim}: {dim} is a contract column of {self.table}; map it under "
                                "columns: instead (or give the dimension another name)")
            elif not dim.strip():
                problems.append("dimensions: a dimension needs a name")
        for col in spec.columns:
            if not col.nullable and col.name not in self.columns:
                problems.append(f"columns.{col.name}: the contract column {col.name} is required "
                                f"({col.description.rstrip('.')}): map an export column to it (from:) or give "
                                "a constant (value:)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def contract_column(spec: Table, name: str) -> Column | None:
    """The contract column ``name`` of ``spec`` (an extra ``attr_*`` rating of responses included)."""
    if name in spec.column_names:
        return spec.column(name)
    if spec.extra_prefix and name.startswith(spec.extra_prefix) and len(name) > len(spec.extra_prefix):
        return Column(name, "integer", f"Attribute rating '{name[len(spec.extra_prefix):]}'.", min=1, max=5)
    return None


def _rule_problems(name: str, col: Column, rule: ColumnRule, rules: dict[str, ColumnRule]) -> list[str]:
    out: list[str] = []
    rated = rating_scale(name)
    numeric = col.dtype in ("integer", "float")
    if (rule.scale is not None or rule.reverse or rule.top_box is not None) and rated is None:
        out.append(f"scale, top_box and reverse apply to rating columns (csat, nps, ces, attr_*), not {name}")
    if name == "nps" and rule.scale is not None and tuple(rule.scale) != (0, 10):
        out.append("NPS is 0-10 by definition (9-10 promoters, 0-6 detractors) and is never rescaled; a "
                   "question on another scale is not an NPS: map it to csat or an attr_* rating instead")
    if rule.top_box is not None:
        if name not in ("csat",) and not name.startswith(ATTRIBUTE_PREFIX):
            out.append(f"top_box applies to csat and attr_* ratings (the kit's top box is 4-5 on 1-5); {name} "
                       "has none")
        else:
            lo, hi = rule.scale or rated
            a, b = _top_box(rule.top_box, hi)
            if b != hi or not lo < a <= hi:
                out.append(f"top_box [{a:g}, {b:g}] must be the top of the scale [{lo:g}, {hi:g}], e.g. "
                           f"[{hi - 1:g}, {hi:g}] (or top_box: 2)")
    if rule.count_to_boolean and col.dtype != "boolean":
        out.append(f"count_to_boolean makes true/false values, but {name} is {col.dtype}")
    if rule.currency and col.dtype != "float":
        out.append(f"currency applies to number columns such as monthly_revenue, not {name} ({col.dtype})")
    if rule.format and col.dtype not in ("date", "timestamp"):
        out.append(f"format applies to date and timestamp columns, not {name} ({col.dtype})")
    if rule.timezone and col.dtype not in ("date", "timestamp"):
        out.append(f"timezone applies to date and timestamp columns, not {name} ({col.dtype})")
    if rule.derive is not None:
        if col.dtype != "timestamp":
            out.append(f"derive makes a timestamp, but {name} is {col.dtype}")
        start = rules.get(rule.derive.start)
        if start is None or start.derive is not None:
            out.append(f"derive.start must name another contract column of this profile read from the export "
                       f"(e.g. created_at), got {shorten(rule.derive.start)}")
    if rule.labels is not None:
        for label, value in rule.labels.items():
            if value is None:
                continue
            if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                out.append(f"labels.{label}: {name} is a number column, so labels map to numbers (got "
                           f"{shorten(value)})")
            elif col.dtype == "boolean" and not isinstance(value, bool):
                out.append(f"labels.{label}: {name} is true/false, so labels map to true or false")
            elif col.dtype in ("string", "date", "timestamp") and isinstance(value, (dict, list)):
                out.append(f"labels.{label}: expected a single value")
        if name == "nps":
            vals = {v for v in rule.labels.values() if v is not None}
            if any(not (0 <= v <= 10) for v in vals if isinstance(v, (int, float))):
                out.append("labels of nps map to 0-10 (e.g. Promoter: 10, Passive: 8, Detractor: 0)")
    if rule.value is not None and rule.labels is not None:
        out.append("value (a constant) and labels cannot be combined")
    return out


def _top_box(top_box: tuple[float, float] | int, hi: float) -> tuple[float, float]:
    if isinstance(top_box, int) and not isinstance(top_box, bool):
        return float(hi - top_box + 1), float(hi)
    return float(top_box[0]), float(top_box[1])


class SourceSet(_Strict):
    """A source set (``params/sources/<set>.yaml``): the profile of each table."""

    description: str = ""
    tables: dict[str, str]  # table -> profile path
    path: str = Field("", exclude=True)

    @field_validator("tables")
    @classmethod
    def _known(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [t for t in v if t not in TABLES]
        if bad:
            raise ValueError(f"unknown table {shorten(bad[0])}; the tables are {', '.join(TABLES)}")
        if not v:
            raise ValueError("lists no table; give at least responses: <profile>")
        return v


def _pydantic_problems(exc: ValidationError) -> tuple[str, str]:
    """(field of the first problem, all problems as one text) of a pydantic error."""
    texts, first = [], ""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        loc = re.sub(r"\.(str|int|tuple\[float, float\]|ColumnRule)\b", "", loc)
        first = first or loc
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo? see params/README.md, Export profiles)"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("missing", "value_error") and not isinstance(err.get("input"), dict):
                msg += f" (got {shorten(err.get('input'))})"
        texts.append(f"{loc}: {msg}" if loc and not msg.startswith("columns.") else msg)
    return first, "; ".join(dict.fromkeys(texts))


def _parse(model: type[BaseModel], path: Path, raw: object, what: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(_display(path), f"expected a mapping ({what}), got {type(raw).__name__}")
    try:
        return model.model_validate({**raw, "path": _display(path)})
    except ValidationError as exc:
        field_name, text = _pydantic_problems(exc)
        raise ParamsError(_display(path), text) from None


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and validate one export profile; :class:`ParamsError` names the file and field(s)."""
    p = _params_path(path)
    return _parse(Profile, p, load_params_yaml(p), "an export profile: table, file, read, columns ...")


def load_source_set(path: str | os.PathLike[str]) -> tuple[SourceSet, dict[str, Profile]]:
    """Read a source set and the profile of each of its tables (each must be for the table it is listed
    under)."""
    p = _params_path(path)
    raw = load_params_yaml(p)
    if isinstance(raw, dict) and "table" in raw and "tables" not in raw:
        raise ParamsError(p, "this is one export profile; point data_source at a source set that lists the "
                             "profile of each table (tables: {responses: <this file>, ...})")
    sset = _parse(SourceSet, p, raw, "a source set: tables: {table: profile path}")
    profiles: dict[str, Profile] = {}
    for table, ref in sset.tables.items():
        prof = load_profile(_resolve(ref, p, f"tables.{table}"))
        if prof.table != table:
            raise ParamsError(p, f"the profile {shorten(ref)} is for table {prof.table}, not {table}",
                              field=f"tables.{table}")
        profiles[table] = prof
    return sset, profiles


def _display(path: object) -> str:
    """A path for messages: relative to the repository root when inside it, else as given."""
    from helpers.config import repo_root
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(repo_root()))
    except (ValueError, OSError):
        return str(path)


def _params_path(path: str | os.PathLike[str]) -> Path:
    from helpers.config import repo_root
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    if not p.is_file():
        raise ParamsError(path, "file not found (an export profile or source set; see params/sources/)")
    return p


def _resolve(value: str, params_file: object, field_name: str) -> Path:
    """A path from a profile: relative to the repository root (inside it), absolute as written."""
    from helpers.config import _safe_path
    return _safe_path(value, path=params_file, field=field_name)


# --- reading the files -----------------------------------------------------------------------------------

def _files(profile: Profile) -> list[Path]:
    pattern = _resolve(profile.file, profile.path, "file")
    text = str(pattern)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(f) for f in _glob.glob(text, recursive=True) if Path(f).is_file())
    else:
        found = [pattern] if pattern.is_file() else []
    if not found:
        parent = pattern.parent
        near = sorted(p.name for p in parent.iterdir())[:12] if parent.is_dir() else []
        raise DataContractError(profile.table, "export file not found", source=str(pattern),
                                expected=f"a file matching file: in {profile.path}"
                                         + (f" (the folder has: {', '.join(near)})" if near else
                                            " (the folder does not exist)"))
    return found


def _format(profile: Profile, path: Path) -> str:
    if profile.read.format:
        return profile.read.format
    name = path.name.lower()
    if name.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    if name.endswith(".parquet"):
        return "parquet"
    return "csv"


def _csv_relation(profile: Profile, path: Path) -> str:
    r = profile.read
    opts = [f"header = true", "all_varchar = true", f"quote = {_lit(r.quote)}", f"escape = {_lit(r.quote)}",
            "nullstr = [" + ", ".join(_lit(m) for m in r.missing) + "]" if r.missing else "nullstr = []",
            f"encoding = {_lit(NATIVE_ENCODINGS[r.encoding])}"]
    if r.delimiter:
        opts.append(f"delim = {_lit(r.delimiter)}")
    if r.header_row > 1:
        opts.append(f"skip = {r.header_row - 1}")
    rel = f"read_csv({_lit(str(path))}, {', '.join(opts)})"
    return rel


def _read_error(profile: Profile, path: Path, exc: Exception) -> DataContractError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    hint = ""
    if profile.read.encoding in ("utf-8", "utf8") and _format(profile, path) == "csv":
        from helpers.data import first_non_utf8
        where = first_non_utf8(path)
        if where is not None:
            offset, line, bad = where
            try:
                latin = f" (in Latin-1/cp1252 the byte is {bad[:1].decode('cp1252')!r})"
            except UnicodeDecodeError:
                latin = ""
            return DataContractError(
                profile.table, f"is not UTF-8: byte 0x{bad[0]:02X} at byte offset {offset:,} (line {line}){latin}",
                source=_display(path), expected=f"the encoding declared in {profile.path}: set read: {{encoding: "
                                                f"latin-1}} (or cp1252 for a Windows export)")
    if "unicode" in first.lower() or "utf" in first.lower() or "encoding" in first.lower():
        hint = " (the file is not in the declared encoding: try read.encoding: latin-1 or cp1252)"
    return DataContractError(profile.table, f"cannot be read: {shorten(first, 200)}{hint}", source=str(path),
                             expected=f"a file matching the read options of {profile.path}")


def _stage_file(con: duckdb.DuckDBPyConnection, profile: Profile, path: Path, name: str) -> list[str]:
    """Read one file as text into the view/table ``name``; return its column names."""
    r = profile.read
    fmt = _format(profile, path)
    try:
        if fmt == "csv" and r.encoding in NATIVE_ENCODINGS:
            rel = _csv_relation(profile, path)
            select = f"SELECT * FROM {rel}" + (f" OFFSET {r.skip_after_header}" if r.skip_after_header else "")
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {select}")
        elif fmt == "parquet":
            cols = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(str(path))})").fetchall()]
            casts = ", ".join(f"CAST({_q(c)} AS VARCHAR) AS {_q(c)}" for c in cols)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {casts} FROM read_parquet({_lit(str(path))})")
        else:
            frame = _pandas_frame(profile, path, fmt)
            con.register(f"{name}_frame", frame)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
            con.unregister(f"{name}_frame")
        return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {name}").fetchall()]
    except (duckdb.Error, OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, KitError):
            raise
        raise _read_error(profile, path, exc) from None


def _pandas_frame(profile: Profile, path: Path, fmt: str):
    """An .xlsx sheet (openpyxl) or a CSV in a codec DuckDB does not read, every value as text."""
    import pandas as pd
    r = profile.read
    if fmt == "xlsx":
        try:
            import openpyxl  # noqa: F401
        except ImportError:  # pragma: no cover - a dependency of the kit
            raise DataContractError(profile.table, "needs openpyxl to read .xlsx", source=str(path),
                                    expected="the kit's dependencies installed (make install)") from None
        sheet = 0 if r.sheet is None else r.sheet
        try:
            frame = pd.read_excel(path, sheet_name=sheet, header=r.header_row - 1, dtype=object,
                                  engine="openpyxl", na_values=r.missing, keep_default_na=False)
        except ValueError as exc:
            if "Worksheet" in str(exc) or "sheet" in str(exc).lower():
                import openpyxl
                names = openpyxl.load_workbook(path, read_only=True).sheetnames
                raise DataContractError(profile.table, f"has no sheet {shorten(sheet)}", source=str(path),
                                        expected=f"read.sheet one of {', '.join(map(shorten, names))}") from None
            raise
    else:
        frame = pd.read_csv(path, sep=r.delimiter or None, engine="python", encoding=r.encoding, dtype=str,
                            skiprows=r.header_row - 1, quotechar=r.quote, na_values=r.missing,
                            keep_default_na=False)
    frame = frame.iloc[r.skip_after_header:]
    frame.columns = [str(c) for c in frame.columns]
    return frame.apply(_as_text).reset_index(drop=True)


def _as_text(series):
    """Cell values as text: whole floats without '.0' (ids typed as numbers in Excel), datetimes in ISO."""
    import datetime as dt

    import pandas as pd

    def one(v):
        if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
            return None
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, (dt.datetime, pd.Timestamp)):
            return v.isoformat(sep=" ")
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, dt.time):
            return v.isoformat()
        return str(v)
    return series.map(one).astype(object)


# --- recoding (SQL) --------------------------------------------------------------------------------------

@dataclass
class _Check:
    column: str  # the export column (or contract column for a constant)
    target: str  # contract column
    condition: str  # SQL over the staging table, true for offending rows
    problem: str
    expected: str
    value_sql: str  # the offending value shown
    hint: Any = None  # callable(values) -> a suggested setting ("; set ...") or ""
    rule: str = "recode"


def _text(raw: str) -> str:
    return f"trim({raw})"


def _number_sql(t: str, decimal: str, thousands: str | None, currency: str | None) -> str:
    """SQL turning text ``t`` into a DOUBLE (NULL when it is not a number in the declared form)."""
    s = t
    if currency:
        sym = _CURRENCY_SYMBOLS.get(currency, "")
        s = f"regexp_replace({s}, {_lit('(?i)' + currency + '|' + re.escape(sym) if sym else '(?i)' + currency)}, '', 'g')"
        s = f"regexp_replace({s}, '^\\s*\\((.*)\\)\\s*$', '-\\1')"  # (1,234.50): accounting negative
        thousands = thousands or ("," if decimal == "." else ".")
    if thousands:
        s = f"replace({s}, {_lit(thousands)}, '')"
    if decimal == ",":
        s = f"replace({s}, ',', '.')"
    if currency or thousands:
        s = f"replace({s}, ' ', '')"
    return f"nullif(TRY_CAST({s} AS DOUBLE), 'NaN'::DOUBLE)"  # 'nan' is missing (inf is out of any range)


_TIME_THEN_OFFSET = r"\d:\d\d(:\d\d(\.\d+)?)?\s*([AaPp]\.?[Mm]\.?)?\s*([+-]\d\d(:?\d\d)?|Z|UTC)$"
_TIME_CODES = ("%H", "%I", "%M", "%S", "%p", "%z", "%T", "%R", "%c")


def _timestamp_sql(t: str, formats: Sequence[str], zone: str, out_zone: str) -> str:
    """SQL turning text ``t`` into a naive TIMESTAMP in ``out_zone``: an offset in the text is applied, a text
    without one is read in ``zone`` (see the module docstring).

    Offsets go through DuckDB's TIMESTAMPTZ parser, after removing a space before the offset (the parser refuses
    ``08:33:00 -0700``; its TIMESTAMP parser would silently drop the offset). Declared formats (``try_strptime``)
    handle the rest, their offset applied by arithmetic. Only when a zone other than UTC is declared must a text
    with an offset be told from one without (a regular expression, evaluated once per value)."""
    norm = f"replace(replace({t}, ' -', '-'), ' +', '+')"
    aware = f"CAST(TRY_CAST({norm} AS TIMESTAMPTZ) AS TIMESTAMP)"
    if formats:
        fmts = "[" + ", ".join(_lit(f) for f in formats) + "]"
        off = f"regexp_extract({t}, '([+-]\\d\\d:?(\\d\\d)?|Z|UTC)$', 1)"
        minutes = (f"(CASE WHEN {off} IN ('Z', 'UTC') THEN 0 ELSE "
                   f"(CASE WHEN left({off}, 1) = '-' THEN -1 ELSE 1 END) * (CAST(substr({off}, 2, 2) AS INTEGER) * 60 "
                   f"+ COALESCE(TRY_CAST(right(replace({off}, ':', ''), 2) AS INTEGER) * (length(replace({off}, ':', "
                   f"'')) > 3)::INTEGER, 0)) END)")
        base = f"regexp_replace({t}, '\\s*([+-]\\d\\d:?(\\d\\d)?|Z|UTC)$', '')"
        aware = f"COALESCE({aware}, try_strptime({base}, {fmts}) - to_minutes(CAST({minutes} AS BIGINT)))"
        naive = f"COALESCE(try_strptime({t}, {fmts}), TRY_CAST({t} AS TIMESTAMP))"
    else:
        naive = f"TRY_CAST({t} AS TIMESTAMP)"
    if zone == "UTC" and not formats:
        utc = aware  # without an offset TIMESTAMPTZ reads the text in the session's zone, UTC
    else:
        local = naive if zone == "UTC" else f"CAST(timezone({_lit(zone)}, {naive}) AS TIMESTAMP)"
        utc = f"(CASE WHEN regexp_matches({t}, {_lit(_TIME_THEN_OFFSET)}) THEN {aware} ELSE {local} END)"
    if out_zone == "UTC":
        return utc
    return f"timezone({_lit(out_zone)}, CAST({utc} AS TIMESTAMPTZ))"


def _date_sql(t: str, formats: Sequence[str], zone: str, out_zone: str) -> str:
    """A DATE from text: a declared date format, an ISO date, or the day (in ``out_zone``) of a timestamp (in a
    declared timestamp format or ISO, converted like a timestamp column)."""
    dates = [f for f in formats if not any(code in f for code in _TIME_CODES)]
    stamps = [f for f in formats if f not in dates]
    first = [f"CAST(try_strptime({t}, [{', '.join(_lit(f) for f in dates)}]) AS DATE)"] if dates else []
    other = (f"(CASE WHEN length({t}) <= 10 THEN TRY_CAST({t} AS DATE) "
             f"ELSE CAST({_timestamp_sql(t, stamps, zone, out_zone)} AS DATE) END)")
    return f"COALESCE({', '.join(first + [other])})" if first else other


@dataclass
class _Plan:
    """How one profile turns the export into its table, in two SQL steps over DuckDB:

    1. ``base``: every mapped column recoded from the staged export columns (named ``__s0``, ``__s1`` ... in
       ``refs``), plus helper columns (the amount of a derived timestamp), plus the raw columns, in one table;
    2. ``final``: the contract columns in order (a derived timestamp from its start column and amount) and the
       dimensions. ``checks`` run between the two, on the first table: each counts the rows whose recoded value
       is empty while the export had one (so the costly tests run on those rows only)."""

    profile: Profile
    file_label: str
    refs: dict[str, str] = field(default_factory=dict)  # export column -> staged name
    base: dict[str, str] = field(default_factory=dict)  # column of step 1 -> SQL over the staged columns
    final: dict[str, str] = field(default_factory=dict)  # output column -> SQL over step 1
    checks: list[_Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)  # export columns read
    recoded: list[tuple[str, str]] = field(default_factory=list)  # (rating column, how its scale was recoded)

    def recoding_note(self) -> str | None:
        """One note for all rescaled ratings, columns with the same recoding named together."""
        if not self.recoded:
            return None
        groups: dict[str, list[str]] = {}
        for name, how in self.recoded:
            groups.setdefault(how, []).append(name)
        return ("ratings recoded to the kit's scales (rule: params/README.md, Export profiles): "
                + "; ".join(f"{', '.join(names)} {how}" for how, names in groups.items()))


def _rating_map_text(lo: float, hi: float, fn) -> str:
    """'1,2 -> 1; 3,4 -> 2 ...' for the integer points of a scale (a load note)."""
    groups: dict[int, list[str]] = {}
    for v in range(int(lo), int(hi) + 1):
        groups.setdefault(fn(v), []).append(str(v))
    return "; ".join(f"{','.join(vs)} -> {k}" for k, vs in groups.items())


def _rescale_fn(name: str, rule: ColumnRule):
    """(export scale, python function of the integer mapping, SQL builder) of a rating column."""
    import math
    c_lo, c_hi = rating_scale(name)
    lo, hi = rule.scale or (c_lo, c_hi)

    def rev(v):
        return lo + hi - v if rule.reverse else v

    if rule.top_box is not None:
        a, _ = _top_box(rule.top_box, hi)
        t_lo, t_hi = CONTRACT_TOP_BOX
        below_hi = a - 1 if a - 1 > lo else lo

        def py(v):
            v = rev(v)
            if v >= a:
                x = t_hi if a == hi else t_lo + (v - a) * (t_hi - t_lo) / (hi - a)
                return int(math.floor(x + 0.5))
            x = c_lo if below_hi == lo else c_lo + (v - lo) * (t_lo - 1 - c_lo) / (below_hi - lo)
            return int(min(t_lo - 1, math.floor(x + 0.5)))

        def sql(v):
            v = f"({lo + hi:g} - {v})" if rule.reverse else v
            top = f"{t_hi}" if a == hi else f"{t_lo} + ({v} - {a:g}) * {(t_hi - t_lo) / (hi - a)!r}"
            below = f"{c_lo}" if below_hi == lo else f"{c_lo} + ({v} - {lo:g}) * {(t_lo - 1 - c_lo) / (below_hi - lo)!r}"
            return (f"CAST(CASE WHEN {v} >= {a:g} THEN floor({top} + 0.5) "
                    f"ELSE least({t_lo - 1}, floor({below} + 0.5)) END AS BIGINT)")
        return (lo, hi), py, sql
    if (lo, hi) == (c_lo, c_hi) and not rule.reverse:
        return (lo, hi), (lambda v: int(v)), (lambda v: f"CAST(floor({v} + 0.5) AS BIGINT)")
    factor = (c_hi - c_lo) / (hi - lo)

    def py_lin(v):
        return int(math.floor(c_lo + (rev(v) - lo) * factor + 0.5))

    def sql_lin(v):
        v = f"({lo + hi:g} - {v})" if rule.reverse else v
        return f"CAST(floor({c_lo} + ({v} - {lo:g}) * {factor!r} + 0.5) AS BIGINT)"
    return (lo, hi), py_lin, sql_lin


def _plan(profile: Profile, present: list[str], file_label: str) -> _Plan:
    """The recoding SQL and the checks of one profile, for an export with columns ``present``."""
    spec = TABLES[profile.table]
    plan = _Plan(profile, file_label)
    missing_cols: list[str] = []

    def need(col: str, where: str) -> None:
        if col not in present:
            missing_cols.append(f"{shorten(col)} ({where})")
        elif col not in plan.used:
            plan.used.append(col)

    for name, rule in profile.columns.items():
        if rule.source is not None:
            need(rule.source, f"columns.{name}")
        if rule.derive is not None:
            need(rule.derive.add, f"columns.{name}.derive.add")
    for dim, src in profile.dimensions.items():
        need(src, f"dimensions.{dim}")
    for src in profile.ignore:
        if src not in present:
            missing_cols.append(f"{shorten(src)} (ignore)")
    if missing_cols:
        raise DataContractError(
            profile.table, f"the export has no column {', '.join(missing_cols)} named in {profile.path}",
            source=file_label,
            expected=f"the export's columns: {', '.join(shorten(c, 40) for c in present[:40])}"
                     + (f" (+{len(present) - 40} more)" if len(present) > 40 else ""))
    plan.refs = {c: f"__s{i}" for i, c in enumerate(plan.used)}

    ignored = [c for c in present if c not in plan.used and c not in profile.ignore]
    if ignored:
        plan.notes.append(f"{len(ignored)} export column"
                          f"{'s' if len(ignored) != 1 else ''} not used (not mapped, not kept as dimensions): "
                          f"{', '.join(shorten(c, 40) for c in ignored[:15])}"
                          + (f" (+{len(ignored) - 15} more)" if len(ignored) > 15 else "")
                          + f"; list them under ignore: in {profile.path} to silence this note, or keep them "
                            "under dimensions:")

    columns = list(spec.columns) + [contract_column(spec, n) for n in profile.columns
                                    if n not in spec.column_names]
    for col in columns:
        rule = profile.columns.get(col.name)
        if rule is None:  # a nullable contract column the export does not have: absent (not an empty column)
            continue
        if rule.derive is not None:
            plan.final[col.name] = _derived_plan(plan, col, rule)
            continue
        _column_plan(plan, col, rule)
    for dim, src in profile.dimensions.items():
        plan.base[dim] = f"NULLIF({plan.refs[src]}, '')"
        plan.final[dim] = _q(dim)
    return plan


def _duck_type(col: Column) -> str:
    return {"string": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "date": "DATE",
            "timestamp": "TIMESTAMP", "boolean": "BOOLEAN"}[col.dtype]


def _derived_plan(plan: _Plan, col: Column, rule: ColumnRule) -> str:
    """A timestamp = its start column + an amount of time: the amount is a helper column of step 1, the sum is
    made in step 2 from the recoded start (never parsed twice)."""
    profile, r, name, d = plan.profile, plan.profile.read, col.name, rule.derive
    if d.start not in plan.base:
        raise ParamsError(profile.path, f"derive.start {d.start} must be a column read from the export (from:)",
                          field=f"columns.{name}.derive.start")
    raw = plan.refs[d.add]
    helper = f"__amount_{name}"
    plan.base[helper] = _number_sql(raw, r.decimal, r.thousands, None)
    unit = d.unit
    plan.checks.append(_Check(d.add, name, f"{_q(helper)} IS NULL AND {raw} IS NOT NULL AND trim({raw}) <> ''",
                              f"is not a number of {unit}s", f"a number of {unit}s (decimal mark {r.decimal!r}) "
                              f"added to {d.start} to give {name}", raw, _decimal_hint(r.decimal)))
    plan.checks.append(_Check(d.add, name, f"{_q(helper)} < 0", "is negative",
                              f"a duration >= 0 ({name} cannot be before {d.start})", raw))
    micro = _UNITS[unit] * 1_000_000
    return (f"(CASE WHEN {_q(helper)} >= 0 THEN {_q(d.start)} + "
            f"to_microseconds(CAST(round({_q(helper)} * {micro}) AS BIGINT)) END)")


def _column_plan(plan: _Plan, col: Column, rule: ColumnRule) -> None:
    """The SQL of one recoded column (``plan.base``: over the staged export columns; ``plan.final``: over step
    1) and its checks (over step 1). A number is parsed once, into a helper column ``__n_<name>``; the scale,
    the rescaling and whole-number rules then work on that number."""
    profile, r = plan.profile, plan.profile.read
    name = col.name
    if rule.value is not None:
        plan.base[name] = f"CAST({_lit(rule.value)} AS {_duck_type(col)})"
        plan.final[name] = _q(name)
        return
    src = rule.source
    raw = plan.refs[src]
    t = f"trim({raw})"
    present = f"({raw} IS NOT NULL AND {raw} <> '')"
    na = ""
    if rule.na_codes:
        texts = [str(c) for c in rule.na_codes]
        nums = [float(c) for c in rule.na_codes if isinstance(c, (int, float)) and not isinstance(c, bool)]
        conds = [f"lower({t}) IN ({', '.join(_lit(x.lower()) for x in texts)})"]
        if nums:
            conds.append(f"TRY_CAST({raw} AS DOUBLE) IN ({', '.join(repr(n) for n in nums)})")
        na = "(" + " OR ".join(conds) + ")"
    value_present = f"({present} AND NOT {na})" if na else present
    rated = rating_scale(name)
    numeric = bool(rated) or col.dtype in ("integer", "float") or (col.dtype == "boolean" and rule.count_to_boolean)
    target = f"__n_{name}" if numeric else name  # the column of step 1 that is empty when recoding failed
    # cheap test first: the costly ones run on the few rows whose value came out empty; blank text is missing
    failed = f"{_q(target)} IS NULL AND {value_present} AND trim({raw}) <> ''"

    def check(problem: str, expected: str, extra: str = "", hint=None, condition: str | None = None) -> None:
        cond = condition if condition is not None else failed + (f" AND {extra}" if extra else "")
        plan.checks.append(_Check(src, name, cond, problem, expected, raw, hint))

    def done(base_sql: str, final_sql: str | None = None) -> None:
        plan.base[target] = base_sql
        plan.final[name] = final_sql or _q(name)

    # 1. text -> value on the export's terms (labels, numbers, dates ...)
    if rule.labels is not None:
        keys = {k.strip().lower(): v for k, v in rule.labels.items()}
        if numeric:
            cases = " ".join(f"WHEN {_lit(k)} THEN {float(v)!r}" if v is not None else f"WHEN {_lit(k)} THEN NULL"
                             for k, v in keys.items())
        elif col.dtype == "boolean":
            cases = " ".join(f"WHEN {_lit(k)} THEN {'TRUE' if v else 'FALSE'}" if v is not None
                             else f"WHEN {_lit(k)} THEN NULL" for k, v in keys.items())
        else:
            cases = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" if v is not None else f"WHEN {_lit(k)} THEN NULL"
                             for k, v in keys.items())
        value = f"(CASE lower({t}) {cases} END)"
        known = f"lower({t}) IN ({', '.join(_lit(k) for k in keys)})"
        mapped_to_null = any(v is None for v in keys.values())
        check("has values not in its labels map",
              f"one of the labels {', '.join(shorten(k, 30) for k in list(rule.labels)[:12])} "
              f"(add the others under columns.{name}.labels in {profile.path}, or na_codes:)",
              f"NOT {known}" if mapped_to_null else "")
        if rated and name in ("nps", "csat"):
            plan.notes.append(_label_note(plan, name, rule))
        if not numeric:
            return done(f"(CASE WHEN {value_present} THEN {value} END)")
        number = value
    elif col.dtype == "string":
        return done(f"NULLIF({raw}, '')" if not na else f"(CASE WHEN {value_present} THEN {raw} END)")
    elif col.dtype == "boolean" and not rule.count_to_boolean:
        s = f"lower({t})"
        value = (f"(CASE WHEN {s} IN ({', '.join(map(_lit, _TRUE))}) THEN TRUE "
                 f"WHEN {s} IN ({', '.join(map(_lit, _FALSE))}) THEN FALSE END)")
        check("has values that are not true/false", "true/false, yes/no, 1/0 (or map the words under labels:, or "
              "count_to_boolean: true for counts)")
        return done(f"(CASE WHEN {value_present} THEN {value} END)")
    elif col.dtype in ("date", "timestamp"):
        formats = rule.format or (r.date_format + r.timestamp_format if col.dtype == "date" else r.timestamp_format)
        zone = rule.timezone or r.timezone
        text = t if formats else raw  # DuckDB's own casts allow surrounding spaces; strptime does not
        value = (_date_sql(text, formats, zone, r.output_timezone) if col.dtype == "date"
                 else _timestamp_sql(text, formats, zone, r.output_timezone))
        shown = ", ".join(formats) if formats else "ISO YYYY-MM-DD[ HH:MM[:SS]][ +HH:MM]"
        check(f"has values that are not {'dates' if col.dtype == 'date' else 'timestamps'} in the declared format",
              f"{shown} (columns.{name}.format or read.{col.dtype}_format in {profile.path})", hint=_date_hint)
        return done(f"(CASE WHEN {value_present} THEN {value} END)")
    else:
        number = _number_sql(raw, rule.decimal or r.decimal, rule.thousands or r.thousands, rule.currency)
        what = "an amount" + (f" in {rule.currency}" if rule.currency else "") if rule.currency else "a number"
        other_currency = ""
        if rule.currency:
            sym = _CURRENCY_SYMBOLS.get(rule.currency)
            mine = f"regexp_matches({raw}, {_lit('(?i)' + rule.currency + ('|' + re.escape(sym) if sym else ''))})"
            other_currency = f"(regexp_matches({raw}, '[A-Z]{{3}}|[$€£¥]') AND NOT {mine})"
            check("has amounts in another currency", f"amounts in {rule.currency} (convert them first)",
                  other_currency)
        check(f"has values that are not {'amounts' if rule.currency else 'numbers'}"
              if not rule.count_to_boolean else "is not a count",
              (f"{what} with decimal mark {(rule.decimal or r.decimal)!r}"
               + (f" and thousands mark {(rule.thousands or r.thousands)!r}" if (rule.thousands or r.thousands)
                  else "")) if not rule.count_to_boolean else "a count >= 0 (count_to_boolean: > 0 is true)",
              f"NOT {other_currency}" if other_currency else "",
              _decimal_hint(rule.decimal or r.decimal, currency=bool(rule.currency)))
    n = _q(target)
    parsed = f"(CASE WHEN {value_present} THEN {number} END)"

    # 2. numbers: the declared scale, reverse, rescale; whole numbers for counts; counts to booleans
    if rated:
        (lo, hi), py, sql = _rescale_fn(name, rule)
        declared = rule.scale is not None
        check(f"has values outside the {'declared ' if declared else ''}scale {lo:g}-{hi:g}",
              f"ratings {lo:g}-{hi:g}" + ("" if declared else " (the contract's scale; declare the export's with "
                                                              "scale: [lo, hi])"),
              hint=_scale_hint(name, lo, hi), condition=f"({n} < {lo:g} OR {n} > {hi:g})")
        if (lo, hi) != tuple(rating_scale(name)) or rule.reverse or rule.top_box is not None:
            plan.recoded.append((name, f"{lo:g}-{hi:g}" + (" reverse-scored" if rule.reverse else "")
                                 + f" -> {rating_scale(name)[0]}-{rating_scale(name)[1]} ("
                                 + _rating_map_text(lo, hi, py)
                                 + (f"; top box {_top_box(rule.top_box, hi)[0]:g}-{hi:g} -> 4-5"
                                    if rule.top_box is not None else "") + ")"))
        return done(parsed, f"(CASE WHEN {n} BETWEEN {lo:g} AND {hi:g} THEN {sql(n)} END)")
    if col.dtype == "boolean":  # count_to_boolean
        check("is not a count", "a count >= 0 (count_to_boolean: > 0 is true)", condition=f"{n} < 0")
        return done(parsed, f"(CASE WHEN {n} >= 0 THEN {n} > 0 END)")
    if col.dtype == "integer":
        check("has values that are not whole numbers", "whole numbers", condition=f"{n} <> trunc({n})")
        return done(parsed, f"(CASE WHEN {n} = trunc({n}) THEN CAST({n} AS BIGINT) END)")
    return done(parsed, n)


def _label_note(plan: _Plan, name: str, rule: ColumnRule) -> str:
    labels = ", ".join(f"{shorten(k, 20)} -> {v:g}" for k, v in rule.labels.items() if v is not None)
    if name == "nps":
        return (f"nps from labels ({labels}): the NPS (% promoters - % "
                "detractors) and its interval are exact, but the 0-10 values are one per band, so a mean of nps "
                "or a driver analysis with outcome nps is not meaningful on these data")
    return (f"csat from labels ({labels}): the CSAT (share of 4-5) is "
            "exact; a mean of csat is not meaningful on these data")


def _decimal_hint(decimal: str, currency: bool = False):
    def hint(values: list[object]) -> str:
        texts = [str(v) for v in values if v is not None]
        if decimal == "." and texts and all(re.fullmatch(r"\s*[-+]?\d{1,3}(\.\d{3})*,\d+\s*", t) for t in texts):
            return "; these look like decimal commas: set read.decimal: ','"
        if decimal == "," and texts and all(re.fullmatch(r"\s*[-+]?\d+\.\d+\s*", t) for t in texts):
            return "; these use a decimal point: set read.decimal: '.'"
        if not currency and texts and all(re.search(r"[A-Z]{3}|[$€£¥]", t) for t in texts):
            return "; these carry a currency: set currency: <code> on the column"
        return ""
    return hint


def _date_hint(values: list[object]) -> str:
    texts = [str(v) for v in values if v is not None]
    if not texts:
        return ""
    if all(re.search(r"\b(AM|PM|am|pm)\b", t) for t in texts):
        return "; 12-hour times: e.g. format '%m/%d/%Y %I:%M %p'"
    if all(re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}.*", t) for t in texts):
        firsts = [int(t.split("/")[0]) for t in texts]
        return ("; day first: e.g. format '%d/%m/%Y'" if any(f > 12 for f in firsts)
                else "; US dates (month first): e.g. format '%m/%d/%Y'")
    if all(re.fullmatch(r"\d{1,2}\.\d{1,2}\.\d{4}.*", t) for t in texts):
        return "; e.g. format '%d.%m.%Y'"
    return ""


def _scale_hint(name: str, lo: float, hi: float):
    def hint(values: list[object]) -> str:
        nums = []
        for v in values:
            try:
                nums.append(float(str(v).replace(",", ".")))
            except ValueError:
                pass
        if not nums:
            return ""
        if len(set(nums)) == 1 and (nums[0] == hi + 1 or nums[0] >= 90 or nums[0] < 0):
            return f"; is {nums[0]:g} a code for 'not applicable'? set na_codes: [{nums[0]:g}]"
        top = max(nums)
        for cand in (7, 10, 11):
            if hi < top <= cand and name != "nps":
                low = 0 if min(nums + [lo]) == 0 else 1
                return (f"; values {min(n for n in nums if n > hi):g}-{top:g} found: is this a {low}-{cand} "
                        f"scale? set scale: [{low}, {cand}]")
        return ""
    return hint


# --- the source set: all tables, problems at once --------------------------------------------------------

@dataclass
class LoadedSources:
    """What :func:`read_source_set` made: per table the file shown in messages and the recoded relation in
    ``con``; the dimensions kept per table; a fingerprint of the set, its profiles and the exports' bytes."""

    tables: dict[str, tuple[str, str]]
    dimensions: dict[str, tuple[str, ...]]
    fingerprint: str
    files: dict[str, list[Path]]


def read_source_set(con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str],
                    problems: list[DataProblem] | None = None) -> LoadedSources:
    """Read every table of the source set ``path`` through its profile into ``con`` (views ``__profile_<table>``:
    the mapped contract columns, recoded, then the dimensions; see :func:`read_profile`).

    Every data problem of every table is appended to ``problems`` (:class:`helpers.errors.DataProblem`, with
    rows, example ids, offending values and a suggested setting), the load notes as warnings; without a list
    the errors raise one :class:`helpers.errors.DataValidationError`. A table with problems is still recoded
    (offending values read as empty) so the contract's own checks can report theirs in the same pass. A broken
    profile or source set raises :class:`helpers.errors.ParamsError` naming the file and field.
    """
    collect = problems if problems is not None else []
    sset, profiles = load_source_set(path)
    out: dict[str, tuple[str, str]] = {}
    all_files: dict[str, list[Path]] = {}
    for table, profile in profiles.items():
        try:
            label, relation, found, files = read_profile(con, profile)
        except DataValidationError as exc:
            collect += exc.problems
            continue
        except DataContractError as exc:
            collect.append(DataProblem(table, str(exc).split(": ", 1)[-1], source=exc.source, rule="file"))
            continue
        collect += found
        all_files[table] = files
        if any(p.rule == "recode required" for p in found):
            _drop(con, relation)
            _drop(con, f"{relation}_data")
            continue  # the contract's checks would only repeat it ("is empty"); the other problems are named
        out[table] = (label, relation)
    if problems is None and any(p.severity == "error" for p in collect):
        raise DataValidationError(collect)
    dims = {t: tuple(p.dimensions) for t, p in profiles.items() if p.dimensions and t in out}
    return LoadedSources(out, dims, _fingerprint(sset, profiles, all_files), all_files)


def read_profile(con: duckdb.DuckDBPyConnection, profile: Profile, relation: str | None = None
                 ) -> tuple[str, str, list[DataProblem], list[Path]]:
    """Read one profile's files into ``con`` as the view ``relation`` (default ``__profile_<table>``), recoded;
    return (file shown in messages, relation, problems and notes, files).

    Each file is parsed once: its used columns, recoded in one SELECT (step 1 of :class:`_Plan`) into a
    temporary table ``<relation>_data``, with the raw text of checked columns beside them; the checks count, in
    one aggregate, the rows whose value could not be recoded; the raw text is then dropped, and ``relation`` is
    a view of step 2 (contract columns in order, derived timestamps, dimensions) over that table: no copy of the
    rows is made after the parse."""
    relation = relation or f"__profile_{profile.table}"
    files = _files(profile)
    label = _display(files[0]) if len(files) == 1 else f"{profile.file} ({len(files)} files)"
    stage = f"{relation}_data"
    parts, columns = [], None
    try:
        for i, f in enumerate(files):
            name = f"{stage}_{i}"
            cols = _stage_file(con, profile, f, name)
            if columns is None:
                columns = cols
            elif cols != columns:
                raise DataContractError(profile.table, "files of one export have different columns",
                                        source=_display(f), expected=f"the columns of {files[0].name} "
                                                                      f"({len(columns)} columns); {f.name} has {len(cols)}")
            parts.append(name)
        plan = _plan(profile, columns, label)
        staged = ", ".join(f"CAST({_q(c)} AS VARCHAR) AS {ref}" for c, ref in plan.refs.items()) or "NULL AS __none"
        union = " UNION ALL ".join(f"SELECT {staged} FROM {p}" for p in parts)
        shown = list(dict.fromkeys(c.value_sql for c in plan.checks))  # raw text kept for the messages only
        step1 = ", ".join([f"{e} AS {_q(c)}" for c, e in plan.base.items()] + shown)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT {step1} FROM ({union})")
        except duckdb.Error as exc:
            raise _read_error(profile, files[0], exc) from None
    finally:
        for p in parts:
            _drop(con, p)
    try:
        problems = _run_checks(con, plan, stage, profile)
        notes = plan.notes + ([plan.recoding_note()] if plan.recoded else [])
        problems += [DataProblem(profile.table, note, source=label, rule="profile note", severity="warning")
                     for note in notes]
        for raw in shown:  # the raw text was for the messages only
            con.execute(f"ALTER TABLE {stage} DROP COLUMN {raw}")
        step2 = ", ".join(f"{e} AS {_q(c)}" for c, e in plan.final.items())
        con.execute(f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT {step2} FROM {stage}")
    except duckdb.Error as exc:  # a conversion the checks did not foresee: name the profile
        _drop(con, stage)
        raise DataContractError(profile.table, f"cannot be recoded: {shorten(str(exc).splitlines()[0], 200)}",
                                source=label, expected=f"values the rules of {profile.path} can recode") from None
    return label, relation, problems, files


def _drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    kinds = [k for (k,) in con.execute("SELECT 'VIEW' FROM duckdb_views() WHERE view_name = ? UNION ALL "
                                       "SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = ?",
                                       [name, name]).fetchall()]
    for kind in kinds:
        con.execute(f"DROP {kind} IF EXISTS {name}")


def _run_checks(con: duckdb.DuckDBPyConnection, plan: _Plan, stage: str, profile: Profile) -> list[DataProblem]:
    """Count every check in one scan of step 1; for the failing ones, the most frequent offending values and
    up to five example ids."""
    if not plan.checks:
        return []
    aggs = ", ".join(f"count(*) FILTER (WHERE {c.condition})" for c in plan.checks)
    counts = con.execute(f"SELECT {aggs} FROM {stage}").fetchone()
    spec = TABLES[profile.table]
    key_rule = profile.columns.get(spec.key)
    key = _q(spec.key) if spec.key in plan.base else None
    out: list[DataProblem] = []
    required = {c.name for c in spec.columns if not c.nullable}
    for check, n in zip(plan.checks, counts):
        if not n:
            continue
        values = [v for (v, _) in con.execute(f"SELECT {check.value_sql} AS v, count(*) AS n FROM {stage} WHERE "
                                              f"{check.condition} GROUP BY v ORDER BY n DESC, v LIMIT 6").fetchall()]
        rows = con.execute(f"SELECT {key or 'NULL'}, rn FROM (SELECT row_number() OVER () AS rn, * FROM {stage}) "
                           f"WHERE {check.condition} LIMIT 5").fetchall()
        examples = [k if k else f"row {rn}" for k, rn in rows]
        hint = check.hint(values) if check.hint else ""
        out.append(DataProblem(profile.table, check.problem + (f" (read into {check.target})"
                                                               if check.column != check.target else ""),
                               source=plan.file_label, column=check.column, n_rows=int(n), examples=examples,
                               values=values, expected=check.expected + f" (profile {profile.path})",
                               suggestion=hint.removeprefix("; ") or None,
                               rule="recode required" if check.target in required else check.rule))
    return out


def _fingerprint(sset: SourceSet, profiles: dict[str, Profile], files: dict[str, list[Path]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(sset.model_dump_json().encode())
    for table in sorted(profiles):
        h.update(profiles[table].model_dump_json(by_alias=True).encode())
        for f in files.get(table, []):
            h.update(f"{table}\0{f.name}\0".encode())
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
    return h.hexdigest()


def is_source_set(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a YAML file (a source set, or a profile pointed at by mistake)."""
    return str(path).lower().endswith((".yaml", ".yml")) and Path(path).is_file()
