"""Issue 12: a survey-only data set (responses alone) renders the drivers, department, retention and voice pages
through the runner; sections that need another table say which one in one line."""
from __future__ import annotations

import shutil

import pandas as pd

from helpers.reports import runner
from tests.reports_support import write_params


def test_survey_only_run_renders_every_report_and_explains_the_missing_tables(small_demo, tmp_path):
    data = tmp_path / "survey"
    data.mkdir()
    shutil.copy(small_demo / "responses.parquet", data)
    params = write_params(tmp_path, {"billing": "Billing"})  # one csat objective, owner by person id (no org)
    messages: list[str] = []
    opts = runner.RunOptions(params=params, data=str(data), out=tmp_path / "reports", workers=2, progress=False)
    result = runner.run_reports(opts, echo=messages.append)
    assert result.exit_code == 0, messages
    reports = {r["name"]: r for r in result.manifest["reports"]}
    assert {"department_billing", "satisfaction_drivers", "retention_forecast"} <= set(reports)
    assert all(r["status"] == "ok" for r in reports.values()), reports
    assert result.manifest["data"]["rows"] == {"responses": len(pd.read_parquet(data / "responses.parquet"))}
    page = (result.run_dir / "department_billing.html").read_text()
    assert "Retention needs the customers table (signup and churn dates): add customers.csv" in page
    retention = (result.run_dir / "retention_forecast.html").read_text()
    assert "needs the customers table" in retention
