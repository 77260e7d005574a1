"""``CallSummary``: what one AutoPicker call did, as ``AIMessage.response_metadata["coffee_nb"]``.

Typed and frozen, and also a read-only mapping, so ``md["cost"]`` and ``md["tokens"]["input"]`` keep
working for code written against the plain dicts of earlier versions. Everything is derived from the
call's :class:`~coffee_nb._records.CallRecord` s on access: building one costs one small object per
call, whatever the number of attempts.

>>> summary = msg.response_metadata["coffee_nb"]
>>> summary.model, summary.cost, summary.attempts[0].outcome
>>> summary.as_dict()  # plain dicts and values, e.g. for JSON
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from coffee_nb._records import CallRecord, Role

__all__ = ["AttemptSummary", "CallSummary", "TokenSummary"]


class _Frozen(Mapping[str, Any]):
    """A read-only mapping over the attributes named in ``_keys`` (and immutable attributes)."""

    __slots__ = ()
    _keys: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self  # immutable: LangChain deep-copies metadata when merging chunks

    def __copy__(self) -> Any:
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):  # equal to its plain form, like the dicts it replaces
            return bool(self.as_dict() == _plain(other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, so unhashable like them

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._keys)
        return f"{type(self).__name__}({inner})"

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and values all the way down."""
        return {k: _plain(getattr(self, k)) for k in self._keys}


def _plain(value: Any) -> Any:
    if isinstance(value, _Frozen):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _init(obj: object, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


class TokenSummary(_Frozen):
    """Tokens of the answering attempt; ``estimated`` when counted offline, not reported by the provider."""

    __slots__ = ("input", "output", "cached", "reasoning", "estimated")
    _keys = __slots__
    input: int
    output: int
    cached: int
    reasoning: int
    estimated: bool

    def __init__(self, record: CallRecord) -> None:
        _init(
            self,
            input=record.input_tokens,
            output=record.output_tokens,
            cached=record.cached_tokens,
            reasoning=record.reasoning_tokens,
            estimated=record.tokens_estimated,
        )


class AttemptSummary(_Frozen):
    """One attempt of the call, in order (skipped candidates included)."""

    __slots__ = ("model", "role", "outcome", "error_class", "latency_s")
    _keys = __slots__
    model: str
    role: str
    outcome: str
    error_class: str | None
    latency_s: float

    def __init__(self, record: CallRecord) -> None:
        _init(
            self,
            model=record.model,
            role=record.role.value,
            outcome=record.outcome.value,
            error_class=record.error_class,
            latency_s=record.latency_s,
        )


class CallSummary(_Frozen):
    """The call: who answered, after which attempts, for how many tokens, at what cost and latency.

    ``cost`` is ``Decimal`` USD, or None when the answering model is unpriced (``priced`` is False).
    ``restart`` marks a stream chunk after which the answer starts over (see ``coffee_nb.collect``).
    ``finish_reason`` says why the answer ended, one word for every provider (``stop``, ``length``,
    ``tool_calls``, ...; see ``_finish.py``); ``truncated`` is True when it hit the output limit.
    """

    # One slot holding every stored value, in this order (one is built per answer, on the hot path: one
    # store instead of eleven); each is read through a property of its name below.
    __slots__ = ("_v",)
    _keys = (
        "call_id",
        "model",
        "provider",
        "role",
        "fallback_reason",
        "attempts",
        "tokens",
        "cost",
        "priced",
        "price_source",
        "latency_s",
        "ttft_s",
        "cache_hit",
        "primary_model",
        "primary_cost",
        "saved",
    )
    _v: tuple[
        tuple[CallRecord, ...],  # records
        float,  # latency_s
        float | None,  # ttft_s
        Mapping[str, Any] | None,  # structured
        bool,  # cache_hit
        bool,  # replayed
        bool,  # restart
        Decimal | None,  # primary_cost
        Decimal | None,  # recorded_cost
        str | None,  # finish_reason
    ]

    def __init__(
        self,
        records: tuple[CallRecord, ...],
        *,
        latency_s: float,
        ttft_s: float | None = None,
        structured: Mapping[str, Any] | None = None,
        cache_hit: bool = False,
        replayed: bool = False,
        restart: bool = False,
        primary_cost: Decimal | None = None,
        recorded_cost: Decimal | None = None,
        finish_reason: str | None = None,
    ) -> None:
        if not records:
            raise ValueError("a CallSummary needs the call's records")
        object.__setattr__(
            self,
            "_v",
            (
                records,
                latency_s,
                ttft_s,
                structured,
                cache_hit,
                replayed,
                restart,
                primary_cost,
                recorded_cost,
                finish_reason,
            ),
        )

    @property
    def records(self) -> tuple[CallRecord, ...]:
        """Every attempt's record, in order (skipped candidates included); the last one answered."""
        return self._v[0]

    @property
    def call_id(self) -> str:
        return self._v[0][-1].call_id

    @property
    def latency_s(self) -> float:
        """Seconds from the call's start to its answer (every attempt and wait included)."""
        return self._v[1]

    @property
    def ttft_s(self) -> float | None:
        """Seconds to the first token of a stream (None for an invoke)."""
        return self._v[2]

    @property
    def structured(self) -> Mapping[str, Any] | None:
        """``{"parsed": ..., "parsing_error": ...}`` for ``with_structured_output(include_raw=True)``."""
        return self._v[3]

    @property
    def cache_hit(self) -> bool:
        return self._v[4]

    @property
    def replayed(self) -> bool:
        """Answered from a cassette, not by the model."""
        return self._v[5]

    @property
    def restart(self) -> bool:
        return self._v[6]

    @property
    def primary_cost(self) -> Decimal | None:
        """What the first model would have cost for this answer (a fallback answered), else None."""
        return self._v[7]

    @property
    def recorded_cost(self) -> Decimal | None:
        """A replayed answer: what it cost when it was recorded."""
        return self._v[8]

    @property
    def finish_reason(self) -> str | None:
        """Why the answer ended (None: the provider didn't say)."""
        return self._v[9]

    @property
    def _keys_present(self) -> tuple[str, ...]:
        extra = ("structured",) if self.structured is not None else ()
        replay = ("replayed", "recorded_cost") if self.replayed else ()
        finish = ("finish_reason",) if self.finish_reason is not None else ()
        return (*self._keys, *extra, *(("restart",) if self.restart else ()), *replay, *finish)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys_present:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys_present)

    def __len__(self) -> int:
        return len(self._keys_present)

    def as_dict(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self._keys_present}

    def __repr__(self) -> str:
        return (
            f"CallSummary(model={self.model!r}, cost={self.cost!r}, attempts={len(self.records)}, "
            f"latency_s={self.latency_s:.3f})"
        )

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (
                self.records,
                self.latency_s,
                self.ttft_s,
                self.structured,
                self.cache_hit,
                self.replayed,
                self.restart,
                self.primary_cost,
                self.recorded_cost,
                self.finish_reason,
            ),
        )

    # -- derived from the answering (last) record ------------------------------------------------------
    @property
    def final(self) -> CallRecord:
        return self.records[-1]

    @property
    def model(self) -> str:
        return self.final.model

    @property
    def provider(self) -> str:
        return self.final.provider

    @property
    def role(self) -> str:
        return self.final.role.value

    @property
    def fallback_reason(self) -> str | None:
        """Why the call left its first model, when a fallback answered."""
        if self.final.role is not Role.FALLBACK:
            return None
        return next((r.error_class for r in self.records if r.error_class), None)

    @property
    def attempts(self) -> tuple[AttemptSummary, ...]:
        return tuple(AttemptSummary(r) for r in self.records)

    @property
    def tokens(self) -> TokenSummary:
        return TokenSummary(self.final)

    @property
    def cost(self) -> Decimal | None:
        return self.final.cost

    @property
    def priced(self) -> bool:
        return self.final.cost is not None

    @property
    def price_source(self) -> str:
        return self.final.price_source

    @property
    def truncated(self) -> bool:
        """The answer stopped at the output limit (``max_tokens``), not where the model meant to end."""
        return self.finish_reason == "length"

    @property
    def primary_model(self) -> str:
        """The model the call tried first."""
        return self.records[0].model

    @property
    def saved(self) -> Decimal | None:
        """How much less this answer cost than the primary would have (negative: more), when a fallback answered."""
        cost, primary = self.final.cost, self.primary_cost
        return None if cost is None or primary is None else primary - cost


def _rebuild(
    records: tuple[CallRecord, ...],
    latency_s: float,
    ttft_s: float | None,
    structured: Mapping[str, Any] | None,
    cache_hit: bool,
    replayed: bool,
    restart: bool,
    primary_cost: Decimal | None = None,
    recorded_cost: Decimal | None = None,
    finish_reason: str | None = None,
) -> CallSummary:
    return CallSummary(
        records,
        latency_s=latency_s,
        ttft_s=ttft_s,
        structured=structured,
        cache_hit=cache_hit,
        replayed=replayed,
        restart=restart,
        primary_cost=primary_cost,
        recorded_cost=recorded_cost,
        finish_reason=finish_reason,
    )
