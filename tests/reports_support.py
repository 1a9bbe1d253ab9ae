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


# ------------------------------------------------------------------------------------------------ fault tests

FAKE_BODY = '''import os, time, pathlib
run_folder = pathlib.Path(summary_path).parent.parent
if department in ("billing", "slow"):
    (run_folder / f"started-{department}").write_text(str(os.getpid()))  # the kernel is running
    time.sleep(600)
if department == "delivery":
    os._exit(3)  # the kernel process dies in this cell (cell 4 of the original notebook)
if department == "full":
    raise OSError(28, "No space left on device", summary_path)  # the notebook's own write fails'''


def write_fake_notebooks(folder: Path) -> Path:
    """A tiny department report notebook for runner fault tests (no scientific imports, runs in a second):
    ``sales`` succeeds, ``delivery`` kills its kernel in cell 4, ``full`` meets a full disk, ``billing``/``slow`` write
    ``<run folder>/started-<dept>`` (the kernel's pid) and then sleep for 10 minutes."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('data_source = ""\nreport_config = ""\nas_of = ""\nrun_id = ""\n'
                                       'summary_path = ""\ndepartment = "sales"\nparams_file = ""\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Fake department report"), params,
                nbformat.v4.new_markdown_cell("## Work"), nbformat.v4.new_code_cell(FAKE_BODY),
                nbformat.v4.new_code_cell("from helpers.reports import write_report_summary\n"
                                          "write_report_summary(summary_path, title='Fake report', "
                                          "department=department, status_counts={'on track': 1})\n"
                                          "print('done', department)")]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / "department_report.ipynb"))
    return folder


def processes_with_marker(marker: str) -> list[tuple[int, str]]:
    """``[(pid, command line)]`` of live (not zombie) processes whose environment contains ``marker``
    (psutil is not installed: read /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and marker.encode() in environ:
            found.append((int(entry.name), cmdline.strip()))
    return found


def fake_previous_run(out: Path, run_id: str = "2026-01-01T000000Z", link: bool = True) -> str:
    """A complete-looking earlier run in ``out`` (with ``latest`` pointing at it when ``link``)."""
    import json
    import os
    (out / run_id).mkdir(parents=True)
    (out / run_id / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "as_of": "2025-12-31", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00", "reports": []}))
    if link:
        os.symlink(run_id, out / "latest")
    return run_id


def snapshot_base_tables(path) -> list[str]:
    """The tables a DuckDB snapshot file holds itself (views are not tables: a snapshot by reference has none)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{path}' AS s (READ_ONLY)")
        return sorted(r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 's'").fetchall())
    finally:
        con.close()
