"""Safe text on stakeholder pages (issue 16, item 6): hostile params and data never become a live link or an
external image. Two layers: free text is escaped where it enters Markdown (helpers.formatting.md_escape, in each
report module), and every finished page is sanitised (helpers.reports.safe_html). The end-to-end test runs the
real runner on hostile params and data and sweeps every page of the run."""
from __future__ import annotations

import posixpath
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pandas as pd
import pytest
import yaml

from helpers.reports import export
from helpers.reports.safe_html import is_embedded_image, is_safe_href, sanitize_html

LINK = "[click](javascript:alert(3))"
IMAGE = "![x](http://host/x.png)"
RAW = "<img src=http://host/y.png onerror=alert(4)><a href='javascript:alert(5)'>raw</a>"
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "poster", "background", "xlink:href", "data",
                  "srcdoc", "ping", "cite", "longdesc"}
SCRIPT_SCHEME = re.compile(r"(?:java|vb|live)script:|data:text/html")


def payload(tag: str) -> str:
    return f"{tag} {LINK} {IMAGE} {RAW}"


class PageSweep(HTMLParser):
    """Every attribute problem of a page, and its visible text (outside style/script)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._hidden += 1
        for name, value in attrs:
            value = value or ""
            browser_view = re.sub(r"[\x00-\x20\x7f]", "", value).lower()
            if SCRIPT_SCHEME.search(browser_view):
                self.problems.append(("script scheme", f"<{tag} {name}>", value[:100]))
            if name.startswith("on"):
                self.problems.append(("event handler", f"<{tag} {name}>", value[:100]))
            if name in URL_ATTRIBUTES and not (
                    browser_view.startswith("#")
                    or (tag == "img" and name == "src" and browser_view.startswith("data:image/"))
                    or (tag == "a" and name == "href" and not re.match(r"^([^/?#]*:|/|\\)", browser_view)
                        and not stays_out(browser_view))):
                self.problems.append(("external or unsafe URL", f"<{tag} {name}>", value[:100]))
        if tag == "img" and not (dict(attrs).get("src") or "").startswith("data:image/"):
            self.problems.append(("img without an embedded image", "<img>", str(dict(attrs))[:100]))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def stays_out(relative: str) -> bool:
    """Whether a relative URL leaves the output folder (more than one level above the page)."""
    path = posixpath.normpath(unquote(relative).split("#")[0].split("?")[0] or ".")
    return path == ".." or path.startswith("../..") or "\\" in unquote(relative)


def sweep(page: str) -> PageSweep:
    parser = PageSweep()
    parser.feed(page)
    parser.close()
    return parser


def visible_text(parser: PageSweep) -> str:
    return " ".join(" ".join(parser.text).split())


# ------------------------------------------------------------------------------------- the sanitiser alone
HOSTILE_HTML = [
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href=" \x01javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>',
    '<a href="http://host/">x</a>',
    '<a href="//host/x">x</a>',
    '<a href="\\\\host\\x">x</a>',
    '<a href="/etc/passwd">x</a>',
    '<a href="../../x.html">x</a>',
    '<a href="%2e%2e/%2E%2E/x.html">x</a>',
    '<a href="a/../../../x.html">x</a>',
    '<a href="a/%5c%5chost">x</a>',
    '<a/href="javascript:alert(1)">x</a>',
    '<a href=javascript:alert(1)>x</a>',
    '<img src="http://host/x.png">',
    '<img src="x.png">',
    '<img src="data:text/html,<script>alert(1)</script>">',
    '<img src="data:image/png;base64,AAAA" onerror="alert(1)">',
    '<img srcset="http://host/x.png 2x" src="data:image/png;base64,AAAA">',
    '<video poster="http://host/p.png"></video>',
    '<iframe srcdoc="<script>alert(1)</script>" src="http://host/"></iframe>',
    '<form action="javascript:alert(1)"><button formaction="http://host/">b</button></form>',
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a><image href="http://host/x.png"/></svg>',
    '<svg><animate attributeName="href" to="javascript:alert(1)"/></svg>',
    '<meta http-equiv="refresh" content="0;url=http://host/">',
    '<link rel="stylesheet" href="http://host/x.css">',
    '<base href="http://host/">',
    '<div style="background:url(http://host/x.png)">x</div>',
    '<div title="javascript:alert(1)" id="javascript:x">x</div>',
    '<!-- --!><a href="javascript:alert(1)">x</a> -->',
    '<body onload="alert(1)"><p onclick=alert(1)>x</p></body>',
    '<p>a &#x <a href="javascript:alert(1)">x</a></p>',            # a stray "&#x" must not hide the rest
    '<javascript:\x00<script><a href="javascript:alert(1)">x</a></script>',  # NUL ends no tag name
    '<script><!--<script></script><a href="javascript:alert(1)">x</a></script>',  # double-escaped script
    '<svg><style><a href="javascript:alert(1)">x</a></style></svg>',  # no raw text in foreign content
    '<![CDATA[ ]]><a href="javascript:alert(1)">x</a>',
    '<!--><a href="javascript:alert(1)">x</a>',
    '<img src==data:image/png;base64,AAAA>',
    '<img src="\x00data:image/png;base64,AAAA">',
]


@pytest.mark.parametrize("snippet", HOSTILE_HTML)
def test_sanitiser_leaves_no_script_url_and_no_external_request(snippet):
    cleaned = sanitize_html(snippet)
    assert sweep(cleaned).problems == [] or all(p[0] == "img without an embedded image"
                                                for p in sweep(cleaned).problems)
    assert "http://host" not in cleaned.replace("blocked-url(http://host", "")  # nothing points outside
    assert not re.search(r"(?i)\son\w+\s*=", cleaned)


@pytest.mark.parametrize("snippet", HOSTILE_HTML)
def test_sanitiser_output_is_safe_as_a_browser_parses_it(snippet):
    # a WHATWG parser (as browsers) reads comments, CDATA, NUL and script text differently from html.parser
    assert spec_parser_problems(sanitize_html(snippet)) == []


def test_sanitiser_keeps_safe_pages_byte_for_byte():
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><style>a{color:red}</style></head><body>'
            '<nav><a href="#section-1">One</a> <a href="index.html">All reports</a> '
            '<a href="logs/department_x.log">log</a> <a href="department_x.html#top">x</a> '
            '<a href="../2026-01-01T000000Z/index.html">previous run</a></nav>'
            '<h2 id="section-1">One &amp; two</h2><p>Text with javascript:alert(1) as text &lt;b&gt;</p>'
            '<img alt="chart" src="data:image/png;base64,iVBORw0KGgo="/>'
            '<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="svg">'
            '<table><tr><td style="padding:4px 8px">1</td></tr></table></body></html>')
    assert sanitize_html(page) == page


def test_defused_anchor_and_its_id_still_match():
    page = '<a href="#t-javascript:x">t</a><h2 id="t-javascript:x">t</h2>'
    cleaned = sanitize_html(page)
    href = re.search(r'href="#([^"]*)"', cleaned).group(1)
    assert re.search(r'id="([^"]*)"', cleaned).group(1) == href and "javascript:" not in cleaned


def test_style_elements_cannot_fetch():
    cleaned = sanitize_html("<style>@import 'http://host/x.css'; p{background:url(http://host/x.png)}</style>")
    assert "@import" not in cleaned and not re.search(r"(?<!blocked-)url\(", cleaned)


@pytest.mark.parametrize("value, ok", [("#a", True), ("index.html", True), ("logs/a.log", True),
                                       ("a.html?x=1#b", True), ("http://h/", False), ("mailto:x@y", False),
                                       ("../run-1/index.html", True), ("../../a", False), ("..", False),
                                       ("a/../../../b", False), ("/a", False), ("\\\\h\\a", False),
                                       ("a:b", False), ("%2E%2E/%2e%2e/a", False), ("", False)])
def test_safe_href_rule(value, ok):
    assert is_safe_href(value) is ok


def test_embedded_image_rule():
    assert is_embedded_image("data:image/png;base64,AAAA") and is_embedded_image(" DATA:image/svg+xml,<svg/>")
    assert not is_embedded_image("data:text/html;base64,AAAA") and not is_embedded_image("http://h/x.png")


# ------------------------------------------------------------------------ render_report on a hostile notebook
def test_render_report_of_a_hostile_notebook_is_safe_and_shows_the_text():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Page\n\n## Section {LINK}\n\n{IMAGE} {LINK}"),
                nbformat.v4.new_code_cell("x", outputs=[
                    nbformat.v4.new_output("display_data", data={"text/markdown": f"{LINK} {IMAGE} {RAW}",
                                                                 "text/plain": "x"}),
                    nbformat.v4.new_output("display_data", data={"text/html": f"<p>{RAW}</p>"}),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "x"}),
                ])]
    page = export.render_report(nb, title=payload("Title"), department=payload("Dept"), as_of="2026-01-31",
                                freshness="2026-01-31", run_id="r1", fingerprint="f" * 16,
                                company=payload("Company"), notebook="x.ipynb", warnings=[payload("Warning")])
    result = sweep(page)
    assert [p for p in result.problems if p[0] != "img without an embedded image"] == []
    text = visible_text(result)
    for tag in ("Title", "Dept", "Company", "Warning"):
        assert payload(tag) in text
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page  # embedded charts stay


# --------------------------------------------------------------------------- end to end: a real hostile run
DEPARTMENT = f"Billing {LINK}"


def hostile_data(source: Path, target: Path) -> Path:
    """A copy of the demo data whose Billing department, one segment, one team, one person's name and every
    comment carry the payloads (Markdown link and image, raw HTML, javascript: URLs)."""
    target.mkdir(parents=True)
    customers = pd.read_parquet(source / "customers.parquet")
    customers.loc[customers["segment"] == "consumer", "segment"] = payload("Segment")
    customers.to_parquet(target / "customers.parquet")
    responses = pd.read_parquet(source / "responses.parquet")
    responses.loc[responses["department"] == "Billing", "department"] = DEPARTMENT
    has_comment = responses["comment"].notna()
    responses.loc[has_comment, "comment"] = responses.loc[has_comment, "comment"] + " " + payload("Comment")
    responses.to_parquet(target / "responses.parquet")
    tickets = pd.read_parquet(source / "tickets.parquet")
    tickets.loc[tickets["department"] == "Billing", "department"] = DEPARTMENT
    tickets.loc[tickets["team"] == "Collections", "team"] = payload("Team")
    tickets.to_parquet(target / "tickets.parquet")
    org = pd.read_parquet(source / "org.parquet")
    org.loc[org["department"] == "Billing", "department"] = DEPARTMENT
    org.loc[org["team"] == "Collections", "team"] = payload("Team")
    org.loc[org["person_id"] == "billing-dir", "name"] = payload("Person")
    org.to_parquet(target / "org.parquet")
    for extra in source.glob("*.json"):
        shutil.copy(extra, target / extra.name)
    return target


def hostile_params(repo: Path, target: Path) -> Path:
    (target / "departments").mkdir(parents=True)
    report = yaml.safe_load((repo / "params" / "report.yaml").read_text())
    report["company"] = payload("Company")
    (target / "report.yaml").write_text(yaml.safe_dump(report, sort_keys=False))
    doc = yaml.safe_load((repo / "params" / "departments" / "billing.yaml").read_text())
    doc["department"] = DEPARTMENT
    for objective in doc["objectives"]:
        objective["title"] = payload("Title")
        objective["note"] = payload("Note")
        if (objective.get("filters") or {}).get("team") == "Collections":
            objective["filters"]["team"] = payload("Team")
    doc["objectives"][0]["owner"]["name"] = payload("Owner")
    (target / "departments" / "billing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, small_demo):
    from helpers.reports import runner
    from reports_support import REPO

    root = tmp_path_factory.mktemp("hostile")
    data = hostile_data(small_demo, root / "data")
    params = hostile_params(REPO, root / "params")
    messages: list[str] = []
    opts = runner.RunOptions(params=params, data=str(data), out=root / "reports", only=["billing"], workers=2,
                             progress=False)
    result = runner.run_reports(opts, echo=messages.append)
    return result, messages


@pytest.mark.slow
@pytest.mark.xdist_group("reports_e2e")
def test_hostile_run_pages_have_no_live_link_and_show_the_text(hostile_run):
    result, messages = hostile_run
    assert result.exit_code == 0, "\n".join(messages)
    pages = sorted(result.run_dir.glob("*.html"))
    assert {p.stem for p in pages} >= {"index", "department_billing", "satisfaction_drivers", "retention_forecast"}
    texts = {}
    for page in pages:
        found = sweep(page.read_text(encoding="utf-8"))
        assert found.problems == [], (page.name, found.problems[:5])
        texts[page.stem] = visible_text(found)
    # the payloads are shown as the characters they are, not dropped and not rendered
    department_page = texts["department_billing"]
    for tag in ("Title", "Note", "Team", "Company"):
        assert payload(tag) in department_page, tag
    assert DEPARTMENT in department_page and (payload("Owner") in department_page
                                              or payload("Person") in department_page)
    assert payload("Segment") in texts["retention_forecast"]
    assert DEPARTMENT in texts["satisfaction_drivers"] and payload("Company") in texts["index"]


DOM_URLS_JS = r"""(() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (/^(href|src|srcset|action|formaction|poster|background|data|xlink:href|on.*)$/i.test(a.name)
          || /(java|vb|live)script:/i.test(a.value.replace(/[\x00-\x20]/g, ''))) {
        found.push([el.tagName.toLowerCase(), a.name.toLowerCase(), a.value.slice(0, 200)]);
      }
    }
  }
  return {attributes: found, text: document.body.innerText};
})()"""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.xdist_group("reports_e2e")
def test_hostile_department_page_in_headless_chromium(hostile_run):
    """What the browser itself parsed (not our parser): no script URL, no external URL, no request."""
    from browser_check import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (run `make browser`: apt-get install chromium)")
    result, _ = hostile_run
    with Chromium(binary) as browser:
        report = browser.open(result.run_dir / "department_billing.html", facts_js=DOM_URLS_JS)
    assert report.console_errors == [] and report.external_requests == []
    for tag, name, value in report.facts["attributes"]:
        assert not name.startswith("on"), (tag, name, value)
        assert not SCRIPT_SCHEME.search(re.sub(r"[\x00-\x20]", "", value).lower()), (tag, name, value)
        if name == "src":
            assert tag == "img" and value.startswith("data:image/"), (tag, name, value)
        elif name == "href":
            assert value.startswith("#") or (tag == "a" and not re.match(r"^([^/?#]*:|/|\\)", value)
                                             and not stays_out(value)), (tag, name, value)
        else:
            raise AssertionError(f"unexpected URL attribute {tag} {name}={value!r}")
    assert payload("Title") in " ".join(report.facts["text"].split())


# ------------------------------------------------------------------------------ random hostile HTML (seeded)
from hypothesis import given, settings, HealthCheck, strategies as st  # noqa: E402

_PIECES = ["<a href=", "<img src=", "<svg><a xlink:href=", "<form action=", "<p onclick=", "<div style=", "<style>",
           "</style>", "<!--", "-->", "--!>", "<![CDATA[", "]]>", "<script>", "</script>", ">", "/>", "'", '"', " ",
           "\t", "\n", "\x00", "\x01", "javascript:", "JaVa\tScRiPt:", "java&#x09;script:", "&#106;avascript:",
           "vbscript:", "data:text/html,", "data:image/png;base64,AAAA", "http://host/x", "//host/x", "\\\\host",
           "../", "#top", "index.html", "alert(1)", "url(http://host/y)", "@import 'http://host/z';", "&amp;",
           "&lt;", "&", "=", "x", "<", "</a>", "<base href=", "<meta http-equiv=refresh content=", "<iframe srcdoc="]


def spec_parser_problems(page: str) -> list[tuple[str, str, str]]:
    """The attribute problems as a WHATWG (browser-like) parser sees the page: html5lib, vendored by bleach."""
    html5lib = pytest.importorskip("bleach._vendor.html5lib")
    problems = []
    for element in html5lib.parse(page, treebuilder="etree", namespaceHTMLElements=False).iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.split("}")[-1]
        for raw_name, value in element.attrib.items():
            name = raw_name.split("}")[-1] if not raw_name.startswith("{http://www.w3.org/1999/xlink}") \
                else "xlink:href"
            view = re.sub(r"[\x00-\x20\x7f]", "", value or "").lower()
            if name.startswith("on") or SCRIPT_SCHEME.search(view):
                problems.append((tag, name, value))
            elif name in URL_ATTRIBUTES and not (
                    view.startswith("#") or (tag == "img" and name == "src" and view.startswith("data:image/"))
                    or (tag == "a" and name == "href" and not re.match(r"^([^/?#]*:|/|\\)", view)
                        and not stays_out(view))):
                problems.append((tag, name, value))
    return problems


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join))
def test_random_hostile_html_is_always_made_safe(snippet):
    cleaned = sanitize_html(snippet)
    problems = [p for p in sweep(cleaned).problems if p[0] != "img without an embedded image"]
    assert problems == [], (snippet, cleaned, problems)
    assert spec_parser_problems(cleaned) == [], (snippet, cleaned)  # what a browser's parser sees, too


# ------------------------------------------------------------------ free text on charts (matplotlib mathtext)
MATH_TEXT = ["Cut $x^$ cost", r"a $\frac{ b$", "Save $5 and $10"]


@pytest.mark.parametrize("text", MATH_TEXT)
def test_chart_text_with_dollars_renders_as_written(text, tmp_path):
    """A "$" in an objective title or owner name started matplotlib mathtext: "$x^$" crashed the department
    report's chart (ValueError while saving the PNG), "$5 and $10" turned into italic math."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.charts import cascade_tree, kpi_trend

    series = pd.DataFrame({"period": pd.date_range("2026-01-01", periods=4, freq="MS"),
                           "value": [1.0, 2.0, 3.0, 4.0], "ci_low": [0.5] * 4, "ci_high": [4.5] * 4})
    fig, (left, right) = plt.subplots(1, 2)
    kpi_trend(series, target=5.0, title=f"{text} - {text}", ax=left)
    tree = pd.DataFrame({"id": ["a", "b"], "parent": [None, "a"], "level": [0, 1], "title": [text, "child"],
                         "owner": ["owner", text], "status": ["on track", "at risk"]})
    cascade_tree(tree, ax=right)
    fig.savefig(tmp_path / "chart.png")  # raised ValueError for unbalanced mathtext
    fig.canvas.draw()
    from matplotlib.text import Text
    shown = [t.get_text() for t in fig.findobj(Text) if "$" in t.get_text()]
    plt.close(fig)
    # every text on the figure, wherever the charts put it (axis title, figure title, tree boxes that hold
    # several lines): the text is shown (at least the tree's title and owner) and every "$" in it is escaped
    assert sum(s.count("$") for s in shown) >= 2 * text.count("$")
    assert all(s.count("$") == s.count("\\$") for s in shown)  # no mathtext left
