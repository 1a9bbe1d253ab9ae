"""The shipped export samples through the report runner: ``--dry-run`` validates them through their profiles
(params/sources/samples.yaml), and a real run produces every report from them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SET = ROOT / "params" / "sources" / "samples.yaml"


def _run(tmp_path: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SATISFACTION_KIT_DATA"}
    return subprocess.run([sys.executable, "-m", "helpers.reports", "run", "--data", str(SAMPLE_SET),
                           "--out", str(tmp_path / "reports"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_samples_dry_run_validates_through_the_profiles(tmp_path):
    out = _run(tmp_path, "--dry-run")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "data OK" in text and "samples.yaml" in text
    assert "'responses': " in text and "'tickets': " in text
    assert "nothing executed" in text


def test_samples_dry_run_names_a_broken_profile(tmp_path):
    broken = tmp_path / "set.yaml"
    profile = (ROOT / "params" / "sources" / "survey_tool.yaml").read_text(encoding="utf-8")
    (tmp_path / "survey.yaml").write_text(profile.replace("na_codes: [11]}", "na_codez: [11]}", 1), encoding="utf-8")
    broken.write_text(f"tables:\n  responses: {tmp_path / 'survey.yaml'}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "SATISFACTION_KIT_DATA"}
    out = subprocess.run([sys.executable, "-m", "helpers.reports", "run", "--data", str(broken), "--out",
                          str(tmp_path / "reports"), "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 2
    assert "na_codez" in out.stdout + out.stderr and "unknown key" in out.stdout + out.stderr


@pytest.mark.slow
def test_samples_produce_every_report(tmp_path):
    out = _run(tmp_path, "--workers", "1")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    latest = tmp_path / "reports" / "latest"
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    statuses = {r["name"]: r["status"] for r in manifest["reports"]}
    assert len(statuses) == 9 and set(statuses.values()) == {"ok"}, statuses
    assert manifest["data"]["fingerprint"]
