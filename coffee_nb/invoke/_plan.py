"""The decisions of one AutoPicker call, with no I/O and no LangChain.

A :class:`Plan` answers "what next?": an :class:`Attempt` to make now, or seconds to wait first; it
raises when nothing is left (``AllModelsFailedError``, ``DeadlineExceededError``,
``BudgetExceededError``). The attempt runner (``_attempt.py``) does the I/O and reports back with
``succeeded`` / ``failed`` / ``cancelled``; each report settles the budget (commit what was used,
release what wasn't), emits one :class:`CallRecord` and, for a failure, applies the policy table.

One cohesive thing, and so longer than most modules: every decision of a call (order, admission,
rate limits, cost limits, reservations, retries, hedges, cooldown waits, settlement) reads and
changes the same per-call state, which splitting would only pass around.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from coffee_nb._shared._records import CallRecord, Outcome, Role, global_sinks, publish
from coffee_nb.errors._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    DeadlineExceededError,
    ErrorClass,
    Failure,
    classify,
    redact,
)
from coffee_nb.invoke._events import tell
from coffee_nb.invoke._models import Candidate
from coffee_nb.invoke._policy import Action, Policy
from coffee_nb.pricing._pricing import Price, from_pico, to_pico
from coffee_nb.pricing._tokens import count_prompt, estimate_prompt, estimate_tokens, prompt_bound

__all__ = ["DEFAULT_OUTPUT_ESTIMATE", "Attempt", "BudgetLike", "Core", "Plan", "Usage"]

ESTIMATE_MARGIN = (5, 4)  # × 1.25 on worst-case reservations when the prompt count is an estimate
DEFAULT_OUTPUT_ESTIMATE = 4096  # worst-case output tokens when neither max_tokens nor the model says


class BudgetLike(Protocol):
    """What AutoPicker needs from a budget: two-phase reserve → commit/release."""

    def reserve(self, model: str, amount: Decimal | None) -> Any: ...  # raises BudgetExceededError
    def commit(self, lease: Any, amount: Decimal | None) -> None: ...
    def release(self, lease: Any) -> None: ...


class Usage(NamedTuple):
    """Tokens one attempt used. ``input`` includes cached and cache-write tokens (OpenAI/LangChain style)."""

    input: int
    output: int
    cached: int = 0
    reasoning: int = 0
    cache_write: int = 0
    estimated: bool = False  # counted offline, not reported by the provider


@dataclass(slots=True)
class Core:
    """An AutoPicker's runtime state: the chain and how to treat it (shared by copies of the picker)."""

    candidates: list[Candidate]
    policy: Policy
    sinks: tuple[Callable[[CallRecord], Any], ...]
    rng: random.Random
    clock: Callable[[], float] = field(default=time.monotonic)


@dataclass(slots=True, eq=False)  # compared and hashed by identity: racing attempts key dicts
class Attempt:
    """One try of one candidate: what the runner needs to make it and the plan needs to settle it."""

    candidate: Candidate
    index: int  # position among the call's records
    role: Role
    timeout: float  # seconds this attempt may take (capped by what is left of the deadline)
    lease: Any  # the budget's reservation, or None
    started_at: datetime
    started: float  # on the plan's clock
    price: Price | None  # resolved once: the estimate and the settlement use the same


_CALL_PREFIX = uuid.uuid4().hex[:12]
_call_counter = itertools.count(1)


def new_call_id() -> str:
    """Unique across processes (random prefix per process) and cheap (a counter)."""
    return f"{_CALL_PREFIX}-{next(_call_counter):08x}"


class Plan:
    """The decisions of one call: which model next, how long to wait, what to record."""

    __slots__ = (
        "core",
        "policy",
        "clock",
        "budget",
        "messages",
        "call_id",
        "start",
        "deadline",
        "max_tokens",
        "queue",
        "current",
        "admitted",
        "retries",
        "wait",
        "records",
        "last_exc",
        "budget_error",
        "deadline_cut",
        "_counts",
        "_bound",
        "_estimate",
        "max_cost",
        "_cooling",
        "_costed",
        "prefill_only",
    )

    def __init__(
        self,
        core: Core,
        budget: Any,
        messages: Sequence[Any] | str,
        max_tokens: int | None,
        max_cost: int | None = None,
    ) -> None:
        self.core = core
        self.policy = core.policy
        self.clock = core.clock
        self.budget = budget
        self.messages = messages
        self.call_id = new_call_id()
        self.start = self.clock()
        self.deadline = self.start + self.policy.deadline
        self.max_tokens = max_tokens
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
        self._bound: int | None = None
        self._estimate: int | None = None
        self.max_cost = max_cost  # picodollars: no attempt whose worst case is above it
        self._cooling: list[Candidate] = []  # skipped in this call because their breaker was open
        self._costed = max_cost is not None or self.policy.fallback_cost != "any"  # any cost limit to check?
        self.prefill_only = False  # a broken stream goes on only on models that continue its text

    # -- what the runner asks ----------------------------------------------------------------------
    def next(self) -> Attempt | float:
        """The next attempt to make, or seconds to wait before asking again. Raises when nothing is left."""
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
                    reopening = self._wait_for_cooldown(now, remaining)
                    if reopening is None:
                        raise self._give_up()
                    return reopening
                self.current, self.retries, self.admitted = self.queue.popleft(), 0, False
            cand = self.current
            if not self.admitted:
                if not self._admit(cand, now) or (self._costed and not self._cost_allows(cand)):
                    continue
                self.admitted = True
            if cand.limiter is not None:
                wait = cand.limiter.try_acquire(self.prompt_estimate() + self._output_cap(cand), now)
                if wait > 0:
                    if wait < remaining:
                        tell("wait", cand.name, seconds=wait)
                        return wait
                    cand.breaker.release()
                    self._skip(
                        cand, ErrorClass.RATE_LIMIT, f"local rpm/tpm limit: next slot in {wait:.1f}s, past the deadline"
                    )
                    continue
            price = cand.facts.price
            lease = None
            if self.budget is not None and not self._charged_inside(cand):
                try:
                    lease = self._reserve(cand, price)
                except BudgetExceededError as exc:
                    cand.breaker.release()
                    self.budget_error = exc
                    self._skip(cand, ErrorClass.BUDGET, str(exc))
                    continue
            role = self._role(cand)
            if role is Role.FALLBACK and self.records:
                tell("fallback", cand.name)
            timeout = self.policy.attempt_timeout
            if cand.own_timeout is not None:  # a user's instance with its own, maybe stricter, timeout
                timeout = cand.attempt_limit(timeout)
            timeout = min(timeout, remaining)
            if self.queue and cand.breaker.probing:  # probing a model that was failing: keep half for the rest
                timeout = min(timeout, remaining / 2)
            return Attempt(
                candidate=cand,
                index=len(self.records),
                role=role,
                timeout=timeout,
                lease=lease,
                started_at=datetime.now(UTC),
                started=now,
                price=price,
            )

    def prompt_bound(self) -> int:
        """An upper bound on the prompt's tokens that costs no tokenizer (see ``_tokens.prompt_bound``)."""
        if self._bound is None:
            self._bound = prompt_bound(self.messages)
        return self._bound

    def prompt_estimate(self) -> int:
        """A cheap estimate of the prompt's tokens (rate-limit accounting, unreported usage)."""
        if self._estimate is None:
            self._estimate = estimate_prompt(self.messages)
        return self._estimate

    def prompt_tokens(self, cand: Candidate) -> int:
        """Prompt tokens counted with ``cand``'s encoding (once per encoding per call).

        Loading an encoding costs up to half a second and 140 MB, so this runs only where the count
        decides something: a prompt near a context window, a reservation near a budget's limit.
        """
        counts = self._counts
        count = counts.get(cand.encoding)
        if count is None:
            count = counts[cand.encoding] = count_prompt(self.messages, cand.encoding)
        return count

    def replay(self, model: str, provider: str, usage: Usage) -> CallRecord:
        """The record of an answer replayed from a cassette: no model called, nothing reserved or spent."""
        record = CallRecord(
            call_id=self.call_id,
            attempt=0,
            role=Role.PRIMARY,
            provider=provider,
            model=model,
            outcome=Outcome.OK,
            started_at=datetime.now(UTC),
            latency_s=self.elapsed(),
            input_tokens=usage.input,
            output_tokens=usage.output,
            cached_tokens=usage.cached,
            cost=Decimal(0),
            price_source="cassette",
            replayed=True,
        )
        self._emit(record)
        return record

    def hedge(self) -> Attempt | None:
        """An attempt of the next candidate to run alongside the current one (``Policy(hedge_after=...)``),
        reserved like any other; None when no candidate can start (a hedge the budget can't cover is not
        started). The current candidate stays current."""
        now = self.clock()
        remaining = self.deadline - now
        while self.queue and remaining > 0:
            cand = self.queue.popleft()
            if not self._admit(cand, now) or not self._cost_allows(cand):
                continue
            if cand.limiter is not None and cand.limiter.try_acquire(self.prompt_estimate(), now) > 0:
                cand.breaker.release()
                continue  # no slot now: a hedge is worth starting only at once
            price = cand.facts.price
            lease = None
            if self.budget is not None:
                try:
                    lease = self._reserve(cand, price)
                except BudgetExceededError:
                    cand.breaker.release()
                    self.queue.appendleft(cand)  # still a fallback, should the race be lost
                    return None
            return Attempt(
                candidate=cand,
                index=len(self.records),
                role=Role.HEDGE,
                timeout=min(cand.attempt_limit(self.policy.attempt_timeout), remaining),
                lease=lease,
                started_at=datetime.now(UTC),
                started=now,
                price=price,
            )
        return None

    def abandoned(self, attempt: Attempt) -> None:
        """A racing attempt lost (or was cut off): settle it as cancelled, charging what it likely used
        (the prompt: providers bill input once they start; no output was delivered)."""
        self.cancelled(attempt, partial=Usage(self.prompt_estimate(), 0, estimated=True))

    def hedge_won(self, attempt: Attempt) -> None:
        """A hedge won a streamed race: its model is the current one (a retry is of it); the model it raced
        is a fallback again, first in line, should the winner's stream break."""
        current = self.current
        if current is not None and current is not attempt.candidate:
            self.queue.appendleft(current)
        self.current, self.retries, self.admitted, self.wait = attempt.candidate, 0, True, 0.0

    def requeue(self, cand: Candidate) -> None:
        """Try ``cand`` again next, as a fresh attempt (the runner changed how it asks)."""
        self.queue.appendleft(cand)
        self.current = None

    def require_prefill(self) -> bool:
        """From now on, only models that continue a final assistant message may be tried (a stream broke
        mid-answer and its consumer can't take a restart). False when no such model is left."""
        self.prefill_only = True
        current = self.current
        if current is not None and not current.prefill:  # a retry it can't make
            self.current, self.wait = None, 0.0
            current = None
        return (current is not None) or any(c.prefill for c in self.queue)

    def has_alternative(self) -> bool:
        """Is another candidate still left to try in this call?"""
        return bool(self.queue)

    def estimate(self, cand: Candidate, text: str) -> Usage:
        """Usage estimated offline, for a provider that reported none (labelled ``estimated``)."""
        return Usage(self.prompt_estimate(), estimate_tokens(text), estimated=True)

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return self.clock() - self.start

    # -- what the runner reports ---------------------------------------------------------------------
    def succeeded(
        self,
        attempt: Attempt,
        usage: Usage,
        *,
        ttft: float | None = None,
        streamed: bool = False,
        nested: Nested | None = None,
    ) -> CallRecord:
        """Settle a successful attempt and return its record.

        ``nested`` is what another AutoPicker (this candidate) reported of its call: its answering model and
        exact cost stand in this record, charged to this call's budget unless that is the inner one's too
        (then the inner call charged it); the record goes to this picker's own sinks, not to the global
        ones, which hear the inner call's records themselves (counted once).
        """
        attempt.candidate.breaker.success()
        record = self._settled(attempt, Outcome.OK, usage, ttft=ttft, streamed=streamed, nested=nested)
        self._emit(record, everyone=nested is None)
        return record

    def _charged_inside(self, cand: Candidate) -> bool:
        """Is ``cand`` another AutoPicker charging this call's budget itself? Then nothing is reserved here."""
        inner = cand.inner
        return inner is not None and inner.budget is self.budget

    def failed(
        self, attempt: Attempt, exc: BaseException, *, ttft: float | None = None, partial: Usage | None = None
    ) -> Action:
        """Record a failed attempt and decide what comes next.

        ``partial`` is what a stream delivered before it broke: the provider bills it, so its cost is
        committed rather than released.
        """
        now = self.clock()
        failure: Failure = classify(exc)
        cand = attempt.candidate
        rule = self.policy.rules[failure.error_class]
        retry_after = failure.retry_after if failure.error_class is ErrorClass.RATE_LIMIT else None
        cand.breaker.failure(rule.trip, now, seconds=retry_after)
        self.last_exc = exc
        self._emit(self._settled(attempt, Outcome.ERROR, partial, ttft=ttft, failure=failure, now=now))
        if failure.error_class is ErrorClass.CONTEXT_OVERFLOW:
            self._prefer_larger_windows(max(cand.context_window or 0, self.prompt_tokens(cand)) + 1)
        retries = self.policy.max_retries if rule.retries is None else min(rule.retries, self.policy.max_retries)
        retry = rule.retry and not (rule.alone and self.has_alternative())
        if retry and self.retries < retries and cand.breaker.open_until() == 0.0:
            wait = self.policy.backoff(self.retries, failure.retry_after, self.core.rng)
            if wait is not None and now + wait < self.deadline:
                self.retries += 1
                self.wait = wait
                tell("retry", cand.name, reason=_said(failure), seconds=wait, n=self.retries, of=retries)
                return Action.RETRY
            if wait is not None:
                self.deadline_cut = True  # a retry was due but would end past the deadline
        if rule.fallback:
            self.current = None
            tell("failed", cand.name, reason=_said(failure))
            return Action.FALLBACK
        return Action.RAISE

    def cancelled(
        self, attempt: Attempt, *, ttft: float | None = None, partial: Usage | None = None, streamed: bool = False
    ) -> None:
        """The caller stopped the attempt (Ctrl-C, task cancelled, stream closed early, a lost race).

        Streamed text was billed by the provider, so its cost is committed.
        """
        attempt.candidate.breaker.release()
        self._emit(self._settled(attempt, Outcome.CANCELLED, partial, ttft=ttft, streamed=streamed))

    # -- helpers ---------------------------------------------------------------------------------------
    def _admit(self, cand: Candidate, now: float) -> bool:
        """May ``cand`` be tried at all in this call (breaker closed, prompt fits its window)?"""
        if self.prefill_only and not cand.prefill:
            self._skip(cand, ErrorClass.CAPABILITY, "can't continue the partial answer: takes no assistant prefill")
            return False
        if not cand.breaker.allow(now):
            left = max(0.0, cand.breaker.open_until() - now)
            self._skip(cand, ErrorClass.COOLDOWN, f"cooling down after repeated failures ({left:.1f}s left)")
            self._cooling.append(cand)
            return False
        window = cand.context_window
        out = int(self.max_tokens) if self.max_tokens else 0
        if window is not None and self.prompt_bound() + out > window:  # the bound can't settle it: count
            need = self.prompt_tokens(cand) + out
            if need > window:
                cand.breaker.release()
                self._skip(
                    cand,
                    ErrorClass.CONTEXT_OVERFLOW,
                    f"prompt ~{need} tokens (incl. max_tokens) exceeds its context window of {window}",
                )
                self._prefer_larger_windows(need)
                return False
        return True

    def _wait_for_cooldown(self, now: float, remaining: float) -> float | None:
        """Every candidate was tried or skipped: with ``Policy(wait_for_cooldown=s)``, when one that was
        only cooling down reopens within ``s`` (and the deadline), wait for it and try it again."""
        limit = min(self.policy.wait_for_cooldown, remaining)
        if limit <= 0 or not self._cooling:
            return None
        cand = min(self._cooling, key=lambda c: c.breaker.open_until())
        wait = cand.breaker.open_until() - now
        if wait > limit:
            return None
        self._cooling.remove(cand)
        self.queue.appendleft(cand)
        return max(wait, 0.0) + 0.001  # just past the reopening: the breaker lets this call probe

    def _cost_allows(self, cand: Candidate) -> bool:
        """Within ``max_cost`` and, for a fallback, ``Policy(fallback_cost=...)``? Skipped (and recorded) if not."""
        mode = self.policy.fallback_cost
        primary = self.core.candidates[0]
        if self.max_cost is None and (mode == "any" or cand is primary):
            return True
        price = cand.facts.price
        if price is None:
            cand.breaker.release()
            self._skip(cand, ErrorClass.COST, "unpriced: its cost can't be bounded under max_cost / fallback_cost")
            return False
        out = self._output_cap(cand)
        worst = price.pico(self.prompt_bound(), out)
        if self.max_cost is not None and worst > self.max_cost:
            worst = price.pico(self.prompt_tokens(cand), out)  # the bound can't settle it: count
            if worst > self.max_cost:
                cand.breaker.release()
                ceiling = from_pico(self.max_cost)
                self._skip(cand, ErrorClass.COST, f"worst case ${from_pico(worst)} is above max_cost ${ceiling}")
                return False
        if mode == "any" or cand is primary:
            return True
        primary_price = primary.facts.price
        if primary_price is None:  # nothing to compare against
            return True
        tokens = self.prompt_tokens(cand)  # both worst cases from one count: a fair comparison
        worst, theirs = price.pico(tokens, out), primary_price.pico(tokens, self._output_cap(primary))
        if worst > theirs or (mode == "cheaper_only" and worst == theirs):
            cand.breaker.release()
            what = "more than" if worst > theirs else "as much as"
            self._skip(
                cand,
                ErrorClass.COST,
                f"worst case ${from_pico(worst)} costs {what} the primary's ${from_pico(theirs)} "
                f"(Policy(fallback_cost={mode!r}))",
            )
            return False
        return True

    def primary_cost(self, cand: Candidate, usage: Usage) -> Decimal | None:
        """What the primary would have cost for ``usage``, when a fallback answered (None otherwise)."""
        primary = self.core.candidates[0]
        if cand is primary:
            return None
        price = primary.facts.price
        if price is None:
            return None
        return from_pico(price.pico(usage.input, usage.output, usage.cached, usage.cache_write))

    def _output_cap(self, cand: Candidate) -> int:
        if self.max_tokens:
            return int(self.max_tokens)
        return cand.output_cap or DEFAULT_OUTPUT_ESTIMATE

    def _reserve(self, cand: Candidate, price: Price | None) -> Any:
        """Reserve the attempt's worst case on the budget (in picodollars where the budget takes them).

        First with the prompt's upper bound (no tokenizer); only when the budget refuses that is the
        prompt counted, and the reservation tried again with the count (and a margin, for a stand-in
        tokenizer): a budget near its limit is where the exact number decides.
        """
        if price is None:
            return self._hold(cand, None)
        out = self._output_cap(cand)
        bound = price.pico(self.prompt_bound(), out)
        try:
            return self._hold(cand, bound)
        except BudgetExceededError:
            counted = price.pico(self.prompt_tokens(cand), out)
            if not cand.exact_tokens:  # a stand-in tokenizer may count low: hold a margin
                counted = -(-counted * ESTIMATE_MARGIN[0] // ESTIMATE_MARGIN[1])
            if counted >= bound:
                raise
            return self._hold(cand, counted)

    def _hold(self, cand: Candidate, pico: int | None) -> Any:
        budget = self.budget
        fast = getattr(budget, "reserve_pico", None)
        if fast is not None:
            return fast(cand.name, pico)
        return budget.reserve(cand.name, None if pico is None else from_pico(pico))

    def _settle(
        self, attempt: Attempt, usage: Usage | None, nested: Nested | None = None
    ) -> tuple[Decimal | None, str]:
        """Price ``usage`` and commit it to the budget; with no usage, release the reservation."""
        lease, budget = attempt.lease, self.budget
        if usage is None:
            if lease is not None and budget is not None:
                budget.release(lease)
            return None, "unpriced"
        price = attempt.price
        if nested is not None:  # the inner AutoPicker's exact cost, not an estimate from a made-up price
            cost = nested.total_cost
            pico, source = (None, "unpriced") if cost is None else (to_pico(cost), "nested")
        elif price is None:
            pico, source = None, "unpriced"
        else:
            pico, source = price.pico(usage.input, usage.output, usage.cached, usage.cache_write), price.source
        if lease is not None and budget is not None:
            fast = getattr(budget, "commit_pico", None)
            if fast is not None:
                fast(lease, pico)
            else:
                budget.commit(lease, None if pico is None else from_pico(pico))
        return (None, "unpriced") if pico is None else (from_pico(pico), source)

    def _settled(
        self,
        attempt: Attempt,
        outcome: Outcome,
        usage: Usage | None,
        *,
        ttft: float | None = None,
        failure: Failure | None = None,
        streamed: bool = False,
        now: float | None = None,
        nested: Nested | None = None,
    ) -> CallRecord:
        """Settle the budget for ``attempt`` and build its record."""
        end = self.clock() if now is None else now
        cost, source = self._settle(attempt, usage, nested)
        cand = attempt.candidate
        provider, model = (cand.provider, cand.name) if nested is None else (nested.provider, nested.model)
        origin, reason = self._fallback_origin(attempt.role)
        used = usage or _NO_USAGE
        # Built by position, in CallRecord's field order: one per attempt on the hot path, and binding 22
        # keywords costs about 0.6 µs more per record (benchmarks/overhead.py: 0.70 -> 0.66 without budget).
        # tests/test_plan.py checks every field of a settled record by name.
        record = CallRecord(
            self.call_id,
            attempt.index,
            attempt.role,
            provider,
            model,
            outcome,
            attempt.started_at,
            end - attempt.started,  # latency_s
            failure.error_class.value if failure else None,
            failure.message if failure else None,
            ttft,
            used.input,
            used.output,
            used.cached,
            used.reasoning,
            used.estimated,
            cost,
            source,  # price_source
            False,  # cache_hit
            streamed or ttft is not None,
            origin,  # fallback_from
            reason,  # fallback_reason
        )
        cand.recent.add(record)
        return record

    def _emit(self, record: CallRecord, *, everyone: bool = True) -> None:
        self.records.append(record)
        sinks = self.core.sinks
        if sinks:
            publish(sinks, record)
        if everyone and (listeners := global_sinks()):
            publish(listeners, record)

    def _fallback_origin(self, role: Role) -> tuple[str | None, str | None]:
        """For a fallback attempt: the first model this call tried, and why the call moved on."""
        if role is not Role.FALLBACK or not self.records:
            return None, None
        reason = next((r.error_class for r in self.records if r.error_class), None)
        return self.records[0].model, reason

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
                provider=cand.provider,
                model=cand.name,
                outcome=Outcome.SKIPPED,
                started_at=datetime.now(UTC),
                latency_s=0.0,
                error_class=error_class.value,
                error_message=message,
                fallback_from=origin,
                fallback_reason=reason,
            )
        )
        if cand is self.current:
            self.current = None

    def _prefer_larger_windows(self, need: int) -> None:
        """After a context overflow, try candidates known to hold ``need`` tokens first, unknown ones next."""

        def rank(c: Candidate) -> int:
            w = c.context_window
            return 1 if w is None else (0 if w >= need else 2)

        self.queue = deque(sorted(self.queue, key=rank))

    def _give_up(self, *, deadline: bool = False) -> BaseException:
        tried = [r for r in self.records if r.outcome is not Outcome.SKIPPED]
        budget_only = all(r.error_class == ErrorClass.BUDGET for r in self.records)
        if not deadline and self.budget_error is not None and budget_only:
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


_NO_USAGE = Usage(0, 0)


class Nested(Protocol):
    """What an inner AutoPicker reported of its call (a ``CallSummary``): who answered, at what exact cost."""

    @property
    def model(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def total_cost(self) -> Decimal | None: ...


def _said(failure: Failure) -> str:
    """How a live status names a failure: its HTTP status when there is one (``429``), else its class."""
    return str(failure.status) if failure.status else failure.error_class.value.replace("_", " ")
