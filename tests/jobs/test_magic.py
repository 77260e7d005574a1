"""``%%llm_map`` through a real IPython InteractiveShell, against the sandbox."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from coffee_nb import sandbox
from coffee_nb.jobs import Projection


@pytest.fixture
def ip(ip):
    """The suite's shell, with a small DataFrame to map over."""
    shell = ip
    shell.user_ns["tickets"] = pd.DataFrame({"text": ["my order never came", "love the mug"], "n": [3, 7]})
    yield shell
    for name in ("tickets", "labelled", "Ticket", "_"):
        shell.user_ns.pop(name, None)


def run(ip, line, cell):
    with capture_output() as cap:
        result = ip.run_cell_magic("llm_map", line, cell)
    return result, cap


def test_the_cell_is_the_template_and_out_stores_the_frame(ip):
    ip.user_ns["tone"] = "kind"
    result, cap = run(ip, "tickets sandbox/echo --out labelled --no-progress", "Be {tone}: {text}")
    assert result is None
    labelled = ip.user_ns["labelled"]
    assert list(labelled["answer"]) == ["Be kind: my order never came", "Be kind: love the mug"]
    assert "labelled: 2 rows · 2 answered · 0 failed · 0 cached" in cap.stdout
    again, _ = run(ip, "tickets sandbox/echo --no-progress", "Be {tone}: {text}")
    assert isinstance(again, pd.DataFrame) and again["cached"].all()  # re-running the cell is free


def test_schema_from_a_variable_or_inline(ip):
    from pydantic import BaseModel

    class Ticket(BaseModel):
        label: str
        priority: int

    ip.user_ns["Ticket"] = Ticket
    result, _ = run(ip, "tickets sandbox/fast --schema Ticket --no-progress", "Ticket 'late', priority {n}")
    assert list(result["label"]) == ["late", "late"] and list(result["priority"]) == [3, 7]
    inline, _ = run(ip, "tickets sandbox/fast --schema 'label:str, priority:int' --no-progress", "'x' {n}")
    assert list(inline["priority"]) == [3, 7]


def test_dry_run_shows_the_projection_and_calls_nothing(ip):
    result, _ = run(ip, "tickets sandbox/fast --dry-run", "Classify {text}")
    assert isinstance(result, Projection) and result.to_call == 2
    assert sandbox.attempts() == []


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("nothing_here", "{text}", "DF 'nothing_here' is not a variable"),
        ("tickets", "{txt}", "{txt} names neither a column nor a variable"),
        ("tickets", "   ", "the cell is empty"),
        ("tickets --concurrency 0", "{text}", "concurrency must be a positive whole number"),
        ("tickets --schema NoSuchModel", "{text}", "--schema 'NoSuchModel' is not a variable"),
        ("tickets --schema 'label'", "{text}", "inline, give each field a type: 'label:str, score:float'"),
        ("tickets --schema 'label:colour'", "{text}", "unknown type 'colour' for schema field 'label'"),
        ("tickets --on-error maybe", "{text}", "on_error must be 'record'"),
        ("tickets --out 1x", "{text}", "--out needs a Python variable name"),
        ("tickets --budget lots", "{text}", "--budget takes an amount in USD"),
        ("tickets nope", "{text}", "malformed model spec 'nope'"),
        ("tickets -c", "{text}", "expected one argument"),
    ],
)
def test_bad_input_is_a_usage_error_before_any_call(ip, line, cell, message):
    with pytest.raises(UsageError, match=None) as info:
        run(ip, line, cell)
    assert message in str(info.value)
    assert sandbox.attempts() == []


@pytest.mark.filterwarnings("ignore::coffee_nb.BudgetWarning")  # the 80% warning, expected here
def test_a_budget_cap_for_the_job_stops_it_and_rerun_resumes(ip):
    ip.user_ns["tickets"] = pd.DataFrame({"q": [f"question {i}" for i in range(30)]})
    first, cap = run(ip, "tickets sandbox/fast --budget 0.0003 -m 60 -c 4 --no-progress", "Answer {q}")
    assert first.attrs["coffee_nb"]["status"] == "budget"
    assert "stopped at the budget" in cap.stderr
    done = first["error"].isna().sum()
    sandbox.clear_log()
    second, _ = run(ip, "tickets sandbox/fast -m 60 -c 4 --no-progress", "Answer {q}")
    assert second["cached"].sum() == done and len(sandbox.attempts()) == 30 - done
