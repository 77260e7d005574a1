"""The stream contract, as a matrix: consumer kind × mid-stream fault × what the next model can do.

A consumer that knows nothing of coffee_nb ends with one coherent answer or an exception, never duplicated or
spliced text presented as success. Consumers: a plain ``for chunk in llm.stream()`` concatenation,
``coffee_nb.collect``, a ``%%llm`` cell, and LangGraph's ``stream_mode="messages"``. The next model
continues by prefill (the sandbox takes one), is declared unable to (``ModelSpec(prefill=False)``), or
turns the prefill down with a 400 (learned, never shown as the final error)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

import coffee_nb
from coffee_nb import AutoPicker, ModelSpec, Policy, StreamInterruptedError, sandbox

PROMPT = "tell me about espresso crema"
POLICY = Policy(max_retries=0, first_token_timeout=2.0, idle_timeout=1.0, attempt_timeout=5.0, deadline=30)
FAULTS = ["cut:3", "stall:3:5", "bad_sse:3"]
ABILITIES = ["prefill", "declared_no", "rejects"]
CONSUMERS = ["plain", "collect", "llm_magic", "langgraph"]


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):  # no simulated latency, no leftover faults (tests/conftest.py)
    yield


def _chain(ability: str) -> list[Any]:
    fallback: Any = ModelSpec(model="sandbox/echo", prefill=False) if ability == "declared_no" else "sandbox/echo"
    return ["sandbox/fast", fallback]


def _delivered() -> str:
    """The first three words of the primary's answer: what the faults let through before breaking."""
    return " ".join(AutoPicker("sandbox/fast").invoke(PROMPT).content.split(" ")[:3])


def _continued(prefix: str) -> str:
    """The one coherent answer a continuation gives: the delivered words, then the fallback's rest."""
    rest = AutoPicker("sandbox/echo").invoke([HumanMessage(PROMPT), AIMessage(prefix)]).content
    return prefix + rest


def _consume(consumer: str, llm: AutoPicker, ip: Any) -> str:
    if consumer == "plain":
        return "".join(c.text for c in llm.stream(PROMPT))
    if consumer == "collect":
        return str(coffee_nb.collect(llm.stream(PROMPT)).content)
    if consumer == "llm_magic":
        from IPython.utils.capture import capture_output

        coffee_nb.configure(models=[llm])
        with capture_output():
            ip.run_cell_magic("llm", "--no-cache", PROMPT)
        return str(ip.user_ns["_"].text)
    from langchain.agents import create_agent

    agent = create_agent(model=llm, tools=[])
    streamed = ""
    for chunk, _meta in agent.stream({"messages": [("user", PROMPT)]}, stream_mode="messages"):
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            streamed += chunk.content
    return streamed


@pytest.mark.parametrize("ability", ABILITIES)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("consumer", CONSUMERS)
def test_one_coherent_answer_or_an_exception(consumer, fault, ability, ip):
    prefix = _delivered()
    canonical_continued, canonical_restarted = _continued(prefix), AutoPicker("sandbox/echo").invoke(PROMPT).content
    llm = AutoPicker(*[_chain(ability)[0]], _chain(ability)[1:], policy=POLICY)
    sandbox.inject("sandbox/fast", [fault])
    if ability == "rejects":
        sandbox.inject("sandbox/echo", ["no_prefill"])
    sandbox.clear_log()
    handles_restart = consumer in ("collect", "llm_magic")
    try:
        text = _consume(consumer, llm, ip)
    except StreamInterruptedError as exc:
        # an exception is allowed only where no model could continue and the consumer can't take a restart
        assert ability != "prefill" and not handles_restart, f"{consumer}: raised although it could go on"
        assert exc.partial_text == prefix and "400" not in str(exc).split("\n")[0]
        return
    if ability == "prefill":
        assert text == canonical_continued  # the delivered words, then the rest: one answer
        assert sandbox.attempts("sandbox/echo")[-1]["prefill"] is True
    else:
        assert handles_restart, f"{consumer} got text it can't tell apart: {text!r}"
        assert text == canonical_restarted  # the fallback's whole answer, nothing of the broken one
