"""End to end: render the reports on the small demo and open them in headless Chromium.

The run uses the real report notebooks in notebooks/reports (one department, plus the company-wide reports;
a company-wide notebook that has not landed yet is taken from tests/fixtures/notebooks and named in the
test output). Then index.html and the department report are opened in Debian's chromium through the
DevTools protocol (tests/browser_check.py) on a laptop and a phone viewport, and we check: no console errors,
no request to anything but the file itself and embedded data: images, the status table is visible, no code
cells or prompts, no horizontal scrolling on a phone; a screenshot of each page is saved next to the run.

Skipped only when chromium is not installed (`make browser` installs it).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from browser_check import PAGE_FACTS_JS, Chromium, find_chromium
from helpers.reports import runner
from reports_support import FIXTURE_NOTEBOOKS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("reports_e2e")]
NOTEBOOKS = ("department_report.ipynb", "satisfaction_drivers.ipynb", "retention_forecast.ipynb")


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (run `make browser`: apt-get install chromium)")
    with Chromium(binary) as browser:
        yield browser


@pytest.fixture(scope="module")
def e2e_run(small_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    substituted = []
    for name in NOTEBOOKS:
        real = REPO / "notebooks" / "reports" / name
        src = real if real.exists() else FIXTURE_NOTEBOOKS / name
        if src != real:
            substituted.append(name)
        shutil.copy(src, notebooks / name)
    opts = runner.RunOptions(params=REPO / "params", data=str(small_demo), out=root / "reports",
                             notebooks=notebooks, only=["sales"], workers=2, progress=False)
    messages: list[str] = []
    result = runner.run_reports(opts, echo=messages.append)
    print("\n".join(messages), "\nfixture stand-ins for notebooks not yet written:", substituted or "none")
    return result


def test_all_reports_render(e2e_run):
    assert e2e_run.exit_code == 0, e2e_run.failures
    for r in e2e_run.manifest["reports"]:
        assert (e2e_run.run_dir / r["html"]).stat().st_size > 2000


@pytest.mark.parametrize("page, width, mobile", [
    ("index.html", 1280, False), ("index.html", 390, True),
    ("department_sales.html", 1280, False), ("department_sales.html", 390, True),
])
def test_page_in_headless_chromium(e2e_run, chromium, page, width, mobile):
    shot = e2e_run.run_dir.parent / f"screenshot_{Path(page).stem}_{width}.png"
    report = chromium.open(e2e_run.run_dir / page, width=width, height=900, mobile=mobile, screenshot=shot,
                           facts_js=PAGE_FACTS_JS)
    facts = report.facts
    assert report.console_errors == []
    assert report.external_requests == []
    assert report.requests[0] == report.url  # the page itself was loaded, nothing else from outside
    assert facts["scripts"] == 0 and facts["codeCells"] == 0
    assert "In [" not in facts["bodyText"] and "Out[" not in facts["bodyText"]
    assert "injected" not in facts["bodyText"].lower()
    assert facts["brokenImages"] == 0
    assert not facts["horizontalOverflow"]
    assert e2e_run.run_id in facts["footer"]
    assert shot.stat().st_size > 5000
    if page == "index.html":
        assert facts["statusTableVisible"] and facts["statusRows"] == len(e2e_run.manifest["reports"])
        assert "on track" in facts["bodyText"] and "Previous runs" in facts["bodyText"]
    else:
        assert facts["images"] >= 1  # the charts are embedded
        assert facts["tocLinks"] >= 2
        assert "Sales" in facts["bodyText"] and e2e_run.manifest["as_of"] in facts["bodyText"]


def test_escaped_script_stays_text_in_the_browser(chromium, tmp_path):
    """A data comment with <script> renders as text and runs nothing, in a real browser."""
    import nbformat
    from helpers.reports import export
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show(comments)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<table><tr><td>&lt;script&gt;console.error('xss')&lt;/script&gt;</td></tr></table>"
                     "<script>console.error('xss2')</script>", "text/plain": "t"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n## Comments"), cell]
    page = tmp_path / "r.html"
    page.write_text(export.render_report(nb, title="T", department="D", as_of="2026-10-31", freshness="f",
                                         run_id="RID", fingerprint="x", company="C", notebook="n"))
    report = chromium.open(page, facts_js=PAGE_FACTS_JS)
    assert report.console_errors == []  # neither script ran
    assert "<script>console.error('xss')</script>" in report.facts["bodyText"]
    assert report.facts["scripts"] == 0
