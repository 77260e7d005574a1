"""Response cache: an identical request (models, messages, parameters) is answered from SQLite at $0.

Lives next to the ledger (``$COFFEE_NB_DATA_DIR/cache.sqlite3`` by default), so re-running a
notebook never re-bills, even after a kernel restart. A cache is a convenience: every failure is a
``StorageError`` naming the file, and the session carries on without it (a paid answer is shown
whether or not it could be stored). Nothing stored holds a key (text is redacted on the way in).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from coffee_nb._shared._images import keyed
from coffee_nb._shared._paths import data_dir, open_sqlite, storage_error
from coffee_nb._shared._records import CallRecord, Outcome, Role, summary_data
from coffee_nb._shared._redact import redact

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

__all__ = ["CacheWarning", "ResponseCache", "replay", "request_key"]

_M = TypeVar("_M", bound="BaseMessage")

_WHAT = "response cache"


class CacheWarning(UserWarning):
    """The response cache can't be used (a full disk, a damaged file, ...): answers come without it."""


def request_key(models: Sequence[str], messages: Sequence[Any], params: dict[str, Any]) -> str:
    """A stable hash of what was asked: the chain, each message's role and content, and parameters."""
    payload = {
        "models": list(models),
        "messages": [[getattr(m, "type", "?"), keyed(getattr(m, "content", m))] for m in messages],
        "params": {k: v for k, v in sorted(params.items()) if v is not None},
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache:
    """``get(key)`` / ``put(key, message, meta)`` over one SQLite table."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "cache.sqlite3"
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, _WHAT)
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL NOT NULL, "
                "message TEXT NOT NULL, meta TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            self._db.close()
            raise storage_error(_WHAT, self.path, exc) from None

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def get(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        """The stored answer and its metadata, or None (also for a row that no longer reads back)."""
        from langchain_core.messages import messages_from_dict  # lazy: langchain_core

        with self._lock:
            try:
                row = self._db.execute("SELECT message, meta FROM responses WHERE key=?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise storage_error(_WHAT, self.path, exc, "could not read a cached answer") from None
        if row is None:
            return None
        try:
            message = messages_from_dict([json.loads(row[0])])[0]
            meta = json.loads(row[1])
        except (ValueError, TypeError, KeyError):  # a damaged row is a miss: the model answers again
            return None
        return message, meta if isinstance(meta, dict) else {}

    def put(self, key: str, message: Any, meta: dict[str, Any]) -> None:
        from langchain_core.messages import message_to_dict  # lazy: langchain_core

        data = message_to_dict(message)
        data["data"]["response_metadata"] = {
            k: v for k, v in data["data"].get("response_metadata", {}).items() if k != "coffee_nb"
        }
        text = redact(json.dumps(data, default=str))
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO responses (key, created, message, meta) VALUES (?,?,?,?)",
                    (key, time.time(), text, redact(json.dumps(meta, default=str))),
                )
            except sqlite3.Error as exc:
                raise storage_error(_WHAT, self.path, exc, "could not store an answer") from None

    def clear(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM responses")
            except sqlite3.Error as exc:
                raise storage_error(_WHAT, self.path, exc, "could not clear the cache") from None

    def __len__(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            except sqlite3.Error as exc:
                raise storage_error(_WHAT, self.path, exc, "could not count the cached answers") from None

    def close(self) -> None:
        """Close the connection (idempotent); the session does this on ``reset()``."""
        with self._lock:
            self._db.close()


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def replay(message: _M, stored: dict[str, Any], latency: float) -> tuple[CallRecord, _M]:
    """The record of answering from the cache ($0, ``cache_hit``) and the message with a fresh trace."""
    tokens = stored.get("tokens")
    tokens = tokens if isinstance(tokens, dict) else {}
    model, provider = stored.get("model"), stored.get("provider")
    record = CallRecord(
        call_id=uuid.uuid4().hex,
        attempt=0,
        role=Role.PRIMARY,
        provider=provider if isinstance(provider, str) else "?",
        model=model if isinstance(model, str) else "?",
        outcome=Outcome.OK,
        started_at=datetime.now(UTC),
        latency_s=latency,
        input_tokens=_count(tokens.get("input")),
        output_tokens=_count(tokens.get("output")),
        cost=Decimal(0),
        price_source="cache",
        cache_hit=True,
    )
    meta = summary_data((record,), latency_s=latency, cache_hit=True)
    return record, message.model_copy(update={"response_metadata": {**message.response_metadata, "coffee_nb": meta}})
