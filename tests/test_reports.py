"""Unit tests of the report runner: slugs, paths, atomic writes, summaries, params/notebook validation, HTML."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from helpers.errors import ObjectiveError, ParamsError
from helpers.reports import (ReportRunError, atomic_write_text, ensure_inside, safe_slug, unique_slugs,
                             write_report_summary)
from helpers.reports import export, runner
from helpers.reports.__main__ import main as cli_main
from reports_support import FIXTURE_NOTEBOOKS, write_params


# ---------------------------------------------------------------------------------------------- slugs and paths

@pytest.mark.parametrize("name, slug", [
    ("Customer Service", "customer_service"),
    ("Technical Support", "technical_support"),
    ("technical_support", "technical_support"),
    ("Kundendienst Süd", "kundendienst_sud"),
    ("../../etc/passwd", "etc_passwd"),
    ("a/b\\c.d", "a_b_c_d"),
    ("  Sales  & Marketing!! ", "sales_marketing"),
    ("R&D-2", "r_d_2"),
])
def test_safe_slug(name, slug):
    assert safe_slug(name) == slug
    assert re.fullmatch(r"[a-z0-9_-]+", slug)


@pytest.mark.parametrize("bad", ["", "../", "...", "///", "日本"])
def test_safe_slug_refuses_names_without_letters_or_digits(bad):
    with pytest.raises(ReportRunError, match="no letters or digits"):
        safe_slug(bad)


def test_unique_slugs_disambiguates_collisions():
    assert unique_slugs(["Sales", "sales", "SALES!"]) == {"Sales": "sales", "sales": "sales_2", "SALES!": "sales_3"}


def test_ensure_inside(tmp_path):
    assert ensure_inside(tmp_path / "a" / "b.html", tmp_path) == (tmp_path / "a" / "b.html").resolve()
    with pytest.raises(ReportRunError, match="would leave the run folder"):
        ensure_inside(tmp_path / ".." / "x.html", tmp_path)
    os.symlink("/etc", tmp_path / "link")
    with pytest.raises(ReportRunError):
        ensure_inside(tmp_path / "link" / "passwd", tmp_path)


# ---------------------------------------------------------------------------------------------- atomic writes

def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "r.html"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new content")
    assert target.read_text() == "new content"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    atomic_write_text(target, "complete old report")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "half")
    assert target.read_text() == "complete old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # temp file cleaned up


# ---------------------------------------------------------------------------------------------- summaries

def test_write_report_summary_roundtrip_and_noop(tmp_path):
    assert write_report_summary("", title="x") is None
    path = tmp_path / "s" / "sales.summary.json"
    write_report_summary(path, title="Sales", department="Sales",
                         status_counts={"on track": 3, "at risk": 1, "off track": 0}, warnings=["few responses"])
    data = json.loads(path.read_text())
    assert data == {"title": "Sales", "department": "Sales",
                    "status_counts": {"on track": 3, "at risk": 1, "off track": 0}, "warnings": ["few responses"],
                    "headline": "", "objectives": [], "kpis": []}


def test_write_report_summary_page_fields_are_json_safe(tmp_path):
    import numpy as np
    path = tmp_path / "p.summary.json"
    out = write_report_summary(path, title="Billing", headline="2 of 5 on track",
                               objectives=[{"id": "a", "status": "on track", "p_met": np.float64(0.91)}],
                               kpis=[{"kpi": "csat", "value": float("nan"), "n": np.int64(120)}], charts=3)
    assert out is None  # a notebook's last line must not print a path
    data = json.loads(path.read_text())
    assert data["objectives"][0]["p_met"] == pytest.approx(0.91)
    assert data["kpis"][0] == {"kpi": "csat", "value": None, "n": 120}
    assert data["headline"] == "2 of 5 on track" and data["charts"] == 3


@pytest.mark.parametrize("counts", [{"on track": -1}, {"at risk": 1.5}, {"off track": "many"}])
def test_write_report_summary_rejects_bad_counts(tmp_path, counts):
    with pytest.raises(ParamsError, match="status count"):
        write_report_summary(tmp_path / "s.json", title="t", status_counts=counts)


# ---------------------------------------------------------------------------------------------- planning / validation

def _opts(tmp_path, params, **kw):
    return runner.RunOptions(params=params, out=tmp_path / "reports", notebooks=FIXTURE_NOTEBOOKS, **kw)


def _plan(tmp_path, params, **kw):
    path, cfg = runner.load_report_settings(params)
    return runner.plan_reports(_opts(tmp_path, params, **kw), cfg, path, "2026-10-31", "rid",
                               "/data/snap.duckdb", tmp_path / "run")


def test_plan_has_every_department_and_both_company_reports(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales", "technical_support": "Technical Support"})
    jobs = _plan(tmp_path, params)
    from helpers.reports import registry
    company = [s.name for s in registry.reports("company")]
    assert company[:2] == ["satisfaction_drivers", "retention_forecast"]
    assert [j.name for j in jobs] == ["department_sales", "department_technical_support"] + company
    sales = jobs[0]
    assert sales.department == "Sales"
    assert sales.parameters["department"] == "sales"
    assert sales.parameters["params_file"] == str((params / "departments" / "sales.yaml").resolve())
    assert sales.parameters["data_source"] == "/data/snap.duckdb"
    assert sales.parameters["summary_path"] == str(tmp_path / "run" / "summaries" / "department_sales.summary.json")
    drivers = jobs[2]
    assert drivers.parameters["department"] == "all" and drivers.parameters["outcome"] == "csat"
    assert "params_file" not in drivers.parameters
    for j in jobs:
        assert j.parameters["as_of"] == "2026-10-31" and j.parameters["run_id"] == "rid"


def test_only_selects_by_slug_or_name_and_rejects_unknown(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales", "technical_support": "Technical Support"})
    jobs = _plan(tmp_path, params, only=["Technical Support"], company_reports=False)
    assert [j.name for j in jobs] == ["department_technical_support"]
    with pytest.raises(ParamsError, match="--only billing: no such department; known: sales, technical_support"):
        _plan(tmp_path, params, only=["billing"])


def test_one_bad_department_file_is_named_before_anything_runs(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales", "delivery": "Delivery"})
    (params / "departments" / "delivery.yaml").write_text("department: Delivery\nobjectives: []\n")
    data_calls = []

    def data_preparer(*a):
        data_calls.append(a)
        raise AssertionError("data must not be loaded when params are invalid")

    with pytest.raises(ParamsError, match=r"delivery\.yaml.*non-empty list") as err:
        runner.run_reports(_opts(tmp_path, params), data_preparer=data_preparer, echo=lambda m: None)
    assert isinstance(err.value, ValueError)
    assert data_calls == []
    assert not (tmp_path / "reports").exists()  # no run folder, not even a temporary one


@pytest.mark.parametrize("second", ["marketing.yml", "Marketing.yaml"])
def test_two_files_for_one_department_are_a_params_error_naming_both(tmp_path, second):
    """Regression (issue 16 item 8): marketing.yaml next to marketing.yml gave two jobs writing the same files
    and the index listed Marketing more than once."""
    params = write_params(tmp_path, {"marketing": "Marketing", "sales": "Sales"})
    (params / "departments" / second).write_text((params / "departments" / "marketing.yaml").read_text())
    with pytest.raises(ParamsError, match=rf"marketing\.yaml and {re.escape(second)}|{re.escape(second)} and "
                                          rf"marketing\.yaml"):
        _plan(tmp_path, params)
    code = cli_main(["run", "--params", str(params), "--out", str(tmp_path / "o"),
                     "--notebooks", str(FIXTURE_NOTEBOOKS), "--data", str(tmp_path / "unused")])
    assert code == 2 and not (tmp_path / "o").exists()


def test_two_files_declaring_the_same_department_name(tmp_path):
    params = write_params(tmp_path, {"marketing": "Marketing", "mkt": "Marketing"})
    with pytest.raises(ParamsError, match=r"marketing\.yaml and mkt\.yaml both declare department 'Marketing'"):
        _plan(tmp_path, params)


def test_malformed_yaml_is_a_params_error(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales"})
    (params / "departments" / "sales.yaml").write_text("department: Sales\nobjectives: [\n")
    with pytest.raises(ObjectiveError, match="malformed YAML"):
        _plan(tmp_path, params)


def test_missing_report_yaml(tmp_path):
    (tmp_path / "params" / "departments").mkdir(parents=True)
    with pytest.raises(ParamsError, match="report.yaml: missing"):
        runner.load_report_settings(tmp_path / "params")


def _notebook(path: Path, params_source: str | None, n_params: int = 1) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for _ in range(n_params if params_source is not None else 0):
        cell = nbformat.v4.new_code_cell(params_source)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    nbformat.write(nb, str(path))
    return path


def test_notebook_parameter_checks(tmp_path):
    declared = runner.notebook_parameters(_notebook(tmp_path / "a.ipynb", "x = 1\ny: int = 2\n"))
    assert set(declared) == {"x", "y", "__kernel__"}
    with pytest.raises(ReportRunError, match="exactly one cell tagged 'parameters', found 0"):
        runner.notebook_parameters(_notebook(tmp_path / "b.ipynb", None))
    with pytest.raises(ReportRunError, match="found 2"):
        runner.notebook_parameters(_notebook(tmp_path / "c.ipynb", "x = 1", n_params=2))
    with pytest.raises(ReportRunError, match="not valid Python"):
        runner.notebook_parameters(_notebook(tmp_path / "d.ipynb", "x = = 1"))


def test_parameter_the_notebook_does_not_declare_is_an_error(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    from helpers.reports import registry
    for spec in registry.REPORTS:
        (nbs / spec.notebook).write_bytes((FIXTURE_NOTEBOOKS / spec.notebook).read_bytes())
    _notebook(nbs / "department_report.ipynb",
              'data_source = ""\nreport_config = ""\nas_of = ""\nrun_id = ""\nsummary_path = ""\ndepartment = ""\n')
    params = write_params(tmp_path, {"sales": "Sales"})
    path, cfg = runner.load_report_settings(params)
    with pytest.raises(ReportRunError, match="does not declare params_file"):
        runner.plan_reports(runner.RunOptions(params=params, notebooks=nbs), cfg, path, "", "r", "", tmp_path)


def test_missing_kernel_is_reported(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales"})
    with pytest.raises(ReportRunError, match="kernel 'no-such-kernel' is not installed"):
        _plan(tmp_path, params, kernel_name="no-such-kernel")


# ---------------------------------------------------------------------------------------------- latest / keep

def _fake_run(out: Path, run_id: str, started_at: str | None = None) -> None:
    (out / run_id).mkdir(parents=True)
    started_at = started_at or run_id.replace("T000000Z", "T00:00:00+00:00")
    (out / run_id / "manifest.json").write_text(json.dumps({"run_id": run_id, "as_of": "2026-10-31",
                                                            "started_at": started_at, "finished_at": started_at,
                                                            "reports": []}))


def test_switch_latest_and_keep(tmp_path):
    out = tmp_path / "reports"
    for rid in ("2026-01-01T000000Z", "2026-02-01T000000Z", "2026-03-01T000000Z"):
        _fake_run(out, rid)
        assert runner.switch_latest(out, rid) == "symlink"
    assert os.readlink(out / "latest") == "2026-03-01T000000Z"
    (out / ".tmp-2026-04-01T000000Z").mkdir()  # a run in progress: --keep never touches .tmp folders
    removed = runner.prune_runs(out, 2, protect="2026-03-01T000000Z")
    assert removed == ["2026-01-01T000000Z"]
    assert sorted(p.name for p in out.iterdir()) == [".tmp-2026-04-01T000000Z", "2026-02-01T000000Z",
                                                     "2026-03-01T000000Z", "latest"]
    with pytest.raises(ParamsError, match="keep at least"):
        runner.prune_runs(out, 0, protect="x")


def test_keep_orders_runs_by_when_they_ran_not_by_name(tmp_path):
    """Regression (issue 16 item 10): with custom --run-ids, --keep 1 kept the run whose name sorts last."""
    out = tmp_path / "reports"
    _fake_run(out, "zz-first", started_at="2026-11-01T06:00:00+00:00")
    _fake_run(out, "aa-second", started_at="2026-11-08T06:00:00+00:00")
    assert [r["run_id"] for r in runner.list_runs(out)] == ["aa-second", "zz-first"]
    assert runner.prune_runs(out, 1, protect="aa-second") == ["zz-first"]
    assert (out / "aa-second").is_dir() and not (out / "zz-first").exists()
    assert runner.previous_timings(out) == {}  # reads the newest run (no reports) without error


@pytest.mark.parametrize("option, value, message", [
    ("keep", 0, "--keep"), ("keep", -1, "--keep"), ("workers", 0, "--workers"), ("timeout", 0, "--timeout"),
    ("if_locked", "sometimes", "--if-locked"), ("as_of", "31/10/2026", "--as-of"),
    ("run_id", "../x", "--run-id"), ("lock_timeout", 0, "--lock-timeout"), ("lock_timeout", -5, "--lock-timeout"),
])
def test_options_are_validated_before_anything_runs(tmp_path, option, value, message):
    """Regression (item 10): --keep -1 was only rejected after the run had been published."""
    params = write_params(tmp_path, {"sales": "Sales"})

    def data_preparer(*a):
        raise AssertionError("nothing may run with invalid options")

    opts = _opts(tmp_path, params, **{option: value})
    with pytest.raises(ParamsError if option != "run_id" else ReportRunError, match=re.escape(message)):
        runner.run_reports(opts, data_preparer=data_preparer, echo=lambda m: None)
    assert not (tmp_path / "reports").exists()


def test_remove_stale_runs_only_touches_leftovers(tmp_path):
    out = tmp_path / "reports"
    _fake_run(out, "2026-01-01T000000Z")
    (out / ".tmp-2026-02-01T000000Z" / "logs").mkdir(parents=True)
    os.symlink("2026-01-01T000000Z", out / ".latest.123.tmp")
    os.symlink("2026-01-01T000000Z", out / "latest")
    assert sorted(runner.remove_stale_runs(out)) == [".latest.123.tmp", ".tmp-2026-02-01T000000Z"]
    assert sorted(p.name for p in out.iterdir()) == ["2026-01-01T000000Z", "latest"]


def test_unique_run_id_within_one_second(tmp_path):
    """Regression (item 7): two runs started in the same second crashed with FileExistsError."""
    import datetime as dt
    out = tmp_path / "reports"
    now = dt.datetime(2026, 11, 30, 6, 0, 0, tzinfo=dt.UTC)
    first = runner.unique_run_id(out, None, now)
    assert first == "2026-11-30T060000Z"
    (out / first).mkdir(parents=True)
    assert runner.unique_run_id(out, None, now) == "2026-11-30T060000Z-2"
    (out / ".tmp-2026-11-30T060000Z-2").mkdir()
    assert runner.unique_run_id(out, None, now) == "2026-11-30T060000Z-3"
    with pytest.raises(ReportRunError, match="already exists"):
        runner.unique_run_id(out, first, now)


# ---------------------------------------------------------------------------------------------- HTML export

def _executed_like_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('department = "x"')
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('department = "sales"  # INJECTED_MARKER')
    injected.metadata["tags"] = ["injected-parameters"]
    injected.outputs = [nbformat.v4.new_output("stream", name="stdout", text="INJECTED_OUTPUT")]
    body = nbformat.v4.new_code_cell("SECRET_SOURCE_MARKER = 1\nshow()")
    body.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: NOISY_WARNING"),
        nbformat.v4.new_output("stream", name="stdout", text="Comment: <script>alert('x')</script> & more"),
        nbformat.v4.new_output("display_data", data={
            "text/html": '<table><tr><td onclick="steal()">ok</td></tr></table><script>evil()</script>'
                         '<img src="https://tracker.example/pixel.png">'
                         '<span class="status-badge" style="background:#d4a72c;padding:2px 10px">at risk</span>'
                         '<span style="background:url(https://tracker.example/bg.png)">x</span>',
            "text/plain": "table"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
    ]
    return nbformat.from_dict({**nb, "cells": [nbformat.v4.new_markdown_cell("# Sales report\n## Objectives"),
                                               params, injected, body,
                                               nbformat.v4.new_markdown_cell("### Detail")]})


def test_report_html_has_no_code_no_params_no_warnings_and_escapes_text():
    page = export.render_report(_executed_like_notebook(), title="Sales report", department="Sales",
                                as_of="2026-10-31", freshness="2023-11-01 to 2026-10-31", run_id="RUN42",
                                fingerprint="abc", company="ACME <Corp>", notebook="nb.ipynb")
    assert "SECRET_SOURCE_MARKER" not in page and "INJECTED" not in page
    assert "NOISY_WARNING" not in page
    assert "&lt;script&gt;alert" in page  # data text shows as text
    assert "<script" not in page.lower()   # and nothing executes
    assert "onclick" not in page and "tracker.example/pixel" not in page
    assert not re.search(r"(?<![-\w])url\s*\(", page)  # no CSS can load anything
    assert "background:#d4a72c" in page.replace(" ", "")  # inline badge colours survive the sanitizer
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page
    assert "ACME &lt;Corp&gt;" in page and "RUN42" in page and "2026-10-31" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # table of contents from the headings, the h1 is the page title
    assert export.table_of_contents(page) == [(2, "Objectives", "Objectives"), (3, "Detail", "Detail")]
    assert re.findall(r'(?:src|href)="(https?:)?//', page) == []


def test_error_page_escapes_the_traceback():
    page = export.render_error(title="Broken", department="Broken <b>", as_of="2026-10-31", run_id="r",
                               company="c", notebook="n", executed_notebook="notebooks/x.ipynb", log="logs/x.log",
                               log_tail="<script>1</script>", error_name="ValueError", error_message="bad <i>",
                               where="cell 3", failing_source="raise ValueError('<b>')", traceback="tb")
    assert "<script>1" not in page and "&lt;script&gt;1" in page
    assert "Broken &lt;b&gt;" in page and "bad &lt;i&gt;" in page
    assert 'href="logs/x.log"' in page and 'href="notebooks/x.ipynb"' in page


def _job(name: str, kind: str = "department", shares: tuple = (), cost: float = 1.0):
    return runner.ReportJob(name=name, kind=kind, title=name, department="", notebook="", parameters={},
                            shares=shares, cost=cost)


def test_schedule_longest_first():
    jobs = [_job("department_a"), _job("department_b"), _job("satisfaction_drivers", "company", cost=1.5),
            _job("retention_forecast", "company", cost=0.5)]
    # no history: by cost (relative page time), ties in plan order
    assert [j.name for j in runner.schedule_order(jobs, {})] == ["satisfaction_drivers", "department_a",
                                                                 "department_b", "retention_forecast"]
    timings = {"department_a": 5.0, "department_b": 30.0, "satisfaction_drivers": 20.0, "retention_forecast": 2.0}
    assert [j.name for j in runner.schedule_order(jobs, timings)] == ["department_b", "satisfaction_drivers",
                                                                      "department_a", "retention_forecast"]
    # a report the previous run did not have: its cost times that run's average page (14.25 s)
    new = _job("department_new", cost=0.5)
    assert [j.name for j in runner.schedule_order(jobs + [new], timings)] == [
        "department_b", "satisfaction_drivers", "department_new", "department_a", "retention_forecast"]


def test_schedule_starts_one_producer_of_each_shared_result_first():
    """A page computes a shared run-wide result when it is the first to need it and the others wait for it: the
    longest page of each shared result starts first, so two producers work in parallel and no worker idles."""
    chain, themes, company = "objectives worth chain", "window themes", "company worth chain"
    jobs = [_job("department_a", shares=(chain, themes), cost=0.9), _job("department_b", shares=(chain, themes)),
            _job("satisfaction_drivers", "company", shares=(company,), cost=0.95),
            _job("retention_forecast", "company", shares=(company,), cost=0.7),
            _job("voice_of_customer", "company", shares=(themes,), cost=0.4)]
    order = [j.name for j in runner.schedule_order(jobs, {})]
    # department_b (the longest of the chain's pages) and the drivers page (of the company chain) first; voice's
    # themes are computed by department_b already; then longest first
    assert order == ["department_b", "satisfaction_drivers", "department_a", "retention_forecast",
                     "voice_of_customer"]
    timings = {"department_a": 4.0, "department_b": 3.0, "satisfaction_drivers": 2.0, "retention_forecast": 5.0,
               "voice_of_customer": 1.0}
    assert [j.name for j in runner.schedule_order(jobs, timings)] == [
        "retention_forecast", "department_a", "department_b", "satisfaction_drivers", "voice_of_customer"]
    # nothing shared: plain longest first; every job is scheduled exactly once
    plain = [_job(n, cost=c) for n, c in (("x", 1.0), ("y", 3.0), ("z", 2.0))]
    assert [j.name for j in runner.schedule_order(plain, {})] == ["y", "z", "x"]


def test_plan_gives_department_pages_a_cost_by_their_number_of_objectives(tmp_path):
    """With no previous run, a department page's time is estimated from its objectives (about half a second
    each on the demo): the department with the most objectives gets the highest cost."""
    import shutil

    from helpers.objectives import load_objectives
    from helpers.reports import registry
    from reports_support import REPO

    params = tmp_path / "params"
    shutil.copytree(REPO / "params", params)
    opts = runner.RunOptions(params=params, data="", out=tmp_path / "o", notebooks=REPO / "notebooks" / "reports",
                             progress=False)
    config_path, cfg = runner.load_report_settings(params)
    jobs = runner.plan_reports(opts, cfg, config_path, "2026-10-31", "r", "x.duckdb", tmp_path / "run")
    sizes = {j.name: len(load_objectives(Path(j.parameters["params_file"])).objectives)
             for j in jobs if j.kind == "department"}
    mean = sum(sizes.values()) / len(sizes)
    for job in jobs:
        spec = next(s for s in registry.REPORTS if job.name == s.name or job.name.startswith(s.name + "_"))
        assert job.shares == spec.shares
        expected = spec.cost * sizes[job.name] / mean if job.kind == "department" else spec.cost
        assert job.cost == pytest.approx(expected)
    assert max(sizes, key=sizes.get) == max((j for j in jobs if j.kind == "department"), key=lambda j: j.cost).name


# ---------------------------------------------------------------------------------------------- styles, alt text

def test_inline_stylesheet_reaches_the_browser_unescaped():
    """Regression (issue 11): the stylesheet went through Jinja's autoescape, so ``"Segoe UI"`` became
    ``&#34;Segoe UI&#34;`` inside <style>, the browser dropped the font rule and pages rendered in a serif font."""
    page = export.render_report(_executed_like_notebook(), title="T", department="D", as_of="2026-10-31",
                                freshness="f", run_id="r", fingerprint="x", company="C", notebook="n")
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert style == export.kit_css()
    assert '"Segoe UI"' in style and "&#34;" not in style and "&quot;" not in style
    assert re.search(r"body \{[^}]*font: 16px/1\.55 system-ui[^;}]*sans-serif", style)


def test_stylesheet_that_could_end_the_style_element_is_refused(tmp_path, monkeypatch):
    (tmp_path / "kit.css").write_text("body { color: red } </style><script>x()</script>")
    monkeypatch.setattr(export, "TEMPLATE_DIR", tmp_path)
    export.kit_css.cache_clear()
    try:
        with pytest.raises(ValueError, match="may not end the <style> element"):
            export.kit_css()
    finally:
        export.kit_css.cache_clear()


def test_chart_alt_text_from_the_output_metadata_goes_into_the_img_alt():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show_figure(fig, alt=...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="},
                                           metadata={"image/png": {"alt": "CSAT rose to 81% <in> October"}})]
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n## Charts"), cell]
    page = export.render_report(nb, title="T", department="D", as_of="a", freshness="f", run_id="r",
                                fingerprint="x", company="C", notebook="n")
    (img,) = re.findall(r"<img\b[^>]*>", page)
    assert 'alt="CSAT rose to 81% &lt;in&gt; October"' in img
    assert "No description has been provided" not in page


def test_kernel_environment_forces_the_inline_backend_and_restores(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with runner.kernel_environment():
        assert os.environ["MPLBACKEND"] == "module://matplotlib_inline.backend_inline"
    assert os.environ["MPLBACKEND"] == "Agg"
    monkeypatch.delenv("MPLBACKEND")
    with runner.kernel_environment():
        pass
    assert "MPLBACKEND" not in os.environ


def test_console_text_removes_terminal_control_sequences():
    from helpers.reports import console_text
    assert console_text("Sales\x1b[2J\x1b[31m red\x1b[0m") == "Sales red"
    assert console_text("a\rb\x07c\x9b2Jd\x1b]0;title\x07e") == "abc2Jde"
    assert console_text("two\nlines\tand tab \u202eevil") == "two\nlines\tand tab evil"


# ---------------------------------------------------------------------------------------------- registry, protocol

def test_registry_is_what_the_runner_plans(tmp_path):
    from helpers.reports import registry
    params = write_params(tmp_path, {"sales": "Sales"})
    jobs = _plan(tmp_path, params)
    assert [Path(j.notebook).name for j in jobs] == [s.notebook for s in registry.REPORTS]
    # adding a report is one entry: a company-wide voice-of-the-customer page from its own notebook
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for spec in registry.REPORTS:
        (nbs / spec.notebook).write_bytes((FIXTURE_NOTEBOOKS / spec.notebook).read_bytes())
    (nbs / "voice.ipynb").write_bytes((FIXTURE_NOTEBOOKS / "retention_forecast.ipynb").read_bytes())
    specs = registry.REPORTS + (registry.ReportSpec("voice_of_the_customer", "voice.ipynb", "company",
                                                    "Voice of the customer"),)
    path, cfg = runner.load_report_settings(params)
    jobs = runner.plan_reports(runner.RunOptions(params=params, notebooks=nbs), cfg, path, "", "r", "", tmp_path,
                               registry_specs=specs)
    voice = jobs[-1]
    assert voice.name == "voice_of_the_customer" and voice.kind == "company" and voice.html == \
        "voice_of_the_customer.html" and voice.title == "Voice of the customer"
    # a parameter the registry passes must be declared by the notebook
    specs = registry.REPORTS + (registry.ReportSpec("voice_of_the_customer", "voice.ipynb", "company", "V",
                                                    ("outcome",)),)
    with pytest.raises(ReportRunError, match="voice.ipynb: its parameters cell does not declare outcome"):
        runner.plan_reports(runner.RunOptions(params=params, notebooks=nbs), cfg, path, "", "r", "", tmp_path,
                            registry_specs=specs)


@pytest.mark.parametrize("spec, message", [
    (("Bad Name", "x.ipynb", "company", "t"), "lower-case"),
    (("x", "x.ipynb", "team", "t"), "kind 'team'"),
    (("x", "x.ipynb", "company", "t", ("colour",)), "colour have no source"),
    (("department", "x.ipynb", "company", "t"), "registered twice"),
    (("x", "x.ipynb", "company", "t", (), (), 0), "cost 0; expected a positive number"),
    (("x", "x.ipynb", "company", "t", (), "window themes"), "shares must be a tuple"),
])
def test_registry_entries_are_checked(spec, message):
    from helpers.reports import registry
    with pytest.raises(ValueError, match=message):
        registry.check_registry(registry.REPORTS + (registry.ReportSpec(*spec),))


def test_check_summary_names_what_breaks_the_protocol(tmp_path):
    from helpers.reports.registry import charts_problem, check_summary
    path = tmp_path / "s.json"
    assert "without writing its summary" in check_summary(path)[1]
    path.write_text("{not json")
    assert "not readable JSON" in check_summary(path)[1]
    write_report_summary(path, title="Sales", status_counts={"on track": 1}, charts=2)
    summary, problem = check_summary(path)
    assert problem is None and summary["charts"] == 2
    path.write_text(json.dumps({"title": "", "status_counts": {"on track": -1}, "warnings": "one", "charts": 1.5}))
    problem = check_summary(path)[1]
    for part in ("no title", "status_counts", "warnings must be a list", "charts must be a whole number"):
        assert part in problem
    assert charts_problem({"charts": 2}, "<p><img src='a'><IMG src='b'></p>") is None
    assert charts_problem({}, "") is None
    assert "meant to show 2 charts and shows 1" in charts_problem({"charts": 2}, "<img src='a'>")


# ---------------------------------------------------------------------------------------------- what changed

def _kpi(value, lo, hi, period="October 2026", **extra):
    return {"kpi": "csat", "label": "CSAT", "unit": "%", "value": value, "ci_low": lo, "ci_high": hi,
            "period": period, **extra}


def test_kpi_change_rule():
    from helpers.reports.changes import Z_95, kpi_change
    # same period, same value: a weekly run over a monthly KPI
    same = kpi_change(_kpi(80.0, 76.0, 84.0), _kpi(80.0, 76.0, 84.0))
    assert same.verdict == "unchanged" and not same.significant
    assert "latest period (October 2026) is unchanged since the last run" in same.sentence()
    # new period; se = half-width / 1.96: both 2.0 -> z = diff / (2 * sqrt 2)
    half = 2.0 * Z_95
    just_over = kpi_change(_kpi(80.0, 80 - half, 80 + half, "September 2026"), _kpi(80 + 5.6, 85.6 - half,
                                                                                     85.6 + half))
    assert just_over.z == pytest.approx(5.6 / (2 * 2 ** 0.5)) and just_over.significant
    assert "a significant change (up" in just_over.sentence() and "(last run: 80.0% in September 2026)" in \
        just_over.sentence()
    just_under = kpi_change(_kpi(80.0, 80 - half, 80 + half, "September 2026"), _kpi(74.6, 74.6 - half,
                                                                                     74.6 + half))
    assert just_under.z == pytest.approx(-5.4 / (2 * 2 ** 0.5)) and not just_under.significant
    assert "within the noise" in just_under.sentence()
    # the same period with another value: the data were revised, tested the same way
    revised = kpi_change(_kpi(80.0, 78.0, 82.0), _kpi(70.0, 68.0, 72.0))
    assert revised.significant and "revised from 80.0% to 70.0%" in revised.sentence()
    # no interval: shown, never called significant
    bare = kpi_change(_kpi(80.0, None, None, "September 2026"), _kpi(60.0, 58.0, 62.0))
    assert bare.verdict == "no interval" and not bare.significant and "no interval" in bare.sentence()
    assert kpi_change(None, _kpi(60.0, 58.0, 62.0)).verdict == "new"


def test_kpi_change_false_alarm_rate_is_nominal_on_synthetic_estimates():
    """Two independent normal estimates of the same truth: the rule calls ~5% of changes significant."""
    import numpy as np
    from helpers.reports.changes import Z_95, kpi_change
    rng = np.random.default_rng(11)
    se = rng.uniform(0.5, 3.0, size=(4000, 2))
    values = 70 + rng.normal(size=(4000, 2)) * se
    hits = sum(kpi_change(_kpi(v0, v0 - Z_95 * s0, v0 + Z_95 * s0, "September 2026"),
                          _kpi(v1, v1 - Z_95 * s1, v1 + Z_95 * s1)).significant
               for (v0, v1), (s0, s1) in zip(values, se))
    assert 0.04 < hits / 4000 < 0.06


def test_compare_summaries_status_kpis_warnings():
    from helpers.reports.changes import compare_summaries
    before = {"objectives": [{"id": "a", "title": "Faster replies", "status": "on track"},
                             {"id": "b", "title": "Happier", "status": "at risk"}],
              "kpis": [_kpi(80.0, 78.0, 82.0, "September 2026")], "warnings": ["old note"]}
    after = {"objectives": [{"id": "a", "title": "Faster replies", "status": "off track"},
                            {"id": "b", "title": "Happier", "status": "at risk"},
                            {"id": "c", "title": "New one", "status": "on track"}],
             "kpis": [_kpi(70.0, 68.0, 72.0)], "warnings": ["old note", "new note"]}
    changes = compare_summaries(after, before, previous_run_id="r1", previous_as_of="2026-09-30")
    assert [(c.id, c.before, c.after, c.worse) for c in changes.status_changes] == [
        ("a", "on track", "off track", True), ("c", "", "on track", False)]
    assert changes.new_warnings == ["new note"] and changes.significant_kpis[0].kpi == "csat"
    assert changes.headline() == ("Since the last run (r1, as of 2026-09-30): 2 objectives changed status "
                                  "(1 worse); 1 KPI changed significantly; 1 new data note.")
    assert not changes.unchanged
    same = compare_summaries(after, after, previous_run_id="r2", previous_as_of="2026-10-31")
    assert same.unchanged and "(October 2026) is unchanged since the last run (r2" in same.headline()
    first = compare_summaries(after, None)
    assert first.first_run and first.headline().startswith("First run")
    missing = compare_summaries(after, None, previous_run_id="r1")
    assert not missing.first_run and "not in the last run" in missing.headline()


def test_changes_block_is_escaped_and_at_the_top_of_the_page():
    from helpers.reports.changes import compare_summaries
    before = {"objectives": [{"id": "a", "title": "<b>Fast</b>", "status": "on track"}], "kpis": []}
    after = {"objectives": [{"id": "a", "title": "<b>Fast</b>", "status": "off track"}], "kpis": []}
    changes = compare_summaries(after, before, previous_run_id="r1", previous_as_of="2026-09-30")
    page = export.render_report(_executed_like_notebook(), title="T", department="D", as_of="a", freshness="f",
                                run_id="r", fingerprint="x", company="C", notebook="n", changes=changes)
    assert "&lt;b&gt;Fast&lt;/b&gt;: on track \u2192 off track." in page and "<b>Fast" not in page
    assert page.index('class="kit-changes') < page.index('<main class="report-body">')


def test_reader_tables_get_cell_labels_for_the_phone_layout():
    """On a 390 px phone the reader tables were wider than the screen (status off-screen): each body cell now
    carries its column header, and the stylesheet shows each row as a card of "header: value" lines."""
    from helpers.formatting import reader_table
    import pandas as pd
    table = reader_table(pd.DataFrame({"objective": ["Reply <fast>", "Happier"], "status": ["on track", "at risk"],
                                       "p_met": [0.91, 0.4]}), labels={"p_met": "Chance & odds"})
    labelled = export.label_table_cells("<p>before</p>" + table + "<table><tr><td>plain</td></tr></table>")
    assert labelled.count('class="kit-table kit-stack"') == 1
    assert labelled.count('data-label="Status"') == 2 and labelled.count('data-label="Chance &amp; odds"') == 2
    assert '<td data-label="Objective">Reply &lt;fast&gt;</td>' in labelled
    assert "<table><tr><td>plain</td></tr></table>" in labelled  # other tables untouched
    css = export.kit_css()
    assert re.search(r"table\.kit-stack td::before \{ content: attr\(data-label\)", css)


def test_index_portal_rolls_up_orders_by_attention_and_explains_failures(tmp_path):
    def report(name, dept, counts, status="ok", error=None, changes=None):
        return {"name": name, "kind": "department" if dept else "company", "title": f"{dept or name} report",
                "department_name": dept, "html": f"{name}.html", "status": status, "status_counts": counts,
                "error": error, "headline": "", "look_first": "", "changes": changes}
    previous_dir = tmp_path / "r1"
    previous_dir.mkdir()
    (previous_dir / "manifest.json").write_text(json.dumps({"run_id": "r1", "as_of": "2026-09-30", "reports": [
        report("department_a", "Alpha", {"on track": 3}), report("department_b", "Beta", {"off track": 2})],
        "company_kpis": [_kpi(80.0, 78.0, 82.0, "September 2026")]}))
    manifest = {
        "run_id": "r2", "as_of": "2026-10-31", "started_at": "2026-11-02T06:00:00+00:00",
        "data": {"last_date": "2026-10-31", "fingerprint": "f" * 20, "warnings": []}, "warnings": [],
        "reports": [report("department_a", "Alpha", {"on track": 2, "at risk": 1}),
                    report("department_b", "Beta", {"on track": 1, "off track": 2},
                           changes={"headline": "Since the last run: 1 objective changed status.",
                                    "status_changes": [{"id": "x", "title": "Faster <replies>", "before": "at risk",
                                                        "after": "off track", "worse": True}]}),
                    report("department_c", "Gamma", {}, status="failed",
                           error={"name": "Kernel died", "message": "the kernel process ended while running cell 7 "
                                  "of 30", "where": "kernel died in cell 7 of 30"}),
                    report("satisfaction_drivers", "", {})],
        "company_kpis": [_kpi(70.0, 68.0, 72.0, kpi="csat", change=-10.0, change_significant=True,
                              previous_period="September 2026")],
        "changes": {"first_run": False, "previous_run_id": "r1", "previous_as_of": "2026-09-30"},
    }
    runner.write_index(tmp_path, manifest, "ACME", [{"run_id": "r1", "as_of": "2026-09-30", "failed": 0,
                                                     "path": previous_dir}])
    index = (tmp_path / "index.html").read_text()
    assert "2 of 6 objectives are off track or missed, in Beta." in index
    rows = re.findall(r'<td class="report"><a href="([a-z_]+)\.html"', index)
    assert rows == ["department_c", "department_b", "department_a", "satisfaction_drivers"]  # failed, off track
    assert "Gamma</a>: the kernel process ended while running cell 7 of 30 (kernel died in cell 7 of 30)" in index
    assert "Faster &lt;replies&gt;: at risk &rarr; off track" in index
    assert "70.0%" in index and "-10.0 points vs September 2026 (significant)" in index
    assert "Since the last run: CSAT: 70.0% in October 2026 (last run: 80.0% in September 2026): a significant " \
           "change (down" in index
    assert 'href="../r1/index.html"' in index and "3 on track" in index  # the previous run's roll-up
    assert "produced</td>" not in index
