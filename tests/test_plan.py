"""The plan decides with no I/O and no LangChain: driven here by hand, with spec candidates that are never built."""

from __future__ import annotations

import random
import subprocess
import sys
from decimal import Decimal

import pytest

from coffee_nb import register_price
from coffee_nb._shared._records import Outcome, Role
from coffee_nb.errors._errors import AllModelsFailedError, BudgetExceededError, ErrorClass
from coffee_nb.invoke._models import Candidate
from coffee_nb.invoke._plan import Attempt, Core, Plan, Usage
from coffee_nb.invoke._policy import Action, Policy
from coffee_nb.testing import http_error


def test_plan_imports_no_langchain():
    code = (
        "import sys, coffee_nb.invoke._plan; "
        "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(specs: list[str], *, policy: Policy | None = None, budget=None, clock: Clock | None = None):
    policy = policy or Policy()
    cands = [Candidate(s, cooldown_after=policy.cooldown_after, cooldown=policy.cooldown) for s in specs]
    records: list = []
    core = Core(cands, policy, (records.append,), random.Random(0), clock or Clock())
    return core, records, (lambda: Plan(core, budget, "hello there", None))


def test_success_on_primary_settles_and_records():
    register_price("openai/a", input=1, output=2)
    core, records, plan_of = make(["openai/a", "openai/b"])
    plan = plan_of()
    step = plan.next()
    assert isinstance(step, Attempt) and step.role is Role.PRIMARY and step.candidate.name == "openai/a"
    core.clock.now += 0.25
    record = plan.succeeded(step, Usage(1_000_000, 1_000_000))
    assert record.outcome is Outcome.OK and record.cost == Decimal(3) and record.latency_s == pytest.approx(0.25)
    assert records == [record] and record.price_source == "custom"


def test_rate_limit_waits_retry_after_then_falls_back_on_auth():
    _core, records, plan_of = make(["openai/a", "openai/b"], policy=Policy(max_retries=1, backoff_base=0))
    plan = plan_of()
    first = plan.next()
    assert plan.failed(first, http_error(429, retry_after=2)) is Action.RETRY
    assert plan.next() == 2.0  # the runner sleeps this long, then asks again
    retry = plan.next()
    assert retry.role is Role.RETRY and retry.candidate.name == "openai/a"
    assert plan.failed(retry, http_error(401)) is Action.FALLBACK
    fallback = plan.next()
    assert fallback.candidate.name == "openai/b" and fallback.role is Role.FALLBACK
    record = plan.succeeded(fallback, Usage(3, 4, estimated=True))
    assert record.fallback_from == "openai/a" and record.fallback_reason == "rate_limit"
    assert [r.error_class for r in records] == ["rate_limit", "auth", None]


def test_bad_request_raises_and_nothing_is_left_gives_all_failed():
    _core, _records, plan_of = make(["openai/a", "openai/b"])
    plan = plan_of()
    assert plan.failed(plan.next(), http_error(400)) is Action.RAISE
    plan2 = plan_of()
    for _ in range(2):
        step = plan2.next()
        assert plan2.failed(step, http_error(404)) is Action.FALLBACK
    with pytest.raises(AllModelsFailedError) as info:
        plan2.next()
    assert [r.model for r in info.value.attempts] == ["openai/a", "openai/b"]


def test_open_breaker_skips_without_calling():
    policy = Policy(max_retries=0, cooldown_after=1, cooldown=30)
    _core, records, plan_of = make(["openai/a", "openai/b"], policy=policy)
    plan = plan_of()
    plan.failed(plan.next(), http_error(500))
    plan.succeeded(plan.next(), Usage(1, 1))
    later = plan_of()
    step = later.next()
    assert step.candidate.name == "openai/b"
    assert records[-1].outcome is Outcome.SKIPPED and records[-1].error_class == ErrorClass.COOLDOWN.value


def test_failed_attempt_releases_its_reservation_and_partial_stream_is_committed():
    from coffee_nb import Budget

    register_price("openai/a", input=1, output=1)
    register_price("openai/b", input=1, output=1)
    budget = Budget(total=10, ledger="memory")
    _core, records, plan_of = make(["openai/a", "openai/b"], budget=budget)
    plan = plan_of()
    step = plan.next()
    assert budget.status()["total"]["reserved"] > 0
    plan.failed(step, http_error(500))
    assert budget.status()["total"]["reserved"] == 0 and budget.spent() == 0
    plan = plan_of()
    step = plan.next()
    plan.failed(step, ConnectionResetError("cut"), ttft=0.1, partial=Usage(100, 50))
    assert budget.spent() == Decimal("0.00015")  # what the provider billed for the partial stream
    assert records[-1].cost == Decimal("0.00015") and records[-1].streamed


def test_budget_refusal_everywhere_is_budget_exceeded():
    from coffee_nb import Budget

    register_price("openai/a", input=1000, output=1000)
    budget = Budget(total=Decimal("0.000001"), ledger="memory")
    _core, records, plan_of = make(["openai/a"], budget=budget)
    with pytest.raises(BudgetExceededError):
        plan_of().next()
    assert records[-1].error_class == "budget"


def test_a_settled_record_has_every_field_where_its_name_says():
    """_settled builds records by position (the hot path): each field checked by name, with values that
    differ from each other and from the defaults, for a broken stream and then the fallback's answer."""
    register_price("openai/a", input=1, output=2)
    register_price("openai/b", input=3, output=5)
    core, records, plan_of = make(["openai/a", "openai/b"], policy=Policy(max_retries=0))
    plan = plan_of()
    first = plan.next()
    assert isinstance(first, Attempt)
    core.clock.now += 0.5
    partial = Usage(input=1_000_000, output=2_000_000, cached=3, reasoning=4, estimated=True)
    assert plan.failed(first, http_error(500, "upstream broke"), ttft=0.125, partial=partial) is Action.FALLBACK
    second = plan.next()
    assert isinstance(second, Attempt)
    core.clock.now += 0.75
    plan.succeeded(second, Usage(input=7, output=11, cached=5, reasoning=6), ttft=0.25, streamed=True)
    broke, answered = records
    assert broke._asdict() == {
        "call_id": plan.call_id,
        "attempt": 0,
        "role": Role.PRIMARY,
        "provider": "openai",
        "model": "openai/a",
        "outcome": Outcome.ERROR,
        "started_at": first.started_at,
        "latency_s": pytest.approx(0.5),
        "error_class": "server",
        "error_message": broke.error_message,
        "ttft_s": 0.125,
        "input_tokens": 1_000_000,
        "output_tokens": 2_000_000,
        "cached_tokens": 3,
        "reasoning_tokens": 4,
        "tokens_estimated": True,
        "cost": Decimal(5),
        "price_source": "custom",
        "cache_hit": False,
        "streamed": True,
        "fallback_from": None,
        "fallback_reason": None,
        "replayed": False,
        "abandoned": False,
    }
    assert "upstream broke" in (broke.error_message or "")
    assert answered._asdict() == {
        "call_id": plan.call_id,
        "attempt": 1,
        "role": Role.FALLBACK,
        "provider": "openai",
        "model": "openai/b",
        "outcome": Outcome.OK,
        "started_at": second.started_at,
        "latency_s": pytest.approx(0.75),
        "error_class": None,
        "error_message": None,
        "ttft_s": 0.25,
        "input_tokens": 7,
        "output_tokens": 11,
        "cached_tokens": 5,
        "reasoning_tokens": 6,
        "tokens_estimated": False,
        "cost": Decimal(3 * 7 + 5 * 11) / 1_000_000,
        "price_source": "custom",
        "cache_hit": False,
        "streamed": True,
        "fallback_from": "openai/a",
        "fallback_reason": "server",
        "replayed": False,
        "abandoned": False,
    }
