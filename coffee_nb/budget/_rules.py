"""What a budget's limits are: ``Limit`` (what users write), ``_Rule`` (one limit resolved), and the
``_Calendar`` that turns rules into the bucket keys and checks a call of one model needs right now."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple

from coffee_nb._shared._validate import fraction, optional_flag, usd
from coffee_nb.budget._periods import PERIODS, Period, bucket, period_window
from coffee_nb.pricing._pricing import to_pico

__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_WARN_AT", "MAX_CALL_PICO", "Limit"]

DEFAULT_WARN_AT = 0.8
DEFAULT_LEASE_TTL = 300.0  # seconds; longer than any call's deadline
# The most one call may cost, in picodollars ($1,000,000): a worst case beyond it is a typo (max_tokens of
# 10**20), and ledgers keep amounts in 64-bit integers (SQLite's end at about $9.2M).
MAX_CALL_PICO = 10**18


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


def make_rule(scope: str, period: Period, value: Any, hard: bool, warn_at: float) -> _Rule:
    """A rule from what the user gave (an amount or a :class:`Limit`), with the budget's defaults."""
    label = period.value if scope == "global" else f"per_model {scope[6:]} {period.value}"
    if isinstance(value, Limit):
        amount = usd(f"{label} limit", value.amount)
        hard = hard if value.hard is None else value.hard
        warn = warn_at if value.warn_at is None else fraction(f"{label} warn_at", value.warn_at)
    else:
        amount, warn = usd(f"{label} limit", value), warn_at
    return _Rule(scope, period, amount, hard, warn)


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
    held: tuple[str, ...]  # where a reservation is held: buckets some limit looks at (or all, if the ledger asks)
    # the warnings still owed, as of how many had fired (see _Alerts._unwarned); rebuilt when more fire
    watch: tuple[int, tuple[str, ...], tuple[Any, ...]] | None = None


class _Calendar:
    """Bucket keys of a budget's rules, cached per model until the next period boundary.

    ``hold_all``: reservations are held on every bucket a call spends on, not only on those some limit
    looks at (a ledger asks for that with a true ``holds_spend_buckets`` attribute; none does yet).
    """

    def __init__(self, rules: tuple[_Rule, ...], tz: tzinfo, *, hold_all: bool = False) -> None:
        self.rules = rules
        self.tz = tz
        self.hold_all = hold_all
        self._lock = threading.Lock()
        self._keys: dict[str, _Keys] = {}
        self._span = (0.0, 0.0)  # [from, until) wall-clock seconds the cached keys are valid for

    def bucket(self, scope: str, period: Period, when: datetime) -> str:
        return f"{scope}|{bucket(period, when, self.tz)}"

    def all_buckets(self, model: str, when: datetime) -> tuple[str, ...]:
        """Every bucket a call's spend goes to: all periods, globally and for its model."""
        return tuple(self.bucket(s, p, when) for s in ("global", f"model:{model}") for p in PERIODS)

    def rules_for(self, model: str) -> list[_Rule]:
        return [r for r in self.rules if r.scope == "global" or r.scope == f"model:{model}"]

    def forget(self) -> None:
        """Drop the cached keys (their warning watch lists are stale after a reset)."""
        self._keys = {}

    def keys_for(self, model: str, t: float) -> _Keys:
        """Bucket keys and checks for ``model`` at ``t``; computed once per period instance, not per call."""
        start, until = self._span
        if not start <= t < until:
            when = datetime.fromtimestamp(t, UTC)
            windows = [period_window(p, when, self.tz) for p in PERIODS if p is not Period.TOTAL]
            starts = [s.timestamp() for s, _ in windows if s is not None]  # only total's window is open
            ends = [e.timestamp() for _, e in windows if e is not None]
            with self._lock:
                self._keys = {}
                self._span = (max(starts), min(ends))
        keys = self._keys.get(model)
        if keys is None:
            when = datetime.fromtimestamp(t, UTC)
            rules = tuple(
                _RuleKey(r, self.bucket(r.scope, r.period, when), to_pico(r.amount)) for r in self.rules_for(model)
            )
            checks = tuple((k.bucket, k.limit) for k in rules if k.rule.hard)
            spend = self.all_buckets(model, when)
            held = spend if self.hold_all else tuple(dict.fromkeys(k.bucket for k in rules))
            keys = _Keys(spend, rules, checks, held)
            self._keys[model] = keys
        return keys
