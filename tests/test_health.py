"""Router health, waiting for a cooldown, and cost-constrained fallback, against the sandbox."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

import coffee_nb
from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    CallSummary,
    ModelSpec,
    Policy,
    RateLimit,
    capture_records,
    sandbox,
)

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def test_health_shows_an_open_breaker_with_its_reopen_time_and_the_probe_closes_it():
    policy = Policy(cooldown_after=2, cooldown_min=1.0, cooldown=10, max_retries=1, backoff_base=0.001)
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=policy)
    sandbox.inject("sandbox/fast", ["server_error", "server_error"])
    llm.invoke("hi")
    fast = llm.health()["sandbox/fast"]
    assert fast.state == "open" and 0 < fast.reopens_in_s <= 1.0  # the first cooldown: cooldown_min
    assert fast.reopens_at is not None and fast.reopens_at > fast.last_error_at
    assert fast.consecutive_failures == 2 and fast.last_error_class == "server"
    assert fast.error_rate == 1.0 and fast.recent_attempts == 2
    assert llm.health()["sandbox/echo"].state == "closed" and llm.health()["sandbox/echo"].p50_latency_s is not None
    assert llm.invoke("while open").response_metadata["coffee_nb"]["model"] == "sandbox/echo"  # skipped
    time.sleep(llm.health()["sandbox/fast"].reopens_in_s + 0.05)
    assert llm.health()["sandbox/fast"].state == "half-open"
    assert llm.invoke("probe").response_metadata["coffee_nb"]["model"] == "sandbox/fast"  # the probe succeeds
    after = llm.health()["sandbox/fast"]
    assert after.state == "closed" and after.consecutive_failures == 0 and after.error_rate == pytest.approx(2 / 3)
    frame = llm.health().to_dataframe()
    assert list(frame.index) == ["sandbox/fast", "sandbox/echo"] and "state" in frame.columns
    assert "router health" in llm.health()._repr_html_()


def test_rate_limit_headroom_is_reported():
    llm = AutoPicker(ModelSpec(model="sandbox/fast", rpm=5, tpm=100_000))
    llm.invoke("one")
    llm.invoke("two")
    row = llm.health()[0]
    assert row.rpm_headroom == 3 and 0 < row.tpm_headroom < 100_000
    assert RateLimit(rpm=5).rpm == 5


def test_session_health_covers_the_session_chain(no_keys):
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"])
    coffee_nb.ask("hello", cache=False)
    assert [r.model for r in coffee_nb.health()] == ["sandbox/fast", "sandbox/echo"]


def test_wait_for_cooldown_waits_for_the_first_model_to_reopen():
    policy = Policy(cooldown_after=1, cooldown_min=0.5, max_retries=0, wait_for_cooldown=2, deadline=5)
    llm = AutoPicker("sandbox/fast", policy=policy)
    sandbox.inject("sandbox/fast", ["server_error"])
    with pytest.raises(AllModelsFailedError):
        llm.invoke("fails, opens the breaker")
    start = time.monotonic()
    assert llm.invoke("waits for it").response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert 0.3 < time.monotonic() - start < 2
    impatient = AutoPicker("sandbox/fast", policy=Policy(cooldown_after=1, cooldown_min=30, max_retries=0))
    sandbox.inject("sandbox/fast", ["server_error"])
    with pytest.raises(AllModelsFailedError):
        impatient.invoke("x")
    with pytest.raises(AllModelsFailedError, match="cooling down"):
        impatient.invoke("y")  # no waiting by default


def test_pricier_fallback_skipped_under_no_pricier_used_under_any():
    sandbox.inject("sandbox/fast", ["auth"])
    with capture_records() as records, pytest.raises(AllModelsFailedError, match="more than the primary"):
        AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(fallback_cost="no_pricier")).invoke("hi")
    assert [r.error_class for r in records] == ["auth", "cost"]
    assert sandbox.attempts("sandbox/smart") == []
    sandbox.inject("sandbox/fast", ["auth"])
    msg = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(fallback_cost="any")).invoke("hi")
    summary = CallSummary.of(msg)
    assert summary.model == "sandbox/smart" and summary.saved < 0  # cost more than the primary would have


def test_cheaper_fallback_shows_what_it_saved():
    sandbox.inject("sandbox/smart", ["server_error"])
    llm = AutoPicker("sandbox/smart", ["sandbox/fast"], policy=Policy(fallback_cost="cheaper_only", max_retries=0))
    summary = CallSummary.of(llm.invoke("hi"))
    assert summary.model == "sandbox/fast" and summary.primary_model == "sandbox/smart"
    assert summary.primary_cost > summary.cost > 0 and summary.saved == summary.primary_cost - summary.cost


def test_max_cost_ceiling_skips_models_whose_worst_case_is_above_it():
    llm = AutoPicker("sandbox/smart", ["sandbox/fast"])
    with capture_records() as records:
        msg = llm.invoke("hi", max_cost=Decimal("0.001"), max_tokens=200)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert records[0].error_class == "cost" and "above max_cost" in records[0].error_message
    with pytest.raises(AllModelsFailedError, match="max_cost"):
        llm.invoke("hi", max_cost=0.0000001)
    assert sandbox.attempts("sandbox/smart") == []


def test_the_footer_says_what_a_fallback_saved_or_cost_more_and_when_a_hedge_won(no_keys):
    coffee_nb.configure(models=["sandbox/smart", "sandbox/fast"], policy=Policy(max_retries=0))
    sandbox.inject("sandbox/smart", ["server_error"])
    answer = coffee_nb.ask("cheaper, please", cache=False)
    assert answer.model == "sandbox/fast" and "saved $" in answer.footer() and "vs sandbox/smart" in answer.footer()
    coffee_nb.configure(models=["sandbox/fast", "sandbox/smart"])
    sandbox.inject("sandbox/fast", ["auth"])
    answer = coffee_nb.ask("pricier, please", cache=False)
    assert "more than sandbox/fast" in answer.footer()
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], policy=Policy(hedge_after=0.2))
    sandbox.inject("sandbox/fast", ["slow_first:3"])
    answer = coffee_nb.ask("hedge me", cache=False)
    assert answer.model == "sandbox/echo" and "hedged: answered before sandbox/fast" in answer.footer()
