"""The ``engine:`` section of ``params/report.yaml``: which engine computes the aggregates, and where.

>>> settings = EngineSettings.model_validate({"kind": "spark", "spark": {"master": "local[2]"}})
>>> engine = settings.connect(tables={"responses": "data/demo/responses.parquet"})

Fields (documented for users in ``params/README.md``, section "Engine"):

* ``kind``: ``duckdb`` (default; embedded, nothing to set up) or ``spark`` (Apache Spark through PySpark,
  the ``spark`` extra: ``pip install -e '.[spark]'``).
* ``tables``: table name -> where it is: a Parquet file or folder (``*.parquet``), a CSV file, or for Spark a
  table of its catalog (``db.table``: a Hive/Unity/Glue table the cluster knows). Empty: the tables of the
  run's ``data_source`` (its validated DuckDB views for DuckDB, its Parquet files for Spark).
* ``spark.master``: ``local[2]`` (default: two cores of this machine), ``spark://host:7077``, ``yarn``,
  ``k8s://...``; ``null`` leaves it to ``spark-submit``/the environment (a managed cluster).
* ``spark.app_name``; ``spark.conf``: any Spark settings as ``key: value`` (``spark.executor.memory``,
  ``spark.sql.shuffle.partitions``...), applied when the session is built.
* ``max_result_rows``: a query whose answer has more rows than this is refused (aggregates, not rows).
* ``duckdb.memory_limit`` (default ``768MB``), ``duckdb.threads`` (default: DuckDB's, one per core),
  ``duckdb.temp_directory`` (default: the system temp folder): every DuckDB connection the kit opens (the
  dataset's, :class:`~helpers.engine.DuckDBEngine`'s) gets them (:func:`helpers.engine.duckdb_engine.configure`),
  instead of DuckDB's own defaults (80% of the machine's memory per connection, spilling into ``.tmp`` of the
  working folder). Past the limit DuckDB spills to disk in a folder of its own per connection inside
  ``temp_directory``, removed when the connection closes. :func:`use_duckdb_settings` makes them the
  process's default; ``helpers.config.load_report_config`` calls it, so a report's kernel (and the runner)
  uses the ``engine.duckdb`` of the report.yaml it read.

How ``helpers.config`` is meant to use it: ``engine: EngineSettings = EngineSettings()`` as a field of
``ReportConfig`` (this model is strict and frozen like the config's own models), then
``config.engine.connect(tables=..., dataset=...)`` where the reports need an engine.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENGINE_KINDS = ("duckdb", "spark")


class SparkSettings(BaseModel):
    """How to reach Spark: a master URL and Spark settings (``spark.*`` keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str | None = "local[2]"
    app_name: str = "satisfaction-kit"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not str(k).startswith("spark.")]
        if bad:
            raise ValueError(f"Spark settings start with 'spark.' (e.g. spark.executor.memory); got {bad[:5]}")
        return value


MEMORY_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


class DuckDBSettings(BaseModel):
    """DuckDB's resources per connection the kit opens: ``memory_limit`` (``"768MB"``; DuckDB's own default,
    80% of RAM per connection, lets several report kernels each grow to GBs; ``null`` restores it), ``threads``
    (None: one per core) and ``temp_directory`` (where connections spill past the limit; None: the system temp
    folder; each connection spills into a folder of its own inside it, removed when it closes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_limit: str | None = "768MB"
    threads: int | None = Field(default=None, gt=0)
    temp_directory: str | None = None

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None and not MEMORY_SIZE.match(str(value)):
            raise ValueError(f"a memory size such as 1GB, 512MB or 2GiB, got {value!r}")
        return None if value is None else str(value).strip().replace(" ", "")

    @field_validator("temp_directory")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and not str(value).strip():
            raise ValueError("a folder path (or leave it out: the system temp folder)")
        return value


_PROCESS_DUCKDB: DuckDBSettings | None = None


def use_duckdb_settings(settings: DuckDBSettings | Mapping | None) -> None:
    """Make ``settings`` the DuckDB settings of every connection this process opens from now on (None: the
    defaults). ``helpers.config.load_report_config`` calls it with the report config's ``engine.duckdb``."""
    global _PROCESS_DUCKDB
    if settings is not None and not isinstance(settings, DuckDBSettings):
        settings = DuckDBSettings.model_validate(dict(settings))
    _PROCESS_DUCKDB = settings


def process_duckdb_settings() -> DuckDBSettings:
    """The DuckDB settings of this process (:func:`use_duckdb_settings`; the defaults until it is called)."""
    return _PROCESS_DUCKDB if _PROCESS_DUCKDB is not None else DuckDBSettings()


class EngineSettings(BaseModel):
    """``engine:`` of params/report.yaml (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["duckdb", "spark"] = "duckdb"
    tables: dict[str, str] = Field(default_factory=dict)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    max_result_rows: int = Field(default=1_000_000, gt=0)
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)

    def connect(self, tables: Mapping[str, str] | None = None, dataset=None):
        """An :class:`helpers.engine.Engine` for these settings. ``tables`` (name -> path or catalog table)
        complete ``self.tables`` (the settings win); ``dataset`` (a :class:`helpers.data.Dataset`) gives the
        DuckDB engine its validated views."""
        from helpers.engine import connect  # noqa: PLC0415

        return connect(self, tables=tables, dataset=dataset)
