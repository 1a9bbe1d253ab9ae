"""The runner end to end on fixture notebooks and small demo data: failure isolation, run folder, manifest.

The fixture department notebook raises for the department ``broken``; every other report must still be
produced, the exit code must be non-zero, and the broken one must get an error page and keep its executed
notebook. Real data: the small demo, loaded and validated once by helpers.data, snapshotted into the run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from helpers.reports import runner
from helpers.reports.__main__ import main as cli_main
from reports_support import FIXTURE_NOTEBOOKS, write_params

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reports_e2e")]

# every department exists in the demo data (by its display name; a department without rows gets a failure page
# without running its notebook, see test_runner_faults); the fixture notebook fails for the slugs broken/crash
DEPARTMENTS = {"sales": "Sales", "delivery": "Delivery", "broken": "Billing", "crash": "Marketing"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_demo):
    root = tmp_path_factory.mktemp("run")
    params = write_params(root, DEPARTMENTS)
    data = small_demo
    out = root / "reports"
    messages: list[str] = []
    opts = runner.RunOptions(params=params, data=str(data), out=out, notebooks=FIXTURE_NOTEBOOKS, workers=2,
                             progress=False)
    result = runner.run_reports(opts, echo=messages.append)
    return {"result": result, "out": out, "messages": messages, "params": params, "data": data, "root": root}


def test_failure_is_isolated_and_reported(run):
    result = run["result"]
    assert result.exit_code == 1
    assert sorted(result.failures) == ["department_broken", "department_crash"]
    names = {r["name"]: r for r in result.manifest["reports"]}
    from helpers.reports import registry
    assert set(names) == {"department_sales", "department_delivery", "department_broken", "department_crash"} | {
        s.name for s in registry.reports("company")}
    assert all(r["status"] == "ok" for n, r in names.items() if n not in result.failures)
    # a kernel that dies is isolated too, with its own error page
    crash = (result.run_dir / "department_crash.html").read_text()
    # diagnosed from the executed notebook (issue 16 item 9): the cell it died in, counted as in the original
    assert "Report failed" in crash and "Kernel died" in crash and "kernel died in cell 4 of 9" in crash
    assert "before the first cell ran" not in crash
    assert names["department_crash"]["error"]["where"] == "kernel died in cell 4 of 9"
    summary = "\n".join(run["messages"])
    assert "FAILED department_broken: RuntimeError: deliberately broken department" in summary
    run_dir = result.run_dir
    page = (run_dir / "department_broken.html").read_text()
    assert "Report failed" in page and "deliberately broken department" in page
    assert "cell 4 of 9" in page  # where: the failing cell, counted without papermill's injected cells
    assert 'href="logs/department_broken.log"' in page
    executed = nbformat.read(str(run_dir / "notebooks" / "department_broken.ipynb"), 4)
    assert any(o.get("output_type") == "error" for c in executed.cells if c.cell_type == "code"
               for o in c.outputs)
    for name in ("department_sales", "department_delivery", "satisfaction_drivers", "retention_forecast"):
        html = (run_dir / f"{name}.html").read_text()
        assert "Report failed" not in html and "<script" not in html.lower()


def test_run_folder_layout_is_complete_and_latest_points_to_it(run):
    out, run_dir = run["out"], run["result"].run_dir
    assert run_dir.parent == out and run_dir.name == run["result"].run_id
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())  # temp folder renamed into place
    assert os.readlink(out / "latest") == run_dir.name
    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    for name in ("department_sales", "department_delivery", "department_broken", "satisfaction_drivers",
                 "retention_forecast"):
        assert {f"{name}.html", f"notebooks/{name}.ipynb", f"logs/{name}.log"} <= files
    assert {"index.html", "manifest.json", "data.duckdb"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    # the kernel's own stderr went to the report's log, not the terminal
    assert "report department_sales" in (run_dir / "logs" / "department_sales.log").read_text()


def test_manifest_records_what_is_needed_to_reproduce(run):
    m = json.loads((run["result"].run_dir / "manifest.json").read_text())
    from helpers.data import load_dataset
    ds = load_dataset(run["data"])
    assert m["data"]["fingerprint"] == ds.fingerprint
    assert m["as_of"] == str(ds.date_range()[1].date())
    ds.close()
    assert m["started_at"] <= m["finished_at"]
    assert {"pandas", "papermill", "nbconvert", "statsmodels", "python"} <= set(m["packages"])
    sales = next(r for r in m["reports"] if r["name"] == "department_sales")
    assert sales["department"] == "sales" and sales["department_name"] == "Sales"
    assert sales["notebook"].endswith("tests/fixtures/notebooks/department_report.ipynb")
    assert sales["html"] == "department_sales.html" and sales["status"] == "ok" and sales["seconds"] > 0
    p = sales["parameters"]
    assert p["department"] == "sales" and p["as_of"] == m["as_of"] and p["run_id"] == m["run_id"]
    assert p["data_source"] == m["run_dir_at_execution"] + "/data.duckdb"
    assert p["params_file"].endswith("departments/sales.yaml")
    # the parameters papermill injected are exactly the ones recorded
    executed = nbformat.read(str(run["result"].run_dir / sales["executed_notebook"]), 4)
    assert executed.metadata["papermill"]["parameters"] == p
    assert sales["status_counts"] == {"on track": 2, "at risk": 0, "off track": 1}
    for path in m["params"]["files_sha256"]:
        assert Path(path).exists()


def test_snapshot_is_the_validated_data(run):
    from helpers.data import load_dataset
    snap = load_dataset(run["result"].run_dir / "data.duckdb", validate=False)
    orig = load_dataset(run["data"])
    try:
        assert snap.fingerprint == orig.fingerprint
        for t in ("customers", "responses", "tickets", "org"):
            assert snap.count(t) == orig.count(t)
    finally:
        snap.close()
        orig.close()


def test_snapshot_refers_to_the_data_instead_of_copying_it(run):
    """Issue 14: the run folder held a copy of every table (404 MB at 1M customers, once per kept run). Now
    data.duckdb holds only views over the source's Parquet files and their immutable references."""
    import duckdb
    m = run["result"].manifest
    snap = run["result"].run_dir / "data.duckdb"
    assert m["data"]["storage"] == "reference"
    refs = m["data"]["references"]
    assert set(refs) == {"customers", "responses", "tickets", "org"}
    for table, ref in refs.items():
        f = Path(ref["path"])
        assert f == (run["data"] / f"{table}.parquet").resolve() and ref["size"] == f.stat().st_size
    assert snap.stat().st_size < 1_000_000  # a copy of the small demo's tables is about 1.8 MB
    con = duckdb.connect()
    con.execute(f"ATTACH '{snap}' AS s (READ_ONLY)")
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 's'").fetchall()}
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = 's'").fetchall()}
    con.close()
    assert tables == {"_kit_meta"} and {"customers", "responses", "tickets", "org"} <= views


def test_reproduce_refuses_when_the_referenced_data_changed(tmp_path, small_demo, capsys):
    import shutil

    import pandas as pd
    data = tmp_path / "data"
    shutil.copytree(small_demo, data)
    params = write_params(tmp_path, {"sales": "Sales"})
    out = tmp_path / "o"
    opts = runner.RunOptions(params=params, data=str(data), out=out, notebooks=FIXTURE_NOTEBOOKS, workers=1,
                             company_reports=False, progress=False, run_id="r1")
    first = runner.run_reports(opts, echo=lambda m: None)
    assert first.exit_code == 0 and first.manifest["data"]["storage"] == "reference"
    shutil.copytree(data, tmp_path / "moved", copy_function=shutil.copy)  # copied (new mtimes), then put back
    shutil.rmtree(data)
    (tmp_path / "moved").rename(data)
    runner.check_referenced_data(first.run_dir, first.manifest)  # same bytes: still reproducible
    responses = pd.read_parquet(data / "responses.parquet")
    responses.iloc[:-1].to_parquet(data / "responses.parquet", index=False)  # the export was replaced
    before = sorted(p.name for p in out.iterdir())
    code = cli_main(["reproduce", str(first.run_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reproduce" in err and "responses.parquet changed" in err and "run r1 read its data by reference" in err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    # the run's notebooks would not read other data either: loading the snapshot now fails, naming the file
    from helpers.data import load_dataset
    from helpers.errors import DataContractError
    with pytest.raises(DataContractError, match="responses.parquet changed"):
        load_dataset(first.run_dir / "data.duckdb", validate=False)


def test_index_lists_every_report_with_badges(run):
    index = (run["result"].run_dir / "index.html").read_text()
    for name in ("department_sales", "department_delivery", "department_broken", "satisfaction_drivers",
                 "retention_forecast"):
        assert f'href="{name}.html"' in index
    assert "2 on track" in index and "1 off track" in index  # sales' summary
    n = len(run["result"].manifest["reports"])
    assert "2 reports failed" in index and f"{n - 2} of {n} produced" in index
    assert "<script" not in index.lower()


def test_index_shows_company_kpis_with_their_change(run):
    """The portal's headline KPIs: the last complete month's CSAT for the whole company, checked against a
    direct count of the answers (top-2-box share, n), with the change vs the month before."""
    import pandas as pd
    m = run["result"].manifest
    csat = next(k for k in m["company_kpis"] if k["kpi"] == "csat")
    responses = pd.read_parquet(run["data"] / "responses.parquet")
    when = pd.to_datetime(responses["response_date"])
    end = pd.Timestamp(m["as_of"])
    month = responses[(when >= end.replace(day=1)) & (when <= end)]["csat"].dropna()
    assert csat["n"] == len(month)
    assert csat["value"] == pytest.approx(100 * (month >= 4).mean())
    assert csat["ci_low"] < csat["value"] < csat["ci_high"] and csat["period"] == end.strftime("%B %Y")
    before = responses[(when >= (end.replace(day=1) - pd.Timedelta(days=1)).replace(day=1))
                       & (when < end.replace(day=1))]["csat"].dropna()
    assert csat["change"] == pytest.approx(csat["value"] - 100 * (before >= 4).mean())
    index = (run["result"].run_dir / "index.html").read_text()
    assert f"CSAT, {csat['period']}" in index and "The company at a glance" in index
    assert "Status: produced" not in index and ">produced<" not in index


def test_second_run_links_previous_and_keep_prunes(run):
    out = run["out"]
    first = run["result"].run_id
    opts = runner.RunOptions(params=run["params"], data=str(run["data"]), out=out, notebooks=FIXTURE_NOTEBOOKS,
                             workers=1, only=["sales"], company_reports=False, keep=1, progress=False,
                             run_id=first + "-b")
    second = runner.run_reports(opts, echo=lambda m: None)
    assert second.exit_code == 0
    assert os.readlink(out / "latest") == second.run_id
    index = (second.run_dir / "index.html").read_text()
    assert f'href="../{first}/index.html"' in index
    assert not (out / first).exists()  # --keep 1 removed the older complete run
    with pytest.raises(runner.ReportRunError, match="already exists"):
        runner.run_reports(opts, echo=lambda m: None)
    # reproduce it from its manifest: same parameters (paths moved to the new folder), same outputs
    repro = runner.reproduce_run(second.run_dir, echo=lambda m: None)
    assert repro.exit_code == 0 and repro.manifest["reproduces"] == second.run_id
    assert repro.manifest["drift"] == []
    old = nbformat.read(str(second.run_dir / "notebooks" / "department_sales.ipynb"), 4)
    new = nbformat.read(str(repro.run_dir / "notebooks" / "department_sales.ipynb"), 4)
    old_p, new_p = old.metadata["papermill"]["parameters"], new.metadata["papermill"]["parameters"]
    assert new_p["data_source"] == str(out / f".tmp-{repro.run_id}" / "data.duckdb")
    assert {k: v for k, v in new_p.items() if k not in ("data_source", "summary_path")} == \
        {k: v for k, v in old_p.items() if k not in ("data_source", "summary_path")}
    strip = lambda nb, d: [(s.replace(d, "RUN"), c, o) for s, c, o in _outputs(nb, d)]  # noqa: E731
    assert strip(new, str(out / f".tmp-{repro.run_id}")) == strip(old, str(out / f".tmp-{second.run_id}"))


def test_dry_run_validates_and_executes_nothing(run, capsys):
    out = run["root"] / "dry"
    code = cli_main(["run", "--params", str(run["params"]), "--data", str(run["data"]), "--out", str(out),
                     "--notebooks", str(FIXTURE_NOTEBOOKS), "--dry-run"])
    assert code == 0
    err = capsys.readouterr().err
    assert "dry run" in err and "department_broken" in err
    assert not out.exists()


def test_cli_reports_bad_params_with_exit_code_2(run, capsys, tmp_path):
    params = write_params(tmp_path, {"sales": "Sales"})
    (params / "departments" / "sales.yaml").write_text("department: Sales\nobjectvies: []\n")
    code = cli_main(["run", "--params", str(params), "--data", str(run["data"]), "--out", str(tmp_path / "o"),
                     "--notebooks", str(FIXTURE_NOTEBOOKS)])
    assert code == 2
    assert "sales.yaml" in capsys.readouterr().err


def _outputs(nb, out_dir):
    """Cell outputs without things that differ between any two executions (pids in temp paths, out folder)."""
    import re
    out = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        cell = []
        for o in c.outputs:
            d = {"type": o.output_type, "name": o.get("name"),
                 "mimes": sorted(o.get("data", {})), "text": re.sub(r"ipykernel_\d+", "ipykernel_N",
                                                                   o.get("text", ""))}
            if cell and d["type"] == "stream" and cell[-1]["type"] == "stream" and cell[-1]["name"] == d["name"]:
                cell[-1]["text"] += d["text"]  # one print may arrive as two stream messages (kernel timing)
                continue
            cell.append(d)
        out.append((c.source.replace(str(out_dir), "OUT"), c.execution_count, cell))
    return out


def test_warm_kernels_execute_like_cold_papermill_kernels(run, tmp_path):
    results = {}
    for warm in (True, False):
        opts = runner.RunOptions(params=run["params"], data=str(run["data"]), out=tmp_path / f"o{warm}",
                                 notebooks=FIXTURE_NOTEBOOKS, workers=1, only=["sales"], company_reports=False,
                                 warm_kernels=warm, progress=False, run_id="same")
        r = runner.run_reports(opts, echo=lambda m: None)
        results[warm] = nbformat.read(str(r.run_dir / "notebooks" / "department_sales.ipynb"), 4)
    warm, cold = results[True], results[False]
    assert _outputs(warm, tmp_path / "oTrue") == _outputs(cold, tmp_path / "oFalse")
    assert warm.metadata["kernelspec"] == cold.metadata["kernelspec"]
    assert warm.metadata["language_info"] == cold.metadata["language_info"]
    # the figure is an embedded PNG in both
    assert any("image/png" in o.get("data", {}) for c in warm.cells if c.cell_type == "code" for o in c.outputs)


# ---------------------------------------------------------------------------------------------- charts, protocol

def _images(html: str) -> list[str]:
    import re
    return re.findall(r"<img\b[^>]*>", html)


@pytest.mark.parametrize("warm", [True, False])
def test_mplbackend_agg_in_the_environment_still_gives_charts(run, tmp_path, monkeypatch, warm):
    """Regression (issue 11): with MPLBACKEND=Agg in the scheduler's environment plt.show() drew nothing and
    every page lost its charts with exit code 0. The runner forces the inline backend in its kernels.

    Also (both kernel kinds): the report kernels keep no IPython history. The kit's kernel is not named
    python3, so nbclient did not keep its history in memory and every report run appended every cell to the
    user's ~/.ipython/profile_default/history.sqlite."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ipython_dir = tmp_path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
    opts = runner.RunOptions(params=run["params"], data=str(run["data"]), out=tmp_path / "o",
                             notebooks=FIXTURE_NOTEBOOKS, workers=1, only=["sales"], company_reports=False,
                             warm_kernels=warm, progress=False)
    result = runner.run_reports(opts, echo=lambda m: None)
    assert result.exit_code == 0, result.manifest["reports"][0]["error"]
    images = _images((result.run_dir / "department_sales.html").read_text())
    assert len(images) == 2  # the plt.show() chart and the show_figure chart
    assert any('alt="Bar chart for sales: b is twice a"' in i for i in images)  # alt text from the metadata
    assert os.environ["MPLBACKEND"] == "Agg"  # the runner's own environment is left as it was
    assert ipython_dir.is_dir()  # the kernel ran with this IPython folder ...
    assert not list(ipython_dir.rglob("history.sqlite"))  # ... and wrote no history into it


def _variant_notebooks(folder: Path, replace: dict[str, str]) -> Path:
    folder.mkdir()
    for name in (p.name for p in FIXTURE_NOTEBOOKS.glob("*.ipynb")):
        text = (FIXTURE_NOTEBOOKS / name).read_text()
        if name == "department_report.ipynb":
            for old, new in replace.items():
                assert old in text
                text = text.replace(old, new)
        (folder / name).write_text(text)
    return folder


def test_page_protocol_is_checked_after_the_notebook_ran(run, tmp_path):
    """A notebook that ends without its summary, or a page with fewer charts than its summary says it was
    meant to show, is a failed report with a plain reason (not a silent success)."""
    notebooks = _variant_notebooks(tmp_path / "nbs", {
        "charts=2)": "charts=3 if department == 'sales' else 2) if department != 'delivery' else None"})
    opts = runner.RunOptions(params=run["params"], data=str(run["data"]), out=tmp_path / "o", notebooks=notebooks,
                             workers=2, only=["sales", "delivery"], company_reports=False, progress=False)
    messages: list[str] = []
    result = runner.run_reports(opts, echo=messages.append)
    assert result.exit_code == 1 and sorted(result.failures) == ["department_delivery", "department_sales"]
    reports = {r["name"]: r for r in result.manifest["reports"]}
    sales, delivery = reports["department_sales"]["error"], reports["department_delivery"]["error"]
    assert "meant to show 3 charts and shows 2" in sales["message"]
    assert "without writing its summary" in delivery["message"]
    page = (result.run_dir / "department_sales.html").read_text()
    assert "Report failed" in page and "meant to show 3 charts and shows 2" in page
    assert "page protocol" in page
    index = (result.run_dir / "index.html").read_text()
    assert "meant to show 3 charts and shows 2" in index  # the failure in plain words on the portal


# ---------------------------------------------------------------------------------------------- what changed

def _sales_delighted_last_month(src: Path, dest: Path) -> Path:
    """A copy of the demo where every Sales answer of the last month is CSAT 5 (a known, large rise: on the
    small demo Sales' last month is about 56% top-2-box, below the fixture's 60% line)."""
    import shutil

    import pandas as pd
    shutil.copytree(src, dest)
    responses = pd.read_parquet(dest / "responses.parquet")
    last = pd.Timestamp(responses["response_date"].max())
    month = (pd.to_datetime(responses["response_date"]) >= last.replace(day=1)) & (responses["department"] == "Sales")
    assert month.sum() > 20
    responses.loc[month, "csat"] = 5
    responses.to_parquet(dest / "responses.parquet", index=False)
    return dest


def test_run_over_run_changes_on_two_data_sets_that_differ_in_a_known_way(run, tmp_path):
    changed = _sales_delighted_last_month(run["data"], tmp_path / "changed")
    out = tmp_path / "o"

    def one_run(data, run_id):
        opts = runner.RunOptions(params=run["params"], data=str(data), out=out, notebooks=FIXTURE_NOTEBOOKS,
                                 workers=2, only=["sales", "delivery"], company_reports=False, progress=False,
                                 run_id=run_id)
        result = runner.run_reports(opts, echo=lambda m: None)
        assert result.exit_code == 0, result.failures
        return result

    first = one_run(run["data"], "r1")
    page = (first.run_dir / "department_sales.html").read_text()
    assert "First run: there is no earlier run to compare with." in page
    second = one_run(changed, "r2")
    reports = {r["name"]: r for r in second.manifest["reports"]}
    sales = reports["department_sales"]["changes"]
    assert [(c["before"], c["after"]) for c in sales["status_changes"]] == [("off track", "on track")]
    (csat,) = sales["kpis"]
    assert csat["significant"] and csat["after"] > csat["before"] and csat["period_after"] == csat["period_before"]
    assert sales["new_warnings"] == ["CSAT on track"]
    delivery = reports["department_delivery"]["changes"]  # Delivery's data did not change
    assert delivery["unchanged"] and delivery["status_changes"] == [] and delivery["new_warnings"] == []
    page = (second.run_dir / "department_sales.html").read_text()
    assert "1 objective changed status;" in page and "a significant change (up" in page
    assert "Raise satisfaction: off track \u2192 on track." in page
    assert "unchanged since the last run" in (second.run_dir / "department_delivery.html").read_text()
    index = (second.run_dir / "index.html").read_text()
    assert "Raise satisfaction: off track &rarr; on track" in index
    # departments by attention needed: Sales (an objective off track in its summary counts) before Delivery
    assert index.index('href="department_sales.html"') < index.index('href="department_delivery.html"')
    # the same data again: the latest period is unchanged, on the page and in the index
    third = one_run(changed, "r3")
    assert all(r["changes"]["unchanged"] for r in third.manifest["reports"])
    assert "is unchanged since the last run (r2" in (third.run_dir / "department_sales.html").read_text()
    index = (third.run_dir / "index.html").read_text()
    assert "The latest period is unchanged since the last run (r2" in index
    assert 'href="../r2/index.html"' in index and 'href="../r1/index.html"' in index

