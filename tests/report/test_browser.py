"""The HTML report in a real browser: headless Chromium loads report.html from a local server.

A page can be valid HTML and still be broken for its reader: an image that does not decode, a
table squashed to nothing, a code cell shown where only its output should be, a script error.
These tests serve a run folder built by ``levelfield run`` (shared with tests/test_notebooks.py)
on 127.0.0.1, open report.html in Chromium through the DevTools protocol, and check what the
browser actually rendered and logged. Two deliberately broken copies of the page (an image that
does not decode, a code cell left in) make sure the checks fail when they should.

Chromium is Debian's ``chromium`` package (``apt-get install -y chromium``). Without it the tests
are skipped, except under CI (the ``CI`` environment variable set), where they fail.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.test_notebooks import built_run

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
VIEWPORT = {"width": 1000, "height": 900}
# Selectors of the parts of a notebook cell that hold code (nbconvert's classic and JupyterLab
# templates); none may reach the reader.
CODE_SELECTORS = ".input, .input_area, .input_prompt, .prompt, .highlight, .jp-InputArea, " \
                 ".jp-InputPrompt, .jp-CodeMirrorEditor, .jp-Cell-inputWrapper"
# What the page is asked once loaded (in the page, as JavaScript)
PAGE_FACTS = """
(() => {
  const box = el => { const r = el.getBoundingClientRect();
                      return {x: r.left + window.scrollX, y: r.top + window.scrollY,
                              width: r.width, height: r.height}; };
  return {
    title: document.title,
    text: document.body.innerText,
    headings: [...document.querySelectorAll('main h1')].map(h => h.innerText.trim()),
    images: [...document.images].map(img => ({src: img.src.slice(0, 40), complete: img.complete,
                                             naturalWidth: img.naturalWidth,
                                             naturalHeight: img.naturalHeight, box: box(img)})),
    tables: [...document.querySelectorAll('main table')].map(t => ({rows: t.rows.length,
                                                                    box: box(t)})),
    codeElements: document.querySelectorAll(CODE_SELECTORS).length,
    scripts: document.scripts.length,
    height: document.documentElement.scrollHeight,
  };
})()
""".replace("CODE_SELECTORS", json.dumps(CODE_SELECTORS))


# ---------------------------------------------------------------------------------------------
# Chromium through the DevTools protocol
# ---------------------------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _require_browser() -> str:
    """The Chromium binary; skip (fail under CI) when it or the protocol client is missing."""
    binary = _chromium()
    missing = []
    if binary is None:
        missing.append("Chromium (apt-get install -y chromium chromium-driver)")
    try:
        import websocket  # noqa: F401  (websocket-client, installed with jupyter-server)
    except ImportError:
        missing.append("the websocket-client package")
    if missing:
        message = f"the browser test needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    assert binary is not None
    return binary


@dataclass
class Loaded:
    """What the browser made of a page: facts read from the DOM, the log, a screenshot."""

    facts: dict[str, Any]
    errors: list[str]
    screenshot: bytes
    image_shots: list[bytes] = field(default_factory=list)


class DevTools:
    """A minimal DevTools-protocol session with one page of a headless Chromium."""

    def __init__(self, binary: str, profile: Path) -> None:
        import websocket

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = self._port(profile)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            target = json.load(response)
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30,
                                                  suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def _port(self, profile: Path, timeout: float = 30.0) -> int:
        """Chromium writes the port it chose to DevToolsActivePort in its profile folder."""
        marker = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with code {self.process.returncode}")
            if marker.is_file():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.05)
        raise TimeoutError("Chromium did not open its DevTools port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(f"no {event} within {timeout} s")

    def load(self, url: str) -> Loaded:
        self.events.clear()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT["width"],
                  height=VIEWPORT["height"], deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        facts = self.call("Runtime.evaluate", expression=PAGE_FACTS, returnByValue=True)
        facts = facts["result"]["value"]
        height = min(int(facts["height"]), 20000)
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height, "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        images = []
        for image in facts["images"][:3]:  # the rendered pixels of the first figures
            box = image["box"]
            if box["width"] >= 1 and box["height"] >= 1:
                region = {**{k: box[k] for k in ("x", "y", "width", "height")}, "scale": 1}
                images.append(base64.b64decode(self.call(
                    "Page.captureScreenshot", format="png", clip=region,
                    captureBeyondViewport=True)["data"]))
        return Loaded(facts, _errors(self.events), base64.b64decode(shot["data"]), images)

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Errors the page raised or logged: uncaught exceptions, console errors, failed loads.

    The browser's own request for /favicon.ico (the report has none) is not the page's fault.
    """
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in events if e.get("method") == "Network.requestWillBeSent"}
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        url = urls.get(params.get("requestId"), "")
        if url.endswith("/favicon.ico"):
            continue
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(f"uncaught: {details.get('text')} {details.get('exception', {}).get('description', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                 for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            if not str(entry.get("url", "")).endswith("/favicon.ico"):  # the browser's own request
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"network: {params.get('errorText')} {url}".strip())
        elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
            errors.append(f"network: HTTP {params['response']['status']} {url}")
    return errors


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port for the block; yield its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---------------------------------------------------------------------------------------------
# What a reader must see
# ---------------------------------------------------------------------------------------------


def code_lines(notebooks: list[Path]) -> list[str]:
    """Lines of code of the notebooks' code cells, long enough not to occur in prose by chance."""
    import nbformat

    lines = set()
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                lines.update(line.strip() for line in cell.source.splitlines() if len(line.strip()) >= 12)
    return sorted(lines)


def share_not_white(png: bytes) -> float:
    """Share of the pixels that are not (near) white."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[245:]) / sum(histogram)


def problems(page: Loaded, *, code: list[str], headings: list[str]) -> list[str]:
    """Everything wrong with a loaded report, in words; an empty list for a good page."""
    facts = page.facts
    found = [f"the browser logged an error: {error}" for error in page.errors]
    if facts["scripts"]:
        found.append(f"the page has {facts['scripts']} script element(s); it should have none")
    missing = [h for h in headings if h not in facts["headings"]]
    if missing:
        found.append(f"sections missing: {missing}")
    if not facts["images"]:
        found.append("the page shows no figure")
    for image in facts["images"]:
        if not image["complete"] or image["naturalWidth"] == 0 or image["naturalHeight"] == 0:
            found.append(f"image {image['src']}... did not decode")
        elif image["box"]["width"] < 100 or image["box"]["height"] < 50:
            found.append(f"image {image['src']}... is drawn too small: {image['box']}")
    if not facts["tables"]:
        found.append("the page shows no table")
    for table in facts["tables"]:
        if table["rows"] < 2 or table["box"]["width"] < 50 or table["box"]["height"] < 20:
            found.append(f"a table did not render: {table}")
    if facts["codeElements"]:
        found.append(f"{facts['codeElements']} code element(s) are visible")
    leaked = [line for line in code if line in facts["text"]]
    if leaked:
        found.append(f"code shown to the reader: {leaked[:3]}")
    if share_not_white(page.screenshot) < 0.01:
        found.append("the screenshot is blank")
    for shot in page.image_shots:
        if share_not_white(shot) < 0.01:
            found.append("a figure is drawn blank")
    return found


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[DevTools]:
    binary = _require_browser()
    session = DevTools(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    _require_browser()  # no report build when the browser is not there
    return built_run(tmp_path_factory)


@pytest.fixture(scope="module")
def expected(run_folder: Path) -> dict[str, Any]:
    import nbformat

    notebooks = sorted((run_folder / "notebooks").glob("*.ipynb"))
    headings = []
    for path in notebooks:
        first = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
        headings.append(first.lstrip("# ").strip())
    return {"code": code_lines(notebooks), "headings": headings}


@pytest.fixture(scope="module")
def loaded(browser: DevTools, run_folder: Path) -> Loaded:
    with serving(run_folder) as base:
        return browser.load(f"{base}/report.html")


def test_report_renders_in_a_browser(loaded: Loaded, run_folder: Path, expected: dict[str, Any]) -> None:
    assert problems(loaded, code=expected["code"], headings=expected["headings"]) == []
    assert loaded.facts["title"] == "Does money buy leniency?"
    # every figure of every notebook is on the page: one <img> per image output
    import nbformat

    outputs = sum(
        "image/png" in output.get("data", {})
        for path in sorted((run_folder / "notebooks").glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert len(loaded.facts["images"]) == outputs >= 8
    assert loaded.facts["text"].startswith("SYNTHETIC DATA")
    # a screenshot of the page is written, for whoever wants to look
    shot = run_folder / "report-screenshot.png"
    shot.write_bytes(loaded.screenshot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert share_not_white(loaded.screenshot) > 0.02


def _broken_copy(run_folder: Path, folder: Path, change) -> Path:
    copy = folder / "run"
    copy.mkdir()
    page = (run_folder / "report.html").read_text(encoding="utf-8")
    (copy / "report.html").write_text(change(page), encoding="utf-8")
    return copy


def test_a_broken_image_is_caught(browser: DevTools, run_folder: Path, expected: dict[str, Any],
                                  tmp_path: Path) -> None:
    # the first figure's data replaced by bytes that are not a PNG
    broken = _broken_copy(run_folder, tmp_path, lambda page: re.sub(
        r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,bm90IGEgcG5n"', page, count=1))
    with serving(broken) as base:
        page = browser.load(f"{base}/report.html")
    found = problems(page, code=expected["code"], headings=expected["headings"])
    assert any("did not decode" in problem for problem in found), found


def test_a_leaked_code_cell_is_caught(browser: DevTools, run_folder: Path, expected: dict[str, Any],
                                      tmp_path: Path) -> None:
    # a code cell as nbconvert renders one when the input is not hidden
    line = next(line for line in expected["code"] if line.startswith("plots."))
    cell = ('<div class="cell border-box-sizing code_cell rendered"><div class="input">'
            f'<div class="inner_cell"><div class="input_area"><div class="highlight"><pre>{line}'
            "</pre></div></div></div></div></div>")
    broken = _broken_copy(run_folder, tmp_path, lambda page: page.replace("<main>", "<main>" + cell, 1))
    with serving(broken) as base:
        page = browser.load(f"{base}/report.html")
    found = problems(page, code=expected["code"], headings=expected["headings"])
    assert any("code element(s) are visible" in problem for problem in found), found
    assert any("code shown to the reader" in problem for problem in found), found


def test_script_errors_and_failed_requests_are_caught(browser: DevTools, run_folder: Path,
                                                     expected: dict[str, Any], tmp_path: Path) -> None:
    broken = _broken_copy(run_folder, tmp_path, lambda page: page.replace(
        "</body>", '<link rel="stylesheet" href="missing.css"><script>undefinedFunction();</script></body>', 1))
    with serving(broken) as base:
        page = browser.load(f"{base}/report.html")
    found = problems(page, code=expected["code"], headings=expected["headings"])
    assert any("uncaught" in problem and "undefinedFunction" in problem for problem in found), found
    assert any("HTTP 404" in problem and "missing.css" in problem for problem in found), found
    assert any("script element" in problem for problem in found), found
