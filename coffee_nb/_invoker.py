"""AutoPicker: a LangChain chat model that tries a primary model, retries, and falls back.

Sync, async, streaming and batch share one decision procedure, :class:`_Plan`; the drivers in
:class:`AutoPicker` only do the I/O (call, sleep) that the plan asks for.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import ConfigDict, Field, PrivateAttr

from coffee_nb._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ConfigError,
    DeadlineExceededError,
    EmptyResponseError,
    ErrorClass,
    Failure,
    classify,
    redact,
)
from coffee_nb._models import Candidate
from coffee_nb._policy import Action, Policy
from coffee_nb._pricing import Price, from_pico
from coffee_nb._records import CallRecord, Outcome, Role, as_sinks, global_sinks, publish
from coffee_nb._tokens import count_prompt, count_tokens

__all__ = ["AutoPicker"]

ESTIMATE_MARGIN = (5, 4)  # × 1.25 on worst-case reservations when the prompt count is an estimate
DEFAULT_OUTPUT_ESTIMATE = 4096  # worst-case output tokens when neither max_tokens nor the model says


class BudgetLike(Protocol):
    """What AutoPicker needs from a budget: two-phase reserve → commit/release."""

    def reserve(self, model: str, amount: Decimal | None) -> Any: ...  # raises BudgetExceededError
    def commit(self, lease: Any, amount: Decimal | None) -> None: ...
    def release(self, lease: Any) -> None: ...


# Our private kwargs (set by bind_tools/with_structured_output) and tracing-only ones: never sent to candidates.
_CALL_KEYS = frozenset({"coffee_tools", "coffee_structured", "ls_structured_output_format"})


@dataclass(slots=True)
class _Attempt:
    candidate: Candidate
    index: int
    role: Role
    timeout: float
    lease: Any
    started_at: datetime
    started: float
    price: Price | None  # resolved once per attempt: the estimate and the settlement use the same


_OK, _FALLBACK = Outcome.OK, Role.FALLBACK  # enum attribute lookups are slow on the hot path
_TEXT: dict[Any, str] = {m: m.value for m in (*Role, *Outcome)}  # members as plain strings for metadata

_CALL_PREFIX = uuid.uuid4().hex[:12]
_call_counter = itertools.count(1)


def _new_call_id() -> str:
    """Unique across processes (random prefix per process) and cheap (a counter)."""
    return f"{_CALL_PREFIX}-{next(_call_counter):08x}"


@dataclass(slots=True)
class _Core:
    """AutoPicker's runtime state, in one plain object (pydantic private attributes are slow to read)."""

    candidates: list[Candidate]
    policy: Policy
    sinks: tuple[Any, ...]
    rng: random.Random
    clock: Any = time.monotonic


class _Plan:
    """The decisions of one call: which model next, how long to wait, what to record.

    ``next()`` returns an :class:`_Attempt` to make or a number of seconds to wait first, and raises
    when nothing is left; ``failed()`` / ``succeeded()`` report back. No I/O happens here.
    """

    __slots__ = ("picker", "core", "policy", "clock", "budget", "messages", "call_id", "start", "deadline",
                 "max_tokens", "queue", "current", "admitted", "retries", "wait", "records", "last_exc",
                 "budget_error", "deadline_cut", "_counts")

    def __init__(self, picker: AutoPicker, messages: Sequence[BaseMessage] | str, kwargs: dict[str, Any]) -> None:
        core: _Core = picker.__pydantic_private__["_core"]  # direct: pydantic's __getattr__ is slow
        self.picker = picker
        self.core = core
        self.policy = core.policy
        self.clock = core.clock
        self.budget = picker.budget
        self.messages = messages
        self.call_id = _new_call_id()
        self.start = self.clock()
        self.deadline = self.start + self.policy.deadline
        self.max_tokens: int | None = kwargs.get("max_tokens", picker.max_tokens)
        self.queue: deque[Candidate] = deque(core.candidates)
        self.current: Candidate | None = None
        self.admitted = False
        self.retries = 0
        self.wait = 0.0
        self.records: list[CallRecord] = []
        self.last_exc: BaseException | None = None
        self.budget_error: BaseException | None = None
        self.deadline_cut = False
        self._counts: dict[str, int] = {}

    # -- helpers -------------------------------------------------------------------------------
    def prompt_tokens(self, cand: Candidate) -> int:
        """Prompt tokens counted with ``cand``'s encoding (once per encoding per call); exact when ``cand.exact_tokens``."""
        counts = self._counts
        count = counts.get(cand.encoding)
        if count is None:
            count = counts[cand.encoding] = count_prompt(self.messages, cand.encoding)
        return count

    def _output_cap(self, cand: Candidate) -> int:
        if self.max_tokens:
            return int(self.max_tokens)
        return cand.output_cap or DEFAULT_OUTPUT_ESTIMATE

    def _emit(self, record: CallRecord) -> None:
        self.records.append(record)
        sinks = self.core.sinks
        if sinks:
            publish(sinks, record)
        everyone = global_sinks()
        if everyone:
            publish(everyone, record)

    def _fallback_origin(self, role: Role) -> tuple[str | None, str | None]:
        """For a fallback attempt: the first model this call tried, and why the call moved on."""
        if role is not _FALLBACK or not self.records:
            return None, None
        return self.records[0].model, self._first_failure()

    def _first_failure(self) -> str | None:
        """The error class of this call's first attempt that did not answer."""
        return next((r.error_class for r in self.records if r.error_class), None)

    def _role(self, cand: Candidate) -> Role:
        if self.retries:
            return Role.RETRY
        return Role.PRIMARY if cand is self.core.candidates[0] else Role.FALLBACK

    def _skip(self, cand: Candidate, error_class: ErrorClass, message: str) -> None:
        role = self._role(cand)
        origin, reason = self._fallback_origin(role)
        self._emit(
            CallRecord(
                call_id=self.call_id,
                attempt=len(self.records),
                role=role,
                fallback_from=origin,
                fallback_reason=reason,
                provider=cand.provider,
                model=cand.name,
                outcome=Outcome.SKIPPED,
                started_at=datetime.now(UTC),
                latency_s=0.0,
                error_class=error_class.value,
                error_message=message,
            )
        )
        self.current = None

    def _prefer_larger_windows(self, need: int) -> None:
        """After a context overflow, try candidates known to hold ``need`` tokens first, unknown ones next."""

        def rank(c: Candidate) -> int:
            w = c.context_window
            return 1 if w is None else (0 if w >= need else 2)

        self.queue = deque(sorted(self.queue, key=rank))

    # -- the decision procedure ------------------------------------------------------------------
    def next(self) -> _Attempt | float:
        while True:
            if self.wait > 0:
                wait, self.wait = self.wait, 0.0
                return wait
            now = self.clock()
            remaining = self.deadline - now
            if remaining <= 0:
                raise self._give_up(deadline=True)
            if self.current is None:
                if not self.queue:
                    raise self._give_up()
                self.current, self.retries, self.admitted = self.queue.popleft(), 0, False
            cand = self.current
            if not self.admitted:
                if not cand.breaker.allow(now):
                    left = max(0.0, cand.breaker.open_until() - now)
                    self._skip(cand, ErrorClass.COOLDOWN, f"cooling down after repeated failures ({left:.0f}s left)")
                    continue
                window = cand.context_window
                if window is not None:
                    need = self.prompt_tokens(cand) + (int(self.max_tokens) if self.max_tokens else 0)
                    if need > window:
                        cand.breaker.release()
                        self._skip(
                            cand,
                            ErrorClass.CONTEXT_OVERFLOW,
                            f"prompt ~{need} tokens (incl. max_tokens) exceeds its context window of {window}",
                        )
                        self._prefer_larger_windows(need)
                        continue
                self.admitted = True
            if cand.limiter is not None:
                wait = cand.limiter.try_acquire(self.prompt_tokens(cand) + self._output_cap(cand), now)
                if wait > 0:
                    if wait < remaining:
                        return wait
                    cand.breaker.release()
                    self._skip(cand, ErrorClass.RATE_LIMIT, f"local rpm/tpm limit: next slot in {wait:.1f}s, past the deadline")
                    continue
            lease = None
            price = cand.facts.price
            budget = self.budget
            if budget is not None:
                estimate = None
                if price is not None:
                    estimate = price.pico(self.prompt_tokens(cand), self._output_cap(cand))
                    if not cand.exact_tokens:  # a stand-in tokenizer may count low: hold a margin
                        estimate = -(-estimate * ESTIMATE_MARGIN[0] // ESTIMATE_MARGIN[1])
                try:
                    lease = _reserve(budget, cand.name, estimate)
                except BudgetExceededError as exc:
                    cand.breaker.release()
                    self.budget_error = exc
                    self._skip(cand, ErrorClass.BUDGET, str(exc))
                    continue
            # candidate, index, role, timeout, lease, started_at, started, price
            return _Attempt(cand, len(self.records), self._role(cand), min(self.policy.attempt_timeout, remaining),
                            lease, datetime.now(UTC), now, price)

    def failed(
        self, attempt: _Attempt, exc: BaseException, *, ttft: float | None = None, partial: BaseMessage | None = None
    ) -> Action:
        """Record a failed attempt and decide what comes next.

        ``partial`` is what a stream delivered before it broke: the provider bills it, so its
        estimated cost is committed rather than released.
        """
        now = self.clock()
        failure: Failure = classify(exc)
        cand = attempt.candidate
        rule = self.policy.rules[failure.error_class]
        cand.breaker.failure(
            rule.trip, now, seconds=failure.retry_after if failure.error_class is ErrorClass.RATE_LIMIT else None
        )
        self.last_exc = exc
        if partial is not None:
            tokens, estimated = self._usage(cand, partial)
            cost, source = self._settle(attempt, tokens)
            record = self._record(
                attempt, Outcome.ERROR, now, failure=failure, ttft=ttft, tokens=tokens[:4],
                estimated=estimated, cost=cost, price_source=source,
            )
        else:
            self._settle(attempt, None)
            record = self._record(attempt, Outcome.ERROR, now, failure=failure, ttft=ttft)
        self._emit(record)
        if failure.error_class is ErrorClass.CONTEXT_OVERFLOW:
            self._prefer_larger_windows(max(cand.context_window or 0, self.prompt_tokens(cand)) + 1)
        if rule.retry and self.retries < self.policy.max_retries and cand.breaker.open_until() == 0.0:
            wait = self.policy.backoff(self.retries, failure.retry_after, self.core.rng)
            if wait is not None and now + wait < self.deadline:
                self.retries += 1
                self.wait = wait
                return Action.RETRY
            if wait is not None:
                self.deadline_cut = True  # a retry was due but would end past the deadline
        if rule.fallback:
            self.current = None
            return Action.FALLBACK
        return Action.RAISE

    def cancelled(self, attempt: _Attempt, *, ttft: float | None = None, partial: BaseMessage | None = None) -> None:
        """The caller stopped the attempt (Ctrl-C, task cancelled, stream closed early).

        Streamed text was billed by the provider, so its estimated cost is committed.
        """
        now = self.clock()
        attempt.candidate.breaker.release()
        if partial is None:
            self._settle(attempt, None)
            self._emit(self._record(attempt, Outcome.CANCELLED, now, ttft=ttft))
            return
        tokens, estimated = self._usage(attempt.candidate, partial)
        cost, source = self._settle(attempt, tokens)
        self._emit(
            self._record(
                attempt, Outcome.CANCELLED, now, ttft=ttft, tokens=tokens[:4], estimated=estimated,
                cost=cost, price_source=source,
            )
        )

    def succeeded(self, attempt: _Attempt, output: Any, *, ttft: float | None = None, streamed: bool = False) -> AIMessage:
        """Account for a successful attempt; return its message with ``response_metadata["coffee_nb"]``."""
        now = self.clock()
        message, structured = _as_message(output)
        cand = attempt.candidate
        tokens, estimated = self._usage(cand, message)
        cost, source = self._settle(attempt, tokens)
        cand.breaker.success()
        record = self._record(
            attempt,
            Outcome.OK,
            now,
            ttft=ttft,
            tokens=tokens[:4],
            estimated=estimated,
            cost=cost,
            price_source=source,
            streamed=streamed,
        )
        self._emit(record)
        role = attempt.role
        meta: dict[str, Any] = {
            "call_id": self.call_id,
            "model": cand.name,
            "provider": cand.provider,
            "role": _TEXT[role],
            "fallback_reason": self._first_failure() if role is _FALLBACK else None,
            "attempts": [
                {"model": r.model, "role": _TEXT[r.role], "outcome": _TEXT[r.outcome], "error_class": r.error_class,
                 "latency_s": r.latency_s}
                for r in self.records
            ],
            "tokens": {
                "input": tokens[0],
                "output": tokens[1],
                "cached": tokens[2],
                "reasoning": tokens[3],
                "estimated": estimated,
            },
            "cost": cost,
            "priced": cost is not None,
            "price_source": source,
            "latency_s": now - self.start,
            "ttft_s": ttft,
        }
        if structured is not None:
            meta["structured"] = structured
        response_metadata = {**message.response_metadata, "coffee_nb": meta}
        if _shared_output(cand):  # a cache may hand the same object to later calls: leave it be
            return message.model_copy(update={"response_metadata": response_metadata})
        message.response_metadata = response_metadata  # ours alone (LangChain itself sets this field per call)
        return message

    def _usage(self, cand: Candidate, message: BaseMessage) -> tuple[tuple[int, int, int, int, int], bool]:
        """(input, output, cached, reasoning, cache_write) tokens: as reported, else counted offline."""
        usage = getattr(message, "usage_metadata", None)
        if usage:
            in_details = usage.get("input_token_details") or {}
            out_details = usage.get("output_token_details") or {}
            return (
                int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0),
                int(in_details.get("cache_read") or 0),
                int(out_details.get("reasoning") or 0),
                int(in_details.get("cache_creation") or 0),
            ), False
        return (self.prompt_tokens(cand), count_tokens(_text(message), cand.encoding), 0, 0, 0), True

    def _settle(self, attempt: _Attempt, tokens: tuple[int, int, int, int, int] | None) -> tuple[Decimal | None, str]:
        """Price ``tokens`` and commit them to the budget; with no tokens, release the reservation."""
        budget = self.budget
        if tokens is None:
            if attempt.lease is not None and budget is not None:
                budget.release(attempt.lease)
            return None, "unpriced"
        price = attempt.price
        if price is None:
            cost = pico = None
        else:
            pico = price.pico(tokens[0], tokens[1], tokens[2], tokens[4])
            cost = from_pico(pico)
        if attempt.lease is not None and budget is not None:
            _commit(budget, attempt.lease, pico)
        return cost, price.source if price is not None else "unpriced"

    def _record(
        self,
        attempt: _Attempt,
        outcome: Outcome,
        now: float,
        *,
        failure: Failure | None = None,
        ttft: float | None = None,
        tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        estimated: bool = False,
        cost: Decimal | None = None,
        price_source: str = "unpriced",
        streamed: bool = False,
    ) -> CallRecord:
        cand = attempt.candidate
        origin, reason = self._fallback_origin(attempt.role)
        # positional, in field order: a third of the cost of 22 keywords, on every attempt
        return CallRecord(
            self.call_id,  # call_id
            attempt.index,  # attempt
            attempt.role,  # role
            cand.provider,  # provider
            cand.name,  # model
            outcome,  # outcome
            attempt.started_at,  # started_at
            now - attempt.started,  # latency_s
            failure.error_class.value if failure else None,  # error_class
            failure.message if failure else None,  # error_message
            ttft,  # ttft_s
            tokens[0],  # input_tokens
            tokens[1],  # output_tokens
            tokens[2],  # cached_tokens
            tokens[3],  # reasoning_tokens
            estimated,  # tokens_estimated
            cost,  # cost
            price_source,  # price_source
            False,  # cache_hit
            streamed or ttft is not None,  # streamed
            origin,  # fallback_from
            reason,  # fallback_reason
        )

    def _give_up(self, *, deadline: bool = False) -> BaseException:
        tried = [r for r in self.records if r.outcome is not Outcome.SKIPPED]
        if not deadline and self.budget_error is not None and all(
            r.error_class == ErrorClass.BUDGET for r in self.records
        ):
            lines = [r.error_message or "" for r in self.records if r.error_class == ErrorClass.BUDGET]
            err: BaseException = BudgetExceededError("\n".join(dict.fromkeys(lines)) or str(self.budget_error))
        elif deadline or self.deadline_cut:
            err = DeadlineExceededError(
                self.records, f"deadline of {self.policy.deadline:g}s reached before any model answered"
            )
        else:
            reason = "all candidate models failed" if tried else "no candidate model could be tried"
            err = AllModelsFailedError(self.records, reason)
        last = self.last_exc
        # chain the provider's own exception for debugging, unless its text holds something key-like
        if last is not None and redact(str(last)) == str(last):
            err.__cause__ = last
        else:
            err.__suppress_context__ = True
        return err


def _reserve(budget: Any, model: str, pico: int | None) -> Any:
    """Reserve on a coffee_nb budget in picodollars, or on any other through the Decimal protocol."""
    fast = getattr(budget, "reserve_pico", None)
    if fast is not None:
        return fast(model, pico)
    return budget.reserve(model, None if pico is None else from_pico(pico))


def _commit(budget: Any, lease: Any, pico: int | None) -> None:
    fast = getattr(budget, "commit_pico", None)
    if fast is not None:
        fast(lease, pico)
    else:
        budget.commit(lease, None if pico is None else from_pico(pico))


def _shared_output(cand: Candidate) -> bool:
    """Might the message this candidate returned also be held elsewhere (a cache, or a runnable that
    hands out the same object)? Then we annotate a copy. LangChain chat models set fields on the
    message of every call themselves, so theirs is ours to annotate when no cache is involved."""
    instance = cand.instance
    if instance is None:  # built by us: a LangChain chat model without a cache of its own
        return get_llm_cache() is not None
    if not isinstance(instance, BaseChatModel):
        return True
    cache = instance.cache
    if cache is False:
        return False
    return cache is not None or get_llm_cache() is not None


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, (str, dict)))


def _as_message(output: Any) -> tuple[AIMessage, dict[str, Any] | None]:
    """A candidate's output as a message: plain, or the ``include_raw`` dict of structured output."""
    if isinstance(output, BaseMessage):
        if not isinstance(output, AIMessage):
            output = AIMessage(content=output.content, response_metadata=output.response_metadata)
        return output, None
    if isinstance(output, dict) and isinstance(output.get("raw"), BaseMessage):
        raw, _ = _as_message(output["raw"])
        return raw, {"parsed": output.get("parsed"), "parsing_error": output.get("parsing_error")}
    raise TypeError(f"a candidate returned {type(output).__name__}, expected a chat message")


def _pick_structured(include_raw: bool) -> Runnable:
    def pick(message: AIMessage) -> Any:
        s = message.response_metadata["coffee_nb"]["structured"]
        if include_raw:
            return {"raw": message, "parsed": s["parsed"], "parsing_error": s["parsing_error"]}
        if s["parsing_error"] is not None:
            raise s["parsing_error"]
        return s["parsed"]

    return RunnableLambda(pick, name="coffee_nb_structured")


class AutoPicker(BaseChatModel):
    """A chat model over a primary model and ordered fallbacks, with retries, deadline, cooldowns and budget.

    >>> llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "sandbox/fast"])
    >>> llm.invoke("Hello").response_metadata["coffee_nb"]["model"]

    ``primary`` and each fallback are ``"provider/model"`` specs, chat model instances, or
    :class:`coffee_nb.ModelSpec`. ``metrics`` and ``on_record`` take record sinks (objects with
    ``emit(record)``, or callables). ``timeout`` is the whole call's deadline in seconds and
    ``max_retries`` the retries per model; both override ``policy``.

    Streaming falls back only before the first chunk; an error after it propagates (the caller
    has already seen text from that model).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", populate_by_name=True)

    primary: Any = Field(default=None, alias="model")
    fallbacks: list[Any] = Field(default_factory=list)
    budget: Any = None
    metrics: Any = None
    policy: Policy | None = None
    on_record: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False
    seed: int | None = Field(default=None, exclude=True)  # seeds backoff jitter (tests)

    _core: _Core = PrivateAttr()

    def __init__(self, primary: Any = None, fallbacks: Sequence[Any] | None = None, /, **kwargs: Any) -> None:
        if primary is not None:
            if "model" in kwargs or "primary" in kwargs:
                raise ConfigError("give the primary model once: positionally or as model=/primary=")
            kwargs["primary"] = primary
        if fallbacks is not None:
            if "fallbacks" in kwargs:
                raise ConfigError("give fallbacks once: positionally or as fallbacks=")
            kwargs["fallbacks"] = fallbacks
        if isinstance(kwargs.get("fallbacks"), (str, bytes)):
            kwargs["fallbacks"] = [kwargs["fallbacks"]]
        super().__init__(**kwargs)
        self._build()  # outside pydantic validation, so a ConfigError reaches the user unwrapped

    def _build(self) -> None:
        if self.primary is None:
            raise ConfigError(
                "AutoPicker needs at least one model: AutoPicker('openai/gpt-4o-mini', ['sandbox/fast'])"
            )
        policy = self.policy or Policy()
        changes: dict[str, Any] = {}
        if self.timeout is not None:
            changes["deadline"] = self.timeout
        if self.max_retries is not None:
            changes["max_retries"] = self.max_retries
        if changes:
            from dataclasses import replace

            policy = replace(policy, **changes)
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens <= 0):
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        items = [self.primary, *self.fallbacks]
        candidates = [Candidate(item, cooldown_after=policy.cooldown_after, cooldown=policy.cooldown) for item in items]
        names = [c.name for c in candidates]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"the same model appears twice in the chain: {sorted(dupes)}; give each a name=")
        sinks = as_sinks(self.metrics) + as_sinks(self.on_record)
        self._core = _Core(candidates, policy, sinks, random.Random(self.seed))

    # -- LangChain plumbing ------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "coffee_nb-autopicker"

    @property
    def model_names(self) -> list[str]:
        """The chain, in order."""
        return [c.name for c in self._core.candidates]

    @property
    def policy_in_force(self) -> Policy:
        """The policy after ``timeout`` / ``max_retries`` overrides."""
        return self._core.policy

    @property
    def candidates(self) -> list[Candidate]:
        return list(self._core.candidates)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"models": self.model_names, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "coffee_nb"
        params["ls_model_name"] = kwargs.get("model") or self._core.candidates[0].name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = stop
        return params

    def __repr__(self) -> str:
        return f"AutoPicker({self.model_names!r})"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Runnable:
        """Bind tools; each candidate formats them its own way when it is tried."""
        tool_kwargs = dict(kwargs)
        if tool_choice is not None:
            tool_kwargs["tool_choice"] = tool_choice
        return self.bind(coffee_tools=(tuple(tools), tool_kwargs))

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """Structured output, forwarded to each candidate's own ``with_structured_output`` (same kwargs)."""
        from langchain_core.utils.function_calling import convert_to_json_schema

        so_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            traced = {"kwargs": so_kwargs, "schema": convert_to_json_schema(schema)}
        except Exception:  # noqa: BLE001 - tracing detail only; the candidates validate the schema
            traced = {"kwargs": so_kwargs, "schema": {}}
        bound = self.bind(coffee_structured=(schema, so_kwargs), ls_structured_output_format=traced)
        return bound | _pick_structured(include_raw)

    # -- calling one candidate ----------------------------------------------------------------------
    def _target(self, attempt: _Attempt, call_kwargs: dict[str, Any], loop: Any = None) -> tuple[Any, dict[str, Any]]:
        """The runnable to call for ``attempt`` and the kwargs to call it with."""
        cand = attempt.candidate
        model: Any = cand.chat_model(timeout=attempt.timeout, loop=loop)
        kwargs = {k: v for k, v in call_kwargs.items() if k not in _CALL_KEYS}
        built = cand.instance is None
        if built:
            if self.temperature is not None:
                kwargs.setdefault("temperature", self.temperature)
            if self.max_tokens is not None:
                kwargs.setdefault("max_tokens", self.max_tokens)
            if cand.timeout_kwarg and loop is None:
                kwargs["timeout"] = attempt.timeout
        tools = call_kwargs.get("coffee_tools")
        if tools is not None:
            model = model.bind_tools(list(tools[0]), **tools[1])
        structured = call_kwargs.get("coffee_structured")
        if structured is not None:
            model = model.with_structured_output(structured[0], include_raw=True, **structured[1])
        return model, kwargs

    def _plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> _Plan:
        if "model" in kwargs:
            raise ConfigError(
                f"AutoPicker chooses the model itself; a per-call model={kwargs['model']!r} is not supported. "
                "Build another AutoPicker for another chain, e.g. AutoPicker('sandbox/smart', ['sandbox/fast'])."
            )
        return _Plan(self, messages, kwargs)

    # -- the drivers: only I/O differs ----------------------------------------------------------------
    def _run(self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any]) -> AIMessage:
        """The sync driver: do what the plan says until a message comes back or the plan gives up."""
        plan = self._plan(messages, kwargs)
        stop = stop or self.stop or None
        config = _child_config(run_manager)
        while True:
            step = plan.next()
            if isinstance(step, float):
                time.sleep(step)
                continue
            with _Guard(plan, step) as guard:
                model, call_kwargs = self._target(step, kwargs)
                output = model.invoke(messages, config, stop=stop, **call_kwargs)
            if not guard.failed:
                return plan.succeeded(step, output)

    async def _arun(
        self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any, kwargs: dict[str, Any]
    ) -> AIMessage:
        """The async driver: the same plan, with awaited sleeps and a per-attempt timeout."""
        plan = self._plan(messages, kwargs)
        stop = stop or self.stop or None
        config = _child_config(run_manager)
        loop = asyncio.get_running_loop()
        while True:
            step = plan.next()
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            with _Guard(plan, step) as guard:
                model, call_kwargs = self._target(step, kwargs, loop)
                output = await asyncio.wait_for(model.ainvoke(messages, config, stop=stop, **call_kwargs), step.timeout)
            if not guard.failed:
                return plan.succeeded(step, output)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._run(messages, stop, run_manager, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._arun(messages, stop, run_manager, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    # -- the fast path: with nobody listening, skip our own layer of callback machinery ----------------
    def _unobserved(self, config: Any, kwargs: dict[str, Any]) -> bool:
        """True when our own run would reach no callback handler, tracer, cache or rate limiter.

        Then our layer of LangChain's chat-model machinery (about as costly as the model call itself
        for a fast model) is pure overhead; the candidates' own ``invoke`` still runs in full.
        """
        if (config and config.get("callbacks")) or self.callbacks or self.verbose or self.streaming:
            return False
        if kwargs.get("stream") or self.rate_limiter is not None or self.cache not in (None, False):
            return False
        return _nothing_global_listening(self.cache is False)

    def invoke(self, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        if self._unobserved(config, kwargs):
            return self._run(_prompt(self, input), stop, None, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        if self._unobserved(config, kwargs):
            return await self._arun(_prompt(self, input), stop, None, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if "coffee_structured" in kwargs:  # parsed objects don't stream as message chunks
            yield _as_chunk(self._run(messages, stop, run_manager, kwargs))
            return
        plan = self._plan(messages, kwargs)
        stop = stop or self.stop or None
        config = _child_config(run_manager)
        while True:
            step = plan.next()
            if isinstance(step, float):
                time.sleep(step)
                continue
            with _Guard(plan, step) as guard:  # nothing seen yet: a failure may still fall back
                model, call_kwargs = self._target(step, kwargs)
                chunks = iter(model.stream(messages, config, stop=stop, **call_kwargs))
                first = guard.first(next(chunks, None))
            if guard.failed:
                continue
            with guard:  # text has reached the caller: a failure now propagates
                chunk = first
                while chunk is not None:
                    out = guard.relay(chunk)
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=out)
                    yield out
                    chunk = next(chunks, None)
            yield guard.finish()
            return

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if "coffee_structured" in kwargs:
            yield _as_chunk(await self._arun(messages, stop, run_manager, kwargs))
            return
        plan = self._plan(messages, kwargs)
        stop = stop or self.stop or None
        config = _child_config(run_manager)
        loop = asyncio.get_running_loop()
        while True:
            step = plan.next()
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            with _Guard(plan, step) as guard:
                model, call_kwargs = self._target(step, kwargs, loop)
                chunks = aiter(model.astream(messages, config, stop=stop, **call_kwargs))
                first = guard.first(await asyncio.wait_for(anext(chunks, None), step.timeout))
            if guard.failed:
                continue
            with guard:
                chunk = first
                while chunk is not None:
                    out = guard.relay(chunk)
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=out)
                    yield out
                    chunk = await anext(chunks, None)
            yield guard.finish()
            return


class _Guard:
    """Reports how one attempt ended to the plan, for every driver alike.

    Before the first chunk, a failure the policy can handle is swallowed (``failed`` is set and the
    driver asks the plan what next); once a stream has delivered text, failures propagate.
    """

    __slots__ = ("plan", "step", "failed", "ttft", "total")

    def __init__(self, plan: _Plan, step: _Attempt) -> None:
        self.plan = plan
        self.step = step
        self.failed = False
        self.ttft: float | None = None
        self.total: AIMessageChunk | None = None

    def __enter__(self) -> _Guard:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        self.failed = True
        if isinstance(exc, Exception):
            action = self.plan.failed(self.step, exc, ttft=self.ttft, partial=self.total)
            return self.ttft is None and action is not Action.RAISE
        self.plan.cancelled(self.step, ttft=self.ttft, partial=self.total)  # KeyboardInterrupt, cancel, close
        return False

    def first(self, chunk: AIMessageChunk | None) -> AIMessageChunk:
        if chunk is None:
            raise EmptyResponseError(f"{self.step.candidate.name} ended its stream without a single chunk")
        self.ttft = self.plan.clock() - self.step.started
        return chunk

    def relay(self, chunk: AIMessageChunk) -> ChatGenerationChunk:
        self.total = chunk if self.total is None else self.total + chunk
        return ChatGenerationChunk(message=chunk)

    def finish(self) -> ChatGenerationChunk:
        final = self.plan.succeeded(self.step, self.total, ttft=self.ttft, streamed=True)
        meta = {"coffee_nb": final.response_metadata["coffee_nb"]}
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))


_listening: Any = None


def _nothing_global_listening(cache_off: bool) -> bool:
    """No global LLM cache, debug/verbose mode, LangSmith tracing, parent trace or configure hook is active.

    The same switches LangChain's callback manager looks at, read directly (this runs on every call).
    """
    global _listening
    if _listening is None:
        _listening = _ListeningSwitches()
    return _listening.quiet(cache_off)


class _ListeningSwitches:
    """Where LangChain and LangSmith keep their global switches; resolved once."""

    def __init__(self) -> None:
        import os

        import langchain_core.globals as lc_globals
        from langchain_core.tracers.context import _configure_hooks, tracing_v2_callback_var
        from langsmith import utils as ls_utils
        from langsmith._internal import _context as ls_context

        self.lc_globals = lc_globals
        self.tracing_var = tracing_v2_callback_var
        self.ls_context = ls_context
        self.get_env_var = ls_utils.get_env_var
        self.hooks = _configure_hooks
        self.environ = os.environ

    def quiet(self, cache_off: bool) -> bool:
        g = self.lc_globals
        if g._debug or g._verbose or (not cache_off and g._llm_cache is not None):
            return False
        if self.tracing_var.get() is not None:
            return False
        ctx = self.ls_context
        enabled = ctx._TRACING_ENABLED.get()  # an explicit tracing_context(enabled=...) wins
        if enabled:
            return False
        parent = ctx._PARENT_RUN_TREE_REF.get()
        if parent is not None and parent() is not None:  # inside a traced run
            return False
        if enabled is None:
            if ctx._GLOBAL_TRACING_ENABLED:
                return False
            if ctx._GLOBAL_TRACING_ENABLED is None:
                env = self.get_env_var
                if env("TRACING_V2", default=env("TRACING", default="")) == "true":
                    return False
        environ = self.environ
        for var, _inheritable, handler_class, env_var in self.hooks:
            if var.get() is not None:
                return False
            if env_var is not None and handler_class is not None and environ.get(env_var, "") not in ("", "0", "false", "False"):
                return False
        return True


def _prompt(picker: AutoPicker, input: Any) -> list[BaseMessage] | str:
    """What the fast path hands to the candidates: a string as it is (each candidate turns it into
    the same one user message, and it counts the same), anything else converted and validated once."""
    if type(input) is str:
        return input
    return picker._convert_input(input).to_messages()


def _child_config(run_manager: Any) -> dict[str, Any] | None:
    """Config for a candidate's run, nested under ours so callbacks and traces propagate."""
    if run_manager is None:
        return None
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


def _as_chunk(message: BaseMessage) -> ChatGenerationChunk:
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            response_metadata=message.response_metadata,
            usage_metadata=getattr(message, "usage_metadata", None),
            tool_calls=getattr(message, "tool_calls", []),
            id=message.id,
        )
    )
