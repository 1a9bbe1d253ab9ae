"""Reader-facing retention tables: labels, intervals and p-values as a stakeholder reads them."""
import numpy as np
import pandas as pd
import pytest

from helpers.retention import (fit_cox, fmt_months, fmt_months_interval, hazard_change_text, kaplan_meier,
                                percent_interval)
from helpers.retention_report import hazard_table_html, survival_table_html


def _frame(seed=1, n=600):
    rng = np.random.default_rng(seed)
    group = rng.choice(["basic", "premium"], n)
    rate = np.where(group == "premium", 0.05, 0.10)
    duration = rng.exponential(1 / rate)
    censor = rng.uniform(0, 30, n)
    return pd.DataFrame({"duration": np.minimum(duration, censor), "event": (duration <= censor).astype(int),
                         "plan": group})


def test_survival_table_matches_kaplan_meier():
    km = kaplan_meier(_frame(), "duration", "event", group="plan")
    html = survival_table_html(km)
    assert "<th>Segment</th>" in html and "median" not in html.lower().split("<tbody>")[1]
    for _, row in km.medians.iterrows():
        assert (f"<td>{row['plan']}</td><td class=\"num\">{int(row['n']):,}</td>"
                f"<td class=\"num\">{int(row['events']):,}</td><td>{fmt_months(row['median'])}</td>"
                f"<td>{fmt_months_interval(row['ci_low'], row['ci_high'])}</td>") in html
    assert "nan" not in html.lower()


def test_hazard_table_uses_reader_labels_and_p_values():
    from helpers.formatting import fmt_p_value, html_escape

    cox = fit_cox(_frame(), "duration", "event", ["plan"])
    html = hazard_table_html(cox)
    hr, lo, hi = cox.table.iloc[0][["hazard_ratio", "ci_low", "ci_high"]]
    point, interval = hazard_change_text(hr, lo, hi)
    assert (f"<td>Premium plan (vs basic)</td><td>{point}</td><td>{interval}</td><td>{hr:.2f}</td>") in html
    assert f"<td>{html_escape(fmt_p_value(cox.table['p_value'].iloc[0]))}</td></tr>" in html
    assert "plan_premium" not in html and "ci_low" not in html


# ------------------------------------------------------------------------------------------------ issue 11 wording


@pytest.mark.parametrize("ratio, low, high, point, interval", [
    (0.40, 0.37, 0.44, "60% lower", "56% to 63% lower"),  # never "-63% to -56%" next to "60%"
    (0.88, 0.69, 1.12, "12% lower", "31% lower to 12% higher"),
    (1.30, 1.10, 1.55, "30% higher", "10% to 55% higher"),
    (0.999, 0.9985, 0.9995, "0.10% lower", "0.05% to 0.15% lower"),  # never "0% (95% CI -0% to +0%)"
])
def test_hazard_change_text(ratio, low, high, point, interval):
    assert hazard_change_text(ratio, low, high) == (point, interval)


def test_months_and_percent_intervals_print_like_the_tables():
    assert fmt_months(7.4) == "7.4" and fmt_months(23.0) == "23"
    assert fmt_months_interval(13.0, float("inf")) == "13 to not yet reached"
    assert percent_interval(0.4071, 0.387, 0.429) == ("41%", "39% to 43%")
    assert percent_interval(0.5872, 0.5851, 0.5893) == ("58.7%", "58.5% to 58.9%")  # ends never print alike


def test_cox_labels_and_steps_for_readers():
    frame = _frame().assign(plan=lambda d: d["plan"].map({"basic": "small_business", "premium": "consumer"}))
    rng = np.random.default_rng(3)
    frame["monthly_revenue"] = rng.gamma(2.0, 150.0, len(frame))
    cox = fit_cox(frame, "duration", "event", ["plan", "monthly_revenue"])
    text = cox.summary()
    assert "small_business" not in text and "small business plan (vs consumer)" in text
    # a continuous covariate is stated per a readable step (fit_cox's default: a power of ten near its SD)
    assert "monthly_revenue" not in text and "each 100 more of monthly revenue" in text
    assert "by 0% " not in text and "0% to 0%" not in text
    cox.steps["monthly_revenue"] = (100.0, "each extra €100 of monthly revenue")
    hr, lo, hi = cox.per_step("monthly_revenue")
    row = cox.table.loc["monthly_revenue"]
    assert hr == pytest.approx(row["hazard_ratio"] ** 100) and lo == pytest.approx(row["ci_low"] ** 100, rel=1e-9)
    assert "each extra €100 of monthly revenue" in cox.summary()


def test_findings_repeat_the_table_numbers(small_demo):
    """The fact test of the retention page: each number a finding states is printed the same in its table."""
    import re

    from helpers.retention_report import prepare_retention_report

    rep = prepare_retention_report(data_source=str(small_demo), as_of="2026-10-31", n_boot=50)
    findings = rep.findings()
    assert 4 <= len(findings) <= 6
    text = " ".join(findings)
    projection = rep.projection_table_html()
    m = re.search(r"Of a new cohort, \*\*(\S+)\*\* are expected to still be customers after 12 months "
                  r"\(95% CI (.+?)\)", text)
    assert m and f'<td class="num">12</td><td>{m.group(1)}</td><td>{m.group(2)}</td>' in projection
    m = re.search(r"lowers the monthly churn hazard by (\S+)\*\* \(95% CI (.+?)\)", text)
    assert m and f"<td>{m.group(1)} lower</td><td>{m.group(2)}</td>" in rep.hazard_table_html()
    m = re.search(r"worth about \*\*(\S+)\*\* in revenue over their lifetime \(95% CI (.+?)\)", text)
    assert m and m.group(1).startswith("€")
    assert f"<td>{m.group(1)}</td><td>{m.group(2)}</td>" in rep.value_table_html()
    for _, row in rep.survival.medians.iterrows():
        assert f"after {fmt_months(row['median'])} months (95% CI {fmt_months_interval(row['ci_low'], row['ci_high'])})" \
            in text
        assert f"<td>{fmt_months(row['median'])}</td><td>{fmt_months_interval(row['ci_low'], row['ci_high'])}</td>" \
            in rep.survival_table_html()
    for html in (projection, rep.hazard_table_html(), rep.value_table_html(), rep.survival_table_html(),
                 rep.segments_table_html(), rep.sbg_parameters_table_html(), rep.model_comparison_table_html()):
        assert "nan" not in html.lower() and "_" not in re.sub(r"<[^>]+>", "", html)


def test_model_comparison_rounds_like_the_forecast_sentence(small_demo):
    from helpers.retention_report import prepare_retention_report

    rep = prepare_retention_report(data_source=str(small_demo), as_of="2026-10-31", n_boot=0)
    chosen = rep.rates.holdout
    assert f"the {chosen.model} forecast was off by {chosen.mape:.1f}% on average" in rep.rates.summary()
    assert f"<td>{chosen.model}</td><td>{chosen.mape:.1f}%</td>" in rep.model_comparison_table_html()


def test_month_intervals_never_print_both_ends_alike():
    """With millions of customers a median's interval is narrower than a tenth of a month (seen at 10M:
    "after 7.8 months (95% CI 7.8 to 7.8)"): the median and its ends get the decimals the ends need."""
    from helpers.retention import months_and_interval

    assert fmt_months_interval(7.81, 7.84) == "7.81 to 7.84"
    assert months_and_interval(7.826, 7.81, 7.84) == ("7.83", "7.81 to 7.84")
    assert months_and_interval(7.4, 7.0, 8.0) == ("7.4", "7 to 8")
    assert months_and_interval(12.0, 11.5, float("inf")) == ("12", "11.5 to not yet reached")
