"""Hedged requests against the sandbox: a slow primary gets company, the first answer wins, both are paid for."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from coffee_nb import AutoPicker, Budget, ConfigError, Policy, capture_records, sandbox

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def ask(llm: AutoPicker, mode: str) -> object:
    if mode == "invoke":
        return llm.invoke("hedge me")
    return asyncio.run(llm.ainvoke("hedge me"))


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_slow_primary_is_hedged_the_hedge_answers_and_both_are_charged(mode):
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.3), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:5"])  # its answer would come after 5 s
    with capture_records() as records:
        msg = ask(llm, mode)
    summary = msg.response_metadata["coffee_nb"]
    assert summary.model == "sandbox/echo" and summary.role == "hedge"
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [
        ("sandbox/fast", "primary", "cancelled"),  # the loser is settled first: the answer's record is last
        ("sandbox/echo", "hedge", "ok"),
    ]
    assert summary.latency_s < 5  # did not wait for the slow primary
    assert sorted(a["model"] for a in sandbox.attempts()) == ["echo", "fast"]  # both really were sent
    cancelled = records[0]
    assert cancelled.tokens_estimated and cancelled.output_tokens == 0 and cancelled.cost > 0  # its prompt
    assert budget.spent() == records[1].cost + cancelled.cost  # the ledger shows both charges
    assert budget.status()["total"]["reserved"] == 0


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_fast_primary_is_never_hedged(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=5))
    with capture_records() as records:
        ask(llm, mode)
    assert [r.model for r in records] == ["sandbox/fast"]
    assert sandbox.attempts("sandbox/echo") == []


def test_no_hedge_when_the_budget_cannot_cover_two():
    # room for the primary's worst case (~$0.00004 at 100 tokens), not for sandbox/smart's (~$0.0016) on top
    budget = Budget(total=Decimal("0.0005"), ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(hedge_after=0.2), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:1"])
    with capture_records() as records:
        msg = llm.invoke("hedge me", max_tokens=100)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"  # waited for it
    assert sandbox.attempts("sandbox/smart") == [] and [r.outcome.value for r in records] == ["ok"]


def test_a_failing_racer_leaves_the_race_to_the_other():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.2, max_retries=0))
    sandbox.inject("sandbox/fast", ["slow_first:1"])
    sandbox.inject("sandbox/echo", ["auth"])  # the hedge fails at once; the primary still answers
    with capture_records() as records:
        msg = llm.invoke("hedge me")
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert [(r.model, r.outcome.value) for r in records] == [("sandbox/echo", "error"), ("sandbox/fast", "ok")]


def test_percentile_hedging_needs_history_and_bad_values_are_refused():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after="p90"))
    sandbox.inject("sandbox/fast", ["slow_first:0.5"])
    with capture_records() as records:
        llm.invoke("no history yet: no hedge")
    assert [r.model for r in records] == ["sandbox/fast"]
    for _ in range(12):
        llm.invoke("build a latency history")
    sandbox.inject("sandbox/fast", ["slow_first:3"])
    assert llm.invoke("now it is slow").response_metadata["coffee_nb"]["model"] == "sandbox/echo"
    with pytest.raises(ConfigError, match="percentile"):
        Policy(hedge_after="soon")
    with pytest.raises(ConfigError):
        Policy(hedge_after=-1)
