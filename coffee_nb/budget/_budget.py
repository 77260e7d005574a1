"""``Budget``: multi-period, hard or soft, two-phase (reserve → commit/release), persistent, shareable.

Enforcement lives here (reserve, commit, release) with the queries; what the limits are and which buckets
a call touches in `_rules`, the warnings a budget gives in `_warnings`, opening a ledger in `_open`."""

from __future__ import annotations

import html
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from coffee_nb._shared._format import money
from coffee_nb._shared._validate import flag, fraction, positive_number, usd
from coffee_nb.budget._ledger import CallRow, Ledger, LimitHit, from_pico, to_pico
from coffee_nb.budget._open import open_ledger
from coffee_nb.budget._periods import Period, period_window, resolve_timezone
from coffee_nb.budget._rules import (
    DEFAULT_LEASE_TTL,
    DEFAULT_WARN_AT,
    MAX_CALL_PICO,
    Limit,
    _Calendar,
    _Keys,
    _Rule,
    make_rule,
)
from coffee_nb.budget._unsaved import Unsaved
from coffee_nb.budget._warnings import BudgetEvent, BudgetWarning, _Alerts
from coffee_nb.errors._errors import BudgetExceededError, ConfigError

__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_WARN_AT", "Budget", "BudgetEvent", "BudgetWarning", "Lease", "Limit"]


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


class Budget(_Alerts):
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
        _Alerts.__init__(self)
        self._calendar = _Calendar(
            self.rules, self.tz, hold_all=bool(getattr(self.ledger, "holds_spend_buckets", False))
        )
        self._unsaved = Unsaved(self.ledger)  # spend the ledger could not record yet (disk full, Redis down)

    def _rule(self, scope: str, period: Period, value: Any) -> _Rule:
        return make_rule(scope, period, value, self.hard, self.warn_at)

    def __repr__(self) -> str:
        limits = ", ".join(f"{r.label}=${r.amount}{'' if r.hard else ' (soft)'}" for r in self.rules) or "no limits"
        return f"Budget({limits}; ledger={self.ledger!r})"

    def _repr_html_(self) -> str:
        """A status table, so ``budget`` alone in a cell shows well even without widgets."""
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
        return self._calendar.bucket(scope, period, when)

    def _keys_for(self, model: str, t: float) -> _Keys:
        return self._calendar.keys_for(model, t)

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
            self._unsaved.flush()
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
        token = keys.watch
        if watch and self._quiet.allows(token, amount, t):  # no threshold within reach: no read back
            watch = ()
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
            self._quiet.learn(token, alarms, spent, t)

    def release(self, lease: Lease) -> None:
        """Give the reservation back (the attempt failed before costing anything)."""
        if lease.done:
            return
        lease.done = True
        try:
            self.ledger.release(lease.id)
        except Exception:  # a hold that can't be released expires by itself (lease_ttl): log, go on
            logging.getLogger("coffee_nb").warning("budget: could not release a reservation", exc_info=True)

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
        return self._unsaved.spent(buckets, self.ledger.spent)

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
        self._calendar.forget()  # their cached warning watch lists are stale now

    def calls(self, limit: int | None = None) -> list[CallRow]:
        """Committed calls in the ledger, newest last."""
        return self.ledger.calls(limit)

    def flush(self) -> None:
        """Write now the spend that waits for the ledger (a write failed: disk full, Redis down); a
        ``StorageError`` if it still can't be. It is also written in the background as soon as the ledger
        works again, by the next call, on close and at exit: this is for when you want it done now."""
        if self._unsaved:
            self._unsaved.flush()

    def close(self) -> None:
        """Write what waits to be recorded (warning loudly if it still can't be), then close the ledger."""
        if self._unsaved:
            self._unsaved.flush_or_give_up("closing")
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
_lease_counter = itertools.count(1)


def _lease_id() -> str:
    """Unique across processes and machines (random prefix per process), cheap (a counter)."""
    return f"{_LEASE_PREFIX}-{next(_lease_counter):x}"
