"""Reader-facing outputs of the satisfaction-value chain (helpers.impact_report): objectives priced, the chain
for the top drivers, revenue at risk per department and segment.

References: the rating-scale reading of a KPI target against a Monte Carlo of the same model (latent rating
uniform in its rounding cell, shifted, rounded, clipped); margins of revenue at risk against
helpers.impact.revenue_at_risk run directly; the objectives' sentences against their table.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import impact as I
from helpers import impact_report as IR


# ---------------------------------------------------------------------------------------------------
# The KPI target as a shift of the rating scale
# ---------------------------------------------------------------------------------------------------

def monte_carlo_kpi(metric: str, ratings: np.ndarray, d: float, draws: int = 400, seed: int = 0):
    lo, hi = IR.SCALES[metric]
    rng = np.random.default_rng(seed)
    latent = np.repeat(ratings, draws) + rng.uniform(-0.5, 0.5, len(ratings) * draws) + d
    shifted = np.clip(np.floor(latent + 0.5), lo, hi)
    if metric == "csat":
        kpi = 100 * np.mean(shifted >= 4)
    else:
        kpi = 100 * (np.mean(shifted >= 9) - np.mean(shifted <= 6))
    return kpi, shifted.mean()


@pytest.mark.parametrize("metric,ratings", [("csat", [1, 2, 3, 3, 3, 4, 4, 5, 5, 5]),
                                            ("nps", [0, 3, 5, 6, 6, 7, 8, 8, 9, 10, 10, 10])])
@pytest.mark.parametrize("d", [0.0, 0.3, 0.75, 1.6])
def test_kpi_after_a_latent_shift_matches_a_simulation(metric, ratings, d):
    r = np.array(ratings, dtype=float)
    values, counts = np.unique(r, return_counts=True)
    kpi_mc, mean_mc = monte_carlo_kpi(metric, r, d)
    assert IR.kpi_after_shift(metric, values, counts.astype(float), d) == pytest.approx(kpi_mc, abs=1.0)
    assert IR.mean_after_shift(metric, values, counts.astype(float), d) == pytest.approx(mean_mc, abs=0.02)


def test_rating_shift_for_target_by_hand():
    # CSAT top-2-box 50% with 30% of 3s: +6 points needs d = 0.2 (6 / 30); the mean rises by 0.2 x (1 - share
    # of 5s) = 0.2 x 0.8 (a 5 cannot go higher)
    ratings = [1] * 10 + [2] * 10 + [3] * 30 + [4] * 30 + [5] * 20
    current, d, change = IR.rating_shift_for_target("csat", ratings, 56.0)
    assert current == pytest.approx(50.0) and d == pytest.approx(0.2, abs=1e-9)
    assert change == pytest.approx(0.2 * 0.8, abs=1e-9)
    assert IR.rating_shift_for_target("csat", ratings, 40.0) == (50.0, 0.0, 0.0)  # met already
    assert np.isnan(IR.rating_shift_for_target("csat", ratings, 101.0)[1])  # unreachable
    # NPS: promoters 9-10 gain the 8s, detractors lose the 6s: d <= 1 moves NPS by 100 d (p8 + p6)
    nps = [6] * 20 + [7] * 30 + [8] * 30 + [9] * 20
    current, d, _ = IR.rating_shift_for_target("nps", nps, 0.0)
    assert current == pytest.approx(0.0) and d == 0.0
    current, d, _ = IR.rating_shift_for_target("nps", nps, 25.0)
    assert d == pytest.approx(0.25 / 0.5, abs=1e-9)
    with pytest.raises(IR.ImpactReportError, match="not a satisfaction rating KPI"):
        IR.kpi_after_shift("fcr", np.array([1.0]), np.array([1.0]), 0.1)


# ---------------------------------------------------------------------------------------------------
# On the small demo
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(small_demo):
    customers = pd.read_parquet(small_demo / "customers.parquet")
    responses = pd.read_parquet(small_demo / "responses.parquet")
    return customers, responses


def objective(oid, metric, target, filters=None):
    return SimpleNamespace(id=oid, title=f"{oid} <b>title</b>", metric=metric, target=target,
                           filters=filters or {})


def test_objective_worth_prices_each_satisfaction_objective(demo):
    customers, responses = demo
    plan = SimpleNamespace(department="Technical Support", objectives=[
        objective("up", "csat", 90.0), objective("nps-up", "nps", 40.0), objective("met", "csat", 10.0),
        objective("never", "csat", 101.0), objective("team", "csat", 90.0, {"team": ("Tier 1",)}),
        objective("speed", "first_response_hours", 10.0)])
    w = IR.objective_worth(plan, customers, responses, n_boot=40, currency="USD")
    t = w.table.set_index("objective")
    assert list(t.index) == ["up", "nps-up", "met", "never", "team"]  # non-satisfaction KPIs are not listed
    up = t.loc["up"]
    assert up["current"] < 90 and up["latent_shift"] > 0 and 0 < up["rating_change"] < up["latent_shift"]
    assert 0 < up["extra_kept_low"] <= up["extra_kept"] <= up["extra_kept_high"]
    assert 0 < up["extra_revenue_low"] <= up["extra_revenue"] <= up["extra_revenue_high"]
    # the change reaches each customer by their share of answers about the department: less than the same
    # change for every customer
    everyone = I.what_if(customers, responses, "csat", up["rating_change"], n_boot=40, currency="USD",
                         as_of=pd.to_datetime(responses["response_date"]).max())
    assert up["extra_kept"] < 0.6 * everyone.table.set_index("segment").loc["all", "extra_kept"]
    assert t.loc["nps-up", "extra_kept"] > 0 and t.loc["met", "extra_kept"] == 0
    assert t.loc["met", "note"].startswith("target already met")
    assert t.loc["never", "note"].startswith("not priced") and np.isnan(t.loc["never", "extra_kept"])
    assert "filter on team" in t.loc["team", "note"]
    s_up = w.sentences[0]
    assert "$" in s_up and "95% CI" in s_up and "association under stated assumptions" in s_up
    assert f"{up['current']:.1f}%" in s_up
    assert all(s.count(". ") == 0 for s in w.sentences)  # one sentence each
    html = w.reader_table()
    assert "&lt;b&gt;title&lt;/b&gt;" in html and "<b>title" not in html  # free text escaped
    assert "\\<b\\>" in w.markdown() or "&lt;b&gt;" in w.markdown()


def test_driver_chain_reads_as_the_issue_asks(demo):
    customers, responses = demo
    dc = IR.driver_chain(customers, responses, n_boot=40, top=2, currency="EUR")
    assert len(dc.table) == 2 and dc.table["extra_kept"].is_monotonic_decreasing
    every = IR.driver_chain(customers, responses, n_boot=40, top=None, currency="EUR")
    assert dc.table["driver"].tolist() == every.table["driver"].head(2).tolist()
    first = dc.table.iloc[0]
    assert dc.sentences[0].startswith(f"Raising {first['label']} by half a point: +")
    assert "fewer customers lost over 12 months" in dc.sentences[0] and "+€" in dc.sentences[0]
    assert first["csat_change_low"] <= first["csat_change"] <= first["csat_change_high"]
    given = IR.driver_chain(customers, responses, ["attr_ease", "attr_value"], delta=1.0, n_boot=40, top=None)
    assert given.table["driver"].tolist() == ["attr_ease", "attr_value"]
    assert given.sentences[0].startswith("Raising Ease by a point")
    with pytest.raises(IR.ImpactReportError, match="no attribute rating"):
        IR.driver_chain(customers, responses, ["attr_looks"], n_boot=20)


def test_revenue_at_risk_per_department_and_segment_adds_up(demo):
    customers, responses = demo
    # blank revenues filled up front: the chain fills them with the median of the grouping it reports by
    rev = customers["monthly_revenue"]
    customers = customers.assign(monthly_revenue=rev.fillna(rev.groupby(customers["segment"]).transform("median")))
    rr = IR.revenue_at_risk_table(customers, responses, n_boot=40, currency="GBP", seed=3)
    t = rr.table
    allrow = t[t["dimension"] == "all"].iloc[0]
    for dim in ("department", "segment"):
        part = t[t["dimension"] == dim]
        assert part["revenue_at_risk"].sum() == pytest.approx(allrow["revenue_at_risk"], rel=1e-9)
        assert part["customers"].sum() == allrow["customers"]
        assert (part["revenue_at_risk_low"] <= part["revenue_at_risk"]).all()
        assert (part["revenue_at_risk"] <= part["revenue_at_risk_high"]).all()
    assert set(t.loc[t["dimension"] == "department", "group"]) <= set(responses["department"]) | {IR.NO_ANSWERS}
    # the company's row is what revenue_at_risk gives directly (same resamples: the cells do not change them)
    direct = I.revenue_at_risk(customers, responses, n_boot=40, seed=3).table.set_index("segment").loc["all"]
    assert allrow["revenue_at_risk"] == pytest.approx(direct["revenue_at_risk"], rel=1e-6)
    assert allrow["revenue_at_risk_low"] == pytest.approx(direct["revenue_at_risk_low"], rel=1e-6)
    assert allrow["revenue_at_risk_high"] == pytest.approx(direct["revenue_at_risk_high"], rel=1e-6)
    assert rr.sentences[-1].startswith("In the company, £") and "not the result of a controlled" in rr.sentences[-1]
    assert rr.notes[0].startswith("Reference: the median satisfaction")
    assert "Company" in rr.reader_table() and "£" in rr.reader_table()
    import pickle
    assert pickle.loads(pickle.dumps(rr)).reader_table() == rr.reader_table()  # results cache as they are


def test_main_department_is_the_most_answered():
    responses = pd.DataFrame({"customer_id": ["a", "a", "a", "b", "b"],
                              "department": ["Sales", "Billing", "Billing", "Sales", "Billing"],
                              "response_date": pd.to_datetime(["2025-01-01"] * 5)})
    assert IR.main_department(responses).to_dict() == {"a": "Billing", "b": "Billing"}  # tie: alphabetical
    share = IR.department_exposure(responses, "Sales", customers=pd.Series(["a", "b", "c"]))
    assert share.to_dict() == pytest.approx({"a": 1 / 3, "b": 0.5, "c": 0.4})


def test_clear_errors_name_what_is_missing(demo):
    from helpers import churn_link as CL

    customers, responses = demo
    with pytest.raises(I.ImpactInputError, match="no revenue column 'monthly_revenue'"):
        IR.revenue_at_risk_table(customers.drop(columns="monthly_revenue"), responses, n_boot=20)
    single = responses.drop_duplicates("customer_id")
    with pytest.raises(CL.ChurnLinkError, match="two or more"):
        IR.driver_chain(customers, single, n_boot=20)
    few = customers.assign(end_date=pd.NaT)  # nobody has left: no churn event
    with pytest.raises(CL.ChurnLinkError, match="churn events"):
        IR.driver_chain(few, responses, n_boot=20)
    with pytest.raises(IR.ImpactReportError, match="no column 'tier'"):
        IR.revenue_at_risk_table(customers, responses, segment="tier", n_boot=20)


def test_company_worth_equals_the_three_pieces(demo):
    """Two chains for the whole company give what the three functions give one by one (same resamples)."""
    customers, responses = demo
    rev = customers["monthly_revenue"]
    customers = customers.assign(monthly_revenue=rev.fillna(rev.groupby(customers["segment"]).transform("median")))
    plans = [SimpleNamespace(department="Technical Support", objectives=[objective("ts", "csat", 90.0),
                                                                         objective("ts-nps", "nps", 40.0)]),
             SimpleNamespace(department="Billing", objectives=[objective("b", "csat", 90.0)])]
    cw = IR.company_worth(plans, customers, responses, n_boot=30, seed=5, currency="EUR", top=None)
    obj = IR.objective_worth(plans, customers, responses, n_boot=30, seed=5, currency="EUR")
    drv = IR.driver_chain(customers, responses, n_boot=30, seed=5, currency="EUR", top=None)
    risk = IR.revenue_at_risk_table(customers, responses, n_boot=30, seed=5, currency="EUR")
    cols = list(IR.KEYS)
    pd.testing.assert_frame_equal(cw.objectives.table[cols], obj.table[cols], rtol=1e-6)
    assert cw.objectives.table["department"].tolist() == ["Technical Support"] * 2 + ["Billing"]
    pd.testing.assert_frame_equal(cw.drivers.table[["driver", *cols]], drv.table[["driver", *cols]], rtol=1e-6)
    pd.testing.assert_frame_equal(cw.risk.table[["dimension", "group", "revenue_at_risk", "revenue_at_risk_low",
                                                 "revenue_at_risk_high"]],
                                  risk.table[["dimension", "group", "revenue_at_risk", "revenue_at_risk_low",
                                              "revenue_at_risk_high"]], rtol=1e-6)
    assert cw.objectives.sentences == obj.sentences


def test_no_satisfaction_objective_gives_an_empty_table_that_renders(demo):
    """Regression: a plan without csat/nps objectives (or company_worth with no plans) gave a table without
    columns, and reader_table raised KeyError."""
    customers, responses = demo
    plan = SimpleNamespace(department="Billing", objectives=[objective("speed", "first_response_hours", 10.0)])
    w = IR.objective_worth(plan, customers, responses, n_boot=20)
    assert w.table.empty and w.sentences == []
    html = w.reader_table()
    assert "<th>Objective</th>" in html and "<td" not in html
    cw = IR.company_worth([], customers, responses, n_boot=20, top=1)
    assert cw.objectives.table.empty and "<th>Objective</th>" in cw.objectives.reader_table()
