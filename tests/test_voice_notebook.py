"""The voice-of-the-customer notebook executes with papermill on the small demo, company-wide and for one
department, follows the page protocol (summary, charts with alt text, last cell silent) and its stakeholder page
shows no ids on the company page, no raw HTML from comments, and nothing of the code."""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reports" / "voice_of_customer.ipynb"
IDS = re.compile(r"\b[CR]\d{7,8}\b")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("voice_notebook")]


def _run(tmp_path: Path, name: str, **parameters) -> tuple[nbformat.NotebookNode, dict]:
    out = tmp_path / f"{name}.ipynb"
    summary = tmp_path / f"{name}.json"
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT), progress_bar=False,
                               parameters={**parameters, "summary_path": str(summary)})
    return nbformat.read(out, as_version=4), json.loads(summary.read_text())


def _outputs(nb, mime: str) -> str:
    return "\n".join(o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if "data" in o and mime in o["data"])


def _page(nb, summary) -> str:
    from helpers.reports import export

    return export.render_report(nb, title=summary["title"], department=summary["department"], as_of="2026-10-31",
                                freshness="f", run_id="r", fingerprint="0" * 16, company="Example Company",
                                notebook="voice_of_customer.ipynb")


def test_parameters_cell_declares_what_the_runner_passes():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    names = re.findall(r"^(\w+): \w+ = ", cells[0].source, flags=re.M)
    assert names == ["department", "period_start", "period_end", "data_source", "report_config", "as_of",
                     "run_id", "summary_path"]
    from helpers.reports.registry import REPORTS, COMMON_PARAMETERS

    spec = next(s for s in REPORTS if s.notebook == NOTEBOOK.name)
    assert spec.kind == "company" and set(spec.parameters) | set(COMMON_PARAMETERS) <= set(names)


@pytest.fixture(scope="module")
def hostile_demo(small_demo, tmp_path_factory) -> Path:
    """The small demo with a hostile comment on every answer of Billing in October 2026."""
    out = tmp_path_factory.mktemp("voice_nb") / "data"
    shutil.copytree(small_demo, out)
    t = pq.read_table(out / "responses.parquet")
    df = t.select(["department", "response_date"]).to_pandas()
    pick = ((df["department"] == "Billing") & (pd.to_datetime(df["response_date"]) >= "2026-10-01")).to_numpy()
    texts = pa.array(np.full(len(df), '<script>alert("x")</script><img src=x onerror=alert(2)> app [a](javascript:1)',
                             dtype=object), type=pa.string())
    comment = pc.if_else(pa.array(pick), texts, t["comment"])
    pq.write_table(t.set_column(t.schema.get_field_index("comment"), "comment", comment), out / "responses.parquet")
    return out


@pytest.mark.parametrize("department", ["all", "billing"])
def test_voice_notebook_on_demo(tmp_path, hostile_demo, department):
    nb, summary = _run(tmp_path, department, data_source=str(hostile_demo), department=department,
                       as_of="2026-10-31")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert summary["title"] == ("Voice of the customer: all departments" if department == "all"
                                else "Voice of the customer: Billing")
    assert summary["warnings"] == [] and summary["headline"].endswith(".")
    if department == "all":  # an unasked problem the demo planted is found company-wide, with its interval
        assert summary["headline"].startswith(("Mobile app", "Price increases")) and "95% CI" in summary["headline"]
    images = _outputs(nb, "image/png")
    assert summary["charts"] == images.count("iVBOR") == 3
    alts = [o["metadata"]["image/png"]["alt"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
    assert all(len(a) > 40 for a in alts)
    assert not nb.cells[-1].outputs  # write_report_summary shows nothing
    bare = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "text/plain" in o.get("data", {}) and not ({"text/html", "text/markdown", "image/png"} & set(o["data"]))]
    assert not bare, bare
    stderr = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr"]
    assert not stderr, stderr
    page = _page(nb, summary)
    body = page.split("<body", 1)[1]
    assert "<script>alert" not in body and "<img src=x" not in body and 'href="javascript' not in body
    shown = html.unescape(re.sub(r"<[^>]+>", " ", body))
    for leak in ("NaN", "nan%", "ci_low", "csat_adjusted", "PosixPath", "/tmp/", "DataFrame", "report.plot", "helpers.voice", "Traceback"):
        assert leak not in shown, leak
    markdown = _outputs(nb, "text/markdown")
    assert "Closing the loop" in page and "Contacted within 48 hours" in html.unescape(markdown.replace("\\", ""))
    if department == "all":
        assert not IDS.search(shown)  # no customer or response ids on a company page
        assert "Customers to call back" in shown and "alert(" not in shown.split("Closing the loop")[-1]
    else:
        assert not IDS.search(shown)  # show_customer_ids is off in params/report.yaml
        assert '<script>alert("x")</script>' in shown  # the hostile comment is shown as text, not run
