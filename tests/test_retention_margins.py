"""The department page's delayed-entry survival from entry and exit margins (bounded by days, not customers)
equals the curve on the customers' own (entry, exit) pairs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.duration.survfunc import SurvfuncRight

from helpers.engine import retention_queries as Q


def _margins(records: pd.DataFrame, group: str | None):
    by = [group] if group else []
    entries = records.groupby([*by, "entry_days"], as_index=False)["customers"].sum()
    exits = records.groupby([*by, "exit_days", "event"], as_index=False)["customers"].sum()
    return entries, exits


@pytest.mark.parametrize("seed", range(6))
def test_coupled_margins_give_statsmodels_curve_of_the_records(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    entry = rng.integers(0, 60, n)
    exit_ = entry + rng.integers(1, 90, n)  # time at risk after entering
    records = pd.DataFrame({"segment": rng.choice(["a", "b", "c"], n), "entry_days": entry, "exit_days": exit_,
                            "event": rng.integers(0, 2, n), "customers": rng.integers(1, 5, n)})
    for group in (None, "segment"):
        entries, exits = _margins(records, group)
        coupled = Q.couple_margins(entries, exits, group)
        assert (coupled["entry_days"] < coupled["exit_days"]).all()
        assert len(coupled) <= len(entries) + len(exits)
        e2, x2 = _margins(coupled, group)
        pd.testing.assert_frame_equal(e2, entries)
        pd.testing.assert_frame_equal(x2, exits)
        got = Q.delayed_entry_km_from_counts(coupled, group=group)
        want = Q.delayed_entry_km_from_counts(records, group=group)
        pd.testing.assert_frame_equal(got.table, want.table, check_exact=True)
        pd.testing.assert_frame_equal(got.medians, want.medians, check_exact=True)
    # and the records' curve is statsmodels' own on one row per customer
    rows = records.loc[records.index.repeat(records["customers"])]
    sf = SurvfuncRight(rows["exit_days"] / 30.4375, rows["event"], entry=rows["entry_days"] / 30.4375)
    np.testing.assert_allclose(Q.delayed_entry_km_from_counts(records).table["survival"], sf.surv_prob)


def test_couple_margins_refuses_margins_of_different_customers():
    entries = pd.DataFrame({"entry_days": [0, 3], "customers": [2, 1]})
    exits = pd.DataFrame({"exit_days": [5], "event": [1], "customers": [2]})
    with pytest.raises(ValueError, match="same customers"):
        Q.couple_margins(entries, exits)


@pytest.fixture(scope="module")
def demo_engine(demo_dir):
    from helpers.engine.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(tables={t: f"{demo_dir}/{t}.parquet" for t in ("customers", "tickets", "responses")})
    yield engine
    engine.close()


@pytest.mark.parametrize("as_of", ["2026-10-31", "2025-03-31"])
def test_department_survival_equals_the_joint_counts(demo_engine, as_of):
    until = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    for department in ("Billing", "Customer Service", "Marketing"):
        got, message = Q.department_survival(demo_engine, department, as_of=as_of)
        assert not message
        counts = Q.delayed_entry_counts(demo_engine, department, as_of=as_of, by="segment", contacts_until=until)
        want = Q.delayed_entry_km_from_counts(counts, group="segment")
        pd.testing.assert_frame_equal(got.table, want.table, check_exact=True)
        pd.testing.assert_frame_equal(got.medians, want.medians, check_exact=True)
        entries, exits, totals = Q.delayed_entry_margins(demo_engine, department, as_of=as_of, by="segment",
                                                         contacts_until=until)
        assert int(totals["customers"].sum()) == int(counts["customers"].sum())
        at_risk = counts[counts["entry_days"].clip(lower=0) < counts["exit_days"]]
        assert int(entries["customers"].sum()) == int(exits["customers"].sum()) == int(at_risk["customers"].sum())
        # one row per (segment, day): bounded by the number of days whatever the number of customers
        assert not entries.duplicated(["segment", "entry_days"]).any()
        assert not exits.duplicated(["segment", "exit_days", "event"]).any()


def test_no_time_at_risk_is_a_clear_error_and_no_contact_a_message():
    """A customer whose first contact is on the day they left has no time at risk after entering."""
    from helpers.engine.duckdb_engine import DuckDBEngine
    from helpers.errors import KitError

    day = pd.Timestamp("2024-01-01")
    customers = pd.DataFrame({"customer_id": ["a", "b"], "signup_date": [day, day],
                              "end_date": [day + pd.Timedelta(days=30), day + pd.Timedelta(days=40)],
                              "segment": ["x", "y"]})
    tickets = pd.DataFrame({"customer_id": ["a", "b"], "department": ["D", "D"],
                            "created_at": [day + pd.Timedelta(days=30, hours=9), day + pd.Timedelta(days=50)]})
    with DuckDBEngine() as engine:
        engine.register("customers", customers)
        engine.register("tickets", tickets)
        with pytest.raises(KitError, match="time at risk"):
            Q.department_survival(engine, "D", as_of=day + pd.Timedelta(days=100))
        km, message = Q.department_survival(engine, "E", as_of=day + pd.Timedelta(days=100))
        assert km is None and message == "No customers contacted E up to the as-of date."
