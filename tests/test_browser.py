"""End to end: render the reports on the small demo and open them in headless Chromium.

The run uses the real report notebooks in notebooks/reports (every department of params/departments, plus the
registered company-wide reports; a notebook that has not landed yet is taken from tests/fixtures/notebooks and
named in the test output). Every page is opened in Debian's chromium through the DevTools protocol
(tests/browser_check.py) at 1366x768 (a laptop) and 390x844 (a phone), and the reader checks of issue 11 run on
each: the body font is the kit's sans-serif stack (computed style, and the platform font actually used is not a
serif); on department pages at 1366x768 the status counts and at least one KPI tile are inside the first
viewport; no table is wider than the viewport; no ``PosixPath``, ``<IPython``, ``Unnamed``, ``NaN``, ``rows x``,
``...``, raw snake_case column headers or absolute paths in the text; every image has a meaningful alt text; no
external request and no console error. A failing page lists every rule it breaks. Screenshots of every page
and viewport are saved in the test output folder (``<pytest tmp>/e2e*/screenshots``; printed).

Skipped only when chromium is not installed (`make browser` installs it).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from browser_check import PAGE_FACTS_JS, READER_CHECKS_JS, reader_problems
from helpers.reports import registry, runner
from reports_support import FIXTURE_NOTEBOOKS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("reports_e2e")]
NOTEBOOKS = tuple(spec.notebook for spec in registry.REPORTS)
# every page of a full run: the index, one page per department params file, one per company-wide report
PAGES = (["index"] + [f"{spec.name}_{runner.safe_slug(f.stem)}" for spec in registry.reports("department")
                      for f in runner.department_files(REPO / "params" / "departments")]
         + [spec.name for spec in registry.reports("company")])
VIEWPORTS = {"laptop": (1366, 768, False), "phone": (390, 844, True)}


@pytest.fixture(scope="module")
def e2e_run(small_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    substituted = []
    for name in NOTEBOOKS:
        real = REPO / "notebooks" / "reports" / name
        src = real if real.exists() or not (FIXTURE_NOTEBOOKS / name).exists() else FIXTURE_NOTEBOOKS / name
        if src != real:
            substituted.append(name)
        shutil.copy(src, notebooks / name)
    opts = runner.RunOptions(params=REPO / "params", data=str(small_demo), out=root / "reports",
                             notebooks=notebooks, workers=2, progress=False)
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
    shot = _screenshots(e2e_run) / f"basic_{Path(page).stem}_{width}.png"
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


def _screenshots(run) -> Path:
    folder = run.run_dir.parent.parent / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_page_reads_well(e2e_run, chromium, page, viewport):
    """Issue 11's reader checks on one page at one viewport; the assertion lists every rule it breaks."""
    width, height, mobile = VIEWPORTS[viewport]
    path = e2e_run.run_dir / f"{page}.html"
    assert path.exists(), f"{page}.html was not rendered"
    shot = _screenshots(e2e_run) / f"{page}_{width}x{height}.png"
    report = chromium.open(path, width=width, height=height, mobile=mobile, screenshot=shot,
                           facts_js=READER_CHECKS_JS, font_selector="p")
    print(f"screenshot: {shot}")
    first_screen = page.startswith("department_") and viewport == "laptop"
    problems = reader_problems(report, first_screen=first_screen)
    assert shot.stat().st_size > 5000
    assert problems == [], f"{page} at {width}x{height}:\n  " + "\n  ".join(problems)


def test_reader_checks_catch_every_rule(chromium, tmp_path):
    """The checks above can fail: a page breaking every rule gets one problem per rule."""
    wide = "<table><thead><tr>" + "".join(f"<th>mean_csat_{i}</th>" for i in range(12)) + "</tr></thead><tbody><tr>" \
        + "".join(f"<td>{'x' * 12}</td>" for _ in range(12)) + "</tr></tbody></table>"
    page = tmp_path / "bad.html"
    page.write_text(  # no kit stylesheet: the browser's default serif font
        "<!DOCTYPE html><html><head><meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        "<body><p>Saved to PosixPath('/tmp/x/summary.json') &lt;IPython.core.display.HTML "
        "object&gt;, Unnamed: 0, NaN, 69 rows x 6 columns, values ... cut, data in /home/ana/data.csv</p>"
        f"{wide}<img src='data:image/png;base64,iVBORw0KGgo=' alt='No description has been provided for this "
        "image'></body></html>")
    report = chromium.open(page, width=390, height=844, mobile=True, facts_js=READER_CHECKS_JS, font_selector="p")
    problems = "\n".join(reader_problems(report, first_screen=True))
    for rule in ("body font-family", "status counts", "KPI tile", "wider than the 390 px viewport", "'PosixPath'",
                 "'<IPython'", "'Unnamed'", "'NaN'", "'rows x'", "'...'", "'absolute path'", "snake_case column",
                 "without a meaningful alt text"):
        assert rule in problems, rule
