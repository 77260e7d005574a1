"""Named configuration checks: one table of bad values, each refused with a ConfigError naming the value."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from coffee_nb import ConfigError, ModelSpec, Policy, RateLimit, configure_http, register_price, sandbox
from coffee_nb._shared import _validate as v
from coffee_nb.budget import Budget, Limit
from coffee_nb.session._session import Session

NAN, INF = float("nan"), float("inf")

# (what is being configured, a callable doing it with the bad value, the bad value)
BAD = [
    ("Policy deadline bool", lambda x: Policy(deadline=x), True),
    ("Policy deadline zero", lambda x: Policy(deadline=x), 0),
    ("Policy deadline nan", lambda x: Policy(deadline=x), NAN),
    ("Policy attempt_timeout negative", lambda x: Policy(attempt_timeout=x), -1.5),
    ("Policy max_retries float", lambda x: Policy(max_retries=x), 1.5),
    ("Policy max_retries bool", lambda x: Policy(max_retries=x), True),
    ("Policy backoff_cap inf", lambda x: Policy(backoff_cap=x), INF),
    ("Policy cooldown_after bool", lambda x: Policy(cooldown_after=x), True),
    ("Policy cooldown string", lambda x: Policy(cooldown=x), "30"),
    ("RateLimit rpm bool", lambda x: RateLimit(rpm=x), True),
    ("RateLimit tpm zero", lambda x: RateLimit(tpm=x), 0),
    ("ModelSpec context_window bool", lambda x: ModelSpec(model="openai/gpt-4o", context_window=x), True),
    ("ModelSpec context_window float", lambda x: ModelSpec(model="openai/gpt-4o", context_window=x), 1e5),
    ("ModelSpec max_output_tokens negative", lambda x: ModelSpec(model="openai/gpt-4o", max_output_tokens=x), -1),
    ("ModelSpec rpm zero", lambda x: ModelSpec(model="openai/gpt-4o", rpm=x), 0),
    (
        "register_price context_window bool",
        lambda x: register_price("openai/x", input=1, output=1, context_window=x),
        True,
    ),
    (
        "register_price context_window zero",
        lambda x: register_price("openai/x", input=1, output=1, context_window=x),
        0,
    ),
    ("register_price input bool", lambda x: register_price("openai/x", input=x, output=1), True),
    ("register_price input huge", lambda x: register_price("openai/x", input=x, output=1), Decimal("1e999")),
    ("register_price output nan", lambda x: register_price("openai/x", input=1, output=x), NAN),
    (
        "register_price cached_input negative",
        lambda x: register_price("openai/x", input=1, output=1, cached_input=x),
        -0.5,
    ),
    ("configure temperature bool", lambda x: Session().configure(temperature=x), True),
    ("configure temperature too high", lambda x: Session().configure(temperature=x), 2.5),
    ("configure temperature nan", lambda x: Session().configure(temperature=x), NAN),
    ("configure temperature string", lambda x: Session().configure(temperature=x), "0.7"),
    ("configure max_tokens bool", lambda x: Session().configure(max_tokens=x), True),
    ("configure max_tokens float", lambda x: Session().configure(max_tokens=x), 100.0),
    ("Budget daily bool", lambda x: Budget(daily=x, ledger="memory"), True),
    ("Budget daily 1e999", lambda x: Budget(daily=x, ledger="memory"), Decimal("1e999")),
    ("Budget daily 1e15", lambda x: Budget(daily=x, ledger="memory"), 1e15),
    ("Budget daily infinite", lambda x: Budget(daily=x, ledger="memory"), INF),
    ("Budget total words", lambda x: Budget(total=x, ledger="memory"), "lots"),
    ("Budget Limit amount negative", lambda x: Budget(daily=Limit(x), ledger="memory"), -2),
    ("Budget warn_at bool", lambda x: Budget(daily=1, warn_at=x, ledger="memory"), True),
    ("Budget warn_at above one", lambda x: Budget(daily=1, warn_at=x, ledger="memory"), 1.5),
    ("Budget lease_ttl infinite", lambda x: Budget(daily=1, lease_ttl=x, ledger="memory"), INF),
    ("Budget record cost nan", lambda x: Budget(daily=1, ledger="memory").record(x), NAN),
    ("configure_http max_connections bool", lambda x: configure_http(max_connections=x), True),
    ("configure_http timeout zero", lambda x: configure_http(timeout=x), 0),
    ("sandbox latency scale negative", lambda x: sandbox.set_latency_scale(x), -1),
    ("sandbox latency scale bool", lambda x: sandbox.set_latency_scale(x), True),
]


@pytest.mark.parametrize(("what", "configure", "bad"), BAD, ids=[row[0] for row in BAD])
def test_bad_values_raise_config_error_naming_the_value(what, configure, bad):
    with pytest.raises(ConfigError) as info:
        configure(bad)
    assert repr(bad) in str(info.value), what
    assert isinstance(info.value, ValueError)  # ConfigError stays a ValueError for old callers


def test_the_message_names_the_parameter_and_what_is_accepted():
    with pytest.raises(ConfigError, match=r"^temperature must be a number within \[0, 2\], got True$"):
        v.temperature(True)
    with pytest.raises(ConfigError, match=r"^budget must be below 1,000,000,000,000,000 \(USD\)"):
        v.usd("budget", "1e15")
    with pytest.raises(ConfigError, match=r"^max_tokens must be a positive integer, got 0$"):
        v.positive_int("max_tokens", 0)
    with pytest.raises(ConfigError, match=r"^rpm must be a positive integer or None, got -1$"):
        v.optional_positive_int("rpm", -1)
    with pytest.raises(ConfigError, match=r"^warn_at must be a fraction within \(0, 1\]"):
        v.fraction("warn_at", 0)
    with pytest.raises(ConfigError, match=r"^cooldown must be a finite number >= 0, got -1$"):
        v.non_negative_number("cooldown", -1)
    with pytest.raises(ConfigError, match=r"^deadline must be a finite number > 0, got 0$"):
        v.positive_number("deadline", 0)
    with pytest.raises(ConfigError, match=r"^retries must be an integer >= 0, got 1.5$"):
        v.non_negative_number("retries", 1.5, integer=True)


def test_good_values_come_back_canonical():
    assert v.usd("x", 5) == Decimal(5) and isinstance(v.usd("x", "0.25"), Decimal)
    assert v.usd("x", 0.1) == Decimal("0.1")  # via str: no binary-float tail
    assert v.usd("x", Decimal("999999999999999.99")) == Decimal("999999999999999.99")
    assert v.temperature(0) == 0.0 and isinstance(v.temperature(1), float) and v.temperature(2) == 2.0
    assert v.fraction("f", 1) == 1.0
    assert v.positive_int("n", 3) == 3 and v.optional_positive_int("n", None) is None
    assert v.non_negative_number("n", 0) == 0 and v.non_negative_number("n", 2, integer=True) == 2
    assert v.positive_number("n", 0.5) == 0.5
    assert not math.isnan(v.non_negative_number("n", 1e300))


def test_model_parameter_checks_take_what_clients_take_and_never_repeat_a_secret():
    """The checks ModelSpec gives the parameters it knows (issue 26): good values come back as they are."""
    for good in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1", "http://user:pw@host:1/v1"):
        assert v.http_url("base_url", good) == good
    for good in (30, 2.5, None, (5, 30), [1, None]):
        assert v.timeout_seconds("timeout", good) == good
    for good in ("sk-x", None, print):
        assert v.api_key("api_key", good) is good
    with pytest.raises(ConfigError) as info:
        v.http_url("base_url", "user:hunter2secret@host/v1")  # no scheme: refused, its password not repeated
    assert "hunter2secret" not in str(info.value) and "***@host/v1" in str(info.value)
    for bad in ("30", True, 0, -1, NAN, INF, (), (5, "x"), {"read": 5}):
        with pytest.raises(ConfigError, match=r"timeout must be seconds > 0"):
            v.timeout_seconds("timeout", bad)
