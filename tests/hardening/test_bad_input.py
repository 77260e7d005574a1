"""Every bad value from issue 14, refused when it is given (not on the first call), with a ConfigError (a
ValueError) that repeats the value; and a refused configuration changes nothing."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from IPython.core.error import UsageError

import coffee_nb
from coffee_nb import AutoPicker, BudgetExceededError, ConfigError, ModelSpec, register_price
from coffee_nb._shared._validate import price_rate, spec_name
from coffee_nb.budget import Budget, Limit
from coffee_nb.session._session import Session
from coffee_nb.testing import ScriptedChatModel

NAN, INF = float("nan"), float("inf")


def _under_a_file(tmp_path):
    (tmp_path / "plain-file").write_text("not a directory")
    return str(tmp_path / "plain-file" / "ledger.sqlite3")


# (what, a callable configuring with the bad value, the bad value, text the message must hold)
BAD = [
    # accepted before, crashed on the first call
    ("Budget daily 1e296", lambda x: Budget(daily=x, ledger="memory"), 1e296, "1e+296"),
    ("Budget daily Decimal 1e999", lambda x: Budget(daily=x, ledger="memory"), Decimal("1e999"), "1E+999"),
    ("Limit Decimal 1e999", lambda x: Limit(x), Decimal("1e999"), "1E+999"),
    ("configure daily 1e1000000", lambda x: Session().configure(daily=x), Decimal("1e1000000"), "1E+1000000"),
    ("Budget redis refusing", lambda x: Budget(daily=1, ledger=x), "redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
    ("Budget redis unix no path", lambda x: Budget(daily=1, ledger=x), "unix://", "unix://"),
    ("AutoPicker budget int", lambda x: AutoPicker("sandbox/fast", budget=x), 5, "got 5"),
    ("AutoPicker metrics int", lambda x: AutoPicker("sandbox/fast", metrics=x), 5, "not a record sink: 5"),
    ("AutoPicker on_record str", lambda x: AutoPicker("sandbox/fast", on_record=x), "log", "'log'"),
    ("AutoPicker policy str", lambda x: AutoPicker("sandbox/fast", policy=x), "x", "'x'"),
    ("configure models int", lambda x: Session().configure(models=x), 5, "got 5"),
    ("configure system int", lambda x: Session().configure(system=x), 5, "got 5"),
    ("configure metrics int", lambda x: Session().configure(metrics=x), 5, "got 5"),
    ("configure budget int", lambda x: Session().configure(budget=x), 5, "got 5"),
    ("configure policy str", lambda x: Session().configure(policy=x), "x", "'x'"),
    ("configure cache str", lambda x: Session().configure(cache=x), "no", "'no'"),
    ("configure hard str", lambda x: Session().configure(hard=x), "no", "'no'"),
    ("ModelSpec params int", lambda x: ModelSpec(model="sandbox/fast", params=x), 5, "got 5"),
    ("ModelSpec params non-str key", lambda x: ModelSpec(model="sandbox/fast", params=x), {1: 2}, "{1: 2}"),
    ("ModelSpec model int", lambda x: ModelSpec(model=x), 5, "got 5"),
    ("ModelSpec model no slash", lambda x: ModelSpec(model=x), "nospecslash", "'nospecslash'"),
    ("ModelSpec unknown provider", lambda x: ModelSpec(model=x), "nope/model", "'nope'"),
    ("ModelSpec name int", lambda x: ModelSpec(model="sandbox/fast", name=x), 7, "got 7"),
    ("Budget clock str", lambda x: Budget(daily=1, clock=x, ledger="memory"), "x", "'x'"),
    ("Budget timezone int", lambda x: Budget(daily=1, timezone=x, ledger="memory"), 5, "got 5"),
    ("Budget on_warning str", lambda x: Budget(daily=1, on_warning=x, ledger="memory"), "print", "'print'"),
    ("Budget ledger sqlite:////", lambda x: Budget(daily=1, ledger=x), "sqlite:////", "'sqlite:////'"),
    ("AutoPicker temperature -1", lambda x: AutoPicker("sandbox/fast", temperature=x), -1, "-1"),
    ("AutoPicker temperature 5", lambda x: AutoPicker("sandbox/fast", temperature=x), 5, "got 5"),
    ("AutoPicker temperature nan", lambda x: AutoPicker("sandbox/fast", temperature=x), NAN, "nan"),
    ("AutoPicker temperature inf", lambda x: AutoPicker("sandbox/fast", temperature=x), INF, "inf"),
    ("configure temperature -1", lambda x: Session().configure(temperature=x), -1, "-1"),
    ("configure temperature inf", lambda x: Session().configure(temperature=x), INF, "inf"),
    ("AutoPicker max_tokens 1e20", lambda x: AutoPicker("sandbox/fast", max_tokens=x), 10**20, str(10**20)),
    ("configure max_tokens 1e20", lambda x: Session().configure(max_tokens=x), 10**20, str(10**20)),
    ("AutoPicker timeout nan", lambda x: AutoPicker("sandbox/fast", timeout=x), NAN, "nan"),
    ("AutoPicker stop str", lambda x: AutoPicker("sandbox/fast", stop=x), "END", "'END'"),
    # accepted silently before
    (
        "register_price context_window True",
        lambda x: register_price("openai/x", input=1, output=1, context_window=x),
        True,
        "True",
    ),
    ("Budget strict 'no'", lambda x: Budget(daily=1, strict=x, ledger="memory"), "no", "'no'"),
    ("Budget hard 1", lambda x: Budget(daily=1, hard=x, ledger="memory"), 1, "got 1"),
    ("Limit hard 'x'", lambda x: Limit(1, hard=x), "x", "'x'"),
    ("Budget Limit hard 'x'", lambda x: Budget(daily=Limit(1, hard=x), ledger="memory"), "x", "'x'"),
    ("configure temperature True", lambda x: Session().configure(temperature=x), True, "True"),
    ("AutoPicker temperature True", lambda x: AutoPicker("sandbox/fast", temperature=x), True, "True"),
    ("AutoPicker timeout True", lambda x: AutoPicker("sandbox/fast", timeout=x), True, "True"),
    ("AutoPicker max_retries True", lambda x: AutoPicker("sandbox/fast", max_retries=x), True, "True"),
    ("AutoPicker streaming 'yes'", lambda x: AutoPicker("sandbox/fast", streaming=x), "yes", "'yes'"),
    # the checks register_price is to use (see PRICING below)
    ("price_rate None", lambda x: price_rate("input", x), None, "None"),
    ("spec_name no slash", lambda x: spec_name("model", x), "nospecslash", "'nospecslash'"),
    ("spec_name trailing space", lambda x: spec_name("model", x), "openai/x ", "'openai/x '"),
]


@pytest.mark.parametrize(("what", "configure", "bad", "named"), BAD, ids=[row[0] for row in BAD])
def test_bad_values_are_refused_when_given_naming_the_value(what, configure, bad, named):
    with pytest.raises(ConfigError) as info:
        configure(bad)
    assert isinstance(info.value, ValueError), what
    assert named in str(info.value), (what, str(info.value))
    assert "\n" not in str(info.value).strip(), "one line, not a wall"


# -- issue 26: the value as given, the part of it that is wrong, and what to change ---------------------
# (what, a callable making it, texts the message must hold)
GIVEN = [
    (
        "redis option not a number",
        lambda: Budget(daily=1, ledger="redis://127.0.0.1:1/0?socket_timeout=abc"),
        ["'redis://127.0.0.1:1/0?socket_timeout=abc'", "socket_timeout='abc' is not a number", "?socket_timeout=5"],
    ),
    (
        "redis timeout not > 0",
        lambda: Budget(daily=1, ledger="redis://127.0.0.1:1/0?socket_connect_timeout=0"),
        ["socket_connect_timeout='0'", "> 0", "leave it out"],
    ),
    (
        "redis option unknown",
        lambda: Budget(daily=1, ledger="redis://127.0.0.1:1/0?sokcet_timeout=5"),
        ["'redis://127.0.0.1:1/0?sokcet_timeout=5'", "'sokcet_timeout' is not an option", "remove it"],
    ),
    (
        "redis flag not a flag",
        lambda: Budget(daily=1, ledger="redis://127.0.0.1:1/0?retry_on_timeout=maybe"),
        ["retry_on_timeout='maybe'", "?retry_on_timeout=true"],
    ),
    (
        "redis database not a number",
        lambda: Budget(daily=1, ledger="redis://127.0.0.1:1/zero"),
        ["'redis://127.0.0.1:1/zero'", "database number", "'zero'", "/0"],
    ),
    (
        "sqlite URL of the root directory",
        lambda: Budget(daily=1, ledger="sqlite:////"),
        ["ledger 'sqlite:////'", "directory '/'", "'sqlite:////ledger.sqlite3'"],
    ),
    (
        "sqlite URL of a directory",
        lambda: Budget(daily=1, ledger="sqlite:///data/"),
        ["ledger 'sqlite:///data/'", "'sqlite:///data/ledger.sqlite3'"],
    ),
    (
        "base_url int",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"base_url": 5}),
        ["params['base_url'] for openai/gpt-4o-mini", "http(s) URL", "'http://127.0.0.1:8000/v1'", "got 5"],
    ),
    (
        "base_url without a scheme",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"base_url": "localhost:8000/v1"}),
        ["params['base_url']", "got 'localhost:8000/v1'"],
    ),
    (
        "openai_api_base int",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"openai_api_base": 8000}),
        ["params['openai_api_base']", "got 8000"],
    ),
    (
        "timeout str",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"timeout": "30s"}),
        ["params['timeout'] for openai/gpt-4o-mini", "seconds > 0", "got '30s'"],
    ),
    (
        "request_timeout negative",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"request_timeout": -1}),
        ["params['request_timeout']", "got -1"],
    ),
    (
        "default_request_timeout nan",
        lambda: ModelSpec(model="anthropic/claude-3-5-haiku-latest", params={"default_request_timeout": NAN}),
        ["params['default_request_timeout']", "got nan"],
    ),
    (
        "max_tokens str",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"max_tokens": "100"}),
        ["params['max_tokens'] for openai/gpt-4o-mini", "positive integer", "got '100'"],
    ),
    (
        "max_completion_tokens zero",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"max_completion_tokens": 0}),
        ["params['max_completion_tokens']", "got 0"],
    ),
    (
        "temperature str",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"temperature": "hot"}),
        ["params['temperature'] for openai/gpt-4o-mini", "within [0, 2]", "got 'hot'"],
    ),
    (
        "api_key empty",
        lambda: ModelSpec(model="openai/gpt-4o-mini", params={"api_key": ""}),
        ["params['api_key'] for openai/gpt-4o-mini", "empty", "leave it out"],
    ),
]


@pytest.mark.parametrize(("what", "make", "named"), GIVEN, ids=[row[0] for row in GIVEN])
def test_a_bad_ledger_url_or_model_parameter_is_named_as_given_with_what_to_change(what, make, named):
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert all(text in message for text in named), (what, message)
    assert "\n" not in message.strip(), "one line, not a wall"


@pytest.mark.parametrize(
    "key", [12345678901234567890, b"sk-proj-CANARYbytes0123456789", {"value": "sk-proj-CANARYdict0123456789"}]
)
@pytest.mark.parametrize("name", ["api_key", "openai_api_key", "anthropic_api_key"])
def test_a_key_of_the_wrong_type_is_refused_without_showing_it(name, key):
    with pytest.raises(ConfigError) as info:
        ModelSpec(model="openai/gpt-4o-mini", params={name: key})
    message = str(info.value)
    assert f"params[{name!r}]" in message and f"type {type(key).__name__}" in message and "not shown" in message
    for secret in ("12345678901234567890", "CANARY"):
        assert secret not in message


def test_a_redis_url_password_stays_out_of_the_message_about_its_options():
    with pytest.raises(ConfigError) as info:
        Budget(daily=1, ledger="redis://:hunter2secret@127.0.0.1:1/0?socket_timeout=soon")
    assert "hunter2secret" not in str(info.value) and "socket_timeout='soon'" in str(info.value)


def test_model_parameters_of_the_right_types_are_taken_and_work():
    from coffee_nb.sandbox._running import server

    url = server().url  # the sandbox speaks OpenAI's API: a real ChatOpenAI is built from these
    spec = ModelSpec(
        model="openai/fast",
        params={
            "base_url": url,
            "api_key": "sandbox",
            "timeout": 30,
            "max_tokens": 40,
            "temperature": 0.2,
            "max_retries": 0,
        },
    )
    assert AutoPicker(spec).invoke("hello").content
    for good in ({"timeout": None}, {"timeout": (5, 30)}, {"api_key": lambda: "key"}, {"request_timeout": 2.5}):
        ModelSpec(model="openai/gpt-4o-mini", params=good)


def test_a_ledger_path_under_a_file_names_the_path(tmp_path):
    path = _under_a_file(tmp_path)
    with pytest.raises(ConfigError, match="a file stands where its directory should be") as info:
        Budget(daily=1, ledger=path)
    assert path in str(info.value)


PRICING = [
    ("input and output None", lambda: register_price("openai/x", input=None, output=None), "None"),
    ("no slash", lambda: register_price("nospecslash", input=1, output=1), "'nospecslash'"),
    ("trailing space", lambda: register_price("openai/x ", input=1, output=1), "'openai/x '"),
]


@pytest.mark.parametrize(("what", "call", "named"), PRICING, ids=[row[0] for row in PRICING])
def test_register_price_refuses_what_would_silently_do_nothing_or_look_free(what, call, named):
    with pytest.raises(ConfigError) as info:
        call()
    assert named in str(info.value)


def test_modelspec_is_checked_when_made_not_when_the_picker_is_built():
    with pytest.raises(ConfigError, match="rpm for sandbox/fast"):
        ModelSpec(model="sandbox/fast", rpm=0)
    spec = ModelSpec(model="sandbox/fast", params={"base_url": "http://127.0.0.1:1/v1"})
    assert spec.params == {"base_url": "http://127.0.0.1:1/v1"}


def test_a_per_call_max_tokens_too_large_is_an_error_naming_it_not_an_overflow():
    budget = Budget(daily=5, ledger="sqlite")
    with pytest.raises(coffee_nb.AllModelsFailedError, match=r"~10{12}\d+ tokens"):  # a known window: over it
        AutoPicker("sandbox/fast", budget=budget).invoke("hi", max_tokens=10**20)
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    unknown_window = ModelSpec(model=ScriptedChatModel(), name="fake/scripted")
    with pytest.raises(BudgetExceededError, match="lower max_tokens"):  # no window known: the budget says no
        AutoPicker(unknown_window, budget=budget).invoke("hi", max_tokens=10**20)
    assert budget.spent("daily") == 0 and budget.status()["daily"]["reserved"] == 0
    budget.close()


def test_absurd_usage_from_a_provider_is_recorded_capped_not_lost():
    usage = {"input_tokens": 10**20, "output_tokens": 10**20, "total_tokens": 2 * 10**20}
    from langchain_core.messages import AIMessage

    model = ScriptedChatModel(script=[AIMessage("fine", usage_metadata=usage)])
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    budget = Budget(total=10**9, ledger="memory")
    answer = AutoPicker(ModelSpec(model=model, name="fake/scripted"), budget=budget).invoke("x")
    assert answer.content == "fine"  # the answer arrives
    assert budget.spent("total") == Decimal(1_000_000)  # the cost is recorded, at the per-call cap


# -- a configuration that fails changes nothing ---------------------------------------------------------
def _state(session: Session) -> tuple:
    budget = session.budget
    return (
        session.models,
        session.temperature,
        session.max_tokens,
        session.system,
        session.cache_enabled,
        budget,
        [(r.label, r.amount) for r in budget.rules],
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"ledger": "sqlite:////"},
        {"daily": "lots"},
        {"daily": Decimal("1e1000000")},
        {"ledger": "redis://127.0.0.1:1/0"},
        {"temperature": NAN},
        {"cache": "off"},
        {"metrics": 5},
    ],
    ids=lambda d: next(iter(d)),
)
def test_a_refused_configure_changes_nothing(bad):
    session = Session()
    session.configure(models=["sandbox/fast"], temperature=0.5, daily=3, ledger="memory")
    before = _state(session)
    change = {"models": ["sandbox/echo"], "temperature": 1.0, "max_tokens": 9, "system": "new", "hourly": 1}
    with pytest.raises(ConfigError):
        session.configure(**{**change, **bad})
    assert _state(session) == before
    session.reset()


def test_a_refused_llm_config_changes_nothing_and_names_the_value(ip, tmp_path):
    ip.run_line_magic("llm_config", "--models sandbox/fast --temperature 0.5 --daily 3 --ledger memory")
    session = coffee_nb.get_session()
    before = _state(session)
    for line in (
        "--models sandbox/echo --temperature 1 --daily 1e1000000",
        f"--models sandbox/echo --temperature 1 --ledger {_under_a_file(tmp_path)}",
        "--models sandbox/echo --temperature nan",
        "--models sandbox/echo --max-tokens 100000000000000000000",
    ):
        with pytest.raises(UsageError) as info:
            ip.run_line_magic("llm_config", line)
        assert _state(session) == before, line
        assert line.split()[-1] in str(info.value), str(info.value)
    ip.run_line_magic("llm_budget", "")  # the installed budget still works


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-t nan", r"within \[0, 2\], got nan"),
        ("-t inf", r"got inf"),
        ("-t -1", r"got -1"),
        ("-m 100000000000000000000", "up to 1,000,000,000"),
        ("--budget 1e1000000", "1e1000000"),
        ("--budget nan", "nan"),
        ("--budget -1", "-1"),
        ("-o class", "variable name"),
    ],
)
def test_bad_cell_options_are_usage_errors_naming_the_value(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("llm", f"sandbox/fast {line}", "prompt")


def test_temperatures_that_are_numbers_but_not_finite_never_reach_a_model():
    for bad in (NAN, INF, -INF):
        assert not math.isfinite(bad)
        with pytest.raises(ConfigError):
            AutoPicker("sandbox/fast", temperature=bad)
