"""Bedrock through ChatBedrockConverse and a real boto3 client: botocore's Stubber scripts Converse replies
and service errors; ConverseStream gets an event-stream body through botocore's own ``before-send`` hook
(the Stubber can't produce event streams), so botocore signs the request and parses the stream for real."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coffee_nb import AutoPicker, Budget, ErrorClass, ModelSpec, Policy, capture_records
from coffee_nb.errors._errors import classify
from coffee_nb.pricing._pricing import price_for

from . import shapes
from .conftest import POLICY
from .shapes import IN, OUT, RETRY_AFTER, TEXT

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402 - after the skip: botocore comes with boto3

MODEL = "amazon.nova-lite-v1:0"
SPEC = f"bedrock/{MODEL}"


@pytest.fixture
def client(keys):
    """A real bedrock-runtime client (fake credentials from ``keys``; nothing leaves the process)."""
    return boto3.client("bedrock-runtime", region_name="us-east-1")


@pytest.fixture
def stubber(client):
    with Stubber(client) as stub:
        yield stub


def _picker(client, *fallbacks: str, policy: Policy = POLICY, budget: Budget | None = None) -> AutoPicker:
    return AutoPicker(ModelSpec(model=SPEC, params={"client": client}), list(fallbacks), policy=policy, budget=budget)


def _expected_cost() -> Decimal:
    price = price_for("bedrock", MODEL)
    assert price is not None and price.source == "genai-prices"
    return price.cost(IN, OUT)


def test_converse_success_reads_usage_and_prices_it(client, stubber):
    shapes.stub_bedrock(stubber, "ok")
    with capture_records() as records:
        message = _picker(client).invoke("Say hello.")
    assert message.content == TEXT
    (record,) = records
    assert (record.outcome, record.input_tokens, record.output_tokens, record.tokens_estimated) == (
        "ok",
        IN,
        OUT,
        False,
    )
    assert record.cost == _expected_cost() and record.price_source == "genai-prices"
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("fault", "error_class", "action"),
    [
        ("rate_limit", ErrorClass.RATE_LIMIT, "retry"),
        ("server", ErrorClass.SERVER, "retry"),
        ("context_overflow", ErrorClass.CONTEXT_OVERFLOW, "fallback"),
        ("auth", ErrorClass.AUTH, "fallback"),
        ("content_filter", ErrorClass.CONTENT_FILTER, "raise"),
    ],
)
def test_faults_take_the_right_action(client, stubber, fault, error_class, action):
    shapes.stub_bedrock(stubber, fault)
    if action == "retry":
        shapes.stub_bedrock(stubber, "ok")
    budget = Budget(total=100, ledger="memory")
    llm = _picker(client, "sandbox/fast", budget=budget)
    with capture_records() as records:
        if action == "raise":
            with pytest.raises(Exception) as raised:  # the refusal, raised as is
                llm.invoke("Say hello.")
            assert classify(raised.value).error_class is ErrorClass.CONTENT_FILTER
            assert "guardrail_intervened" in str(raised.value)
        else:
            assert llm.invoke("Say hello.").content
    failed, *rest = records
    assert failed.outcome == "error" and failed.error_class == error_class, failed
    assert not failed.cost
    if action == "retry":
        assert [(r.model, r.outcome, r.cost) for r in rest] == [(SPEC, "ok", _expected_cost())]
    elif action == "fallback":
        assert [(r.model, r.role) for r in rest] == [("sandbox/fast", "fallback")]
    else:
        assert rest == []
    if fault == "rate_limit":  # Retry-After from the response's headers, waited out
        waited = (rest[0].started_at - failed.started_at).total_seconds() - failed.latency_s
        assert waited >= RETRY_AFTER * 0.9
    assert budget.status()["total"]["spent"] == sum((r.cost or Decimal(0)) for r in records if r.outcome == "ok")
    stubber.assert_no_pending_responses()


def test_a_guardrail_can_be_routed_around(client, stubber):
    shapes.stub_bedrock(stubber, "content_filter")
    llm = _picker(client, "sandbox/fast", policy=Policy(on_content_filter="fallback", backoff_base=0.001))
    with capture_records() as records:
        assert llm.invoke("Hi").content
    assert [r.error_class for r in records] == ["content_filter", None]


def test_converse_stream_reads_text_usage_and_cost(client):
    shapes.serve_converse_stream(client, [shapes.converse_stream_body()])
    with capture_records() as records:
        text = "".join(c.text for c in _picker(client).stream("Say hello."))
    assert text == TEXT
    (record,) = records
    assert record.streamed and (record.input_tokens, record.output_tokens) == (IN, OUT)
    assert record.cost == _expected_cost()


def test_an_error_event_mid_stream_is_classified_and_recovered(client):
    shapes.serve_converse_stream(client, [shapes.converse_stream_body(error_after="throttlingException")])
    with capture_records() as records:
        chunks = list(_picker(client, "sandbox/fast").stream("Say hello."))
    assert chunks[0].text or chunks[1].text  # text reached the caller before the error event
    *failed, last = records
    assert {(r.model, r.error_class) for r in failed} == {(SPEC, "rate_limit")}  # retried, then moved on
    assert (last.model, last.outcome) == ("sandbox/fast", "ok")
    # text was produced before each break: the runner counts it (an estimate: no usage event came)
    assert all(r.tokens_estimated and r.output_tokens > 0 for r in failed)


async def test_ainvoke(client, stubber):
    shapes.stub_bedrock(stubber, "ok")
    message = await _picker(client).ainvoke("Say hello.")
    assert message.content == TEXT


def test_no_region_is_an_error_of_the_attempt(monkeypatch, tmp_path, keys):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile region either
    llm = AutoPicker(SPEC, ["sandbox/fast"], policy=POLICY)  # constructing needs nothing
    with capture_records() as records:
        assert llm.invoke("Hi").content
    assert records[0].error_class == "auth"
    assert "AWS_REGION or AWS_DEFAULT_REGION" in records[0].error_message
    assert "region_name" in records[0].error_message


def test_the_client_is_built_without_retries_and_with_the_attempt_timeout(keys):
    from coffee_nb.invoke._models import Candidate

    cand = Candidate(SPEC, cooldown_after=1, cooldown=0, client_timeout=7.5)
    model = cand.chat_model()
    config = model.client.meta.config
    assert config.retries["total_max_attempts"] == 1
    assert config.read_timeout == 7.5 and config.connect_timeout == 7.5
    assert model.client.meta.region_name == "us-east-1"
