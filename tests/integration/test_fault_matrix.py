"""Every sandbox fault × (invoke, ainvoke, stream, astream) → a complete answer where a healthy fallback
exists, through the real HTTP path (ChatOpenAI → the sandbox server), and the conduct behind it: the
sandbox logs every request, so retries, waits and failovers are checked, not just the answer."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

import coffee_nb
from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    DeadlineExceededError,
    Policy,
    StreamInterruptedError,
    capture_records,
    sandbox,
)

POLICY = Policy(
    backoff_base=0.001,
    backoff_cap=0.002,
    attempt_timeout=2.0,
    first_token_timeout=1.0,
    idle_timeout=1.0,
    deadline=20,
)
MODES = ["invoke", "ainvoke", "stream", "astream"]
STREAMS = ["stream", "astream"]

# fault -> (error class, who answers): "retry" = the same model on its 2nd attempt, "fallback" = the next model
MATRIX: dict[str, tuple[str, str]] = {
    "rate_limit:0.01": ("rate_limit", "retry"),
    "server_error": ("server", "retry"),
    "overloaded": ("server", "retry"),
    "hang:5": ("timeout", "fallback"),  # a silent route is not retried while a fallback exists
    "silent:5": ("timeout", "fallback"),
    "slow_first:5": ("timeout", "fallback"),  # first-token limit (streams) / attempt timeout (invoke)
    "reset": ("connection", "retry"),
    "reset_early": ("connection", "retry"),
    "malformed": ("server", "retry"),
    "context_overflow": ("context_overflow", "fallback"),
    "auth": ("auth", "fallback"),
}
# mid-stream faults: (error class on a stream, on a plain request), who answers (streams continue by prefill)
MID_STREAM: dict[str, tuple[str, str | None, str]] = {
    "cut:3": ("connection", "connection", "retry"),
    "stream_error": ("server", "server", "retry"),
    "bad_sse:3": ("server", "server", "retry"),
    "stall:3:5": ("timeout", "timeout", "fallback"),
}


class Ledger:
    """A minimal two-phase budget that records what is committed and released."""

    def __init__(self) -> None:
        self.open: dict[int, Decimal | None] = {}
        self.committed: list[Decimal | None] = []
        self.released = 0
        self._n = 0

    def reserve(self, model: str, amount: Decimal | None) -> int:
        self._n += 1
        self.open[self._n] = amount
        return self._n

    def commit(self, lease: int, amount: Decimal | None) -> None:
        self.open.pop(lease)
        self.committed.append(amount)

    def release(self, lease: int) -> None:
        self.open.pop(lease)
        self.released += 1


def call(llm: Any, mode: str, prompt: str = "hello there friend") -> tuple[Any, list[Any]]:
    """The final message (restart markers honoured) and every chunk the caller saw."""
    if mode == "invoke":
        return llm.invoke(prompt), []
    if mode == "ainvoke":
        return asyncio.run(llm.ainvoke(prompt)), []
    if mode == "stream":
        chunks = list(llm.stream(prompt))
    else:

        async def go() -> list[Any]:
            return [c async for c in llm.astream(prompt)]

        chunks = asyncio.run(go())
    return coffee_nb.collect(chunks), chunks


def reference(model: str, prompt: str = "hello there friend") -> str:
    """What ``model`` answers to ``prompt`` with no fault (the sandbox is deterministic)."""
    return AutoPicker(model).invoke(prompt).content


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_matrix(fault, mode):
    error_class, action = MATRIX[fault]
    expected_model = "sandbox/fast" if action == "retry" else "sandbox/echo"
    ledger = Ledger()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY, budget=ledger)
    expected_text = reference(expected_model)
    sandbox.clear_log()
    sandbox.inject("sandbox/fast", [fault])
    start = time.monotonic()
    with capture_records() as records:
        msg, _chunks = call(llm, mode)
    elapsed = time.monotonic() - start
    meta = msg.response_metadata["coffee_nb"]
    assert msg.content == expected_text  # a complete answer
    assert meta["model"] == expected_model
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "error", error_class),
        (expected_model, "ok", None),
    ]
    assert records[1].role.value == ("retry" if action == "retry" else "fallback")
    # failed attempts are never charged: released, not committed; the answer's usage is its model's
    assert records[0].cost is None and ledger.released == 1
    assert ledger.committed == [records[1].cost] and records[1].cost > 0 and ledger.open == {}
    assert meta["tokens"]["output"] == records[1].output_tokens > 0 and not meta["tokens"]["estimated"]
    # conduct: the failing model was tried exactly as often as the policy says
    tries = list(sandbox.attempts("sandbox/fast"))
    assert len(tries) == (2 if action == "retry" else 1)
    assert elapsed < 4.5  # bounded: the 1–2 s limits, never the fault's 5 s
    assert llm.invoke("and now?").response_metadata["coffee_nb"]["role"] in ("primary", "fallback")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(MID_STREAM))
def test_mid_stream_faults_end_in_one_complete_answer(fault, mode):
    stream_class, plain_class, action = MID_STREAM[fault]
    streamed = mode in STREAMS
    error_class = stream_class if streamed else plain_class
    expected_model = "sandbox/fast" if action == "retry" else "sandbox/echo"
    ledger = Ledger()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY, budget=ledger)
    full_fast = reference("sandbox/fast")
    sandbox.clear_log()
    sandbox.inject("sandbox/fast", [fault])
    with capture_records() as records:
        msg, chunks = call(llm, mode)
    assert msg.response_metadata["coffee_nb"]["model"] == expected_model
    assert [r.error_class for r in records] == [error_class, None]
    assert not any(coffee_nb.is_restart(c) for c in chunks)  # continued, not restarted
    if streamed:
        text = "".join(c.content for c in chunks)  # the caller's plain concatenation
        assert text == msg.content
        if action == "retry":
            assert text == full_fast  # the same model picked up where it broke off
        else:
            assert text.startswith(" ".join(full_fast.split(" ")[:3]))
        # the resumed attempt was sent the delivered text as an assistant prefill
        assert sandbox.attempts()[-1]["prefill"] is True
        # what the broken stream delivered was billed (estimated) and committed, nothing left open
        assert records[0].cost is not None and records[0].tokens_estimated
        assert ledger.committed == [records[0].cost, records[1].cost] and ledger.open == {}
    else:
        assert msg.content == reference(expected_model)


@pytest.mark.parametrize("mode", STREAMS)
def test_cut_stream_whose_fallback_rejects_prefill_restarts_without_showing_the_400(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(max_retries=0, deadline=20))
    sandbox.inject("sandbox/fast", ["cut:3"])
    sandbox.inject("sandbox/echo", ["no_prefill"])
    # a plain consumer: the partial text and why, not the prefill's 400
    with capture_records() as records, pytest.raises(StreamInterruptedError) as info:
        call(llm, mode)
    assert "can continue" in str(info.value).splitlines()[0] and "400" not in str(info.value).splitlines()[0]
    assert [r.error_class for r in records] == ["connection", "bad_request"]  # the refusal is learned
    from coffee_nb.errors._errors import classify

    assert classify(info.value.__cause__).error_class == "connection"  # it chains the cut, not the 400
    # collect() takes a restart: the fallback (now known not to take a prefill) answers whole, at once
    sandbox.inject("sandbox/fast", ["cut:3"])
    with capture_records() as records:
        if mode == "stream":
            chunks = []
            msg = coffee_nb.collect(c for c in llm.stream("hello there friend") if chunks.append(c) or True)
        else:

            async def go() -> Any:
                return await coffee_nb.acollect(llm.astream("hello there friend"))

            msg, chunks = asyncio.run(go()), None
    assert msg.content == reference("sandbox/echo")  # the fallback's whole answer
    assert chunks is None or sum(coffee_nb.is_restart(c) for c in chunks) == 1
    assert [r.error_class for r in records] == ["connection", None] and records[-1].model == "sandbox/echo"


@pytest.mark.parametrize("mode", STREAMS)
def test_stream_recovery_raise_gives_the_partial_text_and_the_real_failure(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(stream_recovery="raise"))
    sandbox.inject("sandbox/fast", ["cut:3"])
    with pytest.raises(StreamInterruptedError) as info:
        call(llm, mode)
    assert info.value.partial_text == " ".join(reference("sandbox/fast").split(" ")[:3])
    assert [a.error_class for a in info.value.attempts] == ["connection"]
    assert sandbox.attempts("sandbox/echo") == []


@pytest.mark.parametrize("mode", STREAMS)
def test_stream_restart_mode_marks_the_switch_in_band(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(stream_recovery="restart", max_retries=0))
    sandbox.inject("sandbox/fast", ["cut:3"])
    msg, chunks = call(llm, mode)
    assert sum(coffee_nb.is_restart(c) for c in chunks) == 1
    assert msg.content == reference("sandbox/echo")
    assert not any(a["prefill"] for a in sandbox.attempts())


@pytest.mark.parametrize("mode", STREAMS)
def test_stream_without_done_finalises_at_once_with_usage(mode):
    llm = AutoPicker("sandbox/fast", policy=POLICY)
    sandbox.inject("sandbox/fast", ["no_done:30"])
    start = time.monotonic()
    with capture_records() as records:
        msg, _ = call(llm, mode)
    assert time.monotonic() - start < 2  # not the 30 s the server holds the connection
    assert msg.content == reference("sandbox/fast")
    assert [r.outcome.value for r in records] == ["ok"] and not records[0].tokens_estimated


@pytest.mark.parametrize("mode", MODES)
def test_content_filter_raises_the_providers_reason_by_default(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY)
    sandbox.inject("sandbox/fast", ["content_filter"])
    with pytest.raises(Exception, match="content management policy"):
        call(llm, mode)
    assert sandbox.attempts("sandbox/echo") == [] and len(sandbox.attempts("sandbox/fast")) == 1
    routed = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(on_content_filter="fallback"))
    sandbox.inject("sandbox/fast", ["content_filter"])
    msg, _ = call(routed, mode)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/echo"


# -- conduct -------------------------------------------------------------------------------------------


def test_retry_after_is_honoured_at_the_server():
    llm = AutoPicker("sandbox/fast", policy=Policy(backoff_base=0.001, max_retry_after=10))
    sandbox.inject("sandbox/fast", ["rate_limit:2"])
    llm.invoke("hi")
    first, second = sandbox.attempts("sandbox/fast")
    assert second["t"] - first["t"] >= 1.8


def test_no_hammering_on_a_persistent_429():
    llm = AutoPicker("sandbox/fast", policy=Policy(deadline=3, max_retry_after=10))
    sandbox.inject("sandbox/fast", rates={"rate_limit": 1.0})
    start = time.monotonic()
    with pytest.raises(AllModelsFailedError):
        llm.invoke("hi")
    assert time.monotonic() - start < 4
    assert len(sandbox.attempts("sandbox/fast")) <= 4


@pytest.mark.parametrize("mode", MODES)
def test_no_same_model_retry_on_a_400(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY).bind(temperature=7)  # the server says 400
    with pytest.raises(Exception, match="temperature"):
        call(llm, mode)
    assert len(sandbox.attempts("sandbox/fast")) == 1 and sandbox.attempts("sandbox/echo") == []


@pytest.mark.parametrize("mode", MODES)
def test_silent_route_is_tried_once_then_the_fallback_answers(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY)
    sandbox.inject("sandbox/fast", rates={"silent": 1.0})
    start = time.monotonic()
    msg, _ = call(llm, mode)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/echo"
    assert time.monotonic() - start < 3
    assert len(sandbox.attempts("sandbox/fast")) == 1


def test_recovered_primary_is_used_again_within_two_requests():
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(backoff_base=0.01, backoff_cap=0.02))
    sandbox.inject("sandbox/fast", ["down:2.5"])
    answered = []
    for _ in range(8):
        answered.append(llm.invoke("hi").response_metadata["coffee_nb"]["model"])
        time.sleep(1.0)
    assert answered[0] == "sandbox/echo"
    back = [i for i, a in enumerate(sandbox.attempts("sandbox/fast")) if a["fault"] is None]
    assert back, "the primary was never tried again after it came back"
    first_ok_request = answered.index("sandbox/fast")
    # the primary was down for the first 2.5 s: requests 0–2; it must answer again by request 3 + 2
    assert first_ok_request <= 5
    assert answered[first_ok_request:] == ["sandbox/fast"] * (len(answered) - first_ok_request)


@pytest.mark.parametrize("mode", MODES)
def test_all_models_failed_lists_every_attempt(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=Policy(max_retries=1, backoff_base=0.001))
    sandbox.inject("sandbox/fast", ["server_error", "overloaded"])
    sandbox.inject("sandbox/echo", ["auth"])
    with pytest.raises(AllModelsFailedError) as info:
        call(llm, mode)
    err = info.value
    assert [(a.model, a.error_class) for a in err.attempts] == [
        ("sandbox/fast", "server"),
        ("sandbox/fast", "server"),
        ("sandbox/echo", "auth"),
    ]
    text = str(err)
    assert "3 attempts" in text and "sandbox/echo" in text and "auth" in text
    assert "sandbox-no-key-needed" not in text


@pytest.mark.parametrize("mode", MODES)
def test_deadline_is_respected(mode):
    policy = Policy(deadline=1.5, attempt_timeout=10, max_retries=0)
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=policy)
    sandbox.inject("sandbox/fast", ["hang:5"])
    sandbox.inject("sandbox/echo", ["hang:5"])
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        call(llm, mode)
    assert time.monotonic() - start < 3.0  # the 1.5 s deadline, not 2 × 5 s of hanging


def test_always_rate_limited_model_ends_in_fallback():
    llm = AutoPicker("sandbox/limited", ["sandbox/fast"], policy=Policy(max_retry_after=0.5, deadline=10))
    with capture_records() as records:
        msg = llm.invoke("hi")
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert records[0].error_class == "rate_limit"


def test_probabilistic_faults_are_seeded():
    def run() -> list[str | None]:
        sandbox.clear_faults()
        sandbox.inject("sandbox/fast", rates={"503": 0.5}, seed=42)
        llm = AutoPicker("sandbox/fast", policy=Policy(max_retries=0, cooldown_after=10_000))
        outcomes = []
        for _ in range(12):
            try:
                llm.invoke("x")
                outcomes.append(None)
            except AllModelsFailedError as exc:
                outcomes.append(exc.attempts[0].error_class)
        return outcomes

    first = run()
    assert first == run()
    assert 2 <= first.count("server") <= 10
