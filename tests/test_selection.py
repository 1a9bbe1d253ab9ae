"""One selection model everywhere (helpers.selection): the analyst's five everyday questions of issue 17, each in
one call, checked against independent pandas computations; and the errors that name the filter and list the values
that exist."""
import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers import selection as sel
from helpers.data import load_dataset
from helpers.drivers import relative_importance
from helpers.errors import KitError
from helpers.kpis import KpiTable, compare_kpi, compute_kpi, csat, kpi_overview, kpi_series, nps
from helpers.objectives import evaluate_objectives
from helpers.relate import relate
from helpers.retention import customer_durations, kaplan_meier

START, END = "2026-01-01", "2026-06-30"


@pytest.fixture(scope="module")
def ds(small_demo):
    return load_dataset(small_demo)


@pytest.fixture(scope="module")
def merged(ds):
    """Independent reference: responses with the customer's segment/region merged by hand in pandas."""
    return ds.responses.merge(ds.customers[["customer_id", "segment", "region"]], on="customer_id", how="left")


def _window(df, col, start=START, end=END):
    d = pd.to_datetime(df[col])
    return df[(d >= start) & (d < pd.Timestamp(end) + pd.Timedelta(days=1))]


# ------------------------------------------------------------------------------------ the five questions
def test_q1_nps_by_channel_in_one_call(ds):
    t = compute_kpi("nps", ds, by="channel", start=START, end=END)
    assert isinstance(t, KpiTable) and list(t.by) == ["channel"]
    ref = _window(ds.responses, "response_date")
    for _, row in t.table.iterrows():
        e = nps(ref.loc[ref["channel"] == row["channel"], "nps"].dropna())
        assert row["value"] == pytest.approx(e.value) and row["n"] == e.n
        assert row["ci_low"] == pytest.approx(e.ci_low) and row["ci_high"] == pytest.approx(e.ci_high)
    assert "NPS by channel" in t.summary() and "<table" in t._repr_html_()


def test_q2_compare_one_department_between_two_periods_with_its_slug(ds):
    c = compare_kpi("csat", ds, filters={"department": "billing"}, period_a=("2025-07-01", "2025-12-31"),
                    period_b=(START, END))
    ref = ds.responses[ds.responses["department"] == "Billing"]
    a = csat(_window(ref, "response_date", "2025-07-01", "2025-12-31")["csat"].dropna())
    b = csat(_window(ref, "response_date")["csat"].dropna())
    assert c.a.value == pytest.approx(a.value) and c.b.value == pytest.approx(b.value)
    assert c.labels == ("2025-07-01 to 2025-12-31", f"{START} to {END}") and not c.between_groups
    # two selections in one period, with labels
    g = compare_kpi("csat", ds, filters_a={"channel": "email"}, filters_b={"channel": "phone"},
                    period_a=(START, END), labels=("e-mail", "telephone"))
    assert g.between_groups and g.labels == ("e-mail", "telephone")
    assert "e-mail" in g.describe() and "telephone" in g.describe() and "rose" not in g.describe()


def test_q3_nps_by_customer_segment_and_drivers_for_enterprise_customers(ds, merged):
    s = kpi_series(ds.con, "nps", freq=None, by="segment")
    for _, row in s.iterrows():
        assert row["value"] == pytest.approx(nps(merged.loc[merged["segment"] == row["segment"], "nps"].dropna()).value)
    drivers = ds.attributes
    got = relative_importance(ds, "nps", drivers, filters={"segment": "Enterprise"})  # case-insensitive value
    ref = relative_importance(merged[merged["segment"] == "enterprise"], "nps", drivers)
    pd.testing.assert_series_equal(got["importance"], ref["importance"])
    assert got.attrs["n"] == ref.attrs["n"] and list(got.table["rank"]) == sorted(got.table["rank"])
    # a ticket KPI by the customer's region, and a filter on a customer column
    t = compute_kpi("fcr", ds, filters={"region": "north"}, by="channel", start=START, end=END)
    tickets = _window(ds.tickets.merge(ds.customers[["customer_id", "region"]], on="customer_id"), "created_at")
    north = tickets[tickets["region"] == "north"]
    first = t.table.iloc[0]
    assert first["n"] == int(north.loc[north["channel"] == first["channel"], "contacts_to_resolve"].notna().sum())


def test_q4_survival_by_segment_from_the_dataset(ds):
    km = kaplan_meier(ds, by="segment", filters={"region": "North"})
    frame = customer_durations(ds.customers)
    ref = kaplan_meier(frame[frame["region"] == "north"], group="segment")
    pd.testing.assert_frame_equal(km.table, ref.table)
    assert len(repr(km)) < 300 and "<table" in km._repr_html_()


def test_q5_worst_first_response_team_this_month_flags_small_teams(ds):
    t = compute_kpi("first_response_hours", ds, by="team", start="2026-06-01", end="2026-06-30", min_responses=30)
    counts = _window(ds.tickets, "created_at", "2026-06-01", "2026-06-30").groupby("team")["first_response_at"].count()
    small = set(counts[counts < 30].index)
    assert set(t.table.loc[t.table["small"], "team"]) == small
    assert small, "the small demo has teams with fewer than 30 tickets in a month"
    worst_line = t.summary().split("worst ")[1]
    assert not any(worst_line.startswith(s) for s in small)  # small teams are not named worst
    assert "small" in t._repr_html_()


def test_relate_across_five_channels_in_one_call(ds):
    r = relate("csat", "channel", ds, start=START, end=END)
    assert len(r.table) == ds.con.execute(
        "SELECT count(DISTINCT channel) FROM responses WHERE response_date BETWEEN ? AND ? AND csat IS NOT NULL",
        [START, END]).fetchone()[0]
    assert len(r.pairwise) == len(r.table) * (len(r.table) - 1) // 2


# ------------------------------------------------------------------------------------ values, aliases, errors
@pytest.mark.parametrize("spelling", ["Billing", "billing", "BILLING"])
def test_department_matches_by_name_case_or_slug(ds, spelling):
    assert compute_kpi("csat", ds, filters={"department": spelling}).n == int(
        ds.responses.loc[ds.responses["department"] == "Billing", "csat"].notna().sum())


def test_technical_support_by_its_slug(ds):
    e = compute_kpi("fcr", ds, filters={"department": "technical_support"})
    assert e.n == int(ds.tickets.loc[ds.tickets["department"] == "Technical Support", "contacts_to_resolve"].notna().sum())


def test_agent_alias_is_agent_id(ds):
    agent = ds.tickets["agent_id"].dropna().iloc[0]
    a = compute_kpi("fcr", ds, filters={"agent": agent})
    b = compute_kpi("fcr", ds, filters={"agent_id": agent})
    assert a == b
    s = kpi_series(ds.con, "fcr", freq=None, by="agent")
    assert "agent_id" in s.columns


def test_unknown_value_names_the_filter_and_lists_the_values(ds):
    with pytest.raises(KitError) as e:
        compute_kpi("csat", ds, filters={"department": "Bill"})
    msg = str(e.value)
    assert "department='Bill'" in msg and "'Billing'" in msg and "'Technical Support'" in msg
    with pytest.raises(KitError, match=r"segment='gold'.*'consumer'.*'enterprise'"):
        kpi_series(ds.con, "nps", filters={"segment": "gold"})
    with pytest.raises(KitError, match=r"channel='fax'.*'email'"):
        relative_importance(ds, "csat", ds.attributes, filters={"channel": "fax"})


def test_empty_combination_names_filters_and_period(ds):
    with pytest.raises(KitError, match=r"no responses rows.*department='billing'.*2030-01-01.*run from"):
        compute_kpi("csat", ds, filters={"department": "billing"}, start="2030-01-01")


def test_unknown_column_lists_table_and_customer_columns(ds):
    with pytest.raises(KitError, match=r"cannot group by 'planet'.*customer columns"):
        kpi_series(ds.con, "csat", by="planet")


def test_kaplan_meier_on_the_customers_table_points_to_customer_durations(ds):
    with pytest.raises(KitError, match=r"customer_durations"):
        kaplan_meier(ds.customers, group="segment")


def test_evaluate_objectives_with_a_department_slug(ds):
    ev = evaluate_objectives("billing", ds)
    assert ev.plan.department == "Billing" and len(ev.table) > 0
    assert len(repr(ev)) < 400
    with pytest.raises(KitError, match=r"unknown department 'nowhere'.*billing"):
        evaluate_objectives("nowhere", ds)


# ------------------------------------------------------------------------------------ issue 12 papercuts
def test_lmg_is_an_alias_of_shapley_and_one_driver_is_a_name(ds):
    a = relative_importance(ds.responses, "csat", ds.attributes, method="lmg")
    b = relative_importance(ds.responses, "csat", ds.attributes, method="shapley")
    pd.testing.assert_frame_equal(a.table, b.table)
    one = relative_importance(ds.responses, "csat", "attr_speed")
    assert list(one.index) == ["attr_speed"]


def test_a_table_without_the_date_column_is_a_kit_error_naming_table_and_column():
    con = duckdb.connect()
    con.execute("CREATE TABLE responses AS SELECT 1 AS csat, 'x' AS department")
    with pytest.raises(KitError, match=r"table responses has no column 'response_date'"):
        kpi_series(con, "csat")


def test_kpi_overview_defaults_on_survey_only_data():
    con = duckdb.connect()
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"response_id": [f"R{i}" for i in range(200)], "customer_id": "C1",
                       "response_date": pd.Timestamp("2026-01-05"),
                       "department": np.where(np.arange(200) < 100, "A", "B"),
                       "csat": rng.integers(1, 6, 200), "nps": rng.integers(0, 11, 200)})
    con.register("responses", df)
    ov = kpi_overview(con)
    assert set(ov["metric"]) == {"csat", "nps"} and set(ov["department"]) == {"A", "B"}
    assert set(ov.attrs["skipped"]) == {"ces", "fcr", "first_response_hours", "resolution_hours"}
    with pytest.raises(KitError, match="no table 'tickets'"):
        kpi_overview(con, ["fcr"])


def test_selection_helpers():
    assert sel.normalize_filters({"agent": "A1", "department": ["x", "y"]}) == {"agent_id": ["A1"],
                                                                               "department": ["x", "y"]}
    assert sel.as_columns("agent") == ["agent_id"] and sel.as_columns(None) == []
    assert sel.match_values("department", ["customer service"], ["Customer Service", "Sales"]) == ["Customer Service"]
    with pytest.raises(sel.SelectionError, match="filters must be a dict"):
        sel.normalize_filters(["department"])


def test_customer_filters_on_a_dict_of_frames_and_a_clear_error_for_a_bare_frame():
    customers = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "segment": ["Enterprise", "consumer", "consumer"]})
    responses = pd.DataFrame({"response_id": ["R1", "R2", "R3", "R4"], "customer_id": ["C1", "C1", "C2", "C3"],
                              "response_date": pd.to_datetime(["2026-01-02"] * 4), "csat": [5, 4, 1, 2]})
    e = compute_kpi("csat", {"responses": responses, "customers": customers}, filters={"segment": "enterprise"})
    assert e.n == 2 and e.value == pytest.approx(100.0)
    t = compute_kpi("csat", {"responses": responses, "customers": customers}, by="segment", min_responses=2)
    assert dict(zip(t.table["segment"], t.table["n"])) == {"Enterprise": 2, "consumer": 2}
    with pytest.raises(KitError, match=r"no column.*'segment'"):
        compute_kpi("csat", responses, filters={"segment": "enterprise"})


def test_one_kpi_for_a_customer_segment_from_the_dataset(ds, merged):
    e = compute_kpi("nps", ds, filters={"segment": "enterprise", "department": "sales"}, start=START, end=END)
    ref = _window(merged, "response_date")
    ref = ref[(ref["segment"] == "enterprise") & (ref["department"] == "Sales")]["nps"].dropna()
    assert e.n == len(ref) and e.value == pytest.approx(nps(ref).value)
    c = compare_kpi("nps", ds, filters_a={"segment": "consumer"}, filters_b={"segment": "enterprise"},
                    period_a=(START, END))
    assert c.labels == ("consumer", "enterprise") and c.b.n == e.n + int(
        (_window(merged, "response_date").query("segment == 'enterprise' and department != 'Sales'")["nps"].notna()).sum())


def test_drivers_by_customer_segment_from_the_dataset(ds, merged):
    from helpers.drivers_analysis import analyze_by_segment

    got = analyze_by_segment(ds, "csat", ds.attributes, by="segment", n_boot=0)
    ref = analyze_by_segment(merged, "csat", ds.attributes, "segment", n_boot=0)
    assert set(got.results) == set(ref.results) == {"consumer", "enterprise", "small_business"}
    for seg in got.results:
        pd.testing.assert_series_equal(got.results[seg].table["importance"], ref.results[seg].table["importance"])
