"""A department report computed with ``engine: {kind: spark}`` gives the page the same numbers as with DuckDB, on a
run's snapshot of the seeded test demo (the run's ``data.duckdb``: views over the source Parquet files, by
reference; Spark reads the referenced files through the dataset's typed, cut views, helpers.engine.
spark_dataset_sources).

One SparkSession for the module (local[1], 2 shuffle partitions): the report's engines each work in a
``newSession()`` of it (helpers.engine.spark_engine.process_spark_session), as in a report kernel. Every Spark
query of the report is recorded: none may fail (a failing query would silently fall back to the row path and
hide a transpilation bug). Skipped, with the reason, only when pyspark/sqlglot or Java are missing.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import yaml

from helpers.engine.spark_engine import spark_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"Spark engine tests need Spark: {REASON}"),
              pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

DEPARTMENT = "customer_service"
AS_OF = "2026-10-31"


@pytest.fixture(scope="module")
def demo(request) -> Path:
    env = os.environ.get("SATISFACTION_KIT_DATA")
    folder = Path(env) if env and (Path(env) / "customers.parquet").exists() else request.getfixturevalue("small_demo")
    return folder.resolve()


@pytest.fixture(scope="module")
def session():
    from helpers.engine.spark_engine import start_spark_session

    spark = start_spark_session("local[1]", "kit-tests-reports", {"spark.sql.shuffle.partitions": 2,
                                                                  "spark.default.parallelism": 1})
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def snapshot(demo, tmp_path_factory) -> Path:
    """The run's data.duckdb as the runner writes it: validated, cut at the as-of date, by reference."""
    from helpers.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(demo, as_of=AS_OF, emit_warnings=False)
    try:
        path = ds.snapshot(tmp_path_factory.mktemp("run") / "data.duckdb", by_reference=True)
    finally:
        ds.close()
    return path


def _config(folder: Path, engine: dict | None) -> Path:
    raw = yaml.safe_load((ROOT / "params" / "report.yaml").read_text(encoding="utf-8")) or {}
    raw.pop("engine", None)
    if engine:
        raw["engine"] = engine
    path = folder / ("report-spark.yaml" if engine else "report-duckdb.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _page(snapshot: Path, config: Path, summary: Path) -> dict:
    """What the department notebook computes and writes (its cells, in order), as JSON-ready data."""
    import matplotlib

    matplotlib.use("Agg")
    from helpers.objectives_report import prepare_department_report
    from helpers.reports import write_report_summary

    report = prepare_department_report(DEPARTMENT, data_source=str(snapshot), report_config=str(config),
                                       as_of=AS_OF)
    funnels, _notes = report.funnels()
    analysis, _message = report.drivers()
    write_report_summary(summary, title=report.title, department=report.department,
                         status_counts=report.status_counts(), warnings=report.reader_warnings(),
                         headline=report.headline(), objectives=report.summary_objectives(),
                         kpis=report.summary_kpis(), charts=report.charts_shown)
    return {"summary": json.loads(summary.read_text(encoding="utf-8")),
            "funnels": [report.funnel_table_html(item) for item in funnels],
            "call_backs": report.call_backs_html(),  # the follow-up list and contacted-within on the engine
            "drivers": None if analysis is None else analysis.table.round(9).to_dict("records")}


def _differences(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ (numbers within 1e-9 relative: sums in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only on one side" for k in set(a) ^ set(b)]
        return out + [d for k in a.keys() & b.keys() for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            return []
        return [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_department_page_on_spark_equals_duckdb(session, snapshot, tmp_path, monkeypatch):
    from helpers.engine.spark_engine import SparkEngine

    duck = _page(snapshot, _config(tmp_path, None), tmp_path / "duckdb.json")

    queries, failures = [], []
    run = SparkEngine._run

    def recorded(self, sql):
        queries.append(sql)
        try:
            return run(self, sql)
        except Exception as exc:
            failures.append(f"{exc}")
            raise

    monkeypatch.setattr(SparkEngine, "_run", recorded)
    spark = _page(snapshot, _config(tmp_path, {"kind": "spark", "spark": {"master": "local[1]"}}),
                  tmp_path / "spark.json")
    assert queries, "the report never queried Spark (it fell back before opening the engine)"
    assert not failures, "Spark queries failed (the page fell back to rows):\n" + "\n".join(failures[:5])
    assert not [w for w in spark["summary"].get("warnings", []) if "engine" in str(w).lower()], \
        spark["summary"]["warnings"]

    objectives = duck["summary"]["objectives"]
    assert objectives and duck["summary"]["kpis"], "the department has objectives and KPI tiles to compare"
    problems = _differences(duck, spark)
    assert not problems, "the Spark page differs from the DuckDB page:\n" + "\n".join(problems[:20])


def test_spark_reads_a_snapshot_cut_like_duckdb(session, demo, tmp_path):
    """A run's snapshot read back with an earlier as-of date: Spark sees the same rows as DuckDB (the cut and
    the later events read as empty), not the whole referenced files."""
    from helpers.data import load_dataset
    from helpers.engine import DuckDBEngine, EngineSettings, connect, dataset_tables, spark_dataset_sources

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(demo, emit_warnings=False)
        path = ds.snapshot(tmp_path / "data.duckdb", by_reference=True)
        ds.close()
        snap = load_dataset(path, validate=False, emit_warnings=False, as_of="2026-03-31")
    try:
        assert snap.storage == "reference"
        assert set(dataset_tables(snap)) == set(snap.tables)  # the referenced files
        files, views = spark_dataset_sources(snap)
        assert sorted(files.values()) == sorted(str(Path(r["path"])) for r in snap.file_references.values())
        assert [name for name, _ in views if not name.startswith("__kit_")] == list(snap.tables)
        sql = ("SELECT (SELECT count(*) FROM responses) AS responses, (SELECT max(response_date) FROM responses) "
               "AS last_answer, (SELECT count(end_date) FROM customers) AS ended, (SELECT max(end_date) FROM "
               "customers) AS last_end, (SELECT count(resolved_at) FROM tickets) AS resolved, "
               "(SELECT count(*) FROM org) AS people")
        with connect(EngineSettings(kind="spark", spark={"master": "local[1]"}), dataset=snap) as spark, \
                DuckDBEngine(snap.con) as duck:
            got, want = spark.query(sql).iloc[0].to_dict(), duck.query(sql).iloc[0].to_dict()
            leaf = next(name for name, file in files.items() if Path(file).name == "responses.parquet")
            raw = spark.query(f"SELECT count(*) AS n FROM {leaf}")["n"].iloc[0]
        assert got == want
        assert str(want["last_answer"])[:10] <= "2026-03-31" and str(want["last_end"])[:10] <= "2026-03-31"
        assert raw > want["responses"]  # the referenced file has later answers: the cut is Spark's too
    finally:
        snap.close()
