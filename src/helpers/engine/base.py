"""One engine interface: SQL in, a small tidy DataFrame out.

Every query of :mod:`helpers.engine.aggregates` is written once, in DuckDB's dialect (ANSI SQL plus
``count_if``, ``date_trunc``, ``date_diff``...), and runs unchanged on DuckDB; the Spark engine transpiles it
to Spark SQL with SQLGlot (``sqlglot.transpile(sql, read="duckdb", write="spark")``). No per-dialect SQL is
written by hand. Queries return aggregates: an answer with more rows than ``max_result_rows`` is refused
(:class:`EngineError`), so memory follows the size of the answer, not of the data.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import math
from abc import ABC, abstractmethod

import pandas as pd

from helpers.errors import KitError
from helpers.formatting import shorten


class EngineError(KitError):
    """An engine cannot run a query or reach a table; the message names the engine, the table or the query."""


def quote_ident(name: str) -> str:
    """A SQL identifier in double quotes (DuckDB; SQLGlot turns it into Spark's backticks)."""
    return '"' + str(name).replace('"', '""') + '"'


def sql_literal(value: object) -> str:
    """A Python value as a SQL literal that both engines read alike (strings quoted, dates typed)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EngineError(f"cannot write the non-finite number {value!r} into a query")
        return repr(value)
    if isinstance(value, pd.Timestamp) or isinstance(value, _dt.datetime):
        ts = pd.Timestamp(value)
        if ts == ts.normalize():
            return f"DATE '{ts:%Y-%m-%d}'"
        return f"TIMESTAMP '{ts:%Y-%m-%d %H:%M:%S}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value:%Y-%m-%d}'"
    return "'" + str(value).replace("'", "''") + "'"


def _plain_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimal columns (Spark's sums of decimals, DuckDB's HUGEINT sums) as int64 when whole, else float."""
    for c in frame.columns:
        col = frame[c]
        if col.dtype == object and len(col) and any(isinstance(v, decimal.Decimal) for v in col.head(50)):
            values = [None if v is None else v for v in col]
            whole = all(v is None or v == v.to_integral_value() for v in values)
            if whole and all(v is not None for v in values):
                frame[c] = pd.array([int(v) for v in values], dtype="int64")
            else:
                frame[c] = pd.array([None if v is None else float(v) for v in values], dtype="float64")
    return frame


class Engine(ABC):
    """A query engine holding named tables (``customers``, ``responses``, ``tickets``, ``org``...)."""

    name: str = "engine"
    max_result_rows: int = 1_000_000

    @abstractmethod
    def _run(self, sql: str) -> pd.DataFrame:
        """Run one DuckDB-dialect query and return its answer as pandas."""

    @abstractmethod
    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Make a small pandas frame (a lookup of ranks, periods, replicate seeds) a table ``name``."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """The column names of ``table`` (raises :class:`EngineError` when there is no such table)."""

    @abstractmethod
    def has(self, table: str) -> bool:
        """Whether the engine knows ``table``."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release what the engine holds (the DuckDB connection it opened; never a session it was given)."""

    def query(self, sql: str) -> pd.DataFrame:
        """The answer of ``sql`` (DuckDB dialect) as a DataFrame; refused when it has more than
        ``max_result_rows`` rows (aggregates, not rows)."""
        out = self._run(sql)
        if len(out) > self.max_result_rows:
            raise EngineError(f"{self.name}: the query answered {len(out):,} rows, more than max_result_rows = "
                              f"{self.max_result_rows:,}; engine queries must return aggregates "
                              f"(query: {shorten(' '.join(sql.split()), 160)})")
        return _plain_values(out.reset_index(drop=True))

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
