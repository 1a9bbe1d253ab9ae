"""Open a local HTML file in headless Chromium and report what a stakeholder's browser would see.

Uses the Chrome DevTools Protocol (``--remote-debugging-port`` + websocket-client, which comes with Jupyter):
console errors and uncaught exceptions (``Runtime``/``Log`` domains), every network request
(``Network.requestWillBeSent``), a screenshot (``Page.captureScreenshot``) and DOM facts from
``Runtime.evaluate``. Shared by tests/test_browser.py and the end-to-end test in tests/test_reports_e2e.py.
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
             screenshot: Path | None = None, facts_js: str = "({})", settle: float = 0.5) -> PageReport:
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
