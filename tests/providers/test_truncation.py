"""Issue 15 item 7: an answer cut at the output limit says so for every provider. Each provider reports it
in its own words and key (``finish_reason: length``, ``stop_reason: max_tokens``, ``MAX_TOKENS``,
``stopReason: max_tokens``, ``done_reason: length``); the summary reads one word, ``length``, and the
footer "stopped at the N-token limit". Driven through the real SDKs over provider-shaped replies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage

from coffee_nb import AutoPicker, CallSummary, ModelSpec, capture_records
from coffee_nb._shared._finish import finish_reason
from coffee_nb.session._answer import Answer

from . import shapes
from .shapes import IN, OUT, TEXT
from .test_http_providers import CASES, NAMES, _picker


def _google_cut(model: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "candidates": [
                {"content": {"parts": [{"text": TEXT}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": IN, "candidatesTokenCount": OUT, "totalTokenCount": IN + OUT},
            "modelVersion": model,
            "responseId": "r1",
        },
    )


def _anthropic_cut(model: str) -> httpx.Response:
    return httpx.Response(200, json=shapes._anthropic_message(model, TEXT, "max_tokens"))


def cut_reply(name: str, model: str) -> httpx.Response:
    """``name``'s reply to a call that hit ``max_tokens``, as that provider sends it."""
    if name == "google":
        return _google_cut(model)
    if name == "anthropic":
        return _anthropic_cut(model)
    return shapes.openai_ok(model, finish="length")  # the OpenAI wire format (Mistral's too)


def _footer(message: AIMessage) -> str:
    meta = message.response_metadata["coffee_nb"]
    answer = Answer(
        message=message,
        model=meta["model"],
        provider=meta["provider"],
        attempts=meta["attempts"],
        cost=CallSummary.of(message).cost,
        price_source=meta["price_source"],
        tokens=meta["tokens"],
        latency_s=meta["latency_s"],
    )
    return answer.footer()


@pytest.mark.parametrize("name", NAMES)
def test_every_http_provider_says_the_output_limit_was_hit(name, wire, keys):
    case = CASES[name]
    wire.script(case.host, cut_reply(name, case.model))
    with capture_records():
        message = _picker(case).invoke("Say hello.", max_tokens=OUT)
    summary = CallSummary.of(message)
    assert summary.finish_reason == "length" and summary.truncated and summary["finish_reason"] == "length"
    assert f"stopped at the {OUT}-token limit" in _footer(message)


@pytest.mark.parametrize("name", NAMES)
def test_a_complete_answer_is_not_called_truncated(name, wire, keys):
    case = CASES[name]
    wire.script(case.host, case.reply("ok", case.model))
    message = _picker(case).invoke("Say hello.")
    summary = CallSummary.of(message)
    assert summary.finish_reason == "stop" and not summary.truncated
    assert "token limit" not in _footer(message)


def test_bedrock_says_it_too(keys):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("converse", shapes.converse_ok(stop="max_tokens"))
        picker = AutoPicker(ModelSpec(model="bedrock/amazon.nova-lite-v1:0", params={"client": client}))
        message = picker.invoke("Say hello.", max_tokens=OUT)
    assert message.response_metadata["coffee_nb"]["finish_reason"] == "length"
    assert f"stopped at the {OUT}-token limit" in _footer(message)


def test_the_sandbox_streamed_says_it_too():
    chunks = list(AutoPicker("sandbox/echo").stream("one two three four five six", max_tokens=3))
    summary = next(CallSummary.of(c) for c in chunks if "coffee_nb" in c.response_metadata)
    assert summary.finish_reason == "length"


@pytest.mark.parametrize(
    ("metadata", "word"),
    [
        ({"finish_reason": "length"}, "length"),  # OpenAI & compatible, Mistral, Groq
        ({"stop_reason": "max_tokens"}, "length"),  # Anthropic
        ({"finish_reason": "MAX_TOKENS"}, "length"),  # Gemini
        ({"stopReason": "max_tokens"}, "length"),  # Bedrock Converse
        ({"done_reason": "length"}, "length"),  # Ollama
        ({"stop_reason": "end_turn"}, "stop"),
        ({"finish_reason": "FinishReason.STOP"}, "stop"),
        ({"finish_reason": "tool_calls"}, "tool_calls"),
        ({"finish_reason": "something_new"}, "something_new"),
        ({}, None),
    ],
)
def test_each_providers_word_reads_as_one(metadata: dict[str, Any], word: str | None):
    assert finish_reason(metadata) == word
