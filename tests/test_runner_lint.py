"""The runner prints the SMART-lint warnings of the department params before anything runs."""
import shutil
from pathlib import Path

import yaml

from helpers.reports import runner

ROOT = Path(__file__).resolve().parents[1]


def _params_with_perfect_target(tmp_path) -> Path:
    params = tmp_path / "params"
    (params / "departments").mkdir(parents=True)
    shutil.copy(ROOT / "params" / "report.yaml", params / "report.yaml")
    doc = yaml.safe_load((ROOT / "params" / "departments" / "billing.yaml").read_text())
    first = doc["objectives"][0]
    first.pop("direction", None)
    first.pop("frequency", None)
    first.update(metric="csat", target=100, baseline=80)
    (params / "departments" / "billing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return params


def test_department_lint_is_collected(tmp_path):
    params = _params_with_perfect_target(tmp_path)
    lint: list[str] = []
    name = runner._load_department_file(params / "departments" / "billing.yaml", lint)
    assert name == "Billing"
    assert any("100" in w for w in lint), lint


def test_plan_prints_smart_lint(tmp_path, capsys):
    params = _params_with_perfect_target(tmp_path)
    opts = runner.RunOptions(params=params, out=tmp_path / "out", company_reports=False)
    runner.plan_reports(opts, None, params / "report.yaml", "2026-10-31", "r1", "x.duckdb", tmp_path / "run")
    err = capsys.readouterr().err
    assert "objectives warning:" in err and "100" in err


def test_clean_params_print_no_lint(tmp_path, capsys):
    opts = runner.RunOptions(params=ROOT / "params", out=tmp_path / "out", company_reports=False)
    runner.plan_reports(opts, None, ROOT / "params" / "report.yaml", "2026-10-31", "r1", "x.duckdb", tmp_path)
    assert "objectives warning:" not in capsys.readouterr().err
