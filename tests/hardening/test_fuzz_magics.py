"""Property: whatever a user types into the magics, only UsageError, BudgetExceededError or
AllModelsFailedError come out (all shown in one line by IPython, no traceback wall). A few thousand
examples here; ``pytest -m slow`` runs ten times more."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from coffee_nb import AllModelsFailedError, BudgetExceededError, sandbox

ALLOWED = (UsageError, BudgetExceededError, AllModelsFailedError)

# option words and values users type, good and bad; mixed with arbitrary text (surrogates included)
CELL_WORDS = [
    *("-s", "--system", "-t", "--temperature", "-m", "--max-tokens", "-f", "--format", "-o", "--out"),
    *("--no-stream", "--chat", "--no-cache", "--dry-run", "--budget", "--next-cell", "--", "-", "-h"),
    *("sandbox/fast", "sandbox/echo", "sandbox/limited", "sandbox/fast,sandbox/echo", "x/y", "gpt-4o", "openai/"),
    *("0", "0.5", "2", "-1", "nan", "inf", "-inf", "1e309", "1e1000000", "10000000000000000000000", "True"),
    *("json", "code", "text", "html", "markdown", "yaml", "v", "class", "_", "0.0000001", "$1", "$"),
    *("'a b'", '"a b"', "'", '"', "\\", "{", "}", "{x}", "\ud800", "\x00", "é", "🙂", "--bogus", "=", "-t=1"),
]
CONFIG_WORDS = [
    *("--models", "--system", "--temperature", "--max-tokens", "--hourly", "--daily", "--weekly", "--monthly"),
    *("--total", "--soft", "--cache", "--ledger", "on", "off", "memory", "sandbox/fast,sandbox/echo", "nope/x"),
    *("5", "0", "-3", "nan", "1e1000000", "abc", "'Be kind'", "'", "\ud800", "redis://127.0.0.1:1/0", "unix://"),
]
# (no "hang": it would only measure the timeouts; tests/integration/test_fault_matrix.py covers it)
FAULTS = ["", "429", "500", "auth", "malformed", "content_filter", "context_overflow", "reset", "stream_error"]

text = st.text(st.characters(codec=None), max_size=12)
cell_line = st.lists(st.one_of(st.sampled_from(CELL_WORDS), text), max_size=7).map(" ".join)
config_line = st.lists(st.one_of(st.sampled_from(CONFIG_WORDS), text), max_size=6).map(" ".join)
cell_body = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["{x}", "{x.y}", "{__class__}", "{os.environ['HOME']}", "{In[1]}", "{{x}}", "  \n", "\ud800"]),
)
action = st.one_of(
    st.tuples(st.just("cell"), cell_line, cell_body, st.sampled_from(FAULTS)),
    st.tuples(st.just("config"), config_line, st.just(""), st.just("")),
    st.tuples(st.sampled_from(["history", "reset", "budget"]), text, st.just(""), st.just("")),
)


def _run(ip, kind: str, line: str, body: str, fault: str) -> None:
    if fault:
        sandbox.inject("sandbox/fast", [fault])
    try:
        with capture_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "cell":
                ip.run_cell_magic("llm", line, body)
            else:
                ip.run_line_magic(f"llm_{kind}", line)
    except ALLOWED:
        pass
    finally:
        sandbox.clear_faults()


def _prepare(ip) -> None:
    import coffee_nb

    # fuzzed --ledger values never create files here; short limits keep a stuck stream from stalling the run
    policy = coffee_nb.Policy(deadline=5, attempt_timeout=2, backoff_base=0, backoff_cap=0)
    coffee_nb.configure(ledger="memory", policy=policy)
    ip.user_ns.update({"x": "ex", "os": __import__("os")})
    sandbox.set_latency_scale(0)


@settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(step=action)
def test_only_one_line_errors_escape_the_magics(ip, step):
    _prepare(ip)
    _run(ip, *step)


@pytest.mark.slow
@settings(
    max_examples=16000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(step=action)
def test_only_one_line_errors_escape_the_magics_at_length(ip, step):
    _prepare(ip)
    _run(ip, *step)
