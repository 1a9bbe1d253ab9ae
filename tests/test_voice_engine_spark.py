"""The voice aggregates on Apache Spark (local mode) equal DuckDB's on the seeded test demo: the run's shared
window aggregates (theme patterns by department through the portable matcher, the previous window's counts, the
negative examples), monthly theme trends and the seeded comment sample. One SparkSession (local[1]); skipped,
with the reason, only when pyspark/sqlglot or Java are missing."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.engine import DuckDBEngine
from helpers.engine.spark_engine import spark_unavailable_reason

REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"Spark engine tests need Spark: {REASON}"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

START, END = "2025-11-01", "2026-10-31"


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)


def test_voice_aggregates_on_spark_equal_duckdb(small_demo):
    from helpers.engine.spark_engine import SparkEngine, start_spark_session
    from helpers.voice_effects import PATTERN_WEIGHT, comment_sample, theme_trends
    from helpers.voice_report import _compute_window_themes, load_themes, window_themes

    ds = load_dataset(small_demo, emit_warnings=False)
    cb = load_themes()
    duck = window_themes(ds, START, END, cb, engine=DuckDBEngine(ds.con), cache_folder=None)
    session = start_spark_session("local[1]", "kit-voice-tests", {"spark.sql.shuffle.partitions": 2,
                                                                 "spark.default.parallelism": 1})
    spark = SparkEngine({t: str(small_demo / f"{t}.parquet") for t in ("responses",)}, session=session)
    try:
        on_spark = _compute_window_themes(ds, cb, pd.Timestamp(START), pd.Timestamp(END), duck.settings,
                                          engine=spark)
        keys = ["department", "csat", "nps", *ds.attributes, *cb.names]
        pd.testing.assert_frame_equal(_sorted(on_spark.patterns, keys), _sorted(duck.patterns, keys),
                                      check_dtype=False)
        assert int(on_spark.patterns[PATTERN_WEIGHT].sum()) == int(duck.patterns[PATTERN_WEIGHT].sum()) > 1000
        pd.testing.assert_frame_equal(_sorted(on_spark.previous, ["department"]),
                                      _sorted(duck.previous, ["department"]), check_dtype=False)
        pd.testing.assert_frame_equal(on_spark.verbatims.reset_index(drop=True),
                                      duck.verbatims.reset_index(drop=True), check_dtype=False)
        pd.testing.assert_frame_equal(theme_trends(spark, cb, "month", None, END, "Billing").table,
                                      theme_trends(DuckDBEngine(ds.con), cb, "month", None, END, "Billing").table,
                                      check_dtype=False)
        a = comment_sample(spark, START, END, None, 300, seed=5)
        b = comment_sample(DuckDBEngine(ds.con), START, END, None, 300, seed=5)
        assert a.attrs == b.attrs and a.attrs["sampled"]
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    finally:
        spark.close()
        session.stop()
