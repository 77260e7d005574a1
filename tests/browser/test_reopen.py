"""Saved notebooks reopen clean (issue 18): run a notebook with every live view in it, save, shut the
kernel down, reload the page — the views' last snapshots show (no "Error displaying widget"), and an
HTML export of the saved file shows the same snapshot.

Also the live run: the dashboard updates while later cells make calls (headers of the last calls,
"calls N · attempts M" as the session counts them).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)

NAME = "reopen_clean"
COUNTS = re.compile(r"calls (\d+) · attempts (\d+)")
CELLS = [
    "%load_ext coffee_nb",
    "import coffee_nb\ncoffee_nb.configure(daily=1, max_tokens=40, models=['sandbox/fast'])",
    "%%llm\nWhat is a flat white?",
    "%llm_dashboard",
    # the calls below land after the dashboard was displayed: it must pick them up live
    "%%llm --no-stream\nAnd a cortado?",
    """\
from coffee_nb import AutoPicker, HealthPanel, Policy
from coffee_nb.testing import ScriptedChatModel, http_error
down = ScriptedChatModel(script=[http_error(503)], model_name="down")
opens = Policy(max_retries=0, cooldown_after=1, cooldown=600, cooldown_min=600)
broken = AutoPicker(down, ["sandbox/echo"], policy=opens)
broken.invoke("trips the breaker")
HealthPanel(broken)""",
    "import pandas as pd\ndrinks = pd.DataFrame({'drink': ['latte', 'mocha', 'ristretto']})",
    "%%llm_map drinks -o described\nDescribe a {drink} in five words.",
    # what the session counted: the dashboard's live numbers must match
    "s = coffee_nb.get_session().metrics.snapshot()\nprint(f'session: calls {s.calls} · attempts {s.attempts}')",
]


@pytest.fixture(scope="module", autouse=True)
def notebook(lab: Lab) -> None:
    lab.cells(NAME, CELLS)


def _dashboard_checks(page) -> str:
    """What the dashboard shows, checked the same way live and after the reload; its counts line."""
    board = page.locator(".coffee-nb-dashboard").last
    board.scroll_into_view_if_needed()
    headers = board.locator("table.coffee-nb-last-calls th").all_inner_texts()
    assert headers == ["time", "model", "role", "outcome", "latency", "tokens in→out", "cost"], headers
    image = board.locator("img.coffee-nb-image").first
    assert image.evaluate("e => e.complete && e.naturalWidth") > 100  # the histogram PNG rendered
    assert board.locator("table.coffee-nb-costs tr").count() >= 3  # header, a model, total
    counts = board.locator(".coffee-nb-counts").inner_text()
    assert COUNTS.search(counts), counts
    return counts


def test_saved_notebook_reopens_with_snapshots_not_widget_errors(browser, lab):
    page = browser.page
    browser.open(NAME)
    browser.run_all_cells("reopen-live")
    text = page.locator(".jp-Notebook").inner_text()
    session = re.search(r"session: calls (\d+) · attempts (\d+)", text)
    assert session, text[-2000:]
    calls, attempts = int(session[1]), int(session[2])
    assert calls >= 5 and attempts >= calls  # two %%llm cells, three map_rows rows at least
    page.wait_for_function(  # the dashboard cell was run before most calls: it caught up live
        "(want) => [...document.querySelectorAll('.coffee-nb-dashboard .coffee-nb-counts')]"
        ".some(e => e.innerText.includes(want))",
        arg=f"calls {calls} · attempts {attempts}",
        timeout=30_000,
    )
    live = _dashboard_checks(page)
    assert f"calls {calls} · attempts {attempts}" in live
    assert page.locator(".coffee-nb-mapprogressview .coffee-nb-bar-fill").count() == 1
    assert "Error displaying widget" not in text

    # save, shut the kernel down, reload the page
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.jp-mod-dirty')",  # the tab's unsaved-changes dot is gone
        timeout=30_000,
    )
    sessions = lab.api("GET", "/api/sessions")
    assert isinstance(sessions, list)
    mine = [s for s in sessions if s["path"].endswith(f"{NAME}.ipynb")]
    assert mine, sessions
    for s in mine:
        lab.api("DELETE", f"/api/kernels/{s['kernel']['id']}")
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell .jp-OutputArea-output", timeout=60_000)
    page.wait_for_timeout(2000)  # let every output render
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reopen-after-reload.png"), full_page=True)
    text = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text and "model not found" not in text
    reopened = _dashboard_checks(page)
    assert f"calls {calls} · attempts {attempts}" in reopened  # the last live picture was saved
    bar = page.locator(".coffee-nb-mapprogressview .coffee-nb-bar-fill")
    assert bar.count() == 1 and bar.evaluate("e => parseFloat(e.style.width)") == 100  # 3 / 3 rows
    assert "3 / 3 rows" in text
    assert page.locator(".coffee-nb-health-open").count() >= 1  # the health panel's snapshot
    page.locator(".coffee-nb-dashboard").last.screenshot(path=str(ARTIFACTS / "reopen-dashboard.png"))
    assert browser.real_errors() == []

    # the saved file exported to HTML shows the same snapshot
    saved = lab.work / f"{NAME}.ipynb"
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--stdout", str(saved)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    exported = out.stdout
    assert f"calls <b>{calls}</b> · attempts <b>{attempts}</b>" in exported
    assert "coffee-nb-last-calls" in exported and "data:image/png;base64," in exported
    assert "Error displaying widget" not in exported and "application/vnd.jupyter.widget-view" not in saved.read_text()
