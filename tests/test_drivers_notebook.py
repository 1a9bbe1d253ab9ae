"""The satisfaction_drivers report notebook runs end to end on the small demo (papermill), writes its
summary, shows no code-level errors, and its numbers are the engine's numbers."""
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from helpers.drivers_report import prepare_drivers_report

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reports" / "satisfaction_drivers.ipynb"


def _texts(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                raise AssertionError(f"{o['ename']}: {o['evalue']}")
            data = o.get("data", {})
            out.append(data.get("text/markdown", "") + data.get("text/plain", "") + o.get("text", ""))
    return "\n".join(out)


def _shown(nb):
    """What the HTML export shows of each output: its richest representation (never the text/plain fallback of a
    Markdown or HTML object)."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            for mime in ("text/html", "text/markdown", "image/png", "text/plain"):
                if mime in data:
                    out.append("" if mime == "image/png" else data[mime])
                    break
            out.append(o.get("text", ""))
    return "\n".join(out)


def _html(nb):
    return "\n".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))


# what a stakeholder must never read on a company page (issue 11): raw index/columns, NaN, cut-offs, paths, reprs
LEAKS = ("ci_low", "ci_high", "share_low", "NaN", "nan%", "rows x", "analysed", "PosixPath", "<IPython",
         "attr_", "mean_csat", "segment_", "Unnamed", "...", "/tmp/", "/work/", "/home/")


@pytest.mark.slow
def test_notebook_runs_on_small_demo(small_demo, tmp_path):
    import re

    summary = tmp_path / "summary.json"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="satisfaction-kit", progress_bar=False, cwd=str(ROOT),
                        parameters=dict(data_source=str(small_demo), department="technical_support", n_boot=50,
                                        period_start="2024-01-01", summary_path=str(summary)))
    nb = nbformat.read(out, as_version=4)
    text = _texts(nb)
    html = _html(nb)
    # Markdown text is escaped (md_escape puts a backslash before punctuation such as ":")
    assert "**Responses from:** Technical Support · **Period:** 2024\\-01\\-01 to 2026\\-10\\-31" in text
    assert "Fix first" in text and "of explained variance" in text
    assert "ordinal (proportional-odds) model" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4
    assert all(len(o["metadata"]["image/png"]["alt"]) > 40 for o in images)  # says what the chart shows
    s = json.loads(summary.read_text())
    assert s["title"] == "Drivers of CSAT: Technical Support" and s["department"] == "Technical Support"
    assert s["charts"] == len(images) and "matters most" in s["headline"]
    shown = _shown(nb)
    for leak in LEAKS:
        assert leak not in shown, leak
    plain = [o for o in (c.get("outputs", []) for c in nb.cells) for o in o if "text/plain" in o.get("data", {})
             and not ({"text/html", "text/markdown", "image/png"} & set(o["data"]))]
    assert not plain, plain  # no cell prints a bare repr (a path, a DataFrame, an object)
    # the numbers shown are the engine's (same seed, same selection), and sentences equal the table
    rep = prepare_drivers_report(department="technical_support", n_boot=50, period_start="2024-01-01",
                                 data_source=str(small_demo), report_config=str(ROOT / "params" / "report.yaml"))
    top = rep.main.table.index[0]
    from helpers.drivers_analysis import share_text
    point, ci = share_text(rep.main.table, top)
    label = top.removeprefix("attr_").capitalize()
    assert f"**{label} matters most** for CSAT: {point} (95% CI {ci}) of what the attributes explain." \
        in text.replace("\\", "")
    assert f"<td>{label}</td><td class=\"num\">1</td><td>{point}</td><td>{ci}</td>" in html
    assert f"between {rep.main.n:,} responses" in text
    # issue 15: the chain for the top drivers, for the whole company, in the params' currency
    assert "What raising a driver by half a point is worth over 12 months (whole company)" in html
    assert "Raising " in text and "revenue" in text and "not the result of a controlled experiment" in text
    assert "+€" in html
    findings = re.findall(r"^- ", rep.what_to_fix_markdown(), flags=re.M)
    assert 1 <= len(findings) <= 6


def test_report_turns_bad_parameters_into_warnings(small_demo):
    rep = prepare_drivers_report(department="no_such_team", n_boot=0, data_source=str(small_demo),
                                 report_config=str(ROOT / "params" / "report.yaml"))
    assert rep.main is None and any("no_such_team" in w and "departments in the data" in w for w in rep.warnings)
    assert "No driver analysis" in rep.what_to_fix_markdown()
    rep = prepare_drivers_report(outcome="satisfaction", n_boot=0, data_source=str(small_demo),
                                 report_config=str(ROOT / "params" / "report.yaml"))
    assert rep.main is None and any("no column ['satisfaction']" in w for w in rep.warnings)
    rep = prepare_drivers_report(department="marketing", n_boot=0, data_source=str(small_demo),
                                 report_config=str(ROOT / "params" / "report.yaml"))
    # Marketing is small in the demo: analysed with a warning, never silently
    assert any("Marketing" in w or "fewer than" in w for w in rep.warnings)
