"""What a budget says: ``BudgetWarning`` and ``BudgetEvent`` (a threshold crossed, a soft limit exceeded),
which warnings are still owed, and the messages of a refused call and of spend that could not be recorded."""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb.budget._periods import period_window
from coffee_nb.pricing._pricing import from_pico

if TYPE_CHECKING:
    from types import FrameType

    from coffee_nb.budget._ledger import LimitHit
    from coffee_nb.budget._rules import _Keys, _Rule

__all__ = ["BudgetEvent", "BudgetWarning"]


class BudgetWarning(UserWarning):
    """Spend crossed a warning threshold, or a soft limit was exceeded."""


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """A warning (spend crossed ``threshold`` of a limit) or an exceeded soft limit; widgets show these."""

    kind: str  # "warning" | "exceeded"
    period: str
    scope: str
    limit: Decimal
    spent: Decimal
    threshold: float
    at: datetime
    message: str


# How long a budget may go without reading its spend back after a commit, while its own spend since the last
# read stays short of the nearest warning threshold. Only warnings wait on it (never enforcement: a hard
# limit is checked by every reservation): a threshold crossed by *another* kernel's spend is noticed at
# most this late here (that kernel warns at once), and calls further apart than this read every time.
QUIET_FOR = 0.5


class _Quiet:
    """Commits that need not read the spend back to decide warnings (the SQLite ledger's hot path saves a
    read per call): within ``QUIET_FOR`` of the last read, while this budget's own spend since stays below
    the nearest unwarned threshold of the same watch list."""

    __slots__ = ("gap", "lock", "token", "until")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: object = None  # the watch list the gap was measured on (a new one: read again)
        self.gap = 0  # picodollars of own spend that can't reach a threshold
        self.until = 0.0

    def allows(self, token: object, amount: int, t: float) -> bool:
        """Whether a commit of ``amount`` at ``t`` can skip the read (and, if so, count it)."""
        with self.lock:
            if token is not self.token or t >= self.until or amount >= self.gap:
                return False
            self.gap -= amount
            return True

    def learn(self, token: object, alarms: tuple[Any, ...], spent: list[int], t: float) -> None:
        """A read happened: the distance to the nearest threshold, good for ``QUIET_FOR``."""
        gap = min((at_least - spent[i] for i, at_least, *_ in alarms), default=0)
        with self.lock:
            self.token, self.gap, self.until = token, gap, t + QUIET_FOR


class _Alerts:
    """The warning half of a Budget: each threshold of each period instance warns once, to ``warnings``, the
    budget's ``events``, ``on_warning`` and subscribers."""

    tz: tzinfo
    on_warning: Callable[[BudgetEvent], Any] | None

    def __init__(self) -> None:
        self.events: deque[BudgetEvent] = deque(maxlen=200)
        self._listeners: list[Callable[[BudgetEvent], Any]] = []
        self._warned: set[tuple[str, float]] = set()
        self._alert_lock = threading.Lock()
        self._quiet = _Quiet()

    def subscribe(self, listener: Callable[[BudgetEvent], Any]) -> Callable[[], None]:
        """Call ``listener`` on every event; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _warn_unsaved(self, exc: BaseException) -> None:
        warnings.warn(
            f"coffee_nb budget: the cost of a call could not be recorded ({exc}); it is kept in memory, counted, "
            "and written as soon as the ledger works again (tried again in the background, on close and at "
            "exit). No new call starts until then.",
            BudgetWarning,
            stacklevel=_user_stacklevel(),
        )

    def _unwarned(self, keys: _Keys) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """Rule buckets that may still owe a warning this period (the rest need no read), and the
        thresholds to check: (index in those buckets, picodollars, rule, bucket, threshold, kind)."""
        warned = self._warned
        cached = keys.watch
        if cached is not None and cached[0] == len(warned):  # warnings only ever get added
            return cached[1], cached[2]
        alarms = []
        for rule, key, limit in keys.rules:
            if not limit:
                continue
            for threshold, kind in ((rule.warn_at, "warning"), (1.0, "exceeded")):
                if kind == "exceeded" and rule.hard:
                    continue  # hard limits block instead of warning after the fact
                if (key, threshold) not in warned:
                    alarms.append((key, limit * threshold, rule, threshold, kind))
        watch = tuple(dict.fromkeys(a[0] for a in alarms))
        checks = tuple(
            (watch.index(key), at_least, rule, key, threshold, kind) for key, at_least, rule, threshold, kind in alarms
        )
        keys.watch = (len(warned), watch, checks)
        return watch, checks

    def _warn_once(self, rule: _Rule, key: str, threshold: float, kind: str, spent: int, t: float) -> None:
        with self._alert_lock:
            if (key, threshold) in self._warned:
                return
            self._warned.add((key, threshold))
        self._fire(rule, kind, threshold, from_pico(spent), datetime.fromtimestamp(t, UTC))

    def _fire(self, rule: _Rule, kind: str, threshold: float, spent: Decimal, when: datetime) -> None:
        _, end = period_window(rule.period, when, self.tz)
        resets = f"; resets {end:%Y-%m-%d %H:%M %Z}" if end else ""
        if kind == "warning":
            message = (
                f"coffee_nb budget: {rule.label} spend {money(spent)} reached {threshold:.0%} "
                f"of its {money(rule.amount)} limit{resets}"
            )
        else:
            message = (
                f"coffee_nb budget: soft {rule.label} limit of {money(rule.amount)} exceeded "
                f"(spent {money(spent)}){resets}"
            )
        event = BudgetEvent(kind, rule.period.value, rule.scope, rule.amount, spent, threshold, when, message)
        self.events.append(event)
        warnings.warn(message, BudgetWarning, stacklevel=_user_stacklevel())
        for listener in [self.on_warning, *self._listeners]:
            if listener is not None:
                try:
                    listener(event)
                except Exception:  # a broken listener must not break a call
                    logging.getLogger("coffee_nb").exception("budget listener failed")

    def _exceeded_message(self, rule: _Rule, hit: LimitHit, model: str, needed: Decimal | None, when: datetime) -> str:
        _, end = period_window(rule.period, when, self.tz)
        if end is None:
            resets = "it never resets (total)"
        else:
            left = end - when
            hours, rem = divmod(int(left.total_seconds()), 3600)
            resets = f"resets at {end:%Y-%m-%d %H:%M %Z} (in {hours}h{rem // 60:02d}m)"
        return (
            f"{rule.label} budget of {money(rule.amount)} can't cover a call to {model}: "
            f"spent {money(from_pico(hit.spent))}, reserved {money(from_pico(hit.reserved))}, "
            f"this call may cost up to {money(needed or Decimal(0))}; {resets}. "
            "Raise the limit, wait for the reset, or use a cheaper model."
        )


def _user_stacklevel() -> int:
    """Point a warning at the first frame outside coffee_nb and LangChain: the user's own line."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("coffee_nb", "langchain", "concurrent.", "asyncio", "threading")):
            return level
        frame, level = frame.f_back, level + 1
    return 2
