"""helpers.objectives_report: the department report's glue never raises; problems become messages."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers.objectives_report import prepare_department_report


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
