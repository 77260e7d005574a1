"""``--show-prompt`` on screen in JupyterLab + Chromium: a figure and a DataFrame in a prompt show as a
thumbnail that really loads and as the table the model will read, above the dry run (issue 27).
Screenshots go to artifacts/browser/."""

from __future__ import annotations

import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)

CELLS = [
    """\
%load_ext coffee_nb
import coffee_nb, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
coffee_nb.configure(ledger="memory", daily=5);
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(["a", "b", "c"], [3, 5, 2], color="tab:orange")
plt.close(fig)
sales = pd.DataFrame({"region": ["north", "south"] * 5000, "units": range(10_000)})""",
    "%%llm sandbox/fast sandbox/vision --show-prompt\nWhat does {fig} show, and which rows of {sales} look wrong?",
]


@pytest.fixture(scope="module", autouse=True)
def notebook(lab: Lab) -> None:
    lab.cells("show_prompt", CELLS)


def test_show_prompt_has_a_thumbnail_the_table_and_the_dry_run(browser):
    browser.open("show_prompt")
    browser.run_all_cells("show_prompt")
    out = browser.page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea")
    img = out.locator(".coffee-nb-prompt img")
    assert img.count() == 1
    # the thumbnail is a real picture the browser decoded, no wider than a thumbnail
    width = img.evaluate("e => e.complete ? e.naturalWidth : 0")
    assert 0 < width <= 160
    text = out.inner_text()
    assert "Prompt as it will be sent" in text and "no call made" in text
    assert "[image 1: 400x300 px PNG" in text  # the figure at its own size
    assert "10,000 rows" in text  # the table says how much of the frame it shows
    assert "no image input" in text  # sandbox/fast can't see: the dry run says it is skipped
    assert "sandbox/vision" in text and "(sandbox)" in text  # its worst case, at sandbox prices
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out.screenshot(path=str(ARTIFACTS / "show_prompt_output.png"))
    assert not browser.real_errors()
