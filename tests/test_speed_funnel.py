"""A median KPI's funnel from the engine asks for the department's quantiles once (every limit's quantile in one
query), with the same result as the row funnel (tests/test_funnel_engine.py checks every kind)."""
from __future__ import annotations


import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.engine import DuckDBEngine
from helpers.funnel import funnel, funnel_from_engine

START, END = pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def ds(demo_dir):
    return load_dataset(demo_dir, emit_warnings=False)


@pytest.mark.parametrize("by", ["team", "agent_id"])
def test_median_funnel_reads_the_department_quantiles_in_one_query(ds, by, monkeypatch):
    from helpers.engine import aggregates

    calls = []
    real = aggregates.quantile_aggregates
    monkeypatch.setattr(aggregates, "quantile_aggregates", lambda *a, **k: calls.append(k.get("by")) or real(*a, **k))
    with DuckDBEngine(ds.con) as eng:
        got = funnel_from_engine(eng, "resolution_hours", by, filters={"department": "customer service"},
                                 start=START, end=END)
    # the units' medians, the department's median (the centre), then the department's quantiles at every limit
    # in one query (95% and 99.8%, at every unit's n and along the curve); before, each set of limits asked
    # again (8 queries per funnel)
    assert calls == [[by], None, None]
    frame = ds.frame("tickets", department="Customer Service")
    d = pd.to_datetime(frame["created_at"])
    want = funnel(frame[(d >= START) & (d < END + pd.Timedelta(days=1))], "resolution_hours", by)
    pd.testing.assert_frame_equal(got.table, want.table, check_dtype=False, check_exact=False, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(got.curve, want.curve, check_dtype=False, check_exact=False, rtol=0, atol=1e-9)
