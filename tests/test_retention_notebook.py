"""The retention report notebook executes with papermill: on the small demo (every section, summary JSON),
and on a telecom-style churn export (tenure + Churn Yes/No) configured through report.yaml's retention
section, where the date-based sections are left out with a stated reason instead of failing."""
from __future__ import annotations

import html
import json
import re
import textwrap
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reports" / "retention_forecast.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("retention_notebook")]


def _run(tmp_path: Path, **parameters) -> tuple[nbformat.NotebookNode, dict]:
    out = tmp_path / "retention.ipynb"
    summary = tmp_path / "retention.json"
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT), progress_bar=False,
                               parameters={**parameters, "summary_path": str(summary)})
    return nbformat.read(out, as_version=4), json.loads(summary.read_text())


def _outputs(nb, mime: str) -> str:
    text = "\n".join(o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if "data" in o and mime in o["data"])
    if mime == "text/markdown":  # as a reader sees it: text from the data is escaped (helpers.formatting.md_escape)
        text = html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text))
    return text


def test_retention_notebook_on_demo(tmp_path, small_demo):
    nb, summary = _run(tmp_path, data_source=str(small_demo), as_of="2026-10-31", segment="consumer",
                       horizon=12, holdout=6, discount_rate=0.1)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert summary["title"] == "Retention forecast"
    markdown = _outputs(nb, "text/markdown")
    assert "consumer customers" in markdown
    assert "lowers the monthly churn hazard" in markdown  # satisfaction -> churn
    assert "held-out periods" in markdown and "MAPE" in markdown  # holdout checks
    assert "shifted-beta-geometric" in markdown and "lifetime" in markdown
    assert "nan%" not in markdown.lower()
    images = _outputs(nb, "image/png")
    assert images.count("iVBOR") >= 5  # cohorts, survival, hazard ratios, sBG + holdout, rate forecast
    assert summary["charts"] == images.count("iVBOR")
    alts = [o["metadata"]["image/png"]["alt"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
    assert all(len(a) > 40 and "No description" not in a for a in alts)
    html_text = _outputs(nb, "text/html")
    shown = markdown + html_text
    for leak in ("ci_low", "alpha_low", "survival_12_low", "NaN", "nan%", "rows x", "PosixPath", "<IPython",
                 "small_business", "mean_csat", "monthly_margin", "clv_low", "...", "/tmp/", "/work/"):
        assert leak not in shown, leak
    # the last cell shows nothing; no output is a bare repr (a path, a DataFrame)
    assert not nb.cells[-1].outputs
    bare = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "text/plain" in o.get("data", {}) and not ({"text/html", "text/markdown", "image/png"} & set(o["data"]))]
    assert not bare, bare
    # In plain words: at most six findings, each with its interval; CLV with the currency of report.yaml
    bullets = [line for line in _outputs(nb, "text/markdown").splitlines() if line.startswith("- ")]
    assert 3 <= len(bullets) <= 6 and all("95%" in b for b in bullets), bullets
    assert "€" in html_text and any("worth about **€" in b for b in bullets)
    assert "of a new cohort are expected to still be customers after 12 months (95% CI" in summary["headline"]
    # issue 15: the corrected link next to the naive one, and revenue at risk (one finding carries it)
    assert "Corrected for rating noise: per point of true satisfaction" in html_text
    assert "Revenue at risk from dissatisfaction over 12 months, by segment" in html_text
    assert any("goes with dissatisfaction**" in b for b in bullets)
    assert any("corrected for the noise in single ratings" in b for b in bullets)


def test_retention_notebook_on_a_telecom_export(tmp_path):
    telecom = tmp_path / "telco_churn.csv"
    table = pd.DataFrame({  # IBM Telco-style layout: tenure in months, Churn Yes/No, contract type
        "customerID": ["7590-VHVEG", "5575-GNVDE", "3668-QPYBK", "7795-CFOCW", "9237-HQITU", "9305-CDSKC",
                       "1452-KIOVK", "6713-OKOMC", "7892-POOKP", "6388-TABGU", "9763-GRSKD", "7469-LKBCI"],
        "tenure": [1, 34, 2, 45, 2, 8, 22, 10, 28, 62, 13, 16],
        "Contract": ["Month-to-month", "One year", "Month-to-month", "One year", "Month-to-month",
                     "Month-to-month", "Month-to-month", "Month-to-month", "Month-to-month", "One year",
                     "Month-to-month", "Two year"],
        "Churn": ["No", "No", "Yes", "No", "Yes", "Yes", "No", "No", "Yes", "No", "No", "Yes"]})
    # a bigger export: repeat the 12 rows with shifted tenures
    rows = [table.assign(customerID=table["customerID"] + f"-{k}", tenure=table["tenure"] + k) for k in range(15)]
    pd.concat(rows).to_csv(telecom, index=False)
    config = tmp_path / "report.yaml"
    config.write_text(textwrap.dedent(f"""\
        company: Telco Example
        retention:
          file: {telecom}
          id_column: customerID
          start_column: null
          end_column: null
          duration_column: tenure
          duration_unit: month
          event_column: Churn
          churn_values: ["yes"]
          segment_column: Contract
        """))
    nb, summary = _run(tmp_path, report_config=str(config), segment="all", horizon=12, holdout=6)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any("no dates" in w for w in summary["warnings"])
    markdown = _outputs(nb, "text/markdown")
    assert "180 customers (all segments)" in markdown.replace(",", "")
    assert "half have left" in markdown or "still customers" in markdown
    assert "No cohort table" in markdown


@pytest.mark.parametrize("as_of, expected", [
    ("2023-12-15", "too little history before 2023-12-15"),  # was KeyError: 'at_risk' (issue 16)
    ("2027-01-31", "the data end on 2026-10-31"),  # after the data: followed up to its last day
])
def test_retention_notebook_before_and_after_the_data(tmp_path, small_demo, as_of, expected):
    nb, summary = _run(tmp_path, data_source=str(small_demo), as_of=as_of)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    markdown = _outputs(nb, "text/markdown")
    assert f"analysed as of {as_of}" in markdown
    assert expected in markdown.lower() or expected in " ".join(summary["warnings"]).lower()
    assert "nan%" not in markdown.lower()
