"""Long lines in code, JSON and text answers, as JupyterLab shows them: never broken mid-word.

JupyterLab styles markdown code blocks with ``word-break: break-all``, so a fenced answer broke
``argument_number_one`` into ``argument_number_`` / ``one``. Code and JSON answers are our own block
(scrolls sideways, like the input cell); text wraps between words.
"""

from __future__ import annotations

import nbformat
import pytest

from tests.browser._lab import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(600)

LONG = (
    "result = compute_the_extraordinarily_long_function_name(argument_number_one, argument_number_two, "
    "argument_number_three, keyword_argument=another_really_long_identifier_value)  # and a comment"
)
STYLE = """(i) => {
    const out = document.querySelectorAll('.jp-Notebook .jp-Cell')[i].querySelector('.jp-OutputArea-output pre');
    const s = getComputedStyle(out);
    const color = out.querySelector('span') ? getComputedStyle(out.querySelector('span')).color : '';
    return {wordBreak: s.wordBreak, whiteSpace: s.whiteSpace, scrolls: out.scrollWidth > out.clientWidth,
            height: out.getBoundingClientRect().height, lineHeight: parseFloat(s.lineHeight) || 20, color,
            text: out.innerText};
}"""


def test_long_lines_are_never_broken_mid_word(lab: Lab, browser):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext coffee_nb"),
        nbformat.v4.new_code_cell(f"%%llm sandbox/echo -f code\n```python\n{LONG}\n```"),
        nbformat.v4.new_code_cell('%%llm sandbox/echo -f json\n{"call": "' + LONG.replace('"', "'") + '"}'),
        nbformat.v4.new_code_cell(f"%%llm sandbox/echo -f text\n{LONG} {LONG}"),
    ]
    lab.write("code_blocks", nb)
    browser.open("code_blocks")
    browser.run_all_cells("code_blocks")
    page = browser.page
    for i in (1, 2):  # code and JSON: one unbroken line that scrolls, coloured by the theme's editor colours
        shown = page.evaluate(STYLE, i)
        assert shown["wordBreak"] != "break-all" and shown["whiteSpace"] == "pre", shown
        rows = shown["text"].count("\n") + 1  # each line of the answer is one line on screen
        assert shown["scrolls"] and shown["height"] < (rows + 1.5) * shown["lineHeight"], repr(shown)
        assert "argument_number_one" in shown["text"] and shown["color"], shown
    text = page.evaluate(STYLE, 3)  # text: wraps, but between words
    assert text["wordBreak"] != "break-all" and not text["scrolls"], text
    lines = page.evaluate(
        """() => { const pre = document.querySelectorAll('.jp-Notebook .jp-Cell')[3]
                      .querySelector('.jp-OutputArea-output pre');
                   const r = document.createRange(); r.selectNodeContents(pre);
                   return Array.from(r.getClientRects()).length; }"""
    )
    assert lines >= 2  # it did wrap (the text is longer than the output area)
    for word in ("compute_the_extraordinarily_long_function_name", "argument_number_one", "keyword_argument"):
        assert word in text["text"]
    page.screenshot(path=str(ARTIFACTS / "code_blocks.png"), full_page=True)
    assert browser.real_errors() == []
