"""The retention pages without whole-table frames (issue 14): the cohort heatmap, the headline counts, the lifetime
values, the department page's curves with delayed entry (helpers.engine.retention_queries) equal the row-level
code exactly; the worth chain (corrected churn link, revenue at risk; helpers.engine.worth_sample) runs on a
seeded sample when the table is larger than its size, the page states it, and it agrees with the computation on
every customer within its intervals.
Known answers on hand-made data check the counts themselves (entered-before minus exited-before, survivors per
cohort, at risk and churned per month)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import retention as R
from helpers import retention_report as RR
from helpers.engine import DuckDBEngine
from helpers.engine import retention_queries as Q

ROOT = Path(__file__).resolve().parents[1]
N_BOOT = 40


@pytest.fixture(scope="module")
def ds(small_demo):
    from helpers.data import load_dataset

    data = load_dataset(str(small_demo))
    yield data
    data.close()


@pytest.fixture(scope="module")
def eng(ds):
    return DuckDBEngine(ds.con)


def _rows(monkeypatch, **kwargs) -> RR.RetentionReport:
    with monkeypatch.context() as m:
        m.setattr(RR, "open_report_engine", lambda *a, **k: (None, None))
        return RR.prepare_retention_report(n_boot=N_BOOT, **kwargs)


# ------------------------------------------------------------------------------------------ known answers
def _tiny_engine(customers: pd.DataFrame, **tables) -> DuckDBEngine:
    engine = DuckDBEngine()
    engine.register("customers", customers)
    for name, frame in tables.items():
        engine.register(name, frame)
    return engine


def test_cohort_counts_give_the_known_heatmap():
    """Two January customers (one leaves after 40 days), one February customer, as of 15 April: January is
    observed 2 whole months by its last member, February 1; cells after that are blank."""
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"],
                              "signup_date": pd.to_datetime(["2024-01-05", "2024-01-20", "2024-02-10"]),
                              "end_date": pd.to_datetime([None, "2024-02-29", None])})
    as_of = pd.Timestamp("2024-04-15")
    with _tiny_engine(customers) as engine:
        counts = Q.cohort_counts(engine, as_of)
    survived, exposure = Q.cohort_table_inputs(counts, as_of)
    longest = R.whole_months([(as_of - counts["first_signup"].min()).days / R.AVG_DAYS_PER_MONTH])[0]
    table = R.cohort_table_from_counts(survived, exposure, int(longest)).table
    # a: 101 days = 3.3 months; b: 40 days = 1.3 months; c: 65 days = 2.1 months; exposures 2 (b) and 2 (c)
    assert list(table.columns) == [0, 1, 2, 3]
    np.testing.assert_array_equal(table.loc["2024-01"].to_numpy(), [1.0, 1.0, 0.5, np.nan])
    np.testing.assert_array_equal(table.loc["2024-02"].to_numpy(), [1.0, 1.0, 1.0, np.nan])
    frame = R.customer_durations(customers, as_of=as_of)
    pd.testing.assert_frame_equal(R.cohort_table(frame).table, table)


def test_monthly_rates_count_the_known_customers():
    """At risk in a month: signed up before it and not churned before it; churned: of those, ended in it."""
    customers = pd.DataFrame({"customer_id": list("abcd"),
                              "signup_date": pd.to_datetime(["2024-01-05", "2024-01-20", "2024-02-10", "2024-03-01"]),
                              "end_date": pd.to_datetime([None, "2024-02-29", "2024-03-31", None])})
    frame = R.customer_durations(customers, as_of="2024-04-30")
    rates = R.monthly_retention_rates(frame, as_of="2024-04-30", min_at_risk=1)
    assert rates["month"].dt.strftime("%Y-%m").tolist() == ["2024-02", "2024-03", "2024-04"]
    assert rates["at_risk"].tolist() == [2, 2, 2] and rates["churned"].tolist() == [1, 1, 0]
    # the frame's event decides who churned: b's end date not counted as a churn -> active throughout
    kept = R.monthly_retention_rates(frame.assign(event=np.where(frame["customer_id"] == "b", 0, frame["event"])),
                                     as_of="2024-04-30", min_at_risk=1)
    assert kept["at_risk"].tolist() == [2, 3, 3] and kept["churned"].tolist() == [0, 1, 0]


def test_delayed_entry_counts_give_the_known_numbers_at_risk():
    """At risk at t: entered before t (entry < t) minus exited before t (exit < t)."""
    day = pd.Timestamp("2024-01-01")
    customers = pd.DataFrame({"customer_id": list("abc"), "signup_date": [day] * 3,
                              "end_date": [day + pd.Timedelta(days=100), day + pd.Timedelta(days=200), pd.NaT],
                              "segment": ["x"] * 3})
    tickets = pd.DataFrame({"customer_id": list("abc"), "department": ["D"] * 3,
                            "created_at": [day + pd.Timedelta(days=d, hours=9) for d in (10, 150, 20)]})
    responses = pd.DataFrame({"customer_id": ["c"], "department": ["D"], "response_date": [day + pd.Timedelta(days=5)]})
    with _tiny_engine(customers, tickets=tickets, responses=responses) as engine:
        counts = Q.delayed_entry_counts(engine, "D", as_of=day + pd.Timedelta(days=300))
        km, msg = Q.department_survival(engine, "D", as_of=day + pd.Timedelta(days=300))
    assert counts[["entry_days", "exit_days", "event"]].values.tolist() == [[5, 300, 0], [10, 100, 1], [150, 200, 1]]
    assert not msg and km.group is None  # one segment: no groups
    t = km.table
    # at day 100: a, c entered (b not yet) -> 2 at risk; at day 200: b, c -> 2 at risk
    assert t["at_risk"].tolist() == [2, 2] and t["events"].tolist() == [1, 1]
    np.testing.assert_allclose(t["time"], [100 / 30.4375, 200 / 30.4375])
    np.testing.assert_allclose(t["survival"], [0.5, 0.25])


# ------------------------------------------------------------------------------------------ equal to the rows
@pytest.mark.parametrize("as_of", ["2026-10-31", "2024-09-30"])
def test_cohorts_and_counts_equal_the_rows(ds, eng, as_of):
    day = pd.Timestamp(as_of)
    customers = ds.customers[pd.to_datetime(ds.customers["signup_date"]) <= day]
    frame = R.customer_durations(customers, as_of=day)
    for segment in (None, "enterprise"):
        sel = frame if segment is None else frame[frame["segment"] == segment]
        counts = Q.cohort_counts(eng, day, filters=None if segment is None else {"segment": segment})
        survived, exposure = Q.cohort_table_inputs(counts, day)
        longest = R.whole_months([(day - counts["first_signup"].min()).days / R.AVG_DAYS_PER_MONTH])[0]
        got = R.cohort_table_from_counts(survived, exposure, int(longest))
        want = R.cohort_table(sel)
        pd.testing.assert_frame_equal(got.table, want.table, check_exact=True)
        pd.testing.assert_series_equal(got.sizes, want.sizes, check_exact=True)
    counts = Q.customer_counts(eng, day, by="segment")
    rows = frame.groupby("segment").agg(customers=("event", "size"), churned=("event", "sum"),
                                        revenue=("monthly_revenue", "mean"))
    assert counts["segment"].tolist() == rows.index.tolist()
    assert counts["customers"].tolist() == rows["customers"].tolist()
    assert counts["churned"].tolist() == rows["churned"].tolist()
    np.testing.assert_allclose(counts["revenue_total"] / counts["revenue_n"], rows["revenue"], rtol=1e-12)


def test_every_departments_retention_equals_the_rows(small_demo, monkeypatch):
    """The department page's curves from the engine's delayed-entry counts equal the row path, exactly."""
    import helpers.engine as E
    from helpers.objectives_report import prepare_department_report

    report = prepare_department_report("billing", data_source=str(small_demo), as_of="2025-12-31")
    for department in report.dataset.departments:
        report.department = department
        engine_km, engine_msg = report.retention()
        with monkeypatch.context() as m:
            m.setattr(E, "open_report_engine", lambda *a, **k: (None, None))
            rows_km, rows_msg = report.retention()
        assert engine_msg == rows_msg == "", department
        assert engine_km.group == rows_km.group == "segment"
        pd.testing.assert_frame_equal(engine_km.table, rows_km.table, check_exact=True)
        pd.testing.assert_frame_equal(engine_km.medians, rows_km.medians, check_exact=True)
        assert report.retention_text(engine_km) == report.retention_text(rows_km)


def test_department_retention_reads_no_customer_rows(small_demo, monkeypatch):
    from helpers.data import Dataset
    from helpers.objectives_report import prepare_department_report

    report = prepare_department_report("delivery", data_source=str(small_demo))

    def no_frames(self, table, department=None):
        raise AssertionError(f"a {table} frame was built")

    monkeypatch.setattr(Dataset, "frame", no_frames)
    km, msg = report.retention()
    assert km is not None and not msg


@pytest.mark.parametrize("segment", ["all", "small_business"])
def test_page_sections_from_aggregates_equal_the_rows(small_demo, monkeypatch, segment):
    """Headline, heatmap, lifetime values, churn link and revenue at risk: the engine page equals the in-memory
    page on the demo (the worth chain's sample holds every customer)."""
    engine = RR.prepare_retention_report(segment=segment, n_boot=N_BOOT, data_source=str(small_demo))
    rows = _rows(monkeypatch, segment=segment, data_source=str(small_demo))
    assert engine.engine_name == "duckdb" and rows.engine_name == ""
    assert engine.frame is None and rows.frame is not None and engine.worth_sample is None
    assert (engine.n_customers, engine.n_churned) == (rows.n_customers, rows.n_churned)
    assert engine.last_signup == rows.last_signup
    pd.testing.assert_frame_equal(engine.cohorts.table, rows.cohorts.table, check_exact=True)
    pd.testing.assert_frame_equal(engine.value, rows.value, check_exact=False, rtol=1e-12)
    for page in ("headline_markdown", "findings", "value_table_html", "churn_link_table_html", "risk_markdown",
                 "risk_notes_markdown", "alt_cohorts", "warnings"):
        got, want = getattr(engine, page), getattr(rows, page)
        assert (got() if callable(got) else got) == (want() if callable(want) else want), page
    assert engine.risk_table_html("department") == rows.risk_table_html("department")
    assert engine.risk_table_html("segment") == rows.risk_table_html("segment")


def test_retention_page_reads_no_whole_table(small_demo, monkeypatch):
    """With more customers than the worth chain's sample no frame of the dataset is built: every section from
    aggregates or the seeded sample."""
    import helpers.engine.worth_sample as WS
    from helpers.data import Dataset

    def no_frames(self, table, department=None):
        raise AssertionError(f"a {table} frame was built")

    monkeypatch.setattr(Dataset, "frame", no_frames)
    monkeypatch.setattr(WS, "DEFAULT_SIZE", 1500)
    page = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    assert page.engine_name == "duckdb" and not [w for w in page.warnings if "frame" in w]
    assert page.cohorts is not None and page.survival is not None and page.value is not None
    assert page.link is not None and page.risk is not None


def test_worth_on_a_sample_is_stated_and_agrees_with_every_customer(small_demo, monkeypatch):
    import helpers.engine.worth_sample as WS

    full = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    monkeypatch.setattr(WS, "DEFAULT_SIZE", 1500)
    sampled = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    n = full.n_customers
    assert full.worth_sample is None and sampled.worth_sample == (1500, n)
    statement = f"sample of 1,500 of the {n:,} customers"
    assert statement in sampled.churn_link_table_html() and statement not in full.churn_link_table_html()
    assert f"sample of 1,500 of {n:,} customers" in sampled.risk_notes_markdown().replace("\\", "")
    # the sample's intervals hold the estimates from every customer
    for model in ("naive", "corrected"):
        hr = full.link.hazard_ratio(model)[0]
        _, lo, hi = sampled.link.hazard_ratio(model)
        assert lo <= hr <= hi, model
    both = [r.risk.table.set_index(["dimension", "group"]) for r in (full, sampled)]
    company_full, company = both[0].loc[("all", "all")], both[1].loc[("all", "all")]
    assert company["revenue_at_risk_low"] <= company_full["revenue_at_risk"] <= company["revenue_at_risk_high"]
    # totals of all customers, not of the sample
    assert company["customers"] == company_full["customers"]
    assert company["revenue"] == pytest.approx(company_full["revenue"], rel=0.05)
    money = sampled.money(company["revenue_at_risk"])
    assert any(f.startswith(f"**{money} of revenue") for f in sampled.findings())
    # the sections that do not depend on the sample are unchanged
    assert full.survival_table_html() == sampled.survival_table_html() and full.cohorts.title() == sampled.cohorts.title()


# ------------------------------------------------------------------------------------------ Spark
def test_retention_queries_on_spark_equal_duckdb(small_demo, eng):
    """The same queries on Spark (local[1], one session for this test): counts identical, the sample the same
    customers."""
    from helpers.engine.spark_engine import spark_unavailable_reason

    reason = spark_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from helpers.engine.spark_engine import SparkEngine, start_spark_session

    tables = {t: str(Path(small_demo) / f"{t}.parquet") for t in ("customers", "responses", "tickets")}
    session = start_spark_session("local[1]", "kit-tests-retention", {"spark.sql.shuffle.partitions": 2,
                                                                      "spark.default.parallelism": 1})
    spark = SparkEngine(tables, session=session)
    try:
        day = pd.Timestamp("2025-12-31")
        for name, call in (("dates", lambda e: pd.DataFrame([Q.customer_dates(e, cutoff=day)])),
                           ("counts", lambda e: Q.customer_counts(e, day, by="segment")),
                           ("cohorts", lambda e: Q.cohort_counts(e, day, filters={"segment": "enterprise"})),
                           ("entry", lambda e: Q.delayed_entry_counts(e, "Billing", day, by="segment",
                                                                      contacts_until=day + pd.Timedelta(days=1))),
                           *((f"margins {i}", lambda e, i=i: Q.delayed_entry_margins(
                               e, "Billing", day, by="segment", contacts_until=day + pd.Timedelta(days=1))[i])
                             for i in range(3))):
            pd.testing.assert_frame_equal(call(spark), call(eng), check_dtype=False, obj=name)
    finally:
        spark.close()
        session.stop()
