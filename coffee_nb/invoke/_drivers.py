"""The drivers: the same loop twice, with blocking (:func:`drive`) or awaited (:func:`adrive`) I/O.

Each does what the call's plan says until an answer comes back or the plan gives up; everything
around an attempt (limits, relaying, recovery, settling) is the :class:`~coffee_nb.invoke._attempt.Call`'s.
Both serve invoke and stream: for invoke the driver yields one item, the answer; for a stream, the
chunks and a closing summary chunk. A cassette's recorded answer is yielded the same way. A hedged
attempt (``Policy(hedge_after=...)``) races in ``_hedge.py``: an invoke to its answer, a stream to its
first token, after which the winner's stream is read here like any other.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, Generator
from contextlib import suppress
from functools import partial
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from coffee_nb._shared._redact import scrub
from coffee_nb.errors._errors import CoffeeError
from coffee_nb.invoke._attempt import Call
from coffee_nb.invoke._compat import restart_event
from coffee_nb.invoke._hedge import Primed, arace, astream_race, async_starter, race, stream_race, sync_starter
from coffee_nb.invoke._replay import replayed
from coffee_nb.invoke._timeouts import AttemptTimeoutError, Pump, call_within

__all__ = ["adrive", "arun", "drive", "is_summary", "run"]


def drive(call: Call) -> Generator[Any, None, None]:
    """The sync driver: do what the plan says until an answer comes back or the plan gives up."""
    try:
        config, stop = call.config, call.stop
        if call.tape is not None:
            replay = list(replayed(call))
            if replay:
                yield from replay
                return
        while True:
            try:
                step = call.next()
            except CoffeeError as exc:  # the plan has nothing left
                raise call.give_up(exc) from exc.__cause__
            if isinstance(step, float):
                time.sleep(step)
                continue
            try:
                model, messages, kwargs = call.target(step)
                if call.streaming:
                    # bound now: a worker that starts late must not see the next attempt's model
                    make = partial(model.stream, messages, config, stop=stop, **kwargs)
                    delay = call.hedge_delay(step)
                    pump: Pump[AIMessageChunk] | Primed = (
                        Pump(make) if delay is None else stream_race(call, step, make, delay)
                    )
                    try:
                        while True:
                            limit, complete = call.read_limit()
                            try:
                                chunk = pump.next(limit, call.timed_out)
                            except AttemptTimeoutError:
                                if complete:  # a server that holds a complete stream open: stop reading it
                                    break
                                raise
                            if chunk is None:
                                break
                            for out in call.relay(chunk):
                                if out is call.restart_chunk:
                                    restart_event(call.config, out.message.response_metadata["coffee_nb"])
                                yield out
                    finally:
                        pump.close()
                    result: AIMessage | ChatGenerationChunk = call.streamed()
                elif (delay := call.hedge_delay(step)) is not None:
                    prepared = (model, messages, kwargs)
                    result = race(call, step, sync_starter(call, step, prepared, config, stop), delay)
                else:
                    bound = call.invoke_limit(step)
                    if bound is None:
                        output = model.invoke(messages, config, stop=stop, **kwargs)
                    else:
                        invoke = partial(model.invoke, messages, config, stop=stop, **kwargs)
                        output = call_within(invoke, bound, call.timed_out, call.settle_later(step))
                    result = call.answered(output)
            except Exception as exc:
                if call.failed(exc):
                    continue
                raise
            except BaseException:
                call.cancelled()
                raise
            yield result  # outside the try: a caller that stops here has its answer, nothing is cancelled
            return
    except Exception as exc:
        scrub(exc)  # deep: what leaves coffee_nb carries no key anywhere (its response, request, body)
        raise
    finally:
        if call.traced is not None:  # rare (an OpenTelemetry sink): what ended the call is in flight here
            call.ended(_outcome(call, sys.exc_info()[1]))


async def adrive(call: Call) -> AsyncGenerator[Any, None]:
    """The async driver: the same loop, with awaited sleeps and cancelled awaits at the limits."""
    try:
        config, stop = call.config, call.stop
        loop = asyncio.get_running_loop()
        if call.tape is not None:
            replay = list(replayed(call))
            if replay:
                for item in replay:
                    yield item
                return
        while True:
            try:
                step = call.next()
            except CoffeeError as exc:  # the plan has nothing left
                raise call.give_up(exc) from exc.__cause__
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            try:
                model, messages, kwargs = call.target(step, loop)
                if call.streaming:
                    chunks = aiter(model.astream(messages, config, stop=stop, **kwargs))
                    if (delay := call.hedge_delay(step)) is not None:
                        chunks = await astream_race(call, step, chunks, delay, loop)
                    try:
                        while True:
                            limit, complete = call.read_limit()
                            try:
                                chunk = await _within(anext(chunks, None), limit, call)
                            except AttemptTimeoutError:
                                if complete:  # a server that holds a complete stream open: stop reading it
                                    break
                                raise
                            if chunk is None:
                                break
                            for out in call.relay(chunk):
                                if out is call.restart_chunk:
                                    event = restart_event(call.config, out.message.response_metadata["coffee_nb"])
                                    if event is not None:
                                        await event
                                yield out
                    finally:
                        await _close(chunks)
                    result: AIMessage | ChatGenerationChunk = call.streamed()
                elif (delay := call.hedge_delay(step)) is not None:
                    prepared = (model, messages, kwargs)
                    result = await arace(call, step, async_starter(call, step, prepared, config, stop, loop), delay)
                else:
                    coro = model.ainvoke(messages, config, stop=stop, **kwargs)
                    result = call.answered(await _within(coro, step.timeout, call))
            except Exception as exc:
                if call.failed(exc):
                    continue
                raise
            except BaseException:
                call.cancelled()
                raise
            yield result
            return
    except Exception as exc:
        scrub(exc)  # deep: what leaves coffee_nb carries no key anywhere (its response, request, body)
        raise
    finally:
        if call.traced is not None:  # rare (an OpenTelemetry sink): what ended the call is in flight here
            call.ended(_outcome(call, sys.exc_info()[1]))


async def _within(awaitable: Any, seconds: float, call: Call) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise call.timed_out() from None


async def _close(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        with suppress(Exception):  # closing a broken stream may fail again; its error is already recorded
            await close()


def _outcome(call: Call, failure: BaseException | None) -> BaseException | None:
    """What ended the call: None when it was answered (closing the driver after the answer is no failure)."""
    if failure is None or (isinstance(failure, GeneratorExit) and call.summary is not None):
        return None
    return failure


def run(call: Call) -> AIMessage:
    """Invoke: drive ``call`` to its answer."""
    driver = drive(call)
    answer: AIMessage = next(driver)
    driver.close()
    return answer


async def arun(call: Call) -> AIMessage:
    """Async invoke: drive ``call`` to its answer (closing the driver here, not in a finalizer task)."""
    driver = adrive(call)
    answer: AIMessage = await anext(driver)
    await driver.aclose()
    return answer


def is_summary(chunk: ChatGenerationChunk) -> bool:
    """Is this a chunk of ours (the closing summary or a restart marker), not the model's text?"""
    return "coffee_nb" in chunk.message.response_metadata
