"""The worst case of a comparison, worked out before any call, and the hard limit that refuses it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb.comparison._judge import JUDGE_MAX_TOKENS, judge_messages
from coffee_nb.errors._errors import BudgetExceededError
from coffee_nb.pricing._pricing import from_pico
from coffee_nb.pricing._tokens import count_prompt, images_tokens, text_bound

if TYPE_CHECKING:
    from coffee_nb.comparison._comparison import Call

__all__ = ["Projection", "project", "worst_case"]

MARGIN = (5, 4)  # token counts by a stand-in tokenizer (or of text another model wrote) may run a quarter low


@dataclass(frozen=True, slots=True)
class Projection:
    """The worst case of a comparison, worked out before any call: what it may cost at most."""

    calls: int  # answers asked for (runs × rows × models)
    cached: int  # of which the response cache has already
    judge_calls: int  # requests to the judge at most (pairs × rows × orders)
    per_model: Mapping[str, Decimal | None]  # worst case of each model's calls; None: unpriced
    judge_model: str | None
    judge_worst: Decimal | None
    budget_left: Mapping[str, Decimal]  # per hard limit: what it has left (spent and reservations taken off)

    @classmethod
    def make(
        cls,
        *,
        calls: int,
        cached: int,
        judge_calls: int,
        per_model: Mapping[str, int | None],
        judge_model: str | None,
        judge_worst: int | None,
        budget_left: Mapping[str, Decimal],
    ) -> Projection:
        return cls(
            calls=calls,
            cached=cached,
            judge_calls=judge_calls,
            per_model={m: None if p is None else from_pico(p) for m, p in per_model.items()},
            judge_model=judge_model,
            judge_worst=None if judge_worst is None else from_pico(judge_worst),
            budget_left=dict(budget_left),
        )

    @property
    def unpriced(self) -> list[str]:
        out = [m for m, w in self.per_model.items() if w is None]
        return out + ([self.judge_model] if self.judge_model and self.judge_worst is None else [])

    @property
    def priced_worst(self) -> Decimal:
        """The worst case of every priced call (unpriced ones can't be bounded)."""
        parts = [*self.per_model.values(), self.judge_worst]
        return sum((p for p in parts if p is not None), Decimal(0))

    @property
    def worst(self) -> Decimal | None:
        """The worst case of every call, or None when a model is unpriced."""
        return None if self.unpriced else self.priced_worst

    def model_worst(self, model: str) -> Decimal | None:
        mine = self.per_model.get(model) or Decimal(0)
        return mine + (self.judge_worst or Decimal(0) if model == self.judge_model else Decimal(0))

    def line(self) -> str:
        calls = f"{self.calls} call{'s' if self.calls != 1 else ''}"
        if self.cached:
            calls += f" ({self.cached} from the cache)"
        if self.judge_calls:
            calls += f" + up to {self.judge_calls} judge call{'s' if self.judge_calls != 1 else ''}"
        worst = f"may cost up to {money(self.priced_worst)}"
        if self.unpriced:
            worst += f" plus unpriced calls ({', '.join(self.unpriced)})"
        left = "".join(f" · {p} budget left {money(v)}" for p, v in list(self.budget_left.items())[:1])
        return f"{calls} {worst}{left}"


def worst_case(
    calls: Sequence[Call],
    candidates: Mapping[str, Any],
    *,
    max_tokens: int | None,
    judge: tuple[str, Any] | None,
    judge_prompts: Sequence[str],
    judge_mode: str,
    judge_orders: int = 1,
    budgets: Sequence[Any],
    exact: bool,
) -> Projection:
    """The most the calls not answered by the cache may cost (each at its output cap), and the judge's
    verdicts on every pair of ``candidates`` (column name → Candidate) for each of ``judge_prompts``, each
    asked ``judge_orders`` times (2: both ways round)."""
    to_call = [c for c in calls if c.hit is None]
    caps = {name: _cap(cand, max_tokens) for name, cand in candidates.items()}
    per_model: dict[str, int | None] = {}
    for name, cand in candidates.items():
        price = cand.facts.price
        mine = [_prompt_tokens(c.messages, cand, exact) for c in to_call if c.model == name]
        per_model[name] = None if price is None else sum(price.pico(tokens, caps[name]) for tokens in mine)
    asks = len(candidates) * (len(candidates) - 1) // 2 * judge_orders if judge is not None else 0  # per prompt
    judge_worst: int | None = 0
    if judge is not None:
        price = judge[1].facts.price
        answers = -(-sum(sorted(caps.values())[-2:]) * MARGIN[0] // MARGIN[1])  # the two longest answers there are
        judge_worst = None if price is None else 0
        for prompt in judge_prompts if price is not None else ():
            frame = _prompt_tokens(judge_messages(prompt, "", "", judge_mode), judge[1], exact)
            judge_worst = (judge_worst or 0) + price.pico(frame + answers, JUDGE_MAX_TOKENS) * asks
    left: dict[str, Decimal] = {}
    for budget in budgets:
        for period, s in _status(budget).items():
            if s["hard"]:
                left[period] = min(left.get(period, s["remaining"]), _available(s))
    return Projection.make(
        calls=len(calls),
        cached=len(calls) - len(to_call),
        judge_calls=len(judge_prompts) * asks,
        per_model=per_model,
        judge_model=judge[0] if judge is not None else None,
        judge_worst=judge_worst,
        budget_left=left,
    )


def project(make: Callable[[bool], Projection], budgets: Sequence[Any]) -> Projection:
    """``make(exact)``'s projection, checked against every hard limit of ``budgets``.

    Prompt sizes are first bounded without a tokenizer (bytes); only when that bound doesn't fit is each
    prompt counted, as the invoker does when it reserves. Still too much: :class:`BudgetExceededError`.
    """
    projection = make(False)
    if refusal(projection, budgets) is None:
        return projection
    projection = make(True)
    why = refusal(projection, budgets)
    if why is not None:
        raise BudgetExceededError(why)
    return projection


def refusal(projection: Projection, budgets: Sequence[Any]) -> str | None:
    """Why a hard limit can't cover the projection's worst case, or None when every one can."""
    for budget in budgets:
        for period, s in _status(budget).items():
            if not s["hard"]:
                continue
            model, _, _ = period.rpartition(":")  # "daily", or "<model>:daily" for a per-model limit
            need = projection.model_worst(model) if model else projection.priced_worst
            if need is None or need <= _available(s):
                continue
            resets = s.get("resets_at")
            when = f"; it resets {resets:%Y-%m-%d %H:%M %Z}" if resets is not None else ""
            return (
                f"compare refused before any call: {projection.line()}, but the {period} budget has "
                f"{money(_available(s))} left (limit {money(s['budget'])}, spent {money(s['spent'])}, "
                f"reserved {money(s['reserved'])}){when}. Compare fewer models or rows, lower runs, cap the "
                "answers with max_tokens, or raise the limit."
            )
    return None


def _cap(cand: Any, max_tokens: int | None) -> int:
    from coffee_nb.invoke._invoker import DEFAULT_OUTPUT_ESTIMATE  # lazy: langchain_core

    return int(max_tokens or cand.output_cap or DEFAULT_OUTPUT_ESTIMATE)


def _prompt_tokens(messages: Sequence[Any], cand: Any, exact: bool) -> int:
    """A byte bound (no tokenizer), or a count with the model's encoding (as the invoker counts)."""
    images, images_exact = images_tokens(messages, cand.provider, cand.catalog_model)
    if not exact:
        return text_bound(messages) + images
    tokens = count_prompt(messages, cand.encoding) + images
    return tokens if cand.exact_tokens and images_exact else -(-tokens * MARGIN[0] // MARGIN[1])


def _status(budget: Any) -> dict[str, dict[str, Any]]:
    status = getattr(budget, "status", None)
    return status() if callable(status) else {}


def _available(s: Mapping[str, Any]) -> Decimal:
    return max(Decimal(s["budget"]) - Decimal(s["spent"]) - Decimal(s["reserved"]), Decimal(0))
