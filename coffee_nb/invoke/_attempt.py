"""The attempt runner: one :class:`Call` per AutoPicker call.

:class:`Call` holds everything around an attempt that does not depend on sync vs. async: building
the candidate's runnable and kwargs, the time limits, relaying stream chunks, recovering a broken
stream, and settling success, failure and cancellation with the plan. The drivers that do its I/O,
:func:`~coffee_nb.invoke._drivers.drive` (sync) and :func:`~coffee_nb.invoke._drivers.adrive` (async), are in
``_drivers.py``; hedged races in ``_hedge.py``; cassette replays in ``_replay.py``.

Time limits, the same in every driver: an invoke attempt gets ``attempt.timeout``; a stream gets the
first-token limit to its first chunk (the attempt timeout when no other model is left) and the idle
limit between chunks; the call's deadline bounds all of it. Async awaits are cancelled at the limit;
sync calls that can't bound themselves run in a worker thread the caller stops waiting for
(``_timeouts.py``).

A stream that breaks after its first chunk is recovered as ``Policy(stream_recovery=...)`` says:
``continue`` sends the text already delivered as an assistant prefill to the next model that takes
one (the caller's concatenation stays one answer); where none can, the answer starts over (a restart
marker chunk, then the next model's whole answer) only for a consumer that handles the marker
(``collect``, ``%%llm``, ``handles_restarts()``, LangChain's invoke-by-streaming nobody watches), and
anyone else gets :class:`StreamInterruptedError` with the partial text; ``restart`` always starts over;
``raise`` raises at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from coffee_nb._shared._format import content_text
from coffee_nb._shared._records import Role, global_sinks
from coffee_nb._shared._validate import usd
from coffee_nb.errors._errors import (
    CoffeeError,
    ConfigError,
    EmptyResponseError,
    ErrorClass,
    StreamInterruptedError,
    classify,
)
from coffee_nb.invoke._compat import PARENT, InConfig, child_config, private_state, read_answer, usage_of
from coffee_nb.invoke._plan import Attempt, Core, Plan, Usage
from coffee_nb.invoke._policy import Action
from coffee_nb.invoke._replay import taped
from coffee_nb.invoke._streams import RESTARTS_OK
from coffee_nb.invoke._summary import CallSummary, keep_structured
from coffee_nb.invoke._timeouts import AttemptTimeoutError, FirstTokenTimeoutError, IdleTimeoutError
from coffee_nb.pricing._pricing import to_pico
from coffee_nb.replay._cassette import CassetteError
from coffee_nb.replay._cassette import active as active_cassette

if TYPE_CHECKING:
    from coffee_nb.invoke._invoker import AutoPicker

log = logging.getLogger("coffee_nb")

__all__ = ["RESTARTED", "Call", "IncompleteStreamError"]

# Our private kwargs (set by bind_tools/with_structured_output) and tracing-only ones: never sent to candidates.
_CALL_KEYS = frozenset({"coffee_tools", "coffee_structured", "ls_structured_output_format", "max_cost"})
# Raised while preparing a call (binding tools, a schema), before any candidate is called: the caller's
# input or a bug, the same for every model; shown at once, not routed around.
_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, ValueError)
_FINISH_KEYS = ("finish_reason", "stop_reason", "done_reason")
# Seconds a stream that is complete (finish reason and usage in) may take to end: read to its end, so the
# candidate's own run ends cleanly in traces; a server that holds it open past this is left.
_GRACE = 1.0


# LangChain's own invoke-by-streaming (``streaming=True``, astream_events) adds every chunk up with ``+``,
# which can't honour a restart marker: AutoPicker.invoke collects the restarted answer here instead.
RESTARTED: ContextVar[list[AIMessage] | None] = ContextVar("coffee_nb_restarted", default=None)


class IncompleteStreamError(ConnectionError):
    """A stream ended without a finish reason: cut off, not complete (classified as ``connection``)."""


class Call:
    """One call in progress: the plan, and what happens around each attempt, for every driver alike."""

    __slots__ = (
        "picker",
        "plan",
        "clock",
        "messages",
        "stop",
        "config",
        "kwargs",
        "streaming",
        "attempt",
        "ttft",
        "total",
        "calling",
        "delivered",
        "recovering",
        "prefilled",
        "marker",
        "restarted",
        "finished",
        "idle",
        "run_manager",
        "restart_chunk",
        "tape",
        "request",
        "watched",
        "nested",
        "broke",
        "summary",
        "answer_text",
        "traced",
        "started_ns",
    )

    def __init__(
        self,
        picker: AutoPicker,
        messages: Sequence[BaseMessage] | str,
        stop: list[str] | None,
        run_manager: Any,
        kwargs: dict[str, Any],
        *,
        streaming: bool = False,
        is_async: bool = False,
    ) -> None:
        if "model" in kwargs:
            raise ConfigError(
                f"AutoPicker chooses the model itself; a per-call model={kwargs['model']!r} is not supported. "
                "Build another AutoPicker for another chain, e.g. AutoPicker('sandbox/smart', ['sandbox/fast'])."
            )
        core: Core = private_state(picker, "_core")
        self.picker = picker
        ceiling = kwargs.get("max_cost")
        max_cost = None if ceiling is None else to_pico(usd("max_cost", ceiling))
        self.plan = Plan(core, picker.budget, messages, kwargs.get("max_tokens", picker.max_tokens), max_cost)
        self.clock = core.clock
        self.messages = messages
        self.stop = stop or picker.stop or None
        parent = PARENT.get() if run_manager is None else None
        if parent is not None and parent.picker is not picker:
            parent = None  # another AutoPicker's run (this one is its candidate): ours has a manager or none
        if run_manager is None and parent is None:  # nobody listening (the fast path): nothing to nest
            self.config, self.watched = None, False
        else:
            self.config, self.watched = child_config(run_manager, parent, is_async=is_async)
        self.run_manager = run_manager
        self.kwargs = kwargs
        self.streaming = streaming
        self.attempt: Attempt | None = None
        self.ttft: float | None = None
        self.total: AIMessageChunk | None = None
        self.calling = False  # False while our own code prepares the attempt
        self.delivered = ""  # text the caller has seen of the answer (across a continued stream)
        self.recovering = False  # the last attempt broke mid-stream; the next one resumes or restarts
        self.prefilled = False  # this attempt continues from ``delivered`` as an assistant prefill
        self.marker: ChatGenerationChunk | None = None  # a restart marker to yield before the next chunk
        self.restarted = False
        self.finished = False  # the provider said the answer is complete (finish reason seen)
        self.idle: float | None = None  # the attempt's idle limit between chunks
        self.restart_chunk: ChatGenerationChunk | None = None  # the last restart marker handed out
        self.tape = active_cassette()  # None almost always: then nothing below costs anything
        self.request: dict[str, Any] | None = None  # the normalised request, when a cassette needs it
        self.nested: Mapping[str, Any] | None = None  # a nested AutoPicker's summary of the current attempt
        self.broke: Exception | None = None  # what broke the stream mid-answer (the cause an error chains)
        self.summary: dict[str, Any] | None = None  # the answer's summary, once answered
        self.answer_text: str | None = None  # its text, kept only while someone follows the call
        self.started_ns = time.time_ns()
        observers = core.observers
        self.traced: list[tuple[Any, Any]] | None = None
        if observers:  # rare (an OpenTelemetry sink): who follows this call, and their handle on it
            self.traced = _started(observers, self)

    # -- before an attempt ---------------------------------------------------------------------------
    def next(self) -> Attempt | float:
        """The plan's next step: an attempt (now current) or seconds to wait."""
        step = self.plan.next()
        if isinstance(step, Attempt):
            self.attempt, self.ttft, self.total, self.calling, self.finished = step, None, None, False, False
            self.nested = self.idle = None
        return step

    def _chat_model(self, attempt: Attempt, loop: asyncio.AbstractEventLoop | None) -> Any:
        """The candidate's chat model. Building it the first time (SDK imports, a client, the sandbox
        server starting) is not the model's latency: the attempt's clock starts again after it."""
        cand = attempt.candidate
        if cand.instance is not None and loop is None:  # async: a copy with a fresh client on another loop
            return cand.instance
        clock = self.clock
        before = clock()
        model = cand.chat_model(loop=loop)
        spent = clock() - before
        if spent > 0.001:  # a cached client takes microseconds: only a first build moves the clock
            attempt.started += spent
            attempt.started_at += timedelta(seconds=spent)
        return model

    def target(
        self, attempt: Attempt, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[Any, Any, dict[str, Any]]:
        """The runnable to call for ``attempt``, the input to give it, and the kwargs."""
        picker, cand, call_kwargs = self.picker, attempt.candidate, self.kwargs
        model: Any = self._chat_model(attempt, loop)
        kwargs = {k: v for k, v in call_kwargs.items() if k not in _CALL_KEYS}
        if cand.instance is None:  # built by us from a spec: the picker's defaults apply
            if picker.temperature is not None:
                kwargs.setdefault("temperature", picker.temperature)
            if picker.max_tokens is not None:
                kwargs.setdefault("max_tokens", picker.max_tokens)
        if kwargs:  # each provider's own spelling (max_output_tokens, num_predict, ...), refused ones dropped
            kwargs = cand.call_kwargs(kwargs, model, self.stop)
        if cand.timeout_kwarg and loop is None:  # the client's own bound (per read, for a stream)
            kwargs["timeout"] = attempt.timeout
        tools = call_kwargs.get("coffee_tools")
        if tools is not None:
            model = model.bind_tools(list(tools[0]), **tools[1])
        structured = call_kwargs.get("coffee_structured")
        if structured is not None:
            model = model.with_structured_output(structured[0], include_raw=True, **structured[1])
        messages: Any = self.messages
        self.prefilled = False
        if self.recovering:
            self.recovering = False
            if self.picker_policy().stream_recovery == "continue" and cand.prefill and self.delivered:
                self.prefilled = True
                base = [HumanMessage(messages)] if isinstance(messages, str) else list(messages)
                messages = [*base, cand.prefill_message(self.delivered)]
                kwargs.update(cand.prefill_kwargs(kwargs))
            else:
                self._restart(attempt)
        self.calling = True
        if self.config is not None:  # traced: the candidate runs with its config current, like a child runnable
            model = InConfig(model)
        return model, messages, kwargs

    def picker_policy(self) -> Any:
        return self.plan.policy

    def settle_later(self, attempt: Attempt) -> Callable[[Any, BaseException | None], None]:
        """For a watched sync invoke: how to settle it should it end after the caller stopped waiting (on
        the worker it ran on): its answer's cost charged, or its reservation released."""
        spend, clock = self.plan.spend, self.clock
        # who listens to this call now (``capture_records`` blocks, ...): its late record is theirs, not
        # that of whoever listens when it ends (a later block, a later test)
        listeners = global_sinks()

        def late(output: Any, error: BaseException | None) -> None:
            usage = None
            if error is None:
                message, _, usage, _ = read_answer(output, attempt.candidate.instance)
                usage = usage or spend.estimate(message.content)
            spend.settle_late(attempt, usage, clock(), listeners)

        return late

    def invoke_limit(self, attempt: Attempt) -> float | None:
        """Seconds a sync invoke may take, when we must enforce it (None: the call bounds itself)."""
        return None if attempt.candidate.bounds_itself(attempt.timeout) else attempt.timeout

    def hedge_delay(self, attempt: Attempt) -> float | None:
        """Seconds after which this attempt gets a hedge (``Policy(hedge_after=...)``), or None.

        An invoke is hedged when it has not answered by then, a stream when it has not produced its first
        token (a ``"pNN"`` delay reads the model's recent times to first token). A stream that resumes or
        restarts a broken one is not hedged: the text already delivered belongs to it.
        """
        policy, recent = self.plan.policy, attempt.candidate.recent
        if policy.hedge_after is None or not self.plan.has_alternative():
            return None
        if not self.streaming:
            return policy.hedge_delay(recent.latencies())
        if self.prefilled or self.marker is not None or self.delivered:
            return None
        return policy.hedge_delay(recent.ttfts())

    def first_token_limit(self, attempt: Attempt) -> float:
        """Seconds from now a stream attempt may take to its first chunk, within the deadline."""
        plan = self.plan
        cand = attempt.candidate
        limit = attempt.timeout  # the first token never waits longer than the attempt may take (a user's own timeout)
        if plan.has_alternative():
            limit = min(limit, plan.policy.first_token_limit(cand.reasoning))
        return max(0.0, min(limit, plan.deadline - plan.clock()))

    def wait_limit(self) -> float:
        """Seconds to wait for the next stream chunk: the first-token or idle limit, within the deadline."""
        attempt = self._current()
        if self.ttft is None:
            return self.first_token_limit(attempt)
        idle = self.idle
        if idle is None:  # once per attempt: the same for every chunk
            idle = self.idle = self.plan.policy.idle_limit(attempt.candidate.reasoning)
        return max(0.0, min(idle, self.plan.deadline - self.clock()))

    def read_limit(self) -> tuple[float, bool]:
        """Seconds to wait for the next stream chunk, and whether the answer is complete already (its
        finish reason and usage are in): then only a short grace, as a server may hold it open."""
        if self.finished and (total := self.total) is not None and total.usage_metadata:
            return _GRACE, True
        return self.wait_limit(), False

    def timed_out(self) -> AttemptTimeoutError:
        """The error for a limit that ran out (what ``wait_limit`` / ``invoke_limit`` said)."""
        attempt = self._current()
        name = attempt.candidate.name
        elapsed = self.clock() - attempt.started
        if not self.streaming:
            return AttemptTimeoutError("no answer", elapsed, name)
        if self.ttft is None:
            return FirstTokenTimeoutError("no first token", elapsed, name)
        return IdleTimeoutError("stream stalled, no chunk", self.wait_limit() or elapsed, name)

    # -- during a stream -------------------------------------------------------------------------------
    def relay(self, chunk: AIMessageChunk) -> Iterator[ChatGenerationChunk]:
        """Pass one chunk on to the caller (after a pending restart marker), keeping the running total."""
        if self.ttft is None:
            self.ttft = self.clock() - self._current().started
        meta = chunk.response_metadata
        if meta and "coffee_nb" in meta:
            ours = meta["coffee_nb"]
            if isinstance(ours, Mapping) and "call_id" in ours:  # a nested AutoPicker's closing summary: for us
                self.nested = ours
                return
        if self.marker is not None:
            marker, self.marker = self.marker, None
            self.restart_chunk = marker
            yield marker
        self.total = chunk if self.total is None else self.total + chunk
        text = chunk.content
        if text:
            self.delivered += text if isinstance(text, str) else content_text(text)
        if meta and any(meta.get(k) for k in _FINISH_KEYS):
            self.finished = True
        yield ChatGenerationChunk(message=chunk)

    @staticmethod
    def starts_answer(chunk: AIMessageChunk) -> bool:
        """Is this a first token (text, a tool call, or the answer's end), not a bare opening (role) chunk?"""
        if chunk.content or chunk.tool_call_chunks or chunk.usage_metadata:
            return True
        meta = chunk.response_metadata
        return bool(meta) and any(meta.get(k) for k in _FINISH_KEYS)

    # -- how an attempt ended ----------------------------------------------------------------------------
    def answered(self, output: Any) -> AIMessage:
        """Settle a successful invoke; the answer carries ``response_metadata["coffee_nb"]``."""
        attempt = self._current()
        message, structured, usage, shared = read_answer(output, attempt.candidate.instance)
        summary = self._succeeded(attempt, message, structured, usage)
        response_metadata = {**message.response_metadata, "coffee_nb": summary}  # plain data (checkpointers)
        if shared:  # a cache may hand the same object to later calls
            return message.model_copy(update={"response_metadata": response_metadata})
        message.response_metadata = response_metadata  # ours alone (LangChain sets this field per call)
        return message

    def streamed(self) -> ChatGenerationChunk:
        """Settle a finished stream; the closing chunk carries only the summary."""
        attempt = self._current()
        if self.total is None:
            raise EmptyResponseError(f"{attempt.candidate.name} ended its stream without a single chunk")
        if attempt.candidate.reports_finish and not self.finished:
            raise IncompleteStreamError(f"{attempt.candidate.name} ended its stream without a finish reason (cut off)")
        if self.marker is not None:  # a restart whose model answered nothing: still tell the consumer
            self.marker = None
        total = self.total
        summary = self._succeeded(attempt, total, None, usage_of(total))
        if self.restarted:
            summary["restarted"] = True
            collected = RESTARTED.get()
            if collected is not None:  # an invoke that streams: the answer is this attempt's alone
                collected.append(
                    AIMessage(
                        content=total.content,
                        response_metadata={**total.response_metadata, "coffee_nb": summary},
                        usage_metadata=total.usage_metadata,
                        tool_calls=total.tool_calls,
                        id=total.id,
                    )
                )
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"coffee_nb": summary}))

    def failed(self, exc: Exception) -> bool:
        """Report a failure; True when the driver should go on with the plan, False to raise ``exc``.

        Raises :class:`StreamInterruptedError` instead when text has reached the caller and the stream
        can't be recovered: never a truncated "success".
        """
        attempt = self._current()
        ours = not self.calling
        partial = self._partial_usage(attempt)
        prefilled, delivered_here = self.prefilled, self.ttft is not None
        action = self.plan.failed(attempt, exc, ttft=self.ttft, partial=partial)
        if ours and isinstance(exc, _PROGRAMMING_ERRORS) and not isinstance(exc, CoffeeError):
            return False  # a bug in preparing the call, not the provider's failure: show it
        if prefilled and not delivered_here and classify(exc).error_class is ErrorClass.BAD_REQUEST:
            # the model turned the assistant prefill down: remember it, and go on without it (another model
            # continues, or this one starts over where the consumer handles that); never surface that 400
            attempt.candidate.prefill = False
            self.plan.requeue(attempt.candidate)
            return self._recover(self.broke or exc)  # an error then chains the stream's own failure
        if not self.delivered:
            return action is not Action.RAISE
        mode = self.plan.policy.stream_recovery
        if action is Action.RAISE or mode == "raise":
            raise StreamInterruptedError(self.plan.records, self.delivered, str(classify(exc).message)) from exc
        self.broke = exc
        return self._recover(exc)

    def _recover(self, exc: Exception) -> bool:
        """Go on after a stream broke mid-answer: by prefill only, unless the consumer handles a restart."""
        self.recovering = True
        if not self._restarts_ok() and not self.plan.require_prefill():
            raise StreamInterruptedError(
                self.plan.records,
                self.delivered,
                "no model left can continue the answer (none takes an assistant prefill); "
                "coffee_nb.collect(...) or Policy(stream_recovery='restart') lets another model start it over",
            ) from exc
        return True

    def _restarts_ok(self) -> bool:
        """May a stream broken mid-answer start over on a model that can't continue it? Only for consumers
        that said they handle the restart marker: collect()/%%llm, or LangChain's own invoke-by-streaming
        when no token consumer (LangGraph, astream_events) has heard the first model's text. (Read when a
        stream breaks, inside the consumer's own read.)"""
        mode = self.plan.policy.stream_recovery
        if mode == "restart":
            return True
        return (
            mode == "continue"
            and self.streaming
            and (RESTARTS_OK.get() or (RESTARTED.get() is not None and not self.watched))
        )

    def give_up(self, exc: BaseException) -> BaseException:
        """What to raise when the plan has nothing left: with text delivered, a StreamInterruptedError."""
        if self.delivered and not isinstance(exc, StreamInterruptedError):
            error = StreamInterruptedError(self.plan.records, self.delivered, "no model could finish it")
            error.__cause__ = self.broke or exc
            return error
        return exc

    def cancelled(self) -> None:
        """The caller stopped the attempt (KeyboardInterrupt, task cancelled, stream closed early)."""
        attempt = self.attempt
        if attempt is None:
            return
        self.plan.cancelled(attempt, ttft=self.ttft, partial=self._partial_usage(attempt))

    def ended(self, error: BaseException | None) -> None:
        """The call is over (answered when ``error`` is None): tell those following it, once."""
        traced, self.traced = self.traced, None
        for observer, handle in traced or ():
            try:
                observer.call_ended(handle, self, error)
            except Exception:  # an observer must never break the call
                log.exception("coffee_nb: call observer %r failed", observer)

    # -- helpers ---------------------------------------------------------------------------------------
    def _current(self) -> Attempt:
        attempt = self.attempt
        if attempt is None:
            raise RuntimeError("no attempt in progress")
        return attempt

    def _restart(self, attempt: Attempt) -> None:
        """The next model starts the answer over: queue an in-band marker for the caller."""
        first = self.plan.records[0].model if self.plan.records else attempt.candidate.name
        reason = next((r.error_class for r in reversed(self.plan.records) if r.error_class), None)
        meta = {
            "coffee_nb": {"restart": True, "from_model": first, "to_model": attempt.candidate.name, "reason": reason}
        }
        self.marker = ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))
        self.delivered = ""
        self.restarted = True

    def _succeeded(
        self, attempt: Attempt, message: BaseMessage, structured: dict[str, Any] | None, usage: Usage | None
    ) -> dict[str, Any]:
        """Settle the answer with the plan in one step; the summary it carries back."""
        cand = attempt.candidate
        nested = None
        if cand.inner is not None:  # another AutoPicker answered: its own summary says who and for how much
            said = self.nested or message.response_metadata.get("coffee_nb")
            nested = CallSummary(said) if isinstance(said, Mapping) and "call_id" in said else None
        record, usage, summary = self.plan.answered(
            attempt, usage, message.response_metadata, self.ttft, self.streaming, nested, message.content
        )
        self.attempt = None
        if self.tape is not None:
            try:
                taped(self, message, usage, record.cost)
            except CassetteError as exc:  # the answer is paid for: keep it, say the cassette missed it
                log.warning("coffee_nb: %s", exc)
                warnings.warn(f"coffee_nb: this answer was not recorded: {exc}", RuntimeWarning, stacklevel=2)
        if structured is not None:  # parsed objects aren't plain data: they travel beside the message
            keep_structured(record.call_id, structured)
        self.summary = summary
        if self.traced is not None:
            self.answer_text = content_text(message.content)
        return summary

    def _partial_usage(self, attempt: Attempt) -> Usage | None:
        """What a broken stream delivered (the provider bills it), or None before the first chunk."""
        self.attempt = None
        total = self.total
        if total is None:
            return None
        return usage_of(total) or self.plan.spend.estimate(total.content)

    # -- for a hedged race (``_hedge.py`` does its I/O; what each racer's end means is settled here) -----
    def hedge(self) -> Attempt | None:
        """The hedge delay passed: the next candidate to race alongside (reserved), or None."""
        return self.plan.hedge()

    def racer_failed(self, attempt: Attempt, exc: BaseException) -> None:
        """One racer failed while another still runs: recorded; the race goes on."""
        self.plan.failed(attempt, exc)

    def lost(self, attempt: Attempt, text: str = "", *, streamed: bool = False) -> None:
        """A racer lost (or the race was interrupted): settled as cancelled, charged its prompt and the
        text it had sent (estimated)."""
        self.plan.abandoned(attempt, text, streamed=streamed)

    def won_race(self, attempt: Attempt, output: Any, losers: Iterable[Attempt]) -> AIMessage:
        """An invoke race is over: the losers are settled as cancelled, then the winner's answer (in one step
        from the race)."""
        plan = self.plan
        for loser in losers:
            plan.abandoned(loser)
        self.attempt = attempt
        return self.answered(output)

    def won(self, attempt: Attempt) -> None:
        """A racer won a stream race: its attempt is the current one (a hedge's model becomes current)."""
        self.attempt = attempt
        if attempt.role is Role.HEDGE:
            self.plan.hedge_won(attempt)


def _started(observers: tuple[Any, ...], call: Call) -> list[tuple[Any, Any]]:
    out = []
    for observer in observers:
        try:
            out.append((observer, observer.call_started(call)))
        except Exception:  # an observer must never break the call
            log.exception("coffee_nb: call observer %r failed", observer)
    return out
