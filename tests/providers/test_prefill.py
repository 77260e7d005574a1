"""Which models continue a broken stream: declared per provider, per model (``ModelSpec(prefill=...)``) for
OpenAI-compatible servers, and asked for the way each server wants."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

import coffee_nb
from coffee_nb import AutoPicker, ConfigError, ModelSpec, StreamInterruptedError
from coffee_nb.invoke._models import Candidate

PROMPT = "tell me about espresso crema"


def _candidate(**spec: object) -> Candidate:
    params = {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-not-a-key"}
    return Candidate(ModelSpec(model="openai-compatible/m", params=params, **spec), cooldown_after=3, cooldown=30)


def test_prefix_style_marks_the_final_assistant_message():
    cand = _candidate(prefill="prefix")
    payload = cand.chat_model()._get_request_payload([HumanMessage("hi"), cand.prefill_message("Once upon")])
    assert payload["messages"][-1] == {"role": "assistant", "content": "Once upon", "prefix": True}
    plain = cand.chat_model()._get_request_payload([HumanMessage("hi"), AIMessage("Once upon")])
    assert "prefix" not in plain["messages"][-1]  # only a continuation asks for it


def test_vllm_style_asks_for_continue_final_message():
    cand = _candidate(prefill="vllm")
    extra = cand.prefill_kwargs({"extra_body": {"top_k": 5}})
    assert extra == {"extra_body": {"top_k": 5, "continue_final_message": True, "add_generation_prompt": False}}
    payload = cand.chat_model()._get_request_payload([HumanMessage("hi"), cand.prefill_message("x")], **extra)
    assert payload["extra_body"]["continue_final_message"] is True
    assert _candidate(prefill=True).prefill_kwargs({}) == {}


def test_openai_compatible_models_take_no_prefill_unless_declared():
    assert not _candidate().prefill and _candidate(prefill=True).prefill
    assert not Candidate("openai/gpt-4o-mini", cooldown_after=3, cooldown=30).prefill  # OpenAI doesn't continue
    assert Candidate("anthropic/claude-3-5-haiku-latest", cooldown_after=3, cooldown=30).prefill
    assert Candidate("mistral/mistral-small-latest", cooldown_after=3, cooldown=30).prefill_style == "prefix"
    with pytest.raises(ConfigError, match="prefill"):
        ModelSpec(model="sandbox/fast", prefill="yes")


@pytest.mark.parametrize("declared", [True, None])
def test_a_declared_openai_compatible_server_continues_a_broken_stream(declared, quiet_sandbox):
    sandbox = quiet_sandbox
    server = ModelSpec(
        model="openai-compatible/echo",
        params={"base_url": sandbox.server().url, "api_key": "sk-test-not-a-key"},
        prefill=declared,
    )
    llm = AutoPicker("sandbox/fast", [server], policy=coffee_nb.Policy(max_retries=0))
    sandbox.inject("sandbox/fast", ["cut:3"])
    if declared is None:  # not declared: a plain consumer gets the partial text and an error, not a splice
        with pytest.raises(StreamInterruptedError):
            "".join(c.text for c in llm.stream(PROMPT))
        return
    text = "".join(c.text for c in llm.stream(PROMPT))
    prefix = " ".join(AutoPicker("sandbox/fast").invoke(PROMPT).content.split(" ")[:3])
    rest = AutoPicker("sandbox/echo").invoke([HumanMessage(PROMPT), AIMessage(prefix)]).content
    assert text == prefix + rest and sandbox.attempts("sandbox/echo")[-1]["prefill"] is True
