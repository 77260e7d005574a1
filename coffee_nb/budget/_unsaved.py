"""Spend a ledger could not record (disk full, Redis down, a file gone): kept in memory, counted, and
written at the next chance. The call was paid and its answer is the caller's: neither may be lost."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from coffee_nb._shared._paths import StorageError
from coffee_nb.pricing._pricing import from_pico

if TYPE_CHECKING:
    from coffee_nb.budget._ledger import CallRow, Ledger

__all__ = ["Unsaved"]


class Unsaved:
    """Commits waiting for their ledger, oldest first. ``keep`` is True for the first of a run (warn then)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, int, tuple[str, ...], CallRow]] = []  # read without the lock: a list

    def __bool__(self) -> bool:
        return bool(self.items)

    def keep(self, lease_id: str, amount: int, buckets: Sequence[str], row: CallRow) -> bool:
        with self._lock:
            first = not self.items
            self.items.append((lease_id, amount, tuple(buckets), row))
        return first

    def by_bucket(self) -> dict[str, int]:
        """Waiting spend per bucket, to add to what the ledger says."""
        out: dict[str, int] = {}
        with self._lock:
            for _, amount, buckets, _ in self.items:
                for b in buckets:
                    out[b] = out.get(b, 0) + amount
        return out

    def flush(self, ledger: Ledger) -> None:
        """Write every waiting commit (a commit is idempotent per lease); on failure raise a StorageError
        saying what waits and why."""
        with self._lock:
            while self.items:
                lease_id, amount, buckets, row = self.items[0]
                try:
                    ledger.commit(lease_id, amount, buckets, row)
                except Exception as exc:  # noqa: BLE001 - any failure: the spend stays waiting, and we say so
                    total = from_pico(sum(item[1] for item in self.items))
                    where = exc.path if isinstance(exc, StorageError) else repr(ledger)
                    raise StorageError(
                        f"${total} of spend from {len(self.items)} call(s) is not recorded yet, so no new call "
                        f"starts: {exc}",
                        where,
                    ) from None
                self.items.pop(0)
