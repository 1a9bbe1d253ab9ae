"""Every result object displays itself in a notebook: ``_repr_html_`` with its one-sentence summary, a compact
reader table (n and intervals, no raw floats, no code names) and where the full table is; a short ``repr``. And the
charts for grouped KPIs: a forest chart marking small groups, one line per group, kpi_trend refusing a grouped
series and labelling quarterly data."""
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from helpers import charts, explore
from helpers import kpis as K
from helpers.data import load_dataset
from helpers.drivers import relative_importance, relative_importance_from_corr
from helpers.drivers_analysis import analyze_by_segment, analyze_drivers
from helpers.errors import KitError
from helpers.objectives import evaluate_objectives
from helpers.relate import relate
from helpers.retention import (cohort_table, customer_durations, fit_cox, fit_sbg, fit_sbg_by, kaplan_meier, log_rank,
                               monthly_retention_rates, sbg_holdout)

matplotlib.use("Agg")
START, END = "2026-01-01", "2026-06-30"


@pytest.fixture(scope="module")
def ds(small_demo):
    return load_dataset(small_demo)


def _results(ds):
    frame = customer_durations(ds.customers)
    responses = ds.responses
    out = {
        "Estimate": K.compute_kpi("csat", ds, start=START, end=END),
        "Comparison": K.compare_kpi("nps", ds, period_a=("2025-01-01", "2025-06-30"), period_b=(START, END)),
        "KpiTable": K.compute_kpi("csat", ds, by="department", start=START, end=END),
        "DriverImportance": relative_importance(ds, "csat", ds.attributes, n_boot=50, seed=1),
        "DriverImportance (corr)": relative_importance_from_corr(responses[["csat", *ds.attributes]].corr(), "csat",
                                                                 ds.attributes),
        "DriverAnalysis": analyze_drivers(responses, "csat", ds.attributes, n_boot=0, ordinal=False),
        "SegmentDrivers": analyze_by_segment(responses, "csat", ds.attributes, "channel", n_boot=0),
        "RelateResult": relate("ces", "channel", ds, start=START, end=END),
        "KaplanMeierResult": kaplan_meier(frame, group="segment"),
        "LogRankResult": log_rank(frame, group="segment"),
        "CoxResult": fit_cox(frame, "duration", "event", ["segment", "monthly_revenue"]),
        "CohortTable": cohort_table(frame) if "signup_date" in frame else None,
        "ObjectiveEvaluation": evaluate_objectives("billing", ds),
        "Seasonality": explore.seasonality(K.kpi_series(ds.con, "csat", freq="month")),
        "KpiChanges": explore.kpi_changes(ds, explore.explorer_periods(ds), metrics=["csat", "nps"]),
    }
    survivors = [1000, 869, 743, 653, 593, 551, 517, 491]  # Fader & Hardie (2007) "regular" customers
    out["SBGResult"] = fit_sbg(survivors, n_boot=20)
    out["HoldoutResult"] = sbg_holdout(survivors, holdout=2, n_boot=20)
    try:
        out["SBGGroups"] = fit_sbg_by(frame, by="segment", n_boot=20)
    except (KitError, TypeError):
        pass
    return {k: v for k, v in out.items() if v is not None}


def test_every_result_class_has_a_readable_html_and_a_short_repr(ds):
    for name, result in _results(ds).items():
        html = result._repr_html_()
        assert isinstance(html, str) and len(html) > 40, name
        assert "<table" in html or name in ("LogRankResult", "Estimate", "Comparison"), name
        assert "Traceback" not in html and "nan" not in re.sub(r"<[^>]+>", " ", html).split(), name
        text = repr(result)
        assert len(text) <= 400, f"{name}: repr is {len(text)} characters"
        assert "\n" not in text.strip() or len(text) < 400, name


def test_driver_importance_is_sorted_and_keeps_draws_out_of_attrs(ds):
    r = relative_importance(ds, "csat", ds.attributes, n_boot=50, seed=1)
    assert list(r.table["rank"]) == sorted(r.table["rank"])
    assert "boot_draws" not in r.attrs and r.draws.shape == (r.attrs["n_boot_usable"], len(r.table))
    assert len(repr(r)) < 300
    html = r._repr_html_()
    assert "attr_" not in html.split("<table")[1] and "signed_importance" not in html and "Share 95% CI" in html
    assert "0.1234567" not in html and re.search(r"\d+\.\d{4,}", re.sub(r"<[^>]+>", " ", html)) is None
    fig, ax = matplotlib.pyplot.subplots()
    assert r.plot(ax) is ax and len(ax.patches) == len(r.table)  # the README's .plot(ax) works
    matplotlib.pyplot.close(fig)
    # old DataFrame calls still work
    assert r["importance"].sum() == pytest.approx(r.attrs["r2"]) and r.loc[r.index[0], "rank"] == 1


def test_kpi_table_html_flags_small_groups_and_names_the_full_table(ds):
    t = K.compute_kpi("csat", ds, by="department", start="2026-06-01", end="2026-06-30", min_responses=30)
    html = t._repr_html_()
    small = t.table.loc[t.table["small"], "department"].tolist()
    assert small and all(s in html for s in small) and "yes (n &lt; 30)" in html
    assert "`.table`" in html and "95% CI" in html


def test_forest_plot_marks_small_groups(ds):
    t = K.compute_kpi("first_response_hours", ds, by="team", start="2026-06-01", end="2026-06-30")
    fig, ax = matplotlib.pyplot.subplots()
    t.plot(ax=ax)
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    n_small = int(t.table["small"].sum())
    assert len(labels) == len(t.table) and sum("small" in lab for lab in labels) == n_small
    assert "lower is better" in ax.get_title()
    ov = K.kpi_overview(ds.con, ["csat", "nps"], by="channel")
    with pytest.raises(KitError, match="one metric"):
        K.forest_plot(ov)
    K.forest_plot(ov, metric="nps", ax=ax)
    matplotlib.pyplot.close("all")


def test_grouped_series_one_line_per_group_and_kpi_trend_refuses_them(ds):
    s = K.kpi_series(ds.con, "csat", freq="quarter", by="channel")
    fig, ax = matplotlib.pyplot.subplots()
    K.plot_series(s, ax=ax)
    assert len(ax.get_lines()) == s["channel"].nunique() and "quarterly" in ax.get_title()
    with pytest.raises(KitError, match="several rows per period.*channel.*plot_series"):
        charts.kpi_trend(s)
    ax2 = charts.kpi_trend(s[s["channel"] == "email"])
    assert "quarterly value" in ax2.get_legend_handles_labels()[1]
    with pytest.raises(KitError, match="too many lines"):
        K.plot_series(K.kpi_series(ds.con, "fcr", freq="quarter", by="team"))
    matplotlib.pyplot.close("all")


def test_seasonality_plot_has_readable_dates(ds):
    fig, ax = matplotlib.pyplot.subplots(figsize=(7, 3))
    explore.seasonality(K.kpi_series(ds.con, "csat", freq="month")).plot(ax=ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert 2 <= len(labels) <= 9 and all(len(lab) <= 7 for lab in labels)  # "2025", "Apr": never "2024-012024-05"
    matplotlib.pyplot.close(fig)


def test_display_mixin_on_a_minimal_class():
    from dataclasses import dataclass

    from helpers.results import displayable

    @displayable
    @dataclass
    class Demo:
        table: pd.DataFrame

        def summary(self):
            return "Two groups.\n\nMore detail."

    d = Demo(pd.DataFrame({"group": ["a", "b"], "value": [1.23456, 2.0], "ci_low": [1.0, 1.5],
                           "ci_high": [1.5, 2.5], "n": [10, 2000]}))
    html = d._repr_html_()
    assert "Two groups." in html and "More detail" not in html and "1.0 to 1.5" in html and "2,000" in html
    assert repr(d) == "<Demo [2 rows]: Two groups.>"
    assert np.isfinite(d.table["value"]).all()


def test_cox_summary_states_a_small_per_unit_effect_per_a_readable_step(ds):
    frame = customer_durations(ds.customers)
    cox = fit_cox(frame, "duration", "event", ["segment", "monthly_revenue"])
    text = cox.summary()
    assert "each unit of monthly revenue" not in text and "by 0% (95% CI -0% to +0%)" not in text
    step, words = cox.steps["monthly_revenue"]
    assert step == 10 ** np.floor(np.log10(frame["monthly_revenue"].std())) and words in text
    hr, lo, hi = cox.per_step("monthly_revenue")  # the step's ratio is the unit ratio to the power of the step
    assert hr == pytest.approx(cox.table.loc["monthly_revenue", "hazard_ratio"] ** step)
