"""The routing of one AutoPicker call, with no I/O and no LangChain.

A :class:`Plan` answers "what next?": an :class:`Attempt` to make now, or seconds to wait first; it
raises when nothing is left (``AllModelsFailedError``, ``DeadlineExceededError``,
``BudgetExceededError``). The attempt runner (``_attempt.py``) does the I/O and reports back with
``succeeded`` / ``failed`` / ``cancelled``; the plan applies the policy table (retry, fall back,
raise) and the circuit breakers. Everything about money (cost limits, reservations, settlement) and
the records is the call's :class:`~coffee_nb.invoke._spend.Spend`, which the plan asks before an
attempt and tells after it.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coffee_nb._shared._records import CallRecord, Outcome, Role, Usage
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
from coffee_nb.invoke._spend import Attempt, BudgetLike, Nested, Spend, new_call_id
from coffee_nb.pricing._tokens import DEFAULT_OUTPUT_ESTIMATE

__all__ = ["DEFAULT_OUTPUT_ESTIMATE", "Attempt", "BudgetLike", "Core", "Plan", "Usage", "new_call_id"]


@dataclass(slots=True)
class Core:
    """An AutoPicker's runtime state: the chain and how to treat it (shared by copies of the picker)."""

    candidates: list[Candidate]
    policy: Policy
    sinks: tuple[Callable[[CallRecord], Any], ...]
    rng: random.Random
    clock: Callable[[], float] = field(default=time.monotonic)
    # sinks that follow whole calls too (``call_started`` / ``call_ended``: OpenTelemetry's call spans)
    observers: tuple[Any, ...] = ()


class Plan:
    """The routing of one call: which model next, and when; what each attempt's end means for the rest."""

    __slots__ = (
        "core",
        "policy",
        "clock",
        "spend",
        "size",
        "records",
        "call_id",
        "start",
        "deadline",
        "queue",
        "current",
        "admitted",
        "retries",
        "wait",
        "last_exc",
        "budget_error",
        "deadline_cut",
        "_cooling",
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
        policy = self.policy = core.policy
        self.clock = core.clock
        cost_rule, primary = policy.fallback_cost, core.candidates[0]
        self.spend = spend = Spend(budget, messages, max_tokens, primary, cost_rule, core.sinks, max_cost)
        self.size = spend.size
        self.records = spend.records  # the same list: the spend appends, routing and the runner read
        self.call_id = spend.call_id
        self.start = self.clock()
        self.deadline = self.start + policy.deadline
        self.queue: deque[Candidate] = deque(core.candidates)
        self.current: Candidate | None = None
        self.admitted = False
        self.retries = 0
        self.wait = 0.0
        self.last_exc: BaseException | None = None
        self.budget_error: BaseException | None = None
        self.deadline_cut = False
        self._cooling: list[Candidate] = []  # skipped in this call because their breaker was open
        self.prefill_only = False  # a broken stream goes on only on models that continue its text

    # -- what the runner asks ----------------------------------------------------------------------
    def next(self) -> Attempt | float:
        """The next attempt to make, or seconds to wait before asking again. Raises when nothing is left."""
        spend = self.spend
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
                if not self._admit(cand, now) or (spend.costed and not self._within_cost(cand)):
                    continue
                self.admitted = True
            if cand.limiter is not None:
                size = self.size
                wait = cand.limiter.try_acquire(size.estimate() + size.output_cap(cand.output_cap), now)
                if wait > 0:
                    if wait < remaining:
                        tell("wait", cand.name, seconds=wait)
                        return wait
                    self._skip(
                        cand, ErrorClass.RATE_LIMIT, f"local rpm/tpm limit: next slot in {wait:.1f}s, past the deadline"
                    )
                    continue
            try:
                lease, price = spend.reserve(cand)
            except BudgetExceededError as exc:
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
            # started now, on both clocks: the reservation above is ours, not the model's latency
            return Attempt(cand, len(self.records), role, timeout, lease, datetime.now(UTC), self.clock(), price)

    def hedge(self) -> Attempt | None:
        """An attempt of the next candidate to run alongside the current one (``Policy(hedge_after=...)``),
        reserved like any other; None when no candidate can start (a hedge the budget can't cover is not
        started). The current candidate stays current."""
        now = self.clock()
        remaining = self.deadline - now
        spend = self.spend
        while self.queue and remaining > 0:
            cand = self.queue.popleft()
            if not self._admit(cand, now) or not self._within_cost(cand):
                continue
            if cand.limiter is not None and cand.limiter.try_acquire(self.size.estimate(), now) > 0:
                cand.breaker.release()
                continue  # no slot now: a hedge is worth starting only at once
            try:
                lease, price = spend.reserve(cand)
            except BudgetExceededError:
                cand.breaker.release()
                self.queue.appendleft(cand)  # still a fallback, should the race be lost
                return None
            timeout = min(cand.attempt_limit(self.policy.attempt_timeout), remaining)
            started = self.clock()
            return Attempt(cand, len(self.records), Role.HEDGE, timeout, lease, datetime.now(UTC), started, price)
        return None

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

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return self.clock() - self.start

    def replay(self, model: str, provider: str, usage: Usage) -> CallRecord:
        """The record of an answer replayed from a cassette: no model called, nothing reserved or spent."""
        return self.spend.replay(model, provider, usage, self.elapsed())

    # -- what the runner reports ---------------------------------------------------------------------
    def succeeded(
        self,
        attempt: Attempt,
        usage: Usage | None,
        ttft: float | None = None,
        streamed: bool = False,
        nested: Nested | None = None,
        content: Any = "",
    ) -> CallRecord:
        """Settle a successful attempt and return its record (``usage`` None: estimated from ``content``).

        ``nested`` is what another AutoPicker (this candidate) reported of its call: its answering model and
        exact cost stand in this record, charged to this call's budget unless that is the inner one's too
        (then the inner call charged it).
        """
        attempt.candidate.breaker.success()
        spend = self.spend
        if usage is None:
            usage = spend.estimate(content)
        return spend.settle(attempt, Outcome.OK, usage, self.clock(), ttft, None, streamed, nested)

    def answered(
        self,
        attempt: Attempt,
        usage: Usage | None,
        response_metadata: Any,
        ttft: float | None = None,
        streamed: bool = False,
        nested: Nested | None = None,
        content: Any = "",
    ) -> tuple[CallRecord, Usage, dict[str, Any]]:
        """:meth:`succeeded`, and the answer's summary (``response_metadata["coffee_nb"]``), in one step."""
        spend = self.spend
        if usage is None:
            usage = spend.estimate(content)
        record = self.succeeded(attempt, usage, ttft, streamed, nested)  # by position: the hot path
        return record, usage, spend.summary(attempt.candidate, usage, self.elapsed(), ttft, response_metadata)

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
        keep = getattr(exc, "settles_later", False) is True  # it goes on: its reservation stays for later
        self.spend.settle(attempt, Outcome.ERROR, partial, now, ttft=ttft, failure=failure, keep_lease=keep)
        if failure.error_class is ErrorClass.CONTEXT_OVERFLOW:
            self._prefer_larger_windows(max(cand.context_window or 0, self.size.tokens(cand)) + 1)
        elif failure.error_class is ErrorClass.CAPABILITY and self.size.images():
            cand.sees(False)  # it turned the images down: later prompts with images skip it
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
        self.spend.settle(attempt, Outcome.CANCELLED, partial, self.clock(), ttft=ttft, streamed=streamed)

    def abandoned(self, attempt: Attempt, text: str = "", *, streamed: bool = False) -> None:
        """A racing attempt lost (or was cut off): settle it as cancelled, charging what it likely used
        (the prompt: providers bill input once they start; plus an estimate of the text it had sent)."""
        self.cancelled(attempt, partial=self.spend.estimate(text), streamed=streamed)

    # -- helpers ---------------------------------------------------------------------------------------
    def _admit(self, cand: Candidate, now: float) -> bool:
        """May ``cand`` be tried at all in this call (breaker closed, prompt fits its window)?"""
        if self.prefill_only and not cand.prefill:
            refusal = "can't continue the partial answer: takes no assistant prefill"
            self._skip(cand, ErrorClass.CAPABILITY, refusal, probed=False)
            return False
        if not cand.breaker.allow(now):
            left = max(0.0, cand.breaker.open_until() - now)
            refusal = f"cooling down after repeated failures ({left:.1f}s left)"
            self._skip(cand, ErrorClass.COOLDOWN, refusal, probed=False)
            self._cooling.append(cand)
            return False
        size = self.size
        if size.images() and cand.vision is False:
            self._skip(cand, ErrorClass.CAPABILITY, "no image input: the prompt has images this model can't take")
            return False
        window = cand.context_window
        out = int(size.max_tokens) if size.max_tokens else 0
        if window is not None and size.bound(cand) + out > window:  # the bound can't settle it: count
            need = size.tokens(cand) + out
            if need > window:
                self._skip(
                    cand,
                    ErrorClass.CONTEXT_OVERFLOW,
                    f"prompt ~{need} tokens (incl. max_tokens) exceeds its context window of {window}",
                )
                self._prefer_larger_windows(need)
                return False
        return True

    def _within_cost(self, cand: Candidate) -> bool:
        """Within ``max_cost`` and ``Policy(fallback_cost=...)``? Skipped (and recorded) if not."""
        refusal = self.spend.refusal(cand)
        if refusal is None:
            return True
        self._skip(cand, ErrorClass.COST, refusal)
        return False

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

    def _role(self, cand: Candidate) -> Role:
        if self.retries:
            return Role.RETRY
        return Role.PRIMARY if cand is self.core.candidates[0] else Role.FALLBACK

    def _skip(self, cand: Candidate, error_class: ErrorClass, message: str, *, probed: bool = True) -> None:
        """``cand`` won't be tried now: record why, and give back the probe its breaker may have granted
        (``probed``: the breaker was asked and admitted it)."""
        if probed:
            cand.breaker.release()
        self.spend.skipped(cand, self._role(cand), error_class.value, message)
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


def _said(failure: Failure) -> str:
    """How a live status names a failure: its HTTP status when there is one (``429``), else its class."""
    return str(failure.status) if failure.status else failure.error_class.value.replace("_", " ")
