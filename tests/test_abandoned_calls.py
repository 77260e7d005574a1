"""A watched sync call coffee_nb walked away from is still paid for (issue 26, item 2).

A sync model that can't bound its own call runs on a worker thread; at the attempt timeout the chain
moves on, but the call goes on and the provider bills it if it answers. Its reservation stays held
until it ends; then its cost is committed and published as an ``abandoned`` record, or, if its client
gives up, the reservation is released.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from coffee_nb import AutoPicker, Budget, Policy, capture_records, register_price
from coffee_nb.testing import ScriptedChatModel, isolated


@pytest.fixture(autouse=True)
def _clean_state():
    with isolated():
        yield


def _late_sink() -> tuple[list, object, threading.Event]:
    """Records, a sink that keeps them, and an event set when an abandoned call's record arrives."""
    seen: list = []
    ended = threading.Event()

    def sink(record) -> None:
        seen.append(record)
        if record.abandoned:
            ended.set()

    return seen, sink, ended


def test_a_call_that_answers_after_its_timeout_is_charged_when_it_ends():
    register_price("fake/slow", input=1_000, output=2_000)  # USD per 1M tokens: large enough to see
    slow = ScriptedChatModel(script=["a late answer"], model_name="slow", delay=0.6)
    budget = Budget(total=100, ledger="memory")
    records, sink, ended = _late_sink()
    picker = AutoPicker(
        slow,
        [ScriptedChatModel(script=["the fallback's answer"], model_name="fast")],
        budget=budget,
        metrics=[sink],
        policy=Policy(attempt_timeout=0.15, max_retries=0),
    )
    answer = picker.invoke("hi")
    assert answer.content == "the fallback's answer"
    timed_out = [r for r in records if r.model == "fake/slow"]
    assert [(r.outcome, r.error_class, r.cost) for r in timed_out] == [("error", "timeout", None)]
    assert budget.status()["total"]["reserved"] > 0  # the slow call's worst case, held while it runs
    assert ended.wait(10), "the abandoned call was never settled"
    late = [r for r in records if r.abandoned]
    assert len(late) == 1
    (record,) = late
    assert record.model == "fake/slow" and record.outcome == "cancelled" and record.call_id == timed_out[0].call_id
    assert record.input_tokens > 0 and record.output_tokens > 0 and record.cost is not None and record.cost > 0
    status = budget.status()["total"]
    assert status["reserved"] == 0
    charged = sum((r.cost or Decimal(0)) for r in records if r.outcome == "ok" or r.abandoned)
    assert status["spent"] == charged  # the fallback's answer and the late one, every cent


def test_a_call_whose_client_gives_up_later_releases_its_reservation():
    register_price("fake/slow", input=1_000, output=2_000)
    slow = ScriptedChatModel(script=[ConnectionError("read timed out")], model_name="slow", delay=0.5)
    budget = Budget(total=100, ledger="memory")
    records: list = []
    picker = AutoPicker(
        slow,
        [ScriptedChatModel(script=["ok"], model_name="fast")],
        budget=budget,
        metrics=[records.append],
        policy=Policy(attempt_timeout=0.1, max_retries=0),
    )
    assert picker.invoke("hi").content == "ok"
    assert budget.status()["total"]["reserved"] > 0
    job_done = threading.Event()
    for _ in range(100):  # the worker releases the reservation as the slow call fails (~0.4 s from now)
        if budget.status()["total"]["reserved"] == 0:
            job_done.set()
            break
        threading.Event().wait(0.05)
    assert job_done.is_set(), "the reservation of a call that failed late was never released"
    assert not [r for r in records if r.abandoned]  # nothing answered: nothing charged
    assert budget.status()["total"]["spent"] == sum((r.cost or Decimal(0)) for r in records if r.outcome == "ok")


def test_a_late_record_goes_to_who_listened_to_the_call_not_to_who_listens_when_it_ends():
    slow = ScriptedChatModel(script=["a late answer"], model_name="slow", delay=0.6)
    llm = AutoPicker(slow, [ScriptedChatModel(model_name="fast")], policy=Policy(attempt_timeout=0.2, max_retries=0))
    with capture_records() as during:
        llm.invoke("hi")
    with capture_records() as after:  # a later block (a later test): the late record is not its business
        give_up = time.monotonic() + 10
        while not any(r.abandoned for r in during) and time.monotonic() < give_up:
            time.sleep(0.05)  # the abandoned attempt ends meanwhile, on its worker
    assert [(r.model, r.abandoned) for r in during][-1] == ("fake/slow", True)
    assert after == []
