"""Where spend lives: one contract, three backends (memory, SQLite, Redis).

Amounts are integer picodollars (1e-12 USD): exact for every real price, and atomic counters in
SQLite and Redis. Spend is kept in per-period buckets ("d:2026-11-26", "global|…", "model:x|…"),
so a status query touches a handful of counters whatever the length of history.

Reservations are leases with an expiry (wall-clock seconds): a crashed process's holds stop
counting once they expire.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from coffee_nb.pricing._pricing import from_pico, to_pico

__all__ = ["CallRow", "Ledger", "LimitHit", "MemoryLedger", "from_pico", "to_pico"]


class LimitHit(Exception):  # noqa: N818 - internal signal, turned into BudgetExceededError by Budget
    def __init__(self, bucket: str, limit: int, spent: int, reserved: int) -> None:
        super().__init__(bucket)
        self.bucket = bucket
        self.limit = limit
        self.spent = spent
        self.reserved = reserved


class CallRow(NamedTuple):
    """One committed call in the ledger's history (immutable; a named tuple because one is made per call)."""

    lease_id: str
    model: str
    amount: int  # picodollars
    at: float  # wall-clock seconds
    priced: bool = True


class Ledger(Protocol):
    """The contract every backend keeps; the same tests run against all three."""

    def reserve(
        self,
        lease_id: str,
        amount: int,
        buckets: Sequence[str],
        checks: Sequence[tuple[str, int]],
        expires: float,
        now: float,
    ) -> None:
        """Atomically: for every (bucket, limit) in ``checks``, spent + reserved + amount <= limit, else
        raise :class:`LimitHit`; then hold ``amount`` on every bucket in ``buckets`` until ``expires``."""

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        """Drop the lease (if still held), add ``amount`` to ``buckets``, record ``call``; return the
        spend of the ``watch`` buckets afterwards (same transaction).

        Idempotent per lease id: returns None (and changes nothing) when it was already committed."""

    def release(self, lease_id: str) -> None:
        """Drop the lease without spending."""

    def spent(self, buckets: Sequence[str]) -> list[int]: ...

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]: ...

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        """Zero the spend of buckets whose key starts with one of ``prefixes`` (all when None)."""

    def calls(self, limit: int | None = None) -> list[CallRow]:
        """Committed calls, newest last (at most ``limit``)."""

    def close(self) -> None: ...


class MemoryLedger:
    """In-process ledger: a lock and dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: defaultdict[str, int] = defaultdict(int)  # read with .get: a lookup must not add keys
        self._reserved: defaultdict[str, int] = defaultdict(int)
        self._leases: dict[str, tuple[int, tuple[str, ...], float]] = {}
        # history as plain tuples of str/int/float: the garbage collector stops tracking those, so a
        # long history costs its full collections nothing (CallRow, a tuple subclass, stays tracked)
        self._calls: list[tuple[str, str, int, float, bool]] = []
        self._committed: set[str] = set()
        self._next_expiry = float("inf")  # earliest lease expiry: no scan before then

    def __repr__(self) -> str:
        return "MemoryLedger()"

    def _purge(self, now: float) -> None:
        if now < self._next_expiry:
            return
        expired = [k for k, (_, _, exp) in self._leases.items() if exp <= now]
        for k in expired:
            self._drop(k)
        self._next_expiry = min((exp for _, _, exp in self._leases.values()), default=float("inf"))

    def _drop(self, lease_id: str) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        amount, buckets, _ = lease
        reserved = self._reserved
        for b in buckets:
            reserved[b] -= amount

    def reserve(
        self,
        lease_id: str,
        amount: int,
        buckets: Sequence[str],
        checks: Sequence[tuple[str, int]],
        expires: float,
        now: float,
    ) -> None:
        with self._lock:
            if now >= self._next_expiry:
                self._purge(now)
            spent, reserved = self._spent, self._reserved
            for b, limit in checks:
                s, held = spent.get(b, 0), reserved.get(b, 0)
                if s + held + amount > limit:
                    raise LimitHit(b, limit, s, held)
            self._leases[lease_id] = (amount, tuple(buckets), expires)
            if expires < self._next_expiry:
                self._next_expiry = expires
            for b in buckets:
                reserved[b] += amount

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        with self._lock:
            committed = self._committed
            if lease_id in committed:
                return None
            committed.add(lease_id)
            self._drop(lease_id)
            spent = self._spent
            for b in buckets:
                spent[b] += amount
            self._calls.append((call.lease_id, call.model, call.amount, call.at, call.priced))
            return [spent.get(b, 0) for b in watch] if watch else []

    def release(self, lease_id: str) -> None:
        with self._lock:
            self._drop(lease_id)

    def spent(self, buckets: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._spent.get(b, 0) for b in buckets]

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            self._purge(now)
            return [self._reserved.get(b, 0) for b in buckets]

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        with self._lock:
            if prefixes is None:
                self._spent.clear()
                return
            for b in [b for b in self._spent if b.startswith(tuple(prefixes))]:
                del self._spent[b]

    def calls(self, limit: int | None = None) -> list[CallRow]:
        with self._lock:
            rows = self._calls[-limit:] if limit else self._calls
            return [CallRow._make(row) for row in rows]

    def close(self) -> None:
        pass
