"""Every httpx-based provider, driven through AutoPicker over provider-shaped replies on the pooled clients:
a success with usage (read, priced), 429 with Retry-After (honoured, retried), 5xx (retried), context
overflow and a bad key (fall back), a refusal (raised with the provider's reason) — failed attempts are
never charged. Invoke, ainvoke and stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from coffee_nb import AutoPicker, Budget, ErrorClass, Policy, capture_records
from coffee_nb.errors._errors import classify
from coffee_nb.invoke._models import parse_spec
from coffee_nb.pricing._pricing import price_for

from . import shapes
from .conftest import POLICY
from .shapes import IN, OUT, RETRY_AFTER, TEXT


@dataclass(frozen=True)
class Case:
    spec: str
    host: str
    reply: Callable[[str, str], httpx.Response]
    catalog: str | None = None  # the model name prices go by, when not the spec's
    refuses: bool = True  # the provider withholds answers (a content filter) in a way we can script

    @property
    def model(self) -> str:
        return self.spec.split("/", 1)[1]


def _openai(kind: str, model: str) -> httpx.Response:
    return shapes.openai_like(kind, model)


def _groq(kind: str, model: str) -> httpx.Response:
    return shapes.openai_like(kind, model, host="groq")


CASES = {
    "anthropic": Case("anthropic/claude-3-5-haiku-latest", "api.anthropic.com", shapes.anthropic),
    "google": Case("google/gemini-2.5-flash", "generativelanguage.googleapis.com", shapes.google),
    "azure": Case("azure/gpt-4o-mini", "unit-test.openai.azure.com", shapes.azure),
    # Mistral's and Groq's APIs have no content filter that withholds an answer (no such finish reason)
    "mistral": Case("mistral/mistral-small-latest", "api.mistral.ai", shapes.mistral, refuses=False),
    "groq": Case("groq/llama-3.3-70b-versatile", "api.groq.com", _groq, refuses=False),
    "openrouter": Case("openrouter/openai/gpt-4o-mini", "openrouter.ai", _openai),
    "deepseek": Case("deepseek/deepseek-chat", "api.deepseek.com", _openai),
    "xai": Case("xai/grok-3-mini", "api.x.ai", _openai),
    "together": Case("together/meta-llama/Llama-3.3-70B-Instruct-Turbo", "api.together.xyz", _openai),
    "fireworks": Case("fireworks/accounts/fireworks/models/llama-v3p1-8b-instruct", "api.fireworks.ai", _openai),
    "openai-compatible": Case("openai-compatible/llama-3.1-8b-instruct", "vllm.test", _openai),
}
NAMES = list(CASES)

# fault -> (error class, what happens next)
FAULTS = {
    "rate_limit": (ErrorClass.RATE_LIMIT, "retry"),
    "server": (ErrorClass.SERVER, "retry"),
    "context_overflow": (ErrorClass.CONTEXT_OVERFLOW, "fallback"),
    "auth": (ErrorClass.AUTH, "fallback"),
    "content_filter": (ErrorClass.CONTENT_FILTER, "raise"),
}


def _expected_cost(case: Case) -> tuple[Decimal | None, str]:
    provider, model = parse_spec(case.spec)
    price = price_for(provider, case.catalog or model)
    return (None, "unpriced") if price is None else (price.cost(IN, OUT), "genai-prices")


def _check_success(case: Case, record, *, streamed: bool = False) -> None:
    cost, source = _expected_cost(case)
    assert record.outcome == "ok" and record.model == case.spec, record
    assert (record.input_tokens, record.output_tokens, record.tokens_estimated) == (IN, OUT, False)
    assert record.cost == cost and record.price_source == source
    assert record.streamed is streamed
    if case.spec.split("/")[0] != "openai-compatible":
        assert cost is not None and cost > 0  # genai-prices knows every example


def _picker(case: Case, budget: Budget | None = None, policy: Policy = POLICY) -> AutoPicker:
    return AutoPicker(case.spec, ["sandbox/fast"], policy=policy, budget=budget)


@pytest.mark.parametrize("name", NAMES)
def test_success_reads_usage_and_prices_it(name, wire, keys):
    case = CASES[name]
    wire.script(case.host, case.reply("ok", case.model))
    with capture_records() as records:
        message = _picker(case).invoke("Say hello.")
    assert message.content == TEXT
    assert message.response_metadata["coffee_nb"]["model"] == case.spec
    _check_success(case, records[-1])
    sent = [r for r in wire.requests if r.url.host == case.host]
    assert len(sent) == 1  # through coffee_nb's pool, once: no retries of the SDK's own


@pytest.mark.parametrize("name", NAMES)
def test_stream_reads_usage(name, wire, keys):
    case = CASES[name]
    wire.script(case.host, case.reply("stream", case.model))
    with capture_records() as records:
        text = "".join(str(c.content) for c in _picker(case).stream("Say hello."))
    assert text == TEXT
    _check_success(case, records[-1], streamed=True)


@pytest.mark.parametrize("name", NAMES)
async def test_ainvoke_rides_the_loops_pool(name, wire, keys):
    case = CASES[name]
    wire.install_loop()
    wire.script(case.host, case.reply("ok", case.model))
    with capture_records() as records:
        message = await _picker(case).ainvoke("Say hello.")
    assert message.content == TEXT
    _check_success(case, records[-1])


@pytest.mark.parametrize(
    ("name", "fault"), [(n, f) for n in NAMES for f in FAULTS if f != "content_filter" or CASES[n].refuses]
)
def test_faults_take_the_right_action(name, fault, wire, keys):
    case = CASES[name]
    error_class, action = FAULTS[fault]
    wire.script(case.host, case.reply(fault, case.model), case.reply("ok", case.model))
    budget = Budget(total=100, ledger="memory")
    with capture_records() as records:
        if action == "raise":
            with pytest.raises(Exception) as raised:  # the provider's own error, raised as is
                _picker(case, budget).invoke("Say hello.")
            assert classify(raised.value).error_class is ErrorClass.CONTENT_FILTER
            reason = str(raised.value)  # the provider's reason
            assert any(w in reason for w in ("content_filter", "content management", "SAFETY", "refusal")), reason
        else:
            assert _picker(case, budget).invoke("Say hello.").content
    failed, *rest = records
    assert failed.outcome == "error" and failed.error_class == error_class, failed
    assert not failed.cost  # a failed attempt is never charged
    if action == "retry":
        assert [(r.model, r.outcome) for r in rest] == [(case.spec, "ok")]
        _check_success(case, rest[0])
    elif action == "fallback":
        assert [(r.model, r.outcome, r.role) for r in rest] == [("sandbox/fast", "ok", "fallback")]
    else:
        assert rest == []
    if fault == "rate_limit":  # the provider's Retry-After was waited out (the backoff alone is 1 ms)
        waited = (rest[0].started_at - failed.started_at).total_seconds() - failed.latency_s
        assert waited >= RETRY_AFTER * 0.9
    spent = budget.status()["total"]["spent"]
    assert spent == sum((r.cost or Decimal(0)) for r in records if r.outcome == "ok")


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].refuses])
def test_content_filter_can_fall_back(name, wire, keys):
    case = CASES[name]
    wire.script(case.host, case.reply("content_filter", case.model))
    llm = _picker(case, policy=Policy(on_content_filter="fallback", backoff_base=0.001))
    with capture_records() as records:
        assert llm.invoke("Say hello.").content
    assert [(r.error_class, r.model) for r in records] == [("content_filter", case.spec), (None, "sandbox/fast")]


async def test_async_faults_fall_back_too(wire, keys):
    wire.install_loop()
    for name in ("google", "mistral", "openrouter"):
        case = CASES[name]
        wire.script(case.host, case.reply("auth", case.model))
        with capture_records() as records:
            assert (await _picker(case).ainvoke("Hi")).content
        assert [r.error_class for r in records] == ["auth", None], name


def test_the_key_goes_where_the_provider_reads_it_and_nowhere_else(wire, keys):
    for name, header in (
        ("anthropic", "authorization"),  # the anthropic SDK sends its key as a bearer token
        ("google", "x-goog-api-key"),
        ("azure", "api-key"),
        ("mistral", "authorization"),
        ("groq", "authorization"),
        ("openrouter", "authorization"),
    ):
        case = CASES[name]
        wire.script(case.host, case.reply("auth", case.model))
        with capture_records() as records:
            _picker(case).invoke("Hi")
        sent = next(r for r in reversed(wire.requests) if r.url.host == case.host)
        var = {"google": "GOOGLE_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}.get(name, f"{name.upper()}_API_KEY")
        assert keys[var] in sent.headers[header]
        for record in records:
            assert keys[var] not in repr(record)


def test_azure_deployment_is_in_the_url_and_its_model_prices_it(wire, keys):
    from coffee_nb import ModelSpec

    case = Case("azure/prod-chat", "unit-test.openai.azure.com", shapes.azure, catalog="gpt-4o-mini")
    wire.script(case.host, case.reply("ok", "gpt-4o-mini"))
    spec = ModelSpec(model=case.spec, params={"model": "gpt-4o-mini"})
    with capture_records() as records:
        AutoPicker(spec, policy=POLICY).invoke("Hi")
    sent = wire.requests[-1]
    assert sent.url.path == "/openai/deployments/prod-chat/chat/completions"
    assert sent.url.params["api-version"] == keys["OPENAI_API_VERSION"]
    _check_success(case, records[-1])


def test_ainvoke_and_invoke_share_nothing_but_the_pool(wire, keys):
    """One AutoPicker used from two event loops and from sync code: each call on its own pooled client."""
    case = CASES["google"]
    wire.script(case.host, case.reply("ok", case.model))
    llm = _picker(case)

    async def one() -> str:
        wire.install_loop()
        return str((await llm.ainvoke("Hi")).content)

    assert asyncio.run(one()) == asyncio.run(one()) == llm.invoke("Hi").content == TEXT


def test_gemini_after_groq_is_loaded(wire, keys):
    """The groq SDK relabels httpx's BaseTransport and Timeout as its own (``__module__ = "groq"``); the
    google-genai SDK picks its HTTP flavour by those labels. A Gemini model built after groq still rides
    coffee_nb's (httpx) pool."""
    import groq  # noqa: F401 - imported for its side effect

    case = CASES["google"]
    wire.script(case.host, case.reply("stream", case.model))
    assert "".join(str(c.content) for c in _picker(case).stream("Hi")) == TEXT


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectError])
def test_anthropic_over_the_pool_keeps_transport_errors_apart(error, wire, keys):
    """The anthropic SDK takes only httpx2 clients: its requests cross a bridge into the (httpx) pool. A
    timeout there must still reach the SDK as a timeout (and a refused connection as a connection error)."""
    case = CASES["anthropic"]

    def fail(request: httpx.Request) -> httpx.Response:
        raise error("scripted", request=request)

    wire.script(case.host, fail)
    with capture_records() as records:
        assert _picker(case).invoke("Hi").content  # the sandbox answers
    expected = ErrorClass.TIMEOUT if error is httpx.ReadTimeout else ErrorClass.CONNECTION
    assert next(r.error_class for r in records if r.model == case.spec) == expected
