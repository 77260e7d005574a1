"""The attempt runner: one :class:`Call` per AutoPicker call, and the two drivers that do its I/O.

:class:`Call` holds everything around an attempt that does not depend on sync vs. async: building
the candidate's runnable and kwargs, relaying stream chunks, settling success, failure and
cancellation with the plan, and the answer's :class:`CallSummary`. The drivers, :func:`drive`
(sync) and :func:`adrive` (async), are the same loop with blocking or awaited I/O; both serve
invoke and stream (``Call.streaming``):

- invoke: the driver yields one item, the answer (an ``AIMessage``);
- stream: it yields ``ChatGenerationChunk`` s, the last one carrying only the summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from coffee_nb._compat import as_message, child_config, private_state, shared_output, usage_of
from coffee_nb._errors import ConfigError, EmptyResponseError
from coffee_nb._format import content_text
from coffee_nb._plan import Attempt, Core, Plan
from coffee_nb._policy import Action
from coffee_nb._summary import CallSummary

if TYPE_CHECKING:
    from coffee_nb._invoker import AutoPicker

__all__ = ["Call", "adrive", "arun", "drive", "run"]

# Our private kwargs (set by bind_tools/with_structured_output) and tracing-only ones: never sent to candidates.
_CALL_KEYS = frozenset({"coffee_tools", "coffee_structured", "ls_structured_output_format"})


class Call:
    """One call in progress: the plan, and what happens around each attempt, for every driver alike."""

    __slots__ = ("picker", "plan", "messages", "stop", "config", "kwargs", "streaming", "attempt", "ttft", "total")

    def __init__(
        self,
        picker: AutoPicker,
        messages: Sequence[BaseMessage] | str,
        stop: list[str] | None,
        run_manager: Any,
        kwargs: dict[str, Any],
        *,
        streaming: bool = False,
    ) -> None:
        if "model" in kwargs:
            raise ConfigError(
                f"AutoPicker chooses the model itself; a per-call model={kwargs['model']!r} is not supported. "
                "Build another AutoPicker for another chain, e.g. AutoPicker('sandbox/smart', ['sandbox/fast'])."
            )
        core: Core = private_state(picker, "_core")
        self.picker = picker
        self.plan = Plan(core, picker.budget, messages, kwargs.get("max_tokens", picker.max_tokens))
        self.messages = messages
        self.stop = stop or picker.stop or None
        self.config = child_config(run_manager)
        self.kwargs = kwargs
        self.streaming = streaming
        self.attempt: Attempt | None = None
        self.ttft: float | None = None
        self.total: AIMessageChunk | None = None

    # -- before an attempt ---------------------------------------------------------------------------
    def next(self) -> Attempt | float:
        """The plan's next step: an attempt (now current) or seconds to wait."""
        step = self.plan.next()
        if isinstance(step, Attempt):
            self.attempt, self.ttft, self.total = step, None, None
        return step

    def target(self, attempt: Attempt, loop: asyncio.AbstractEventLoop | None = None) -> tuple[Any, dict[str, Any]]:
        """The runnable to call for ``attempt`` and the kwargs to call it with."""
        picker, cand, call_kwargs = self.picker, attempt.candidate, self.kwargs
        model: Any = cand.chat_model(timeout=attempt.timeout, loop=loop)
        kwargs = {k: v for k, v in call_kwargs.items() if k not in _CALL_KEYS}
        if cand.instance is None:  # built by us from a spec: the picker's defaults apply
            if picker.temperature is not None:
                kwargs.setdefault("temperature", picker.temperature)
            if picker.max_tokens is not None:
                kwargs.setdefault("max_tokens", picker.max_tokens)
            if cand.timeout_kwarg and loop is None:
                kwargs["timeout"] = attempt.timeout
        tools = call_kwargs.get("coffee_tools")
        if tools is not None:
            model = model.bind_tools(list(tools[0]), **tools[1])
        structured = call_kwargs.get("coffee_structured")
        if structured is not None:
            model = model.with_structured_output(structured[0], include_raw=True, **structured[1])
        return model, kwargs

    # -- during a stream -------------------------------------------------------------------------------
    def relay(self, chunk: AIMessageChunk) -> ChatGenerationChunk:
        """Pass one chunk on to the caller, keeping the running total (and the time to the first)."""
        if self.ttft is None:
            assert self.attempt is not None
            self.ttft = self.plan.clock() - self.attempt.started
        self.total = chunk if self.total is None else self.total + chunk
        return ChatGenerationChunk(message=chunk)

    # -- how an attempt ended ----------------------------------------------------------------------------
    def answered(self, output: Any) -> AIMessage:
        """Settle a successful invoke; the answer carries ``response_metadata["coffee_nb"]``."""
        attempt = self._current()
        message, structured = as_message(output)
        summary = self._succeeded(attempt, message, structured)
        response_metadata = {**message.response_metadata, "coffee_nb": summary}
        if shared_output(attempt.candidate.instance):  # a cache may hand the same object to later calls
            return message.model_copy(update={"response_metadata": response_metadata})
        message.response_metadata = response_metadata  # ours alone (LangChain sets this field per call)
        return message

    def streamed(self) -> ChatGenerationChunk:
        """Settle a finished stream; the closing chunk carries only the summary."""
        attempt = self._current()
        if self.total is None:
            raise EmptyResponseError(f"{attempt.candidate.name} ended its stream without a single chunk")
        summary = self._succeeded(attempt, self.total, None)
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"coffee_nb": summary}))

    def failed(self, exc: Exception) -> bool:
        """Report a failure; True when the driver should go on with the plan, False to raise ``exc``."""
        attempt = self._current()
        partial = self._partial_usage(attempt)
        action = self.plan.failed(attempt, exc, ttft=self.ttft, partial=partial)
        # text has reached the caller: a failure now propagates (never a truncated "success")
        return self.ttft is None and action is not Action.RAISE

    def cancelled(self) -> None:
        """The caller stopped the attempt (KeyboardInterrupt, task cancelled, stream closed early)."""
        attempt = self.attempt
        if attempt is None:
            return
        self.plan.cancelled(attempt, ttft=self.ttft, partial=self._partial_usage(attempt))

    # -- helpers ---------------------------------------------------------------------------------------
    def _current(self) -> Attempt:
        attempt = self.attempt
        if attempt is None:
            raise RuntimeError("no attempt in progress")
        return attempt

    def _succeeded(self, attempt: Attempt, message: BaseMessage, structured: dict[str, Any] | None) -> CallSummary:
        plan = self.plan
        cand = attempt.candidate
        usage = usage_of(message) or plan.estimate(cand, content_text(message.content))
        plan.succeeded(attempt, usage, ttft=self.ttft, streamed=self.streaming)
        self.attempt = None
        return CallSummary(
            tuple(plan.records), latency_s=plan.elapsed(), ttft_s=self.ttft, structured=structured
        )

    def _partial_usage(self, attempt: Attempt) -> Any:
        """What a broken stream delivered (the provider bills it), or None before the first chunk."""
        self.attempt = None
        total = self.total
        if total is None:
            return None
        return usage_of(total) or self.plan.estimate(attempt.candidate, content_text(total.content))


def drive(call: Call) -> Iterator[Any]:
    """The sync driver: do what the plan says until an answer comes back or the plan gives up."""
    messages, config, stop = call.messages, call.config, call.stop
    while True:
        step = call.next()
        if isinstance(step, float):
            time.sleep(step)
            continue
        try:
            model, kwargs = call.target(step)
            if call.streaming:
                for chunk in model.stream(messages, config, stop=stop, **kwargs):
                    yield call.relay(chunk)
                result = call.streamed()
            else:
                result = call.answered(model.invoke(messages, config, stop=stop, **kwargs))
        except Exception as exc:
            if call.failed(exc):
                continue
            raise
        except BaseException:
            call.cancelled()
            raise
        yield result  # outside the try: a caller that stops here has its answer, nothing is cancelled
        return


async def adrive(call: Call) -> AsyncIterator[Any]:
    """The async driver: the same loop, with awaited sleeps and the per-attempt timeout enforced."""
    messages, config, stop = call.messages, call.config, call.stop
    loop = asyncio.get_running_loop()
    while True:
        step = call.next()
        if isinstance(step, float):
            await asyncio.sleep(step)
            continue
        try:
            model, kwargs = call.target(step, loop)
            if call.streaming:
                chunks = aiter(model.astream(messages, config, stop=stop, **kwargs))
                chunk = await asyncio.wait_for(anext(chunks, None), step.timeout)
                while chunk is not None:
                    yield call.relay(chunk)
                    chunk = await anext(chunks, None)
                result = call.streamed()
            else:
                coro = model.ainvoke(messages, config, stop=stop, **kwargs)
                result = call.answered(await asyncio.wait_for(coro, step.timeout))
        except Exception as exc:
            if call.failed(exc):
                continue
            raise
        except BaseException:
            call.cancelled()
            raise
        yield result
        return


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
    """Is this the closing chunk of a stream (the summary, no content of the model's)?"""
    return "coffee_nb" in chunk.message.response_metadata
