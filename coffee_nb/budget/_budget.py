"""``Budget``: multi-period, hard or soft, two-phase (reserve → commit/release), persistent, shareable."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from coffee_nb._errors import BudgetExceededError, ConfigError
from coffee_nb._format import money
from coffee_nb._validate import flag, fraction, optional_flag, positive_number, usd
from coffee_nb.budget._ledger import CallRow, Ledger, LimitHit, from_pico, to_pico
from coffee_nb.budget._open import open_ledger
from coffee_nb.budget._periods import PERIODS, Period, bucket, period_window, resolve_timezone
from coffee_nb.budget._unsaved import Unsaved

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["Budget", "BudgetEvent", "BudgetWarning", "Lease", "Limit"]

DEFAULT_WARN_AT = 0.8
DEFAULT_LEASE_TTL = 300.0  # seconds; longer than any call's deadline
# The most one call may cost, in picodollars ($1,000,000): a worst case beyond it is a typo (max_tokens of
# 10**20), and ledgers keep amounts in 64-bit integers (SQLite's end at about $9.2M).
MAX_CALL_PICO = 10**18


class BudgetWarning(UserWarning):
    """Spend crossed a warning threshold, or a soft limit was exceeded."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One period's limit, with its own hard/soft switch and warning threshold (None: the budget's)."""

    amount: Decimal | float | int | str
    hard: bool | None = None
    warn_at: float | None = None

    def __post_init__(self) -> None:
        usd("Limit amount", self.amount)
        optional_flag("Limit hard", self.hard, " (block) or False (warn only), or None (the budget's)")
        if self.warn_at is not None:
            fraction("Limit warn_at", self.warn_at)


@dataclass(frozen=True, slots=True)
class _Rule:
    scope: str  # "global" or "model:<name>"
    period: Period
    amount: Decimal
    hard: bool
    warn_at: float

    @property
    def label(self) -> str:
        return self.period.value if self.scope == "global" else f"{self.period.value} for {self.scope[6:]}"


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


class _RuleKey(NamedTuple):
    """One limit that applies to a model, in the current period: its bucket and limit in picodollars."""

    rule: _Rule
    bucket: str
    limit: int


@dataclass(slots=True)
class _Keys:
    """Everything a call of one model needs from the calendar, valid until the next period boundary."""

    buckets: tuple[str, ...]  # where its spend goes: every period, globally and for the model
    rules: tuple[_RuleKey, ...]  # the limits that apply to it
    checks: tuple[tuple[str, int], ...]  # (bucket, limit) of its hard rules: what a reservation must pass
    held: tuple[str, ...]  # where a reservation is held: only buckets some limit looks at
    # the warnings still owed, as of how many had fired (see Budget._unwarned); rebuilt when more fire
    watch: tuple[int, tuple[str, ...], tuple[Any, ...]] | None = None


@dataclass(slots=True)
class Lease:
    """A reservation held for one attempt; commit or release it exactly once."""

    id: str
    model: str
    pico: int | None  # what is held, in picodollars; None: unpriced
    buckets: tuple[str, ...]
    done: bool = False

    @property
    def amount(self) -> Decimal | None:
        return None if self.pico is None else from_pico(self.pico)


class Budget:
    """Cost limits per period, enforced inside AutoPicker before each attempt.

    >>> Budget(daily=5, total=50, warn_at=0.8)                     # hard limits, SQLite ledger
    >>> Budget(hourly=Limit(1, hard=False), per_model={"sandbox/smart": {"daily": 0.5}}, ledger="memory")

    Periods are calendar-aligned in ``timezone`` (default: this machine's) and reset themselves;
    ``total`` never resets. Before each attempt AutoPicker reserves the worst case; a hard limit
    that can't cover it skips that model (cheaper fallbacks get their chance). After the attempt
    the actual cost is committed, or the reservation released. Reservations are leases that
    expire after ``lease_ttl`` seconds, so a crashed kernel never blocks the budget for long.
    ``strict=True`` refuses unpriced models; by default they run and are counted as unpriced.
    """

    def __init__(
        self,
        *,
        hourly: Any = None,
        daily: Any = None,
        weekly: Any = None,
        monthly: Any = None,
        total: Any = None,
        hard: bool = True,
        warn_at: float = DEFAULT_WARN_AT,
        per_model: Mapping[str, Mapping[str, Any]] | None = None,
        timezone: str | tzinfo | None = None,
        ledger: str | Path | Ledger | None = None,
        name: str = "default",
        strict: bool = False,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        on_warning: Callable[[BudgetEvent], Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.hard = flag("hard", hard, " (block) or False (warn only)")
        self.warn_at = fraction("warn_at", warn_at)
        positive_number("lease_ttl (seconds)", lease_ttl)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"budget name must be a non-empty word, got {name!r}")
        self.strict = flag("strict", strict, " (True refuses models without a known price)")
        for what, func in (("clock", clock), ("on_warning", on_warning)):
            if func is not None and not callable(func):
                raise ConfigError(f"{what} must be a function (or None), got {func!r}")
        self.lease_ttl = float(lease_ttl)
        self.name = name
        self.tz = resolve_timezone(timezone)
        self._clock = clock or time.time
        rules: list[_Rule] = []
        given = {"hourly": hourly, "daily": daily, "weekly": weekly, "monthly": monthly, "total": total}
        for period_name, value in given.items():
            if value is not None:
                rules.append(self._rule("global", Period(period_name), value))
        for model, limits in (per_model or {}).items():
            if not isinstance(model, str) or not model:
                raise ConfigError(f"per_model keys are model specs like 'openai/gpt-4o', got {model!r}")
            if not isinstance(limits, Mapping):
                raise ConfigError(
                    f"per_model[{model!r}] must map periods to amounts, e.g. {{'daily': 2.0}}; got {limits!r}"
                )
            for period_name, value in limits.items():
                rules.append(self._rule(f"model:{model}", Period.parse(period_name), value))
        self.rules: tuple[_Rule, ...] = tuple(rules)
        self.ledger: Ledger = open_ledger(ledger, name)
        self.on_warning = on_warning
        self.events: deque[BudgetEvent] = deque(maxlen=200)
        self._listeners: list[Callable[[BudgetEvent], Any]] = []
        self._warned: set[tuple[str, float]] = set()
        self._lock = threading.Lock()
        self._keys: dict[str, _Keys] = {}
        self._keys_span = (0.0, 0.0)  # [from, until) wall-clock seconds the cached keys are valid for
        self._unsaved = Unsaved()  # spend the ledger could not record yet (disk full, Redis down)

    def _rule(self, scope: str, period: Period, value: Any) -> _Rule:
        label = period.value if scope == "global" else f"per_model {scope[6:]} {period.value}"
        if isinstance(value, Limit):
            amount = usd(f"{label} limit", value.amount)
            hard = self.hard if value.hard is None else value.hard
            warn = self.warn_at if value.warn_at is None else fraction(f"{label} warn_at", value.warn_at)
        else:
            amount, hard, warn = usd(f"{label} limit", value), self.hard, self.warn_at
        return _Rule(scope, period, amount, hard, warn)

    def __repr__(self) -> str:
        limits = ", ".join(f"{r.label}=${r.amount}{'' if r.hard else ' (soft)'}" for r in self.rules) or "no limits"
        return f"Budget({limits}; ledger={self.ledger!r})"

    def _repr_html_(self) -> str:
        """A status table, so ``budget`` alone in a cell shows well even without widgets."""
        import html

        rows = []
        for name, s in self.status().items():
            pct = min(100.0, s["percentage"])
            color = "#c62828" if pct >= 100 else ("#f9a825" if pct >= s["warn_at"] * 100 else "#2e7d32")
            bar = (
                f"<div style='width:120px;background:#eee;height:8px'><div style='width:{pct:.0f}%;"
                f"background:{color};height:8px'></div></div>"
            )
            resets = s["resets_at"].strftime("%Y-%m-%d %H:%M %Z") if s["resets_at"] else "never"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{bar}</td><td>{money(s['spent'])} / {money(s['budget'])}</td>"
                f"<td>{money(s['remaining'])}</td><td>{money(s['reserved'])}</td>"
                f"<td>{'hard' if s['hard'] else 'soft'}</td><td>{resets}</td></tr>"
            )
        head = (
            "<tr><th>period</th><th></th><th>spent / limit</th><th>left</th><th>in flight</th><th></th>"
            "<th>resets</th></tr>"
        )
        body = "".join(rows) or "<tr><td colspan=7><i>no limits</i></td></tr>"
        return f"<table><caption>coffee_nb budget · {html.escape(repr(self.ledger))}</caption>{head}{body}</table>"

    # -- time ----------------------------------------------------------------------------------
    def _now(self) -> tuple[float, datetime]:
        t = self._clock()
        return t, datetime.fromtimestamp(t, UTC)

    def _bucket(self, scope: str, period: Period, when: datetime) -> str:
        return f"{scope}|{bucket(period, when, self.tz)}"

    def _all_buckets(self, model: str, when: datetime) -> tuple[str, ...]:
        """Every bucket a call's spend goes to: all periods, globally and for its model."""
        return tuple(self._bucket(s, p, when) for s in ("global", f"model:{model}") for p in PERIODS)

    def _rules_for(self, model: str) -> list[_Rule]:
        return [r for r in self.rules if r.scope == "global" or r.scope == f"model:{model}"]

    def _keys_for(self, model: str, t: float) -> _Keys:
        """Bucket keys and checks for ``model`` at ``t``; computed once per period instance, not per call."""
        start, until = self._keys_span
        if not start <= t < until:
            when = datetime.fromtimestamp(t, UTC)
            windows = [period_window(p, when, self.tz) for p in PERIODS if p is not Period.TOTAL]
            starts = [s.timestamp() for s, _ in windows if s is not None]  # only total's window is open
            ends = [e.timestamp() for _, e in windows if e is not None]
            with self._lock:
                self._keys = {}
                self._keys_span = (max(starts), min(ends))
        keys = self._keys.get(model)
        if keys is None:
            when = datetime.fromtimestamp(t, UTC)
            rules = tuple(
                _RuleKey(r, self._bucket(r.scope, r.period, when), to_pico(r.amount)) for r in self._rules_for(model)
            )
            checks = tuple((k.bucket, k.limit) for k in rules if k.rule.hard)
            held = tuple(dict.fromkeys(k.bucket for k in rules))
            keys = _Keys(self._all_buckets(model, when), rules, checks, held)
            self._keys[model] = keys
        return keys

    # -- two-phase enforcement (what AutoPicker calls) -----------------------------------------
    def reserve(self, model: str, amount: Decimal | None) -> Lease:
        """Hold ``amount`` (worst case) for an attempt of ``model``; raise BudgetExceededError if a hard limit
        can't cover it."""
        return self.reserve_pico(model, None if amount is None else to_pico(amount))

    def commit(self, lease: Lease, amount: Decimal | None) -> None:
        """Record the actual cost of the attempt (None: unpriced, counted at $0 and flagged)."""
        self.commit_pico(lease, None if amount is None else to_pico(amount))

    def reserve_pico(self, model: str, pico: int | None) -> Lease:
        """:meth:`reserve` with the amount in integer picodollars (what AutoPicker computes)."""
        if pico is None and self.strict:
            raise BudgetExceededError(
                f"{model} has no known price and this budget is strict: register one with "
                f"coffee_nb.register_price({model!r}, input=..., output=...) or use Budget(strict=False)"
            )
        if pico is not None and pico > MAX_CALL_PICO:
            raise BudgetExceededError(
                f"a call to {model} may cost up to ${from_pico(pico):,.2f}, more than coffee_nb reserves for one "
                f"call (${from_pico(MAX_CALL_PICO):,}): lower max_tokens, or check the model's price"
            )
        if self._unsaved.items:  # earlier spend waits for the ledger: no new spending until it is recorded
            self._unsaved.flush(self.ledger)
        t = self._clock()
        keys = self._keys_for(model, t)
        lease = Lease(_lease_id(), model, pico, keys.held)
        try:
            self.ledger.reserve(lease.id, pico or 0, keys.held, keys.checks, t + self.lease_ttl, t)
        except LimitHit as hit:
            rule = next(k.rule for k in keys.rules if k.bucket == hit.bucket)
            message = self._exceeded_message(rule, hit, model, lease.amount, datetime.fromtimestamp(t, UTC))
            raise BudgetExceededError(message) from None
        return lease

    def commit_pico(self, lease: Lease, pico: int | None) -> None:
        """:meth:`commit` with the amount in integer picodollars."""
        if lease.done:
            return
        lease.done = True
        t = self._clock()
        keys = self._keys_for(lease.model, t)
        watch, alarms = self._unwarned(keys)
        amount = pico or 0
        if amount > MAX_CALL_PICO:  # a provider reporting absurd usage must not overflow the ledger
            amount = MAX_CALL_PICO
        row = CallRow(lease.id, lease.model, amount, t, pico is not None)
        try:
            spent = self.ledger.commit(lease.id, amount, keys.buckets, row, watch)
        except Exception as exc:  # noqa: BLE001 - the call is paid: keep its cost (and never lose the answer)
            if self._unsaved.keep(lease.id, amount, keys.buckets, row):
                self._warn_unsaved(exc)
            return
        if spent:
            for i, at_least, rule, key, threshold, kind in alarms:
                if spent[i] >= at_least:
                    self._warn_once(rule, key, threshold, kind, spent[i], t)

    def release(self, lease: Lease) -> None:
        """Give the reservation back (the attempt failed before costing anything)."""
        if lease.done:
            return
        lease.done = True
        try:
            self.ledger.release(lease.id)
        except Exception:  # a hold that can't be released expires by itself (lease_ttl): log, go on
            import logging

            logging.getLogger("coffee_nb").warning("budget: could not release a reservation", exc_info=True)

    # -- warnings ----------------------------------------------------------------------------------
    def _warn_unsaved(self, exc: BaseException) -> None:
        warnings.warn(
            f"coffee_nb budget: the cost of a call could not be recorded ({exc}); it is kept in memory, counted, "
            "and written when the ledger works again. No new call starts until then.",
            BudgetWarning,
            stacklevel=_user_stacklevel(),
        )

    def subscribe(self, listener: Callable[[BudgetEvent], Any]) -> Callable[[], None]:
        """Call ``listener`` on every event; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

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
        with self._lock:
            if (key, threshold) in self._warned:
                return
            self._warned.add((key, threshold))
        self._fire(rule, kind, threshold, from_pico(spent), datetime.fromtimestamp(t, UTC))

    def _fire(self, rule: _Rule, kind: str, threshold: float, spent: Decimal, when: datetime) -> None:
        _, end = period_window(rule.period, when, self.tz)
        resets = f"; resets {end:%Y-%m-%d %H:%M %Z}" if end else ""
        if kind == "warning":
            message = (
                f"coffee_nb budget: {rule.label} spend ${spent:.4f} reached {threshold:.0%} "
                f"of its ${rule.amount} limit{resets}"
            )
        else:
            message = (
                f"coffee_nb budget: soft {rule.label} limit of ${rule.amount} exceeded (spent ${spent:.4f}){resets}"
            )
        event = BudgetEvent(kind, rule.period.value, rule.scope, rule.amount, spent, threshold, when, message)
        self.events.append(event)
        warnings.warn(message, BudgetWarning, stacklevel=_user_stacklevel())
        for listener in [self.on_warning, *self._listeners]:
            if listener is not None:
                try:
                    listener(event)
                except Exception:  # a broken listener must not break a call
                    import logging

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
            f"{rule.label} budget of ${rule.amount} can't cover a call to {model}: "
            f"spent ${from_pico(hit.spent):.6f}, reserved ${from_pico(hit.reserved):.6f}, "
            f"this call may cost up to ${(needed or Decimal(0)):.6f}; {resets}. "
            "Raise the limit, wait for the reset, or use a cheaper model."
        )

    # -- queries -----------------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """Per limit: budget, spent, reserved, remaining, percentage, hard, warn_at, resets_at."""
        t, when = self._now()
        keys = [self._bucket(r.scope, r.period, when) for r in self.rules]
        spent = self._spent(keys)
        held = self.ledger.reserved(keys, t)
        out: dict[str, dict[str, Any]] = {}
        for rule, s, h in zip(self.rules, spent, held, strict=True):
            spent_d, held_d = from_pico(s), from_pico(max(h, 0))
            _, end = period_window(rule.period, when, self.tz)
            name = rule.period.value if rule.scope == "global" else f"{rule.scope[6:]}:{rule.period.value}"
            out[name] = {
                "budget": rule.amount,
                "spent": spent_d,
                "reserved": held_d,
                "remaining": max(rule.amount - spent_d, Decimal(0)),
                "percentage": float(spent_d / rule.amount * 100) if rule.amount else (100.0 if spent_d else 0.0),
                "hard": rule.hard,
                "warn_at": rule.warn_at,
                "resets_at": end,
            }
        return out

    def spent(self, period: str | Period = "total", model: str | None = None) -> Decimal:
        """Committed spend in the current ``period`` (all models, or one)."""
        p = Period.parse(period)
        _, when = self._now()
        scope = "global" if model is None else f"model:{model}"
        return from_pico(self._spent([self._bucket(scope, p, when)])[0])

    def _spent(self, buckets: list[str]) -> list[int]:
        """The ledger's spend of ``buckets``, plus what waits to be written to it."""
        spent = self.ledger.spent(buckets)
        if self._unsaved:
            extra = self._unsaved.by_bucket()
            spent = [s + extra.get(b, 0) for s, b in zip(spent, buckets, strict=True)]
        return spent

    def remaining(self, period: str | Period) -> Decimal:
        """What is left of the global ``period`` limit (not counting in-flight reservations)."""
        p = Period.parse(period)
        rule = next((r for r in self.rules if r.scope == "global" and r.period is p), None)
        if rule is None:
            configured = ", ".join(r.period.value for r in self.rules if r.scope == "global") or "none"
            raise ConfigError(f"this budget has no {p.value} limit (configured: {configured})")
        return max(rule.amount - self.spent(p), Decimal(0))

    def can_afford(self, cost: Decimal | float | str, model: str | None = None) -> bool:
        """Would ``cost`` fit under every hard limit right now (counting reservations)?"""
        amount = usd("cost", cost)
        t, when = self._now()
        rules = [r for r in self.rules if r.hard and (r.scope == "global" or (model and r.scope == f"model:{model}"))]
        keys = [self._bucket(r.scope, r.period, when) for r in rules]
        spent, held = self._spent(keys), self.ledger.reserved(keys, t)
        return all(s + h + to_pico(amount) <= to_pico(r.amount) for r, s, h in zip(rules, spent, held, strict=True))

    def record(self, cost: Decimal | float | str, model: str = "manual") -> None:
        """Record spend made outside AutoPicker (no reservation)."""
        pico = to_pico(usd("cost", cost))
        self.commit_pico(Lease(_lease_id(), model, pico, ()), pico)

    def reset(self, period: str | Period | None = None) -> None:
        """Forget spend of the current and past ``period`` buckets (all periods when None). Use with care."""
        if period is None:
            self.ledger.reset(None)
        else:
            p = Period.parse(period)
            prefix = {"hourly": "h:", "daily": "d:", "weekly": "w:", "monthly": "m:", "total": "total"}[p.value]
            self.ledger.reset([f"global|{prefix}"] + [f"{r.scope}|{prefix}" for r in self.rules])
        self._warned.clear()
        self._keys = {}  # their cached warning watch lists are stale now

    def calls(self, limit: int | None = None) -> list[CallRow]:
        """Committed calls in the ledger, newest last."""
        return self.ledger.calls(limit)

    def close(self) -> None:
        """Write what waits to be recorded (warning loudly if it still can't be), then close the ledger."""
        if self._unsaved:
            try:
                self._unsaved.flush(self.ledger)
            except Exception as exc:  # noqa: BLE001 - closing must finish; say what is lost
                warnings.warn(
                    f"coffee_nb budget: closing with spend never recorded: {exc}", BudgetWarning, stacklevel=2
                )
        self.ledger.close()

    # -- the seed's API ------------------------------------------------------------------------------
    def get_budget_status(self) -> dict[str, dict[str, Any]]:
        return self.status()

    def get_remaining(self, period: str = "daily") -> Decimal:
        return self.remaining(period)

    def get_spent(self, period: str = "daily", model: str | None = None) -> Decimal:
        return self.spent(period, model)

    def record_cost(self, cost: Decimal | float | str, model: str = "manual") -> None:
        self.record(cost, model)

    def reset_budget(self, period: str | None = None) -> None:
        self.reset(period)


_LEASE_PREFIX = uuid.uuid4().hex[:16]
_lease_counter = __import__("itertools").count(1)


def _lease_id() -> str:
    """Unique across processes and machines (random prefix per process), cheap (a counter)."""
    return f"{_LEASE_PREFIX}-{next(_lease_counter):x}"


def _user_stacklevel() -> int:
    """Point a warning at the first frame outside coffee_nb and LangChain: the user's own line."""
    import sys

    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("coffee_nb", "langchain", "concurrent.", "asyncio", "threading")):
            return level
        frame, level = frame.f_back, level + 1
    return 2
