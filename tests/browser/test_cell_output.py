"""What a ``%%llm`` cell shows, on screen in JupyterLab + Chromium (issue 15 items 1-7).

Three notebooks, each in its own kernel, run cell by cell against the sandbox (scripted replies and faults):
- answers: ``$`` amounts stay literal (no MathJax element in the output) while ``$$x^2$$`` is typeset; a
  footer under every answer, ``--format json`` valid and not; the truncation footer; the budget warning as
  a styled notice (no ``interactiveshell.py:`` line);
- errors: a budget error and an all-models-failed error each show one box and nothing after it (no red
  traceback block), the amount literal in the box, attempts numbered once;
- live: the retry status line appears during a scripted 429 sequence (caught by a MutationObserver: it is
  transient); interrupting a call that never answers leaves one line, no placeholder, a usable kernel.
Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import re

import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)

MONEY = "Plan A costs $5 per month and plan B costs $12."
SETUP = """\
%load_ext coffee_nb
import coffee_nb
from coffee_nb import sandbox
coffee_nb.configure(ledger="memory", daily=5);  # this notebook's own budget: nothing shared with other tests"""

ANSWERS = [
    SETUP
    + f"""
sandbox.script_replies("sandbox/echo", [
    {MONEY!r},
    "Plan A costs $5 per month. The area is $$x^2$$ square metres.",
    '{{"plan": "A", "price": 5}}',
    "Sure! {{plan: A, price: $5",
    {MONEY!r},  # (cut at 5 tokens)
    {MONEY!r},
    {MONEY!r},
    {MONEY!r},
]);""",
    "%%llm sandbox/echo --no-cache\nWhat do the plans cost?",
    "%%llm sandbox/echo --no-cache\nAnd the area?",
    "%%llm sandbox/echo --no-cache -f json -o plan\nThe plan as JSON",
    "%%llm sandbox/echo --no-cache -f json -o bad\nThe plan as JSON again",
    "bad.text",
    "%%llm sandbox/echo --no-cache -m 5\none two three four five six seven eight nine ten eleven twelve",
    "%%llm sandbox/echo --no-cache -f html\nAs HTML",
    "%%llm sandbox/echo --no-cache -f text\nAs text",
    "%%llm sandbox/echo --no-cache -o money\nOnce more",
    "money",
    "%llm_config --daily 0.0000001 --soft",
    "%%llm sandbox/fast --no-cache\nA call the budget warns about",
]

ERRORS = [
    SETUP,
    "%llm_config --daily 0.000001",
    "%%llm sandbox/fast --no-cache\nMore than the budget allows",
    'sandbox.inject("sandbox/fast", ["auth"]); sandbox.inject("sandbox/echo", ["auth"])\n%llm_config --daily 5',
    "%%llm sandbox/fast sandbox/echo --no-cache\nBoth keys are wrong",
    'sandbox.inject("sandbox/fast", ["content_filter"])',
    "%%llm sandbox/fast --no-cache\nSomething the filter refuses",
]

LIVE = [
    SETUP + '\nsandbox.inject("sandbox/fast", ["rate_limit:1"] * 6)  # every retry of sandbox/fast: 429',
    "%%llm sandbox/fast sandbox/echo --no-cache\nStatus please",
    'sandbox.clear_faults(); sandbox.inject("sandbox/fast", ["silent:120"])  # accepted, never answered',
    "%%llm sandbox/fast --no-cache\nThis one hangs",
    "%%llm sandbox/echo --no-cache\nStill there?",
    'sandbox.inject("sandbox/fast", ["stall:4:120"])  # four tokens, then silence with the connection open',
    "%%llm sandbox/fast --no-cache\nThis one stalls mid-stream",
    "1 + 1",
]

RUN_ALL = [
    SETUP,
    "%llm_config --daily 0.000001",
    "%%llm sandbox/fast --no-cache\nMore than the budget allows",
    "after = 1",
]

# every text a cell's outputs showed that says a retry or a fallback, as it appeared (it is replaced later)
WATCH_STATUS = """
window.__status = [];
new MutationObserver(() => {
  document.querySelectorAll('.jp-OutputArea-output').forEach(e => {
    const t = e.innerText || '';
    if ((t.includes('retrying in') || t.includes('falling back')) && !window.__status.includes(t))
      window.__status.push(t);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""

WATCH_MATH = """
window.__math = [];
new MutationObserver(() => {
  document.querySelectorAll('.jp-OutputArea-output').forEach(e => {
    const t = e.innerText || '';
    if (e.querySelector('mjx-container, .MathJax') && !window.__math.includes(t)) window.__math.push(t);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""
WARNED = ANSWERS.index("%llm_config --daily 0.0000001 --soft") + 1
MATH = "mjx-container, .MathJax, .MathJax_Display, .MathJax_Preview"
RED = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


@pytest.fixture(scope="module", autouse=True)
def notebooks(lab: Lab) -> None:
    lab.cells("cell_answers", ANSWERS)
    lab.cells("cell_errors", ERRORS)
    lab.cells("cell_live", LIVE)
    lab.cells("cell_run_all", RUN_ALL)


def _cell(browser, i):
    return browser.page.locator(".jp-Notebook .jp-Cell").nth(i)


def _start(browser, i: int) -> None:
    """Select cell ``i`` (command mode) and run it in place."""
    page = browser.page
    _cell(browser, i).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")


def _finished(browser, i: int, timeout: float = 120_000) -> None:
    """Cell ``i`` has its execution number (not [*]) and the kernel is idle again."""
    browser.page.wait_for_function(
        """(i) => {
            const prompt = document.querySelectorAll('.jp-Notebook .jp-Cell')[i].querySelector('.jp-InputPrompt');
            return prompt && /\\[\\d+\\]/.test(prompt.innerText);
        }""",
        arg=i,
        timeout=timeout,
    )
    browser.wait_idle()


def _run(browser, *cells: int) -> None:
    for i in cells:
        _start(browser, i)
        _finished(browser, i)


def _outputs(browser, i: int):
    return _cell(browser, i).locator(".jp-OutputArea")


def _text(browser, i: int, expect: str = "") -> str:
    """Cell ``i``'s output text, once it shows (``expect`` in it, if given): JupyterLab renders markdown and
    HTML outputs asynchronously, so the kernel can be idle a moment before the text is on screen."""
    browser.page.wait_for_function(
        """([i, expect]) => {
            const out = document.querySelectorAll('.jp-Notebook .jp-Cell')[i].querySelector('.jp-OutputArea');
            const text = out ? out.innerText : '';
            return text.trim().length > 0 && text.includes(expect);
        }""",
        arg=[i, expect],
        timeout=15_000,
    )
    text: str = _outputs(browser, i).inner_text()
    return text


def _shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.page
    page.wait_for_timeout(500)  # MathJax typesets after the output lands
    page.set_viewport_size({"width": 1400, "height": 3000})  # the notebook scrolls inside: room for every cell
    page.evaluate("() => document.querySelectorAll('.jp-WindowedPanel-outer').forEach(e => { e.scrollTop = 0; })")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_answers_keep_amounts_literal_and_show_their_footers(browser):
    browser.open("cell_answers")
    browser.page.evaluate(WATCH_MATH)
    _run(browser, *range(len(ANSWERS)))
    _shot(browser, "cell_answers")
    page = browser.page
    money = _text(browser, 1)
    assert MONEY in money, money  # "$5 per month", not math italics "5permonthandplanBcosts12"
    assert _outputs(browser, 1).locator(MATH).count() == 0
    assert "sandbox/echo ·" in money  # the footer
    area = _text(browser, 2)
    assert "Plan A costs $5 per month." in area and "sandbox/echo ·" in area
    typeset = _outputs(browser, 2).locator("mjx-container")
    assert typeset.count() == 1, area  # $$x^2$$ is math, the amount is not
    assert "x" in typeset.first.inner_text() or typeset.first.get_attribute("jax")
    valid = _text(browser, 3)
    assert '"plan": "A"' in valid and "sandbox/echo ·" in valid and "⚠" not in valid
    invalid = _text(browser, 4)
    assert "Sure! {plan: A, price: $5" in invalid and "sandbox/echo ·" in invalid, invalid
    assert "not valid JSON" in invalid and "kept in _ and bad" in invalid and invalid.count("⚠") == 1
    assert "▌" not in invalid and _outputs(browser, 4).locator(f"{RED}, {MATH}").count() == 0
    assert "UsageError" not in invalid
    assert "Sure! {plan: A, price: $5" in _text(browser, 5)  # -o bad was set
    truncated = _text(browser, 6)
    assert "stopped at the 5-token limit" in truncated and "Plan A costs $5" in truncated, truncated
    warned = _text(browser, WARNED)
    notice = _outputs(browser, WARNED).locator(".coffee-nb-notice")
    assert notice.count() >= 1 and all("coffee_nb budget" in t for t in notice.all_inner_texts()), warned
    assert "interactiveshell.py:" not in warned and "BudgetWarning" not in warned
    assert _outputs(browser, WARNED).locator(RED).count() == 0
    assert "sandbox/fast ·" in warned  # the answer, its footer, then the notice
    assert warned.index("sandbox/fast ·") < warned.index(notice.first.inner_text().strip())
    for i in (7, 8, 9, 10):  # an HTML answer, a text answer, -o, the Answer shown by name: amounts literal too
        assert MONEY in _text(browser, i), _text(browser, i)
        assert "sandbox/echo ·" in _text(browser, i)
    typeset = page.evaluate("window.__math")  # every output MathJax ever typeset, streaming included
    assert typeset and all("The area is" in t for t in typeset), typeset
    for i in (1, 3, 4, 6, 7, 8, 9, 10, WARNED):
        assert _outputs(browser, i).locator(MATH).count() == 0, f"cell {i} has MathJax: {_text(browser, i)}"
    assert "waiting for the first token" not in page.locator(".jp-Notebook").inner_text()
    assert browser.real_errors() == []


def test_each_error_is_one_box_and_nothing_after_it(browser):
    browser.open("cell_errors")
    _run(browser, *range(len(ERRORS)))
    _shot(browser, "cell_errors")
    budget = _text(browser, 2)
    box = _outputs(browser, 2).locator(".coffee-nb-error")
    assert box.count() == 1, budget
    assert "daily budget of $0.000001" in box.inner_text(), box.inner_text()  # the amount literal
    assert _outputs(browser, 2).locator(f"{RED}, {MATH}").count() == 0, budget  # no red block, no math
    assert budget.count("BudgetExceededError") == 1 and "Traceback" not in budget
    assert "%llm_config --daily" in budget and "never resets" not in budget
    assert "this call alone may cost up to" in budget and "wait for the reset" not in budget  # waiting can't help
    failed = _text(browser, 4)
    box = _outputs(browser, 4).locator(".coffee-nb-error")
    assert box.count() == 1 and _outputs(browser, 4).locator(RED).count() == 0, failed
    assert failed.count("AllModelsFailedError") == 1 and "Traceback" not in failed
    items = box.locator("li")
    assert items.count() == 2, failed
    assert items.nth(0).inner_text().startswith("sandbox/fast") and items.nth(1).inner_text().startswith("sandbox/echo")
    assert "1. 1." not in failed and "API key" in failed
    refused = _text(browser, 6)  # the provider refused the request itself
    assert _outputs(browser, 6).locator(".coffee-nb-error").count() == 1, refused
    assert _outputs(browser, 6).locator(RED).count() == 0 and "Traceback" not in refused, refused
    assert "content_filter" in refused and "rephrase the prompt" in refused
    assert browser.real_errors() == []


def test_retries_are_said_live_and_an_interrupt_is_one_line(browser):
    browser.open("cell_live")
    page = browser.page
    page.evaluate(WATCH_STATUS)
    _run(browser, 0)
    _start(browser, 1)
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[1].innerText.includes('retrying in')",
        timeout=60_000,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _cell(browser, 1).screenshot(path=str(ARTIFACTS / "cell_retrying.png"))
    _finished(browser, 1)
    said = page.evaluate("window.__status")
    assert any("sandbox/fast: 429, retrying in 1.0 s (1/2)…" in s for s in said), said
    assert any("(2/2)… falling back to sandbox/echo…" in s for s in said), said
    answered = _text(browser, 1, expect="sandbox/echo · fallback from sandbox/fast")
    if "retrying" in answered:  # the status line's last update may render a moment after the answer
        page.wait_for_timeout(2000)
        answered = _text(browser, 1)
    assert "retrying" not in answered and "sandbox/echo · fallback from sandbox/fast" in answered, answered

    _run(browser, 2)
    _start(browser, 3)
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[3].innerText.includes('waiting for the first token')",
        timeout=60_000,
    )
    page.wait_for_timeout(1000)  # a call well under way
    _shot(browser, "cell_hung")
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    page.keyboard.press("i")
    _finished(browser, 3)
    stopped = _text(browser, 3)
    assert stopped.startswith("■ interrupted after ") and stopped.endswith(" s; nothing charged"), stopped
    assert "waiting for the first token" not in stopped and "Traceback" not in stopped
    assert _outputs(browser, 3).locator(RED).count() == 0
    _run(browser, 4)  # the kernel is fine
    assert "sandbox/echo ·" in _text(browser, 4)

    _run(browser, 5)
    _start(browser, 6)
    page.wait_for_function(  # the stream stalled: some text with the cursor
        "() => /You said:.*\u258c/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[6].innerText)",
        timeout=60_000,
    )
    page.wait_for_timeout(1000)
    page.locator(
        "button[data-command='notebook:interrupt-kernel'], jp-button[data-command='notebook:interrupt-kernel']"
    ).first.click()
    _finished(browser, 6)
    cut = _text(browser, 6)
    assert "You said:" in cut and "\u258c" not in cut, cut  # what streamed stays, without the cursor
    assert re.search(r"■ interrupted after [\d.]+ s; .*charged$", cut), cut
    assert "Traceback" not in cut and _outputs(browser, 6).locator(RED).count() == 0
    _run(browser, 7)
    assert _text(browser, 7).split() == ["[8]:", "2"]  # the kernel is fine
    _shot(browser, "cell_live")
    assert browser.real_errors() == []


def test_run_all_stops_at_the_failed_cell(browser):
    browser.open("cell_run_all")
    page = browser.page
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    _finished(browser, 2)
    page.wait_for_timeout(1000)  # (had the next cell been queued, it would have run by now)
    assert _outputs(browser, 2).locator(".coffee-nb-error").count() == 1
    assert _outputs(browser, 2).locator(RED).count() == 0  # one box, and still a failed cell:
    assert _cell(browser, 3).locator(".jp-InputPrompt").inner_text().strip() == "[ ]:"  # Run All stopped there
    _shot(browser, "cell_run_all")
    assert browser.real_errors() == []
