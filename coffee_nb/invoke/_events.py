"""What a call is doing right now, for whoever shows it live (the ``%%llm`` cell's placeholder).

The plan tells :func:`tell` when it decides to wait and retry, gives up on a model, or starts a fallback;
a listener set with :func:`listening` (a context variable: this thread or task only) hears it. Nobody
listening costs one ``ContextVar.get`` on those (already slow) paths. A listener that fails is logged,
never allowed to break the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["CallEvent", "listening", "tell"]

log = logging.getLogger("coffee_nb")


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One step of a call in progress.

    ``kind``: ``retry`` (``model`` failed with ``reason``; trying it again in ``seconds``, retry ``n`` of
    ``of``), ``failed`` (``model`` failed with ``reason``; the call moves on), ``fallback`` (``model``
    is tried next), ``wait`` (``seconds`` before ``model``'s local rate limit has a slot).
    """

    kind: str
    model: str
    reason: str | None = None
    seconds: float | None = None
    n: int = 0
    of: int = 0

    @property
    def key(self) -> str:
        """Events with the same key say the same thing more recently (a later retry replaces an earlier one)."""
        return f"{self.kind}:{self.model}" if self.kind in ("retry", "wait") else f"{self.kind}:{self.model}:{id(self)}"

    def __str__(self) -> str:
        if self.kind == "retry":
            return f"{self.model}: {self.reason}, retrying in {_seconds(self.seconds)} ({self.n}/{self.of})…"
        if self.kind == "failed":
            return f"{self.model}: {self.reason}…"
        if self.kind == "fallback":
            return f"falling back to {self.model}…"
        if self.kind == "wait":
            return f"{self.model}: waiting {_seconds(self.seconds)} for its rate limit…"
        return f"{self.model}: {self.kind}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "a moment"
    return f"{value:.0f} s" if value >= 1.5 else f"{value:.1f} s"


_LISTENER: ContextVar[Callable[[CallEvent], Any] | None] = ContextVar("coffee_nb_call_events", default=None)


@contextmanager
def listening(callback: Callable[[CallEvent], Any]) -> Iterator[None]:
    """Hear the events of the calls made inside the block (in this thread or task)."""
    token = _LISTENER.set(callback)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def tell(kind: str, model: str, **details: Any) -> None:
    """Tell the listener, if any, what the call does next."""
    listener = _LISTENER.get()
    if listener is None:
        return
    try:
        listener(CallEvent(kind, model, **details))
    except Exception:  # a display that fails must not fail the call
        log.exception("coffee_nb: a call-event listener failed")
