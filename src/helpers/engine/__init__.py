"""Engine layer: the analyses' aggregates computed where the data is (DuckDB by default, Apache Spark).

>>> from helpers.engine import DuckDBEngine, aggregates
>>> eng = DuckDBEngine(tables={"responses": "data/demo/responses.parquet"})
>>> aggregates.kpi_aggregates(eng, "csat", freq="month", by="department")

* :mod:`helpers.engine.base`: the :class:`Engine` interface (``query(sql) -> DataFrame``, ``register``,
  ``columns``, ``has``), SQL written once in DuckDB's dialect;
* :mod:`helpers.engine.duckdb_engine`: the embedded default;
* :mod:`helpers.engine.spark_engine`: PySpark, the same SQL transpiled by SQLGlot (optional ``spark`` extra);
* :mod:`helpers.engine.aggregates`: KPI aggregates and quantiles, Kaplan-Meier/log-rank counts, sBG counts,
  the seeded Cox sample;
* :mod:`helpers.engine.poisson_bootstrap`: driver cross-product matrices with Poisson-bootstrap replicates;
* :mod:`helpers.engine.settings`: the ``engine:`` section of params/report.yaml.
"""
from __future__ import annotations

from collections.abc import Mapping

from helpers.errors import KitError
from helpers.engine.base import Engine, EngineError, quote_ident, sql_literal
from helpers.engine.duckdb_engine import DuckDBEngine
from helpers.engine.settings import EngineSettings, SparkSettings

__all__ = ["Engine", "EngineError", "DuckDBEngine", "EngineSettings", "SparkSettings", "connect", "open_report_engine",
           "quote_ident", "sql_literal", "dataset_tables", "spark_dataset_sources"]


def dataset_tables(dataset) -> dict[str, str]:
    """The table files behind a :class:`helpers.data.Dataset` (name -> path), for Spark: the files of a folder,
    or those a run's snapshot by reference points to (``dataset.file_references``, checked unchanged when the
    snapshot was loaded). Empty for other sources (a DuckDB file, a copy snapshot, a source set). These are the
    raw files: :func:`spark_dataset_sources` adds the dataset's column mapping, types and as-of cut."""
    from pathlib import Path  # noqa: PLC0415

    from helpers.data import FILE_SUFFIXES, TABLE_ORDER  # noqa: PLC0415

    folder = Path(dataset.source)
    out = {}
    if folder.is_dir():
        for name in TABLE_ORDER:
            for suffix in FILE_SUFFIXES:
                if (folder / f"{name}{suffix}").exists():
                    out[name] = str(folder / f"{name}{suffix}")
                    break
    else:
        for name in TABLE_ORDER:
            ref = (getattr(dataset, "file_references", None) or {}).get(name)
            if name in getattr(dataset, "tables", TABLE_ORDER) and ref and Path(str(ref.get("path", ""))).is_file():
                out[name] = str(ref["path"])
    return out


def spark_dataset_sources(dataset) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """:func:`helpers.engine.spark_engine.spark_dataset_sources` (in the Spark extra's module: it needs SQLGlot)."""
    from helpers.engine.spark_engine import spark_dataset_sources as sources  # noqa: PLC0415

    return sources(dataset)


def connect(settings: EngineSettings | Mapping | None = None, tables: Mapping[str, str] | None = None,
            dataset=None) -> Engine:
    """The engine ``settings`` select (an :class:`EngineSettings` or its dict). DuckDB with a ``dataset`` and no
    table paths: the dataset's validated views; Spark: the settings' tables, else ``tables``, else the
    dataset's files."""
    if settings is None:
        settings = EngineSettings()
    elif not isinstance(settings, EngineSettings):
        settings = EngineSettings.model_validate(dict(settings))
    paths = {**(tables or {}), **settings.tables}
    if settings.kind == "duckdb":
        if dataset is not None and not paths:
            return DuckDBEngine(dataset.con, max_result_rows=settings.max_result_rows)
        return DuckDBEngine(tables=paths, max_result_rows=settings.max_result_rows, settings=settings.duckdb)
    from helpers.engine.spark_engine import SparkEngine  # noqa: PLC0415

    views: list[tuple[str, str]] = []
    if not paths and dataset is not None:
        paths, views = spark_dataset_sources(dataset)
    if not paths:
        raise EngineError("spark engine: no tables: set engine.tables in params/report.yaml (name: Parquet path "
                          "or catalog table), or use a data_source folder of Parquet/CSV files")
    return SparkEngine(paths, views=views, master=settings.spark.master, app_name=settings.spark.app_name,
                       conf=settings.spark.conf, max_result_rows=settings.max_result_rows)


def open_report_engine(dataset, config=None) -> tuple[Engine | None, str | None]:
    """``(engine, note)``: the engine a report's ``config.engine`` (params/report.yaml ``engine:``; DuckDB by
    default) selects, over ``dataset``. When it cannot be opened (Spark not installed or unreachable, no
    tables), ``engine`` is None and ``note`` says why in one sentence for the page; the caller then uses its
    in-memory path. The caller closes the engine. One rule for every report (department, drivers, retention,
    voice, worth)."""
    settings = getattr(config, "engine", None) or EngineSettings()
    if not isinstance(settings, EngineSettings):
        settings = EngineSettings.model_validate(dict(settings))
    if settings.kind == "duckdb" and not settings.tables and getattr(dataset, "con", None) is None:
        return None, None
    try:
        return connect(settings, dataset=dataset), None
    except (KitError, OSError, ImportError) as exc:
        from helpers.formatting import shorten  # noqa: PLC0415

        return None, (f"The {settings.kind} engine could not be opened ({shorten(str(exc), 160)}); these "
                      "figures were computed in memory.")
