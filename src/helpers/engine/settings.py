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

How ``helpers.config`` is meant to use it: ``engine: EngineSettings = EngineSettings()`` as a field of
``ReportConfig`` (this model is strict and frozen like the config's own models), then
``config.engine.connect(tables=..., dataset=...)`` where the reports need an engine.
"""
from __future__ import annotations

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


class EngineSettings(BaseModel):
    """``engine:`` of params/report.yaml (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["duckdb", "spark"] = "duckdb"
    tables: dict[str, str] = Field(default_factory=dict)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    max_result_rows: int = Field(default=1_000_000, gt=0)

    def connect(self, tables: Mapping[str, str] | None = None, dataset=None):
        """An :class:`helpers.engine.Engine` for these settings. ``tables`` (name -> path or catalog table)
        complete ``self.tables`` (the settings win); ``dataset`` (a :class:`helpers.data.Dataset`) gives the
        DuckDB engine its validated views."""
        from helpers.engine import connect  # noqa: PLC0415

        return connect(self, tables=tables, dataset=dataset)
