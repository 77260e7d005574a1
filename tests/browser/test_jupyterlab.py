"""A real browser: JupyterLab on a loopback port, Debian's Chromium driven by Playwright.

Runs the quickstart and the metrics tutorial cell by cell, and checks what a person would see:
streaming text appearing, budget bars with a width, the latency histogram image, the cost table rows,
and no front-end errors. Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.conftest import _need_service

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _need_service("Chromium", "install Debian's chromium (apt-get install chromium)")
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        _need_service("JupyterLab/Playwright", f"pip install -e '.[dev]' ({exc})")
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("notebooks")
    settings = home / "lab-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})  # every cell in the DOM, so the test can read all outputs
    )
    for name, setup in (("01_quickstart", QUICKSTART_SETUP), ("04_metrics", None)):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        if setup:
            nb.cells.insert(0, nbformat.v4.new_code_cell(setup))
            nb.cells.append(nbformat.v4.new_code_cell(HEALTH_CELL))
        nbformat.write(nb, work / f"{name}.ipynb")
    port = _free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "COFFEE_NB_DATA_DIR": str(home / "coffee_nb"),
        "COFFEE_NB_SANDBOX_LATENCY_SCALE": "8",  # slow enough that streaming is visible
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={work}",
            "--ServerApp.disable_check_xsrf=True",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.open_browser=False",
            "--allow-root",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    yield base, chromium
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


QUICKSTART_SETUP = """\
# test setup: a small budget with some spend already, so the budget bar has a visible width
import coffee_nb
coffee_nb.configure(daily=0.005, max_tokens=120)
coffee_nb.get_session().budget.record("0.002", model="earlier-work")"""

HEALTH_CELL = """\
# test: a model whose breaker is open, in the router health panel (with its countdown)
from coffee_nb import AutoPicker, HealthPanel, Policy
from coffee_nb.testing import ScriptedChatModel, http_error
down = ScriptedChatModel(script=[http_error(503)], model_name="down")
opens = Policy(max_retries=0, cooldown_after=1, cooldown=600, cooldown_min=600)
broken = AutoPicker(down, ["sandbox/echo"], policy=opens)
broken.invoke("trips the breaker")
HealthPanel(broken)"""

WATCH_STREAMING = """
window.__stream = [];
new MutationObserver(() => {
  document.querySelectorAll('.jp-OutputArea-output').forEach(e => {
    const t = e.innerText || '';
    if (t.includes('\u258c')) window.__stream.push(t.length);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


class Browser:
    def __init__(self, base: str, chromium: str) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        self.base = base

    def open(self, name: str) -> None:
        page = self.page
        page.goto(f"{self.base}/lab/workspaces/{name}/tree/{name}.ipynb?reset")  # one notebook per workspace
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        self.wait_idle()
        page.evaluate(WATCH_STREAMING)

    def wait_idle(self, timeout: float = 120_000) -> None:
        """The status bar says the kernel is connected and idle (before it connects it says 'No Kernel')."""
        self.page.wait_for_function(
            r"""() => Array.from(document.querySelectorAll('.jp-StatusBar-Widget'))
                 .some(e => /ipykernel\) \| Idle/.test(e.innerText))""",
            timeout=timeout,
        )

    def run_all_cells(self, shots: str) -> None:
        page = self.page
        cells = page.locator(".jp-Notebook .jp-Cell")
        n = cells.count()
        cells.nth(0).click()
        page.keyboard.press("Escape")
        for i in range(n):
            page.keyboard.press("Shift+Enter")
            # the cell just run has a number (not [*]) and the kernel is idle again
            page.wait_for_function(
                """(i) => {
                    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
                    if (!cell || !cell.classList.contains('jp-CodeCell')) return true;
                    const prompt = cell.querySelector('.jp-InputPrompt');
                    return prompt && /\\[\\d+\\]/.test(prompt.innerText);
                }""",
                arg=i,
                timeout=120_000,
            )
            self.wait_idle()
        page.wait_for_timeout(1500)  # let coalesced widget redraws land
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shots}.png"), full_page=True)

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()

    def real_errors(self) -> list[str]:
        # JupyterLab itself may log about optional services it can't reach offline; none of ours may appear
        benign = re.compile(
            r"favicon|Failed to load resource.*(404|lab/api/(news|extensions))|pypi|npmjs", re.IGNORECASE
        )
        return [e for e in self.errors if not benign.search(e)]


@pytest.fixture
def browser(lab, request):
    b = Browser(*lab)
    yield b
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    b.close()


def test_quickstart_in_jupyterlab(browser):
    browser.open("01_quickstart")
    browser.run_all_cells("quickstart")
    page = browser.page
    streamed = page.evaluate("window.__stream")
    assert len(streamed) >= 3 and max(streamed) > streamed[0], "streaming text never appeared live"
    text = page.locator(".jp-Notebook").inner_text()
    assert "You said: 'What does p95 latency mean?'" in text and "sandbox/fast ·" in text
    assert "(cache hit)" in text, text[text.find("Re-running") : text.find("Re-running") + 1500]
    assert "no call made" in text
    bars = page.locator(".widget-hprogress .progress-bar")
    assert bars.count() >= 1
    width = bars.first.evaluate("e => parseFloat(e.style.width)")
    assert 35 <= width <= 80, f"budget bar width {width}%"  # ~$0.002 of $0.005 spent
    assert page.locator("table.coffee-nb-costs tr").count() >= 3  # header, a model, total
    image = page.locator(".widget-image").first
    assert image.evaluate("e => e.naturalWidth") > 100  # the histogram PNG rendered
    board = page.locator(".jp-OutputArea-output:has(.widget-hprogress)").last
    board.scroll_into_view_if_needed()
    board.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    health = page.locator(".coffee-nb-health-open").last  # the last cell's panel: the breaker open, counting down
    assert "reopens in" in health.inner_text() and "down" in health.inner_text()
    assert browser.real_errors() == []


def test_metrics_in_jupyterlab(browser):
    browser.open("04_metrics")
    browser.run_all_cells("metrics")
    page = browser.page
    image = page.locator(".widget-image").first
    assert image.evaluate("e => e.naturalWidth") > 100
    text = page.locator(".jp-Notebook").inner_text()
    assert "coffee_nb_requests_total" in text and "datetime64[ns, UTC]" in text
    assert browser.real_errors() == []
