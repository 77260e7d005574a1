"""Spend a ledger could not record (disk full, Redis down, a file gone): kept in memory, counted, and
written as soon as the ledger takes it again. The call was paid and its answer is the caller's: neither
may be lost, and the spend must not wait for a later call that may never come.

What is kept is written by whichever comes first: the next reservation (which waits for it: no new spend
while old spend is unrecorded), a retry in the background (a daemon thread, backing off from 0.2 s to 5 s,
gone once nothing waits), closing the budget, its ledger or the session, and the end of the process
(``atexit``, which a Jupyter kernel's shutdown runs too). Two of them may write the same commit (the retry
and the exit, or a write that landed though it reported a failure): a commit is idempotent per lease id
in every ledger, so it counts once; a batch stops at its first failure and keeps the rest, oldest first.
"""

from __future__ import annotations

import atexit
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from coffee_nb._shared._paths import StorageError
from coffee_nb.budget._warnings import BudgetWarning
from coffee_nb.pricing._pricing import from_pico

if TYPE_CHECKING:
    from coffee_nb.budget._ledger import CallRow, Ledger

__all__ = ["RETRY_FIRST", "RETRY_MAX", "Unsaved", "flush_for"]

# Backoff of the background retry: a failed try costs one failed write (cheap), so it starts soon (spend
# reaches the file shortly after the disk has room again) and never waits longer than a few seconds.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0

_log = logging.getLogger("coffee_nb")


class Unsaved:
    """Commits waiting for ``ledger``, oldest first. ``keep`` is True for the first of a run (warn then)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # held while the ledger is written or read together with what waits: a flush moves an amount from
        # here into the ledger, and a reader must never see it in both (nor in neither)
        self._lock = threading.Lock()
        self.items: list[tuple[str, int, tuple[str, ...], CallRow]] = []  # read without the lock: a list

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        return f"<{len(self.items)} commit(s) waiting for {self.ledger!r}>"

    def keep(self, lease_id: str, amount: int, buckets: Sequence[str], row: CallRow) -> bool:
        with self._lock:
            first = not self.items
            self.items.append((lease_id, amount, tuple(buckets), row))
            if first:
                _WAITING.add(self)  # under the lock: a flush emptying the list can't un-register it after
        return first

    def spent(self, buckets: list[str], read: Callable[[list[str]], list[int]]) -> list[int]:
        """``read(buckets)`` (the ledger's spend) plus what waits to be written, read as one."""
        if not self.items:
            return read(buckets)
        with self._lock:
            spent = read(buckets)
            out: dict[str, int] = {}
            for _, amount, kept, _ in self.items:
                for b in kept:
                    out[b] = out.get(b, 0) + amount
        return [s + out.get(b, 0) for s, b in zip(spent, buckets, strict=True)]

    def flush(self) -> int:
        """Write every waiting commit; how much was written (picodollars). On a failure, raise a
        StorageError saying what waits and why (what was written before it stays written)."""
        with self._lock:
            written, exc = self._write()
            if exc is None:
                return written
            where = exc.path if isinstance(exc, StorageError) else repr(self.ledger)
            raise StorageError(f"{self._what()} is not recorded yet, so no new call starts: {exc}", where)

    def flush_or_give_up(self, why: str) -> None:
        """Write what waits, or else forget it, saying loudly what is lost: for when it can never be written
        later (``why``: its ledger is closing, the process ends)."""
        with self._lock:
            _, exc = self._write()
            if exc is None:
                return
            lost = self._what()
            self.items.clear()
            _WAITING.discard(self)
        warnings.warn(
            f"coffee_nb budget: {why} with spend never recorded: {lost} could not be written to {self.ledger!r}: {exc}",
            BudgetWarning,
            stacklevel=3,
        )

    def _write(self) -> tuple[int, Exception | None]:
        """Commit what waits, oldest first, until one fails (the lock is held): what was written, and the
        failure. Once nothing waits, no retry or exit hook holds this any more."""
        written = 0
        while self.items:
            lease_id, amount, buckets, row = self.items[0]
            try:
                self.ledger.commit(lease_id, amount, buckets, row)
            except Exception as exc:  # noqa: BLE001 - any failure: the spend stays waiting
                return written, exc
            self.items.pop(0)
            written += amount
        _WAITING.discard(self)
        return written, None

    def _what(self) -> str:
        total = from_pico(sum(item[1] for item in self.items))
        return f"${total} of spend from {len(self.items)} call(s)"


class _Waiting:
    """Every Unsaved with commits waiting, held strongly (a budget dropped with spend waiting still gets it
    written), the background retry, and the exit hook."""

    def __init__(self) -> None:
        # reentrant: a collection inside a locked section (starting the thread allocates) may close a
        # dropped ledger, whose close looks here for spend waiting for it
        self._lock = threading.RLock()
        self._kept: dict[int, Unsaved] = {}
        self._thread: threading.Thread | None = None
        self._exiting = threading.Event()

    def add(self, unsaved: Unsaved) -> None:
        with self._lock:
            self._kept[id(unsaved)] = unsaved
            if self._thread is None and not self._exiting.is_set():
                self._thread = threading.Thread(target=self._retry, name="coffee_nb-unsaved-spend", daemon=True)
                self._thread.start()
        # run at exit before the hooks registered so far: IPython's, which clears the namespace (budgets
        # and ledgers go with it), and weakref.finalize's, which closes ledgers still open
        atexit.unregister(_at_exit)
        atexit.register(_at_exit)

    def discard(self, unsaved: Unsaved) -> None:
        with self._lock:
            self._kept.pop(id(unsaved), None)

    def waiting(self) -> list[Unsaved]:
        with self._lock:
            return list(self._kept.values())

    def _retry(self) -> None:
        """Try every waiting flush, backing off, until nothing waits (or the process ends)."""
        delay = RETRY_FIRST
        while not self._exiting.wait(delay):
            for unsaved in self.waiting():
                try:
                    written = unsaved.flush()
                except Exception:  # noqa: BLE001 - still failing: the next try, later
                    continue
                if written:
                    _log.info("budget: $%s of waiting spend is recorded now in %r", from_pico(written), unsaved.ledger)
            with self._lock:
                if not self._kept:
                    self._thread = None
                    return
            delay = min(delay * 2, RETRY_MAX)

    def at_exit(self) -> None:
        """The last chance: write what waits (the retry stops: this is its last try), else say what is lost."""
        self._exiting.set()
        for unsaved in self.waiting():
            unsaved.flush_or_give_up("the process ends")


_WAITING = _Waiting()


def _at_exit() -> None:
    _WAITING.at_exit()


def flush_for(ledger: object, why: str) -> None:
    """Before ``ledger`` closes: write what waits for it, or say what is lost (it can't be written later)."""
    for unsaved in _WAITING.waiting():
        if unsaved.ledger is ledger:
            unsaved.flush_or_give_up(why)
