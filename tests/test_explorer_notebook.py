"""The explorer notebook runs on the seeded small demo with its period parameters, and the KPI table it shows equals
independent per-department estimates for that period (Python Wilson intervals on the responses frame, not the
DuckDB path it displays), with n, the better direction and a tested change; relate and the drivers display as
reader tables."""
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from helpers.data import load_dataset
from helpers.explore import explorer_periods, last_complete_quarter
from helpers.kpis import csat

ROOT = Path(__file__).resolve().parents[1]
EXPLORER = ROOT / "notebooks" / "exploratory" / "satisfaction_explorer.ipynb"

pytestmark = [pytest.mark.slow]


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        else:
            parts.append(out.get("data", {}).get("text/plain", "") or "")
            parts.append(out.get("data", {}).get("text/html", "") or "")
    return "\n".join(parts)


def test_explorer_kpi_table_matches_independent_estimates_for_the_period(small_demo, tmp_path):
    out = tmp_path / "explorer.ipynb"
    params = {"data_source": str(small_demo), "period_start": "2026-04-01", "period_end": "2026-06-30",
              "compare_start": "2025-04-01", "compare_end": "2025-06-30"}
    papermill.execute_notebook(str(EXPLORER), str(out), parameters=params, cwd=str(ROOT),
                               kernel_name="satisfaction-kit", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells for o in c.get("outputs", []))
    everything = "\n".join(_output_text(c) for c in nb.cells if c.cell_type == "code")
    assert "already loaded" not in everything
    assert "Period 2026-04-01 to 2026-06-30, compared with 2025-04-01 to 2025-06-30" in everything
    table_cell = next(c for c in nb.cells if c.cell_type == "code" and "kpi_changes(" in c.source)
    shown = _output_text(table_cell)
    responses = load_dataset(small_demo).responses
    in_period = responses[responses["response_date"].between("2026-04-01", "2026-06-30")]
    for department, group in in_period.groupby("department"):
        est = csat(group["csat"].dropna())
        expected = f"{est.value:.1f}% ({est.ci_low:.1f} to {est.ci_high:.1f})"
        assert expected in shown, f"{department}: expected CSAT {expected} in the explorer's KPI table"
        assert f">{est.n:,}<" in shown, f"{department}: n = {est.n} not shown"
    assert "Better when" in shown and ">lower<" in shown and ">higher<" in shown  # CES and times: lower is better
    relate_cell = next(c for c in nb.cells if c.cell_type == "code" and 'relate("first_response_hours"' in c.source)
    assert "Kruskal-Wallis" in _output_text(relate_cell)
    drivers_cell = next(c for c in nb.cells if c.cell_type == "code" and "relative_importance(" in c.source)
    drivers_html = _output_text(drivers_cell)
    assert "attr_" not in drivers_html.split("<table")[1] and "signed_importance" not in drivers_html
    # what customers write: the theme shares equal an independent count (the codebook matched on the period's
    # comments in pandas, Wilson interval from statsmodels), every text escaped, suggestions with a codebook entry
    from statsmodels.stats.proportion import proportion_confint

    from helpers.voice import match_themes
    from helpers.voice_report import load_themes

    themes_cell = next(c for c in nb.cells if c.cell_type == "code" and "comment_themes(" in c.source)
    themes_html = _output_text(themes_cell)
    commented = in_period[in_period["comment"].notna() & in_period["comment"].str.strip().ne("")]
    codebook = load_themes()
    flags = match_themes(commented["comment"], codebook)
    for name in codebook.names:
        k, n = int(flags[name].sum()), len(commented)
        lo, hi = proportion_confint(k, n, method="wilson")
        label = codebook.labels[name].replace("&", "&amp;").replace("<", "&lt;")
        assert label in themes_html, name
        assert f"{100 * lo:.1f}% to {100 * hi:.1f}%" in themes_html, (name, k, n)
    assert f"{len(commented):,} of {len(in_period):,} responses" in themes_html
    suggestions_html = _output_text(next(c for c in nb.cells if c.cell_type == "code"
                                         and "suggest_comment_themes(" in c.source))
    assert suggestions_html.count("Representative comments") == 6 and "params/themes.yaml" in suggestions_html
    assert suggestions_html.count("<pre>") == 6 and "any: [" in suggestions_html
    search_cell = next(c for c in nb.cells if c.cell_type == "code" and "search_period_comments(" in c.source)
    assert "contain “price*”" in _output_text(search_cell)
    for html in (themes_html, suggestions_html, _output_text(search_cell)):
        assert "<script" not in html and "<b>" not in html  # the demo's hostile comments arrive escaped


def test_default_period_is_the_last_complete_quarter(small_demo):
    ds = load_dataset(small_demo)
    _, last = ds.date_range()
    p = explorer_periods(ds)
    assert (p.start, p.end) == last_complete_quarter(last)
    assert p.end <= last and (p.end + pd.Timedelta(days=1)).month in (1, 4, 7, 10)
    assert p.compare_end == p.start - pd.Timedelta(days=1) and p.compare_start.month in (1, 4, 7, 10)
    assert last_complete_quarter("2026-10-31") == (pd.Timestamp("2026-07-01"), pd.Timestamp("2026-09-30"))
    assert last_complete_quarter("2026-09-30") == (pd.Timestamp("2026-07-01"), pd.Timestamp("2026-09-30"))


def test_every_parameter_line_is_understood_by_papermill():
    """Regression: a comment with '=' (or an apostrophe in an older line) made papermill skip the parameter."""
    from papermill.translators import PythonTranslator

    cell = next(c for c in nbformat.read(EXPLORER, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    lines = [x for x in cell.source.splitlines() if x.strip()]
    parsed = PythonTranslator.inspect({"source": cell.source})
    assert [p.name for p in parsed] == [x.split(":")[0] for x in lines]
    assert all(p.inferred_type_name and p.help for p in parsed)
