"""Shared set-up for the report-runner tests: params folders with real department files, demo data."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURE_NOTEBOOKS = REPO / "tests" / "fixtures" / "notebooks"


def department_doc(name: str, slug: str) -> dict:
    return {
        "department": name,
        "people": {"director": f"{slug}-dir"},
        "objectives": [
            {"id": "csat", "title": "Raise satisfaction", "metric": "csat", "baseline": 70.0, "target": 75.0,
             "direction": "raise", "start": "2026-01-01", "deadline": "2026-12-31",
             "owner": {"person": f"{slug}-dir", "role": "director"}},
        ],
    }


def write_params(root: Path, departments: dict[str, str]) -> Path:
    """``root/params`` with the repo's report.yaml and one valid objectives file per ``{slug: name}``."""
    params = root / "params"
    (params / "departments").mkdir(parents=True, exist_ok=True)
    (params / "report.yaml").write_text((REPO / "params" / "report.yaml").read_text())
    for slug, name in departments.items():
        (params / "departments" / f"{slug}.yaml").write_text(yaml.safe_dump(department_doc(name, slug),
                                                                             sort_keys=False))
    return params
