"""Apache Spark through PySpark (the ``spark`` extra): the same DuckDB-dialect queries, transpiled to Spark SQL
with SQLGlot, run by a SparkSession (``local[2]`` on this machine, or a cluster's master URL).

Tables are Parquet files or folders (``spark.read.parquet``), CSV files, or tables of the session's catalog
(``db.table``); each becomes a temporary view under its contract name. Small lookup frames (ranks, periods,
replicate numbers) are registered as views too. Only aggregates come back to the driver (``collect``), never
the rows. The session timezone is UTC, as in :mod:`helpers.data`.
"""
from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.engine.base import Engine, EngineError, quote_ident
from helpers.formatting import shorten

SPARK_DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.ansi.enabled": "false",
}


def spark_unavailable_reason() -> str | None:
    """Why a local Spark session cannot start here (no pyspark or sqlglot installed, no Java), or None."""
    try:
        import pyspark  # noqa: F401, PLC0415
        import sqlglot  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"the spark extra is not installed ({exc.name} missing): pip install -e '.[spark]'"
    if not shutil.which("java") and not _java_home():
        return "no Java runtime (java not on PATH, JAVA_HOME unset): Spark needs Java 17 or 21"
    return None


def _java_home() -> str | None:
    import os  # noqa: PLC0415

    home = os.environ.get("JAVA_HOME")
    return home if home and Path(home, "bin", "java").exists() else None


def start_spark_session(master: str | None = "local[2]", app_name: str = "satisfaction-kit",
                        conf: Mapping[str, object] | None = None):
    """A SparkSession with the kit's defaults (UTC, no UI, no progress bars) and ``conf`` on top."""
    reason = spark_unavailable_reason()
    if reason:
        raise EngineError(f"spark engine: {reason}")
    from pyspark.sql import SparkSession  # noqa: PLC0415

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in {**SPARK_DEFAULT_CONF, **{k: str(v).lower() if isinstance(v, bool) else str(v)
                                                 for k, v in (conf or {}).items()}}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


_PROCESS_SESSION: list = []  # the session this module started for the process (stopped when it exits)


def process_spark_session(master: str | None = "local[2]", app_name: str = "satisfaction-kit",
                          conf: Mapping[str, object] | None = None):
    """The process's SparkSession: the one already running (started by the caller, a notebook, ``spark-submit``
    or an earlier engine), else a new one from these settings, stopped when the process exits. Starting Spark
    takes seconds to a minute, so the engines a report opens one after the other share it (each in a
    ``newSession()`` of its own: separate temporary views and SQL settings, one SparkContext)."""
    from pyspark.sql import SparkSession  # noqa: PLC0415

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    session = start_spark_session(master, app_name, conf)
    if not _PROCESS_SESSION:
        import atexit  # noqa: PLC0415

        atexit.register(_stop_process_session)
    _PROCESS_SESSION[:] = [session]
    return session


def _stop_process_session() -> None:
    for session in _PROCESS_SESSION:
        try:
            session.stop()
        except Exception:  # noqa: BLE001 - the JVM may already be gone at exit
            pass
    _PROCESS_SESSION.clear()


def to_spark_sql(sql: str) -> str:
    """DuckDB-dialect SQL as Spark SQL (SQLGlot)."""
    import sqlglot  # noqa: PLC0415

    try:
        out = sqlglot.transpile(sql, read="duckdb", write="spark")
    except sqlglot.errors.ParseError as exc:
        raise EngineError(f"spark engine: cannot transpile the query: {shorten(str(exc), 200)}") from None
    if len(out) != 1:
        raise EngineError("spark engine: one statement per query")
    return out[0]


def _python_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    return v


class SparkEngine(Engine):
    """``SparkEngine(tables={...}, master="local[2]", conf={...})`` works in a ``newSession()`` of the process's
    SparkSession (:func:`process_spark_session`: the running one, else started with these settings and kept
    until the process exits), with its own temporary views and ``spark.sql.*`` settings, so engines opened one
    after the other (or at once, over other data) neither restart Spark nor see each other's tables;
    ``SparkEngine(session=spark, tables={...})`` uses a session the caller owns as it is. The engine never stops
    a session. ``views``: ``(name, Spark SQL)`` created as temporary views after the tables, in order (a
    dataset's typed, column-mapped and cut tables over its files: :func:`helpers.engine.spark_dataset_sources`)."""

    name = "spark"

    def __init__(self, tables: Mapping[str, str] | None = None, *, session=None, master: str | None = "local[2]",
                 app_name: str = "satisfaction-kit", conf: Mapping[str, object] | None = None,
                 max_result_rows: int = 1_000_000, views: Sequence[tuple[str, str]] = ()):
        if session is None:
            session = process_spark_session(master, app_name, conf).newSession()
            for key, value in {**SPARK_DEFAULT_CONF, **(conf or {})}.items():
                if key.startswith("spark.sql."):  # the SQL settings are per session (the rest: the context's)
                    session.conf.set(key, str(value).lower() if isinstance(value, bool) else str(value))
        self.spark = session
        self.max_result_rows = int(max_result_rows)
        self._views: set[str] = set()
        try:
            for name, where in (tables or {}).items():
                self._register_source(name, str(where))
            for name, sql in views:
                self._register_view(name, sql)
        except BaseException:
            self.close()
            raise

    def _register_view(self, name: str, sql: str) -> None:
        try:
            self.spark.sql(sql).createOrReplaceTempView(name)
        except Exception as exc:  # AnalysisException, ParseException
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"spark engine: view {name!r}: {shorten(first, 200)} (query: "
                              f"{shorten(' '.join(sql.split()), 200)})") from None
        self._views.add(name)

    def _register_source(self, name: str, where: str) -> None:
        p = Path(where)
        try:
            if p.exists() and (p.is_dir() or p.suffix == ".parquet"):
                frame = self.spark.read.parquet(str(p))
            elif p.exists() and p.name.endswith((".csv", ".csv.gz")):
                frame = self.spark.read.csv(str(p), header=True, inferSchema=True)
            elif not p.exists() and "/" not in where and where.replace("_", "").replace(".", "").isalnum():
                frame = self.spark.table(where)  # a table of the session's catalog
            else:
                raise EngineError(f"spark engine: table {name!r}: no file, folder or catalog table {shorten(where)}")
        except EngineError:
            raise
        except Exception as exc:  # AnalysisException etc.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"spark engine: table {name!r} ({shorten(where)}): {shorten(first, 200)}") from None
        frame.createOrReplaceTempView(name)
        self._views.add(name)

    def _run(self, sql: str) -> pd.DataFrame:
        spark_sql = to_spark_sql(sql)
        try:
            frame = self.spark.sql(spark_sql)
            rows = frame.limit(self.max_result_rows + 1).collect()
        except Exception as exc:  # pyspark's AnalysisException, Py4JJavaError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"spark engine: {shorten(first, 300)} (query: {shorten(' '.join(spark_sql.split()), 200)})"
                              ) from None
        out = pd.DataFrame.from_records([tuple(r) for r in rows], columns=frame.columns)
        for c in out.columns:  # dates and timestamps as pandas datetimes (as DuckDB's .df() gives them)
            sample = out[c].dropna().head(1)
            if len(sample) and isinstance(sample.iloc[0], (_dt.date, _dt.datetime)):
                out[c] = pd.to_datetime(out[c])
        return out

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self.__dict__.pop("_filter_value_lookups", None)  # helpers.engine.aggregates.VALUE_LOOKUPS
        records = [tuple(_python_value(v) for v in row) for row in frame.itertuples(index=False, name=None)]
        if not records:
            raise EngineError(f"spark engine: cannot register the empty frame {name!r}")
        self.spark.createDataFrame(records, schema=[str(c) for c in frame.columns]).createOrReplaceTempView(name)
        self._views.add(name)

    def columns(self, table: str) -> list[str]:
        if not self.has(table):
            raise EngineError(f"spark engine: no table {table!r}")
        return list(self.spark.table(table).columns)

    def has(self, table: str) -> bool:
        return table in self._views or self.spark.catalog.tableExists(table)

    def close(self) -> None:
        try:
            for v in self._views:
                self.spark.catalog.dropTempView(v)
        except Exception:  # noqa: BLE001 - the session was stopped meanwhile: nothing left to drop
            pass
        self._views.clear()


# --- a dataset's DuckDB view chain as Spark SQL (moved here from helpers.engine: it needs SQLGlot) ---------

def spark_dataset_sources(dataset) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """What a Spark engine needs to see exactly the tables ``dataset`` shows in DuckDB: ``(files, views)``.

    The dataset's contract tables are DuckDB views over its Parquet files (raw read -> typed select with the
    column mapping -> as-of cut; for a run's snapshot by reference the same chain, stored in the snapshot). Each
    view of the chain is parsed with SQLGlot, its ``*`` expanded with the columns DuckDB knows (``* REPLACE``
    has no Spark form), its sources renamed, and written as Spark SQL; the Parquet files at its leaves become
    ``files`` (Spark view name -> path). ``views`` are ``(name, Spark SQL)`` in dependency order, ending with
    ``customers``, ``responses``... When a table is not such a chain over Parquet files (CSV parsed into memory,
    a copy snapshot, a DuckDB file), the raw files of :func:`dataset_tables` are used instead, without the
    dataset's mapping and cut (``views`` empty); with none, ``({}, [])``."""
    con = getattr(dataset, "con", None)
    if con is not None:
        try:
            return _view_chain(dataset, con)
        except _NotAChain:
            pass
    from helpers.engine import dataset_tables  # noqa: PLC0415

    return dataset_tables(dataset), []


class _NotAChain(Exception):
    """A contract table of the dataset is not a chain of DuckDB views over Parquet files."""


def _view_chain(dataset, con) -> tuple[dict[str, str], list[tuple[str, str]]]:
    import re  # noqa: PLC0415

    import sqlglot  # noqa: PLC0415
    from sqlglot import exp  # noqa: PLC0415
    from sqlglot.optimizer.qualify import qualify  # noqa: PLC0415

    from helpers.data import TABLE_ORDER  # noqa: PLC0415

    home = con.execute("SELECT current_database()").fetchone()[0]
    known = {(db, schema, name): sql for db, schema, name, sql in con.execute(
        "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
    tables = [t for t in TABLE_ORDER if t in getattr(dataset, "tables", TABLE_ORDER)]
    names: dict[tuple[str, str, str], str] = {}
    files: dict[str, str] = {}
    views: list[tuple[str, str]] = []

    def spark_name(key: tuple[str, str, str]) -> str:
        if key[0] == home and key[1] == "main" and key[2] in tables:
            return key[2]
        return "__kit_" + re.sub(r"\W", "_", f"{key[0]}_{key[1]}_{key[2]}")

    def columns(key: tuple[str, str, str]) -> dict[str, str]:
        rel = ".".join(quote_ident(k) for k in key)
        return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}

    def resolve(key: tuple[str, str, str]) -> str:
        if key in names:
            return names[key]
        sql = known.get(key)
        if sql is None:  # a table (a copy), not a view over files
            raise _NotAChain(key)
        create = sqlglot.parse_one(sql, read="duckdb")
        select = create.expression if isinstance(create, exp.Create) else None
        if not isinstance(select, exp.Query):
            raise _NotAChain(key)
        schema: dict[str, dict[str, str]] = {}
        for table in list(select.find_all(exp.Table)):
            if isinstance(table.this, exp.ReadParquet):
                paths = [e for e in table.this.expressions if isinstance(e, exp.Literal) and e.is_string]
                if len(paths) != 1 or len(table.this.expressions) != 1 or any(ch in paths[0].this for ch in "*?["):
                    raise _NotAChain(key)
                leaf = f"__kit_file_{len(files)}"
                files[leaf] = paths[0].this
                table.replace(exp.to_table(leaf))
                continue
            if not isinstance(table.this, exp.Identifier):
                raise _NotAChain(key)  # another table function (read_csv...)
            ref = (table.catalog or key[0], table.db or key[1], table.name)
            if ref not in known and (home, "main", table.name) in known and not table.catalog:
                ref = (home, "main", table.name)
            target = resolve(ref)
            schema[target] = columns(ref)
            table.replace(exp.to_table(target))
        if any(isinstance(star, exp.Star) and (star.args.get("replace") or star.args.get("except"))
               for star in select.find_all(exp.Star)):
            select = qualify(select, schema=schema, dialect="duckdb", validate_qualify_columns=False,
                             quote_identifiers=True)
        name = spark_name(key)
        names[key] = name
        views.append((name, select.sql(dialect="spark")))
        return name

    for t in tables:
        resolve((home, "main", t))
    return files, views
