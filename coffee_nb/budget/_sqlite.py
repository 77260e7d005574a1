"""SQLite ledger: the default for notebooks. WAL mode; several kernels on one machine share it safely.

Writers serialize with ``BEGIN IMMEDIATE``; each reserve/commit is one short transaction touching a
few rows, so spend queries never scan history.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from coffee_nb.budget._ledger import CallRow, LimitHit

__all__ = ["SQLiteLedger", "default_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (ns TEXT NOT NULL, bucket TEXT NOT NULL, amount INTEGER NOT NULL,
                                  PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (ns TEXT NOT NULL, bucket TEXT NOT NULL, amount INTEGER NOT NULL,
                                 PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (ns TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL,
                                   buckets TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (ns, id));
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (ns, expires);
CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, id TEXT NOT NULL,
                                  model TEXT NOT NULL, amount INTEGER NOT NULL, at REAL NOT NULL,
                                  priced INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS calls_by_id ON calls (ns, id);
"""


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
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r}, namespace={self.ns!r})"

    def _tx(self) -> sqlite3.Cursor:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        return cur

    def _purge(self, cur: sqlite3.Cursor, now: float) -> None:
        rows = cur.execute("SELECT id, amount, buckets FROM leases WHERE ns=? AND expires<=?", (self.ns, now)).fetchall()
        for lease_id, amount, buckets in rows:
            self._unhold(cur, lease_id, amount, buckets)

    def _unhold(self, cur: sqlite3.Cursor, lease_id: str, amount: int, buckets: str) -> None:
        for b in buckets.split("\n") if buckets else ():
            cur.execute("UPDATE held SET amount = amount - ? WHERE ns=? AND bucket=?", (amount, self.ns, b))
        cur.execute("DELETE FROM leases WHERE ns=? AND id=?", (self.ns, lease_id))

    def _get(self, cur: sqlite3.Cursor, table: str, bucket: str) -> int:
        row = cur.execute(f"SELECT amount FROM {table} WHERE ns=? AND bucket=?", (self.ns, bucket)).fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def reserve(
        self, lease_id: str, amount: int, buckets: Sequence[str], checks: Sequence[tuple[str, int]], expires: float, now: float
    ) -> None:
        with self._lock:
            cur = self._tx()
            try:
                self._purge(cur, now)
                for b, limit in checks:
                    spent, held = self._get(cur, "spend", b), self._get(cur, "held", b)
                    if spent + held + amount > limit:
                        raise LimitHit(b, limit, spent, held)
                cur.execute(
                    "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
                    (self.ns, lease_id, amount, "\n".join(buckets), expires),
                )
                cur.executemany(
                    "INSERT INTO held (ns, bucket, amount) VALUES (?,?,?) "
                    "ON CONFLICT (ns, bucket) DO UPDATE SET amount = amount + excluded.amount",
                    [(self.ns, b, amount) for b in buckets],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def commit(
        self, lease_id: str, amount: int, buckets: Sequence[str], call: CallRow, watch: Sequence[str] = ()
    ) -> list[int] | None:
        with self._lock:
            cur = self._tx()
            try:
                inserted = cur.execute(
                    "INSERT OR IGNORE INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,?)",
                    (self.ns, lease_id, call.model, amount, call.at, int(call.priced)),
                ).rowcount
                if not inserted:
                    cur.execute("ROLLBACK")
                    return None
                lease = cur.execute(
                    "SELECT amount, buckets FROM leases WHERE ns=? AND id=?", (self.ns, lease_id)
                ).fetchone()
                if lease is not None:
                    self._unhold(cur, lease_id, lease[0], lease[1])
                cur.executemany(
                    "INSERT INTO spend (ns, bucket, amount) VALUES (?,?,?) "
                    "ON CONFLICT (ns, bucket) DO UPDATE SET amount = amount + excluded.amount",
                    [(self.ns, b, amount) for b in buckets],
                )
                spent = [self._get(cur, "spend", b) for b in watch]
                cur.execute("COMMIT")
                return spent
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def release(self, lease_id: str) -> None:
        with self._lock:
            cur = self._tx()
            try:
                lease = cur.execute(
                    "SELECT amount, buckets FROM leases WHERE ns=? AND id=?", (self.ns, lease_id)
                ).fetchone()
                if lease is not None:
                    self._unhold(cur, lease_id, lease[0], lease[1])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def _read(self, table: str, buckets: Sequence[str]) -> list[int]:
        with self._lock:
            cur = self._db.cursor()
            return [self._get(cur, table, b) for b in buckets]

    def spent(self, buckets: Sequence[str]) -> list[int]:
        return self._read("spend", buckets)

    def reserved(self, buckets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            cur = self._db.cursor()
            expired = cur.execute(
                "SELECT 1 FROM leases WHERE ns=? AND expires<=? LIMIT 1", (self.ns, now)
            ).fetchone()
        if expired:
            with self._lock:
                cur = self._tx()
                try:
                    self._purge(cur, now)
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
        return self._read("held", buckets)

    def reset(self, prefixes: Sequence[str] | None = None) -> None:
        with self._lock:
            cur = self._tx()
            try:
                if prefixes is None:
                    cur.execute("DELETE FROM spend WHERE ns=?", (self.ns,))
                else:
                    for p in prefixes:
                        cur.execute(
                            "DELETE FROM spend WHERE ns=? AND substr(bucket, 1, ?) = ?", (self.ns, len(p), p)
                        )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def calls(self, limit: int | None = None) -> list[CallRow]:
        with self._lock:
            if limit:
                rows = self._db.execute(
                    "SELECT id, model, amount, at, priced FROM (SELECT * FROM calls WHERE ns=? ORDER BY seq DESC LIMIT ?) "
                    "ORDER BY seq",
                    (self.ns, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT id, model, amount, at, priced FROM calls WHERE ns=? ORDER BY seq", (self.ns,)
                ).fetchall()
        return [CallRow(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
