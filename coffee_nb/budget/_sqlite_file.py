"""The SQLite ledger's file: its schema (version 2) and the migration from version 1, and what happens
when the file is deleted or replaced while a ledger has it open (its contents are carried over)."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import suppress

__all__ = ["carry", "identity", "migrate"]

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

# Carry what a deleted/replaced file holds into the file now at the path ("fresh"), and empty the old
# one in the same transaction: another kernel still holding the old file then carries nothing twice.
_CARRY = (
    "INSERT INTO fresh.buckets (ns, bucket, spent) SELECT ns, bucket, spent FROM main.buckets WHERE spent != 0 "
    "ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent",
    "INSERT OR IGNORE INTO fresh.leases (ns, id, amount, buckets, expires) "
    "SELECT ns, id, amount, buckets, expires FROM main.leases",
    "INSERT OR IGNORE INTO fresh.calls (ns, id, model, amount, at, priced) "
    "SELECT ns, id, model, amount, at, priced FROM main.calls ORDER BY seq",
    "DELETE FROM main.calls",
    "DELETE FROM main.leases",
    "DELETE FROM main.buckets",
)


def identity(path: str) -> tuple[int, int] | None:
    """(inode, device) of the file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev


def migrate(db: sqlite3.Connection) -> None:
    """Bring a file to schema version 2 in one transaction (a new file gets the schema)."""
    ex = db.execute
    ex("BEGIN IMMEDIATE")
    try:
        if ex("PRAGMA user_version").fetchone()[0] < _VERSION:
            old = ex("SELECT 1 FROM sqlite_master WHERE type='table' AND name='spend'").fetchone()
            if old:
                ex("ALTER TABLE leases RENAME TO leases_v1")
            for stmt in _statements(_SCHEMA):  # not executescript: it would commit first
                ex(stmt)
            if old:
                # spend carries over; the hold trigger rebuilds the holds from the leases
                ex("INSERT INTO buckets (ns, bucket, spent) SELECT ns, bucket, amount FROM spend")
                rows = ex("SELECT ns, id, amount, buckets, expires FROM leases_v1").fetchall()
                db.executemany(
                    "INSERT INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
                    [(ns, i, a, json.dumps(b.split("\n") if b else []), e) for ns, i, a, b, e in rows],
                )
                for table in ("spend", "held", "leases_v1"):
                    ex(f"DROP TABLE {table}")
            ex(f"PRAGMA user_version={_VERSION}")
        ex("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                ex("ROLLBACK")
        raise


def carry(old: sqlite3.Connection, path: str) -> tuple[int, int]:
    """Move everything ``old`` (a deleted or replaced file) holds into the file now at ``path`` (which
    has the schema), emptying ``old`` in the same transaction; (total spend in picodollars, calls) moved."""
    old.execute("ATTACH DATABASE ? AS fresh", (path,))
    try:
        old.execute("BEGIN IMMEDIATE")
        try:
            total, calls = old.execute(
                "SELECT coalesce(sum(spent), 0), (SELECT count(*) FROM main.calls) FROM main.buckets "
                "WHERE bucket = 'global|total'"
            ).fetchone()
            for stmt in _CARRY:
                old.execute(stmt)
            old.execute("COMMIT")
        except BaseException:
            if old.in_transaction:
                with suppress(sqlite3.Error):
                    old.execute("ROLLBACK")
            raise
    finally:
        with suppress(sqlite3.Error):
            old.execute("DETACH DATABASE fresh")
    return int(total), int(calls)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
