"""Hedged requests against the sandbox: a slow primary gets company, the first answer wins, both are paid for."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from pydantic import Field

from coffee_nb import AutoPicker, Budget, CallSummary, ConfigError, Policy, capture_records, sandbox
from coffee_nb.testing import ScriptedChatModel

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def ask(llm: AutoPicker, mode: str) -> object:
    if mode == "invoke":
        return llm.invoke("hedge me")
    return asyncio.run(llm.ainvoke("hedge me"))


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_slow_primary_is_hedged_the_hedge_answers_and_both_are_charged(mode):
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.3), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:5"])  # its answer would come after 5 s
    with capture_records() as records:
        msg = ask(llm, mode)
    summary = CallSummary.of(msg)
    assert summary.model == "sandbox/echo" and summary.role == "hedge"
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [
        ("sandbox/fast", "primary", "cancelled"),  # the loser is settled first: the answer's record is last
        ("sandbox/echo", "hedge", "ok"),
    ]
    assert summary.latency_s < 5  # did not wait for the slow primary
    assert sorted(a["model"] for a in sandbox.attempts()) == ["echo", "fast"]  # both really were sent
    cancelled = records[0]
    assert cancelled.tokens_estimated and cancelled.output_tokens == 0 and cancelled.cost > 0  # its prompt
    assert budget.spent() == records[1].cost + cancelled.cost  # the ledger shows both charges
    assert budget.status()["total"]["reserved"] == 0


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_fast_primary_is_never_hedged(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=5))
    with capture_records() as records:
        ask(llm, mode)
    assert [r.model for r in records] == ["sandbox/fast"]
    assert sandbox.attempts("sandbox/echo") == []


def test_no_hedge_when_the_budget_cannot_cover_two():
    # room for the primary's worst case (~$0.00004 at 100 tokens), not for sandbox/smart's (~$0.0016) on top
    budget = Budget(total=Decimal("0.0005"), ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(hedge_after=0.2), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:1"])
    with capture_records() as records:
        msg = llm.invoke("hedge me", max_tokens=100)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"  # waited for it
    assert sandbox.attempts("sandbox/smart") == [] and [r.outcome.value for r in records] == ["ok"]


def test_a_failing_racer_leaves_the_race_to_the_other():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.2, max_retries=0))
    sandbox.inject("sandbox/fast", ["slow_first:1"])
    sandbox.inject("sandbox/echo", ["auth"])  # the hedge fails at once; the primary still answers
    with capture_records() as records:
        msg = llm.invoke("hedge me")
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert [(r.model, r.outcome.value) for r in records] == [("sandbox/echo", "error"), ("sandbox/fast", "ok")]


def test_percentile_hedging_needs_history_and_bad_values_are_refused():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after="p90"))
    sandbox.inject("sandbox/fast", ["slow_first:0.5"])
    with capture_records() as records:
        llm.invoke("no history yet: no hedge")
    assert [r.model for r in records] == ["sandbox/fast"]
    for _ in range(12):
        llm.invoke("build a latency history")
    sandbox.inject("sandbox/fast", ["slow_first:3"])
    assert llm.invoke("now it is slow").response_metadata["coffee_nb"]["model"] == "sandbox/echo"
    with pytest.raises(ConfigError, match="percentile"):
        Policy(hedge_after="soon")
    with pytest.raises(ConfigError):
        Policy(hedge_after=-1)


# -- streams: the first racer to produce a first token wins the stream --------------------------------
def stream(llm: AutoPicker, mode: str, prompt: str = "hedge my stream") -> list:
    if mode == "stream":
        return list(llm.stream(prompt))

    async def collect() -> list:
        return [chunk async for chunk in llm.astream(prompt)]

    return asyncio.run(collect())


def text_of(chunks: list) -> str:
    return "".join(c.content for c in chunks if isinstance(c.content, str))


def summary_of(chunks: list) -> dict:
    return next(c.response_metadata["coffee_nb"] for c in chunks if "coffee_nb" in c.response_metadata)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_without_a_first_token_is_hedged_the_hedge_wins_and_both_are_charged(mode):
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.3), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:5"])  # headers at once, its first token after 5 s
    with capture_records() as records:
        chunks = stream(llm, mode)
    assert text_of(chunks) == "hedge my stream"  # the echo model's whole answer, nothing of the primary's
    summary = summary_of(chunks)
    assert summary["model"] == "sandbox/echo" and summary["role"] == "hedge"
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [
        ("sandbox/fast", "primary", "cancelled"),  # settled when the hedge's first token won the race
        ("sandbox/echo", "hedge", "ok"),
    ]
    assert summary["latency_s"] < 5  # did not wait for the slow primary
    assert [(a["model"], a["stream"]) for a in sandbox.attempts()] == [("fast", True), ("echo", True)]
    cancelled, answered = records
    assert answered.streamed and answered.ttft_s is not None
    assert cancelled.tokens_estimated and cancelled.output_tokens == 0 and cancelled.cost > 0  # its prompt
    assert budget.spent() == answered.cost + cancelled.cost  # the ledger shows both charges
    assert budget.status()["total"]["reserved"] == 0


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_the_slow_primary_that_speaks_first_keeps_its_stream(mode):
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.2), budget=budget)
    clean = text_of(stream(AutoPicker("sandbox/fast"), mode))  # what the primary says, unhurried
    sandbox.clear_log()
    sandbox.inject("sandbox/fast", ["slow_first:0.8"])  # late, but earlier than the hedge
    sandbox.inject("sandbox/echo", ["slow_first:10"])
    with capture_records() as records:
        chunks = stream(llm, mode)
    assert text_of(chunks) == clean
    assert summary_of(chunks)["model"] == "sandbox/fast"
    assert [(r.model, r.role.value, r.outcome.value, r.streamed) for r in records] == [
        ("sandbox/echo", "hedge", "cancelled", True),  # the loser was a stream too
        ("sandbox/fast", "primary", "ok", True),
    ]
    assert sorted(a["model"] for a in sandbox.attempts()) == ["echo", "fast"]  # the hedge really was sent
    assert budget.spent() == records[0].cost + records[1].cost and records[0].cost > 0
    assert budget.status()["total"]["reserved"] == 0


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_fast_stream_is_never_hedged(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=5))
    with capture_records() as records:
        stream(llm, mode)
    assert [r.model for r in records] == ["sandbox/fast"]
    assert sandbox.attempts("sandbox/echo") == []


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_no_stream_hedge_when_the_budget_cannot_cover_two(mode):
    budget = Budget(total=Decimal("0.0005"), ledger="memory")  # the primary's worst case, not smart's on top
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(hedge_after=0.2), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:1"])
    with capture_records() as records:
        chunks = llm.stream("hedge me", max_tokens=100) if mode == "stream" else None
        if chunks is None:

            async def collect() -> list:
                return [c async for c in llm.astream("hedge me", max_tokens=100)]

            chunks = asyncio.run(collect())
        chunks = list(chunks)
    assert summary_of(chunks)["model"] == "sandbox/fast"  # waited for it
    assert sandbox.attempts("sandbox/smart") == [] and [r.outcome.value for r in records] == ["ok"]


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_racer_failing_before_its_first_token_leaves_the_stream_to_the_other(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.2, max_retries=0))
    sandbox.inject("sandbox/fast", ["slow_first:2"])
    sandbox.inject("sandbox/echo", ["server_error"])  # the hedge fails at once; the primary still answers
    with capture_records() as records:
        chunks = stream(llm, mode)
    assert summary_of(chunks)["model"] == "sandbox/fast"
    assert [(r.model, r.role.value, r.outcome.value) for r in records] == [
        ("sandbox/echo", "hedge", "error"),
        ("sandbox/fast", "primary", "ok"),
    ]


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_when_every_racer_fails_the_driver_falls_back_as_usual(mode):
    policy = Policy(hedge_after=0.2, first_token_timeout=1.5, max_retries=0)
    llm = AutoPicker("sandbox/fast", ["sandbox/echo", "sandbox/smart"], policy=policy)
    sandbox.inject("sandbox/fast", ["slow_first:5"])  # past its first-token limit
    sandbox.inject("sandbox/echo", ["server_error"])  # the hedge fails first: the race goes on
    with capture_records() as records:
        chunks = stream(llm, mode)
    assert summary_of(chunks)["model"] == "sandbox/smart"
    assert [(r.model, r.role.value, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/echo", "hedge", "error", "server"),
        ("sandbox/fast", "primary", "error", "timeout"),
        ("sandbox/smart", "fallback", "ok", None),
    ]


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_winning_hedge_that_breaks_mid_stream_is_recovered_like_any_stream(mode):
    policy = Policy(hedge_after=0.2, idle_timeout=0.5, max_retries=0)
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=policy)
    sandbox.inject("sandbox/fast", ["slow_first:5"])
    sandbox.inject("sandbox/echo", ["stall:2:10"])  # wins the race, then stalls after 2 tokens
    with capture_records() as records:
        chunks = stream(llm, mode, "one two three four five six")
    assert [(r.model, r.role.value, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "primary", "cancelled", None),
        ("sandbox/echo", "hedge", "error", "timeout"),
        ("sandbox/fast", "primary", "ok", None),  # the raced primary is next in line again: it continues the text
    ]
    assert sandbox.attempts("sandbox/fast")[-1]["prefill"] is True
    assert text_of(chunks).startswith("one two")  # the delivered words, then the rest: one answer


def test_percentile_stream_hedging_reads_the_time_to_first_token():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after="p90"))
    for _ in range(12):  # a history of quick first tokens
        list(llm.stream("build a first-token history"))
    sandbox.inject("sandbox/fast", ["slow_first:3"])
    assert summary_of(list(llm.stream("now it is slow")))["model"] == "sandbox/echo"


class _Watched(ScriptedChatModel):
    """A scripted model whose async streams say when they were closed (what closes the HTTP response)."""

    closed: list[str] = Field(default_factory=list, exclude=True)

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
        finally:
            self.closed.append(self.model_name)


def test_async_loser_is_cancelled_its_stream_closed_and_no_task_is_left_pending():
    slow = _Watched(script=["the slow answer"], model_name="slow", delay=30)
    quick = _Watched(script=["the quick answer"], model_name="quick", delay=0.3)
    llm = AutoPicker(slow, [quick], policy=Policy(hedge_after=0.1))

    async def main() -> tuple[list, list]:
        chunks = [c async for c in llm.astream("race")]
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return chunks, others

    with capture_records() as records:
        chunks, pending = asyncio.run(main())
    assert text_of(chunks) == "the quick answer"
    assert pending == []
    assert slow.closed == ["slow"]  # cancelled while waiting for its first token, its stream closed
    assert [(r.role.value, r.outcome.value) for r in records] == [("primary", "cancelled"), ("hedge", "ok")]


def test_an_async_stream_cancelled_during_the_race_settles_both_racers():
    slow = _Watched(script=["slow"], model_name="slow", delay=30)
    slower = _Watched(script=["slower"], model_name="slower", delay=30)
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker(slow, [slower], policy=Policy(hedge_after=0.1), budget=budget)

    async def main() -> list:
        task = asyncio.ensure_future(anext(aiter(llm.astream("race"))))
        await asyncio.sleep(0.4)  # both are racing now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    with capture_records() as records:
        pending = asyncio.run(main())
    assert pending == []
    assert sorted(slow.closed + slower.closed) == ["slow", "slower"]
    assert sorted((r.role.value, r.outcome.value) for r in records) == [
        ("hedge", "cancelled"),
        ("primary", "cancelled"),
    ]
    assert budget.status()["total"]["reserved"] == 0


def test_the_llm_magic_streams_the_hedge_and_its_footer_says_so(no_keys):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    import coffee_nb

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], policy=Policy(hedge_after=0.2))
    sandbox.inject("sandbox/fast", ["slow_first:5"])
    with capture_records() as records, capture_output():
        shell.run_cell_magic("llm", "--no-cache", "tell me about ristretto")
    answer = shell.user_ns["_"]
    assert answer.model == "sandbox/echo" and answer.text == "tell me about ristretto"
    assert "hedged: answered before sandbox/fast" in answer.footer()
    assert [(r.role.value, r.outcome.value) for r in records] == [("primary", "cancelled"), ("hedge", "ok")]
    assert all(a["stream"] for a in sandbox.attempts())  # the magic streamed both


def test_when_the_primary_wins_the_race_the_footer_says_hedged_not_retried(no_keys):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    import coffee_nb

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], policy=Policy(hedge_after=0.2))
    sandbox.inject("sandbox/fast", ["slow_first:0.8"])  # late, but earlier than the hedge
    sandbox.inject("sandbox/echo", ["slow_first:10"])
    with capture_output():
        shell.run_cell_magic("llm", "--no-cache", "tell me about lungo")
    footer = shell.user_ns["_"].footer()
    assert footer.startswith("sandbox/fast · hedged: answered before sandbox/echo ·"), footer
    assert "retr" not in footer


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_a_hedge_that_cannot_start_lost_and_the_primary_still_answers(mode, no_keys):
    """The hedge's model has no key: preparing it fails, which is that attempt's failure, not the call's."""
    budget = Budget(total=100, ledger="memory")
    llm = AutoPicker("sandbox/fast", ["openai/gpt-4o-mini"], policy=Policy(hedge_after=0.2), budget=budget)
    sandbox.inject("sandbox/fast", ["slow_first:0.8"])
    with capture_records() as records:
        if mode in ("invoke", "ainvoke"):
            model = ask(llm, mode).response_metadata["coffee_nb"]["model"]
        else:
            model = summary_of(stream(llm, mode))["model"]
    assert model == "sandbox/fast"
    assert [(r.model, r.role.value, r.outcome.value, r.error_class) for r in records] == [
        ("openai/gpt-4o-mini", "hedge", "error", "auth"),
        ("sandbox/fast", "primary", "ok", None),
    ]
    assert budget.status()["total"]["reserved"] == 0  # the hedge's hold was given back


def test_the_race_speaks_only_to_the_call():
    """The hedge does the racing I/O; what each racer's end means (recorded, charged, won) is the Call's to
    settle with its plan: no hop from the race past the Call into the plan or the spend."""
    import ast
    import inspect

    from coffee_nb.invoke import _hedge

    tree = ast.parse(inspect.getsource(_hedge))
    reached = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("plan", "spend")})
    assert reached == []
    assert "coffee_nb.invoke._plan" not in {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_a_losing_sync_stream_is_closed_at_once():
    """The sync race's loser is stopped now, not at its next chunk or its read timeout: its socket is
    shut down, so the worker pumping it is free at once (the async loser's task is cancelled likewise)."""
    from coffee_nb.invoke._timeouts import Pump

    sandbox.inject("sandbox/fast", ["slow_first:30"])  # headers at once, then nothing for 30 s
    model = AutoPicker("sandbox/fast")._core.candidates[0].chat_model()
    pump = Pump(lambda: iter(model.stream("a slow answer")))
    with pytest.raises(TimeoutError):
        pump.next(0.3, lambda: TimeoutError("no first token"))  # gives up: closes the pump
    assert pump._job.done.acquire(timeout=5), "the worker still reads the abandoned stream"
    assert pump._responses and all(r.is_closed for r in pump._responses)


def test_the_race_loser_stream_frees_its_worker():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(hedge_after=0.2))
    sandbox.inject("sandbox/fast", ["slow_first:30"])
    from coffee_nb.invoke import _timeouts

    pumps: list = []
    real = _timeouts.Pump.__init__

    def watched(self, *args, **kwargs):
        real(self, *args, **kwargs)
        pumps.append(self)

    _timeouts.Pump.__init__ = watched  # type: ignore[method-assign]  # to see the racers' pumps
    try:
        assert text_of(stream(llm, "stream")) == "hedge my stream"
    finally:
        _timeouts.Pump.__init__ = real  # type: ignore[method-assign]
    loser = pumps[0]
    assert loser._job.done.acquire(timeout=5), "the losing stream's worker is still busy"
