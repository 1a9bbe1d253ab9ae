"""helpers.kpi_tiles: one tile per objective KPI whose numbers are the evaluation's (same rounding as the status
table), the change test of helpers.kpis, the distance to the target and an HTML sparkline."""
from __future__ import annotations

import re

import numpy as np
import pytest

from helpers.kpi_tiles import sparkline_html, tiles_from_evaluation, tiles_html
from helpers.objectives_report import prepare_department_report


@pytest.fixture(scope="module")
def billing(small_demo):
    return prepare_department_report("billing", data_source=str(small_demo), as_of="2026-10-31")


def test_one_tile_per_kpi_with_the_evaluations_numbers(billing):
    ev = billing.evaluation
    tiles = tiles_from_evaluation(ev, names=billing.names)
    metrics = [t.kpi for t in tiles]
    assert len(metrics) == len(set(metrics)) == len(set(ev.table["metric"]))
    for t in tiles:
        last = ev.series[t.objective_id].dropna(subset=["value"]).sort_values("period").iloc[-1]
        assert t.value == pytest.approx(float(last["value"])) and t.n == pytest.approx(float(last["n"]))
        assert t.ci_low == pytest.approx(float(last["ci_low"])) and t.ci_high == pytest.approx(float(last["ci_high"]))
        row = ev.row(t.objective_id)
        # the fact test: the tile's value and interval read exactly as in the status table's "Now" cell
        assert row["current_text"].startswith(f"{t.value_text} (")
        assert t.interval_text.replace("95% CI ", "") in row["current_text"].replace("(", "").replace(")", "")
        change = ev.changes[t.objective_id]
        assert t.change == pytest.approx(change.difference) and t.change_significant == change.significant()
        met = (t.value >= t.target) if t.higher_is_better else (t.value <= t.target)
        assert t.target_met == met and (("meets it" in t.distance_text) == met)
        record = t.to_summary()
        assert record["kpi"] == t.kpi and record["change_significant"] == t.change_significant
    scoped = {t.kpi: t.scope for t in tiles}
    assert scoped["fcr"] == "team Collections" and scoped["nps"] == ""


def test_tiles_html_shows_value_interval_n_change_target_and_sparkline(billing):
    tiles = billing.kpi_tiles()
    html = tiles_html(tiles)
    assert html.count('class="kpi-tile"') == len(tiles)
    for t in tiles:
        assert f'<span class="kpi-value">{t.value_text}</span>' in html
        assert f"n = {int(t.n):,}" in html and t.change_note in html and f"Target {t.target_text}" in html
    assert html.count('role="img"') == len(tiles) and "aria-label=\"NPS from" in html
    assert "<svg" not in html and "<script" not in html  # pages allow neither
    assert tiles_html([]).startswith("<p")


def test_sparkline_heights_follow_values_and_the_target():
    html = sparkline_html([1.0, 2.0, 3.0, np.nan, 5.0], target=4.0, height=24, label="x <b>")
    heights = [int(h) for h in re.findall(r'class="spark-pt[^"]*" style="height:(\d+)px"', html)]
    assert heights[0] < heights[1] < heights[2] < heights[4] and heights[3] == 0
    assert heights[0] == 2 and heights[4] == 22
    target = int(re.search(r'spark-target" style="height:(\d+)px"', html).group(1))
    assert heights[2] < target < heights[4]
    assert 'aria-label="x &lt;b&gt;"' in html
    assert sparkline_html([np.nan]) == ""


def test_customer_kpi_tiles_say_they_are_company_wide(small_demo):
    """Customers carry no department, so a retention objective is measured on all customers: its tile says so."""
    report = prepare_department_report("customer_service", data_source=str(small_demo), as_of="2026-10-31")
    tiles = {t.kpi: t for t in report.kpi_tiles()}
    assert tiles["retention_rate"].scope.startswith("all customers")
    assert tiles["nps"].scope == "" and tiles["fcr"].scope == "team Front Desk"


def test_changes_and_gaps_in_points_keep_the_values_decimal():
    """At 10M customers an NPS change of +0.4 points is significant: it must not read "0 points"."""
    from helpers.kpi_tiles import _difference_text

    assert _difference_text(0.4, "points", False) == "+0.4 points"
    assert _difference_text(-1.0, "points", False) == "-1.0 point"
    assert _difference_text(0.04, "%", False) == "0.0 points"
    assert _difference_text(2.35, "%", False) == "+2.4 points"
