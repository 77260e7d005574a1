"""What one AutoPicker call may cost, what it cost, and its records: no I/O and no LangChain.

:class:`Spend` holds a call's money and its record: it says whether a candidate's worst case is within
``max_cost`` and ``Policy(fallback_cost=...)``, reserves that worst case on the budget before an
attempt (two-phase: reserve, then commit what was used or release what wasn't), prices each attempt's
usage when it ends, and builds and publishes its :class:`CallRecord`. Which model comes next and when
is :class:`~coffee_nb.invoke._plan.Plan`'s; the plan asks its spend and tells it how each attempt ended.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from coffee_nb._shared._finish import finish_reason
from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import images_in
from coffee_nb._shared._records import CallRecord, Outcome, Role, Usage, global_sinks, publish, summary_data
from coffee_nb.errors._errors import BudgetExceededError, Failure
from coffee_nb.invoke._models import Candidate
from coffee_nb.pricing._pricing import Price, from_pico, to_pico
from coffee_nb.pricing._tokens import (
    DEFAULT_OUTPUT_ESTIMATE,
    count_prompt,
    estimate_prompt,
    estimate_tokens,
    images_tokens,
    text_bound,
)

__all__ = ["Attempt", "BudgetLike", "Nested", "PromptSize", "Spend", "new_call_id"]

ESTIMATE_MARGIN = (5, 4)  # × 1.25 on worst-case reservations when the prompt count is an estimate


class BudgetLike(Protocol):
    """What AutoPicker needs from a budget: two-phase reserve → commit/release."""

    def reserve(self, model: str, amount: Decimal | None) -> Any: ...  # raises BudgetExceededError
    def commit(self, lease: Any, amount: Decimal | None) -> None: ...
    def release(self, lease: Any) -> None: ...


class Nested(Protocol):
    """What an inner AutoPicker reported of its call (a ``CallSummary``): who answered, at what exact cost."""

    @property
    def model(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def total_cost(self) -> Decimal | None: ...


@dataclass(slots=True, eq=False)  # compared and hashed by identity: racing attempts key dicts
class Attempt:
    """One try of one candidate: what the runner needs to make it, and what settles it."""

    candidate: Candidate
    index: int  # position among the call's records
    role: Role
    timeout: float  # seconds this attempt may take (capped by what is left of the deadline)
    lease: Any  # the budget's reservation, or None
    started_at: datetime
    started: float  # on the plan's clock
    price: Price | None  # resolved once: the estimate and the settlement use the same


class PromptSize:
    """One call's prompt, sized as cheaply as each question allows, each answer computed once.

    Routing (does it fit a context window? a rate limit's tokens) and spending (the worst case a
    reservation holds) ask the same questions of the same prompt: ``bound`` costs no tokenizer,
    ``estimate`` is a byte count, ``count`` runs the model's own encoding (up to half a second and
    140 MB to load one), so it runs only where its answer decides something.
    """

    __slots__ = ("messages", "max_tokens", "_bound", "_estimate", "_counts", "_images", "_image_tokens")

    def __init__(self, messages: Sequence[Any] | str, max_tokens: int | None) -> None:
        self.messages = messages
        self.max_tokens = max_tokens
        self._bound: int | None = None
        self._estimate: int | None = None
        self._counts: dict[str, int] = {}
        self._images: int | None = None
        self._image_tokens: dict[tuple[str, str], tuple[int, bool]] = {}

    def bound(self, cand: Candidate) -> int:
        """An upper bound on the prompt's tokens on ``cand``: its text's bytes (see ``_tokens.text_bound``),
        its images by ``cand``'s rule (with the margin of an estimate)."""
        if self._bound is None:
            self._bound = text_bound(self.messages)
        if not self.images():
            return self._bound
        tokens, exact = self.image_tokens(cand)
        return self._bound + (tokens if exact else -(-tokens * ESTIMATE_MARGIN[0] // ESTIMATE_MARGIN[1]))

    def estimate(self) -> int:
        """A cheap estimate of the prompt's tokens (rate-limit accounting, unreported usage)."""
        if self._estimate is None:
            self._estimate = estimate_prompt(self.messages)
        return self._estimate

    def count(self, encoding: str) -> int:
        """The prompt's tokens with ``encoding`` (once per encoding per call)."""
        counts = self._counts
        count = counts.get(encoding)
        if count is None:
            count = counts[encoding] = count_prompt(self.messages, encoding)
        return count

    def images(self) -> int:
        """How many images the prompt carries (each is routed, counted and priced)."""
        if self._images is None:
            messages = self.messages
            self._images = 0 if isinstance(messages, str) else sum(1 for _ in images_in(messages))
        return self._images

    def image_tokens(self, cand: Candidate) -> tuple[int, bool]:
        """The images' tokens on ``cand`` by its provider's rule, and whether that rule is exact."""
        if not self.images():
            return 0, True
        key = (cand.provider, cand.catalog_model)
        found = self._image_tokens.get(key)
        if found is None:
            found = self._image_tokens[key] = images_tokens(self.messages, *key)
        return found

    def tokens(self, cand: Candidate) -> int:
        """The prompt's tokens on ``cand``: its text in ``cand``'s encoding, its images by ``cand``'s rule."""
        return self.count(cand.encoding) + self.image_tokens(cand)[0]

    def exact(self, cand: Candidate) -> bool:
        """Is :meth:`tokens` exact for ``cand`` (its own encoding, its provider's own image rule)?"""
        return cand.exact_tokens and self.image_tokens(cand)[1]

    def output_cap(self, model_cap: int | None) -> int:
        """The most output tokens an answer may take: ``max_tokens``, else the model's own cap, else a default."""
        if self.max_tokens:
            return int(self.max_tokens)
        return model_cap or DEFAULT_OUTPUT_ESTIMATE


_CALL_PREFIX = uuid.uuid4().hex[:12]
_call_counter = itertools.count(1)


def new_call_id() -> str:
    """Unique across processes (random prefix per process) and cheap (a counter)."""
    return f"{_CALL_PREFIX}-{next(_call_counter):08x}"


class Spend:
    """One call's money and records: cost limits, reservations, settlement, the records published."""

    __slots__ = ("call_id", "budget", "max_cost", "costed", "size", "primary", "fallback_cost", "sinks", "records")

    def __init__(
        self,
        budget: Any,
        messages: Sequence[Any] | str,
        max_tokens: int | None,
        primary: Candidate,
        fallback_cost: str,
        sinks: tuple[Callable[[CallRecord], Any], ...],
        max_cost: int | None = None,
    ) -> None:
        self.call_id = new_call_id()
        self.budget = budget
        self.size = PromptSize(messages, max_tokens)
        self.primary = primary
        self.fallback_cost = fallback_cost
        self.sinks = sinks
        self.max_cost = max_cost  # picodollars: no attempt whose worst case is above it
        self.costed = max_cost is not None or fallback_cost != "any"  # any cost limit to check?
        self.records: list[CallRecord] = []

    # -- before an attempt ---------------------------------------------------------------------------
    def refusal(self, cand: Candidate) -> str | None:
        """Why ``cand``'s worst case is outside ``max_cost`` or ``Policy(fallback_cost=...)``; None if within."""
        mode = self.fallback_cost
        primary = self.primary
        if self.max_cost is None and (mode == "any" or cand is primary):
            return None
        price = cand.facts.price
        if price is None:
            return "unpriced: its cost can't be bounded under max_cost / fallback_cost"
        size = self.size
        out = size.output_cap(cand.output_cap)
        worst = price.pico(size.bound(cand), out)
        if self.max_cost is not None and worst > self.max_cost:
            worst = price.pico(size.tokens(cand), out)  # the bound can't settle it: count
            if worst > self.max_cost:
                return f"worst case ${from_pico(worst)} is above max_cost ${from_pico(self.max_cost)}"
        if mode == "any" or cand is primary:
            return None
        primary_price = primary.facts.price
        if primary_price is None:  # nothing to compare against
            return None
        tokens = size.tokens(cand)  # both worst cases from one count: a fair comparison
        worst, theirs = price.pico(tokens, out), primary_price.pico(tokens, size.output_cap(primary.output_cap))
        if worst > theirs or (mode == "cheaper_only" and worst == theirs):
            what = "more than" if worst > theirs else "as much as"
            return (
                f"worst case ${from_pico(worst)} costs {what} the primary's ${from_pico(theirs)} "
                f"(Policy(fallback_cost={mode!r}))"
            )
        return None

    def reserve(self, cand: Candidate) -> tuple[Any, Price | None]:
        """Reserve the attempt's worst case on the budget: the lease (None with no budget to hold it: none,
        or another AutoPicker charging this same budget itself) and the price it was reckoned with, which
        settles the attempt too. Raises BudgetExceededError.

        First with the prompt's upper bound (no tokenizer); only when the budget refuses that is the
        prompt counted, and the reservation tried again with the count (and a margin, for a stand-in
        tokenizer): a budget near its limit is where the exact number decides.
        """
        price = cand.facts.price
        budget = self.budget
        if budget is None:
            return None, price
        inner = cand.inner
        if inner is not None and inner.budget is budget:  # the inner AutoPicker reserves for itself
            return None, price
        if price is None:
            return self._hold(cand, None), price
        size = self.size
        out = size.output_cap(cand.output_cap)
        bound = price.pico(size.bound(cand), out)
        try:
            return self._hold(cand, bound), price
        except BudgetExceededError:
            counted = price.pico(size.tokens(cand), out)
            if not size.exact(cand):  # a stand-in tokenizer or image rule may count low: hold a margin
                counted = -(-counted * ESTIMATE_MARGIN[0] // ESTIMATE_MARGIN[1])
            if counted >= bound:
                raise
            return self._hold(cand, counted), price

    def _hold(self, cand: Candidate, pico: int | None) -> Any:
        budget = self.budget
        fast = getattr(budget, "reserve_pico", None)
        if fast is not None:
            return fast(cand.name, pico)
        return budget.reserve(cand.name, None if pico is None else from_pico(pico))

    # -- after an attempt ----------------------------------------------------------------------------
    def estimate(self, content: Any) -> Usage:
        """Usage estimated offline, for a provider that reported none (labelled ``estimated``)."""
        text = content if isinstance(content, str) else content_text(content)
        return Usage(self.size.estimate(), estimate_tokens(text), estimated=True)

    def settle(
        self,
        attempt: Attempt,
        outcome: Outcome,
        usage: Usage | None,
        end: float,
        ttft: float | None = None,
        failure: Failure | None = None,
        streamed: bool = False,
        nested: Nested | None = None,
        keep_lease: bool = False,
    ) -> CallRecord:
        """Price ``usage``, commit it to the budget (release the reservation when there is none), and
        publish the attempt's record. ``nested``: another AutoPicker answered; its exact cost stands here,
        and its record goes to this picker's own sinks only (the global ones heard the inner call's).
        ``keep_lease``: the attempt goes on in the background (a timed-out watched call); its reservation
        stays held for :meth:`settle_late`."""
        cost, source = self._charge(attempt, usage, nested, keep_lease)
        cand = attempt.candidate
        provider, model = (cand.provider, cand.name) if nested is None else (nested.provider, nested.model)
        origin, reason = self.fallback_origin(attempt.role)
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
        self.emit(record, everyone=nested is None)
        return record

    def _charge(
        self, attempt: Attempt, usage: Usage | None, nested: Nested | None, keep_lease: bool = False
    ) -> tuple[Decimal | None, str]:
        """Price ``usage`` and commit it to the budget; with no usage, release the reservation."""
        lease, budget = attempt.lease, self.budget
        if usage is None:
            if lease is not None and budget is not None and not keep_lease:
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

    def settle_late(
        self, attempt: Attempt, usage: Usage | None, end: float, listeners: tuple[Callable[[CallRecord], Any], ...]
    ) -> CallRecord | None:
        """A timed-out attempt that went on in the background has ended: with ``usage`` (it answered, and
        the provider bills that) its cost is committed on the reservation held since and published as an
        ``abandoned`` record (to the picker's sinks, and the global ones that listened to the call: the
        ``listeners`` when it was made); without (its client gave up), the reservation is released."""
        if usage is None:
            self._charge(attempt, None, None)
            return None
        cost, source = self._charge(attempt, usage, None)
        cand = attempt.candidate
        record = CallRecord(
            call_id=self.call_id,
            attempt=attempt.index,
            role=attempt.role,
            provider=cand.provider,
            model=cand.name,
            outcome=Outcome.CANCELLED,
            started_at=attempt.started_at,
            latency_s=end - attempt.started,
            error_class="timeout",
            error_message="answered after coffee_nb stopped waiting; charged when it ended",
            input_tokens=usage.input,
            output_tokens=usage.output,
            cached_tokens=usage.cached,
            reasoning_tokens=usage.reasoning,
            tokens_estimated=usage.estimated,
            cost=cost,
            price_source=source,
            abandoned=True,
        )
        # not appended to the call's records: the call is over, and its errors and answer hold that list
        if self.sinks:
            publish(self.sinks, record)
        if listeners:
            publish(listeners, record)
        return record

    def summary(
        self, cand: Candidate, usage: Usage, latency_s: float, ttft_s: float | None, response_metadata: Any
    ) -> dict[str, Any]:
        """The answer's ``response_metadata["coffee_nb"]``: plain data of every attempt of the call."""
        data = summary_data(
            self.records,
            latency_s=latency_s,
            ttft_s=ttft_s,
            primary_cost=self.primary_cost(cand, usage),
            finish_reason=finish_reason(response_metadata),
        )
        images = self.size.images()
        if images:  # how many, and what they count for on the model that answered (by its provider's rule)
            tokens, exact = self.size.image_tokens(cand)
            data["tokens"].update(images=images, image_tokens=tokens, image_tokens_exact=exact)
        return data

    def primary_cost(self, cand: Candidate, usage: Usage) -> Decimal | None:
        """What the primary would have cost for ``usage``, when a fallback answered (None otherwise)."""
        primary = self.primary
        if cand is primary:
            return None
        price = primary.facts.price
        if price is None:
            return None
        return from_pico(price.pico(usage.input, usage.output, usage.cached, usage.cache_write))

    def replay(self, model: str, provider: str, usage: Usage, latency_s: float) -> CallRecord:
        """The record of an answer replayed from a cassette: no model called, nothing reserved or spent."""
        record = CallRecord(
            call_id=self.call_id,
            attempt=0,
            role=Role.PRIMARY,
            provider=provider,
            model=model,
            outcome=Outcome.OK,
            started_at=datetime.now(UTC),
            latency_s=latency_s,
            input_tokens=usage.input,
            output_tokens=usage.output,
            cached_tokens=usage.cached,
            cost=Decimal(0),
            price_source="cassette",
            replayed=True,
        )
        self.emit(record)
        return record

    def skipped(self, cand: Candidate, role: Role, error_class: str, message: str) -> None:
        """Record a candidate the call did not try, and why."""
        origin, reason = self.fallback_origin(role)
        self.emit(
            CallRecord(
                call_id=self.call_id,
                attempt=len(self.records),
                role=role,
                provider=cand.provider,
                model=cand.name,
                outcome=Outcome.SKIPPED,
                started_at=datetime.now(UTC),
                latency_s=0.0,
                error_class=error_class,
                error_message=message,
                fallback_from=origin,
                fallback_reason=reason,
            )
        )

    def emit(self, record: CallRecord, *, everyone: bool = True) -> None:
        self.records.append(record)
        sinks = self.sinks
        if sinks:
            publish(sinks, record)
        if everyone and (listeners := global_sinks()):
            publish(listeners, record)

    def fallback_origin(self, role: Role) -> tuple[str | None, str | None]:
        """For a fallback attempt: the first model this call tried, and why the call moved on."""
        records = self.records
        if role is not Role.FALLBACK or not records:
            return None, None
        reason = next((r.error_class for r in records if r.error_class), None)
        return records[0].model, reason


_NO_USAGE = Usage(0, 0)
