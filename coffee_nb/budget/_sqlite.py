"""SQLite ledger: the default for notebooks. WAL mode; several kernels on one machine share it safely.

A reserve and a commit are one short write transaction each. What they cost is mostly the pages they
dirty (each is a WAL frame written) and the SQL they run while the CPU caches are cold from the rest of
the call, so the layout keeps both small (numbers in ``benchmarks/overhead.py``):

- a bucket's spend and holds are one row of ``buckets``;
- a lease is one row of a ``WITHOUT ROWID`` table, and triggers keep ``buckets.held`` equal to the sum
  of the leases: inserting a lease holds, deleting one (commit, release, expiry) gives the hold back;
- a reserve is one statement (check and hold); only when a check fails does Python decide again, after
  purging expired leases. A stale hold can only make a check stricter, so purging lazily is exact;
- a stream of calls reserves in memory from a *block*, headroom this process holds in the file, and
  writes once per call, its commit (``_sqlite_blocks`` says how that keeps every guarantee).

A file deleted or replaced while open keeps living for the connections that have it open, and what
they record there would be lost to everyone else. So the ledger compares the file at its path with the
one it opened (inode and device: a ``stat``, at most once a second on the hot path, and on every read
and on close) and, when they differ, carries what the old file holds into the file now at the path,
then goes on there. Every failure is a ``StorageError`` naming the file, what is wrong and what to do.

Over ~400 lines as one thing: the ledger contract on one file (reserve, commit, release, reads, the file
swapped under it); the blocks and the hot-path statements live in _sqlite_blocks and _sqlite_hot.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TypeVar, cast

from coffee_nb._shared._paths import StorageError, data_dir, open_sqlite, prepare_path, storage_error
from coffee_nb.budget import _sqlite_blocks as _blk
from coffee_nb.budget._ledger import CallRow, LimitHit
from coffee_nb.budget._sqlite_blocks import Blocks, Key
from coffee_nb.budget._sqlite_file import (
    Carried,
    close_aside,
    identity,
    migrate,
    orphaned_wal,
    put,
    side_files,
    take,
)
from coffee_nb.budget._sqlite_hot import BlockOps
from coffee_nb.budget._unsaved import flush_for
from coffee_nb.budget._warnings import BudgetWarning, _user_stacklevel
from coffee_nb.errors._errors import ConfigError
from coffee_nb.pricing._pricing import from_pico

__all__ = ["SQLiteLedger", "default_path"]

_T = TypeVar("_T")

# Check and hold in one statement. Its implicit transaction is a write transaction from its first step
# (like BEGIN IMMEDIATE), so it checks the newest state under the write lock. It inserts nothing when
# a check fails: then reserve() decides again in Python, after purging expired leases.
_HOLD = "INSERT INTO leases (ns, id, amount, buckets, expires) SELECT ?1, ?2, ?3, ?4, ?5 WHERE "
_RESERVE_ONE = _HOLD + "coalesce((SELECT spent + held FROM buckets WHERE ns = ?1 AND bucket = ?6), 0) + ?3 <= ?7"
_RESERVE_MANY = (
    _HOLD
    + """NOT EXISTS (
    SELECT 1 FROM json_each(?6) AS c LEFT JOIN buckets AS b ON b.ns = ?1 AND b.bucket = c.key
    WHERE coalesce(b.spent, 0) + coalesce(b.held, 0) + ?3 > c.value)"""
)
_INT64 = 2**63 - 1  # larger limits are bound as this (SQLite integers stop here; no amount reaches it)
_TIDY_EVERY = 60.0  # seconds between purges that only tidy up (correctness never waits for them)
_CHUNK = 500  # bucket keys per IN (...) list: under every SQLite's limit on bound parameters
_LOOK_EVERY = 1.0  # seconds between checks on the hot path that the file at our path is still ours
_WHAT = "ledger"


def default_path() -> Path:
    """``$COFFEE_NB_DATA_DIR/ledger.sqlite3``, else the per-user data directory."""
    return data_dir() / "ledger.sqlite3"


class SQLiteLedger(BlockOps):
    holds_spend_buckets = True  # Budget holds reservations on every bucket a call spends on: blocks need them

    def __init__(self, path: str | os.PathLike[str] | None = None, *, namespace: str = "default") -> None:
        self.path = prepare_path(path if path is not None else default_path(), _WHAT)
        self._spath = str(self.path)
        self.ns = namespace
        self._lock = threading.Lock()
        self._json: dict[tuple[object, ...], str] = {}
        self._reads: dict[int, str] = {}
        self._tidy_at = 0.0
        self._look_at = 0.0  # wall-clock time of the next hot-path check that our file is still at the path
        self._carried: Carried | None = None  # taken from a deleted file, waiting for the new one
        self._side: tuple[tuple[int, int] | None, ...] = ()
        self._blocks = Blocks()
        self._after: list[Callable[[], object]] = []  # in-memory changes, made once the transaction commits
        self._db, self._ident = self._connect()
        self._ex: Callable[..., sqlite3.Cursor] = self._db.execute
        # a kernel that exits closes it (one killed lets its blocks expire): its blocks are given back, and
        # a file deleted since the last look has its spend carried (see __del__ for one dropped before)
        weakref.finalize(self, _close_at_exit, weakref.ref(self))

    def __del__(self) -> None:
        """A ledger dropped without ``close()`` (a budget rebound in a cell; a kernel's namespace cleared
        at shutdown, before the exit hooks close what is still open) is closed as it goes: what it recorded
        in a file deleted since its last look is carried to the file now at the path, not lost with the
        connection, and its blocks go back. Nothing can still be using it."""
        with suppress(Exception):
            self.close()

    def _connect(self) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """Open (creating, migrating) the file at the path; the connection and the file's identity."""
        path = prepare_path(self.path, _WHAT)  # again: after a deletion, its directory may be gone too
        if orphaned_wal(self._spath):
            raise StorageError(
                f"the ledger at {path} can't be used: it was deleted while a kernel had it open (its write-ahead "
                f"log {path}-wal is still there, holding that kernel's latest spend). That kernel moves its spend "
                "into a new file at its next budget use or when it closes; try again then. If no kernel uses "
                f"it any more, delete {path.name}-wal and {path.name}-shm (what they hold is then lost)",
                path,
            )
        # 1 KiB pages for a new file (no effect on an existing one): a call dirties a few pages holding a
        # few small rows each, and every dirty page is written, checksummed and checkpointed whole.
        # synchronous=NORMAL: durable across process crashes, fast. wal_autocheckpoint stays at SQLite's
        # 1000 pages: a longer WAL means fewer checkpoints (two fsyncs each) but slower page lookups on
        # every call, as the few hot pages pile up versions.
        db = open_sqlite(path, _WHAT, pragmas=("PRAGMA page_size=1024", "PRAGMA synchronous=NORMAL"))
        try:
            db.execute("SELECT json_valid('[]')")
        except sqlite3.OperationalError:
            db.close()
            raise ConfigError(
                f"the SQLite ledger needs SQLite's JSON functions, missing from SQLite {sqlite3.sqlite_version}; "
                "use Budget(ledger='memory') or a Python built with a newer SQLite (3.38+ always has them)"
            ) from None
        try:
            migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise storage_error(_WHAT, path, exc) from None
        self._side = side_files(self._spath)
        return db, identity(self._spath)

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r}, namespace={self.ns!r})"

    def _fail(self, exc: sqlite3.Error, doing: str) -> StorageError:
        return storage_error(_WHAT, self.path, exc, doing)

    def _tx(self, work: Callable[..., _T], *args: object) -> _T:
        """Run ``work(*args)`` in a ``BEGIN IMMEDIATE`` transaction (the caller holds the lock)."""
        ex = self._ex
        ex("BEGIN IMMEDIATE")
        try:
            out = work(*args)
            ex("COMMIT")
        except BaseException:
            self._after.clear()
            self._rollback()
            raise
        after, self._after = self._after, []
        for change in after:
            change()
        return out

    def _rollback(self) -> None:
        """Roll back what is open. A failed COMMIT (disk full) has rolled back already: a second ROLLBACK
        would raise "no transaction is active" and hide the real error."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._ex("ROLLBACK")

    # -- the file at our path ----------------------------------------------------------------------
    def _look(self) -> None:
        """Is the file at our path still the one we opened? If not, carry over to it (the lock is held)."""
        if self._carried is not None or identity(self._spath) != self._ident:
            self._carry()

    def _carry(self) -> None:
        """Our file was deleted or replaced: take what it holds, close it, and add that to the file at the
        path (created if need be), going on there.

        Until the new file can be opened (its directory can't be made again, ...), what was taken waits
        here and every use is a StorageError; each use tries again. Taking fails only with the old file
        itself: then we go on recording there (kept while this process lives) and try at the next look.
        """
        if self._carried is None:
            try:
                self._carried = take(self._db)
            except sqlite3.Error as exc:
                warnings.warn(f"coffee_nb: {self._fail(exc, 'carrying spend to a new ledger file')}", stacklevel=5)
                return
            close_aside(self._db, self._spath, self._side)
            self._ex = _closed
        self._look_at = 0.0  # until it is carried, every use looks again
        new, ident = self._connect()  # a StorageError naming the file: the caller's operation fails with it
        carried = self._carried
        try:
            put(new, carried)
        except sqlite3.Error as exc:
            new.close()
            raise self._fail(exc, "carrying spend to a new ledger file") from None
        self._db, self._ident, self._ex, self._carried = new, ident, new.execute, None
        if carried.total or carried.calls:
            warnings.warn(
                f"coffee_nb: the ledger file {self.path} was deleted or replaced while in use; the "
                f"${from_pico(carried.total)} of spend and {len(carried.calls)} call(s) it held were carried "
                "into the file now there",
                BudgetWarning,
                stacklevel=_user_stacklevel(),
            )

    def _js(self, key: tuple[object, ...]) -> str:
        """A bucket list (JSON array) or check list (JSON object bucket -> limit), cached: the same
        few tuples come with every call."""
        text = self._json.get(key)
        if text is None:
            if len(self._json) > 512:  # bucket keys change with each period: forget the old ones
                self._json.clear()
            if key and type(key[0]) is tuple:
                limits: dict[str, int] = {}
                for b, limit in cast("tuple[tuple[str, int], ...]", key):
                    limits[b] = min(limit, limits.get(b, _INT64))
                text = json.dumps(limits)
            else:
                text = json.dumps(list(key))
            self._json[key] = text
        return text

    def _quoted(self, bucket: str) -> str:
        text = self._json.get((bucket, None))
        if text is None:
            text = self._json[(bucket, None)] = json.dumps(bucket)
        return text

    def _rows(self, buckets: Sequence[str]) -> dict[str, tuple[int, int]]:
        """bucket -> (spent, held), for the buckets that have a row; what blocks spent counts as spent, not
        held. Plain SQL (no JSON) per chunk."""
        out: dict[str, tuple[int, int]] = {}
        for i in range(0, len(buckets), _CHUNK):
            part = buckets[i : i + _CHUNK]
            sql = self._reads.get(len(part))
            if sql is None:
                marks = ",".join("?" * len(part))
                sql = self._reads[len(part)] = (
                    f"SELECT bucket, spent, held FROM buckets WHERE ns=? AND bucket IN ({marks})"
                )
            for b, spent, held in self._ex(sql, (self.ns, *part)):
                out[b] = (spent, held)
        for b, pending in self._ex(_blk.PENDING, (self.ns,)):
            if b in out:
                spent, held = out[b]
                out[b] = (spent + pending, held - pending)
        return out

    def _check(self, amount: int, checks: Sequence[tuple[str, int]]) -> LimitHit | None:
        rows = self._rows([b for b, _ in checks])
        for b, limit in checks:
            spent, held = rows.get(b, (0, 0))
            if spent + held + amount > limit:  # Python ints: exact for any limit
                return LimitHit(b, limit, spent, held)
        return None

    def _purge(self, now: float) -> int:
        """Drop expired leases (the delete trigger gives their holds back and folds what blocks spent);
        how many there were."""
        self._tidy_at = now + _TIDY_EVERY
        return self._ex("DELETE FROM leases WHERE ns=? AND expires<=?", (self.ns, now)).rowcount

    def reserve(
        self,
        lease_id: str,
        amount: int,
        buckets: Sequence[str],
        checks: Sequence[tuple[str, int]],
        expires: float,
        now: float,
    ) -> None:
        key: Key = (
            buckets if type(buckets) is tuple else tuple(buckets),
            checks if type(checks) is tuple else tuple(checks),
        )
        with self._lock:
            try:
                if now >= self._look_at:
                    self._look_at = now + _LOOK_EVERY
                    self._look()
                if self._blocks.take(key, lease_id, amount, expires, now):
                    return  # the hot path: no I/O
                hit = None
                if self._blocks.hot(key, now):
                    try:
                        hit = self._tx(self._reserve_hot, key, lease_id, amount, expires, now)
                    except sqlite3.Error:  # a block is only a speed-up: when it can't be written (a full
                        pass  # disk, ...), reserve as for an occasional call, which may still fit
                    else:
                        if hit is None:
                            return
                if hit is None:
                    try:
                        hit = self._reserve_cold(key, lease_id, amount, expires, now)
                    except sqlite3.OperationalError as exc:
                        if getattr(exc, "sqlite_errorname", "") != "SQLITE_FULL" and "full" not in str(exc):
                            raise
                        # a full disk: hold only where a hard limit looks (what enforcement needs), a
                        # smaller write that may still fit where the whole hold does not
                        narrow = (tuple(dict.fromkeys(b for b, _ in key[1])), key[1])
                        hit = self._reserve_cold(narrow, lease_id, amount, expires, now)
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not reserve budget for a call") from None
        if hit is not None:
            raise hit

    def _reserve_cold(self, key: Key, lease_id: str, amount: int, expires: float, now: float) -> LimitHit | None:
        """A reservation of its own, in one statement when the check passes (the lock is held)."""
        buckets, checks = key
        held = self._js(buckets)
        args: tuple[object, ...]
        if len(checks) == 1:  # the usual case: plain SQL
            b, limit = checks[0]
            sql, args = _RESERVE_ONE, (self.ns, lease_id, amount, held, expires, b, min(limit, _INT64))
        elif checks:
            sql, args = _RESERVE_MANY, (self.ns, lease_id, amount, held, expires, self._js(checks))
        else:
            sql, args = _HOLD + "1", (self.ns, lease_id, amount, held, expires)
        if now >= self._tidy_at:
            self._purge(now)
        if self._ex(sql, args).rowcount:
            return None
        return self._tx(self._reserve_exactly, key, lease_id, amount, expires, now)

    def _reserve_exactly(self, key: Key, lease_id: str, amount: int, expires: float, now: float) -> LimitHit | None:
        """Check and hold exactly, in a transaction; a refusal comes back (and the transaction still commits:
        blocks given back stay given back)."""
        buckets, checks = key
        hit = self._check(amount, checks)
        # a hold may be a lease another kernel left behind when it died, or unused headroom of our own
        # blocks: purge, give ours back, then decide again
        if hit is not None and (self._purge(now) + self._give_back()):
            hit = self._check(amount, checks)
        if hit is None:
            self._ex(
                "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
                (self.ns, lease_id, amount, self._js(buckets), expires),
            )
        return hit

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        spend = self._js(buckets if type(buckets) is tuple else tuple(buckets))
        with self._lock:
            taken = self._blocks.leases.get(lease_id)
            block, reserved = (taken[0], taken[1]) if taken is not None and taken[0].json == spend else (None, 0)
            try:
                if call.at >= self._look_at:
                    self._look_at = call.at + _LOOK_EVERY
                    self._look()
                if (
                    block is not None
                    and len(watch) <= 1
                    and not block.retired
                    and not Blocks.over(block, reserved, amount)
                ):
                    spent = self._commit_hot(lease_id, amount, spend, call, block, watch[0] if watch else None)
                else:
                    spent = self._tx(self._commit, lease_id, amount, spend, call, block, reserved, watch)
            except sqlite3.Error as exc:
                raise self._fail(exc, f"could not record the cost of a call to {call.model}") from None
            if taken is not None:
                self._blocks.settle(lease_id, amount if spent is not None and block is not None else None)
            return spent

    def release(self, lease_id: str) -> None:
        with self._lock:
            taken = self._blocks.leases.get(lease_id)
            if taken is not None:
                if taken[0].retired:  # its block was given back: so is what this reservation held
                    try:
                        self._tx(self._settle_retired, taken[0], taken[1], taken[1])
                    except sqlite3.Error as exc:
                        raise self._fail(exc, "could not release a reservation") from None
                self._blocks.settle(lease_id, None)  # taken from a block: given back to it, in memory
                return
            try:
                # one statement is its own transaction, the delete trigger included
                self._ex("DELETE FROM leases WHERE ns=? AND id=?", (self.ns, lease_id))
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not release a reservation") from None

    def spent(self, buckets: Sequence[str]) -> list[int]:
        with self._lock:
            try:
                self._look()
                rows = self._rows(buckets)
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not read the spend") from None
        return [rows.get(b, (0, 0))[0] for b in buckets]

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            try:
                self._look()
                # what is on hold right now, for display: expired leases go first
                if self._ex("SELECT 1 FROM leases WHERE ns=? AND expires<=? LIMIT 1", (self.ns, now)).fetchone():
                    self._purge(now)
                rows = self._rows(buckets)
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not read the reservations") from None
            # our own blocks' unused headroom is not in flight (other kernels' is, as far as we can know)
            unused: dict[str, int] = {}
            for block in self._blocks.by_key.values():
                if block.free > 0 and block.expires > now:
                    for b in block.buckets:
                        unused[b] = unused.get(b, 0) + block.free
        return [rows.get(b, (0, 0))[1] - unused.get(b, 0) for b in buckets]

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        def reset() -> None:
            ex = self._ex
            ex(_blk.FOLD, (self.ns,))  # what blocks spent goes into the buckets first, to be reset with them
            if prefixes is None:
                ex("UPDATE buckets SET spent = 0 WHERE ns=?", (self.ns,))
            else:
                for p in prefixes:
                    ex("UPDATE buckets SET spent = 0 WHERE ns=? AND substr(bucket, 1, ?) = ?", (self.ns, len(p), p))
            ex("DELETE FROM buckets WHERE ns=? AND spent = 0 AND held = 0", (self.ns,))

        with self._lock:
            try:
                self._look()
                self._tx(reset)
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not reset the spend") from None

    def calls(self, limit: int | None = None) -> list[CallRow]:
        with self._lock:
            try:
                self._look()
                if limit:
                    rows = self._ex(
                        "SELECT id, model, amount, at, priced FROM "
                        "(SELECT * FROM calls WHERE ns=? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                        (self.ns, limit),
                    ).fetchall()
                else:
                    rows = self._ex(
                        "SELECT id, model, amount, at, priced FROM calls WHERE ns=? ORDER BY seq", (self.ns,)
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail(exc, "could not read the call history") from None
        return [CallRow(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def close(self) -> None:
        """Write the spend still waiting for this ledger (a write failed earlier), give our blocks back and
        close the connection (idempotent). A file deleted meanwhile has its spend carried first."""
        flush_for(self, "closing the ledger")  # before the lock: it commits through this ledger
        with self._lock:
            if self._ex is _closed and self._carried is None:
                return
            try:
                self._look()
                if self._blocks.by_key:
                    self._tx(self._return_all)
            except (sqlite3.Error, StorageError) as exc:
                if self._carried is not None:
                    warnings.warn(f"coffee_nb: closing with spend never carried over: {exc}", stacklevel=3)
            self._db.close()
            self._ex = _closed
            self._carried = None


def _close_at_exit(ref: weakref.ref[SQLiteLedger]) -> None:
    ledger = ref()
    if ledger is not None:
        with suppress(Exception):
            ledger.close()


def _closed(*args: object) -> sqlite3.Cursor:
    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
