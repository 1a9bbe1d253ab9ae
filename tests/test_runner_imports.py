"""The runner validates params and data before the first report without SciPy's statistics (the critical path of
a run's start: the warm-kernel server imports the scientific stack meanwhile)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_planning_and_the_data_check_do_not_import_scipy_stats(demo_dir, tmp_path):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['helpers.reports', 'run', '--data', {str(demo_dir)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--dry-run']\n"
        "try:\n    runpy.run_module('helpers.reports', run_name='__main__')\nexcept SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('scipy.stats', 'statsmodels', 'helpers.kpis', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_the_kpi_registry_is_the_one_kpis_uses():
    import helpers.kpi_registry as registry
    import helpers.kpis as kpis

    assert kpis.KPIS is registry.KPIS and kpis.KPI is registry.KPI
