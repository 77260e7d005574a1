"""Where coffee_nb keeps its per-user files, and how it opens SQLite there.

Shared by the SQLite ledger and the response cache, so neither imports the other.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["data_dir", "open_sqlite"]


def data_dir() -> Path:
    """``$COFFEE_NB_DATA_DIR``, else the per-user data directory (read each time: tests and users move it)."""
    env = os.environ.get("COFFEE_NB_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("coffee_nb", appauthor=False))


def open_sqlite(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection several threads and kernels can share: WAL journal, 30 s busy timeout, autocommit
    (callers open their own transactions). Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        db.close()
        raise
    return db
