"""The department report notebook executes with papermill on the small demo: a department with
objectives, and one whose objectives have no data still renders (an unknown department is tested on
helpers.objectives_report directly in test_objectives_report.py)."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

from helpers.formatting import md_escape

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reports" / "department_report.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("department_notebook")]

NO_DATA_OBJECTIVES = textwrap.dedent("""\
    department: Customer Service
    objectives:
      - id: fax-nps
        title: "NPS of fax customers <script>alert(1)</script>"
        metric: nps
        filters: {channel: fax}
        baseline: 10
        target: 20
        start: 2026-01-01
        deadline: 2026-12-31
        owner: {person: customer_service-dir, role: director}
      - id: ghost-team-fcr
        title: First-contact resolution of a team that does not exist
        metric: fcr
        filters: {team: Ghost Team}
        baseline: 60
        target: 70
        start: 2026-01-01
        deadline: 2026-12-31
        owner: {name: "Tom & Jerry", role: manager}
        parent: fax-nps
    """)


def _run(tmp_path: Path, data: Path, department: str, params_file: str = "") -> tuple[nbformat.NotebookNode, dict]:
    out = tmp_path / f"{department}.ipynb"
    summary = tmp_path / f"{department}.json"
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT), progress_bar=False,
                               parameters={"department": department, "params_file": params_file,
                                           "data_source": str(data), "as_of": "2026-10-31",
                                           "summary_path": str(summary)})
    return nbformat.read(out, as_version=4), json.loads(summary.read_text())


def _outputs(nb, mime: str) -> str:
    return "\n".join(o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if "data" in o and mime in o["data"])


def _markdown_cells(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _image_outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "data" in o and "image/png" in o["data"]]


def test_department_report_renders_every_section(tmp_path, small_demo):
    nb, summary = _run(tmp_path, small_demo, "customer_service")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert summary["department"] == "Customer Service"
    n_objectives = sum(summary["status_counts"].values())
    assert n_objectives == 7 and summary["status_counts"]["no data"] < n_objectives
    # the first output of the page is the first screen: verdicts and KPI tiles
    code_outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    first = code_outputs[0]["data"]["text/html"]
    assert first.startswith('<div class="dept-first-screen">') and 'id="status-counts"' in first
    assert first.count('class="kpi-tile"') == len(summary["kpis"]) > 0
    html_out = _outputs(nb, "text/html")
    assert 'id="status-table"' in html_out and "status-badge" in html_out
    markdown = _outputs(nb, "text/markdown")
    org = pd.read_parquet(small_demo / "org.parquet").set_index("person_id")["name"]
    for person, role in (("customer_service-dir", "director"), ("customer_service-rep001", "representative")):
        assert md_escape(f"{org[person]} ({role})") in markdown  # owners by their names from org
    assert "of explained variance" in markdown  # drivers section
    assert "prediction intervals held the realised value" in markdown  # the calibration statement (issue 10)
    assert "](#calibration-detail)" in markdown and 'id="calibration-detail"' in _markdown_cells(nb)
    assert "chance of meeting the target" in markdown
    assert "after 12 months" in markdown  # retention section, counted from the first contact (delayed entry)
    # issue 13: what customers say (themes, three comments as text); issue 15: what meeting an objective is worth
    assert re.search(r"<p>[\d,]+ comments about Customer Service between Nov 2025 and Oct 2026; the 3 most", html_out)
    assert html_out.count("<li>\u201c") == 3 and "In their words" in html_out
    plan = yaml.safe_load((ROOT / "params" / "departments" / "customer_service.yaml").read_text())
    satisfaction = [o for o in plan["objectives"] if o["metric"] in ("csat", "nps")]
    assert satisfaction and markdown.count("- **What meeting it is worth:** ") == len(satisfaction)
    assert "not the result of a controlled experiment" in markdown
    assert "**What meeting it is worth.**" in _markdown_cells(nb) and "**What customers say.**" in _markdown_cells(nb)
    # issue 13's closed loop: customers to call back, after what customers say, with the contact KPI; no ids
    # (params/report.yaml leaves show_customer_ids off) but the line saying how to show them
    cells = _markdown_cells(nb)
    assert cells.index("## What customers say") < cells.index("## Customers to call back") < cells.index(
        "## Our customers' retention") and "**Customers to call back.**" in cells
    assert re.search(r"<strong>Contacted within 48 hours:</strong> \d+% of Customer Service's unhappy customers of "
                     r"these weeks \(95% CI \d+% to \d+%, n = \d+", html_out)
    assert re.search(r"(\d+ unhappy customers? \(NPS 0-6 or CSAT 1\) of Customer Service left a comment between "
                     r"4 Oct and 31 Oct 2026|No unhappy customer of Customer Service)", html_out)
    assert not re.search(r"\b[CR]\d{7,8}\b", html_out) and "show_customer_ids: true" in html_out
    from helpers.objectives_report import DepartmentReport

    assert f"from {DepartmentReport.WORTH_N_BOOT} resamples of the customers" in _markdown_cells(nb)
    # every chart is a PNG with an alt text saying what it shows; the summary counts them
    images = _image_outputs(nb)
    assert len(images) == summary["charts"] >= 7 + 1 + 1 + 1  # objectives, cascade, a funnel, drivers
    alts = [o["metadata"]["image/png"]["alt"] for o in images]
    assert all(len(a) > 40 for a in alts) and sum("Status:" in a for a in alts) == 7
    assert sum(a.startswith("Funnel plot of") for a in alts) >= 2
    # page protocol: headline, objectives and KPI records; the last cell shows nothing
    assert summary["headline"].startswith("Customer Service, 31 October 2026: 7 objectives")
    assert {o["id"] for o in summary["objectives"]} and all(o["kpi"] for o in summary["objectives"])
    assert all({"value", "ci_low", "ci_high", "n", "change_significant"} <= set(k) for k in summary["kpis"])
    assert nb.cells[-1].cell_type == "code" and nb.cells[-1].outputs == []
    # for readers: no code names, paths, NaN, or the old top-of-page glossary
    text = html_out + markdown + _markdown_cells(nb)
    for leak in ("params/departments", "PosixPath", "NaN", "min_responses", "customer_service-", "<IPython"):
        assert leak not in text, leak
    appendix = _markdown_cells(nb).split("## How to read this report")
    assert len(appendix) == 2 and "on track" in appendix[1] and "on track" not in appendix[0].split("## Objective by")[0]


def test_department_without_data_still_renders_and_escapes(tmp_path, small_demo):
    params = tmp_path / "no_data.yaml"
    params.write_text(NO_DATA_OBJECTIVES)
    nb, summary = _run(tmp_path, small_demo, "customer_service", str(params))
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert summary["status_counts"]["no data"] == 2
    assert any("NPS of fax customers" in w and "no survey answers have channel 'fax'" in w
               for w in summary["warnings"])  # worded for readers: no file path, field or objective id
    assert not any("no_data.yaml" in w or "fax-nps" in w for w in summary["warnings"])
    html_out = _outputs(nb, "text/html") + _outputs(nb, "text/markdown")
    assert "<script>alert(1)</script>" not in html_out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_out
    assert "Tom &amp; Jerry" in html_out
