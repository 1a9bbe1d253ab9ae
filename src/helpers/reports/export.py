"""Stakeholder HTML: an executed notebook -> one self-contained page with no code.

The body comes from nbconvert's ``HTMLExporter`` with the small ``basic`` template (no ``<script>``, no CDN:
the default ``lab`` template loads require.js and MathJax from the internet) with ``exclude_input``,
``exclude_input_prompt`` and ``exclude_output_prompt``. Before exporting, the parameters and injected-parameters
cells, cells tagged ``remove-cell``, stderr streams (warnings, log noise) and empty code cells are removed.
Images are already base64 PNG in the outputs and stay embedded. The page around it (header, table of contents,
footer, inline CSS) is rendered with Jinja2 autoescaping, and a Content-Security-Policy meta tag forbids any
external request and any script when the file is opened.

Text from data: pandas escapes cell contents in its HTML tables; ``text/plain`` outputs are escaped by nbconvert;
every ``text/html`` output additionally goes through nbconvert's ``SanitizeHTML`` (bleach), which drops
``<script>``, event-handler attributes and ``javascript:`` links while keeping tables and images.
"""
from __future__ import annotations

import copy
import datetime as _dt
import html
import re
from functools import lru_cache
from pathlib import Path

import nbformat

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
REMOVED_TAGS = {"parameters", "injected-parameters", "remove-cell", "remove_cell"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@lru_cache(maxsize=1)
def _jinja():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                              autoescape=True, trim_blocks=False, lstrip_blocks=False)


@lru_cache(maxsize=1)
def kit_css() -> str:
    """The kit's stylesheet (``templates/kit.css``), inlined into every page as written.

    It is ours, not user text, so it is not HTML-escaped (escaping turned ``"Segoe UI"`` into ``&#34;Segoe
    UI&#34;`` inside ``<style>``, the browser dropped the whole ``font`` rule and every page rendered in a serif
    font). What could end the ``<style>`` element early or load anything is refused instead."""
    css = (TEMPLATE_DIR / "kit.css").read_text(encoding="utf-8")
    bad = re.search(r"</|<!--|url\s*\(|@import", css, re.I)
    if bad:
        raise ValueError(f"templates/kit.css contains {bad.group(0)!r}: the inline stylesheet may not end the "
                         "<style> element nor load anything (pages are self-contained)")
    return css


def render_page(template: str, **context) -> str:
    """Render one of the kit's page templates (autoescaped) with the inline CSS, then make the whole page safe
    on its own (:func:`helpers.reports.safe_html.sanitize_html`: no script URL, no external href/src)."""
    from helpers.reports.safe_html import sanitize_html
    return sanitize_html(_jinja().get_template(template).render(css=kit_css(), **context))


@lru_cache(maxsize=1)
def _exporter():
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, anchor_link_text="#")
    sanitizer = SanitizeHTML()
    # keep what pandas tables and plots need; everything else (script, iframe, on* handlers) is dropped
    sanitizer.tags = sorted(set(sanitizer.tags) | {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
                                                   "colgroup", "col", "div", "span", "p", "br", "hr", "img", "h1",
                                                   "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "pre", "code",
                                                   "small", "sup", "sub", "figure", "figcaption", "details",
                                                   "summary", "style"})
    sanitizer.attributes = _allowed_attribute
    sanitizer.styles = sorted(set(sanitizer.styles) | _EXTRA_STYLES)
    exporter.register_preprocessor(sanitizer, enabled=True)
    return exporter


# layout/colour properties report tables use inline (status badges); url() values are neutralised afterwards
_EXTRA_STYLES = {"background", "background-color", "padding", "padding-left", "padding-right", "padding-top",
                 "padding-bottom", "margin", "margin-left", "margin-right", "margin-top", "margin-bottom",
                 "border", "border-left", "border-right", "border-top", "border-bottom", "border-radius",
                 "border-collapse", "border-color", "width", "min-width", "max-width", "height", "display",
                 "text-align", "vertical-align", "font-variant-numeric", "line-height", "opacity", "gap"}
_CSS_URL = re.compile(r"url\s*\(", re.I)
_COMMON_ATTRIBUTES = {"class", "id", "title", "style", "colspan", "rowspan", "align", "role", "aria-label"}


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach attribute filter: layout attributes everywhere; images only from embedded ``data:image/``."""
    if name in _COMMON_ATTRIBUTES:
        return True
    if tag == "a" and name == "href":
        return True  # bleach already drops javascript: and other unsafe protocols
    if tag == "img" and name in {"alt", "width", "height"}:
        return True
    if tag == "img" and name == "src":
        return value.startswith("data:image/")
    return False


def _is_noise(output) -> bool:
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return True
    return False


def clean_notebook(nb):
    """A copy of ``nb`` ready for stakeholders: no parameters cells, no stderr/warnings, no empty code cells."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & REMOVED_TAGS:
            continue
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not _is_noise(o)]
            if not cell.outputs:
                continue
        if cell.cell_type == "raw":
            continue
        cells.append(cell)
    nb.cells = cells
    return nb


_HEADING = re.compile(r'<h([1-3]) id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)


def toc_tree(toc: list[tuple[int, str, str]]) -> list[dict]:
    """h2 entries with their h3 entries as children (for a nested, correctly numbered contents list)."""
    tree: list[dict] = []
    for level, anchor, text in toc:
        if level == 3 and tree:
            tree[-1]["children"].append({"anchor": anchor, "text": text})
        else:
            tree.append({"anchor": anchor, "text": text, "children": []})
    return tree


def table_of_contents(body: str) -> list[tuple[int, str, str]]:
    """``[(level, anchor, text)]`` of the h2/h3 headings nbconvert rendered (they carry ids)."""
    toc = []
    for level, anchor, inner in _HEADING.findall(body):
        if level == "1":
            continue
        text = re.sub(r"<a class=\"anchor-link\".*?</a>", "", inner, flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
        toc.append((int(level), html.unescape(anchor), text))
    return toc


def notebook_title(nb, default: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return default


_KIT_TABLE = re.compile(r'<table class="kit-table"[^>]*>.*?</table>', re.S)
_HEADER_CELL = re.compile(r"<th\b[^>]*>(.*?)</th>", re.S)
_ROW = re.compile(r"<tr\b[^>]*>.*?</tr>", re.S)
_CELL_START = re.compile(r"<td\b(?![^>]*\bcolspan=)(?![^>]*\bdata-label=)")


def label_table_cells(body: str) -> str:
    """Every body cell of the kit's reader tables (``<table class="kit-table">``, from
    :func:`helpers.formatting.reader_table`) gets ``data-label="<its column header>"`` and the table the class
    ``kit-stack``: on a phone the stylesheet shows each row as a card of "header: value" lines, so no table is
    wider than the screen and no column (a status, an interval) is off-screen."""
    def one_table(m: re.Match) -> str:
        table = m.group(0)
        head_end = table.find("</thead>")
        if head_end < 0:
            return table
        headers = [html.escape(html.unescape(re.sub(r"<[^>]+>", "", h)).strip(), quote=True)
                   for h in _HEADER_CELL.findall(table[:head_end])]
        if len(headers) < 2:
            return table

        def one_row(r: re.Match) -> str:
            labels = iter(headers)
            return _CELL_START.sub(lambda c: f'{c.group(0)} data-label="{next(labels, "")}"', r.group(0))

        rows = _ROW.sub(one_row, table[head_end:])
        return table[:head_end].replace('<table class="kit-table"', '<table class="kit-table kit-stack"', 1) + rows
    return _KIT_TABLE.sub(one_table, body)


def render_report(nb, *, title: str, department: str, as_of: str, freshness: str, run_id: str,
                  fingerprint: str, company: str, notebook: str, warnings: list[str] | None = None,
                  changes=None) -> str:
    """The stakeholder page of an executed notebook (a ``NotebookNode``). ``changes``: what changed since the
    previous run (:class:`helpers.reports.changes.ReportChanges`), shown at the top of the page."""
    cleaned = clean_notebook(nb)
    body, _resources = _exporter().from_notebook_node(cleaned)
    body = _CSS_URL.sub("blocked-url(", body)  # no CSS may load anything (the CSP forbids it as well)
    # the first h1 of the notebook repeats the page title: drop it from the body
    body = re.sub(r'<h1 id="[^"]*">.*?</h1>', "", body, count=1, flags=re.S)
    body = label_table_cells(body)  # phone layout of the reader tables
    return render_page("report.html.j2", title=title, department=department, as_of=as_of, freshness=freshness,
                       run_id=run_id, fingerprint=fingerprint[:16], company=company, notebook=notebook,
                       toc=toc_tree(table_of_contents(body)), body=body, warnings=list(warnings or []),
                       changes=changes, generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))


def warm_up() -> None:
    """Build the exporter and compile the page templates once in this process (about 0.4 s at a worker's first
    page): the runner's workers call it while the run's data are being prepared. Renders a small notebook with
    the kinds of output reports have (Markdown, a stream, an HTML table, a PNG); the page is discarded."""
    import nbformat  # noqa: PLC0415

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\n## Section\n\nText with *emphasis*."),
                nbformat.v4.new_code_cell("x", outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="text\n"),
                    nbformat.v4.new_output("display_data", data={"text/html": "<table><tr><td>1</td></tr></table>",
                                                                 "text/plain": "1"}),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "fig"})])]
    render_report(nb, title="warm-up", department="", as_of="", freshness="", run_id="", fingerprint="",
                  company="", notebook="", warnings=[])


# cells papermill adds to the executed notebook; the reader's original notebook does not have them
PAPERMILL_ADDED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
_TIMEOUT_SECONDS = re.compile(r"after (\d+(?:\.\d+)?) seconds")


def original_cell_numbers(nb) -> tuple[dict[int, int], int]:
    """``({executed cell index: 1-based cell number in the original notebook}, cells in the original notebook)``.

    papermill inserts an ``injected-parameters`` cell after the parameters cell and, on an error, two marker
    cells; a reader opening the original notebook counts neither."""
    numbers: dict[int, int] = {}
    n = 0
    for index, cell in enumerate(nb.cells):
        if set(cell.get("metadata", {}).get("tags", [])) & PAPERMILL_ADDED_TAGS:
            continue
        n += 1
        numbers[index] = n
    return numbers, n


def _cell_label(nb, index: int) -> str:
    numbers, total = original_cell_numbers(nb)
    if index not in numbers:  # the injected-parameters cell itself
        return "the parameters papermill injected"
    return f"cell {numbers[index]} of {total}"


def _last_started_code_cell(nb) -> int | None:
    """Index of the last code cell papermill started (its ``start_time`` is set): the one running when the
    kernel died or the timeout struck (papermill marks even that cell 'completed')."""
    last = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("metadata", {}).get("papermill", {}) or {}).get("start_time"):
            last = index
    return last


def failure_details(nb, error: dict | None = None, timeout: float | None = None) -> dict:
    """What failed and where, from the executed notebook papermill stopped in and papermill's exception.

    ``error`` is the runner's record of the exception: ``{"name", "message", "kind"}`` with kind ``"error"``
    (an exception in a cell: papermill's ``PapermillExecutionError``), ``"dead kernel"`` (nbclient's
    ``DeadKernelError``), ``"timeout"`` (``CellTimeoutError``; the kernel was then interrupted, so the cell's
    own error output is a ``KeyboardInterrupt`` that must not be shown as the cause) or anything else. Cell
    numbers count the cells of the original notebook, as its reader does (:func:`original_cell_numbers`).
    Returns ``{}`` when the notebook gives no clue."""
    error = error or {}
    kind = error.get("kind", "")
    if kind in ("dead kernel", "timeout"):
        index = _last_started_code_cell(nb)
        if index is None:
            return {"error_name": error.get("name", "Error"), "error_message": error.get("message", ""),
                    "where": "kernel start-up (before the first cell ran)"}
        cell = nb.cells[index]
        label = _cell_label(nb, index)
        if kind == "timeout":
            m = _TIMEOUT_SECONDS.search(str(error.get("message", "")))
            seconds = m.group(1) if m else (f"{timeout:g}" if timeout else "?")
            return {"error_name": "Timeout",
                    "error_message": f"{label} ran longer than the {seconds} s allowed per cell (--timeout) and "
                                     "was stopped",
                    "cell_index": index, "failing_source": cell.source, "traceback": "",
                    "where": f"timed out after {seconds} s in {label}"}
        return {"error_name": "Kernel died",
                "error_message": f"the kernel process ended while running {label} (out of memory, a crash in a "
                                 "native library or an exit call); the output up to then is in the executed "
                                 "notebook",
                "cell_index": index, "failing_source": cell.source, "traceback": "",
                "where": f"kernel died in {label}"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = "\n".join(_ANSI.sub("", line) for line in out.get("traceback", []))
                return {"error_name": out.get("ename", "Error"), "error_message": out.get("evalue", ""),
                        "cell_index": index, "failing_source": cell.source, "traceback": tb,
                        "where": _cell_label(nb, index)}
    if _last_started_code_cell(nb) is None and error:
        return {"error_name": error.get("name", "Error"), "error_message": error.get("message", ""),
                "where": "kernel start-up (before the first cell ran)"}
    return {}


def render_error(*, title: str, department: str, as_of: str, run_id: str, company: str, notebook: str,
                 executed_notebook: str, log: str, log_tail: str, error_name: str, error_message: str,
                 where: str, failing_source: str = "", traceback: str = "") -> str:
    return render_page("error.html.j2", title=title, department=department, as_of=as_of, run_id=run_id,
                       company=company, notebook=notebook, executed_notebook=executed_notebook, log=log,
                       log_tail=log_tail, error_name=error_name, error_message=error_message, where=where,
                       failing_source=failing_source, traceback=traceback)


def read_notebook(path) -> "nbformat.NotebookNode":
    return nbformat.read(str(path), as_version=4)
