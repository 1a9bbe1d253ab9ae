"""The same engine queries on Apache Spark (local mode) give the same aggregates as DuckDB, on the seeded test demo.

One SparkSession per module (local[1], 2 shuffle partitions, no UI): starting it takes seconds, so the checks are
few and each covers many aggregates. Skipped, with the reason, only when pyspark/sqlglot (the ``spark`` extra)
or Java are missing; ``make test`` installs the extra.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from helpers.engine import DuckDBEngine, EngineSettings, dataset_tables
from helpers.engine import aggregates as A
from helpers.engine import poisson_bootstrap as P
from helpers.engine.spark_engine import spark_unavailable_reason

REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"Spark engine tests need Spark: {REASON}"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def tables(request) -> dict[str, str]:
    env = os.environ.get("SATISFACTION_KIT_DATA")
    folder = Path(env) if env and (Path(env) / "customers.parquet").exists() else request.getfixturevalue("small_demo")
    return {t: str(folder / f"{t}.parquet") for t in ("customers", "responses", "tickets")}


@pytest.fixture(scope="module")
def spark(tables):
    from helpers.engine.spark_engine import SparkEngine, start_spark_session

    session = start_spark_session("local[1]", "kit-tests", {"spark.sql.shuffle.partitions": 2,
                                                           "spark.default.parallelism": 1})
    engine = SparkEngine(tables, session=session)
    yield engine
    engine.close()
    session.stop()


@pytest.fixture(scope="module")
def duck(tables):
    with DuckDBEngine(tables=tables) as engine:
        yield engine


def _same(a: pd.DataFrame, b: pd.DataFrame, what: str = "", **kw):
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, **kw)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def test_kpi_aggregates_and_quantiles_equal_duckdb(spark, duck):
    """Counts and integer sums are identical; sums of hours (doubles) agree to rounding (their order of
    addition differs between engines); order statistics are identical."""
    for metric in ("csat", "nps", "ces", "fcr", "reopen_rate", "ticket_volume", "resolution_hours_mean"):
        _same(A.kpi_aggregates(spark, metric, freq="month", by="department"),
              A.kpi_aggregates(duck, metric, freq="month", by="department"), metric, rtol=1e-10)
    _same(A.kpi_series_from_aggregates(spark, "resolution_hours", freq="quarter", by="department"),
          A.kpi_series_from_aggregates(duck, "resolution_hours", freq="quarter", by="department"))
    _same(A.kpi_series_from_aggregates(spark, "nps", freq=None, by="department", start="2025-01-01", end="2025-12-31"),
          A.kpi_series_from_aggregates(duck, "nps", freq=None, by="department", start="2025-01-01", end="2025-12-31"),
          rtol=0, atol=0)


def test_survival_sbg_and_cox_sample_equal_duckdb(spark, duck):
    _same(A.survival_counts(spark, by="segment"), A.survival_counts(duck, by="segment"), "survival")
    _same(A.sbg_counts(spark, by="segment"), A.sbg_counts(duck, by="segment"), "sbg")
    _same(A.cox_sample(spark, 300, seed=4), A.cox_sample(duck, 300, seed=4), "cox sample")
    _same(A.retention_rate_counts(spark, by="segment"), A.retention_rate_counts(duck, by="segment"), "rates")


def test_driver_moments_with_poisson_replicates_equal_duckdb(spark, duck):
    drivers = ["attr_speed", "attr_resolution", "attr_courtesy"]
    got = P.driver_moments(spark, "csat", drivers, by="department", n_boot=20, seed=3)
    want = P.driver_moments(duck, "csat", drivers, by="department", n_boot=20, seed=3)
    _same(got, want)  # integer sums: identical, replicate weights included
    _same(P.driver_importance_from_moments(got), P.driver_importance_from_moments(want))


def test_settings_select_spark_and_name_missing_tables(spark):
    from helpers.engine import EngineError, connect

    with pytest.raises(EngineError, match="no tables"):
        connect(EngineSettings(kind="spark"))
    assert spark.has("responses") and "csat" in spark.columns("responses")


def test_department_objectives_on_spark_equal_duckdb(spark, tables):
    """One department's objectives evaluated with the Spark engine (series, windows, baselines, forecasts,
    period-over-period tests, tiles) give the page DuckDB gives: statuses and texts identical, numbers within
    1e-9; and a KPI series filtered by a customer column (joined on the engine) equals DuckDB's."""
    from helpers.data import load_dataset
    from helpers.kpi_tiles import tiles_from_evaluation
    from helpers.objectives import evaluate_objectives, load_department

    ds = load_dataset(Path(tables["customers"]).parent, emit_warnings=False)
    plan = load_department("billing")  # team and agent filters, NPS, CSAT, FCR, median hours
    want = evaluate_objectives(plan, ds, min_responses=30)
    got = evaluate_objectives(plan, ds, min_responses=30, engine=spark)
    _same(got.table, want.table, "objectives", check_exact=False, rtol=0, atol=1e-9)
    assert set(got.series) == set(want.series)
    for oid, s in want.series.items():
        _same(got.series[oid], s, oid, check_exact=False, rtol=0, atol=1e-9)
    for oid, c in want.changes.items():
        assert (c is None) == (got.changes[oid] is None) and (c is None or c.describe() == got.changes[oid].describe())
    assert [t.to_summary() for t in tiles_from_evaluation(got)] == [t.to_summary() for t in tiles_from_evaluation(want)]
    seg = ds.customers["segment"].dropna().iloc[0]
    f = {"department": "billing", "segment": seg.upper()}
    _same(A.kpi_series_from_aggregates(spark, "fcr", freq="quarter", filters=f, resolve=True),
          A.kpi_series_from_aggregates(DuckDBEngine(ds.con), "fcr", freq="quarter", filters=f, resolve=True),
          "fcr by segment", check_exact=True)


def test_rating_patterns_with_missing_values_equal_duckdb(spark, duck):
    """The department driver analysis' aggregate (distinct rating patterns, missing values kept) on Spark."""
    from helpers.drivers_analysis import analyze_drivers_from_patterns

    cols = ["csat", "attr_speed", "attr_resolution", "attr_value"]
    kw = {"filters": {"department": "Billing"}, "start": "2025-11-01", "end": "2026-10-31"}
    got, want = P.rating_patterns(spark, cols, **kw), P.rating_patterns(duck, cols, **kw)
    assert want[["x0", "x1"]].isna().any().any()  # missing values are patterns too
    _same(got, want)
    a = analyze_drivers_from_patterns(got, "csat", cols[1:], n_boot=0).table
    b = analyze_drivers_from_patterns(want, "csat", cols[1:], n_boot=0).table
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_department_funnels_on_spark_equal_duckdb(spark, duck):
    """Team and agent funnels (a proportion, a median of hours) from Spark aggregates equal DuckDB's."""
    from helpers.funnel import funnel_from_engine

    for metric, by in (("fcr", "team"), ("first_response_hours", "agent_id")):
        kw = dict(filters={"department": "Billing"}, start="2025-07-01", end="2025-12-31")
        got, want = funnel_from_engine(spark, metric, by, **kw), funnel_from_engine(duck, metric, by, **kw)
        assert (got.n_total, got.notes, got.method) == (want.n_total, want.notes, want.method)
        assert got.centre == pytest.approx(want.centre, rel=0, abs=1e-9)
        _same(got.table, want.table, f"{metric} by {by}", check_exact=False, rtol=0, atol=1e-9)
        _same(got.curve, want.curve, f"{metric} by {by} curve", check_exact=False, rtol=0, atol=1e-9)
