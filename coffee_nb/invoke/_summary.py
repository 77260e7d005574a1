"""What one AutoPicker call did, as ``AIMessage.response_metadata["coffee_nb"]``: plain data.

The message carries a plain ``dict`` of built-in values (str, int, float, bool, None, lists and dicts), so
it survives everything that persists messages: ``model_dump_json``, LangChain's ``dumpd``/``loads``,
LangGraph checkpointers (msgpack), chat-history stores. Money is a ``float`` of USD there (exact for every
amount of up to 15 significant digits, i.e. to the picodollar below $1,000: ``Decimal(repr(x))`` gives
the exact value back); the ledger, metrics and records keep the exact ``Decimal``.

:class:`CallSummary` is the typed view of that dict, with ``Decimal`` money:

>>> summary = CallSummary.of(msg)            # also works on a message loaded from a checkpoint
>>> summary.model, summary.cost, summary.attempts[0].outcome
>>> msg.response_metadata["coffee_nb"]["cost"]   # the plain value: a float, or None when unpriced
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from coffee_nb._shared._records import summary_data

__all__ = ["AttemptSummary", "CallSummary", "TokenSummary", "summary_data", "take_structured"]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    """The exact Decimal of a plain money value (a float written by :func:`summary_data`, or a string)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return Decimal(int(value))  # $0, not $0.0
        return Decimal(repr(value))  # the shortest repr is the decimal the float was made from
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


class _View(Mapping[str, Any]):
    """A read-only mapping over a plain dict, with typed attributes defined by subclasses."""

    __slots__ = ("_d",)
    _d: Mapping[str, Any]

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_d", data)

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._d) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, so unhashable like them

    def as_dict(self) -> dict[str, Any]:
        """The plain data (a deep copy: dicts, lists and built-in values)."""
        return {k: _copy(v) for k, v in self._d.items()}

    def __reduce__(self) -> Any:
        return (type(self), (self.as_dict(),))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


class TokenSummary(_View):
    """Tokens of the answering attempt; ``estimated`` when counted offline, not reported by the provider."""

    __slots__ = ()

    @property
    def input(self) -> int:
        return int(self._d.get("input") or 0)

    @property
    def output(self) -> int:
        return int(self._d.get("output") or 0)

    @property
    def cached(self) -> int:
        return int(self._d.get("cached") or 0)

    @property
    def reasoning(self) -> int:
        return int(self._d.get("reasoning") or 0)

    @property
    def estimated(self) -> bool:
        return bool(self._d.get("estimated"))

    @property
    def images(self) -> int:
        """Images in the prompt (their tokens are part of ``input``)."""
        return int(self._d.get("images") or 0)

    @property
    def image_tokens(self) -> int:
        """What the images count for on the answering model, by its provider's rule (``image_tokens_exact``
        says whether that rule is the provider's exact one or an estimate)."""
        return int(self._d.get("image_tokens") or 0)


class AttemptSummary(_View):
    """One attempt of the call, in order (skipped candidates included)."""

    __slots__ = ()

    @property
    def model(self) -> str:
        return str(self._d.get("model"))

    @property
    def role(self) -> str:
        return str(self._d.get("role"))

    @property
    def outcome(self) -> str:
        return str(self._d.get("outcome"))

    @property
    def error_class(self) -> str | None:
        return _text(self._d.get("error_class"))

    @property
    def latency_s(self) -> float:
        return float(self._d.get("latency_s") or 0.0)

    @property
    def cost(self) -> Decimal | None:
        """What this attempt was charged (a broken stream's partial answer is billed too), or None."""
        return _decimal(self._d.get("cost"))


class CallSummary(_View):
    """The call: who answered, after which attempts, for how many tokens, at what cost and latency.

    A typed view of the plain ``response_metadata["coffee_nb"]`` dict: ``CallSummary.of(message)``.
    ``cost`` is ``Decimal`` USD, or None when the answering model is unpriced (``priced`` is False);
    ``total_cost`` adds what earlier attempts were charged (a stream that broke mid-answer is billed).
    ``finish_reason`` says why the answer ended, one word for every provider (``stop``, ``length``,
    ``tool_calls``, ...); ``truncated`` is True when it hit the output limit.
    """

    __slots__ = ()

    @classmethod
    def of(cls, source: Any) -> CallSummary:
        """The summary of a message (or of its ``response_metadata["coffee_nb"]`` dict).

        Raises ``ValueError`` when the message did not come from AutoPicker.
        """
        if isinstance(source, CallSummary):
            return source
        data = source if isinstance(source, Mapping) else None
        if data is None:
            meta = getattr(source, "response_metadata", None)
            data = meta.get("coffee_nb") if isinstance(meta, Mapping) else None
        elif "call_id" not in data and isinstance(data.get("coffee_nb"), Mapping):  # a response_metadata dict
            data = data["coffee_nb"]
        if not isinstance(data, Mapping) or "call_id" not in data:
            raise ValueError("no coffee_nb summary here: it is on messages AutoPicker answered")
        return cls(data)

    @property
    def call_id(self) -> str:
        return str(self._d["call_id"])

    @property
    def model(self) -> str:
        return str(self._d.get("model"))

    @property
    def provider(self) -> str:
        return str(self._d.get("provider"))

    @property
    def role(self) -> str:
        return str(self._d.get("role"))

    @property
    def fallback_reason(self) -> str | None:
        """Why the call left its first model, when a fallback answered."""
        return _text(self._d.get("fallback_reason"))

    @property
    def attempts(self) -> tuple[AttemptSummary, ...]:
        return tuple(AttemptSummary(a) for a in self._d.get("attempts") or ())

    @property
    def tokens(self) -> TokenSummary:
        return TokenSummary(self._d.get("tokens") or {})

    @property
    def cost(self) -> Decimal | None:
        return _decimal(self._d.get("cost"))

    @property
    def total_cost(self) -> Decimal | None:
        """Every attempt's charge added up (None when the answer is unpriced)."""
        return _decimal(self._d.get("total_cost"))

    @property
    def priced(self) -> bool:
        return bool(self._d.get("priced"))

    @property
    def price_source(self) -> str:
        return str(self._d.get("price_source"))

    @property
    def latency_s(self) -> float:
        """Seconds from the call's start to its answer (every attempt and wait included)."""
        return float(self._d.get("latency_s") or 0.0)

    @property
    def ttft_s(self) -> float | None:
        """Seconds to the first token of a stream (None for an invoke)."""
        value = self._d.get("ttft_s")
        return None if value is None else float(value)

    @property
    def cache_hit(self) -> bool:
        return bool(self._d.get("cache_hit"))

    @property
    def replayed(self) -> bool:
        """Answered from a cassette, not by the model."""
        return bool(self._d.get("replayed"))

    @property
    def recorded_cost(self) -> Decimal | None:
        """A replayed answer: what it cost when it was recorded."""
        return _decimal(self._d.get("recorded_cost"))

    @property
    def restarted(self) -> bool:
        """A stream that broke mid-answer and started over on another model (see ``coffee_nb.collect``)."""
        return bool(self._d.get("restarted"))

    @property
    def primary_model(self) -> str:
        """The model the call tried first."""
        return str(self._d.get("primary_model"))

    @property
    def primary_cost(self) -> Decimal | None:
        """What the first model would have cost for this answer (a fallback answered), else None."""
        return _decimal(self._d.get("primary_cost"))

    @property
    def saved(self) -> Decimal | None:
        """How much less this answer cost than the primary would have (negative: more), when a fallback answered."""
        cost, primary = self.cost, self.primary_cost
        return None if cost is None or primary is None else primary - cost

    @property
    def finish_reason(self) -> str | None:
        """Why the answer ended (None: the provider didn't say)."""
        return _text(self._d.get("finish_reason"))

    @property
    def truncated(self) -> bool:
        """The answer stopped at the output limit (``max_tokens``), not where the model meant to end."""
        return self.finish_reason == "length"

    def __repr__(self) -> str:
        return (
            f"CallSummary(model={self.model!r}, cost={self.cost!r}, attempts={len(self._d.get('attempts') or ())}, "
            f"latency_s={self.latency_s:.3f})"
        )


# -- structured output: parsed objects are not plain data, so they travel beside the message -------------
_STRUCTURED: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
_STRUCTURED_KEEP = 256  # answers whose parsed object no one picked up yet (a pick follows its call at once)
_structured_lock = threading.Lock()


def keep_structured(call_id: str, value: Mapping[str, Any]) -> None:
    """Hold a structured answer's ``{"parsed", "parsing_error"}`` until its pick step takes it."""
    with _structured_lock:
        _STRUCTURED[call_id] = value
        while len(_STRUCTURED) > _STRUCTURED_KEEP:
            _STRUCTURED.popitem(last=False)


def take_structured(call_id: str) -> Mapping[str, Any] | None:
    """The structured answer of ``call_id`` (once), or None."""
    with _structured_lock:
        return _STRUCTURED.pop(call_id, None)
