"""AutoPicker inside code nobody here wrote: LangChain v1 agents, LangGraph with checkpointers and message
streams, astream_events, tracers. The primary fails (the sandbox answers 503), a tool-calling fallback
answers; every token is streamed once, the run tree is one tree, and the summary survives persistence."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_core.tracers.base import BaseTracer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.prebuilt import create_react_agent

from coffee_nb import AutoPicker, CallSummary, Policy, capture_records, sandbox

PRIMARY, FALLBACK = "sandbox/fast", "sandbox/smart"


@tool
def add_numbers(a: int, b: int) -> int:
    """Add numbers a and b."""
    return a + b


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):  # no simulated latency, no leftover faults (tests/conftest.py)
    yield


def _picker() -> AutoPicker:
    # the primary is down for the whole test: every call falls back (breaker kept closed: cooldown_after high)
    sandbox.inject(PRIMARY, ["down:600"])
    return AutoPicker(PRIMARY, [FALLBACK], policy=Policy(max_retries=0, cooldown_after=1000))


def _ai_texts(messages: list[Any]) -> list[str]:
    return [m.content for m in messages if isinstance(m, AIMessage) and m.content]


@pytest.mark.parametrize("saver", ["memory", "sqlite"])
def test_an_agent_with_memory_runs_its_tool_and_keeps_the_summary(saver, tmp_path):
    checkpointer: Any = InMemorySaver()
    if saver == "sqlite":
        import sqlite3

        checkpointer = SqliteSaver(sqlite3.connect(tmp_path / "cp.db", check_same_thread=False))
    agent = create_agent(model=_picker(), tools=[add_numbers], checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "t1"}}
    with capture_records() as records:
        state = agent.invoke({"messages": [("user", "add numbers 2 and 3")]}, config)
    tool_results = [m for m in state["messages"] if m.type == "tool"]
    assert tool_results and tool_results[0].content == "5"  # the fallback called the tool, the tool ran
    final = state["messages"][-1]
    assert final.type == "ai" and final.content and not final.tool_calls  # and the answer came back
    assert {r.model for r in records if r.outcome == "error"} == {PRIMARY}
    # a second turn reads the first from the checkpoint; the summaries there are readable
    agent.invoke({"messages": [("user", "thanks")]}, config)
    saved = agent.get_state(config).values["messages"]
    summaries = [CallSummary.of(m) for m in saved if isinstance(m, AIMessage)]
    assert len(summaries) >= 3 and all(s.model == FALLBACK and s.fallback_reason == "server" for s in summaries)
    assert all(s.cost is not None and s.cost > 0 for s in summaries)


@pytest.mark.parametrize("make", ["create_agent", "create_react_agent"])
def test_langgraph_messages_stream_yields_every_token_once(make):
    factory: Any = create_agent if make == "create_agent" else create_react_agent
    agent = factory(model=_picker(), tools=[add_numbers], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "s"}}
    texts: dict[str, str] = {}
    for chunk, meta in agent.stream({"messages": [("user", "add numbers 4 and 5")]}, config, stream_mode="messages"):
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            texts[chunk.id] = texts.get(chunk.id, "") + chunk.content
            assert meta["ls_provider"] == "coffee_nb"  # AutoPicker's run streams; its candidates' don't
    answers = _ai_texts(agent.get_state(config).values["messages"])
    assert answers and sorted(t for t in texts.values() if t) == sorted(answers)  # each token once
    # "updates" mode: one update per node, the model's answer once
    updates = list(agent.stream({"messages": [("user", "add numbers 1 and 1")]}, config, stream_mode="updates"))
    model_updates = [u for u in updates if any(k in u for k in ("model", "agent"))]
    assert len(model_updates) == 2  # tool call, then the answer


def test_astream_events_yield_every_token_once_under_one_tree():
    llm = _picker()

    async def events() -> list[dict[str, Any]]:
        return [e async for e in llm.astream_events("Tell me about p95 latency", version="v2")]

    got = asyncio.run(events())
    streamed = "".join(
        e["data"]["chunk"].content for e in got if e["event"] == "on_chat_model_stream" and e["name"] == "AutoPicker"
    )
    end = next(e for e in got if e["event"] == "on_chat_model_end" and e["name"] == "AutoPicker")
    assert streamed and streamed == end["data"]["output"].content
    assert all(e["name"] == "AutoPicker" for e in got if e["event"] == "on_chat_model_stream")  # no child tokens
    root = next(e for e in got if e["event"] == "on_chat_model_start" and e["name"] == "AutoPicker")["run_id"]
    children = [e for e in got if e["event"] == "on_chat_model_start" and e["name"] != "AutoPicker"]
    assert len(children) == 2 and all(e["parent_ids"] == [root] for e in children)  # the failure and the answer


class _Tree(BaseTracer):
    def __init__(self) -> None:
        super().__init__()
        self.ended: list[Any] = []
        self.started: list[Any] = []

    def _persist_run(self, run: Any) -> None:
        pass

    def _start_trace(self, run: Any) -> None:
        super()._start_trace(run)
        self.started.append(run)

    def _end_trace(self, run: Any) -> None:
        super()._end_trace(run)
        self.ended.append(run)


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream", "batch", "astream_events", "streaming"])
def test_the_chosen_models_run_is_a_child_of_autopickers_run(how):
    llm = _picker()
    if how == "streaming":  # LangChain's own invoke-by-streaming
        llm = llm.model_copy(update={"streaming": True})
    tracer = _Tree()
    config: Any = {"callbacks": [tracer]}
    if how in ("invoke", "streaming"):
        llm.invoke("hi", config)
    elif how == "ainvoke":
        asyncio.run(llm.ainvoke("hi", config))
    elif how == "stream":
        list(llm.stream("hi", config))
    elif how == "astream":

        async def consume() -> None:
            async for _ in llm.astream("hi", config):
                pass

        asyncio.run(consume())
    elif how == "batch":
        llm.batch(["hi"], config)
    else:

        async def consume_events() -> None:
            async for _ in llm.astream_events("hi", config, version="v2"):
                pass

        asyncio.run(consume_events())
    runs = {r.id: r for r in tracer.ended}
    roots = [r for r in runs.values() if r.parent_run_id is None]
    assert [r.name for r in roots] == ["AutoPicker"]
    children = sorted((r for r in runs.values() if r.parent_run_id is not None), key=lambda r: r.start_time)
    assert [r.parent_run_id for r in children] == [roots[0].id] * 2  # retries and fallbacks are siblings
    assert children[0].error and not children[1].error  # the primary failed, the fallback answered
    assert all(r.end_time is not None for r in runs.values())  # every run ended: none left open


def test_a_printing_handler_hears_each_token_once():
    from langchain_core.callbacks import BaseCallbackHandler

    class Printer(BaseCallbackHandler):
        def __init__(self) -> None:
            self.text = ""
            self.starts: Counter[str] = Counter()

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.starts[(kwargs.get("invocation_params") or {}).get("_type", "?")] += 1

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.text += token

    printer = Printer()
    llm = _picker()
    answer = "".join(c.text for c in llm.stream("hello", {"callbacks": [printer]}))
    assert printer.text == answer  # once, not once per run
    assert printer.starts["coffee_nb-autopicker"] == 1 and sum(printer.starts.values()) == 3  # and sees the tree


def test_a_hedged_stream_under_langgraph_streams_only_the_winner_once():
    from langchain_core.callbacks import BaseCallbackHandler

    sandbox.inject(PRIMARY, ["slow_first:3"])  # no first token for 3 s: the hedge starts at 0.3 s and wins
    llm = AutoPicker(PRIMARY, [FALLBACK], policy=Policy(hedge_after=0.3, max_retries=0))

    class Printer(BaseCallbackHandler):
        text = ""

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.text += token

    printer, tracer = Printer(), _Tree()
    agent = create_agent(model=llm, tools=[])
    streamed = ""
    for chunk, _meta in agent.stream(
        {"messages": [("user", "hello")]}, {"callbacks": [printer, tracer]}, stream_mode="messages"
    ):
        if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str):
            streamed += chunk.content
    picker_runs = [r for r in tracer.ended if r.name == "AutoPicker"]
    assert len(picker_runs) == 1
    answer = picker_runs[0].outputs["generations"][0][0]["text"]
    assert streamed == printer.text == answer and answer  # the winner's tokens, once
    children = [r for r in tracer.started if r.parent_run_id == picker_runs[0].id]
    assert len(children) == 2  # the loser (it ends when its request is closed) and the winner, both under ours


def test_a_candidate_finishing_before_its_tokens_are_relayed_is_not_streamed_again():
    """The candidate's stream is read ahead on a worker thread and can end before AutoPicker's run has relayed
    its tokens: LangGraph must not emit the candidate's whole message then (it would be the answer twice)."""
    import time as _time

    from langchain_core.callbacks import BaseCallbackHandler

    class SlowReader(BaseCallbackHandler):  # holds the relay of the first token, on the caller's thread
        first = True

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if self.first:
                self.first = False
                _time.sleep(0.5)  # meanwhile the candidate's stream ends on its worker thread

    agent = create_agent(model=_picker(), tools=[])
    seen: Counter[str] = Counter()
    text = ""
    for chunk, meta in agent.stream(
        {"messages": [("user", "hello there")]}, {"callbacks": [SlowReader()]}, stream_mode="messages"
    ):
        if isinstance(chunk, AIMessage | AIMessageChunk):
            seen[meta.get("ls_provider")] += 1
            text += chunk.content if isinstance(chunk.content, str) else ""
    assert set(seen) == {"coffee_nb"}, seen  # AutoPicker's run only: the candidate's is left to it
    assert text and text.count(text[:40]) == 1  # the answer once
