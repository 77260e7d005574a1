"""Hedged requests (``Policy(hedge_after=...)``): when an attempt has not answered after the hedge delay,
the next candidate starts alongside it; the first answer wins and the other is cancelled.

Both attempts are reserved on the budget before they start (the plan refuses a hedge the budget can't
cover). The loser is settled as cancelled and charged what it likely used (its prompt: providers bill
input once they start). A failure of one racer while the other runs is recorded and the race goes on;
when every racer has failed, the last failure goes back to the driver, which handles it like any
other (retry, fall back, raise). Hedging applies to invoke and ainvoke; streams are not hedged.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from coffee_nb._plan import Attempt
from coffee_nb._timeouts import AttemptTimeoutError, submit

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage

    from coffee_nb._attempt import Call

__all__ = ["arace", "race"]


def _timeout(attempt: Attempt) -> AttemptTimeoutError:
    return AttemptTimeoutError("no answer", attempt.timeout, attempt.candidate.name)


def _settle_failure(call: Call, attempt: Attempt, error: BaseException, running: dict[Attempt, Any]) -> None:
    """One racer failed: record it while another still runs; re-raise it when it was the last."""
    if running:
        call.plan.failed(attempt, error)  # recorded; the race goes on with the others
        return
    call.attempt = attempt  # the driver settles the last failure and decides what comes next
    raise error


def race(call: Call, first: Attempt, start: Callable[[Attempt], Callable[[], Any]], delay: float) -> AIMessage:
    """The sync race: ``start(attempt)`` gives the blocking call for an attempt; each runs on a worker."""
    done: queue.SimpleQueue[tuple[Attempt, Any, BaseException | None]] = queue.SimpleQueue()
    clock = call.plan.clock

    def launch(attempt: Attempt) -> Any:
        fn = start(attempt)

        def run() -> None:
            try:
                done.put((attempt, fn(), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the racing caller
                done.put((attempt, None, exc))

        return submit(run)

    running: dict[Attempt, Any] = {first: launch(first)}  # a preparation error here: the driver's, as usual
    hedged = False
    try:
        while running:
            now = clock()
            until = min(a.started + a.timeout for a in running)
            if not hedged:
                until = min(until, first.started + delay)
            try:
                attempt, value, error = done.get(timeout=max(0.0, until - now))
            except queue.Empty:
                now = clock()
                if not hedged and now >= first.started + delay:
                    hedged = True
                    extra = call.plan.hedge()
                    if extra is not None:
                        try:
                            running[extra] = launch(extra)
                        except Exception as exc:  # noqa: BLE001 - preparing the hedge failed: it lost, the race goes on
                            call.plan.failed(extra, exc)
                    continue
                for late in [a for a in running if now >= a.started + a.timeout]:
                    running.pop(late).abandoned = True
                    _settle_failure(call, late, _timeout(late), running)
                continue
            if attempt not in running:
                continue  # a result from an attempt already given up on
            running.pop(attempt)
            if error is not None:
                _settle_failure(call, attempt, error, running)
                continue
            for loser, job in running.items():
                job.abandoned = True
                call.plan.abandoned(loser)
            running.clear()
            call.attempt = attempt
            return call.answered(value)
    except BaseException:
        for loser, job in running.items():  # interrupted: give up on every racer still out
            job.abandoned = True
            call.plan.abandoned(loser)
        if running:
            call.attempt = None  # settled here: nothing left for the driver to cancel
        raise
    raise RuntimeError("hedged race ended without an answer")  # unreachable: the last failure re-raises


async def arace(call: Call, first: Attempt, start: Callable[[Attempt], Any], delay: float) -> AIMessage:
    """The async race: ``start(attempt)`` gives the coroutine of an attempt; losers are cancelled."""
    clock = call.plan.clock
    running: dict[Attempt, asyncio.Task[Any]] = {first: asyncio.ensure_future(start(first))}
    hedged = False
    try:
        while running:
            now = clock()
            until = min(a.started + a.timeout for a in running)
            if not hedged:
                until = min(until, first.started + delay)
            finished, _ = await asyncio.wait(
                running.values(), timeout=max(0.0, until - now), return_when=asyncio.FIRST_COMPLETED
            )
            if not finished:
                now = clock()
                if not hedged and now >= first.started + delay:
                    hedged = True
                    extra = call.plan.hedge()
                    if extra is not None:
                        try:
                            running[extra] = asyncio.ensure_future(start(extra))
                        except Exception as exc:  # noqa: BLE001 - preparing the hedge failed: it lost, the race goes on
                            call.plan.failed(extra, exc)
                    continue
                for late in [a for a in running if now >= a.started + a.timeout]:
                    running.pop(late).cancel()
                    _settle_failure(call, late, _timeout(late), running)
                continue
            for attempt in [a for a, task in running.items() if task in finished]:
                task = running.pop(attempt)
                error = task.exception()
                if error is not None:
                    _settle_failure(call, attempt, error, running)
                    continue
                for loser, other in running.items():
                    other.cancel()
                    call.plan.abandoned(loser)
                running.clear()
                call.attempt = attempt
                return call.answered(task.result())
    except BaseException:
        for loser, task in running.items():
            task.cancel()
            call.plan.abandoned(loser)
        if running:
            call.attempt = None  # settled here: nothing left for the driver to cancel
        raise
    raise RuntimeError("hedged race ended without an answer")  # unreachable: the last failure re-raises


Prepared = tuple[Any, Any, dict[str, Any]]  # (runnable, input, kwargs) of an attempt, from Call.target


def sync_starter(
    call: Call, first: Attempt, prepared: Prepared, config: Any, stop: Any
) -> Callable[[Attempt], Callable[[], Any]]:
    """For :func:`race`: an attempt → its blocking invoke (``first`` is already prepared)."""

    def start(attempt: Attempt) -> Callable[[], Any]:
        model, messages, kwargs = prepared if attempt is first else call.target(attempt)
        return partial(model.invoke, messages, config, stop=stop, **kwargs)

    return start


def async_starter(
    call: Call, first: Attempt, prepared: Prepared, config: Any, stop: Any, loop: asyncio.AbstractEventLoop
) -> Callable[[Attempt], Any]:
    """For :func:`arace`: an attempt → its ainvoke coroutine (``first`` is already prepared)."""

    def start(attempt: Attempt) -> Any:
        model, messages, kwargs = prepared if attempt is first else call.target(attempt, loop)
        return model.ainvoke(messages, config, stop=stop, **kwargs)

    return start
