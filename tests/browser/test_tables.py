"""The line magics' tables in JupyterLab + Chromium: a styled ``%llm_costs`` on screen (header, a row per
model, a total, money with a literal ``$`` that MathJax leaves alone, every column visible), and the
history and session tables beside it.

A control cell shows plain HTML with two ``$`` amounts, unprotected: JupyterLab typesets it as math,
so the tables' protection is what keeps their money literal. Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)

CELLS = [
    "%load_ext coffee_nb\nfrom coffee_nb import sandbox\nimport coffee_nb\ncoffee_nb.configure(ledger='memory')",
    "%%llm sandbox/fast --no-cache --no-stream\nWhat does a $4 espresso cost in beans?",
    "sandbox.inject('sandbox/echo', ['auth'])  # echo fails, smart answers",
    "%%llm sandbox/echo sandbox/smart --no-cache --no-stream\nAnd a $12 bag of coffee?",
    "%llm_costs",
    "%llm_history",
    "%llm_config",
    "from IPython.display import HTML\nHTML('<p class=\"control\">plan A costs $5 per month and plan B costs $12</p>')",
]


@pytest.fixture(scope="module", autouse=True)
def notebook(lab: Lab) -> None:
    lab.cells("tables", CELLS)


def output_of(page, index):
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output").last


def test_styled_costs_history_and_config_on_screen(browser):
    browser.open("tables")
    browser.run_all_cells("tables")
    page = browser.page

    control = output_of(page, 7)
    control.locator("p.control").wait_for()
    assert control.locator("mjx-container, .MathJax").count() >= 1, (
        "MathJax is off: the check below would prove nothing"
    )

    costs = output_of(page, 4)
    table = costs.locator(".coffee-nb-table table")
    assert table.count() == 1
    heads = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    assert heads[:2] == ["model", "calls"] and heads[-2:] == ["p50", "p95"] and "cost" in heads
    rows = table.locator("tbody tr")
    assert rows.count() == 3  # sandbox/echo (failed), sandbox/fast, sandbox/smart
    text = costs.inner_text()
    assert "— (failed)" in text and "nan" not in text.lower() and "e-0" not in text
    assert costs.locator("mjx-container, .MathJax, mjx-math").count() == 0  # no math in the table
    cost_col = heads.index("cost")
    cells = [rows.nth(i).locator("td").nth(cost_col).inner_text() for i in range(3)]
    assert [c.startswith("$0.0") for c in cells] == [False, True, True], cells  # literal $ amounts
    total = table.locator("tfoot tr")
    assert total.locator("td").first.inner_text() == "total" and total.locator("td").nth(
        cost_col
    ).inner_text().startswith("$0.0")
    # nothing cut off: the last column lies inside the output area (or the table scrolls, not clips)
    area = costs.bounding_box()
    last = table.locator("thead th").last.bounding_box()
    assert area is not None and last is not None and last["x"] + last["width"] <= area["x"] + area["width"] + 1
    costs.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    costs.screenshot(path=str(ARTIFACTS / "llm_costs.png"))

    history = output_of(page, 5)
    htext = history.inner_text()
    assert "What does a $4 espresso cost…" in htext and "And a $12 bag of coffee?" in htext
    assert history.locator("mjx-container, .MathJax").count() == 0
    started = history.locator("tbody tr").first.locator("td").first.inner_text()
    assert len(started) == 8 and started.count(":") == 2  # HH:MM:SS (the day is in the header)
    area, last = history.bounding_box(), history.locator("thead th").last.bounding_box()
    assert area is not None and last is not None and last["x"] + last["width"] <= area["x"] + area["width"] + 1
    history.screenshot(path=str(ARTIFACTS / "llm_history.png"))

    config = output_of(page, 6)
    ctext = config.inner_text()
    assert "in memory" in ctext and "Ledger(" not in ctext and "$5.00" in ctext
    assert config.locator("mjx-container, .MathJax").count() == 0
    assert browser.real_errors() == []
