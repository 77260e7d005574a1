"""Response cache: an identical request (models, messages, parameters) is answered from SQLite at $0.

Lives next to the ledger (``$COFFEE_NB_DATA_DIR/cache.sqlite3`` by default), so re-running a
notebook never re-bills, even after a kernel restart.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coffee_nb._paths import data_dir, open_sqlite

__all__ = ["ResponseCache", "request_key"]


def request_key(models: Sequence[str], messages: Sequence[Any], params: dict[str, Any]) -> str:
    """A stable hash of what was asked: the chain, each message's role and content, and parameters."""
    payload = {
        "models": list(models),
        "messages": [[getattr(m, "type", "?"), getattr(m, "content", m)] for m in messages],
        "params": {k: v for k, v in sorted(params.items()) if v is not None},
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache:
    """``get(key)`` / ``put(key, message, meta)`` over one SQLite table."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "cache.sqlite3"
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL NOT NULL, "
            "message TEXT NOT NULL, meta TEXT NOT NULL)"
        )

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def get(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        from langchain_core.messages import messages_from_dict

        with self._lock:
            row = self._db.execute("SELECT message, meta FROM responses WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        message = messages_from_dict([json.loads(row[0])])[0]
        return message, json.loads(row[1])

    def put(self, key: str, message: Any, meta: dict[str, Any]) -> None:
        from langchain_core.messages import message_to_dict

        data = message_to_dict(message)
        data["data"]["response_metadata"] = {
            k: v for k, v in data["data"].get("response_metadata", {}).items() if k != "coffee_nb"
        }
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, created, message, meta) VALUES (?,?,?,?)",
                (key, time.time(), json.dumps(data, default=str), json.dumps(meta, default=str)),
            )

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent); the session does this on ``reset()``."""
        with self._lock:
            self._db.close()
