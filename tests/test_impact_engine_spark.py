"""The worth chain's engine inputs (helpers.engine.worth_sample) on Apache Spark (local mode) equal DuckDB's on
the seeded test demo: the same sampled customers, per-customer rating summaries and cross-products, answers per
department, population cells and an objective's rating distribution. One SparkSession, one test (slow)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.engine import DuckDBEngine
from helpers.engine import worth_sample as WS
from helpers.engine.spark_engine import spark_unavailable_reason

REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"Spark engine tests need Spark: {REASON}"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def tables(request) -> dict[str, str]:
    env = os.environ.get("SATISFACTION_KIT_DATA")
    folder = Path(env) if env and (Path(env) / "customers.parquet").exists() else request.getfixturevalue("small_demo")
    return {t: str(folder / f"{t}.parquet") for t in ("customers", "responses")}


def _same(a: pd.DataFrame, b: pd.DataFrame, what: str, **kw) -> None:
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, **kw)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def test_worth_sample_on_spark_equals_duckdb(tables):
    from helpers.engine.spark_engine import SparkEngine, start_spark_session

    session = start_spark_session("local[1]", "kit-tests-worth", {"spark.sql.shuffle.partitions": 2,
                                                                 "spark.default.parallelism": 1})
    spark = SparkEngine(tables, session=session)
    try:
        as_of = pd.Timestamp("2026-06-30")
        with DuckDBEngine(tables=tables) as duck:
            d = WS.worth_sample(duck, 400, seed=5, as_of=as_of)
            dist_d = WS.rating_distribution(duck, "nps", "Billing", {"channel": ["email", "chat"]},
                                            as_of - pd.DateOffset(months=12), as_of)
        s = WS.worth_sample(spark, 400, seed=5, as_of=as_of)
        dist_s = WS.rating_distribution(spark, "nps", "Billing", {"channel": ["email", "chat"]},
                                        as_of - pd.DateOffset(months=12), as_of)
    finally:
        spark.close()
        session.stop()
    assert (s.size, s.population_size) == (d.size, d.population_size) and not s.covers_all
    cols = ["customer_id", "segment", "monthly_revenue", "_cell"]
    _same(s.customers[cols], d.customers[cols], "sampled customers")
    for c in ("signup_date", "end_date"):
        day = [pd.to_datetime(x.customers[c]).dt.strftime("%Y-%m-%d").fillna("") for x in (s, d)]
        assert day[0].tolist() == day[1].tolist(), c
    for m in d.ratings:
        _same(s.ratings[m], d.ratings[m], f"{m} summaries", rtol=1e-9)
    _same(s.crossproducts.reset_index(), d.crossproducts.reset_index(), "cross-products", rtol=1e-12)
    key = ["customer_id", "department"]
    _same(s.department_answers.sort_values(key, na_position="first"),
          d.department_answers.sort_values(key, na_position="first"), "answers per department")
    _same(s.population.reset_index(), d.population.reset_index(), "population cells", rtol=1e-12)
    for a, b in zip(dist_s, dist_d):
        np.testing.assert_array_equal(a, b)
