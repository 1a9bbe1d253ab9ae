"""The company-wide pages (drivers and retention) as a CX vice-president reads them, in headless Chromium.

A run of the company reports only (a params folder without department files) on the small demo; each page is
opened at 1366x768 and 390x844: the reader checks of tests/browser_check.py (sans-serif font, no table wider than
the phone, no NaN/PosixPath/rows x/.../snake_case/absolute paths, meaningful alt texts, no external request),
plus what these pages promise: "In plain words" starts inside the first laptop screen, holds at most six findings,
each with a 95% interval, and the numbers of its first findings are printed the same in the tables below.
Screenshots are saved in the test's output folder (printed). Skipped when chromium is not installed.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from browser_check import READER_CHECKS_JS, reader_problems
from helpers.reports import runner

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("company_pages")]
ROOT = Path(__file__).resolve().parents[1]
PAGES = ("satisfaction_drivers", "retention_forecast")
VIEWPORTS = {"laptop": (1366, 768, False), "phone": (390, 844, True)}

FACTS_JS = r"""(() => {
  const heads = Array.from(document.querySelectorAll('h2'));
  const plain = heads.find(h => h.textContent.trim().startsWith('In plain words'));
  let items = [];
  if (plain) {
    const list = Array.from(document.querySelectorAll('ul')).find(
      u => plain.compareDocumentPosition(u) & Node.DOCUMENT_POSITION_FOLLOWING);
    if (list) items = Array.from(list.children).map(li => li.innerText);
  }
  return {plainTop: plain ? plain.getBoundingClientRect().top : null, findings: items,
          text: document.body.innerText};
})()"""


@pytest.fixture(scope="module")
def company_run(small_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("company_pages")
    params = root / "params"
    (params / "departments").mkdir(parents=True)
    shutil.copy(ROOT / "params" / "report.yaml", params / "report.yaml")
    opts = runner.RunOptions(params=params, data=str(small_demo), out=root / "reports", workers=2, progress=False)
    result = runner.run_reports(opts, echo=lambda *_: None)
    run_dir = Path(result.run_dir) if hasattr(result, "run_dir") else root / "reports" / "latest"
    if not (run_dir / "satisfaction_drivers.html").exists():
        run_dir = root / "reports" / "latest"
    (root / "screenshots").mkdir()
    return run_dir, root / "screenshots"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_company_page_reads_well(company_run, chromium, page, viewport):
    run_dir, shots = company_run
    width, height, mobile = VIEWPORTS[viewport]
    shot = shots / f"{page}_{width}x{height}.png"
    report = chromium.open(run_dir / f"{page}.html", width=width, height=height, mobile=mobile, screenshot=shot,
                           facts_js=READER_CHECKS_JS, font_selector="p")
    print(f"screenshot: {shot}")
    problems = reader_problems(report, first_screen=False)
    assert problems == [], f"{page} at {width}x{height}:\n  " + "\n  ".join(problems)
    text = report.facts.get("text", "")
    for word in ("min_responses", "monthly_revenue", "small_business", "mean_csat", "ci_low", "alpha_low",
                 "analysed\tTrue", "\tTrue", "\tFalse"):
        assert word not in text, word


@pytest.mark.parametrize("page", PAGES)
def test_findings_come_first_and_repeat_the_tables(company_run, chromium, page):
    run_dir, _ = company_run
    facts = chromium.open(run_dir / f"{page}.html", width=1366, height=768, facts_js=FACTS_JS).facts
    assert facts["plainTop"] is not None and 0 < facts["plainTop"] < 768, facts["plainTop"]
    findings = facts["findings"]
    assert 3 <= len(findings) <= 6, findings
    text = facts["text"]
    if page == "satisfaction_drivers":
        m = re.match(r"(\w[\w ]*) matters most for CSAT: (\d+(?:\.\d)?%) \(95% CI (.+?)\)", findings[0])
        assert m, findings[0]
        # the drivers table row: attribute, rank 1, share, interval (tab-separated in innerText)
        assert f"{m.group(1)}\t1\t{m.group(2)}\t{m.group(3)}" in text
        assert all("95% CI" in f for f in findings[:3])
    else:
        m = re.match(r"Of a new cohort, (\S+) are expected to still be customers after 12 months \(95% CI (.+?)\)",
                     findings[0])
        assert m, findings[0]
        assert f"12\t{m.group(1)}\t{m.group(2)}" in text  # the projection table's 12-month row
        m = re.search(r"lowers the monthly churn hazard by (\S+) \(95% CI (.+?)\)", findings[1])
        assert m and f"{m.group(1)} lower\t{m.group(2)}" in text  # the hazard table's CSAT row
        assert all("95%" in f for f in findings)


def test_what_satisfaction_is_worth_reads_as_its_tables(company_run, chromium):
    """Issue 15 as a CFO reads it: the drivers page prices the top drivers (sentence = table row, money in the
    params' currency, stated as an association); the retention page shows the corrected link next to the naive one
    (finding = table) and revenue at risk (finding = the all-customers row of both tables)."""
    run_dir, _ = company_run
    text = chromium.open(run_dir / "satisfaction_drivers.html", width=1366, height=768,
                         facts_js=FACTS_JS).facts["text"]
    assert "What improving a driver is worth" in text
    assert "not the result of a controlled experiment" in text and "euros (EUR)" in text
    m = re.search(r"Raising (\w[\w ]*) by half a point: (\+[\d.]+) CSAT points \(95% CI (\+[\d.]+) to (\+[\d.]+)\), "
                  r"([\d,]+) fewer customers lost over 12 months \((.+?)\) and (\+€[\d,]+) revenue \((.+?)\)", text)
    assert m, text[text.find("What improving"):][:1500]
    label, _, _, _, kept, kept_ci, revenue, revenue_ci = m.groups()
    assert f"{label}\t" in text and f"{kept} ({kept_ci})\t{revenue} ({revenue_ci})" in text
    facts = chromium.open(run_dir / "retention_forecast.html", width=1366, height=768, facts_js=FACTS_JS).facts
    text, findings = facts["text"], facts["findings"]
    assert len(findings) <= 6
    m = re.search(r"a point of true satisfaction goes with a (\S+) lower hazard \(95% CI (.+?)\)", findings[1])
    assert m, findings[1]
    assert "Corrected for rating noise: per point of true satisfaction\t" in text
    assert f"{m.group(1)} lower\t{m.group(2)}" in text
    assert "Reliability of a customer's mean CSAT (1 = no noise)\t0." in text
    risk = next((f for f in findings if "goes with dissatisfaction" in f), None)
    assert risk, findings
    m = re.match(r"(€[\d,]+) of revenue over the next 12 months goes with dissatisfaction \(95% CI (€[\d,]+) to "
                 r"(€[\d,]+),", risk)
    assert m, risk
    row = "all customers\t"
    assert text.count(f"{m.group(1)} ({m.group(2)} to {m.group(3)})") >= 2 and text.count(row) >= 2
    assert "Revenue at risk from dissatisfaction over 12 months, by department" in text
