"""Issue 15 on the company pages: what improving a driver is worth (drivers page), the corrected satisfaction ->
churn link next to the naive Cox ratio and revenue at risk (retention page), one computation per run shared by
both pages, and one line saying what is missing when a link cannot be estimated (the rest of the page renders).

The chain's numbers themselves are checked in tests/test_impact.py and tests/test_counterfactual.py; here: the
pages show those numbers (tables = sentences = findings), in the currency of the params, with the statement that
they are an association, and the parts add up."""
from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import drivers_report as DR
from helpers.formatting import interval_decimals
from helpers.retention import hazard_change_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "params" / "report.yaml"
N_BOOT = 30  # enough re-samples for the page logic; the pages use drivers_report.WORTH_N_BOOT


@pytest.fixture(scope="module")
def demo_frames(small_demo):
    from helpers.data import load_dataset

    ds = load_dataset(str(small_demo))
    try:
        return ds.customers, ds.responses, ds.default_as_of()
    finally:
        ds.close()


@pytest.fixture(scope="module")
def worth(demo_frames):
    customers, responses, as_of = demo_frames
    return DR.company_worth_analysis(customers, responses, as_of, currency="EUR", n_boot=N_BOOT)


@pytest.fixture(scope="module")
def retention(small_demo):
    from helpers.retention_report import prepare_retention_report

    return prepare_retention_report(data_source=str(small_demo), report_config=str(CONFIG), as_of="2026-10-31")


# ------------------------------------------------------------------------------------------- drivers page

def test_driver_chain_table_sentences_and_statement(worth):
    assert worth.drivers is not None and worth.link is not None and worth.risk is not None
    t = worth.drivers.table
    assert 1 <= len(t) <= DR.WORTH_TOP
    # ranked by customers kept, every interval around its estimate
    assert list(t["extra_kept"]) == sorted(t["extra_kept"], reverse=True)
    for c in ("csat_change", "extra_kept", "extra_revenue"):
        assert ((t[f"{c}_low"] <= t[c]) & (t[c] <= t[f"{c}_high"])).all(), c
    page = DR.DriversReport(department="all", outcome="csat", drivers=[], period=("", ""), n_boot=N_BOOT, worth=worth)
    html = page.worth_table_html()
    sentences = page.worth_sentences_markdown().replace("\\", "")
    for r in t.itertuples():
        assert f"<td>{r.label}</td>" in html and f"<td>{r.revenue_ci}</td>" in html
        # the sentence prints the same revenue and interval as the table
        revenue, interval = re.match(r"(\S+) \((.+)\)", r.revenue_ci).groups()
        assert f"Raising {r.label} by half a point" in sentences
        assert f"{revenue} revenue ({interval})" in sentences
    intro = page.worth_markdown()
    assert "association under stated assumptions" in intro and "not the result of a controlled experiment" in intro
    assert "euros (EUR)" in intro.replace("\\", "") and f"{worth.n_boot} re-samples" in intro
    assert "€" in html and "$" not in html
    assert "monthly_revenue" not in sentences and "More customers kept after 12 months" in html


def test_currency_comes_from_the_params(demo_frames):
    customers, responses, as_of = demo_frames
    w = DR.company_worth_analysis(customers, responses, as_of, currency="USD", n_boot=20)
    page = DR.DriversReport(department="all", outcome="csat", drivers=[], period=("", ""), n_boot=20, worth=w)
    assert "$" in page.worth_table_html() and "€" not in page.worth_table_html()
    assert "US dollars (USD)" in page.worth_markdown().replace("\\", "")


def _only_responses(small_demo, tmp_path) -> Path:
    folder = tmp_path / "responses_only"
    folder.mkdir()
    shutil.copy(small_demo / "responses.parquet", folder / "responses.parquet")
    return folder


def test_missing_links_become_one_line(demo_frames):
    customers, responses, as_of = demo_frames
    none = DR.company_worth_analysis(None, responses, as_of, has_customers=False, n_boot=20)
    assert none.drivers is none.risk is none.link is None
    assert "customers table" in none.chain_message and "customers table" in none.link_message
    no_revenue = DR.company_worth_analysis(customers.drop(columns=["monthly_revenue"]), responses, as_of,
                                           has_revenue=False, n_boot=20)
    assert no_revenue.drivers is None and no_revenue.risk is None and "monthly revenue" in no_revenue.chain_message
    assert no_revenue.link is not None  # the link needs no revenue
    few = customers.assign(end_date=pd.NaT)  # nobody has left: no churn event to learn from
    few.loc[few.index[:5], "end_date"] = pd.Timestamp(as_of) - pd.Timedelta(days=10)
    no_events = DR.company_worth_analysis(few, responses, as_of, n_boot=20)
    assert no_events.link is None and "churn events" in no_events.link_message
    assert no_events.drivers is None and no_events.chain_message
    for w in (none, no_revenue, no_events):
        page = DR.DriversReport(department="all", outcome="csat", drivers=[], period=("", ""), n_boot=20, worth=w)
        line = page.worth_markdown()
        assert line.count("\n") == 0 and line.startswith("*What improving a driver is worth")
        assert page.worth_table_html() == "" and page.worth_sentences_markdown() == ""


def test_drivers_page_without_customers_renders_the_rest(small_demo, tmp_path):
    report = DR.prepare_drivers_report(data_source=str(_only_responses(small_demo, tmp_path)), n_boot=20,
                                       report_config=str(CONFIG))
    assert report.main is not None and report.findings()  # the driver analysis is there
    assert report.worth is not None and report.worth.drivers is None
    assert "customers table" in report.worth_markdown()


def test_an_as_of_inside_the_data_counts_only_customers_known_then(demo_frames):
    """Regression: customers who signed up after the as-of date made the churn link fail ("start dates after
    the as-of date") on a drivers page run with an earlier as-of outside a run (the data not cut)."""
    customers, responses, _ = demo_frames
    w = DR.company_worth_analysis(customers, responses, "2025-06-30", n_boot=20)
    assert w.link is not None and w.link_message == "", w.link_message
    assert w.drivers is not None and w.as_of == "2025-06-30"
    known = pd.to_datetime(customers["signup_date"]) <= pd.Timestamp("2025-06-30")
    assert w.link.n_customers + w.link.n_without_ratings == int(known.sum())


# ------------------------------------------------------------------------------------------- one computation

def test_worth_is_computed_once_per_run_even_when_both_pages_ask_at_once(demo_frames, tmp_path, monkeypatch):
    customers, responses, as_of = demo_frames
    calls = []
    real = DR._compute_worth

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # the other page asks while this one computes
        return real(*args, **kwargs)

    monkeypatch.setattr(DR, "_compute_worth", slow)
    results = []

    def page():
        results.append(DR.company_worth_analysis(customers, responses, as_of, fingerprint="abc", n_boot=20,
                                                 cache_folder=tmp_path / "worth"))

    threads = [threading.Thread(target=page) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2
    a, b = results
    assert a.drivers.table["extra_revenue"].tolist() == b.drivers.table["extra_revenue"].tolist()
    assert len(list((tmp_path / "worth").glob("worth-*.pkl"))) == 1
    # another date (or data) is another computation
    DR.company_worth_analysis(customers, responses, pd.Timestamp(as_of) - pd.DateOffset(months=1),
                              fingerprint="abc", n_boot=20, cache_folder=tmp_path / "worth")
    assert len(calls) == 2


# ------------------------------------------------------------------------------------------- retention page

def test_naive_link_is_the_pages_cox_ratio_and_the_correction_reaches_the_truth(retention, small_demo):
    link = retention.link
    assert link is not None
    cox = retention.hazards.per_step("mean_csat")
    naive = link.hazard_ratio("naive")
    # the same model (mean CSAT + segment, Efron ties) fitted by two implementations
    assert naive[0] == pytest.approx(cox[0], abs=0.005)
    corrected = link.hazard_ratio("corrected")
    truth = json.loads((small_demo / "ground_truth.json").read_text())["churn"]["hazard_ratio_per_csat_point"]
    assert corrected[0] < naive[0] < 1 and corrected[1] <= truth <= corrected[2]
    rel = link.reliability.set_index("k").loc["all"]
    assert 0 < rel["ci_low"] <= rel["reliability"] <= rel["ci_high"] < 1
    html = retention.churn_link_table_html()
    for model in ("naive", "corrected"):
        hr, lo, hi = link.hazard_ratio(model)
        d = max(2, interval_decimals(lo, hi))
        assert f"<td>{hr:.{d}f}</td><td>{lo:.{d}f} to {hi:.{d}f}</td>" in html, model
    assert f"<td>{rel['reliability']:.2f}</td>" in html
    # the finding carries the corrected change as the table prints it
    point, interval = hazard_change_text(*corrected)
    finding = next(f for f in retention.findings() if "monthly churn hazard" in f)
    assert f"a {point} hazard (95% CI {interval})" in finding
    assert f"<td>{point}</td><td>{interval}</td>" in html


def test_revenue_at_risk_parts_add_up_and_the_finding_is_the_table(retention):
    risk = retention.risk
    assert risk is not None
    t = risk.table
    company = t[t["dimension"] == "all"].iloc[0]
    for dim in ("department", "segment"):
        part = t[t["dimension"] == dim]
        assert part["revenue_at_risk"].sum() == pytest.approx(company["revenue_at_risk"], rel=1e-9), dim
        assert part["customers"].sum() == company["customers"], dim
    assert 0 < company["revenue_at_risk_low"] < company["revenue_at_risk"] < company["revenue_at_risk_high"]
    findings = retention.findings()
    assert len(findings) <= 6
    money = retention.money(company["revenue_at_risk"])
    finding = next(f for f in findings if "goes with dissatisfaction" in f)
    assert finding.startswith(f"**{money} of revenue over the next 12 months")
    ci = retention.money_interval(company["revenue_at_risk_low"], company["revenue_at_risk_high"])
    assert f"95% CI {ci}" in finding
    for dim in ("department", "segment"):
        html = retention.risk_table_html(dim)
        assert "<td>all customers</td>" in html and f"<td>{money} ({ci})</td>" in html
        assert "no answers" not in html.replace("without answers", "")
    assert "€" in retention.risk_table_html() and "median satisfaction" in retention.risk_markdown()
    assert "not the result of a controlled experiment" in retention.risk_markdown()


def test_retention_charts_count_the_link_chart(retention):
    names = [n for n, _ in retention.figures()]
    assert "churn link" in names and retention.expected_charts() == len(names)
    assert "corrected for rating noise" in retention.alt_churn_link()


def test_retention_page_without_revenue_says_so_in_one_line(retention):
    import copy

    r = copy.copy(retention)
    r.worth = DR.CompanyWorthPage(as_of="2026-10-31", currency="EUR", link=retention.link,
                                  chain_message="needs each customer's monthly revenue, which the customers table "
                                                "does not have")
    assert r.risk is None and r.risk_row() is None
    assert r.risk_markdown().startswith("*Revenue at risk needs each customer") and "\n" not in r.risk_markdown()
    assert r.risk_table_html() == "" and not any("dissatisfaction" in f for f in r.findings())
    assert r.churn_link_table_html()  # the link is still shown


def test_a_segment_page_states_its_segments_revenue_at_risk(retention):
    import copy

    r = copy.copy(retention)
    r.segment = "consumer"
    t = r.risk.table
    row = t[(t["dimension"] == "segment") & (t["group"] == "consumer")].iloc[0]
    finding = next(f for f in r.findings() if "goes with dissatisfaction" in f)
    assert finding.startswith(f"**{r.money(row['revenue_at_risk'])} of revenue over the next 12 months from consumer "
                              "customers goes with dissatisfaction**")
