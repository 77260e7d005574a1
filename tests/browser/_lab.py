"""JupyterLab on a loopback port and Debian's Chromium driven by Playwright, shared by the browser tests.

`lab` (a session fixture in conftest) starts one JupyterLab for the whole run; a test writes its notebook
into `lab.work` (`lab.write(name, nb)`) and opens it with the `browser` fixture (`Browser.open(name)`).
Screenshots go to artifacts/browser/.
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
from collections.abc import Iterator
from dataclasses import dataclass
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Lab:
    base: str  # http://127.0.0.1:PORT
    chromium: str
    work: Path  # the server's root dir: notebooks written here can be opened

    def write(self, name: str, nb: nbformat.NotebookNode) -> Path:
        """Save `nb` as <work>/<name>.ipynb with its outputs cleared."""
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        path = self.work / f"{name}.ipynb"
        nbformat.write(nb, path)
        return path

    def cells(self, name: str, sources: list[str]) -> Path:
        """Save a python3 notebook of these code cells as <work>/<name>.ipynb."""
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        return self.write(name, nb)

    def tutorial(self, name: str, *, first: str | None = None, last: str | None = None) -> Path:
        """Copy notebooks/<name>.ipynb into the lab, optionally with a code cell added first/last."""
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        if first:
            nb.cells.insert(0, nbformat.v4.new_code_cell(first))
        if last:
            nb.cells.append(nbformat.v4.new_code_cell(last))
        return self.write(name, nb)

    def api(self, method: str, path: str) -> object:
        """Call the Jupyter server's REST API (e.g. ("GET", "/api/sessions"), ("DELETE", "/api/kernels/ID"))."""
        req = urllib.request.Request(f"{self.base}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None


def start_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _need_service("Chromium", "install Debian's chromium (apt-get install chromium)")
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        _need_service("JupyterLab/Playwright", f"pip install -e '.[dev]' ({exc})")
    assert chromium is not None
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
    port = _free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "COFFEE_NB_DATA_DIR": str(home / "coffee_nb"),
        "COFFEE_NB_SANDBOX_LATENCY_SCALE": "8",  # slow enough that streaming is visible
        "COFFEE_NB_WARM": "1",  # as a user's kernel: %load_ext warms up in the background (unit tests turn it off)
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
    yield Lab(base, chromium, work)
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


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
    def __init__(self, lab: Lab) -> None:
        base, chromium = lab.base, lab.chromium
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
