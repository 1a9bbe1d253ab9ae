"""kpi_series / kpi_overview computed in DuckDB agree with the per-group Python estimators of helpers.kpis
on small random tables (columns per helpers.schema)."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers import kpis as K
from helpers.errors import KitError

DEPARTMENTS = ["Billing", "Sales", "Technical Support"]


def _tables(seed: int = 0, n_customers: int = 300, n_responses: int = 1500, n_tickets: int = 1200):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    signup = start + pd.to_timedelta(rng.integers(-200, 360, n_customers), unit="D")
    life = rng.exponential(300, n_customers)
    end = signup + pd.to_timedelta(life.astype(int), unit="D")
    end = pd.Series(end).where(end <= pd.Timestamp("2024-12-31"))
    customers = pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n_customers)],
        "signup_date": pd.Series(signup).astype("datetime64[us]"),
        "end_date": end.astype("datetime64[us]"),
        "segment": rng.choice(["consumer", "small_business", "enterprise"], n_customers),
        "region": rng.choice(["north", "south"], n_customers),
        "monthly_revenue": rng.gamma(2, 20, n_customers),
        "purchases": rng.integers(0, 6, n_customers).astype(float),
    })
    r_dates = start + pd.to_timedelta(rng.integers(0, 366, n_responses), unit="D")

    def ratings(lo, hi, miss):
        x = rng.integers(lo, hi + 1, n_responses).astype(float)
        x[rng.random(n_responses) < miss] = np.nan
        return x

    responses = pd.DataFrame({
        "response_id": [f"R{i:05d}" for i in range(n_responses)],
        "customer_id": rng.choice(customers["customer_id"], n_responses),
        "response_date": pd.Series(r_dates).astype("datetime64[us]"),
        "department": rng.choice(DEPARTMENTS, n_responses),
        "channel": rng.choice(["phone", "email"], n_responses),
        "csat": ratings(1, 5, 0.05),
        "nps": ratings(0, 10, 0.1),
        "ces": ratings(1, 7, 0.2),
    })
    teams = {d: [f"{d[:3]}-team{k}" for k in (1, 2)] for d in DEPARTMENTS}
    dept = rng.choice(DEPARTMENTS, n_tickets)
    team = np.array([rng.choice(teams[d]) for d in dept])
    agent = np.array([f"{t}-rep{rng.integers(1, 4)}" for t in team])
    created = start + pd.to_timedelta(rng.integers(0, 366 * 24 * 60, n_tickets), unit="min")
    first = created + pd.to_timedelta(rng.exponential(5 * 60, n_tickets).astype(int), unit="min")
    resolved = created + pd.to_timedelta(rng.exponential(40 * 60, n_tickets).astype(int), unit="min")
    first = pd.Series(first).where(rng.random(n_tickets) > 0.05)
    resolved = pd.Series(resolved).where(rng.random(n_tickets) > 0.1)
    ctr = rng.geometric(0.6, n_tickets).astype(float)
    ctr[resolved.isna().to_numpy()] = np.nan
    reopened = pd.array(rng.random(n_tickets) < 0.1, dtype="boolean")
    reopened[resolved.isna().to_numpy()] = pd.NA
    tickets = pd.DataFrame({
        "ticket_id": [f"T{i:05d}" for i in range(n_tickets)],
        "customer_id": rng.choice(customers["customer_id"], n_tickets),
        "department": dept, "team": team, "agent_id": agent,
        "channel": rng.choice(["phone", "chat"], n_tickets),
        "created_at": pd.Series(created).astype("datetime64[us]"),
        "first_response_at": first.astype("datetime64[us]"),
        "resolved_at": resolved.astype("datetime64[us]"),
        "contacts_to_resolve": ctr,
        "reopened": reopened,
    })
    org = pd.DataFrame({"person_id": sorted(set(agent)), "name": "x", "role": "representative",
                        "department": "x", "team": "x", "manager_id": None})
    return {"customers": customers, "responses": responses, "tickets": tickets, "org": org}


@pytest.fixture(scope="module")
def tables():
    return _tables()


@pytest.fixture(scope="module")
def con(tables):
    c = duckdb.connect()
    for name, df in tables.items():
        c.register(name, df)
    yield c
    c.close()


def _period_of(dates: pd.Series, freq: str) -> pd.Series:
    return pd.to_datetime(dates).dt.to_period({"month": "M", "quarter": "Q"}[freq]).dt.start_time


def _expected(tables, metric, freq, by):
    k = K.KPIS[metric]
    df = tables[k.table].copy()
    df["period"] = _period_of(df[k.date_column], freq)
    rows = []
    for key, g in df.groupby(["period", *by], sort=True):
        try:
            e = K.compute_kpi(metric, {k.table: g})
        except KitError:
            continue  # group without data for this KPI: absent from the series
        key = key if isinstance(key, tuple) else (key,)
        rows.append(dict(zip(["period", *by], key)) | {"value": e.value, "ci_low": e.ci_low,
                                                        "ci_high": e.ci_high, "n": e.n})
    out = pd.DataFrame(rows)
    return out.sort_values([*by, "period"], kind="stable").reset_index(drop=True)


def _assert_same(got: pd.DataFrame, want: pd.DataFrame, by):
    got = got.sort_values([*by, "period"], kind="stable").reset_index(drop=True)
    assert len(got) == len(want) > 0
    for c in by:
        assert got[c].astype(str).tolist() == want[c].astype(str).tolist()
    assert (pd.to_datetime(got["period"]) == pd.to_datetime(want["period"])).all()
    np.testing.assert_array_equal(got["n"].to_numpy(), want["n"].to_numpy())
    for c in ("value", "ci_low", "ci_high"):
        np.testing.assert_allclose(got[c].to_numpy(float), want[c].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   err_msg=c)


@pytest.mark.parametrize("metric", ["csat", "nps", "ces", "response_count"])
@pytest.mark.parametrize("freq,by", [("month", []), ("quarter", ["department"]), ("month", ["department"])])
def test_response_kpis_match_python(con, tables, metric, freq, by):
    got = K.kpi_series(con, metric, freq=freq, by=by or None)
    assert list(got.columns[:1 + len(by)]) == ["period", *by]
    _assert_same(got, _expected(tables, metric, freq, by), by)


@pytest.mark.parametrize("metric", ["fcr", "reopen_rate", "first_response_hours", "resolution_hours",
                                    "first_response_hours_mean", "resolution_hours_mean", "ticket_volume"])
@pytest.mark.parametrize("freq,by", [("quarter", ["department", "team"]), ("month", ["department"])])
def test_ticket_kpis_match_python(con, tables, metric, freq, by):
    got = K.kpi_series(con, metric, freq=freq, by=by)
    _assert_same(got, _expected(tables, metric, freq, by), by)


def test_ticket_kpis_by_agent(con, tables):
    got = K.kpi_series(con, "resolution_hours", freq="quarter", by="agent_id")
    _assert_same(got, _expected(tables, "resolution_hours", "quarter", ["agent_id"]), ["agent_id"])


def test_filters_and_window(con, tables):
    got = K.kpi_series(con, "csat", freq="month", by="department", filters={"channel": "email",
                       "department": ["Sales", "Billing"]}, start="2024-03-01", end="2024-05-31")
    r = tables["responses"]
    sub = r[(r["channel"] == "email") & r["department"].isin(["Sales", "Billing"])
            & (r["response_date"] >= "2024-03-01") & (r["response_date"] <= "2024-05-31")]
    want = _expected({"responses": sub}, "csat", "month", ["department"])
    _assert_same(got, want, ["department"])
    assert set(got["department"]) == {"Sales", "Billing"}
    assert got["period"].min() == pd.Timestamp("2024-03-01") and got["period"].max() == pd.Timestamp("2024-05-01")


def test_whole_window_freq_none_and_overview(con, tables):
    got = K.kpi_series(con, "nps", freq=None, by="department", start="2024-01-01", end="2024-12-31")
    for _, row in got.iterrows():
        e = K.compute_kpi("nps", tables, filters={"department": row["department"]})
        assert (row["value"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx(
            (e.value, e.ci_low, e.ci_high, e.n))
    assert (got["period"] == pd.Timestamp("2024-01-01")).all()
    ov = K.kpi_overview(con, ["csat", "nps", "fcr", "resolution_hours"], by="department")
    assert len(ov) == 4 * len(DEPARTMENTS)
    assert {"department", "metric", "label", "value", "ci_low", "ci_high", "n", "formatted"} <= set(ov.columns)
    e = K.compute_kpi("fcr", tables, filters={"department": "Sales"})
    row = ov[(ov["metric"] == "fcr") & (ov["department"] == "Sales")].iloc[0]
    assert row["value"] == pytest.approx(e.value)
    assert row["formatted"] == f"{e.value:.1f}% ({e.ci_low:.1f} to {e.ci_high:.1f})"


@pytest.mark.parametrize("metric", ["retention_rate", "churn_rate"])
@pytest.mark.parametrize("by", [None, "segment"])
def test_retention_series_matches_python(con, tables, metric, by):
    got = K.kpi_series(con, metric, freq="month", by=by, start="2024-01-01", end="2024-12-31")
    assert len(got) == 12 * (1 if by is None else 3)
    cust = tables["customers"]
    for _, row in got.iterrows():
        sub = cust if by is None else cust[cust[by] == row[by]]
        p = row["period"]
        e = K.compute_kpi(metric, sub, start=p, end=p + pd.offsets.MonthEnd(0))
        assert (row["value"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx(
            (e.value, e.ci_low, e.ci_high, e.n), abs=1e-9)


def test_retention_series_quarter_pools_months(con, tables):
    got = K.kpi_series(con, "retention_rate", freq="quarter", start="2024-01-01", end="2024-06-30")
    assert got["period"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-04-01")]
    e = K.compute_kpi("retention_rate", tables, start="2024-04-01", end="2024-06-30")
    assert got.loc[1, "value"] == pytest.approx(e.value) and got.loc[1, "n"] == e.n
    whole = K.kpi_series(con, "churn_rate", freq=None, start="2024-01-01", end="2024-06-30")
    e = K.compute_kpi("churn_rate", tables, start="2024-01-01", end="2024-06-30")
    assert len(whole) == 1 and whole.loc[0, "value"] == pytest.approx(e.value) and whole.loc[0, "n"] == e.n


def test_series_bad_input(con):
    with pytest.raises(KitError, match=r"'csat'.*cannot group by 'team'.*responses"):
        K.kpi_series(con, "csat", by="team")
    with pytest.raises(KitError, match=r"'bogus'.*unknown metric"):
        K.kpi_series(con, "bogus")
    with pytest.raises(KitError, match=r"freq"):
        K.kpi_series(con, "csat", freq="week")
    with pytest.raises(KitError, match=r"filter column 'nope'"):
        K.kpi_series(con, "csat", filters={"nope": 1})
    with pytest.raises(KitError, match=r"retention_rate.*starts 2030-01-01, after the last date"):
        K.kpi_series(con, "retention_rate", start="2030-01-01", end="2030-03-31")
    with pytest.raises(KitError, match=r"repeat_purchase_rate.*no time dimension"):
        K.kpi_series(con, "repeat_purchase_rate")
    bad = duckdb.connect()
    bad.register("responses", pd.DataFrame({"response_date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                                            "department": ["A", "A"], "nps": [11.0, 3.0], "csat": [0.0, 4.0]}))
    with pytest.raises(KitError, match=r"'nps'.*1 values of responses.nps outside the scale 0-10"):
        K.kpi_series(bad, "nps")
    with pytest.raises(KitError, match=r"'csat'.*outside the scale 1-5"):
        K.kpi_series(bad, "csat")
    with pytest.raises(KitError, match=r"'fcr'.*no table 'tickets'"):
        K.kpi_series(bad, "fcr")
    bad.register("tickets", pd.DataFrame({"ticket_id": ["T1"], "department": ["A"],
                                          "created_at": pd.to_datetime(["2024-01-02 10:00"]),
                                          "first_response_at": pd.to_datetime(["2024-01-02 09:00"]),
                                          "resolved_at": pd.to_datetime([None])}))
    with pytest.raises(KitError, match=r"first_response_hours.*outside the scale >= 0 hours"):
        K.kpi_series(bad, "first_response_hours")
    bad.close()


def test_kpi_series_on_small_demo_for_all_departments(small_demo):
    """Every department of the demo gets a monthly series for each response/ticket KPI, with sane
    intervals; and the DuckDB series equals the Python estimator on the demo for one department-month."""
    from helpers.data import load_dataset

    ds = load_dataset(small_demo)
    metrics = [m for m, k in K.KPIS.items() if k.periodic and k.table != "customers"]
    for m in metrics:
        s = K.kpi_series(ds.con, m, freq="month", by="department")
        assert set(s["department"]) == set(ds.departments), m
        assert (s["n"] > 0).all()
        if K.KPIS[m].kind == "mean_hours":  # one ticket: no spread, no interval on an unbounded scale
            assert s.loc[s["n"] < 2, "ci_low"].isna().all()
            s = s[s["n"] >= 2]
        assert (s["ci_low"] <= s["value"] + 1e-9).all() and (s["value"] <= s["ci_high"] + 1e-9).all(), m
        lo, hi = K.KPIS[m].bounds
        assert s["ci_low"].ge(lo - 1e-9).all() and s["ci_high"].le(hi + 1e-9).all(), m
    last = ds.responses["response_date"].max().to_period("M").start_time
    for dept in ds.departments:
        s = K.kpi_series(ds.con, "csat", freq="month", by="department", filters={"department": dept})
        row = s[s["period"] == last]
        if row.empty:
            continue
        e = K.compute_kpi("csat", ds, filters={"department": dept}, start=last,
                          end=last + pd.offsets.MonthEnd(0))
        assert (row["value"].iloc[0], row["n"].iloc[0]) == pytest.approx((e.value, e.n))
    churn = K.kpi_series(ds.con, "churn_rate", freq="month", by="segment")
    assert set(churn["segment"]) == set(ds.customers["segment"])
    assert churn["value"].between(0, 100).all()


@pytest.mark.parametrize("metric", ["csat", "nps", "ces", "fcr", "reopen_rate", "resolution_hours",
                                    "first_response_hours_mean", "ticket_volume", "churn_rate"])
def test_compare_kpi_between_quarters_matches_direct_comparison(tables, metric):
    q1, q2 = ("2024-01-01", "2024-03-31"), ("2024-04-01", "2024-06-30")
    c = K.compare_kpi(metric, tables, tables, filters_a={"department": "Sales"} if metric != "churn_rate" else None,
                      filters_b={"department": "Sales"} if metric != "churn_rate" else None,
                      period_a=q1, period_b=q2)
    f = None if metric == "churn_rate" else {"department": "Sales"}
    ea = K.compute_kpi(metric, tables, filters=f, start=q1[0], end=q1[1])
    eb = K.compute_kpi(metric, tables, filters=f, start=q2[0], end=q2[1])
    assert (c.a.value, c.b.value, c.a.n, c.b.n) == pytest.approx((ea.value, eb.value, ea.n, eb.n))
    assert c.difference == pytest.approx(eb.value - ea.value)
    assert 0 <= c.p_value <= 1 and c.ci_low <= c.ci_high
    # the same data in both periods: no significant change
    same = K.compare_kpi(metric, tables, tables, filters_a=f, filters_b=f, period_a=q1, period_b=q1)
    assert same.difference == 0 and not same.significant()
    assert "no significant change" in same.describe()


def test_period_comparisons_recover_demo_ground_truth_trends(small_demo):
    """First year vs last year of the demo, per department: a significant change never contradicts the
    known trend direction of ground_truth.json (improving/deteriorating; flat trends are left alone, 5% of
    them may test significant by chance), and large known changes (FCR +/- 8 points or more, median
    hours changing by a factor 1.5 or more) with n >= 200 a year are detected as significant."""
    import json

    from helpers.data import load_dataset

    ds = load_dataset(small_demo)
    truth = json.loads((small_demo / "ground_truth.json").read_text())["kpi_trends"]
    first, last = ("2023-11-01", "2024-10-31"), ("2025-11-01", "2026-10-31")
    checked_large = 0
    for dept, trends in truth.items():
        for metric in ("fcr", "first_response_hours"):
            t = trends.get(metric)
            if not isinstance(t, dict) or "direction" not in t:
                continue
            f = {"department": dept}
            c = K.compare_kpi(metric, ds, ds, filters_a=f, filters_b=f, period_a=first, period_b=last)
            good_sign = 1 if metric == "fcr" else -1  # FCR up is better, hours down is better
            if c.significant() and t["direction"] in ("improving", "deteriorating"):
                observed = "improving" if np.sign(c.difference) == good_sign else "deteriorating"
                assert observed == t["direction"], (dept, metric, c.describe(), t)
            if metric == "fcr":
                large = abs(t["end"] - t["start"]) >= 0.08
            else:
                large = max(t["median_end"], t["median_start"]) / min(t["median_end"], t["median_start"]) >= 1.5
            if large and min(c.a.n, c.b.n) >= 200:
                checked_large += 1
                assert c.significant(), (dept, metric, c.describe(), t)
    assert checked_large >= 2
