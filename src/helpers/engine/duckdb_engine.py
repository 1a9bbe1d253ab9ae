"""DuckDB, the embedded default engine: tables are views over Parquet/CSV files, or the validated views of a
:class:`helpers.data.Dataset` (``DuckDBEngine(dataset.con)``), queried where they are."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

from helpers.engine.base import Engine, EngineError, quote_ident, sql_literal
from helpers.formatting import shorten


def file_relation(path: str | Path) -> str:
    """The DuckDB table function reading a Parquet file or folder, or a CSV file."""
    p = Path(path)
    if p.is_dir():
        return f"read_parquet({sql_literal(str(p / '**' / '*.parquet'))})"
    if p.suffix == ".parquet" or "*" in p.name:
        return f"read_parquet({sql_literal(str(p))})"
    if p.name.endswith((".csv", ".csv.gz")):
        return f"read_csv({sql_literal(str(p))})"
    raise EngineError(f"duckdb engine: cannot read {shorten(str(p))}; expected a .parquet file or folder or a .csv file")


class DuckDBEngine(Engine):
    """``DuckDBEngine(con)`` queries the tables of an existing connection (not closed by the engine);
    ``DuckDBEngine(tables={"responses": "data/demo/responses.parquet", ...})`` opens an in-memory connection
    with one view per file. ``threads`` limits DuckDB's threads (None: DuckDB's default)."""

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None, tables: Mapping[str, str] | None = None,
                 *, max_result_rows: int = 1_000_000, threads: int | None = None, memory_limit: str | None = None):
        self._owned = con is None
        self.con = con if con is not None else duckdb.connect(":memory:", config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False})
        self.max_result_rows = int(max_result_rows)
        if self._owned:
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute("SET enable_progress_bar = false")  # no progress bars in notebooks or logs
            if threads:
                self.con.execute(f"SET threads = {int(threads)}")
            if memory_limit:
                self.con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
        for name, path in (tables or {}).items():
            if not Path(path).exists() and "*" not in str(path):
                raise EngineError(f"duckdb engine: table {name!r}: no file or folder {shorten(str(path))}")
            self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM {file_relation(path)}")

    def _run(self, sql: str) -> pd.DataFrame:
        try:
            return self.con.execute(sql).df()
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"duckdb engine: {shorten(first, 300)}") from None

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self.con.register(f"__frame_{name}", frame)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS SELECT * FROM {quote_ident('__frame_' + name)}")
        self.con.unregister(f"__frame_{name}")

    def columns(self, table: str) -> list[str]:
        if not self.has(table):
            raise EngineError(f"duckdb engine: no table {table!r}")
        return [r[0] for r in self.con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()]

    def has(self, table: str) -> bool:
        rows = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? UNION ALL "
                                "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [table, table]).fetchall()
        return sum(r[0] for r in rows) > 0

    def close(self) -> None:
        if self._owned:
            self.con.close()
