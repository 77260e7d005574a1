"""The SQLite ledger's file: its schema (version 3) and the migrations from versions 1 and 2, and what
happens when the file is deleted or replaced while a ledger has it open.

A deleted file lives on for the connections that have it open. What it holds is taken out (and the old
file emptied in the same transaction, so another kernel still holding it carries nothing twice), the old
connection closed, and the rows written into the file now at the path. WAL files go by name: SQLite
deletes ``-wal``/``-shm`` when a file's last connection closes, so side files that belong to a newer
file are stepped aside around that close; and a new file is not opened beside an orphaned ``-wal``
(its main file deleted under a live kernel), whose pages would be read as its own."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import suppress
from typing import NamedTuple

__all__ = ["Carried", "close_aside", "identity", "migrate", "orphaned_wal", "put", "side_files", "take"]

# PRAGMA user_version; version 1 (unnumbered) kept spend and holds in separate tables; version 2 had no
# leases.spent (what a block spent, not yet moved into its buckets: see _sqlite_blocks)
_VERSION = 3

# Bucket lists are JSON arrays, so triggers can walk them; a list is stored as given (a bucket named
# twice counts twice, as in the other ledgers). A lease's amount is all it holds, its ``spent`` included:
# adding to ``spent`` alone (a block's commit) writes no bucket; lowering ``spent`` (folding) or changing
# the amount moves the difference into the buckets, and deleting a lease folds what it spent.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (ns TEXT NOT NULL, bucket TEXT NOT NULL, spent INTEGER NOT NULL DEFAULT 0,
                                    held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (ns TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL,
                                   buckets TEXT NOT NULL, expires REAL NOT NULL,
                                   spent INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS leases_hold AFTER INSERT ON leases BEGIN
    INSERT INTO buckets (ns, bucket, held) SELECT NEW.ns, value, NEW.amount FROM json_each(NEW.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET held = held + excluded.held;
END;
CREATE TRIGGER IF NOT EXISTS leases_unhold AFTER DELETE ON leases BEGIN
    INSERT INTO buckets (ns, bucket, spent, held)
    SELECT OLD.ns, value, OLD.spent, -OLD.amount FROM json_each(OLD.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent, held = held + excluded.held;
END;
CREATE TRIGGER IF NOT EXISTS leases_move AFTER UPDATE OF amount, spent ON leases
WHEN NEW.amount != OLD.amount OR NEW.spent < OLD.spent BEGIN
    INSERT INTO buckets (ns, bucket, spent, held)
    SELECT NEW.ns, value, max(OLD.spent - NEW.spent, 0), NEW.amount - OLD.amount FROM json_each(NEW.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent, held = held + excluded.held;
END;
CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, id TEXT NOT NULL,
                                  model TEXT NOT NULL, amount INTEGER NOT NULL, at REAL NOT NULL,
                                  priced INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS calls_by_id ON calls (ns, id);
CREATE TRIGGER IF NOT EXISTS calls_settle AFTER INSERT ON calls BEGIN
    DELETE FROM leases WHERE ns = NEW.ns AND id = NEW.id;
END;
"""

_SQL_PUT = (
    "INSERT INTO buckets (ns, bucket, spent) VALUES (?,?,?) "
    "ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent",
    "INSERT OR IGNORE INTO leases (ns, id, amount, buckets, expires) VALUES (?,?,?,?,?)",
    "INSERT OR IGNORE INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,?)",
)
_SIDE = ("-wal", "-shm")


class Carried(NamedTuple):
    """What a deleted or replaced ledger file held, on its way to the file now at the path."""

    buckets: list[tuple[str, str, int]]
    leases: list[tuple[str, str, int, str, float]]
    calls: list[tuple[str, str, str, int, float, int]]
    total: int  # all-time spend (picodollars), for the message


def identity(path: str) -> tuple[int, int] | None:
    """(inode, device) of the file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev


def migrate(db: sqlite3.Connection) -> None:
    """Bring a file to schema version 3 in one transaction (a new file gets the schema)."""
    ex = db.execute
    ex("BEGIN IMMEDIATE")
    try:
        version = ex("PRAGMA user_version").fetchone()[0]
        if version < _VERSION:
            old = ex("SELECT 1 FROM sqlite_master WHERE type='table' AND name='spend'").fetchone()
            if version == 2:
                # leases gain ``spent``; the schema below remakes the delete trigger and adds the update one
                ex("ALTER TABLE leases ADD COLUMN spent INTEGER NOT NULL DEFAULT 0")
                ex("DROP TRIGGER leases_unhold")
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


def side_files(path: str) -> tuple[tuple[int, int] | None, ...]:
    """Identities of the ``-wal`` and ``-shm`` files of ``path`` (None where there is none)."""
    return tuple(identity(path + suffix) for suffix in _SIDE)


def orphaned_wal(path: str) -> bool:
    """A ``-wal`` with content beside a missing or empty main file: the file was deleted under a live kernel."""
    try:
        main = os.stat(path).st_size
    except OSError:
        main = 0
    try:
        wal = os.stat(path + "-wal").st_size
    except OSError:
        wal = 0
    return main == 0 and wal > 0


def take(old: sqlite3.Connection) -> Carried:
    """Everything ``old`` holds, removed from it in the same transaction."""
    ex = old.execute
    ex("BEGIN IMMEDIATE")
    try:
        ex("UPDATE leases SET amount = amount - spent, spent = 0 WHERE spent != 0")  # blocks' spend: into buckets
        carried = Carried(
            ex("SELECT ns, bucket, spent FROM buckets WHERE spent != 0").fetchall(),
            ex("SELECT ns, id, amount, buckets, expires FROM leases").fetchall(),
            ex("SELECT ns, id, model, amount, at, priced FROM calls ORDER BY seq").fetchall(),
            ex("SELECT coalesce(sum(spent), 0) FROM buckets WHERE bucket = 'global|total'").fetchone()[0],
        )
        for table in ("calls", "leases", "buckets"):
            ex(f"DELETE FROM {table}")
        ex("COMMIT")
    except BaseException:
        if old.in_transaction:
            with suppress(sqlite3.Error):
                ex("ROLLBACK")
        raise
    return carried


def put(new: sqlite3.Connection, carried: Carried) -> None:
    """Add ``carried`` to the file of ``new``, in one transaction."""
    ex = new.execute
    ex("BEGIN IMMEDIATE")
    try:
        new.executemany(_SQL_PUT[0], carried.buckets)
        new.executemany(_SQL_PUT[1], carried.leases)
        new.executemany(_SQL_PUT[2], carried.calls)
        ex("COMMIT")
    except BaseException:
        if new.in_transaction:
            with suppress(sqlite3.Error):
                ex("ROLLBACK")
        raise


def close_aside(old: sqlite3.Connection, path: str, mine: tuple[tuple[int, int] | None, ...]) -> None:
    """Close the connection of a deleted or replaced file, and remove its own side files (``mine``: their
    identities when it was opened). SQLite removes a file's side files by name when its last connection
    closes, unless the file was unlinked: side files at ``path`` that belong to the newer file there are
    stepped aside around the close, so that a file merely renamed away can't take them along."""
    stepped: list[tuple[str, str]] = []
    for suffix, own in zip(_SIDE, mine, strict=True):
        name = path + suffix
        now = identity(name)
        if now is not None and now != own:
            aside = f"{name}.coffee_nb-{os.getpid()}"
            with suppress(OSError):
                os.rename(name, aside)
                stepped.append((aside, name))
    try:
        with suppress(sqlite3.Error):
            old.close()
    finally:
        for aside, name in stepped:
            with suppress(OSError):
                os.rename(aside, name)
    # SQLite leaves the side files of an unlinked file behind: ours are orphans now, and a new file at
    # the path would read their pages as its own
    for suffix, own in zip(_SIDE, mine, strict=True):
        if own is not None and identity(path + suffix) == own:
            with suppress(OSError):
                os.remove(path + suffix)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
