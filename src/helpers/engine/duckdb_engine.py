"""DuckDB, the embedded default engine: tables are views over Parquet/CSV files, or the validated views of a
:class:`helpers.data.Dataset` (``DuckDBEngine(dataset.con)``), queried where they are.

Every DuckDB connection the kit opens (:func:`duckdb_connection`: the dataset's in :mod:`helpers.data`, this
engine's own) is configured by :func:`configure` with ``engine.duckdb`` of params/report.yaml
(:class:`helpers.engine.settings.DuckDBSettings`: a memory limit, 768MB by default instead of DuckDB's 80% of
the machine's memory per connection; threads; a spill folder in the system temp folder instead of ``.tmp`` of
the working folder)."""
from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

from helpers.engine.base import Engine, EngineError, quote_ident, sql_literal
from helpers.engine.settings import DuckDBSettings, process_duckdb_settings
from helpers.formatting import shorten

SPILL_FOLDER = "satisfaction-kit-duckdb"  # inside temp_directory (default: the system temp folder)
_spill_counter = itertools.count(1)


def spill_directory(settings: DuckDBSettings | None = None) -> Path:
    """A new folder name for one connection's spill files: ``<temp_directory>/satisfaction-kit-duckdb/<pid>-<n>``
    (the parent is created here; DuckDB creates the folder itself when it first spills and removes it when the
    connection closes)."""
    settings = settings or process_duckdb_settings()
    base = Path(settings.temp_directory).expanduser() if settings.temp_directory else Path(tempfile.gettempdir())
    parent = base / SPILL_FOLDER
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(f"duckdb: cannot create the spill folder {shorten(str(parent))} (engine.duckdb."
                          f"temp_directory): {exc.strerror or exc}") from None
    if parent not in _swept:
        _swept.add(parent)
        remove_stale_spill(parent)
    return parent / f"{os.getpid()}-{next(_spill_counter)}"


_swept: set[Path] = set()


def remove_stale_spill(parent: Path) -> list[Path]:
    """Remove the spill folders (``<pid>-<n>``) of processes that are gone: DuckDB removes its own when the
    connection closes, but a killed process leaves its files (GBs at scale). Returns what was removed."""
    import shutil  # noqa: PLC0415

    removed = []
    for folder in Path(parent).glob("*-*"):
        pid = folder.name.split("-", 1)[0]
        if not (pid.isdigit() and folder.is_dir()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive
        except PermissionError:
            continue  # alive, another user's
        except (ProcessLookupError, OverflowError, OSError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def configure(con: duckdb.DuckDBPyConnection, settings: DuckDBSettings | None = None) -> duckdb.DuckDBPyConnection:
    """Apply ``settings`` (default: the process's, :func:`helpers.engine.settings.process_duckdb_settings`) to a
    connection the kit opened: memory limit, threads, spill folder; returns ``con``."""
    settings = settings or process_duckdb_settings()
    try:
        if settings.memory_limit:
            con.execute(f"SET memory_limit = {sql_literal(settings.memory_limit)}")
        if settings.threads:
            con.execute(f"SET threads = {int(settings.threads)}")
        con.execute(f"SET temp_directory = {sql_literal(str(spill_directory(settings)))}")
    except duckdb.Error as exc:
        raise EngineError(f"duckdb: engine.duckdb settings refused: {shorten(str(exc).splitlines()[0], 200)}") from None
    return con


def duckdb_connection(settings: DuckDBSettings | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection as the kit opens them: local files only (no extension auto-install or
    -load, e.g. httpfs), timestamps in UTC, no progress bars, and :func:`configure`'s resources."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    try:  # no progress bars in notebook outputs or logs
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses the setting; it then shows no bar anyway
    try:
        return configure(con, settings)
    except BaseException:
        con.close()
        raise


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
    (:func:`duckdb_connection`) with one view per file, configured by ``settings`` (``engine.duckdb``; default:
    the process's); ``threads`` and ``memory_limit`` override those two."""

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None, tables: Mapping[str, str] | None = None,
                 *, max_result_rows: int = 1_000_000, threads: int | None = None, memory_limit: str | None = None,
                 settings: DuckDBSettings | None = None):
        self._owned = con is None
        if self._owned:
            settings = settings or process_duckdb_settings()
            if threads or memory_limit:
                settings = settings.model_copy(update={k: v for k, v in (("threads", threads),
                                                                          ("memory_limit", memory_limit)) if v})
            con = duckdb_connection(settings)
        self.con = con
        self.max_result_rows = int(max_result_rows)
        self._columns: dict[str, list[str]] = {}  # columns of the tables found (see columns())
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
        self._columns.pop(name, None)
        self.__dict__.pop("_filter_value_lookups", None)  # helpers.engine.aggregates.VALUE_LOOKUPS
        self.con.register(f"__frame_{name}", frame)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS SELECT * FROM {quote_ident('__frame_' + name)}")
        self.con.unregister(f"__frame_{name}")

    def columns(self, table: str) -> list[str]:
        """The columns of ``table``, looked up once per engine (a page asks for the same few tables dozens of
        times, ~2 ms each): the engine's own :meth:`register` forgets a replaced table's; tables are not
        expected to change under a running engine otherwise."""
        if table not in self._columns:
            try:
                self._columns[table] = [r[0] for r in self.con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()]
            except duckdb.CatalogException:
                raise EngineError(f"duckdb engine: no table {table!r}") from None
        return list(self._columns[table])

    def has(self, table: str) -> bool:
        """Whether a table or view ``table`` exists (in any attached database or schema). Found once, it is
        remembered with its columns (:meth:`columns`); an absence is asked again each time."""
        if table in self._columns:
            return True
        rows = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? UNION ALL "
                                "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [table, table]).fetchall()
        if sum(r[0] for r in rows) == 0:
            return False
        try:
            self.columns(table)
        except (EngineError, duckdb.Error):
            pass  # e.g. only in another attached database: it exists, but not by its bare name
        return True

    def close(self) -> None:
        if self._owned:
            self.con.close()
