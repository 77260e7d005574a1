"""Where coffee_nb keeps its per-user files, how it opens SQLite there, and what it says when it can't.

Shared by the SQLite ledger and the response cache, so neither imports the other. Every storage
failure becomes a :class:`StorageError` that names the file, says what is wrong and what to do:
a raw ``sqlite3.OperationalError`` in a notebook cell names nothing.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from coffee_nb._shared._exceptions import ConfigError

__all__ = ["StorageError", "data_dir", "open_sqlite", "prepare_path", "storage_error"]

_MOVE = "set COFFEE_NB_DATA_DIR to another directory (or give another path)"


class StorageError(ConfigError):
    """A file coffee_nb keeps (the budget ledger, the response cache) can't be opened, read or written.

    A ``ConfigError`` (and so a ``ValueError``) because the fix is nearly always where the file lives.
    """

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.path = path  # a file, or a ledger's (credential-free) URL


def data_dir() -> Path:
    """``$COFFEE_NB_DATA_DIR``, else the per-user data directory (read each time: tests and users move it)."""
    env = os.environ.get("COFFEE_NB_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir  # lazy: platformdirs

    return Path(user_data_dir("coffee_nb", appauthor=False))


def _reason(exc: BaseException) -> tuple[str, str]:
    """(what is wrong, what to do) for a storage exception."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return "the disk holding it is full", "free some space, or " + _MOVE
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            return (
                "it is not a SQLite database (another kind of file, or overwritten)",
                "move it aside (what it recorded is then no longer counted), or " + _MOVE,
            )
        if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            return (
                "it is damaged (truncated or partly overwritten)",
                "move it aside (what it recorded is then no longer counted), or " + _MOVE,
            )
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return "it is read-only", "make it and its directory writable, or " + _MOVE
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return (
                "it can't be opened (a directory, or in a directory that is missing or read-only)",
                "check the path and its permissions, or " + _MOVE,
            )
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            return "another process has kept it locked for 30 s", "close other kernels using it, or try again"
        if name.startswith("SQLITE_IOERR") or "I/O error" in text:
            return f"the disk reported an error ({text})", "check the disk, or " + _MOVE
        return f"SQLite reported: {text}", _MOVE
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.ENOSPC, errno.EDQUOT):
            return "the disk holding it is full", "free some space, or " + _MOVE
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            where = f"{exc.filename} " if exc.filename else "its directory "
            return f"{where}can't be written (read-only)", "make it writable, or " + _MOVE
        if code in (errno.ENOTDIR, errno.EEXIST):
            return "a file stands where its directory should be", "give a path inside a directory, or " + _MOVE
        if code == errno.EISDIR:
            return "it is a directory", "give a file path like …/ledger.sqlite3"
        return f"the system reported: {exc.strerror or exc}", _MOVE
    return f"{type(exc).__name__}: {exc}", _MOVE


def storage_error(what: str, path: str | os.PathLike[str], exc: BaseException, doing: str = "") -> StorageError:
    """A :class:`StorageError` for ``exc`` raised while using ``what`` (e.g. "ledger") at ``path``."""
    wrong, todo = _reason(exc)
    parent = Path(path).parent
    name = getattr(exc, "sqlite_errorname", "") or ""
    unwritable = isinstance(exc, PermissionError) or name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY"))
    if unwritable and parent.is_dir() and not os.access(parent, os.W_OK):
        wrong, todo = f"its directory {parent} is read-only", "make it writable, or " + _MOVE
    lead = f"{doing}: " if doing else ""
    return StorageError(f"{lead}the {what} at {path} can't be used: {wrong}; {todo}", path)


def prepare_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path whose directory exists (created if needed); a directory or a file standing in
    for a directory is a :class:`StorageError` naming the path."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise StorageError(
            f"the {what} at {p} can't be used: it is a directory; give a file path like {p / 'x.sqlite3'}", p
        )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(what, p, exc) from None
    return p


def open_sqlite(
    path: str | os.PathLike[str], what: str = "response cache", *, pragmas: Sequence[str] = ()
) -> sqlite3.Connection:
    """A connection several threads and kernels can share: WAL journal, 30 s busy timeout, autocommit
    (callers open their own transactions). Creates the parent directory; ``pragmas`` run first (e.g. a
    page size, which only a new file takes). Anything wrong is a :class:`StorageError` naming the file."""
    p = prepare_path(path, what)
    try:
        db = sqlite3.connect(p, timeout=30, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise storage_error(what, p, exc) from None
    try:
        for pragma in (*pragmas, "PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=30000"):
            db.execute(pragma)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: garbage fails here
    except sqlite3.Error as exc:
        db.close()
        raise storage_error(what, p, exc) from None
    except BaseException:
        db.close()
        raise
    return db
