"""KPI comparisons on Apache Spark (local mode) equal DuckDB's and the row path's, on the seeded test demo.

Reuses the Spark session fixtures of tests/test_engine_spark.py (one local[1] session for the module). One test:
every comparison kind, a joined segment filter, retention counts and the median bootstrap both on all values and
on a seeded hash sample (the same sample on both engines, so the same numbers).
"""
from __future__ import annotations

import pytest

from helpers import kpis as K
from helpers.data import load_dataset
from helpers.engine import aggregates as A
from helpers.engine.spark_engine import spark_unavailable_reason
from test_engine_spark import duck, spark, tables  # noqa: F401 - the module's Spark session fixtures

REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"Spark engine tests need Spark: {REASON}"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PERIODS = (("2025-01-01", "2025-03-31"), ("2025-04-01", "2025-05-31"))


def _same(got: K.Comparison, ref: K.Comparison, what: str) -> None:
    assert (got.method, got.labels, got.sample, got.a.n, got.b.n) == (ref.method, ref.labels, ref.sample, ref.a.n,
                                                                      ref.b.n), what
    for f in ("difference", "ci_low", "ci_high", "p_value"):
        assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-9, abs=1e-9), (what, f)
    for side in ("a", "b"):
        e, r = getattr(got, side), getattr(ref, side)
        assert (e.value, e.ci_low, e.ci_high) == pytest.approx((r.value, r.ci_low, r.ci_high), rel=1e-9,
                                                               abs=1e-9), (what, side)


def test_comparisons_on_spark_equal_duckdb_and_the_rows(spark, duck, tables):  # noqa: F811
    from pathlib import Path

    ds = load_dataset(Path(tables["customers"]).parent, emit_warnings=False)
    try:
        for metric in ("csat", "nps", "ces", "fcr", "ticket_volume", "resolution_hours_mean", "first_response_hours",
                       "retention_rate"):
            f = {"segment": "consumer"} if metric == "retention_rate" else {"department": "Billing",
                                                                              "segment": "consumer"}
            ref = K.compare_kpi(metric, ds, filters=f, period_a=PERIODS[0], period_b=PERIODS[1])
            on_duck = A.compare_from_aggregates(duck, metric, f, *PERIODS)
            on_spark = A.compare_from_aggregates(spark, metric, f, *PERIODS)
            _same(on_duck, ref, f"{metric} duckdb")
            _same(on_spark, ref, f"{metric} spark")
        sampled = [A.compare_from_aggregates(e, "resolution_hours", {"department": "Technical Support"}, *PERIODS,
                                             max_sample=150, seed=5) for e in (duck, spark)]
        assert sampled[0].sample["a"][0] == 150
        _same(sampled[1], sampled[0], "sampled median")
    finally:
        ds.close()
