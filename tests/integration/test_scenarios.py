"""The seed's real-API scenarios, through AutoPicker → ChatOpenAI → HTTP → the sandbox."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from coffee_nb import AutoPicker, CallSummary, Policy, capture_records, count_message_tokens, sandbox
from coffee_nb.pricing._pricing import price_for


def test_simple_invoke():
    msg = AutoPicker("sandbox/fast").invoke("Say hello")
    assert "Say hello" in msg.content
    meta = msg.response_metadata["coffee_nb"]
    assert meta["model"] == "sandbox/fast" and meta["role"] == "primary"
    assert msg.response_metadata["model_name"] == "fast"  # the server's own report survives


def test_batch_of_prompts():
    prompts = [f"prompt number {i}" for i in range(6)]
    answers = AutoPicker("sandbox/fast", ["sandbox/smart"]).batch(prompts)
    assert [f"prompt number {i}" in a.content for i, a in enumerate(answers)] == [True] * 6


def test_primary_succeeds_without_fallback():
    before = sandbox.server().requests["smart"]
    with capture_records() as records:
        AutoPicker("sandbox/fast", ["sandbox/smart"]).invoke("hi")
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [("sandbox/fast", "primary", "ok")]
    assert sandbox.server().requests["smart"] == before  # the fallback was never called
    assert records[0].tokens_estimated is False


def test_token_estimate_matches_server_usage():
    messages = [SystemMessage("You are terse."), HumanMessage("Count these tokens, please: ünïcödé 🎉 {json: 1}")]
    estimate = count_message_tokens(messages, "sandbox", "fast")
    msg = AutoPicker("sandbox/fast").invoke(messages)
    assert msg.usage_metadata["input_tokens"] == estimate.tokens  # same tokenizer, same framing
    assert estimate.exact


def test_cost_recorded_and_positive():
    with capture_records() as records:
        msg = AutoPicker("sandbox/smart").invoke("What does this cost?")
    record = records[-1]
    price = price_for("sandbox", "smart")
    expected = price.cost(record.input_tokens, record.output_tokens)
    assert record.cost == expected > 0
    assert record.price_source == "sandbox"
    assert CallSummary.of(msg).cost == expected and msg.response_metadata["coffee_nb"]["cost"] == float(expected)
    assert isinstance(record.cost, Decimal)


def test_invalid_model_name_falls_back():
    with capture_records() as records:
        msg = AutoPicker("sandbox/does-not-exist", ["sandbox/fast"]).invoke("hi")
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert records[0].error_class == "not_found" and records[0].cost is None


def test_latency_recorded_within_tolerance_of_wall_clock():
    sandbox.set_latency_scale(1.0)  # sandbox/smart: ~300 ms median
    llm = AutoPicker("sandbox/smart")
    llm.invoke("warm up")
    with capture_records() as records:
        start = time.perf_counter()
        llm.invoke("how long?")
        wall = time.perf_counter() - start
    latency = records[-1].latency_s
    assert latency > 0.05
    assert wall * 0.8 <= latency <= wall  # the attempt is most of the call, never more than it
    assert records[-1].started_at.tzinfo is not None


def test_several_sequential_calls():
    llm = AutoPicker("sandbox/fast")
    with capture_records() as records:
        answers = [llm.invoke(f"call {i}").content for i in range(5)]
    assert len({r.call_id for r in records}) == 5
    assert all(f"call {i}" in a for i, a in enumerate(answers))


def test_streaming_reports_usage_and_ttft():
    sandbox.set_latency_scale(1.0)
    with capture_records() as records:
        chunks = list(AutoPicker("sandbox/fast").stream("stream it"))
    text = "".join(c.content for c in chunks)
    assert "stream it" in text
    record = records[-1]
    assert record.streamed and record.ttft_s is not None and 0 < record.ttft_s <= record.latency_s
    assert record.output_tokens > 10 and not record.tokens_estimated  # usage came from the server


def test_context_window_precheck_uses_sandbox_windows():
    long_prompt = "word " * 20_000  # ~20k tokens: too big for sandbox/fast (16k), fits sandbox/smart (200k)
    with capture_records() as records:
        msg = AutoPicker("sandbox/fast", ["sandbox/smart"]).invoke(long_prompt)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/smart"
    assert records[0].outcome == "skipped" and records[0].error_class == "context_overflow"


def test_server_context_overflow_when_window_unknown_to_client():
    # The client thinks the window is huge; the server knows better and says context_length_exceeded.
    from coffee_nb import ModelSpec

    llm = AutoPicker(ModelSpec(model="sandbox/fast", context_window=1_000_000), ["sandbox/smart"])
    with capture_records() as records:
        msg = llm.invoke("word " * 20_000)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/smart"
    assert records[0].outcome == "error" and records[0].error_class == "context_overflow"


def test_pooled_http_client_is_reused():
    from coffee_nb import get_http_client

    llm = AutoPicker("sandbox/fast")
    llm.invoke("one")
    model = llm.candidates[0].chat_model()
    assert model.root_client._client is get_http_client()


def test_flaky_model_is_survived_by_retries():
    policy = Policy(backoff_base=0.001, backoff_cap=0.002)
    llm = AutoPicker("sandbox/flaky", ["sandbox/fast"], policy=policy)
    with capture_records() as records:
        answers = llm.batch([f"q{i}" for i in range(20)])
    assert len(answers) == 20
    assert any(r.outcome == "error" for r in records)  # it really is flaky
    assert all(r.cost is None for r in records if r.outcome == "error")


@pytest.mark.parametrize("n", [1, 3])
def test_scripted_replies(n):
    sandbox.script_replies("sandbox/echo", [f"scripted {i}" for i in range(n)])
    llm = AutoPicker("sandbox/echo")
    assert [llm.invoke("x").content for _ in range(n)] == [f"scripted {i}" for i in range(n)]
    assert llm.invoke("back to echo").content == "back to echo"
