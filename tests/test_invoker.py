"""AutoPicker works wherever a chat model works, and every call leaves an honest trace."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel

import coffee_nb
from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    BudgetExceededError,
    CallSummary,
    ConfigError,
    ModelSpec,
    Policy,
    StreamInterruptedError,
    capture_records,
    register_price,
)
from coffee_nb.testing import ScriptedChatModel, http_error

FAST = Policy(backoff_base=0.001, backoff_cap=0.002)


def picker(*scripts: list[Any], **kwargs: Any) -> AutoPicker:
    models = [ScriptedChatModel(model_name=f"m{i}", script=list(s)) for i, s in enumerate(scripts)]
    kwargs.setdefault("policy", FAST)
    return AutoPicker(models[0], models[1:], **kwargs)


def test_invoke_metadata_and_usage():
    llm = picker(["hello there"])
    msg = llm.invoke("hi")
    assert isinstance(msg, AIMessage) and msg.content == "hello there"
    meta = msg.response_metadata["coffee_nb"]
    assert meta["model"] == "fake/m0" and meta["role"] == "primary" and meta["fallback_reason"] is None
    assert meta["tokens"]["output"] == 2 and meta["tokens"]["estimated"] is False
    assert meta["cost"] is None and meta["priced"] is False and meta["price_source"] == "unpriced"
    assert len(meta["attempts"]) == 1 and meta["latency_s"] >= 0


def test_prices_flow_into_record_and_metadata():
    register_price("fake/m0", input=2, output=10)
    llm = picker(["a b c d"])
    with capture_records() as records:
        msg = llm.invoke("one two")
    # scripted usage: input = words + 3 = 5, output = 4 words
    expected = (Decimal(5) * 2 + Decimal(4) * 10) / Decimal(1_000_000)
    assert CallSummary.of(msg).cost == expected and msg.response_metadata["coffee_nb"]["cost"] == float(expected)
    assert records[-1].cost == expected and records[-1].price_source == "custom"


def test_estimated_tokens_when_provider_reports_none():
    model = ScriptedChatModel(model_name="quiet", script=["four words right here"], usage=False)
    with capture_records() as records:
        AutoPicker(model).invoke("hello")
    assert records[0].tokens_estimated is True  # labelled: a cheap estimate, no tokenizer loaded for it
    assert 3 <= records[0].output_tokens <= 8 and records[0].input_tokens > 0


def test_batch_and_abatch():
    llm = picker(["same"])
    assert [m.content for m in llm.batch(["a", "b", "c"])] == ["same"] * 3

    async def go():
        return await llm.abatch(["a", "b"])

    assert [m.content for m in asyncio.run(go())] == ["same", "same"]


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_sync_attempt_timeout_bounds_a_model_that_cannot_bound_itself(mode):
    # a custom chat model with no timeout of its own: sync calls are watched like async ones
    slow = ScriptedChatModel(model_name="slow", script=["too late"], delay=5)
    fast = ScriptedChatModel(model_name="fast", script=["in time"])
    llm = AutoPicker(slow, [fast], policy=Policy(attempt_timeout=0.3, first_token_timeout=0.3, max_retries=0))
    with capture_records() as records:
        text = llm.invoke("hi").content if mode == "invoke" else coffee_nb.collect(llm.stream("hi")).content
    assert text == "in time"
    assert records[0].error_class == "timeout" and records[0].latency_s < 1.5


def test_instance_max_tokens_caps_the_worst_case_reservation():
    from langchain_openai import ChatOpenAI

    from coffee_nb import Budget
    from coffee_nb.invoke._models import Candidate
    from coffee_nb.invoke._plan import Attempt, Plan

    capped = ChatOpenAI(
        model="gpt-4o", max_tokens=10, api_key="sk-test-000000000000000000", base_url="http://127.0.0.1:9"
    )
    assert Candidate(capped, cooldown_after=3, cooldown=30).output_cap == 10
    assert Candidate(capped.bind(max_tokens=7), cooldown_after=3, cooldown=30).output_cap == 7
    # gpt-4o's profile says 16 384 output tokens (~$0.16 worst case); 10 tokens fit in a tenth of a cent
    llm = AutoPicker(capped, budget=Budget(total=0.001, ledger="memory"))
    plan = Plan(llm._core, llm.budget, "Say hi", None)
    assert isinstance(plan.next(), Attempt)


def test_ainvoke_falls_back():
    llm = picker([http_error(503)], ["async fallback"])
    msg = asyncio.run(llm.ainvoke("hi"))
    assert msg.content == "async fallback"
    assert msg.response_metadata["coffee_nb"]["fallback_reason"] == "server"


def test_async_attempt_timeout_falls_back():
    slow = ScriptedChatModel(model_name="slow", script=["too late"], delay=5)
    fast = ScriptedChatModel(model_name="fast", script=["in time"])
    llm = AutoPicker(slow, [fast], policy=Policy(attempt_timeout=0.2, max_retries=0))
    with capture_records() as records:
        msg = asyncio.run(llm.ainvoke("hi"))
    assert msg.content == "in time"
    assert records[0].error_class == "timeout" and records[0].latency_s < 2


def test_stream_yields_chunks_and_final_metadata():
    llm = picker(["one two three"])
    chunks = list(llm.stream("hi"))
    assert "".join(c.content for c in chunks) == "one two three"
    assert len(chunks) >= 3
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    meta = total.response_metadata["coffee_nb"]
    assert meta["model"] == "fake/m0" and meta["ttft_s"] is not None
    assert total.usage_metadata["output_tokens"] == 3


def test_stream_falls_back_before_first_chunk():
    llm = picker([http_error(500)], ["from fallback"], max_retries=0)
    assert "".join(c.content for c in llm.stream("hi")) == "from fallback"


def test_stream_broken_after_first_chunk_raises_with_the_partial_text_when_asked_and_is_charged():
    register_price("fake/m0", input=1, output=1)
    broken = ScriptedChatModel(model_name="m0", script=["a b c d"], fail_after_chunks=2)
    fallback = ScriptedChatModel(model_name="m1", script=["never"])
    llm = AutoPicker(broken, [fallback], policy=Policy(stream_recovery="raise"))
    seen = []
    with capture_records() as records, pytest.raises(StreamInterruptedError) as info:
        for chunk in llm.stream("hi"):
            seen.append(chunk.content)  # noqa: PERF401 - kept as it arrives, before the stream breaks
    assert seen == ["a", " b"] and info.value.partial_text == "a b"
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert fallback.steps_taken == 0
    assert records[-1].outcome == "error" and records[-1].error_class == "connection"
    assert records[-1].cost is not None and records[-1].cost > 0  # what was streamed is billed, estimated
    assert records[-1].tokens_estimated


def test_stream_broken_after_first_chunk_restarts_only_for_a_consumer_that_handles_it():
    def chain(**policy: Any) -> AutoPicker:
        broken = ScriptedChatModel(model_name="m0", script=["a b c d"], fail_after_chunks=2)
        fallback = ScriptedChatModel(model_name="m1", script=["whole answer here"])  # takes no prefill
        return AutoPicker(broken, [fallback], policy=Policy(max_retries=0, **policy))

    # a plain consumer: the partial text and an error, never a spliced answer
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        seen.extend(c.text for c in chain().stream("hi"))
    assert "".join(seen) == info.value.partial_text == "a b" and "can continue" in str(info.value)
    # collect() handles the restart marker: the fallback's whole answer
    final = coffee_nb.collect(chain().stream("hi"))
    assert final.content == "whole answer here"
    assert final.response_metadata["coffee_nb"]["model"] == "fake/m1"
    # an explicit restart policy: the marker reaches a plain consumer too
    chunks = list(chain(stream_recovery="restart").stream("hi"))
    markers = [c for c in chunks if c.response_metadata.get("coffee_nb", {}).get("restart") is True]
    assert len(markers) == 1 and markers[0].response_metadata["coffee_nb"]["to_model"] == "fake/m1"
    assert coffee_nb.collect(chunks).content == "whole answer here"


def test_astream_falls_back():
    llm = picker([http_error(429)], ["async stream"], max_retries=0)

    async def go():
        return "".join([c.content async for c in llm.astream("hi")])

    assert asyncio.run(go()) == "async stream"


def test_lcel_chain():
    llm = picker([http_error(500)], ["chained"], max_retries=0)
    chain = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{q}")]) | llm | StrOutputParser()
    assert chain.invoke({"q": "why?"}) == "chained"
    assert chain.batch([{"q": "a"}, {"q": "b"}]) == ["chained", "chained"]


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[str] = []
        self.tokens: list[str] = []
        self.ends = 0

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.starts.append((kwargs.get("invocation_params") or {}).get("_type", "?"))

    def on_llm_new_token(self, token, **kwargs):
        self.tokens.append(token)

    def on_llm_end(self, response, **kwargs):
        self.ends += 1


def test_callbacks_propagate_to_candidates():
    handler = Recorder()
    llm = picker([http_error(500)], ["x y"], max_retries=0)
    llm.invoke("hi", config={"callbacks": [handler]})
    # our run + the failing primary + the fallback
    assert handler.starts.count("coffee_nb-autopicker") == 1
    assert handler.starts.count("scripted") == 2
    handler2 = Recorder()
    list(llm.stream("hi", config={"callbacks": [handler2]}))
    assert "x" in handler2.tokens


def test_bind_tools_forwarded_to_each_candidate():
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    primary = ScriptedChatModel(model_name="p", script=[http_error(500)])
    fallback = ScriptedChatModel(model_name="f", script=["ok"])
    llm = AutoPicker(primary, [fallback], max_retries=0)
    bound = llm.bind_tools([add], tool_choice="any")
    assert bound.invoke("2+2").content == "ok"
    for model in (primary, fallback):
        kwargs = model.calls[-1]["kwargs"]
        assert kwargs["tools"][0]["function"]["name"] == "add"
        assert kwargs["tool_choice"] == "any"


class Person(BaseModel):
    name: str
    age: int


def test_with_structured_output_forwarded():
    tool_call = AIMessage(content="", tool_calls=[{"name": "Person", "args": {"name": "Ada", "age": 36}, "id": "1"}])
    primary = ScriptedChatModel(model_name="p", script=[http_error(429)])
    fallback = ScriptedChatModel(model_name="f", script=[tool_call])
    llm = AutoPicker(primary, [fallback], max_retries=0)
    person = llm.with_structured_output(Person).invoke("who?")
    assert person == Person(name="Ada", age=36)
    raw = llm.with_structured_output(Person, include_raw=True).invoke("who?")
    assert raw["parsed"] == Person(name="Ada", age=36) and isinstance(raw["raw"], AIMessage)
    assert raw["raw"].response_metadata["coffee_nb"]["model"] == "fake/f"


def test_all_models_failed_lists_every_attempt():
    llm = picker([http_error(401, "bad key")], [http_error(404, "no such model")])
    with pytest.raises(AllModelsFailedError) as info:
        llm.invoke("hi")
    err = info.value
    assert [a.error_class for a in err.attempts] == ["auth", "not_found"]
    assert "fake/m0" in str(err) and "fake/m1" in str(err) and "no such model" in str(err)


def test_missing_key_falls_back(no_keys):
    llm = AutoPicker("openai/gpt-4o-mini", [ScriptedChatModel(model_name="local", script=["offline"])])
    with capture_records() as records:
        assert llm.invoke("hi").content == "offline"
    assert records[0].error_class == "auth"
    assert "OPENAI_API_KEY" in records[0].error_message


def test_missing_keys_everywhere_say_which_variables(no_keys):
    llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest"])
    with pytest.raises(AllModelsFailedError) as info:
        llm.invoke("hi")
    assert "OPENAI_API_KEY" in str(info.value) and "ANTHROPIC_API_KEY" in str(info.value)


def test_context_precheck_skips_small_windows_and_prefers_large():
    small = ModelSpec(model=ScriptedChatModel(model_name="small", script=["small"]), context_window=50)
    unknown = ScriptedChatModel(model_name="unknown", script=["unknown"])
    large = ModelSpec(model=ScriptedChatModel(model_name="large", script=["large"]), context_window=100_000)
    llm = AutoPicker(small, [unknown, large])
    with capture_records() as records:
        msg = llm.invoke("word " * 200)
    assert msg.content == "large"  # the known-large window went ahead of the unknown one
    assert records[0].outcome == "skipped" and records[0].error_class == "context_overflow"
    assert "context window of 50" in records[0].error_message
    assert llm.invoke("short").content == "small"


def test_context_overflow_error_prefers_larger_windows():
    primary = ModelSpec(
        model=ScriptedChatModel(model_name="p", script=[http_error(400, code="context_length_exceeded")]),
        context_window=1000,
    )
    tiny = ModelSpec(model=ScriptedChatModel(model_name="tiny", script=["tiny"]), context_window=500)
    big = ModelSpec(model=ScriptedChatModel(model_name="big", script=["big"]), context_window=200_000)
    llm = AutoPicker(primary, [tiny, big])
    assert llm.invoke("hello").content == "big"


def test_max_tokens_counts_toward_the_window():
    small = ModelSpec(model=ScriptedChatModel(model_name="small", script=["small"]), context_window=100)
    llm = AutoPicker(small, [ScriptedChatModel(model_name="other", script=["other"])], max_tokens=500)
    assert llm.invoke("hi").content == "other"


class FakeBudget:
    """The two-phase contract AutoPicker relies on, with a hard cap."""

    def __init__(self, cap: Decimal) -> None:
        self.cap = cap
        self.reserved: dict[int, Decimal] = {}
        self.spent = Decimal(0)
        self.lock = threading.Lock()
        self.n = 0

    def reserve(self, model: str, amount: Decimal | None) -> int:
        with self.lock:
            amount = amount or Decimal(0)
            if self.spent + sum(self.reserved.values()) + amount > self.cap:
                raise BudgetExceededError(f"total budget ${self.cap} would be exceeded by {model}")
            self.n += 1
            self.reserved[self.n] = amount
            return self.n

    def commit(self, lease: int, amount: Decimal | None) -> None:
        with self.lock:
            self.reserved.pop(lease)
            self.spent += amount or Decimal(0)

    def release(self, lease: int) -> None:
        with self.lock:
            self.reserved.pop(lease)


def test_budget_reserve_commit_release_and_skip_expensive():
    register_price("fake/pricey", input=1_000_000, output=1_000_000)  # $1 per token
    register_price("fake/cheap", input=1, output=1)
    budget = FakeBudget(Decimal("0.5"))
    pricey = ScriptedChatModel(model_name="pricey", script=["never"])
    cheap = ScriptedChatModel(model_name="cheap", script=[http_error(500), "cheap answer"])
    llm = AutoPicker(pricey, [cheap], budget=budget, policy=FAST, max_tokens=10)
    with capture_records() as records:
        msg = llm.invoke("hi")
    assert msg.content == "cheap answer"
    assert pricey.steps_taken == 0
    assert records[0].error_class == "budget" and records[0].outcome == "skipped"
    assert records[1].error_class == "server"  # failed attempt: released, not charged
    assert budget.reserved == {} and budget.spent == records[-1].cost > 0


def test_budget_exceeded_everywhere_raises_budget_error():
    register_price("fake/m0", input=1_000_000, output=1_000_000)
    llm = picker(["x"], budget=FakeBudget(Decimal("0.01")))
    with pytest.raises(BudgetExceededError, match="total budget"):
        llm.invoke("hi")


def test_user_sinks_get_records_and_a_broken_sink_is_harmless():
    got = []

    class Sink:
        def emit(self, record):
            got.append(record)

    def broken(record):
        raise RuntimeError("sink bug")

    llm = picker([http_error(500)], ["ok"], metrics=Sink(), on_record=[broken], max_retries=0)
    assert llm.invoke("hi").content == "ok"
    assert [r.outcome for r in got] == ["error", "ok"]
    assert got[0].call_id == got[1].call_id and got[1].attempt == 1


def test_messages_and_params_pass_through():
    model = ScriptedChatModel(model_name="p", script=["ok"])
    llm = AutoPicker(model)
    llm.invoke([HumanMessage("hello")], stop=["END"], top_p=0.5)
    assert model.calls[0]["kwargs"]["top_p"] == 0.5
    assert model.calls[0]["messages"][0].content == "hello"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("gpt-4o-mini",), "Did you mean 'openai/gpt-4o-mini'"),
        (("nope/model",), "unknown provider 'nope'"),
        (("openai/",), "malformed model spec"),
        (("openai/gpt 4",), "malformed model spec"),
        ((42,), "'provider/model' string"),
        ((None,), "at least one model"),
    ],
)
def test_bad_specs_fail_at_construction(args, match):
    with pytest.raises(ConfigError, match=match) as info:
        AutoPicker(*args)
    assert isinstance(info.value, ValueError)


def test_empty_chain_and_duplicates_and_bad_limits():
    with pytest.raises(ValueError, match="at least one model"):
        AutoPicker()
    with pytest.raises(ValueError, match="twice"):
        AutoPicker("openai/gpt-4o", ["openai/gpt-4o"])
    with pytest.raises(ValueError, match="max_tokens"):
        AutoPicker("openai/gpt-4o", max_tokens=-3)
    with pytest.raises(ValueError, match="context_window"):
        AutoPicker(ModelSpec(model="openai/gpt-4o", context_window=-1))
    with pytest.raises(ValueError):
        AutoPicker("openai/gpt-4o", timeout=-1)
    with pytest.raises(ValueError):
        AutoPicker("openai/gpt-4o", bogus_option=1)


def test_specs_are_lazy_and_repr_has_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET0123456789abcdef")
    llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "ollama/llama3.2"])
    assert llm.model_names == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "ollama/llama3.2"]
    assert llm.candidates[0]._sync is None  # nothing built yet
    assert "SECRET" not in repr(llm) and "SECRET" not in str(llm.model_dump())


def test_built_openai_client_uses_our_pool_and_no_sdk_retries(monkeypatch):
    from coffee_nb import get_http_client

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000000000000000")
    cand = AutoPicker("openai/gpt-4o-mini").candidates[0]
    model = cand.chat_model()
    assert model.max_retries == 0
    assert model.root_client._client is get_http_client()
    assert model.stream_usage is True
    assert cand.chat_model() is model  # built once
    assert cand.context_window == 128_000  # maintained data (genai-prices)
    assert cand.facts.price.source == "genai-prices"

    async def in_loop():
        import asyncio as aio

        m = cand.chat_model(loop=aio.get_running_loop())
        from coffee_nb import get_async_http_client

        assert m.root_async_client._client is get_async_http_client()
        return m

    assert asyncio.run(in_loop()) is not model


def test_keys_never_reach_errors_records_or_metadata(monkeypatch):
    key = "sk-proj-REALLOOKINGKEY0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    leaky = http_error(401, f"Incorrect API key provided: {key}")
    llm = picker([leaky], [http_error(500, f"upstream said Bearer {key}")], max_retries=0)
    with capture_records() as records, pytest.raises(AllModelsFailedError) as info:
        llm.invoke("hi")
    assert key not in str(info.value) and key not in repr(info.value)
    assert all(key not in (r.error_message or "") for r in records)
    assert "[redacted]" in records[0].error_message
    import traceback

    printed = "".join(traceback.format_exception(info.value))
    assert key not in printed  # the key-bearing provider error is not chained into the traceback


def test_stream_closed_early_is_cancelled_and_what_streamed_is_charged():
    register_price("fake/m0", input=1, output=1)
    budget = FakeBudget(Decimal(10))
    llm = picker(["one two three four five"], budget=budget)
    with capture_records() as records:
        stream = llm.stream("hi")
        assert next(stream).content == "one"
        stream.close()  # the caller walks away mid-stream
    assert [r.outcome.value for r in records] == ["cancelled"]
    assert records[0].cost is not None and records[0].cost > 0
    assert budget.reserved == {} and budget.spent == records[0].cost


def test_fast_path_steps_aside_for_a_global_cache():
    """With nothing listening AutoPicker skips its own callback layer; a global LLM cache must still work."""
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import set_llm_cache

    models = [ScriptedChatModel(model_name="m0", script=["first answer", "second answer", "third"], cache=False)]
    llm = AutoPicker(models[0], policy=FAST)  # only AutoPicker's own run can be cached
    assert llm.invoke("same question").content == "first answer"  # fast path: nothing global
    set_llm_cache(InMemoryCache())
    try:
        assert llm.invoke("q").content == "second answer"
        again = llm.invoke("q")  # served by LangChain's cache: the candidate is not called again
        assert again.content == "second answer"
    finally:
        set_llm_cache(None)


def test_fast_path_steps_aside_for_debug_mode_and_run_collectors(capsys):
    from langchain_core.globals import set_debug
    from langchain_core.tracers.context import collect_runs

    llm = picker(["a", "b", "c"])
    with collect_runs() as collector:  # a configure hook: every run in the block is collected
        llm.invoke("hi")
    assert "AutoPicker" in [run.name for run in collector.traced_runs]
    set_debug(True)
    try:
        llm.invoke("hi")
    finally:
        set_debug(False)
    assert "AutoPicker" in capsys.readouterr().out  # the debug tracer printed our run
    llm.invoke("hi")
    assert "AutoPicker" not in capsys.readouterr().out


def test_a_budget_of_its_own_kind_gets_decimal_amounts():
    """Any object with reserve/commit/release (in USD Decimals) can guard the calls."""

    class Envelope:
        def __init__(self) -> None:
            self.reserved: list[Decimal] = []
            self.committed: list[Decimal] = []

        def reserve(self, model, amount):
            self.reserved.append(amount)
            return object()

        def commit(self, lease, amount):
            self.committed.append(amount)

        def release(self, lease):
            raise AssertionError("nothing failed")

    register_price("fake/m0", input=1_000_000, output=1_000_000)  # $1 per token
    envelope = Envelope()
    msg = picker(["two words"], budget=envelope, max_tokens=5).invoke("hello")
    cost = CallSummary.of(msg).cost
    assert envelope.committed == [cost] and isinstance(cost, Decimal) and cost > 0
    assert isinstance(envelope.reserved[0], Decimal) and envelope.reserved[0] >= Decimal(5)  # worst case


def test_answers_never_share_metadata_when_a_candidate_hands_out_one_object():
    from langchain_core.runnables import RunnableLambda

    constant = AIMessage(content="always the same object")
    llm = AutoPicker(ModelSpec(model=RunnableLambda(lambda _, **kwargs: constant), name="const/model"), policy=FAST)
    first, second = llm.invoke("a"), llm.invoke("b")
    assert first.response_metadata["coffee_nb"]["call_id"] != second.response_metadata["coffee_nb"]["call_id"]
    assert "coffee_nb" not in constant.response_metadata  # the candidate's object is left as it was


def test_restart_is_announced_to_callback_handlers():
    # LangChain's own stream() hands chunks to handlers itself (on_llm_new_token, marker included);
    # where a run manager reaches AutoPicker (e.g. streaming=True invoke) it also sends a custom event
    seen: list[tuple[str, Any]] = []

    class Listener(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            seen.append((name, data["to_model"]))

        def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
            meta = getattr(getattr(chunk, "message", None), "response_metadata", {}).get("coffee_nb")
            if isinstance(meta, dict) and meta.get("restart") and "call_id" not in meta:
                seen.append(("token", meta["to_model"]))

    class Custom(BaseCallbackHandler):  # hears no tokens: only the custom event
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            seen.append((name, data["to_model"]))

    def chain() -> AutoPicker:
        broken = ScriptedChatModel(model_name="m0", script=["a b c d"], fail_after_chunks=2)
        fallback = ScriptedChatModel(model_name="m1", script=["whole answer"])
        return AutoPicker(broken, [fallback], policy=Policy(max_retries=0))

    final = coffee_nb.collect(chain().stream("hi", config={"callbacks": [Listener()]}))
    assert final.content == "whole answer" and seen == [("coffee_nb_restart", "fake/m1"), ("token", "fake/m1")]
    seen.clear()
    streaming = chain().model_copy(update={"streaming": True})  # LangChain's invoke-by-streaming
    answer = streaming.invoke("hi", config={"callbacks": [Custom()]})
    assert answer.content == "whole answer"  # not the broken text plus the new one
    assert answer.response_metadata["coffee_nb"]["model"] == "fake/m1"
    assert seen == [("coffee_nb_restart", "fake/m1")]
    # a token consumer already heard the first model's text: no restart under it, an error instead
    with pytest.raises(StreamInterruptedError):
        chain().model_copy(update={"streaming": True}).invoke("hi", config={"callbacks": [Listener()]})
    answer = asyncio.run(chain().model_copy(update={"streaming": True}).ainvoke("hi"))
    assert answer.content == "whole answer"
