"""``CallRecord``: one frozen record per attempt, and the one-method protocol that receives them.

Everything that watches calls (metrics, ledgers, widgets, user callbacks) is a :class:`RecordSink`:
an object with ``emit(record)``, or a plain callable taking the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from coffee_nb._shared import _config
from coffee_nb._shared._exceptions import ConfigError

__all__ = ["CallRecord", "Outcome", "RecordSink", "Role", "Usage", "capture_records", "summary_data"]

log = logging.getLogger("coffee_nb")


class Role(StrEnum):
    """Why this attempt happened."""

    PRIMARY = "primary"  # first try of the first candidate tried
    RETRY = "retry"  # same model again after a transient failure
    FALLBACK = "fallback"  # first try of a later candidate
    HEDGE = "hedge"  # a later candidate started alongside a slow one (Policy(hedge_after=...)): first answer wins


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"  # not called: cooling down, context too small, budget, rate limit wait too long
    CANCELLED = "cancelled"


class Usage(NamedTuple):
    """Tokens one attempt used. ``input`` includes cached and cache-write tokens (OpenAI/LangChain style)."""

    input: int
    output: int
    cached: int = 0
    reasoning: int = 0
    cache_write: int = 0
    estimated: bool = False  # counted offline, not reported by the provider


class CallRecord(NamedTuple):
    """What happened in one attempt of one call. Money is ``Decimal``; ``cost`` is None when unpriced.

    Immutable. A named tuple rather than a dataclass: one is built per attempt on the hot path, and a
    frozen dataclass with this many fields costs several times more to construct.
    """

    call_id: str
    attempt: int  # 0-based index within the call
    role: Role
    provider: str
    model: str  # "provider/model" as configured
    outcome: Outcome
    started_at: datetime  # UTC
    latency_s: float
    error_class: str | None = None
    error_message: str | None = None  # redacted: never holds a key
    ttft_s: float | None = None  # time to first token, streams only
    input_tokens: int = 0  # includes cached input tokens
    output_tokens: int = 0  # includes reasoning tokens
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_estimated: bool = False  # True: counted offline, not reported by the provider
    cost: Decimal | None = None  # None: unpriced (never silently $0)
    price_source: str = "unpriced"  # "genai-prices", "custom", "sandbox", "unpriced"
    cache_hit: bool = False
    streamed: bool = False
    fallback_from: str | None = None  # role "fallback": the first model this call tried
    fallback_reason: str | None = None  # role "fallback": the error class that moved the call on
    replayed: bool = False  # answered from a cassette: no model was called, nothing spent
    # a watched call coffee_nb walked away from (it timed out; the chain moved on) that finished later: what
    # it cost, charged when it ended (outcome "cancelled": its answer was used by nobody)
    abandoned: bool = False

    @property
    def priced(self) -> bool:
        return self.cost is not None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


@runtime_checkable
class RecordSink(Protocol):
    """Anything that wants to see every attempt. ``emit`` must be cheap and must not raise."""

    def emit(self, record: CallRecord) -> None: ...


SinkLike = RecordSink | Callable[[CallRecord], Any]


def as_sinks(value: SinkLike | Iterable[SinkLike] | None) -> tuple[Callable[[CallRecord], Any], ...]:
    """Normalize sinks to a tuple of callables (``emit`` methods or plain functions); anything else is a
    ``ConfigError`` naming it."""
    if value is None:
        return ()
    hint = "give an object with emit(record) (e.g. coffee_nb.LocalMetrics()), a function, or a list of them"
    if isinstance(value, RecordSink) or callable(value):
        items: list[Any] = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        items = list(value)
    else:
        raise ConfigError(f"not a record sink: {value!r} ({hint})")
    out: list[Callable[[CallRecord], Any]] = []
    for item in items:
        if isinstance(item, RecordSink):
            out.append(item.emit)
        elif callable(item):
            out.append(item)
        else:
            raise ConfigError(f"not a record sink: {item!r} ({hint})")
    return tuple(out)


def call_observers(value: Any) -> tuple[Any, ...]:
    """The sinks among ``value`` that also follow whole calls: ``call_started(call)`` returns a handle,
    ``call_ended(handle, call, error)`` is told when the call is over (answered, failed or abandoned)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(i for i in items if callable(getattr(i, "call_started", None)))


def publish(sinks: Iterable[Callable[[CallRecord], Any]], record: CallRecord) -> None:
    """Send ``record`` to every sink; a failing sink is logged, never allowed to break the call."""
    for emit in sinks:
        try:
            emit(record)
        except Exception:
            log.exception("coffee_nb: record sink %r failed", emit)


_SINKS = _config.SINKS  # the global sinks live in _config (reset with everything else)


def global_sinks() -> tuple[Callable[[CallRecord], Any], ...]:
    """Sinks every AutoPicker publishes to, besides its own (a tuple: read without a lock)."""
    return _SINKS.sinks


@contextmanager
def capture_records() -> Iterator[list[CallRecord]]:
    """Collect every CallRecord emitted by any AutoPicker while the block runs (handy in tests)."""
    seen: list[CallRecord] = []
    sink = seen.append
    _SINKS.add(sink)
    try:
        yield seen
    finally:
        _SINKS.remove(sink)


# -- a call's records as plain data: AIMessage.response_metadata["coffee_nb"] (typed view: invoke/_summary) --
# an enum member's plain str (``member.value`` goes through a descriptor: a dict is ~10× cheaper, per answer)
_PLAIN_NAME: dict[Any, str] = {m: m.value for m in (*Role, *Outcome)}


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def summary_data(
    records: Sequence[CallRecord],
    *,
    latency_s: float,
    ttft_s: float | None = None,
    cache_hit: bool = False,
    replayed: bool = False,
    primary_cost: Decimal | None = None,
    recorded_cost: Decimal | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """The plain ``response_metadata["coffee_nb"]`` of a call whose last record answered."""
    if not records:
        raise ValueError("a call summary needs the call's records")
    final = records[-1]
    cost = final.cost
    usd = None if cost is None else float(cost)
    total = usd
    name = _PLAIN_NAME
    attempts = [
        {
            "model": r.model,
            "role": name[r.role],
            "outcome": name[r.outcome],
            "error_class": r.error_class,
            "latency_s": r.latency_s,
            "cost": usd if r is final else _usd(r.cost),
        }
        for r in records
    ]
    fallback_reason = None
    if len(records) > 1:
        spent = sum((r.cost for r in records if r.cost is not None), Decimal(0))
        total = None if cost is None else float(spent)
        if final.role is Role.FALLBACK:
            fallback_reason = next((r.error_class for r in records if r.error_class), None)
    data: dict[str, Any] = {
        "call_id": final.call_id,
        "model": final.model,
        "provider": final.provider,
        "role": name[final.role],
        "fallback_reason": fallback_reason,
        "attempts": attempts,
        "tokens": {
            "input": final.input_tokens,
            "output": final.output_tokens,
            "cached": final.cached_tokens,
            "reasoning": final.reasoning_tokens,
            "estimated": final.tokens_estimated,
        },
        "cost": usd,
        "total_cost": total,
        "priced": cost is not None,
        "price_source": final.price_source,
        "latency_s": latency_s,
        "ttft_s": ttft_s,
        "cache_hit": cache_hit,
        "primary_model": records[0].model,
        "primary_cost": _usd(primary_cost),
        "saved": None if cost is None or primary_cost is None else float(primary_cost - cost),
    }
    if replayed:
        data["replayed"] = True
        data["recorded_cost"] = _usd(recorded_cost)
    if finish_reason is not None:
        data["finish_reason"] = finish_reason
    return data
