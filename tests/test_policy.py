"""The policy table, backoff, deadline, cooldown and rate limits, driven through AutoPicker with scripted models."""

from __future__ import annotations

import random
import time

import pytest

from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    ConfigError,
    DeadlineExceededError,
    ErrorClass,
    ModelSpec,
    Policy,
    RateLimit,
    capture_records,
)
from coffee_nb.invoke._policy import DEFAULT_RULES, CircuitBreaker, RateLimiter, Trip
from coffee_nb.testing import ScriptedChatModel, http_error

FAST = Policy(backoff_base=0.001, backoff_cap=0.002, deadline=10)


def chain(primary_script, fallback_script=("fallback answer",), **kwargs):
    primary = ScriptedChatModel(model_name="primary", script=list(primary_script))
    fallback = ScriptedChatModel(model_name="fallback", script=list(fallback_script))
    kwargs.setdefault("policy", FAST)
    return AutoPicker(primary, [fallback], seed=0, **kwargs), primary, fallback


# error class -> (exception to script, expected calls of primary, answered by)
TABLE = {
    ErrorClass.RATE_LIMIT: (http_error(429), 3, "fallback"),
    ErrorClass.SERVER: (http_error(500), 3, "fallback"),
    ErrorClass.TIMEOUT: (TimeoutError("slow"), 1, "fallback"),  # a silent route: fail over at once
    ErrorClass.CONNECTION: (ConnectionResetError("reset"), 2, "fallback"),  # a reset is retried once
    ErrorClass.CONTEXT_OVERFLOW: (http_error(400, code="context_length_exceeded"), 1, "fallback"),
    ErrorClass.AUTH: (http_error(401), 1, "fallback"),
    ErrorClass.NOT_FOUND: (http_error(404), 1, "fallback"),
    ErrorClass.UNKNOWN: (RuntimeError("custom model exploded"), 1, "fallback"),
}


@pytest.mark.parametrize("error_class", list(TABLE), ids=str)
def test_policy_table_retry_then_fallback(error_class):
    exc, primary_calls, answered_by = TABLE[error_class]
    llm, primary, _fallback = chain([exc])
    with capture_records() as records:
        msg = llm.invoke("hi")
    assert msg.content == "fallback answer"
    assert primary.steps_taken == primary_calls  # 1 try + max_retries (2) for retryable classes
    meta = msg.response_metadata["coffee_nb"]
    assert meta["model"] == f"fake/{answered_by}"
    assert meta["fallback_reason"] == error_class.value
    errors = [r for r in records if r.outcome == "error"]
    assert {r.error_class for r in errors} == {error_class.value}
    assert [r.role.value for r in records] == ["primary"] + ["retry"] * (primary_calls - 1) + ["fallback"]


def test_bad_request_raises_without_fallback_or_cooldown():
    llm, _primary, fallback = chain([http_error(400, "bad parameter"), "fine"])
    with pytest.raises(Exception) as info:
        llm.invoke("hi")
    assert info.value.status_code == 400
    assert fallback.steps_taken == 0
    assert llm.candidates[0].breaker.state == "closed"
    assert llm.invoke("again").content == "fine"  # not cooled down


def test_unknown_exception_raised_as_is_when_the_policy_says_so():
    llm, _primary, fallback = chain([ZeroDivisionError("bug in my model")], policy=Policy(on_unknown_error="raise"))
    with pytest.raises(ZeroDivisionError):
        llm.invoke("hi")
    assert fallback.steps_taken == 0


def test_unknown_exception_of_a_candidate_falls_back_and_names_its_class():
    llm, _primary, _fallback = chain([TypeError("__init__() got an unexpected keyword argument 'temperature'")])
    with capture_records() as records:
        msg = llm.invoke("hi")
    assert msg.content == "fallback answer"
    first = records[0]
    assert first.error_class == "unknown" and first.error_message.startswith("TypeError: ")


@pytest.mark.parametrize("bad", ["tool", "schema"])
def test_a_bad_tool_or_schema_is_the_callers_error_raised_at_once(bad):
    llm, primary, fallback = chain(["never"])
    runnable = llm.bind_tools([42]) if bad == "tool" else llm.with_structured_output(42)
    with capture_records() as records, pytest.raises(ValueError):
        runnable.invoke("hi")
    assert primary.steps_taken == fallback.steps_taken == 0
    assert len(records) == 1  # recorded, and its reservation settled, but not routed around


def test_timeout_is_retried_when_no_other_model_is_left():
    primary = ScriptedChatModel(model_name="alone", script=[TimeoutError("slow"), "second try"])
    llm = AutoPicker(primary, policy=FAST, seed=0)
    assert llm.invoke("hi").content == "second try"


def test_content_filter_raises_the_providers_reason_by_default_and_can_fall_back():
    filtered = http_error(400, "Your request was rejected by the safety system", code="content_policy_violation")
    llm, primary, fallback = chain([filtered])
    with capture_records() as records, pytest.raises(type(filtered), match="safety system"):
        llm.invoke("hi")
    assert fallback.steps_taken == 0 and primary.steps_taken == 1
    assert [r.error_class for r in records] == ["content_filter"]
    llm, primary, fallback = chain([filtered], policy=Policy(on_content_filter="fallback"))
    assert llm.invoke("hi").content == "fallback answer"


def test_every_error_class_has_a_rule():
    assert set(DEFAULT_RULES) == set(ErrorClass)
    assert DEFAULT_RULES[ErrorClass.BAD_REQUEST].trip is Trip.NONE
    assert not DEFAULT_RULES[ErrorClass.BAD_REQUEST].fallback


def test_full_jitter_backoff_is_bounded_and_capped():
    policy = Policy(backoff_base=1.0, backoff_cap=4.0)
    rng = random.Random(1)
    for n in range(8):
        waits = [policy.backoff(n, None, rng) for _ in range(200)]
        bound = min(4.0, 2**n)
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > bound * 0.8  # actually jitters over the whole range
    assert policy.backoff(0, 3.0, rng) >= 3.0  # Retry-After is a floor
    assert policy.backoff(0, 1000.0, rng) is None  # too long: go elsewhere


def test_retry_after_is_honoured():
    llm, _primary, _ = chain([http_error(429, retry_after=0.3), "after wait"])
    start = time.monotonic()
    assert llm.invoke("hi").content == "after wait"
    assert time.monotonic() - start >= 0.3


def test_long_retry_after_moves_to_fallback_without_waiting():
    llm, primary, _ = chain([http_error(429, retry_after=600)])
    start = time.monotonic()
    assert llm.invoke("hi").content == "fallback answer"
    assert time.monotonic() - start < 5
    assert primary.steps_taken == 1


def test_deadline_ends_endless_rate_limits():
    policy = Policy(deadline=0.6, backoff_base=0.05, backoff_cap=0.1, max_retries=1000, cooldown_after=10_000)
    llm, primary, _fallback = chain(
        [http_error(429, retry_after=0.05)], [http_error(429, retry_after=0.05)], policy=policy
    )
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        llm.invoke("hi")
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 3
    assert isinstance(info.value, AllModelsFailedError)
    assert "deadline of 0.6s" in str(info.value)
    assert primary.steps_taken > 2


def test_endless_429_falls_back_then_errors():
    policy = Policy(deadline=5, backoff_base=0.001, backoff_cap=0.002, max_retries=2)
    llm, primary, fallback = chain([http_error(429)], [http_error(429)], policy=policy)
    with pytest.raises(AllModelsFailedError) as info:
        llm.invoke("hi")
    assert primary.steps_taken == 3 and fallback.steps_taken == 3
    assert len(info.value.attempts) == 6
    text = str(info.value)
    assert "fake/primary" in text and "fake/fallback" in text and "rate_limit" in text


def test_timeout_param_sets_the_deadline():
    llm = AutoPicker(ScriptedChatModel(), timeout=7, max_retries=4)
    assert llm.policy_in_force.deadline == 7 and llm.policy_in_force.max_retries == 4


def test_cooldown_opens_skips_then_half_open_probe():
    policy = Policy(cooldown_after=3, cooldown=0.3, max_retries=0, backoff_base=0.001)
    primary = ScriptedChatModel(model_name="primary", script=[http_error(503)] * 3 + ["recovered"])
    fallback = ScriptedChatModel(model_name="fallback", script=["fb"])
    llm = AutoPicker(primary, [fallback], policy=policy)
    for _ in range(3):
        assert llm.invoke("x").content == "fb"
    assert primary.steps_taken == 3
    assert llm.candidates[0].breaker.state == "open"
    with capture_records() as records:
        assert llm.invoke("x").content == "fb"
    assert primary.steps_taken == 3  # skipped while open
    assert records[0].outcome == "skipped" and records[0].error_class == "cooldown"
    time.sleep(0.35)
    assert llm.invoke("x").content == "recovered"  # half-open probe succeeds
    assert llm.candidates[0].breaker.state == "closed"


def test_failed_probe_reopens_with_a_doubling_cooldown_that_resets_on_success():
    breaker = CircuitBreaker(cooldown_after=2, cooldown=10, cooldown_min=1)
    breaker.failure(Trip.COUNT, now=0)
    assert breaker.allow(0.5)
    breaker.failure(Trip.COUNT, now=1)  # second in a row: open for 1 s
    assert not breaker.allow(1.5)
    assert breaker.allow(2.1)  # half-open: one probe
    assert not breaker.allow(2.2)  # only one
    breaker.failure(Trip.COUNT, now=2.2)  # probe failed: open again, twice as long
    assert not breaker.allow(4.1)
    assert breaker.allow(4.3)
    breaker.failure(Trip.COUNT, now=4.3)  # and again: 4 s
    assert not breaker.allow(8.2)
    assert breaker.allow(8.4)
    for t in range(9, 60, 11):  # keeps failing: capped at ``cooldown``
        breaker.failure(Trip.COUNT, now=t)
    assert breaker.open_until() - 53 == 10
    breaker.success()
    assert breaker.allow(53.1) and breaker.allow(53.2)
    breaker.failure(Trip.COUNT, now=54)
    breaker.failure(Trip.COUNT, now=54)
    assert breaker.open_until() == 55  # back to the shortest cooldown after a success


def test_caller_errors_never_trip_a_cooldown():
    breaker = CircuitBreaker(cooldown_after=1, cooldown=10)
    for _ in range(5):
        breaker.failure(Trip.NONE, now=0)
    assert breaker.allow(0)


def test_auth_trips_at_once():
    llm, primary, _ = chain([http_error(401)])
    llm.invoke("x")
    llm.invoke("x")
    assert primary.steps_taken == 1  # second call skipped the model with the bad key


def test_rate_limiter_window():
    limiter = RateLimiter(RateLimit(rpm=2))
    assert limiter.try_acquire(10, now=0.0) == 0.0
    assert limiter.try_acquire(10, now=1.0) == 0.0
    assert limiter.try_acquire(10, now=2.0) == pytest.approx(58.0)
    assert limiter.try_acquire(10, now=60.5) == 0.0
    tpm = RateLimiter(RateLimit(tpm=100))
    assert tpm.try_acquire(60, now=0.0) == 0.0
    assert tpm.try_acquire(60, now=1.0) == pytest.approx(59.0)
    assert tpm.try_acquire(40, now=1.0) == 0.0


def test_rpm_limit_past_deadline_skips_to_next():
    model = ScriptedChatModel(model_name="limited", script=["ok"])
    llm = AutoPicker(
        ModelSpec(model=model, rpm=1), [ScriptedChatModel(model_name="fb", script=["fb"])], policy=Policy(deadline=5)
    )
    assert llm.invoke("a").content == "ok"
    with capture_records() as records:
        assert llm.invoke("b").content == "fb"
    assert records[0].outcome == "skipped" and records[0].error_class == "rate_limit"
    assert "local rpm/tpm limit" in records[0].error_message


def test_rpm_limit_short_wait_is_waited():
    limiter_model = ScriptedChatModel(model_name="limited", script=["one", "two"])
    llm = AutoPicker(ModelSpec(model=limiter_model, rpm=1))
    llm.candidates[0].limiter.window = 0.3  # a short window so the test waits briefly
    assert llm.invoke("a").content == "one"
    start = time.monotonic()
    assert llm.invoke("b").content == "two"
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deadline": -1},
        {"deadline": 0},
        {"deadline": float("nan")},
        {"max_retries": -1},
        {"cooldown": float("inf")},
        {"cooldown_after": 0},
    ],
)
def test_bad_policy_values(kwargs):
    with pytest.raises(ConfigError) as info:
        Policy(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_bad_rate_limits():
    with pytest.raises(ValueError, match="rpm"):
        RateLimit(rpm=-5)
    with pytest.raises(ValueError, match="tpm"):
        AutoPicker(ModelSpec(model=ScriptedChatModel(), tpm=0))
