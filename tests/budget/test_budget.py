"""Budget configuration, two-phase enforcement inside AutoPicker, warnings, the seed's API, bad input."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

from coffee_nb import (
    AutoPicker,
    Budget,
    BudgetExceededError,
    BudgetWarning,
    Limit,
    capture_records,
    create_budget_enforcer,
    register_price,
    sandbox,
)
from coffee_nb.budget import MemoryLedger
from coffee_nb.budget._sqlite import SQLiteLedger
from coffee_nb.testing import ScriptedChatModel

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def model(name: str, script=("ok answer",)) -> ScriptedChatModel:
    return ScriptedChatModel(model_name=name, script=list(script))


def test_reserve_worst_case_then_commit_actual():
    register_price("fake/a", input=1_000_000, output=1_000_000)  # $1 per token: easy arithmetic
    budget = Budget(total=1000, ledger="memory")
    seen = []
    original = budget.reserve_pico  # what AutoPicker calls: the amount in picodollars

    def spy(name, pico):
        seen.append(pico)
        return original(name, pico)

    budget.reserve_pico = spy  # type: ignore[method-assign]
    llm = AutoPicker(model("a", ["two words"]), budget=budget, max_tokens=10)
    with capture_records() as records:
        llm.invoke("hello")
    assert seen[0] is not None and seen[0] >= 10 * 10**12  # worst case includes max_tokens of output ($1 each)
    assert budget.spent("total") == records[0].cost == Decimal(4 + 2)  # actual: 4 in + 2 out (scripted usage)
    assert budget.status()["total"]["reserved"] == 0


def test_hard_limit_skips_to_cheaper_fallback_then_raises():
    budget = Budget(daily="0.002", ledger="memory")
    llm = AutoPicker("sandbox/smart", ["sandbox/fast"], budget=budget, max_tokens=200)
    with capture_records() as records:
        msg = llm.invoke("hi")
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert records[0].error_class == "budget" and records[0].outcome == "skipped"
    for _ in range(200):
        try:
            llm.invoke("again")
        except BudgetExceededError as exc:
            assert "daily budget of $0.002" in str(exc)
            break
    else:
        pytest.fail("the hard limit never stopped the calls")
    assert budget.spent("daily") <= Decimal("0.002")


def test_soft_limit_warns_once_and_does_not_block():
    events = []
    budget = Budget(daily=Limit("0.0001", hard=False), ledger="memory", warn_at=0.5, on_warning=events.append)
    llm = AutoPicker("sandbox/fast", budget=budget)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(12):
            llm.invoke("go")
    assert budget.spent("daily") > Decimal("0.0001")  # soft: went past it
    kinds = [e.kind for e in events]
    assert kinds == ["warning", "exceeded"]  # each fired exactly once for this period
    ours = [w for w in caught if issubclass(w.category, BudgetWarning)]
    assert len(ours) == 2 and "50%" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the user's line, not coffee_nb internals
    assert list(budget.events) == events


def test_per_model_limits_on_top_of_global():
    budget = Budget(total=10, per_model={"sandbox/smart": {"daily": "0.0001"}}, ledger="memory")
    llm = AutoPicker("sandbox/smart", ["sandbox/fast"], budget=budget, max_tokens=100)
    with capture_records() as records:
        assert llm.invoke("x").response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert "daily for sandbox/smart" in records[0].error_message
    assert budget.spent("daily", model="sandbox/fast") > 0 and budget.spent("daily", model="sandbox/smart") == 0


def test_failed_attempts_release_and_are_never_charged():
    budget = Budget(total=1, ledger="memory")
    sandbox.inject("sandbox/fast", ["server_error", "overloaded"])
    llm = AutoPicker("sandbox/fast", budget=budget, max_retries=2)
    with capture_records() as records:
        llm.invoke("x")
    assert [r.outcome.value for r in records] == ["error", "error", "ok"]
    assert budget.spent("total") == records[-1].cost
    assert [c.amount > 0 for c in budget.calls()] == [True]
    assert budget.status()["total"]["reserved"] == 0


def test_unpriced_models_default_allowed_and_flagged_strict_blocks():
    budget = Budget(total=1, ledger="memory")
    AutoPicker(model("unpriced"), budget=budget).invoke("x")
    calls = budget.calls()
    assert len(calls) == 1 and calls[0].priced is False and calls[0].amount == 0
    strict = Budget(total=1, ledger="memory", strict=True)
    with pytest.raises(BudgetExceededError, match=r"no known price.*strict"):
        AutoPicker(model("unpriced"), budget=strict).invoke("x")


def test_cancelled_attempt_releases():
    budget = Budget(total=1, ledger="memory")
    lease = budget.reserve("m", Decimal("0.5"))
    assert budget.status()["total"]["reserved"] == Decimal("0.5")
    budget.release(lease)
    budget.commit(lease, Decimal("0.5"))  # already done: ignored
    assert budget.status()["total"]["reserved"] == 0 and budget.spent() == 0


def test_seed_api():
    enforcer = create_budget_enforcer(
        daily_budget=10.0,
        monthly_budget=100,
        total_budget=500,
        hourly_budget=2,
        weekly_budget=50,
        hard_limit=True,
        warning_threshold=0.9,
        ledger="memory",
    )
    assert isinstance(enforcer, Budget)
    enforcer.record_cost(1.5, model="openai/gpt-4o")
    enforcer.record_cost("0.25", model="sandbox/fast")
    status = enforcer.get_budget_status()
    assert set(status) == {"hourly", "daily", "weekly", "monthly", "total"}
    daily = status["daily"]
    assert daily["budget"] == 10 and daily["spent"] == Decimal("1.75") and daily["remaining"] == Decimal("8.25")
    assert daily["percentage"] == pytest.approx(17.5)
    assert enforcer.get_remaining("hourly") == Decimal("0.25")
    assert enforcer.get_spent("daily", model="openai/gpt-4o") == Decimal("1.5")
    assert enforcer.can_afford(0.25) and not enforcer.can_afford(0.26)
    enforcer.reset_budget("daily")
    assert enforcer.get_spent("daily") == 0 and enforcer.get_spent("total") == Decimal("1.75")
    enforcer.reset_budget()
    assert enforcer.get_spent("total") == 0
    llm = AutoPicker("sandbox/fast", budget=enforcer)  # the same kind of object AutoPicker takes
    llm.invoke("x")
    assert enforcer.get_spent("daily") > 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"daily": -1}, "daily limit"),
        ({"daily": float("nan")}, "daily limit"),
        ({"total": float("inf")}, "total limit"),
        ({"daily": "lots"}, "daily limit"),
        ({"daily": True}, "daily limit"),
        ({"warn_at": 0}, "warn_at"),
        ({"warn_at": 1.5}, "warn_at"),
        ({"per_model": {"sandbox/fast": {"fortnightly": 1}}}, "fortnightly"),
        ({"per_model": {"sandbox/fast": 3}}, "per_model"),
        ({"ledger": "postgres://x"}, "postgres://x"),
        ({"ledger": "redis://host:notaport"}, "redis://host:notaport"),
        ({"ledger": 42}, "42"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"hard": "yes"}, "hard"),
    ],
)
def test_bad_input_names_the_value(kwargs, needle):
    kwargs.setdefault("ledger", "memory")
    with pytest.raises(ValueError) as info:
        Budget(**kwargs)
    assert needle in str(info.value)


def test_a_limit_checks_itself_when_made():
    with pytest.raises(ValueError, match=r"Limit warn_at .*-0\.1"):
        Limit(1, warn_at=-0.1)
    with pytest.raises(ValueError, match=r"Limit hard must be True .* got 'x'"):
        Limit(1, hard="x")
    with pytest.raises(ValueError, match=r"Limit amount .* got 'lots'"):
        Limit("lots")


def test_bad_queries():
    budget = Budget(daily=1, ledger="memory")
    with pytest.raises(ValueError, match="unknown budget period 'yearly'"):
        budget.spent("yearly")
    with pytest.raises(ValueError, match="no monthly limit"):
        budget.remaining("monthly")
    with pytest.raises(ValueError, match="cost"):
        budget.record(-5)
    with pytest.raises(ValueError, match="cost"):
        budget.can_afford(float("nan"))


def test_ledger_choices(tmp_path, monkeypatch):
    assert isinstance(Budget(ledger="memory").ledger, MemoryLedger)
    default = Budget(daily=1).ledger
    assert isinstance(default, SQLiteLedger) and str(default.path).startswith(str(tmp_path))
    assert Budget(ledger=tmp_path / "x.sqlite3").ledger.path == tmp_path / "x.sqlite3"
    assert Budget(ledger=f"sqlite:///{tmp_path}/y.db").ledger.path == tmp_path / "y.db"


def test_sqlite_ledger_survives_a_restart(tmp_path):
    path = tmp_path / "kernel.sqlite3"
    first = Budget(daily=5, ledger=path)
    first.record("1.25", model="sandbox/fast")
    first.close()
    second = Budget(daily=5, ledger=path)  # a new kernel, same machine
    assert second.spent("daily") == Decimal("1.25") and second.remaining("daily") == Decimal("3.75")


def test_repr_is_readable():
    text = repr(Budget(daily=5, hourly=Limit(1, hard=False), ledger="memory"))
    assert text == "Budget(hourly=$1 (soft), daily=$5; ledger=MemoryLedger())"


def test_redis_budget_shared_by_two_budgets(redis_url):
    a = Budget(daily=1, ledger=redis_url, name="team-ml")
    b = Budget(daily=1, ledger=redis_url, name="team-ml")
    a.reset()
    a.record("0.4")
    b.record("0.5")
    assert a.spent("daily") == b.spent("daily") == Decimal("0.9")
    assert not b.can_afford("0.2")
    assert "team-ml" in repr(a.ledger) and "redis://127.0.0.1" in repr(a.ledger)


def test_budget_messages_show_money_not_decimal_exponents():
    soft = Budget(daily=Decimal("1E-7"), hard=False, ledger="memory")
    with pytest.warns(BudgetWarning) as caught:
        soft.record(Decimal("2E-7"))
    texts = [str(w.message) for w in caught]
    assert any("reached 80% of its $0.0000001 limit" in t and "spend $0.0000002" in t for t in texts), texts
    assert any("soft daily limit of $0.0000001 exceeded (spent $0.0000002)" in t for t in texts), texts
    hard = Budget(daily=Decimal("1E-7"), ledger="memory")
    with pytest.raises(BudgetExceededError) as info:
        hard.reserve("m", Decimal("2E-7"))
    assert "daily budget of $0.0000001 can't cover" in str(info.value) and "up to $0.0000002" in str(info.value)
    assert all("E-" not in t for t in [*texts, str(info.value)])


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.filterwarnings("ignore::coffee_nb.budget.BudgetWarning")
def test_warnings_are_exact_for_own_spend_and_at_most_quiet_for_late_for_anothers(backend, tmp_path):
    """A commit skips reading the spend back while no threshold is within reach of its own spend (the
    SQLite hot path saves that read): its own crossing still warns on the very call; a crossing by another
    kernel's spend on the same ledger is noticed here within QUIET_FOR."""
    from coffee_nb.budget import BudgetEvent
    from coffee_nb.budget._warnings import QUIET_FOR

    now = [1_000_000.0]
    from coffee_nb.budget._ledger import MemoryLedger

    ledger = MemoryLedger() if backend == "memory" else tmp_path / "shared.sqlite3"  # shared by three budgets
    mine: list[BudgetEvent] = []
    budget = Budget(total=Limit("1.00", warn_at=0.5), ledger=ledger, clock=lambda: now[0], on_warning=mine.append)
    cent = Decimal("0.01")
    for _ in range(49):  # $0.49: quiet, and short of the 50% threshold
        budget.commit(budget.reserve("m", cent), cent)
    assert mine == []
    budget.commit(budget.reserve("m", cent), cent)  # $0.50: its own spend crosses, on this very call
    assert [e.threshold for e in mine] == [0.5]

    other = Budget(total=Limit("1.00", warn_at=0.5), ledger=ledger, clock=lambda: now[0], on_warning=lambda e: None)
    watcher: list[BudgetEvent] = []
    me = Budget(
        total=Limit("1.00", warn_at=0.5, hard=False), ledger=ledger, clock=lambda: now[0], on_warning=watcher.append
    )
    # a soft limit's "exceeded" (100%) is owed: another kernel's spend takes the total past it
    me.commit(me.reserve("m", cent), cent)  # $0.51: its 50% warning (a read)
    me.commit(me.reserve("m", cent), cent)  # $0.52: a read; the gap to $1.00 is $0.48
    assert [e.threshold for e in watcher] == [0.5]
    other.commit(other.reserve("m", Decimal("0.45")), Decimal("0.45"))  # $0.97
    other.commit(other.reserve("m", Decimal("0.02")), Decimal("0.02"))  # $0.99
    me.commit(me.reserve("m", cent), cent)  # $1.00, but this budget counts only its own cent since its read
    assert [e.threshold for e in watcher] == [0.5]
    now[0] += QUIET_FOR
    me.commit(me.reserve("m", cent), cent)  # the quiet window is over: read, and the crossing is seen
    assert [e.threshold for e in watcher] == [0.5, 1.0]
