"""Funnels from engine aggregates (issue 14) equal the row-level :func:`helpers.funnel.funnel` on the seeded test
demo: one department's tickets over six months, by team and by agent, for every KPI kind the funnel supports
(proportions, means, medians of hours), and survey KPIs by channel. Units, n, flags and texts identical; values,
limits and curves within 1e-9 (hours are summed in another order, SDs come from sums of squares)."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.engine import DuckDBEngine
from helpers.errors import KitError
from helpers.funnel import funnel, funnel_from_engine

START, END = pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def ds(demo_dir):
    return load_dataset(demo_dir, emit_warnings=False)


def rows(ds, table: str, department: str, date_column: str) -> pd.DataFrame:
    frame = ds.frame(table, department=department)
    d = pd.to_datetime(frame[date_column])
    return frame[(d >= START) & (d < END + pd.Timedelta(days=1))]


def assert_same_funnel(got, want, what: str) -> None:
    assert (got.metric, got.by, got.n_total, got.method, got.notes) == (want.metric, want.by, want.n_total,
                                                                        want.method, want.notes), what
    assert got.centre == pytest.approx(want.centre, rel=0, abs=1e-9), what
    assert got.tau2 == pytest.approx(want.tau2, rel=1e-9, abs=1e-12), what
    assert (np.isnan(got.phi) and np.isnan(want.phi)) or got.phi == pytest.approx(want.phi, rel=1e-9), what
    pd.testing.assert_frame_equal(got.table, want.table, check_dtype=False, check_exact=False, rtol=0, atol=1e-9,
                                  obj=f"{what} table")
    pd.testing.assert_frame_equal(got.curve, want.curve, check_dtype=False, check_exact=False, rtol=0, atol=1e-9,
                                  obj=f"{what} curve")


@pytest.mark.parametrize("metric", ["fcr", "reopen_rate", "first_response_hours", "resolution_hours",
                                    "resolution_hours_mean"])
@pytest.mark.parametrize("by", ["team", "agent_id"])
def test_ticket_funnels_from_the_engine_equal_the_row_funnels(ds, metric, by):
    from helpers.kpis import KPIS

    department = "Customer Service"
    want = funnel(rows(ds, "tickets", department, KPIS[metric].date_column), metric, by)
    with DuckDBEngine(ds.con) as eng:
        got = funnel_from_engine(eng, metric, by, filters={"department": department.lower()}, start=START, end=END)
    assert len(want.table) >= 2
    assert_same_funnel(got, want, f"{metric} by {by}")


@pytest.mark.parametrize("metric", ["nps", "csat", "ces"])
def test_survey_funnels_by_channel_from_the_engine_equal_the_row_funnels(ds, metric):
    want = funnel(rows(ds, "responses", "Billing", "response_date"), metric, "channel", min_n=2)
    with DuckDBEngine(ds.con) as eng:
        got = funnel_from_engine(eng, metric, "channel", filters={"department": "Billing"}, start=START, end=END,
                                 min_n=2)
    assert_same_funnel(got, want, metric)


def test_engine_funnel_refuses_what_the_row_funnel_refuses(ds):
    with DuckDBEngine(ds.con) as eng:
        with pytest.raises(KitError, match="no column 'team'"):
            funnel_from_engine(eng, "nps", "team", filters={"department": "Billing"})
        with pytest.raises(KitError, match="no per-unit rate"):
            funnel_from_engine(eng, "ticket_volume", "team")
        with pytest.raises(KitError, match="no .* values with a team"):
            funnel_from_engine(eng, "fcr", "team", filters={"department": "Billing"}, start="2001-01-01",
                               end="2001-01-31")
