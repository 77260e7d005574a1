"""Retry, backoff, deadline, cooldown and rate-limit decisions: the policy table and its helpers.

Nothing here does I/O or sleeps; the invoker asks and then waits in its own (sync or async) way.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from coffee_nb._shared._validate import non_negative_number, optional_positive_int, positive_int, positive_number
from coffee_nb.errors._errors import ConfigError, ErrorClass

__all__ = ["DEFAULT_RULES", "Action", "CircuitBreaker", "Policy", "RateLimit", "Rule"]

DEFAULT_DEADLINE = 120.0
DEFAULT_ATTEMPT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
DEFAULT_MAX_RETRY_AFTER = 30.0
DEFAULT_COOLDOWN_AFTER = 3
# The longest a failing model is skipped. A model that recovers is probed again at most this long after its
# last failed probe: under steady traffic (one request every few seconds) it is back in use within
# cooldown_max + one request's interval of recovering (issue 24: within 30 s; 30 s was not, with 4 s traffic).
DEFAULT_COOLDOWN_MAX = 20.0
DEFAULT_COOLDOWN = DEFAULT_COOLDOWN_MAX  # its older name
DEFAULT_COOLDOWN_MIN = 1.0  # the first cooldown; it doubles while the model keeps failing
# A half-open probe that reports nothing for this long is presumed lost (its caller was cancelled or gave
# up between being let through and calling): the next caller probes instead of the model staying skipped.
PROBE_LOST_AFTER = DEFAULT_ATTEMPT_TIMEOUT
# Streams: how long to wait for the first chunk, and between chunks. Reasoning models think first. A
# non-reasoning model's first token rarely takes more than a few seconds: past 8 s the next model starts,
# within 10 s of the request.
DEFAULT_FIRST_TOKEN_TIMEOUT = 8.0
DEFAULT_REASONING_FIRST_TOKEN_TIMEOUT = 120.0
DEFAULT_IDLE_TIMEOUT = 15.0
DEFAULT_REASONING_IDLE_TIMEOUT = 60.0
STREAM_RECOVERY = ("continue", "restart", "raise")
FALLBACK_COST = ("any", "no_pricier", "cheaper_only")
_UNSET: float = float("nan")  # "not given" for cooldown / cooldown_max (compared by identity)


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
    """What to do about one error class: retry the same model? fall back? count toward a cooldown?

    ``retries`` caps the retries of this class (None: the policy's ``max_retries``); with ``alone``
    the model is retried only when no other candidate is left (a silent route moves on at once).
    """

    retry: bool
    fallback: bool
    trip: Trip
    retries: int | None = None
    alone: bool = False


DEFAULT_RULES: Mapping[ErrorClass, Rule] = MappingProxyType(
    {
        ErrorClass.RATE_LIMIT: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        ErrorClass.SERVER: Rule(retry=True, fallback=True, trip=Trip.COUNT),
        # a silent route (no answer, a stall) is not retried while another model can be tried
        ErrorClass.TIMEOUT: Rule(retry=True, fallback=True, trip=Trip.COUNT, alone=True),
        ErrorClass.CONNECTION: Rule(retry=True, fallback=True, trip=Trip.COUNT, retries=1),
        ErrorClass.CONTEXT_OVERFLOW: Rule(retry=False, fallback=True, trip=Trip.NONE),
        # the provider refused the content: raise its reason (Policy(on_content_filter="fallback") routes around)
        ErrorClass.CONTENT_FILTER: Rule(retry=False, fallback=False, trip=Trip.NONE),
        ErrorClass.AUTH: Rule(retry=False, fallback=True, trip=Trip.NOW),
        ErrorClass.NOT_FOUND: Rule(retry=False, fallback=True, trip=Trip.NOW),
        ErrorClass.BAD_REQUEST: Rule(retry=False, fallback=False, trip=Trip.NONE),
        ErrorClass.BUDGET: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.COST: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.COOLDOWN: Rule(retry=False, fallback=True, trip=Trip.NONE),
        ErrorClass.CAPABILITY: Rule(retry=False, fallback=True, trip=Trip.NONE),
        # raised by a candidate during its call, unclassified: fall back, like with_fallbacks and LiteLLM
        # (Policy(on_unknown_error="raise") raises instead)
        ErrorClass.UNKNOWN: Rule(retry=False, fallback=True, trip=Trip.COUNT),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How hard to try. One deadline bounds every retry, wait and fallback of a call together.

    A model that keeps failing is skipped for ``cooldown_min`` seconds, then twice that after each failed
    probe, up to ``cooldown_max`` (``cooldown`` is its older name; give either): a model that recovers is
    used again at most ``cooldown_max`` after its last failed probe (a provider's longer Retry-After wins).

    >>> Policy(deadline=30, max_retries=1)
    >>> Policy(cooldown_min=2, cooldown_max=15)
    """

    deadline: float = DEFAULT_DEADLINE  # seconds for the whole call
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT  # seconds for one attempt (capped by what's left)
    max_retries: int = DEFAULT_MAX_RETRIES  # per model, for retryable classes
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER  # a longer Retry-After moves to the next model
    cooldown_after: int = DEFAULT_COOLDOWN_AFTER  # consecutive counted failures that open the breaker
    # the longest a model is skipped once its breaker opens (the ceiling of the doubling; default 20 s)
    cooldown_max: float = _UNSET
    cooldown: float = field(default=_UNSET, repr=False)  # the older name of cooldown_max: give either, both read it
    cooldown_min: float = DEFAULT_COOLDOWN_MIN  # the first cooldown; doubles per reopening, resets on success
    first_token_timeout: float | None = None  # streams: seconds to the first chunk (None: per model)
    idle_timeout: float | None = None  # streams: seconds between chunks (None: per model)
    stream_recovery: str = "continue"  # a stream broken after its first chunk: "continue" | "restart" | "raise"
    on_content_filter: str | None = None  # "raise" (default rules) or "fallback"
    on_unknown_error: str | None = None  # "fallback" (default rules) or "raise"
    fallback_cost: str = "any"  # "no_pricier" / "cheaper_only": skip fallbacks costlier than the primary
    wait_for_cooldown: float = 0.0  # seconds: when every model is cooling down, wait for the first to reopen
    hedge_after: float | str | None = None  # seconds, or "p95" (of the model's recent latency; a stream's: of its
    # time to first token): start the next model alongside a slow one (a stream: one without its first token);
    # the first answer (first token) wins, the other is cancelled (off by default)
    rules: Mapping[ErrorClass, Rule] = field(default_factory=lambda: DEFAULT_RULES)

    def __post_init__(self) -> None:
        positive_number("deadline (seconds)", self.deadline)
        positive_number("attempt_timeout (seconds)", self.attempt_timeout)
        non_negative_number("max_retries", self.max_retries, integer=True)
        non_negative_number("backoff_base (seconds)", self.backoff_base)
        non_negative_number("backoff_cap (seconds)", self.backoff_cap)
        non_negative_number("max_retry_after (seconds)", self.max_retry_after)
        positive_int("cooldown_after", self.cooldown_after)
        self._resolve_cooldown_max()
        non_negative_number("cooldown_min (seconds)", self.cooldown_min)
        for name in ("first_token_timeout", "idle_timeout"):
            if getattr(self, name) is not None:
                positive_number(f"{name} (seconds)", getattr(self, name))
        _choice("stream_recovery", self.stream_recovery, STREAM_RECOVERY)
        _choice("fallback_cost", self.fallback_cost, FALLBACK_COST)
        non_negative_number("wait_for_cooldown (seconds)", self.wait_for_cooldown)
        _hedge_quantile(self.hedge_after)  # validates
        missing = set(ErrorClass) - set(self.rules)
        if missing:
            raise ConfigError(f"policy rules miss error classes: {sorted(missing)}")
        rules = dict(self.rules)
        if self.on_content_filter is not None:
            fallback = _choice("on_content_filter", self.on_content_filter, ("raise", "fallback")) == "fallback"
            rules[ErrorClass.CONTENT_FILTER] = replace(rules[ErrorClass.CONTENT_FILTER], fallback=fallback)
        if self.on_unknown_error is not None:
            fallback = _choice("on_unknown_error", self.on_unknown_error, ("raise", "fallback")) == "fallback"
            rules[ErrorClass.UNKNOWN] = replace(rules[ErrorClass.UNKNOWN], fallback=fallback)
        if rules != dict(self.rules):
            object.__setattr__(self, "rules", MappingProxyType(rules))

    def _resolve_cooldown_max(self) -> None:
        """``cooldown`` and ``cooldown_max`` name one setting: both read the value given (or the default)."""
        given = {n: v for n in ("cooldown_max", "cooldown") if (v := getattr(self, n)) is not _UNSET}
        for name, value in given.items():
            non_negative_number(f"{name} (seconds)", value)
        if len(set(given.values())) > 1:
            raise ConfigError(
                f"cooldown is the older name of cooldown_max: give one of them, not both with different values "
                f"(got cooldown_max={given['cooldown_max']!r}, cooldown={given['cooldown']!r}; "
                "dataclasses.replace copies both, so change both)"
            )
        value = next(iter(given.values()), DEFAULT_COOLDOWN_MAX)
        object.__setattr__(self, "cooldown_max", value)
        object.__setattr__(self, "cooldown", value)

    def hedge_delay(self, recent_latencies: list[float]) -> float | None:
        """Seconds after which a still-running attempt gets a hedge; None: don't hedge (off, or no history)."""
        hedge = self.hedge_after
        if hedge is None:
            return None
        quantile = _hedge_quantile(hedge)
        if quantile is None:
            return float(hedge)  # validated: a positive number
        if len(recent_latencies) < _HEDGE_HISTORY:  # too little history to know what "slow" is
            return None
        ordered = sorted(recent_latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def first_token_limit(self, reasoning: bool) -> float:
        """Seconds a stream may take to its first chunk (reasoning models think before they speak)."""
        if self.first_token_timeout is not None:
            return self.first_token_timeout
        return DEFAULT_REASONING_FIRST_TOKEN_TIMEOUT if reasoning else DEFAULT_FIRST_TOKEN_TIMEOUT

    def idle_limit(self, reasoning: bool) -> float:
        """Seconds a stream may go quiet between chunks before it counts as stalled."""
        if self.idle_timeout is not None:
            return self.idle_timeout
        return DEFAULT_REASONING_IDLE_TIMEOUT if reasoning else DEFAULT_IDLE_TIMEOUT

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


_HEDGE_HISTORY = 10  # answered attempts a model needs before a "pNN" hedge delay applies


def _hedge_quantile(value: object) -> float | None:
    """``"p95"`` → 0.95; a number of seconds → None; anything else is a ConfigError naming it."""
    if value is None:
        return None
    if isinstance(value, str):
        digits = value.strip().lower().removeprefix("p")
        if digits.isdigit() and 1 <= int(digits) <= 99 and value.strip().lower().startswith("p"):
            return int(digits) / 100
        raise ConfigError(f"hedge_after must be seconds (e.g. 2.5) or a latency percentile like 'p95', got {value!r}")
    positive_number("hedge_after (seconds)", value)
    return None


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


class CircuitBreaker:
    """Per-model breaker: closed → open (skipped) → half-open (one probe at a time) → closed.

    It opens after ``cooldown_after`` counted failures in a row. The first opening lasts ``cooldown_min``
    seconds and each failed probe reopens it for twice as long, up to ``cooldown`` (the policy's
    ``cooldown_max``): a model back after a short outage is used again within a request or two, one that
    stays down is probed every ``cooldown`` seconds, so it is used again at most that long after it
    recovers. A success closes it and resets the doubling.

    Once open, only a probe reopens it: a failure of an attempt let through before it opened (a straggler
    of concurrent calls) is counted but neither extends nor doubles the cooldown. A probe that reports
    nothing for ``probe_lost_after`` seconds (its caller gave up before calling) no longer blocks the next.
    """

    __slots__ = (
        "_lock",
        "_failures",
        "_opens",
        "_open_until",
        "_probe_since",
        "cooldown_after",
        "cooldown",
        "cooldown_min",
        "probe_lost_after",
    )

    def __init__(
        self,
        cooldown_after: int,
        cooldown: float,
        cooldown_min: float = DEFAULT_COOLDOWN_MIN,
        *,
        probe_lost_after: float = PROBE_LOST_AFTER,
    ) -> None:
        self._lock = threading.Lock()
        self._failures = 0
        self._opens = 0
        self._open_until = 0.0
        self._probe_since: float | None = None  # when the probe in flight was let through
        self.cooldown_after = cooldown_after
        self.cooldown = cooldown  # the ceiling (Policy.cooldown_max)
        self.cooldown_min = min(cooldown_min, cooldown)
        self.probe_lost_after = probe_lost_after

    @property
    def cooldown_max(self) -> float:
        """The longest the breaker stays open after a failure (a provider's longer Retry-After aside)."""
        return self.cooldown

    def allow(self, now: float) -> bool:
        """May the model be called now? In half-open state only one caller gets to probe."""
        if self._open_until == 0.0:  # closed: no lock needed to say so (as if asked a moment earlier)
            return True
        with self._lock:
            if self._open_until == 0.0:
                return True
            if now < self._open_until:
                return False
            since = self._probe_since
            if since is not None and now < since + self.probe_lost_after:
                return False  # another caller is probing
            self._probe_since = now  # half-open: this caller probes
            return True

    @property
    def failures(self) -> int:
        """Counted failures since the last success."""
        return self._failures

    @property
    def probing(self) -> bool:
        """Is a half-open probe in flight?"""
        return self._probe_since is not None

    def open_until(self) -> float:
        return self._open_until

    def success(self) -> None:
        if not (self._failures or self._opens) and self._probe_since is None and self._open_until == 0.0:
            return  # already closed and clean (the hot path): nothing to reset, no lock
        with self._lock:
            self._failures = 0
            self._opens = 0
            self._open_until = 0.0
            self._probe_since = None

    def failure(self, trip: Trip, now: float, *, seconds: float | None = None) -> None:
        """Count a failure; ``seconds`` (a Retry-After) is the least the breaker then stays open."""
        with self._lock:
            probe = self._probe_since is not None
            self._probe_since = None
            if trip is Trip.NONE:  # the caller's fault, not the model's: a probe with no verdict
                return
            self._failures += 1
            floor = seconds or 0.0
            if trip is Trip.NOW:  # a bad key or unknown model: waiting won't help soon
                self._open_until = max(self._open_until, now + max(self.cooldown, floor))
            elif probe or (self._failures >= self.cooldown_after and now >= self._open_until):
                span = min(self.cooldown, self.cooldown_min * 2.0**self._opens)
                self._opens += 1
                self._open_until = now + max(span, floor)
            elif floor and now < self._open_until:  # a straggler: only a longer Retry-After extends it
                self._open_until = max(self._open_until, now + floor)

    def release(self) -> None:
        """A probe ended without a verdict (cancelled, skipped): let the next caller probe."""
        with self._lock:
            self._probe_since = None

    def state_at(self, now: float) -> str:
        """The state at ``now``: closed (in use), open (skipped), half-open (a probe may go, or is in flight)."""
        until = self._open_until
        if until == 0.0:
            return "closed"
        return "open" if now < until else "half-open"

    @property
    def state(self) -> str:
        return self.state_at(time.monotonic())


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

    def headroom(self, now: float) -> tuple[int | None, int | None]:
        """(requests, tokens) still free in the current minute (None where there is no limit)."""
        with self._lock:
            events = [e for e in self._events if e[0] > now - self.window]
        rpm, tpm = self.limit.rpm, self.limit.tpm
        return (
            None if rpm is None else max(0, rpm - len(events)),
            None if tpm is None else max(0, tpm - sum(n for _, n in events)),
        )

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
