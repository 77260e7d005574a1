"""Breakers that come back and silent routes that are tried once (issue 24, items 6 and 7).

The breaker tests run on a fake clock injected into the picker (``Core.clock``): a 60 s outage and two
minutes of traffic take milliseconds, and each step is exact. The silent-route tests use the sandbox
with short attempt timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import replace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import Field

from coffee_nb import AutoPicker, CallSummary, ConfigError, ModelSpec, Policy, capture_records, sandbox
from coffee_nb.invoke._health import ModelHealth
from coffee_nb.invoke._models import Candidate
from coffee_nb.invoke._plan import Attempt, Core, Plan
from coffee_nb.invoke._policy import PROBE_LOST_AFTER, CircuitBreaker, Trip
from coffee_nb.testing import ScriptedChatModel, http_error

NO_WAIT = Policy(backoff_base=0, backoff_cap=0)  # retries at once: the fake clock alone says what time it is


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Flapping(ScriptedChatModel):
    """Answers HTTP 503 while the fake clock reads before ``up_at``, then its script. Each call moves the
    clock on by ``latency`` (a real call takes time: a request sent on the dot finds the breaker it
    reopened a moment after the dot), and ``tried`` keeps when each call came."""

    clock: Any = None
    up_at: float = 60.0
    latency: float = 0.05
    tried: list[float] = Field(default_factory=list)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.tried.append(self.clock.now)
        self.clock.now += self.latency
        if self.clock.now < self.up_at:
            raise http_error(503, "down")
        return super()._next(messages, kwargs)


def flapping(up_at: float, policy: Policy = NO_WAIT) -> tuple[AutoPicker, Flapping, Clock]:
    clock = Clock()
    primary = Flapping(model_name="primary", script=["primary answer"], clock=clock, up_at=up_at)
    fallback = ScriptedChatModel(model_name="fallback", script=["fallback answer"])
    llm = AutoPicker(primary, [fallback], policy=policy, seed=0)
    llm._core.clock = clock
    return llm, primary, clock


def steady_traffic(llm: AutoPicker, clock: Clock, *, every: float = 4.0, until: float = 150.0):
    """One request every ``every`` s: (sent at, who answered, the primary's breaker state just before)."""
    seen = []
    n = 0
    while (at := n * every) < until:
        clock.now = at
        state = ModelHealth.of(llm.candidates[0], clock.now).state
        answer = llm.invoke(f"request {n}").content
        seen.append((at, "primary" if answer == "primary answer" else "fallback", state))
        n += 1
    return seen


def test_a_primary_down_for_60_s_is_back_in_use_within_30_s_of_recovering():
    llm, primary, clock = flapping(up_at=60.0)
    seen = steady_traffic(llm, clock)
    back = next(at for at, who, _ in seen if who == "primary")
    assert 60 <= back <= 60 + 30
    assert [who for at, who, _ in seen if at < back] == ["fallback"] * len([at for at, *_ in seen if at < back])
    assert {who for at, who, _ in seen if at >= back} == {"primary"}  # and stays in use
    # during the outage it was probed once per probing request, never more than cooldown_max + 4 s apart
    probes = [t for t in primary.tried if t > 1]
    assert max(b - a for a, b in itertools.pairwise(probes)) <= llm.policy_in_force.cooldown_max + 4
    assert len(primary.tried) == len(probes) + 3  # the first request: one try and two retries


@pytest.mark.parametrize("down", [float(s) for s in range(44, 97, 1)])
def test_whenever_the_primary_recovers_it_is_back_within_30_s(down):
    """The worst case is a recovery just after a failed probe at the ceiling: the next probe comes
    cooldown_max later, plus up to one request's interval (with a 30 s ceiling that was 34 s)."""
    llm, _primary, clock = flapping(up_at=down)
    seen = steady_traffic(llm, clock, until=down + 40)
    back = next(at for at, who, _ in seen if who == "primary")
    assert back - down <= 30


def test_health_tells_open_from_half_open_through_an_outage():
    llm, primary, clock = flapping(up_at=60.0)
    seen = steady_traffic(llm, clock, until=120)
    tried_at = {round(t) for t in primary.tried}
    back = next(at for at, who, _ in seen if who == "primary")
    for at, who, state in seen[1:]:
        if at < back and at in tried_at:
            assert state == "half-open", at  # a request that probed it found it half-open
        elif at < back:
            assert state == "open", at  # one that skipped it found it open
        elif at == back:
            assert state == "half-open" and who == "primary", at  # the probe that closed it
        else:
            assert state == "closed" and who == "primary", at
    assert ModelHealth.of(llm.candidates[0], clock.now).state == "closed"
    assert ModelHealth.of(llm.candidates[0], clock.now).consecutive_failures == 0


def test_a_failing_probe_reopens_and_the_caller_gets_the_fallbacks_answer():
    clock = Clock()
    primary = ScriptedChatModel(model_name="primary", script=[http_error(503)] * 4 + ["recovered"])
    fallback = ScriptedChatModel(model_name="fallback", script=["fallback answer"])
    llm = AutoPicker(primary, [fallback], policy=replace(NO_WAIT, deadline=5), seed=0)
    llm._core.clock = clock
    assert llm.invoke("opens it").content == "fallback answer"  # three tries, then the breaker opens for 1 s
    cand = llm.candidates[0]
    assert ModelHealth.of(cand, clock.now).state == "open" and ModelHealth.of(cand, clock.now).reopens_in_s == 1
    clock.now = 1.5
    assert ModelHealth.of(cand, clock.now).state == "half-open"
    with capture_records() as records:
        assert llm.invoke("probes it").content == "fallback answer"
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [
        ("fake/primary", "primary", "error"),  # the probe: one try, no retry
        ("fake/fallback", "fallback", "ok"),
    ]
    assert primary.steps_taken == 4
    health = ModelHealth.of(cand, clock.now)
    assert health.state == "open" and health.reopens_in_s == 2  # reopened, twice as long
    clock.now = 3.6
    assert llm.invoke("probes it again").content == "recovered"
    assert ModelHealth.of(cand, clock.now).state == "closed"


def test_a_silent_probe_times_out_once_and_the_fallback_answers(quiet_sandbox):
    policy = Policy(attempt_timeout=0.5, deadline=3, cooldown_after=1, cooldown_min=0.05, max_retries=0)
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=policy)
    sandbox.inject("sandbox/fast", ["server_error"])
    assert llm.invoke("opens it").response_metadata["coffee_nb"]["model"] == "sandbox/smart"
    sandbox.clear_log()
    time.sleep(0.1)  # past the first cooldown
    sandbox.inject("sandbox/fast", ["silent:5"])
    assert llm.health()["sandbox/fast"].state == "half-open"
    with capture_records() as records:
        message = llm.invoke("probes a silent primary")
    assert message.response_metadata["coffee_nb"]["model"] == "sandbox/smart"
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "error", "timeout"),
        ("sandbox/smart", "ok", None),
    ]
    assert len(sandbox.attempts("sandbox/fast")) == 1
    assert llm.candidates[0].breaker.open_until() > 0 and not llm.candidates[0].breaker.probing


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream"])
@pytest.mark.parametrize("policy", [Policy(attempt_timeout=0.5), Policy(attempt_timeout=0.5, max_retries=5)])
def test_a_silent_primary_is_tried_once_when_a_fallback_remains(quiet_sandbox, mode, policy):
    policy = replace(policy, first_token_timeout=0.5)
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=policy)
    sandbox.inject("sandbox/fast", ["silent:5", "silent:5"])
    with capture_records() as records:
        if mode == "invoke":
            llm.invoke("anyone there?")
        elif mode == "ainvoke":
            asyncio.run(llm.ainvoke("anyone there?"))
        else:
            list(llm.stream("anyone there?"))
    # one attempt of the primary (the records say so); under load the timed-out request may not have
    # reached the sandbox before it was cancelled, so the server saw at most that one
    assert len(sandbox.attempts("sandbox/fast")) <= 1
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "error", "timeout"),
        ("sandbox/smart", "ok", None),
    ]


def test_a_silent_primary_alone_is_retried(quiet_sandbox):
    llm = AutoPicker("sandbox/fast", policy=Policy(attempt_timeout=0.3, max_retries=1, backoff_base=0))
    sandbox.inject("sandbox/fast", ["silent:5"])
    assert llm.invoke("anyone there?").content
    assert len(sandbox.attempts("sandbox/fast")) == 2  # no other model: waiting once more is all there is


# -- the breaker and the plan, by hand ----------------------------------------------------------------


def test_a_probe_whose_caller_gave_up_before_calling_does_not_strand_the_model():
    """A plan let through as the probe, then told to wait for a local rate-limit slot; its caller gives
    up (cancelled, deadline) without a verdict. The model must not stay skipped for good."""
    clock = Clock(100.0)
    policy = Policy(cooldown_after=1, cooldown_min=1, max_retries=0)
    cands = [
        Candidate(ModelSpec(model="openai/a", rpm=1), cooldown_after=1, cooldown=policy.cooldown_max, cooldown_min=1),
        Candidate("openai/b", cooldown_after=1, cooldown=policy.cooldown_max, cooldown_min=1),
    ]
    core = Core(cands, policy, (), random.Random(0), clock)
    plan = Plan(core, None, "hello", None)
    first = plan.next()
    assert isinstance(first, Attempt) and first.candidate.name == "openai/a"
    plan.failed(first, http_error(503))  # opens for 1 s
    clock.now = 101.5
    waiting = Plan(core, None, "hello", None)
    assert waiting.next() > 0  # let through as the probe, then told to wait for the rpm slot: abandoned
    clock.now = 110
    skipped = Plan(core, None, "hello", None).next()
    assert isinstance(skipped, Attempt) and skipped.candidate.name == "openai/b"  # a probe is (still) out
    clock.now = 101.5 + PROBE_LOST_AFTER + 1  # that probe is long lost; the rpm window has passed too
    probe = Plan(core, None, "hello", None).next()
    assert isinstance(probe, Attempt) and probe.candidate.name == "openai/a"


def test_failures_of_calls_let_through_before_it_opened_neither_extend_nor_double_the_cooldown():
    breaker = CircuitBreaker(cooldown_after=1, cooldown=20, cooldown_min=1)
    breaker.failure(Trip.COUNT, now=0)
    assert breaker.open_until() == 1
    for _ in range(6):  # concurrent calls already in flight fail too
        breaker.failure(Trip.COUNT, now=0.5)
    assert breaker.open_until() == 1 and breaker.failures == 7
    breaker.failure(Trip.COUNT, now=0.5, seconds=3)  # a Retry-After still counts
    assert breaker.open_until() == 3.5
    assert breaker.allow(3.5)  # the probe
    breaker.failure(Trip.COUNT, now=3.6)
    assert breaker.open_until() == pytest.approx(5.6)  # the second opening: 2 s


def test_the_cooldown_doubles_up_to_cooldown_max_and_probes_one_at_a_time():
    policy = Policy()
    assert policy.cooldown_max <= 30 and policy.cooldown == policy.cooldown_max
    breaker = CircuitBreaker(policy.cooldown_after, policy.cooldown_max, policy.cooldown_min)
    for _ in range(policy.cooldown_after):
        breaker.failure(Trip.COUNT, now=0)
    spans, now = [], 0.0
    for _ in range(8):
        until = breaker.open_until()
        spans.append(until - now)
        now = until
        assert breaker.state_at(now - 0.01) == "open" and breaker.state_at(now) == "half-open"
        assert breaker.allow(now) and not breaker.allow(now) and breaker.probing  # one probe at a time
        breaker.failure(Trip.COUNT, now=now)
    assert spans == [1, 2, 4, 8, 16, 20, 20, 20]
    breaker.success()
    assert breaker.state_at(now) == "closed" and not breaker.probing and breaker.failures == 0


def test_cooldown_is_the_older_name_of_cooldown_max():
    assert Policy(cooldown=600).cooldown_max == 600 and Policy(cooldown_max=5).cooldown == 5
    assert Policy(cooldown=7, cooldown_max=7).cooldown_max == 7
    assert replace(Policy(cooldown_max=5), deadline=9).cooldown == 5
    assert "cooldown_max=5" in repr(Policy(cooldown_max=5))
    with pytest.raises(ConfigError, match="older name of cooldown_max"):
        Policy(cooldown=5, cooldown_max=10)
    with pytest.raises(ConfigError, match="cooldown_max"):
        Policy(cooldown_max=-1)
    llm = AutoPicker(ScriptedChatModel(), policy=Policy(cooldown_max=7, cooldown_min=2))
    assert llm.candidates[0].breaker.cooldown_max == 7 and llm.candidates[0].breaker.cooldown_min == 2


def test_the_default_first_token_limit_moves_on_within_10_s_and_stays_configurable():
    assert Policy().first_token_limit(reasoning=False) < 10
    assert Policy().first_token_limit(reasoning=True) >= 60  # reasoning models think before they speak
    assert Policy(first_token_timeout=3).first_token_limit(reasoning=True) == 3


def test_a_silent_probe_leaves_the_caller_time_for_the_fallback():
    """The probe of a model that was failing gets half of what is left of the deadline when another model
    remains: a silent probe re-opens the breaker and the call still answers, not DeadlineExceededError."""
    from coffee_nb import sandbox

    sandbox.set_latency_scale(0)
    sandbox.inject("sandbox/fast", ["503", "silent:10"])
    policy = Policy(
        cooldown_after=1, cooldown_min=0.05, cooldown_max=0.05, deadline=3, attempt_timeout=60, max_retries=0
    )
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=policy)
    assert CallSummary.of(llm.invoke("first")).model == "sandbox/echo"  # the 503 opens the breaker
    time.sleep(0.1)  # past the cooldown: the next call probes
    with capture_records() as records:
        msg = llm.invoke("second")
    assert CallSummary.of(msg).model == "sandbox/echo"
    assert [(r.model, r.error_class) for r in records] == [("sandbox/fast", "timeout"), ("sandbox/echo", None)]
    assert llm.health()["sandbox/fast"].state == "open"  # the failed probe re-opened it
