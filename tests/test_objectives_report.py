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
    assert "(representative)" in text and "Forecast at the deadline" in text and "status-badge" in text
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
