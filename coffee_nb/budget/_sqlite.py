"""SQLite ledger: the default for notebooks. WAL mode; several kernels on one machine share it safely.

A reserve and a commit are one short write transaction each. What they cost is mostly the pages they
dirty (each is a WAL frame written) and the SQL they run while the CPU caches are cold from the rest of
the call, so the layout keeps both small (numbers in ``benchmarks/overhead.py``):

- a bucket's spend and holds are one row of ``buckets``;
- a lease is one row of a ``WITHOUT ROWID`` table, and triggers keep ``buckets.held`` equal to the sum
  of the leases: inserting a lease holds, deleting one (commit, release, expiry) gives the hold back;
- a reserve is one statement (check and hold); only when a check fails does Python decide again, after
  purging expired leases. A stale hold can only make a check stricter, so purging lazily is exact.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar, cast

from coffee_nb._errors import ConfigError
from coffee_nb.budget._ledger import CallRow, LimitHit

__all__ = ["SQLiteLedger", "default_path"]

_T = TypeVar("_T")

_VERSION = 2  # PRAGMA user_version; version 1 (unnumbered) kept spend and holds in separate tables

# Bucket lists are JSON arrays, so triggers can walk them; a list is stored as given (a bucket named
# twice counts twice, as in the other ledgers).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (ns TEXT NOT NULL, bucket TEXT NOT NULL, spent INTEGER NOT NULL DEFAULT 0,
                                    held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (ns TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL,
                                   buckets TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS leases_hold AFTER INSERT ON leases BEGIN
    INSERT INTO buckets (ns, bucket, held) SELECT NEW.ns, value, NEW.amount FROM json_each(NEW.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET held = held + excluded.held;
END;
CREATE TRIGGER IF NOT EXISTS leases_unhold AFTER DELETE ON leases BEGIN
    INSERT INTO buckets (ns, bucket, held) SELECT OLD.ns, value, -OLD.amount FROM json_each(OLD.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET held = held + excluded.held;
END;
CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, id TEXT NOT NULL,
                                  model TEXT NOT NULL, amount INTEGER NOT NULL, at REAL NOT NULL,
                                  priced INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS calls_by_id ON calls (ns, id);
CREATE TRIGGER IF NOT EXISTS calls_settle AFTER INSERT ON calls BEGIN
    DELETE FROM leases WHERE ns = NEW.ns AND id = NEW.id;
END;
"""

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
_SPEND = (
    "INSERT INTO buckets (ns, bucket, spent) SELECT ?1, value, ?2 FROM json_each(?3) WHERE 1 "
    "ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent"
)
_INT64 = 2**63 - 1  # larger limits are bound as this (SQLite integers stop here; no amount reaches it)
_TIDY_EVERY = 60.0  # seconds between purges that only tidy up (correctness never waits for them)
_CHUNK = 500  # bucket keys per IN (...) list: under every SQLite's limit on bound parameters


def default_path() -> Path:
    """``$COFFEE_NB_DATA_DIR/ledger.sqlite3``, else the per-user data directory."""
    env = os.environ.get("COFFEE_NB_DATA_DIR")
    if env:
        base = Path(env)
    else:
        from platformdirs import user_data_dir

        base = Path(user_data_dir("coffee_nb", appauthor=False))
    return base / "ledger.sqlite3"


class SQLiteLedger:
    def __init__(self, path: str | os.PathLike[str] | None = None, *, namespace: str = "default") -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ns = namespace
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        ex = self._ex = self._db.execute
        try:
            ex("SELECT json_valid('[]')")
        except sqlite3.OperationalError:
            self._db.close()
            raise ConfigError(
                f"the SQLite ledger needs SQLite's JSON functions, missing from SQLite {sqlite3.sqlite_version}; "
                "use Budget(ledger='memory') or a Python built with a newer SQLite (3.38+ always has them)"
            ) from None
        # 1 KiB pages for a new file (no effect on an existing one): a call dirties a few pages holding a
        # few small rows each, and every dirty page is written, checksummed and checkpointed whole
        ex("PRAGMA page_size=1024")
        ex("PRAGMA journal_mode=WAL")
        ex("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast
        ex("PRAGMA busy_timeout=30000")
        # wal_autocheckpoint stays at SQLite's 1000 pages: a longer WAL means fewer checkpoints (two
        # fsyncs each) but slower page lookups on every call, as the few hot pages pile up versions
        self._json: dict[tuple[object, ...], str] = {}
        self._reads: dict[int, str] = {}
        self._tidy_at = 0.0
        with self._lock:
            self._migrate()

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r}, namespace={self.ns!r})"

    def _tx(self, work: Callable[..., _T], *args: object) -> _T:
        """Run ``work(*args)`` in a ``BEGIN IMMEDIATE`` transaction (the caller holds the lock)."""
        ex = self._ex
        ex("BEGIN IMMEDIATE")
        try:
            out = work(*args)
            ex("COMMIT")
        except BaseException:
            ex("ROLLBACK")
            raise
        return out

    def _migrate(self) -> None:
        def migrate() -> None:
            ex = self._ex
            if ex("PRAGMA user_version").fetchone()[0] >= _VERSION:
                return
            old = ex("SELECT 1 FROM sqlite_master WHERE type='table' AND name='spend'").fetchone()
            if old:
                ex("ALTER TABLE leases RENAME TO leases_v1")
            for stmt in _statements(_SCHEMA):  # not executescript: it would commit first
                ex(stmt)
            if old:
                # spend carries over; the hold trigger rebuilds the holds from the leases
                ex("INSERT INTO buckets (ns, bucket, spent) SELECT ns, bucket, amount FROM spend")
                rows = ex("SELECT ns, id, amount, buckets, expires FROM leases_v1").fetchall()
                self._db.executemany(
                    "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
                    [(ns, i, a, json.dumps(b.split("\n") if b else []), e) for ns, i, a, b, e in rows],
                )
                for table in ("spend", "held", "leases_v1"):
                    ex(f"DROP TABLE {table}")
            ex(f"PRAGMA user_version={_VERSION}")

        self._tx(migrate)

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

    def _rows(self, buckets: Sequence[str]) -> dict[str, tuple[int, int]]:
        """bucket -> (spent, held), for the buckets that have a row; plain SQL (no JSON) per chunk."""
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
        return out

    def _check(self, amount: int, checks: Sequence[tuple[str, int]]) -> LimitHit | None:
        rows = self._rows([b for b, _ in checks])
        for b, limit in checks:
            spent, held = rows.get(b, (0, 0))
            if spent + held + amount > limit:  # Python ints: exact for any limit
                return LimitHit(b, limit, spent, held)
        return None

    def _purge(self, now: float) -> int:
        """Drop expired leases (the delete trigger gives their holds back); how many there were."""
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
        ns = self.ns
        held = self._js(buckets if type(buckets) is tuple else tuple(buckets))
        args: tuple[object, ...]
        if len(checks) == 1:  # the usual case: plain SQL
            b, limit = checks[0]
            sql, args = _RESERVE_ONE, (ns, lease_id, amount, held, expires, b, min(limit, _INT64))
        elif checks:
            limits = self._js(checks if type(checks) is tuple else tuple(checks))
            sql, args = _RESERVE_MANY, (ns, lease_id, amount, held, expires, limits)
        else:
            sql, args = _HOLD + "1", (ns, lease_id, amount, held, expires)
        with self._lock:
            if now >= self._tidy_at:
                self._purge(now)
            if self._ex(sql, args).rowcount:
                return
            self._tx(self._reserve_exactly, lease_id, amount, held, checks, expires, now)

    def _reserve_exactly(
        self, lease_id: str, amount: int, held: str, checks: Sequence[tuple[str, int]], expires: float, now: float
    ) -> None:
        hit = self._check(amount, checks)
        # a hold may be a lease another kernel left behind when it died: purge, then decide again
        if hit is not None and self._purge(now):
            hit = self._check(amount, checks)
        if hit is not None:
            raise hit
        self._ex(
            "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
            (self.ns, lease_id, amount, held, expires),
        )

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        ns, ex = self.ns, self._ex
        spend = self._js(buckets if type(buckets) is tuple else tuple(buckets))
        with self._lock:
            ex("BEGIN IMMEDIATE")
            try:
                # the unique (ns, id) index makes a second commit of a lease a no-op; the insert
                # trigger drops the lease, and the delete trigger its hold (unless it expired already)
                if not ex(
                    "INSERT OR IGNORE INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,?)",
                    (ns, lease_id, call.model, amount, call.at, int(call.priced)),
                ).rowcount:
                    ex("ROLLBACK")
                    return None
                ex(_SPEND, (ns, amount, spend))
                if len(watch) == 1:  # the usual case; a plain lookup is cheapest
                    row = ex("SELECT spent FROM buckets WHERE ns=? AND bucket=?", (ns, watch[0])).fetchone()
                    spent = [row[0] if row else 0]
                else:
                    rows = self._rows(watch) if watch else {}
                    spent = [rows.get(b, (0, 0))[0] for b in watch]
                ex("COMMIT")
            except BaseException:
                ex("ROLLBACK")
                raise
            return spent

    def release(self, lease_id: str) -> None:
        with self._lock:
            # one statement is its own transaction, the delete trigger included
            self._ex("DELETE FROM leases WHERE ns=? AND id=?", (self.ns, lease_id))

    def spent(self, buckets: Sequence[str]) -> list[int]:
        with self._lock:
            rows = self._rows(buckets)
        return [rows.get(b, (0, 0))[0] for b in buckets]

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            # what is on hold right now, for display: expired leases go first
            if self._ex("SELECT 1 FROM leases WHERE ns=? AND expires<=? LIMIT 1", (self.ns, now)).fetchone():
                self._purge(now)
            rows = self._rows(buckets)
        return [rows.get(b, (0, 0))[1] for b in buckets]

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        def reset() -> None:
            ex = self._ex
            if prefixes is None:
                ex("UPDATE buckets SET spent = 0 WHERE ns=?", (self.ns,))
            else:
                for p in prefixes:
                    ex("UPDATE buckets SET spent = 0 WHERE ns=? AND substr(bucket, 1, ?) = ?", (self.ns, len(p), p))
            ex("DELETE FROM buckets WHERE ns=? AND spent = 0 AND held = 0", (self.ns,))

        with self._lock:
            self._tx(reset)

    def calls(self, limit: int | None = None) -> list[CallRow]:
        with self._lock:
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
        return [CallRow(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
