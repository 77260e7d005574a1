"""Parameters a provider does not take are translated or dropped per provider, never a TypeError or a 400:
the rules as data, then the real clients' requests when called with the translated kwargs."""

from __future__ import annotations

import json

import httpx
import pytest

from coffee_nb import AutoPicker, ModelSpec, capture_records
from coffee_nb.invoke._models import Candidate

from . import shapes
from .conftest import POLICY

CHAIN_KWARGS = {"max_tokens": 5, "temperature": 0.2, "top_k": 3, "seed": 7}


def _cand(spec: str | ModelSpec) -> Candidate:
    return Candidate(spec, cooldown_after=1, cooldown=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai/gpt-4o-mini", {"max_tokens": 5, "temperature": 0.2, "seed": 7}),  # no top_k in Chat Completions
        ("openai/o3-mini", {"max_tokens": 5, "seed": 7}),  # reasoning models refuse temperature
        ("openai/gpt-5-mini", {"max_tokens": 5, "seed": 7}),
        ("openai/gpt-5-chat-latest", {"max_tokens": 5, "temperature": 0.2, "seed": 7}),
        ("anthropic/claude-3-5-haiku-latest", {"max_tokens": 5, "temperature": 0.2, "top_k": 3}),
        ("google/gemini-2.5-flash", {"max_output_tokens": 5, "temperature": 0.2, "top_k": 3, "seed": 7}),
        ("bedrock/amazon.nova-lite-v1:0", {"max_tokens": 5, "temperature": 0.2}),
        ("mistral/mistral-small-latest", {"max_tokens": 5, "temperature": 0.2, "random_seed": 7}),
        ("groq/llama-3.3-70b-versatile", {"max_tokens": 5, "temperature": 0.2, "seed": 7}),
        ("deepseek/deepseek-reasoner", {"max_tokens": 5, "seed": 7}),
        ("openrouter/openai/o3-mini", {"max_tokens": 5, "seed": 7, "extra_body": {"top_k": 3}}),
        ("openai-compatible/qwen3", {"max_tokens": 5, "temperature": 0.2, "seed": 7, "extra_body": {"top_k": 3}}),
    ],
)
def test_the_chains_parameters_in_each_providers_spelling(spec, expected):
    assert _cand(spec).call_kwargs(CHAIN_KWARGS) == expected


def test_explicit_spellings_and_other_kwargs_pass_through():
    google = _cand("google/gemini-2.5-flash")
    assert google.call_kwargs({"max_tokens": 5, "max_output_tokens": 9}) == {"max_output_tokens": 9}
    assert google.call_kwargs({"response_mime_type": "application/json"}) == {"response_mime_type": "application/json"}
    xai = _cand("xai/grok-4")
    assert xai.call_kwargs({"presence_penalty": 0.5, "temperature": 0.1}) == {"temperature": 0.1}
    azure = _cand(ModelSpec(model="azure/prod", params={"model": "o4-mini"}))  # by the deployment's model
    assert azure.call_kwargs({"temperature": 0.2, "max_tokens": 5}) == {"max_completion_tokens": 5}


def test_ollama_options_keep_the_models_own_and_the_stop_sequences():
    from langchain_ollama import ChatOllama

    model = ChatOllama(model="llama3.2", num_ctx=8192, temperature=0.9)
    cand = _cand(model)  # a user's instance: the rules go by its class
    kwargs = cand.call_kwargs({"max_tokens": 5, "temperature": 0.2}, model, stop=["\n\n"])
    assert kwargs == {"options": {"num_ctx": 8192, "temperature": 0.2, "num_predict": 5, "stop": ["\n\n"]}}
    mine = cand.call_kwargs({"max_tokens": 5, "options": {"num_predict": 50}}, model)
    assert mine == {"options": {"num_predict": 50}}  # the caller's own options win


def _invoke(cand: Candidate, **kwargs):
    model = cand.chat_model()
    return model.invoke("Hi", **cand.call_kwargs(kwargs, model))


def test_real_requests_carry_the_translated_parameters(wire, keys):
    google_host, compat_host, mistral_host = "generativelanguage.googleapis.com", "vllm.test", "api.mistral.ai"
    wire.script(google_host, shapes.google("ok", "gemini-2.5-flash"))
    wire.script(compat_host, shapes.openai_ok("qwen3"))
    wire.script(mistral_host, shapes.openai_ok("mistral-small-latest"))
    wire.script("unit-test.openai.azure.com", shapes.openai_ok("o3-mini"))

    _invoke(_cand("google/gemini-2.5-flash"), max_tokens=5, temperature=0.2)
    config = wire.bodies(google_host)[-1]["generationConfig"]
    assert config["maxOutputTokens"] == 5 and config["temperature"] == 0.2

    _invoke(_cand("openai-compatible/qwen3"), max_tokens=5, top_k=3)
    body = wire.bodies(compat_host)[-1]
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body  # the spelling servers all take
    assert body["top_k"] == 3  # outside OpenAI's schema, in extra_body

    _invoke(_cand("mistral/mistral-small-latest"), seed=7, top_k=3)
    body = wire.bodies(mistral_host)[-1]
    assert body["random_seed"] == 7 and "seed" not in body and "top_k" not in body

    _invoke(_cand(ModelSpec(model="azure/reasoner", params={"model": "o3-mini"})), temperature=0.2, max_tokens=5)
    body = wire.bodies("unit-test.openai.azure.com")[-1]
    assert "temperature" not in body and body["max_completion_tokens"] == 5


def test_bedrock_request_carries_the_translated_parameters(keys):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import ANY, Stubber

    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    expected = {
        "modelId": "amazon.nova-lite-v1:0",
        "messages": ANY,
        "system": ANY,
        "inferenceConfig": {"maxTokens": 5, "temperature": 0.2},  # no topK: Converse would reject it
    }
    with Stubber(client) as stubber:
        stubber.add_response("converse", shapes.converse_ok(), expected)
        _invoke(_cand(ModelSpec(model="bedrock/amazon.nova-lite-v1:0", params={"client": client})), **CHAIN_KWARGS)


def test_ollama_request_carries_its_options(keys):
    sent: list[dict] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        lines = [
            {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False},
            {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 1},
        ]  # fmt: skip
        return httpx.Response(200, text="\n".join(json.dumps(x) for x in lines))

    spec = ModelSpec(
        model="ollama/llama3.2",
        params={"num_ctx": 4096, "sync_client_kwargs": {"transport": httpx.MockTransport(reply)}},
    )
    _invoke(_cand(spec), max_tokens=5, temperature=0.2)
    assert sent[-1]["options"] == {"num_ctx": 4096, "num_predict": 5, "temperature": 0.2}


def test_a_chains_max_tokens_and_temperature_reach_every_provider(wire, keys):
    wire.script("generativelanguage.googleapis.com", shapes.google("ok", "gemini-2.5-flash"))
    with capture_records() as records:
        AutoPicker("google/gemini-2.5-flash", policy=POLICY, max_tokens=5, temperature=0.2).invoke("Hi")
    assert records[-1].outcome == "ok", records[-1].error_message
    config = wire.bodies("generativelanguage.googleapis.com")[-1]["generationConfig"]
    assert config["maxOutputTokens"] == 5
