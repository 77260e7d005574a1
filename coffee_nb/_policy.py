"""Retry, backoff, deadline, cooldown and rate-limit decisions: the policy table and its helpers.

Nothing here does I/O or sleeps; the invoker asks and then waits in its own (sync or async) way.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping

from coffee_nb._errors import ConfigError, ErrorClass
from coffee_nb._validate import non_negative_number, optional_positive_int, positive_int, positive_number

__all__ = ["Action", "CircuitBreaker", "Policy", "RateLimit", "Rule", "DEFAULT_RULES"]

DEFAULT_DEADLINE = 120.0
DEFAULT_ATTEMPT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
DEFAULT_MAX_RETRY_AFTER = 30.0
DEFAULT_COOLDOWN_AFTER = 3
DEFAULT_COOLDOWN = 30.0


class Action(StrEnum):
    RETRY = "retry"  # same model again, after a backoff
    FALLBACK = "fallback"  # next candidate
    RAISE = "raise"  # stop and raise the error to the caller


class Trip(StrEnum):
    NONE = "none"  # never counts toward a cooldown (caller errors, budget, ...)
    COUNT = "count"  # counts; the breaker opens after ``cooldown_after`` in a row
    NOW = "now"  # opens the breaker at once (bad key, unknown model: waiting won't help soon)


@dataclass(frozen=True, slots=True)
class Rule:
    retry: bool
    fallback: bool
    trip: Trip


DEFAULT_RULES: Mapping[ErrorClass, Rule] = MappingProxyType(
    {
        ErrorClass.RATE_LIMIT: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        ErrorClass.SERVER: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        ErrorClass.TIMEOUT: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        ErrorClass.CONNECTION: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        ErrorClass.CONTEXT_OVERFLOW: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.CONTENT_FILTER: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.AUTH: Rule(retry=False, fallback=True, trip=Trip.NOW),
        ErrorClass.NOT_FOUND: Rule(retry=False, fallback=True, trip=Trip.NOW),
        ErrorClass.BAD_REQUEST: Rule(retry=False, fallback=False, trip=Trip.NONE),
        ErrorClass.BUDGET: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.COOLDOWN: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.UNKNOWN: Rule(retry=False, fallback=False, trip=Trip.NONE),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How hard to try. One deadline bounds every retry, wait and fallback of a call together.

    >>> Policy(deadline=30, max_retries=1)
    """

    deadline: float = DEFAULT_DEADLINE  # seconds for the whole call
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT  # seconds for one attempt (capped by what's left)
    max_retries: int = DEFAULT_MAX_RETRIES  # per model, for retryable classes
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER  # a longer Retry-After moves to the next model
    cooldown_after: int = DEFAULT_COOLDOWN_AFTER  # consecutive counted failures that open the breaker
    cooldown: float = DEFAULT_COOLDOWN  # seconds a model is skipped once its breaker opens
    rules: Mapping[ErrorClass, Rule] = field(default_factory=lambda: DEFAULT_RULES)

    def __post_init__(self) -> None:
        positive_number("deadline (seconds)", self.deadline)
        positive_number("attempt_timeout (seconds)", self.attempt_timeout)
        non_negative_number("max_retries", self.max_retries, integer=True)
        non_negative_number("backoff_base (seconds)", self.backoff_base)
        non_negative_number("backoff_cap (seconds)", self.backoff_cap)
        non_negative_number("max_retry_after (seconds)", self.max_retry_after)
        positive_int("cooldown_after", self.cooldown_after)
        non_negative_number("cooldown (seconds)", self.cooldown)
        missing = set(ErrorClass) - set(self.rules)
        if missing:
            raise ConfigError(f"policy rules miss error classes: {sorted(missing)}")

    def with_rules(self, **changes: Rule) -> Policy:
        """A copy with some rules replaced, e.g. ``policy.with_rules(content_filter=Rule(False, False, Trip.NONE))``."""
        rules = dict(self.rules)
        for name, rule in changes.items():
            rules[ErrorClass(name)] = rule
        return replace(self, rules=MappingProxyType(rules))

    def backoff(self, retry_index: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``retry_index`` (0-based); None: don't wait, move on.

        Full jitter (uniform in [0, min(cap, base * 2**n)]); a server's Retry-After is a floor,
        and one longer than ``max_retry_after`` means "go elsewhere".
        """
        wait = rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2**retry_index)))
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return wait


class CircuitBreaker:
    """Per-model breaker: closed → open (skip for ``cooldown`` s) → half-open (one probe) → closed."""

    __slots__ = ("_lock", "_failures", "_open_until", "_probing", "cooldown_after", "cooldown")

    def __init__(self, cooldown_after: int, cooldown: float) -> None:
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.cooldown_after = cooldown_after
        self.cooldown = cooldown

    def allow(self, now: float) -> bool:
        """May the model be called now? In half-open state only one caller gets to probe."""
        with self._lock:
            if self._open_until == 0.0:
                return True
            if now < self._open_until or self._probing:
                return False
            self._probing = True  # half-open: this caller probes
            return True

    def open_until(self) -> float:
        return self._open_until

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0
            self._probing = False

    def failure(self, trip: Trip, now: float, *, seconds: float | None = None) -> None:
        if trip is Trip.NONE:
            with self._lock:
                self._probing = False
            return
        with self._lock:
            self._failures += 1
            if trip is Trip.NOW or self._failures >= self.cooldown_after or self._probing:
                self._open_until = now + max(self.cooldown, seconds or 0.0)
            self._probing = False

    def release(self) -> None:
        """A probe ended without a verdict (cancelled, skipped): let the next caller probe."""
        with self._lock:
            self._probing = False

    @property
    def state(self) -> str:
        if self._open_until == 0.0:
            return "closed"
        return "open" if time.monotonic() < self._open_until else "half-open"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """Client-side limits for one model: requests and tokens per minute."""

    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        optional_positive_int("RateLimit rpm", self.rpm)
        optional_positive_int("RateLimit tpm", self.tpm)


class RateLimiter:
    """Sliding one-minute window over requests and tokens. ``try_acquire`` never blocks."""

    __slots__ = ("_lock", "_events", "_tokens", "limit", "window")

    def __init__(self, limit: RateLimit, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def try_acquire(self, tokens: int, now: float) -> float:
        """Take a slot for a request of ``tokens`` tokens: 0.0 if taken, else seconds until one may be free."""
        with self._lock:
            events = self._events
            while events and events[0][0] <= now - self.window:
                self._tokens -= events.popleft()[1]
            rpm, tpm = self.limit.rpm, self.limit.tpm
            wait = 0.0
            if rpm is not None and len(events) >= rpm:
                wait = events[len(events) - rpm][0] + self.window - now
            if tpm is not None and self._tokens + tokens > tpm and events:
                # wait until enough old events leave the window
                excess = self._tokens + tokens - tpm
                freed = 0
                for t, n in events:
                    freed += n
                    if freed >= excess:
                        wait = max(wait, t + self.window - now)
                        break
                else:
                    wait = max(wait, events[-1][0] + self.window - now)
            if wait > 0:
                return wait
            events.append((now, tokens))
            self._tokens += tokens
            return 0.0
