"""helpers.objectives_report: the department report's glue never raises; problems become messages."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from helpers.objectives_report import chance_percent, prepare_department_report


@pytest.fixture(scope="module")
def cs_report(small_demo):
    return prepare_department_report("customer_service", data_source=str(small_demo), as_of="2026-10-31")


def test_unknown_department_is_a_message_not_an_exception(small_demo):
    report = prepare_department_report("legal", data_source=str(small_demo))
    assert report.evaluation is None and report.objective_ids == []
    assert any("unknown department 'legal'" in p and "customer_service" in p for p in report.problems)
    assert "unknown department" in report.status_table_html()
    assert sum(report.status_counts().values()) == 0
    assert report.as_of == pd.Timestamp("2026-10-31")  # the last date in the demo data


def test_broken_params_file_and_missing_data_are_messages(tmp_path, small_demo):
    bad = tmp_path / "bad.yaml"
    bad.write_text("department: Sales\nobjectives:\n  - id: x\n    metric: nps\n    target: high\n")
    report = prepare_department_report("sales", params_file=str(bad), data_source=str(small_demo))
    assert report.evaluation is None
    assert any(str(bad) in p and "objective 'x'" in p for p in report.problems)
    report = prepare_department_report("sales", data_source=str(tmp_path / "nowhere"))
    assert report.dataset is None and any("data source not found" in p for p in report.problems)
    assert report.drivers()[0] is None and report.retention()[0] is None


def test_sections_of_a_real_department(cs_report):
    r = cs_report
    assert r.department == "Customer Service" and not r.problems
    assert len(r.objective_ids) == 7
    text = r.objective_markdown("cs-frt-rep001")
    assert "\\(representative\\)" in text and "Forecast for Q4 2026" in text and "status-badge" in text
    assert "chance of meeting the target" in text and "judged on Q4 2026 (inferred" in text
    tree = r.cascade_markdown().splitlines()
    assert tree[0].startswith("- ") and any(line.startswith("    - ") for line in tree)  # three levels
    dq = r.data_quality()
    assert list(dq.index) == list(r.evaluation.table["title"]) and (dq["periods with data"] > 0).all()
    missing = r.missing_values()
    assert set(missing.index.get_level_values("table")) == {"responses", "tickets"} and (missing["rows"] > 0).all()
    responses = r.dataset.responses
    nps_missing = responses.loc[responses["department"] == "Customer Service", "nps"].isna().sum()
    assert missing.loc[("responses", "nps"), "missing"] == nps_missing
    customers = r.department_customers()
    tickets = r.dataset.tickets
    expected = set(tickets.loc[tickets["department"] == "Customer Service", "customer_id"])
    assert expected <= set(customers["customer_id"])


def test_department_rows_selected_in_duckdb_equal_the_full_frames(small_demo):
    """The report reads only its department's rows from DuckDB; the frames, the objectives' evaluation and
    the department's customers equal what the full pandas tables give."""
    from helpers.objectives import evaluate_objectives

    report = prepare_department_report("technical_support", data_source=str(small_demo), as_of="2026-06-30")
    ds, view = report.dataset, report.department_data
    assert view.department == "Technical Support"
    for table in ("responses", "tickets"):
        full = getattr(ds, table)
        expected = full[full["department"] == "Technical Support"].reset_index(drop=True)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(getattr(view, table), expected)
    lean = view.for_kpis()
    assert "ticket_id" not in lean.tickets.columns and "comment" not in lean.responses.columns
    assert isinstance(lean.tickets["team"].dtype, pd.CategoricalDtype)
    assert lean.customers is ds.customers and lean.departments == ds.departments
    reference = evaluate_objectives(report.plan, ds, report.as_of, min_n=1, min_responses=30)
    pd.testing.assert_frame_equal(report.evaluation.table, reference.table)
    for key, series in reference.series.items():
        pd.testing.assert_frame_equal(report.evaluation.series[key], series)
    ids = set()
    for table, date_col in (("tickets", "created_at"), ("responses", "response_date")):
        df = getattr(ds, table)
        df = df[(df["department"] == "Technical Support")
                & (df[date_col] <= report.as_of + pd.Timedelta(days=1))]
        ids.update(df["customer_id"])
    expected = ds.customers[ds.customers["customer_id"].isin(ids)]
    assert 0 < len(expected) < len(ds.customers)
    pd.testing.assert_frame_equal(report.department_customers(), expected)


# ---------------------------------------------------------------------------------------- the reader's page
@pytest.fixture(scope="module")
def billing(small_demo):
    return prepare_department_report("billing", data_source=str(small_demo), as_of="2026-10-31")


def test_delayed_entry_survival_recovers_a_known_curve_that_selection_inflates():
    """Customers selected because they contacted a department after signup: with delayed entry (at risk
    only from the contact) the Kaplan-Meier curve matches the true exponential survival; counting from signup
    (no delayed entry) inflates it, as the old section did."""
    import numpy as np

    from helpers.objectives_report import delayed_entry_survival, survival_at_with_ci

    rng = np.random.default_rng(0)
    n, rate = 20_000, 0.04
    lifetime = rng.exponential(1 / rate, n)
    contact = rng.uniform(0, 36, n)
    censor = rng.uniform(24, 60, n)
    selected = contact < np.minimum(lifetime, censor)  # only customers still there when they got in touch
    frame = pd.DataFrame({"duration": np.minimum(lifetime, censor), "event": (lifetime <= censor).astype(int),
                          "entry": contact})[selected]
    fair = delayed_entry_survival(frame)
    naive = delayed_entry_survival(frame.assign(entry=0.0))
    for t in (12, 24):
        truth = np.exp(-rate * t)
        s, lo, hi = survival_at_with_ci(fair, t)
        assert lo <= truth <= hi and abs(s - truth) < 0.03
        assert survival_at_with_ci(naive, t)[1] > truth + 0.1  # selection on a future event inflates survival


def test_department_retention_counts_from_first_contact(billing):
    survival, message = billing.retention()
    assert survival is not None and not message
    contacts = billing.first_contacts()
    customers = billing.department_customers()
    assert set(contacts["customer_id"]) == set(customers["customer_id"].astype(str))
    text = billing.retention_text(survival)
    assert "after 12 months" in text and "95% CI" in text and "_" not in text
    assert "counted from their first contact" in billing.retention_alt(survival)


def test_drivers_are_the_departments_one_shared_analysis(billing):
    from helpers.drivers_report import department_driver_analysis

    analysis, message = billing.drivers()
    shared = department_driver_analysis(billing.dataset, billing.config, "Billing", billing.as_of, cache=False)
    assert not message and shared.analysis is not None
    pd.testing.assert_series_equal(analysis.table["share"], shared.analysis.table["share"])


def test_first_screen_status_table_and_headline_for_readers(billing):
    ev = billing.evaluation
    first = ev.look_first()
    screen = billing.first_screen_html()
    counts = {k: v for k, v in billing.status_counts().items() if v}
    for status, count in counts.items():
        assert f'<span class="count">{count}</span> <span class="status-badge"' in screen and f"</span> {status}</span>" in screen
    chance = chance_percent(first["p_met"])
    assert f"<strong>{chance}</strong> chance" in screen and chance in billing.headline()
    assert screen.count('class="kpi-tile"') == ev.table["metric"].nunique()
    table = billing.status_table_html()
    assert table.startswith('<table class="kit-table dept-status" id="status-table"><thead><tr><th>Status</th>')
    rows = table.split("<tr>")[2:]
    assert len(rows) == len(ev.table)
    for row, (_, r) in zip(rows, ev.table.iterrows()):
        chance_cell = re.search(r'<td class="num"><span class="cell-label">Chance: </span>([^<]*)<', row).group(1)
        assert chance_cell == ("n/a" if r["status"] in ("no data", "too little data") else chance_percent(r["p_met"]))
    page_text = screen + table + "".join(billing.objective_markdown(o) for o in billing.objective_ids)
    assert "params/departments" not in page_text and "billing-" not in page_text and "min_responses" not in page_text
    assert "nan" not in page_text.lower().replace("n/a", "")


def test_charts_state_the_finding_and_alt_texts_say_value_target_status(billing):
    for oid in billing.objective_ids:
        r = billing.evaluation.row(oid)
        title, alt = billing.objective_chart_title(oid), billing.objective_alt(oid)
        target = r["target_text"].split(" (from")[0]
        assert f"target {target}" in title and r["status"] in alt and title in alt
        assert r["current_label"] in title
        assert billing.objective_ylabel(oid).endswith(")")  # units on the axis
    frt = billing.objective_chart_title("billing-frt-invoicing")
    assert re.search(r"forecast [\d.]+ h for Dec 2026 - target 12\.0 h, \d+% chance$", frt)
    assert "Samuel Lewis" not in frt and "team Invoicing" in frt
    assert "off track" in billing.cascade_alt() and "Jonas Okafor" in billing.cascade_alt()


def test_team_and_agent_funnels_name_only_units_outside_the_limits(billing):
    items, notes = billing.funnels()
    assert {(i["result"].metric, i["by"]) for i in items} == {("fcr", "team"), ("fcr", "agent_id"),
                                                              ("first_response_hours", "team"),
                                                              ("first_response_hours", "agent_id")}
    assert any("NPS comes from survey answers" in n for n in notes)
    agents = next(i for i in items if i["by"] == "agent_id")
    table = billing.funnel_table_html(agents)
    names = re.findall(r"<tr><td>([^<]+)</td>", table)
    assert names == sorted(names) and "billing-rep" not in table  # alphabetical, by name, no ids
    for item in items:
        flagged = set(item["result"].flagged["unit"])
        title = billing.funnel_title(item)
        assert ("by more than chance" in title) == (not flagged)


def test_chances_at_the_ends_are_not_shown_as_certain():
    shown = [chance_percent(p) for p in (0.0, 0.004, 0.0099, 0.01, 0.46, 0.99, 0.995, 1.0, float("nan"))]
    assert shown == ["<1%", "<1%", "1%", "1%", "46%", "99%", ">99%", ">99%", "n/a"]


PAGE_CONTENT_PX = 920  # kit.css: .page max-width 60rem (960 px) minus 2 x 1.25rem padding


def _smallest_text_px(fig, dpi: int = 110) -> float:
    """The smallest text of a figure in CSS pixels once its PNG (``show_figure``: ``dpi``, tight bounding box)
    is scaled to the page's content width (images are never enlarged: max-width 100%)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.canvas.draw()
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_visible() and str(t.get_text()).strip()]
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    width = Image.open(io.BytesIO(buffer.getvalue())).size[0]
    scale = min(1.0, PAGE_CONTENT_PX / width)
    return min(t.get_fontsize() for t in texts) * dpi / 72 * scale


def test_chart_text_is_at_least_10_px_on_the_page(billing):
    import matplotlib.pyplot as plt

    from helpers.charts import apply_theme

    apply_theme()
    try:
        for oid in billing.objective_ids:
            fig, ax = plt.subplots(figsize=(8.6, 3.6))  # as in the notebook
            billing.plot_objective(oid, ax=ax)
            assert _smallest_text_px(fig) >= 10, oid
        assert _smallest_text_px(billing.plot_cascade().figure) >= 10
        items, _ = billing.funnels()
        fig, ax = plt.subplots(figsize=(8.6, 3.8))
        billing.plot_funnel(items[0], ax=ax)
        assert _smallest_text_px(fig) >= 10
        survival, _ = billing.retention()
        fig, ax = plt.subplots(figsize=(8.6, 3.8))
        billing.plot_retention(survival, ax=ax)
        assert _smallest_text_px(fig) >= 10
    finally:
        plt.close("all")


def test_messages_are_worded_for_readers(billing):
    """Evaluation and data messages reach the page without file paths, setting names, KPI codes, objective
    ids or person ids (issue 11: a Billing page showed /work/.../billing.yaml and min_responses)."""
    raw = (f"{billing.params_file}: objective 'billing-frt-rep001', field 'metric': metric 'fcr' cannot be computed: "
           "KPI 'fcr': filter team='Ghost' matches no rows in tickets | responses (/srv/exports/responses.csv): "
           "3 rows dated after today in column 'response_date' | fewer than min_responses = 30 | no nps data since "
           "2025-04 | agent_id has the values 'billing-rep001' | 0% chance of meeting it; 10% chance")
    text = billing.reader_text(raw)
    for leak in ("/", "billing.yaml", "billing-frt-rep001", "field", "'fcr'", "min_responses", "response_date",
                 "no nps", "agent_id", "billing-rep001"):
        assert leak not in text, leak
    title = billing.plan.get("billing-frt-rep001").title
    assert text.startswith(f'objective "{title}": First-contact resolution cannot be computed: no tickets have '
                           "team 'Ghost'")
    assert "fewer than the minimum of 30" in text and "no NPS data since 2025-04" in text
    assert f"'{billing.names['billing-rep001']}'" in text
    assert "<1% chance of meeting it; 10% chance" in text
