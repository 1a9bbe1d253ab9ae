"""The explorer notebook runs on the seeded small demo, and the KPI table it shows equals independent
per-department estimates (Python Wilson intervals on the responses frame, not the DuckDB path it displays)."""
from pathlib import Path

import nbformat
import papermill
import pytest

from helpers.data import load_dataset
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


def test_explorer_kpi_table_matches_independent_estimates(small_demo, tmp_path):
    out = tmp_path / "explorer.ipynb"
    papermill.execute_notebook(str(EXPLORER), str(out), parameters={"data_source": str(small_demo)},
                               cwd=str(ROOT), kernel_name="satisfaction-kit", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    table_cell = next(c for c in nb.cells if c.cell_type == "code" and "kpi_overview(" in c.source)
    shown = _output_text(table_cell)
    responses = load_dataset(small_demo).responses
    for department, group in responses.groupby("department"):
        est = csat(group["csat"].dropna())
        expected = f"{est.value:.1f}% ({est.ci_low:.1f} to {est.ci_high:.1f})"
        assert expected in shown, f"{department}: expected CSAT {expected} in the explorer's KPI table"
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells for o in c.get("outputs", []))
