"""Open a local HTML file in headless Chromium and report what a stakeholder's browser would see.

Uses the Chrome DevTools Protocol (``--remote-debugging-port`` + websocket-client, which comes with Jupyter):
console errors and uncaught exceptions (``Runtime``/``Log`` domains), every network request
(``Network.requestWillBeSent``), a screenshot (``Page.captureScreenshot``) and DOM facts from
``Runtime.evaluate``. Shared by tests/test_browser.py and tests/test_safe_output.py.

:data:`READER_CHECKS_JS` collects what a stakeholder would see wrong on a page (font, first screen, tables
wider than a phone, leaked code names, paths and placeholders, images without a real description);
:func:`reader_problems` turns those facts into a list of plain problems, one per failed check.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
                  "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    screenshot: Path | None = None
    fonts: list[str] = field(default_factory=list)  # fonts the browser actually used for the body's text

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]


class Chromium:
    """One headless Chromium with a fresh profile; ``open()`` pages one after another."""

    def __init__(self, binary: str):
        self.binary = binary
        self.profile = tempfile.TemporaryDirectory(prefix="kit-chromium-", ignore_cleanup_errors=True)
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line or "")
            if m:
                self.port = int(m.group(1))
                break
            if not line and self.proc.poll() is not None:
                break
        if self.port is None:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        # drain stderr so chromium never blocks on a full pipe
        import threading
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def _page_ws(self) -> str:
        for _ in range(50):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("no page target in chromium")

    def open(self, path: Path, *, width: int = 1280, height: int = 900, mobile: bool = False,
             screenshot: Path | None = None, facts_js: str = "({})", settle: float = 0.5,
             font_selector: str | None = None) -> PageReport:
        """Load ``path`` at the given viewport and report console errors, requests, ``facts_js``'s value, a
        screenshot and (``font_selector``) the platform fonts used to draw that element's text."""
        import websocket
        url = Path(path).resolve().as_uri()
        report = PageReport(url=url)
        ws = websocket.create_connection(self._page_ws(), timeout=30, suppress_origin=True)
        counter = iter(range(1, 1_000_000))

        def send(method, **params):
            msg_id = next(counter)
            ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == msg_id:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
                handle(msg)

        def handle(msg):
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                report.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                      for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                report.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                report.console_errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                report.requests.append(params["request"]["url"])
            elif method == "Page.loadEventFired":
                state["loaded"] = True

        state = {"loaded": False}
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                send(f"{domain}.enable")
            send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                 mobile=mobile)
            send("Page.navigate", url=url)
            deadline = time.monotonic() + 30
            ws.settimeout(0.2)
            settle_until = None
            while time.monotonic() < deadline:
                try:
                    handle(json.loads(ws.recv()))
                except websocket.WebSocketTimeoutException:
                    pass
                if state["loaded"] and settle_until is None:
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() > settle_until:
                    break
            ws.settimeout(30)
            result = send("Runtime.evaluate", expression=facts_js, returnByValue=True)
            report.facts = result.get("result", {}).get("value", {}) or {}
            if font_selector:
                send("DOM.enable")
                send("CSS.enable")
                root = send("DOM.getDocument", depth=1)["root"]["nodeId"]
                node = send("DOM.querySelector", nodeId=root, selector=font_selector).get("nodeId")
                if node:
                    fonts = send("CSS.getPlatformFontsForNode", nodeId=node).get("fonts", [])
                    report.fonts = [f.get("familyName", "") for f in fonts]
            if screenshot is not None:
                shot = send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                report.screenshot = screenshot
        finally:
            ws.close()
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # chromium's helper processes may still write into the profile for a moment after the browser exits
        for _ in range(20):
            shutil.rmtree(self.profile.name, ignore_errors=True)
            if not os.path.exists(self.profile.name):
                break
            time.sleep(0.25)
        self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# DOM facts checked on every stakeholder page
PAGE_FACTS_JS = r"""(() => {
  const vis = el => { if (!el) return false; const r = el.getBoundingClientRect();
                      const s = getComputedStyle(el);
                      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const table = document.getElementById('status-table');
  return {
    title: document.title,
    statusTableVisible: vis(table),
    statusRows: table ? table.tBodies[0].rows.length : 0,
    codeCells: document.querySelectorAll('.input, .input_area, .jp-InputArea, .jp-InputPrompt, .prompt, .highlight, .celltag_parameters, .celltag_injected-parameters').length,
    scripts: document.scripts.length,
    images: document.images.length,
    brokenImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
    horizontalOverflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    tocLinks: document.querySelectorAll('nav.toc a').length,
    footer: (document.querySelector('footer') || {}).textContent || '',
    bodyText: document.body.innerText.slice(0, 20000),
  };
})()"""


# what a stakeholder would see wrong on a page; every rule of issue 11's browser test
STATUS_COUNTS_SELECTOR = "#status-counts, .status-counts, .kit-status-counts"
KPI_TILE_SELECTOR = ".kpi-tile, .kit-tile"
INTENDED_FONT = "system-ui"  # the first family of kit.css's body font (a sans-serif stack)
READER_CHECKS_JS = r"""(() => {
  const inViewport = sel => { const el = document.querySelector(sel); if (!el) return null;
    const r = el.getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && r.top < window.innerHeight && r.left < window.innerWidth; };
  const label = t => ((t.caption && t.caption.textContent) || (t.tHead && t.tHead.textContent)
                      || t.textContent).replace(/\s+/g, ' ').trim().slice(0, 80);
  // the layout viewport (390 px with width=device-width): a phone browser zooms out to show wide content,
  // which makes innerWidth grow with the very overflow this looks for
  const vw = document.documentElement.clientWidth;
  const wide = Array.from(document.querySelectorAll('table')).filter(t => {
    const r = t.getBoundingClientRect(); return r.width > 0 && (r.right > vw + 1 || r.left < -1); });
  const headers = Array.from(document.querySelectorAll('th')).map(th => th.textContent.trim())
                  .filter(t => /^[a-z0-9]+(_[a-z0-9]+)+$/.test(t));
  const imgs = Array.from(document.images).map(i => (i.getAttribute('alt') || '').trim());
  return {
    bodyFontFamily: getComputedStyle(document.body).fontFamily,
    statusCountsInFirstScreen: inViewport(%(status)s),
    kpiTileInFirstScreen: inViewport(%(tile)s),
    wideTables: wide.map(label),
    viewportWidth: vw,
    snakeCaseHeaders: Array.from(new Set(headers)).slice(0, 20),
    altTexts: imgs,
    text: document.body.innerText + '\n' + document.body.textContent,
  };
})()""" % {"status": repr(STATUS_COUNTS_SELECTOR), "tile": repr(KPI_TILE_SELECTOR)}

# text that must never reach a reader (issue 11): code objects, pandas placeholders and truncation
LEAKS = [("PosixPath", re.compile(r"PosixPath")), ("<IPython", re.compile(r"<IPython")),
         ("Unnamed", re.compile(r"\bUnnamed\b")), ("NaN", re.compile(r"\bNaN\b")),
         ("rows x", re.compile(r"\d+\s+rows\s+[x\u00d7]\s+\d+")), ("...", re.compile(r"\.\.\.")),
         ("absolute path", re.compile(r"(?<![\w.:/])/(?:home|root|tmp|usr|var|srv|work|etc|opt|mnt|Users|private)"
                                      r"/[^\s'\"<>]+|\b[A-Z]:\\[^\s'\"<>]+"))]
GENERIC_ALT = {"", "no description has been provided for this image", "chart", "figure", "image", "plot",
               "graph", "png", "<figure>"}


def reader_problems(report: PageReport, *, first_screen: bool) -> list[str]:
    """Every reader-facing rule a page breaks, as plain sentences (empty list: the page passes)."""
    facts = report.facts
    problems = []
    family = facts.get("bodyFontFamily", "")
    if not family.replace('"', "").strip().startswith(INTENDED_FONT):
        problems.append(f"body font-family is {family!r}, not the kit's sans-serif stack (starting with "
                        f"{INTENDED_FONT})")
    used = [f for f in report.fonts if f]
    if used and all(re.search(r"serif", f, re.I) and not re.search(r"sans", f, re.I) for f in used):
        problems.append(f"the body text is drawn in a serif font ({', '.join(used)})")
    if first_screen:
        if not facts.get("statusCountsInFirstScreen"):
            problems.append(f"status counts ({STATUS_COUNTS_SELECTOR}) are not inside the first viewport")
        if not facts.get("kpiTileInFirstScreen"):
            problems.append(f"no KPI tile ({KPI_TILE_SELECTOR}) inside the first viewport")
    if facts.get("wideTables"):
        problems.append(f"{len(facts['wideTables'])} table(s) wider than the {facts.get('viewportWidth')} px "
                        f"viewport: {facts['wideTables'][:3]}")
    text = facts.get("text", "")
    for name, pattern in LEAKS:
        m = pattern.search(text)
        if m:
            around = text[max(0, m.start() - 60):m.end() + 60].replace("\n", " ")
            problems.append(f"{name!r} in the text: ...{around}...")
    if facts.get("snakeCaseHeaders"):
        problems.append(f"raw snake_case column headers: {facts['snakeCaseHeaders'][:8]}")
    bad_alt = [a for a in facts.get("altTexts", []) if a.lower() in GENERIC_ALT or len(a) < 12]
    if bad_alt:
        problems.append(f"{len(bad_alt)} of {len(facts.get('altTexts', []))} images without a meaningful alt "
                        f"text (e.g. {bad_alt[0]!r})")
    if report.external_requests:
        problems.append(f"external requests: {report.external_requests[:3]}")
    if report.console_errors:
        problems.append(f"console errors: {report.console_errors[:3]}")
    return problems
