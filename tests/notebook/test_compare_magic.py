"""%%llm_compare in a real InteractiveShell, against the sandbox: what it shows, stores and refuses."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import BudgetExceededError, Comparison, sandbox

VERDICT_B = '{"winner": "B", "reason": "B answers the question"}'


@pytest.fixture
def shell(ip, no_keys):
    coffee_nb.configure(ledger="memory")
    sandbox.clear_log()
    return ip


def _markdown(captured) -> str:
    return "\n".join(o.data.get("text/markdown", "") for o in captured.outputs)


def test_compare_cell_shows_the_answers_side_by_side_and_stores_the_comparison(shell):
    shell.user_ns["topic"] = "p95 latency"
    with capture_output() as captured:
        shell.run_cell_magic("llm_compare", "sandbox/fast sandbox/echo --runs 2 -o cmp", "Explain {topic}.")
    cmp = shell.user_ns["cmp"]
    assert isinstance(cmp, Comparison) and shell.user_ns["_"] is cmp
    assert len(cmp.frame) == 4 and len(sandbox.attempts()) == 4
    assert cmp.answers.loc[0, "sandbox/echo"] == "Explain p95 latency."  # the cell was interpolated
    shown = _markdown(captured)
    assert "<table class='coffee-nb-answers'>" in shown and "coffee-nb-compare-metrics" in shown
    assert "\n\nExplain p95 latency.\n\n" in shown  # the answer sits between blank lines: rendered as markdown
    assert "sandbox/fast" in shown and "latency p50 / p95" in shown and "× 2 runs" in shown
    text = next(o.data["text/plain"] for o in captured.outputs if "text/markdown" in o.data)
    assert text.startswith("coffee_nb comparison: 2 models × 2 runs")  # the plain-text twin


def test_compare_over_a_dataframe_with_a_judge(shell):
    shell.user_ns["df"] = pd.DataFrame({"word": ["alpha", "beta", "gamma"]})
    sandbox.script_replies("sandbox/smart", [VERDICT_B] * 3)
    with capture_output() as captured:
        shell.run_cell_magic(
            "llm_compare",
            "sandbox/fast sandbox/echo --over df --judge sandbox/smart --judge-order random",
            "Say {word}",
        )
    cmp = shell.user_ns["_"]
    assert list(cmp.answers["sandbox/echo"]) == ["Say alpha", "Say beta", "Say gamma"]
    assert len(cmp.judge.frame) == 3 and cmp.summary[["wins", "losses"]].sum().sum() == 6
    shown = _markdown(captured)
    assert "template over 3 rows" in shown and "row 2" in shown
    assert "Judge sandbox/smart (pick, pairs shown in random order, one order each)" in shown
    assert "B answers the question" in shown


def test_the_judge_sees_each_pair_both_ways_round_offline(shell):
    shell.user_ns["df"] = pd.DataFrame({"topic": ["latency", "budgets", "retries", "fallbacks"]})
    with capture_output() as captured:
        shell.run_cell_magic(
            "llm_compare", "sandbox/fast sandbox/smart --over df --judge sandbox/smart -o cmp", "Explain {topic}."
        )
    judge = shell.user_ns["cmp"].judge
    assert judge.order == "both" and len(judge.calls) == 8 and len(judge.frame) == 4
    assert judge.frame.error.isna().all()  # the sandbox judge's verdicts are read: judging works offline
    assert len(sandbox.attempts("sandbox/smart")) == 4 + 8  # its answers, then its verdicts both ways round
    shown = _markdown(captured)
    line = f"each pair judged both ways round: the orders agreed on {judge.agreed} of 4"
    assert f"Judge sandbox/smart (pick, {line}" in shown and "sandbox/smart (judge)" in shown
    assert "(judge &#36;" in shown and "8 calls · cost &#36;" in shown  # the judge's own spend
    text = next(o.data["text/plain"] for o in captured.outputs if "text/markdown" in o.data)
    assert f"judge sandbox/smart (pick, {line}" in text and "4 verdicts from 8 calls" in text


def test_diff_marks_the_words_that_differ_from_the_first_model(shell):
    with capture_output() as captured:
        shell.run_cell_magic("llm_compare", "sandbox/echo sandbox/fast --diff", "Hello there")
    shown = _markdown(captured)
    assert "<mark>" in shown  # sandbox/fast's answer departs from sandbox/echo's
    first_cell = shown.split("<td style='vertical-align:top'>")[1]
    assert "<mark>" not in first_cell  # the first model is the reference


def test_a_budget_that_cannot_cover_it_refuses_without_a_call(shell):
    with pytest.raises(BudgetExceededError, match="refused before any call"), capture_output() as captured:
        shell.run_cell_magic("llm_compare", "sandbox/smart sandbox/fast --runs 5 --budget 0.01", "Write an essay")
    assert sandbox.attempts() == []
    assert any("BudgetExceededError" in o.data.get("text/plain", "") for o in captured.outputs)
    assert coffee_nb.get_session().budget.spent("daily") == Decimal(0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("sandbox/fast sandbox/echo --runs 0", "--runs must be a positive integer"),
        ("sandbox/fast sandbox/echo --over nope", "'nope' is not a variable"),
        ("sandbox/fast sandbox/fast", "each model once"),
        ("sandbox/fast --judge sandbox/smart", "at least two models"),
        (
            "sandbox/fast sandbox/echo --judge sandbox/smart --judge-order twice",
            "--judge-order: invalid choice: 'twice'",
        ),
        ("sandbox/fast nosuch/model", "nosuch"),
        ("sandbox/fast sandbox/echo --out 1x", "--out needs a Python variable name"),
    ],
)
def test_bad_options_are_usage_errors(shell, line, message):
    with pytest.raises(UsageError, match=message), capture_output():
        shell.run_cell_magic("llm_compare", line, "Hello")
    assert sandbox.attempts() == []


def test_help_and_registration(shell):
    magic = shell.find_cell_magic("llm_compare")
    assert magic is not None and "--judge" in magic.__doc__ and "--over" in magic.__doc__
    with pytest.raises(UsageError, match="the cell is empty"), capture_output():
        shell.run_cell_magic("llm_compare", "sandbox/fast sandbox/echo", "  \n")


def test_an_undefined_field_is_an_error_and_nothing_is_sent(shell):
    with pytest.raises(UsageError, match=r"\{nope\}.*--allow-missing"):
        shell.run_cell_magic("llm_compare", "sandbox/fast sandbox/echo", "Explain {nope}.")
    assert sandbox.attempts() == []  # nothing sent, nothing billed
    with capture_output():
        shell.run_cell_magic("llm_compare", "sandbox/echo --allow-missing -o cmp", "Explain {nope}.")
    assert shell.user_ns["cmp"].answers.loc[0, "sandbox/echo"] == "Explain {nope}."  # sent as written
