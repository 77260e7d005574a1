"""A user's own model instances keep their stricter settings; another AutoPicker can be a candidate."""

from __future__ import annotations

from decimal import Decimal

import pytest
from langchain_openai import ChatOpenAI

import coffee_nb
from coffee_nb import AutoPicker, Budget, CallSummary, Policy, capture_records, sandbox


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):  # no simulated latency, no leftover faults (tests/conftest.py)
    yield


def _users_chat_openai(**kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(model="fast", base_url=sandbox.server().url, api_key="sk-test-not-a-key", **kwargs)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream"])
def test_a_users_stricter_timeout_bounds_its_attempt(mode):
    import asyncio

    silent = _users_chat_openai(timeout=2)  # its SDK would also retry twice: 3 × 2 s
    llm = AutoPicker(silent, ["sandbox/echo"], policy=Policy(attempt_timeout=30, first_token_timeout=30))
    sandbox.inject("sandbox/fast", ["silent:20", "silent:20", "silent:20"])
    sandbox.clear_log()
    with capture_records() as records:
        if mode == "invoke":
            msg = llm.invoke("hello")
        elif mode == "ainvoke":
            msg = asyncio.run(llm.ainvoke("hello"))
        else:
            msg = coffee_nb.collect(llm.stream("hello"))
    assert CallSummary.of(msg).model == "sandbox/echo"
    failed = records[0]
    assert failed.error_class == "timeout" and failed.model == "openai/fast"
    # the user's 2 s, not the policy's 30 s, nor its SDK's three tries (generous bound: a loaded machine)
    assert failed.latency_s < 10
    assert len(sandbox.attempts("sandbox/fast")) == 1  # AutoPicker did not wait for the SDK's own retries


def test_a_longer_own_timeout_does_not_stretch_the_policys():
    assert AutoPicker(_users_chat_openai(timeout=600), policy=Policy(attempt_timeout=5)).candidates[0].attempt_limit(
        5
    ) == pytest.approx(5)
    assert AutoPicker(_users_chat_openai(timeout=2)).candidates[0].attempt_limit(60) == pytest.approx(2)


def test_a_nested_autopicker_reports_its_model_and_exact_cost_charged_once():
    budget = Budget(total=1, ledger="memory")
    inner = AutoPicker("sandbox/fast", ["sandbox/smart"])  # no budget of its own
    outer = AutoPicker(inner, ["sandbox/smart"], budget=budget)
    with capture_records() as records:
        msg = outer.invoke("hi")
    summary = CallSummary.of(msg)
    assert summary.model == "sandbox/fast" and summary.provider == "sandbox" and summary.priced
    assert summary.cost == records[0].cost and summary.cost > 0  # the inner call's exact price
    assert summary.price_source == "nested"
    assert budget.spent() == summary.cost  # the outer budget bounds it, charged once
    assert len(records) == 1  # everyone else hears the inner call's record once, not the outer's copy too
    # streamed: the inner summary chunk is the outer's to read, not the consumer's
    chunks = list(outer.stream("hi"))
    assert sum("coffee_nb" in c.response_metadata for c in chunks) == 1
    assert CallSummary.of(coffee_nb.collect(chunks)).cost == summary.cost
    assert budget.spent() == 2 * summary.cost


def test_a_shared_budget_is_charged_once_and_bounds_the_nested_call():
    budget = Budget(total=1, ledger="memory")
    outer = AutoPicker(AutoPicker("sandbox/fast", budget=budget), budget=budget)
    msg = outer.invoke("hi")
    assert budget.spent() == CallSummary.of(msg).cost > 0
    tight = Budget(total=Decimal("0.000001"), ledger="memory")
    nested = AutoPicker(AutoPicker("sandbox/smart"), budget=tight)  # the dearest inner model's worst case
    with pytest.raises(coffee_nb.BudgetExceededError):
        nested.invoke("hi")
    assert tight.spent() == 0
