"""helpers.objectives_report: the department report's glue never raises; problems become messages."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from helpers.formatting import interval_decimals, md_escape
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
    # each share is printed with its interval's decimals (at 10M: "38% after 12 months (95% CI 38.4% to 38.5%)")
    import re
    found = re.findall(r"(\d+(?:\.(\d+))?)% after \d+ months \(95% CI (\d+(?:\.(\d+))?)% to", text)
    assert found and all(len(point_dec) == len(ci_dec) for _, point_dec, _, ci_dec in found)
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
           "2025-04 | agent_id has the values 'billing-rep001'")
    text = billing.reader_text(raw)
    for leak in ("/", "billing.yaml", "billing-frt-rep001", "field", "'fcr'", "min_responses", "response_date",
                 "no nps", "agent_id", "billing-rep001"):
        assert leak not in text, leak
    title = billing.plan.get("billing-frt-rep001").title
    assert text.startswith(f'objective "{title}": First-contact resolution cannot be computed: no tickets have '
                           "team 'Ghost'")
    assert "fewer than the minimum of 30" in text and "no NPS data since 2025-04" in text
    assert f"'{billing.names['billing-rep001']}'" in text



# ---------------------------------------------------------------------------------------- issues 13 and 15
HOSTILE_COMMENTS = ['<script>alert("bill")</script> I waited so long, terrible',
                    "[pay here](javascript:alert(1)) waited for days, awful",
                    "<img src=x onerror=alert(1)> so slow & <b>bad</b>"]


def _copy_demo(small_demo, tmp_path, name: str, *, responses=None, customers=None):
    """A copy of the small demo with ``responses(frame) -> frame`` / ``customers(frame) -> frame | None``
    applied (None: the table is left out)."""
    import shutil

    out = tmp_path / name
    shutil.copytree(small_demo, out)
    for table, change in (("responses", responses), ("customers", customers)):
        if change is not None:
            frame = change(pd.read_parquet(out / f"{table}.parquet"))
            if frame is None:
                (out / f"{table}.parquet").unlink()
            else:
                frame.to_parquet(out / f"{table}.parquet", index=False)
    return out


def _config(tmp_path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text("company: Example Company\nmin_responses: 30\n" + text)
    return str(path)


def _hostile(responses: pd.DataFrame) -> pd.DataFrame:
    when = pd.to_datetime(responses["response_date"])
    pick = ((responses["department"] == "Billing") & (when >= "2025-11-01") & (responses["nps"] <= 6)).to_numpy()
    assert pick.sum() >= 30
    texts = [HOSTILE_COMMENTS[i % len(HOSTILE_COMMENTS)] for i in range(int(pick.sum()))]
    responses.loc[pick, "comment"] = texts
    return responses


@pytest.mark.parametrize("show_ids", [False, True])
def test_what_customers_say_is_escaped_and_names_no_customer(small_demo, tmp_path, show_ids):
    """Issue 13: the department page's comment section shows hostile comments as text (no tag, no link) and never
    a customer or response id, whatever show_customer_ids says (the section lists themes and texts only)."""
    data = _copy_demo(small_demo, tmp_path, "hostile", responses=_hostile)
    config = _config(tmp_path, "ids", f"show_customer_ids: {str(show_ids).lower()}\n")
    report = prepare_department_report("billing", data_source=str(data), report_config=config, as_of="2026-10-31")
    say, message = report.customers_say()
    assert say is not None and not message and say.n_comments > 30
    assert 0 < len(say.table) <= 3 and len(say.examples) == 3
    assert any(h in say.examples for h in HOSTILE_COMMENTS)  # the hostile texts are the most frequent complaints
    html = report.customers_say_html()
    assert f"{say.n_comments:,} comments about Billing between Nov 2025 and Oct 2026" in html
    assert "<script" not in html and "<img" not in html and "<b>" not in html and "<a " not in html
    assert "&lt;script&gt;alert(&quot;bill&quot;)&lt;/script&gt;" in html and "&lt;b&gt;bad&lt;/b&gt;" in html
    responses = report.dataset.responses
    billing = responses[responses["department"] == "Billing"]
    for ident in list(billing["customer_id"].astype(str).unique()) + list(billing["response_id"].astype(str)):
        assert ident not in html
    # the section's table is the library's, over the page's twelve months
    from helpers.voice_report import what_customers_say

    direct = what_customers_say(report.dataset, "Billing", "2025-11-01", "2026-10-31")
    pd.testing.assert_frame_equal(say.table, direct.table)


def test_what_customers_say_without_comments_says_why_in_one_line(small_demo, tmp_path):
    data = _copy_demo(small_demo, tmp_path, "no_comments", responses=lambda r: r.drop(columns=["comment"]))
    report = prepare_department_report("billing", data_source=str(data), as_of="2026-10-31")
    say, message = report.customers_say()
    assert say is None and message == "The survey answers carry no comments, so there is nothing customers said to show."
    assert report.customers_say_html() == f'<p class="dept-note">{message}</p>'


PRICED_BILLING = """\
department: Billing
objectives:
  - id: billing-csat-up
    title: "Billing CSAT to 90% <b>now</b>"
    metric: csat
    baseline: 78
    target: 90
    start: 2026-01-01
    deadline: 2026-12-31
    owner: {person: billing-dir, role: director}
  - id: billing-fcr
    title: Billing first-contact resolution
    metric: fcr
    baseline: 70
    target: 80
    start: 2026-01-01
    deadline: 2026-12-31
    owner: {person: billing-dir, role: director}
"""


@pytest.fixture(scope="module")
def priced(small_demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("priced")
    (folder / "billing.yaml").write_text(PRICED_BILLING)
    config = folder / "report.yaml"
    config.write_text("company: Example Company\nmin_responses: 30\ncurrency: USD\n")
    return folder, str(config)


def test_what_meeting_an_objective_is_worth(small_demo, priced, tmp_path, monkeypatch):
    """Issue 15: a CSAT objective shows customers kept and revenue over 12 months with 95% intervals in the
    params' currency and the association statement; another KPI shows nothing; the numbers are
    helpers.impact_report.objective_worth's; within a run the chain is computed once and then read from the
    run's cache."""
    import helpers.impact_report as IR
    import helpers.objectives_report as OR

    folder, config = priced
    report = prepare_department_report("billing", params_file=str(folder / "billing.yaml"),
                                       data_source=str(small_demo), report_config=config, as_of="2026-10-31")
    table, message = report.worth()
    assert not message and list(table.index) == ["billing-csat-up"]
    direct = IR.objective_worth(report.plan, report.dataset.customers, report.dataset.responses, as_of=report.as_of,
                                n_boot=report.WORTH_N_BOOT, seed=report.WORTH_SEED, currency="USD").table
    row = direct.set_index("objective").loc["billing-csat-up"]
    assert 0 < row["extra_kept_low"] <= row["extra_kept"] <= row["extra_kept_high"]
    text = report.worth_text("billing-csat-up")
    d = interval_decimals(row["extra_kept_low"], row["extra_kept_high"], 0, 2)
    assert text.startswith(f"about {row['extra_kept']:,.{d}f} more customers kept after 12 months (95% CI "
                           f"{row['extra_kept_low']:,.{d}f} to {row['extra_kept_high']:,.{d}f}) and "
                           f"${row['extra_revenue']:,.0f} more revenue over those 12 months (95% CI "
                           f"${row['extra_revenue_low']:,.0f} to ${row['extra_revenue_high']:,.0f})")
    assert text.endswith("an association under stated assumptions, not the result of a controlled experiment.")
    assert report.worth_text("billing-fcr") == ""
    section = report.objective_markdown("billing-csat-up")
    assert "- **What meeting it is worth:** about" in section and "&lt;b&gt;now" in section
    assert "What meeting it is worth" not in report.objective_markdown("billing-fcr")
    records = {o["id"]: o for o in report.summary_objectives()}
    assert "worth" not in records["billing-fcr"]
    assert records["billing-csat-up"]["worth"] == {
        "horizon_months": 12, "currency": "USD", "customers_kept": pytest.approx(row["extra_kept"]),
        "customers_kept_low": pytest.approx(row["extra_kept_low"]), "customers_kept_high": pytest.approx(row["extra_kept_high"]),
        "revenue": pytest.approx(row["extra_revenue"]), "revenue_low": pytest.approx(row["extra_revenue_low"]),
        "revenue_high": pytest.approx(row["extra_revenue_high"])}
    # within a run: computed once (for every objectives file of the folder), then read from the cache
    monkeypatch.setattr(OR, "_worth_cache_folder", lambda dataset: tmp_path / "cache" / "worth")
    calls = []
    real = IR.objective_worth_engine  # the page prices on the report's engine (equal to the rows on the demo)
    monkeypatch.setattr(IR, "objective_worth_engine", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(2):
        again = prepare_department_report("billing", params_file=str(folder / "billing.yaml"),
                                          data_source=str(small_demo), report_config=config, as_of="2026-10-31")
        assert again.worth_text("billing-csat-up") == text
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "worth").glob("objectives-*.pkl"))) == 1


@pytest.mark.parametrize("case, change, expected", [
    ("no customers table", lambda c: None, "needs the customers table"),
    ("no revenue", lambda c: c.drop(columns=["monthly_revenue"]), "needs the customers' monthly revenue"),
])
def test_worth_says_in_one_line_what_is_missing(small_demo, priced, tmp_path, case, change, expected):
    folder, config = priced
    data = _copy_demo(small_demo, tmp_path, case.replace(" ", "_"), customers=change)
    report = prepare_department_report("billing", params_file=str(folder / "billing.yaml"), data_source=str(data),
                                       report_config=config, as_of="2026-10-31")
    table, message = report.worth()
    assert table is None and expected in message
    assert report.worth_text("billing-csat-up") == message and "\n" not in message
    assert f"- **What meeting it is worth:** {md_escape(message)}" in report.objective_markdown("billing-csat-up")
    assert {o["id"]: o.get("worth") for o in report.summary_objectives()}["billing-csat-up"] == {"note": message}


def test_progress_says_wrong_way_only_when_it_is_negative(cs_report):
    table = cs_report.evaluation.table.set_index("id")
    seen = set()
    for oid in cs_report.objective_ids:
        text = cs_report.objective_markdown(oid)
        line = next(x for x in text.splitlines() if x.startswith("- **Progress:**"))
        negative = str(table.loc[oid, "progress_text"]).startswith("-")
        assert ("moved the wrong way" in line) == negative, line
        seen.add(negative)
    assert False in seen  # the demo department has objectives that moved the right way


def test_missing_values_are_counted_in_duckdb_and_equal_the_rows(small_demo, monkeypatch):
    """Issue 14: the completeness table counts NULLs in the engine; no department frame is built for it."""
    from helpers.data import Dataset

    report = prepare_department_report("billing", data_source=str(small_demo), as_of="2026-10-31")
    built = []
    real_frame = Dataset.frame
    monkeypatch.setattr(Dataset, "frame", lambda self, table, department=None: built.append(table)
                        or real_frame(self, table, department))
    counted = report.missing_values()
    assert built == []
    monkeypatch.undo()
    for table in ("responses", "tickets"):
        rows = report.dataset.frame(table, department="Billing")
        for column in counted.loc[table].index:
            assert counted.loc[(table, column), "rows"] == len(rows)
            assert counted.loc[(table, column), "missing"] == int(rows[column].isna().sum()), (table, column)
    assert counted["missing"].sum() > 0  # the demo has missing answers: the comparison is not vacuous
