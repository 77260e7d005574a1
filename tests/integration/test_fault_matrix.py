"""Every sandbox fault × (invoke, ainvoke, stream) → the right action, through the real HTTP path."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    DeadlineExceededError,
    Policy,
    capture_records,
    sandbox,
)

POLICY = Policy(backoff_base=0.001, backoff_cap=0.002, attempt_timeout=1.0, deadline=20)

# fault -> (error class, action): "retry" = the same model answers on its 2nd attempt,
# "fallback" = the next model answers, "raise" = the error reaches the caller.
MATRIX: dict[str, tuple[str, str]] = {
    "rate_limit:0.01": ("rate_limit", "retry"),
    "server_error": ("server", "retry"),
    "overloaded": ("server", "retry"),
    "hang:3": ("timeout", "retry"),
    "reset": ("connection", "retry"),
    "malformed": ("server", "retry"),
    "context_overflow": ("context_overflow", "fallback"),
    "auth": ("auth", "fallback"),
    "content_filter": ("content_filter", "fallback"),
}
MODES = ["invoke", "ainvoke", "stream"]


class Ledger:
    """A minimal two-phase budget that records what is committed (the real one arrives with budgets)."""

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


def call(llm: AutoPicker, mode: str, prompt: str = "hello") -> Any:
    if mode == "invoke":
        return llm.invoke(prompt)
    if mode == "ainvoke":
        return asyncio.run(llm.ainvoke(prompt))
    total = None
    for chunk in llm.stream(prompt):
        total = chunk if total is None else total + chunk
    return total


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_matrix(fault, mode):
    error_class, action = MATRIX[fault]
    ledger = Ledger()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY, budget=ledger)
    sandbox.inject("sandbox/fast", [fault])
    with capture_records() as records:
        msg = call(llm, mode)
    meta = msg.response_metadata["coffee_nb"]
    expected_model = "sandbox/fast" if action == "retry" else "sandbox/echo"
    assert meta["model"] == expected_model
    assert [(r.model, r.outcome.value, r.error_class) for r in records] == [
        ("sandbox/fast", "error", error_class),
        (expected_model, "ok", None),
    ]
    assert records[1].role.value == ("retry" if action == "retry" else "fallback")
    # failed attempts are never charged: released, not committed
    assert records[0].cost is None and ledger.released == 1
    assert ledger.committed == [records[1].cost] and records[1].cost > 0 and ledger.open == {}
    if fault.startswith("hang"):
        assert records[0].latency_s < 2.5  # bounded by the attempt timeout, not the 3 s hang


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_stream_error_fault_on_plain_calls_is_a_server_error(mode):
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY)
    sandbox.inject("sandbox/fast", ["stream_error"])
    with capture_records() as records:
        msg = call(llm, mode)
    assert msg.response_metadata["coffee_nb"]["model"] == "sandbox/fast"
    assert records[0].error_class == "server"


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_mid_stream_error_propagates_after_first_chunk(mode):
    ledger = Ledger()
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], policy=POLICY, budget=ledger)
    sandbox.inject("sandbox/fast", ["stream_error"])
    seen: list[str] = []

    async def astream() -> None:
        async for chunk in llm.astream("hello there"):
            seen.append(chunk.content)

    with capture_records() as records, pytest.raises(Exception, match="error while streaming"):
        if mode == "stream":
            for chunk in llm.stream("hello there"):
                seen.append(chunk.content)
        else:
            asyncio.run(astream())
    assert "".join(seen).strip()  # text had already arrived from sandbox/fast
    assert [r.model for r in records] == ["sandbox/fast"]  # no fallback after the first chunk
    assert records[0].outcome == "error" and records[0].ttft_s is not None
    # what was streamed is billed by providers: its estimated cost is committed, not dropped
    assert records[0].tokens_estimated and records[0].cost is not None and ledger.committed == [records[0].cost]


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
