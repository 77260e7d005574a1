"""What a ``%%llm`` cell or ``coffee_nb.ask`` gets back (:class:`Answer`), the ``--chat`` memory, and the
error that hands back an answer that arrived but could not be read as asked (it was paid for)."""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._finish import finish_reason
from coffee_nb._shared._format import content_text, money
from coffee_nb._shared._markdown import NO_MATH, literal_dollars, markdown_safe
from coffee_nb.errors._errors import CoffeeError

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage

__all__ = ["Answer", "AnswerError", "Conversation"]


@dataclass
class Answer:
    """What one ``%%llm`` cell (or ``coffee_nb.ask``) got back: the text, the full message, the trace."""

    message: AIMessage
    model: str
    provider: str
    attempts: list[dict[str, Any]]
    cost: Decimal | None
    price_source: str
    tokens: dict[str, Any]
    latency_s: float
    cache_hit: bool = False
    fallback_reason: str | None = None
    format: str = "markdown"
    parsed: Any = None
    budget_left: dict[str, Decimal] = field(default_factory=dict)
    notice: str | None = None
    role: str = "primary"  # who answered: primary, retry, fallback or hedge
    primary_model: str | None = None  # the model the call tried first
    saved: Decimal | None = None  # a fallback answered: the primary's would-be cost minus this one's
    replayed: bool = False  # answered from a cassette ($0)
    recorded_cost: Decimal | None = None  # a replay: what it cost when it was recorded

    @property
    def text(self) -> str:
        return content_text(self.message.content)

    def __str__(self) -> str:
        return self.text

    @property
    def finish_reason(self) -> str | None:
        """Why the answer ended, one word for every provider: ``stop``, ``length`` (the output limit), ..."""
        meta = self.message.response_metadata
        summary = meta.get("coffee_nb")
        said = summary.get("finish_reason") if isinstance(summary, Mapping) else None
        return said or finish_reason(meta)

    @property
    def truncated(self) -> bool:
        """The answer stopped at the output limit (``-m`` / ``max_tokens``), likely mid-sentence."""
        return self.finish_reason == "length"

    def __repr__(self) -> str:
        tokens = f"{self.tokens.get('input')}→{self.tokens.get('output')}"
        return f"Answer(model={self.model!r}, cost={self.cost_text()}, tokens={tokens})"

    def cost_text(self) -> str:
        if self.cache_hit:
            return "$0 (cache hit)"
        if self.replayed:
            recorded = f"; recorded cost {money(self.recorded_cost)}" if self.recorded_cost is not None else ""
            return f"$0 (replayed from the cassette{recorded})"
        if self.cost is None:
            return "unpriced"
        label = " (sandbox prices)" if self.price_source == "sandbox" else ""
        return f"{money(self.cost)}{label}"

    def footer(self) -> str:
        """One line: model, fallbacks taken, tokens, cost, latency, budget remaining."""
        parts = [self.model]
        tried = [a["model"] for a in self.attempts if a["outcome"] != "ok"]
        if self.role == "hedge":
            parts.append(f"hedged: answered before {self.primary_model or tried[0]}")
        elif self.fallback_reason:
            parts.append(f"fallback from {tried[0]} ({self.fallback_reason})")
        else:
            lost = [a["model"] for a in self.attempts if a["role"] == "hedge" and a["outcome"] != "ok"]
            tries = sum(1 for a in self.attempts if a["role"] != "hedge")
            if tries > 1:
                parts.append(f"{tries - 1} retr{'y' if tries == 2 else 'ies'}")
            if lost:  # the model asked for answered first; the hedge started beside it was cancelled
                parts.append(f"hedged: answered before {lost[0]}")
        est = "~" if self.tokens.get("estimated") else ""
        parts.append(f"{est}{self.tokens.get('input', 0)}→{self.tokens.get('output', 0)} tokens")
        images = self.tokens.get("images")
        if images:
            about = "" if self.tokens.get("image_tokens_exact") else "~"
            counted = f"{about}{self.tokens.get('image_tokens', 0)} tokens"
            parts.append(f"{images} image{'s' * (images != 1)} ({counted} of the input)")
        if self.truncated:
            parts.append(f"stopped at the {self.tokens.get('output', 0)}-token limit")
        parts.append(self.cost_text())
        if self.saved is not None and self.primary_model:  # a fallback answered: against the primary's price
            if self.saved >= 0:
                parts.append(f"saved {money(self.saved)} vs {self.primary_model}")
            else:
                parts.append(f"{money(-self.saved)} more than {self.primary_model}")
        parts.append(f"{self.latency_s:.2f} s")
        for period, left in self.budget_left.items():
            parts.append(f"{period} budget left {money(left)}")
            break
        return " · ".join(parts)

    def _repr_markdown_(self) -> str:
        # "$" starts LaTeX math in Jupyter: amounts are shown literally, real math still renders
        footer = literal_dollars(html.escape(self.footer()))
        return f"{markdown_safe(self.text)}\n\n<sub class='{NO_MATH}'>{footer}</sub>"


class Conversation:
    """Chat memory for ``--chat``: one exchange per cell; re-running a cell replaces its exchange."""

    def __init__(self) -> None:
        self.exchanges: OrderedDict[str, tuple[BaseMessage, BaseMessage]] = OrderedDict()

    def history(self, key: str) -> list[BaseMessage]:
        """The exchanges before ``key``'s (all of them when ``key`` is new)."""
        out: list[BaseMessage] = []
        for k, (human, ai) in self.exchanges.items():
            if k == key:
                break
            out += [human, ai]
        return out

    def record(self, key: str, human: BaseMessage, ai: BaseMessage) -> None:
        self.exchanges[key] = (human, ai)  # same key: replaced in place, order kept

    def clear(self) -> None:
        self.exchanges.clear()

    def __len__(self) -> int:
        return len(self.exchanges)


class AnswerError(CoffeeError, ValueError):
    """The answer came (and was paid for) but is not what was asked for, e.g. ``format="json"`` and the
    text is not JSON. ``answer`` holds it all the same."""

    def __init__(self, message: str, answer: Answer) -> None:
        super().__init__(message)
        self.answer = answer
