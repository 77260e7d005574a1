"""A real browser: JupyterLab on a loopback port, Debian's Chromium driven by Playwright.

Runs the quickstart and the metrics tutorial cell by cell, and checks what a person would see:
streaming text appearing, budget bars with a width, the latency histogram image, the cost table rows,
and no front-end errors. The views are static HTML updated in place (no ipywidgets).
Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)


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


@pytest.fixture(scope="module", autouse=True)
def tutorials(lab: Lab) -> None:
    lab.tutorial("01_quickstart", first=QUICKSTART_SETUP, last=HEALTH_CELL)
    lab.tutorial("04_metrics")


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
    bars = page.locator(".coffee-nb-budgetgauge .coffee-nb-bar-fill")
    assert bars.count() >= 1
    width = bars.first.evaluate("e => parseFloat(e.style.width)")
    assert 35 <= width <= 80, f"budget bar width {width}%"  # ~$0.002 of $0.005 spent
    assert page.locator("table.coffee-nb-costs tr").count() >= 3  # header, a model, total
    image = page.locator("img.coffee-nb-image").first
    assert image.evaluate("e => e.naturalWidth") > 100  # the histogram PNG rendered
    board = page.locator(".jp-OutputArea-output:has(.coffee-nb-dashboard)").last
    board.scroll_into_view_if_needed()
    board.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    health = page.locator(".coffee-nb-health-open").last  # the last cell's panel: the breaker open, counting down
    assert "reopens in" in health.inner_text() and "down" in health.inner_text()
    assert browser.real_errors() == []


def test_metrics_in_jupyterlab(browser):
    browser.open("04_metrics")
    browser.run_all_cells("metrics")
    page = browser.page
    image = page.locator("img.coffee-nb-image").first
    assert image.evaluate("e => e.naturalWidth") > 100
    text = page.locator(".jp-Notebook").inner_text()
    assert "coffee_nb_requests_total" in text and "datetime64[ns, UTC]" in text
    assert browser.real_errors() == []
