"""Hedged requests (``Policy(hedge_after=...)``): when an attempt is slow, the next candidate starts
alongside it; the first to answer wins and the other is cancelled.

An invoke (:func:`race`, :func:`arace`) is slow when it has not answered after the hedge delay; the
first complete answer wins. A stream (:func:`stream_race`, :func:`astream_race`) is slow when it has
not produced its first token (text, a tool call, or its end; a bare role chunk doesn't count) after
the delay, and a ``"pNN"`` delay reads the model's recent times to first token; the first racer to
produce a first token wins the stream: its chunks, the ones received during the race included, go to
the caller, and from there on it is an ordinary stream (a break mid-stream is recovered as
``Policy(stream_recovery=...)`` says). A stream that resumes or restarts a broken one is not hedged.

Both attempts are reserved on the budget before they start (the plan refuses a hedge the budget can't
cover). The loser is cancelled (async: its task is cancelled and its stream closed, which closes the
HTTP response; sync: its worker is told to stop and closes the stream at its next chunk, or when its
client's read timeout ends it) and settled as cancelled, charged what it likely used: its prompt
(providers bill input once they start) plus an estimate of any text it had sent. A failure of one
racer while the other runs is recorded and the race goes on; when every racer has failed, the last
failure goes back to the driver, which handles it like any other (retry, fall back, raise).

Over ~400 lines as one thing: the four races (invoke, ainvoke, stream, astream) share their rules
(when to hedge, who wins, how a loser is stopped and charged), which is what a reader comes here to compare.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import AsyncIterator, Callable, Sized
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import content_text
from coffee_nb.errors._errors import EmptyResponseError
from coffee_nb.invoke._spend import Attempt
from coffee_nb.invoke._timeouts import AttemptTimeoutError, FirstTokenTimeoutError, Pump, submit

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, AIMessageChunk

    from coffee_nb.invoke._attempt import Call

__all__ = ["Primed", "arace", "astream_race", "race", "stream_race"]


def _timeout(attempt: Attempt) -> AttemptTimeoutError:
    return AttemptTimeoutError("no answer", attempt.timeout, attempt.candidate.name)


def _settle_failure(call: Call, attempt: Attempt, error: BaseException, running: Sized) -> None:
    """One racer failed: record it while another still runs; re-raise it when it was the last."""
    if running:
        call.racer_failed(attempt, error)  # recorded; the race goes on with the others
        return
    call.attempt = attempt  # the driver settles the last failure and decides what comes next
    raise error


def _start_hedge(call: Call, start: Callable[[Attempt], object]) -> None:
    """The hedge delay has passed: start the next candidate alongside, if the plan grants one (reserved on
    the budget). Preparing it can fail (a missing key): then the hedge lost and the race goes on."""
    extra = call.hedge()
    if extra is None:
        return
    try:
        start(extra)
    except Exception as exc:  # noqa: BLE001 - a hedge that can't start is a failed attempt of its own
        call.racer_failed(extra, exc)


def race(call: Call, first: Attempt, start: Callable[[Attempt], Callable[[], Any]], delay: float) -> AIMessage:
    """The sync race: ``start(attempt)`` gives the blocking call for an attempt; each runs on a worker."""
    done: queue.SimpleQueue[tuple[Attempt, Any, BaseException | None]] = queue.SimpleQueue()
    clock = call.clock

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
                    _start_hedge(call, lambda extra: running.__setitem__(extra, launch(extra)))
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
            for job in running.values():
                job.abandoned = True
            losers = list(running)
            running.clear()
            return call.won_race(attempt, value, losers)
    except BaseException:
        for loser, job in running.items():  # interrupted: give up on every racer still out
            job.abandoned = True
            call.lost(loser)
        if running:
            call.attempt = None  # settled here: nothing left for the driver to cancel
        raise
    raise RuntimeError("hedged race ended without an answer")  # unreachable: the last failure re-raises


async def arace(call: Call, first: Attempt, start: Callable[[Attempt], Any], delay: float) -> AIMessage:
    """The async race: ``start(attempt)`` gives the coroutine of an attempt; losers are cancelled."""
    clock = call.clock
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
                    _start_hedge(call, lambda extra: running.__setitem__(extra, asyncio.ensure_future(start(extra))))
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
                for other in running.values():
                    other.cancel()
                losers = list(running)
                running.clear()
                return call.won_race(attempt, task.result(), losers)
    except BaseException:
        for loser, task in running.items():
            task.cancel()
            call.lost(loser)
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


# -- streams -------------------------------------------------------------------------------------------
_END: Any = object()  # a racer's stream ended


class _Racer:
    """One stream in a race: its attempt, its source (a Pump, or an async iterator), the chunks it sent
    before its first token, and when its first-token limit runs out (on the plan's clock)."""

    __slots__ = ("attempt", "source", "early", "until", "task")

    def __init__(self, attempt: Attempt, source: Any, until: float) -> None:
        self.attempt = attempt
        self.source = source
        self.early: list[AIMessageChunk] = []
        self.until = until
        self.task: asyncio.Task[Any] | None = None


def _no_first_token(racer: _Racer, call: Call) -> FirstTokenTimeoutError:
    elapsed = call.clock() - racer.attempt.started
    return FirstTokenTimeoutError("no first token", elapsed, racer.attempt.candidate.name)


def _ended(racer: _Racer) -> EmptyResponseError:
    return EmptyResponseError(f"{racer.attempt.candidate.name} ended its stream before its first token")


def _lost(call: Call, racer: _Racer) -> None:
    """Settle a racer that lost as cancelled: charged its prompt, plus the text it had sent (estimated)."""
    text = "".join(content_text(chunk.content) for chunk in racer.early if chunk.content)
    call.lost(racer.attempt, text, streamed=True)  # it was a stream, even without a first token


class Primed:
    """The winner of a sync stream race, read like a :class:`Pump`: its chunks from the race, then the rest."""

    __slots__ = ("_pump", "_early", "_ended")

    def __init__(self, pump: Pump[AIMessageChunk], early: list[AIMessageChunk], ended: bool) -> None:
        self._pump = pump
        self._early = deque(early)
        self._ended = ended

    def next(self, timeout: float | None, on_timeout: Callable[[], BaseException]) -> AIMessageChunk | None:
        if self._early:
            return self._early.popleft()
        if self._ended:
            return None
        return self._pump.next(timeout, on_timeout)

    def close(self) -> None:
        self._pump.close()


def stream_race(call: Call, first: Attempt, make: Callable[[], Any], delay: float) -> Primed:
    """The sync stream race: ``make()`` starts ``first``'s stream; each stream is pumped on a worker.

    Returns the winner's stream once it has produced its first token (``call.attempt`` is the winner);
    raises the last failure when every racer failed before its first token.
    """
    ready: queue.SimpleQueue[Pump[AIMessageChunk]] = queue.SimpleQueue()  # a pump with an item waiting
    clock = call.clock
    racers: dict[Pump[AIMessageChunk], _Racer] = {}

    def launch(attempt: Attempt, start: Callable[[], Any]) -> None:
        until = clock() + call.first_token_limit(attempt)
        pump: Pump[AIMessageChunk] = Pump(start, ready)
        racers[pump] = _Racer(attempt, pump, until)

    def start_stream(extra: Attempt) -> None:
        model, messages, kwargs = call.target(extra)
        launch(extra, partial(model.stream, messages, call.config, stop=call.stop, **kwargs))

    launch(first, make)
    hedged = False
    try:
        while racers:
            now = clock()
            until = min(r.until for r in racers.values())
            if not hedged:
                until = min(until, first.started + delay)
            try:
                pump = ready.get(timeout=max(0.0, until - now))
            except queue.Empty:
                now = clock()
                if not hedged and now >= first.started + delay:
                    hedged = True
                    _start_hedge(call, start_stream)
                    continue
                for late in [p for p, r in racers.items() if now >= r.until]:
                    late.close()
                    racer = racers.pop(late)
                    _settle_failure(call, racer.attempt, _no_first_token(racer, call), racers)
                continue
            sender = racers.get(pump)
            if sender is None:
                continue  # an item from a racer already given up on
            try:
                chunk = pump.next(0.0, partial(_no_first_token, sender, call))  # there: ``ready`` said so
            except Exception as exc:  # noqa: BLE001 - this racer failed: recorded, or the driver's when it was the last
                racers.pop(pump)
                _settle_failure(call, sender.attempt, exc, racers)
                continue
            if chunk is None and len(racers) > 1:  # ended with nothing to say while another may still answer
                racers.pop(pump)
                _settle_failure(call, sender.attempt, _ended(sender), racers)
                continue
            if chunk is not None:
                sender.early.append(chunk)
                if not call.starts_answer(chunk):
                    continue
            racers.pop(pump)
            for other, loser in racers.items():
                other.close()
                _lost(call, loser)
            racers.clear()
            call.won(sender.attempt)
            return Primed(pump, sender.early, chunk is None)
    except BaseException:
        for other, loser in racers.items():  # interrupted: give up on every racer still out
            other.close()
            _lost(call, loser)
        if racers:
            call.attempt = None  # settled here: nothing left for the driver to cancel
        raise
    raise RuntimeError("stream race ended without a stream")  # unreachable: the last failure re-raises


async def _pull(source: AsyncIterator[Any]) -> Any:
    return await anext(source, _END)


async def _aclose(source: Any) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        with suppress(Exception):  # closing a broken stream may fail again; its error is already recorded
            await close()


async def _stop(racers: list[_Racer]) -> None:
    """Cancel the racers' pending reads and close their streams (which closes their HTTP responses)."""
    tasks = [r.task for r in racers if r.task is not None and not r.task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)  # each cancellation reaches its stream before the stream is closed
    for racer in racers:
        read = racer.task
        if read is not None and read.done() and not read.cancelled():
            read.exception()  # retrieved: a racer given up on has nothing more to say
        await _aclose(racer.source)


def _harvest(racer: _Racer) -> None:
    """A loser whose read finished in the same instant as the winner's: count what it sent."""
    task = racer.task
    if task is not None and task.done() and not task.cancelled() and task.exception() is None:
        chunk = task.result()
        if chunk is not _END:
            racer.early.append(chunk)


async def _primed(
    early: list[AIMessageChunk], source: AsyncIterator[AIMessageChunk], ended: bool
) -> AsyncIterator[AIMessageChunk]:
    try:
        for chunk in early:
            yield chunk
        if not ended:
            async for chunk in source:
                yield chunk
    finally:
        await _aclose(source)


async def astream_race(
    call: Call, first: Attempt, chunks: AsyncIterator[AIMessageChunk], delay: float, loop: asyncio.AbstractEventLoop
) -> AsyncIterator[AIMessageChunk]:
    """The async stream race: ``chunks`` is ``first``'s stream. Returns the winner's stream once it has
    produced its first token (``call.attempt`` is the winner); the losers' tasks are cancelled and their
    streams closed before it returns. Raises the last failure when every racer failed first."""
    clock = call.clock
    racers: list[_Racer] = []

    def launch(attempt: Attempt, source: AsyncIterator[AIMessageChunk]) -> None:
        racer = _Racer(attempt, source, clock() + call.first_token_limit(attempt))
        racer.task = asyncio.ensure_future(_pull(source))
        racers.append(racer)

    def start_astream(extra: Attempt) -> None:
        model, messages, kwargs = call.target(extra, loop)
        launch(extra, aiter(model.astream(messages, call.config, stop=call.stop, **kwargs)))

    launch(first, chunks)
    hedged = False
    try:
        while racers:
            now = clock()
            until = min(r.until for r in racers)
            if not hedged:
                until = min(until, first.started + delay)
            tasks = [r.task for r in racers if r.task is not None]
            done, _ = await asyncio.wait(tasks, timeout=max(0.0, until - now), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                now = clock()
                if not hedged and now >= first.started + delay:
                    hedged = True
                    _start_hedge(call, start_astream)
                    continue
                for late in [r for r in racers if now >= r.until]:
                    racers.remove(late)
                    await _stop([late])
                    _settle_failure(call, late.attempt, _no_first_token(late, call), racers)
                continue
            for racer in [r for r in racers if r.task in done]:
                task = racer.task
                assert task is not None  # every racer in the race has a read pending
                error = task.exception()
                if error is not None:
                    racers.remove(racer)
                    await _aclose(racer.source)
                    _settle_failure(call, racer.attempt, error, racers)
                    continue
                chunk = task.result()
                racer.task = None
                if chunk is _END and len(racers) > 1:
                    racers.remove(racer)
                    _settle_failure(call, racer.attempt, _ended(racer), racers)
                    continue
                if chunk is not _END:
                    racer.early.append(chunk)
                    if not call.starts_answer(chunk):
                        racer.task = asyncio.ensure_future(_pull(racer.source))
                        continue
                racers.remove(racer)
                for loser in racers:
                    _harvest(loser)
                try:
                    await _stop(racers)
                except BaseException:
                    racers.append(racer)  # interrupted while stopping the losers: the winner is given up on too
                    raise
                for loser in racers:
                    _lost(call, loser)
                racers.clear()
                call.won(racer.attempt)
                return _primed(racer.early, racer.source, chunk is _END)
    except BaseException:
        for loser in racers:  # interrupted: give up on every racer still out (settled first: that can't fail)
            _lost(call, loser)
        if racers:
            call.attempt = None  # settled here: nothing left for the driver to cancel
            await _stop(racers)
        raise
    raise RuntimeError("stream race ended without a stream")  # unreachable: the last failure re-raises
