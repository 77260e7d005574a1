"""Opening a ledger from what users write: ``"memory"``, ``"sqlite"``, a path, ``"sqlite:///..."``, a Redis URL,
or a ledger object; a spec that is none of these is a ``ConfigError`` naming it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from coffee_nb.budget._ledger import Ledger, MemoryLedger
from coffee_nb.budget._redis import RedisLedger
from coffee_nb.budget._sqlite import SQLiteLedger
from coffee_nb.errors._errors import ConfigError, redact, remember_secret

__all__ = ["open_ledger"]


def open_ledger(spec: str | Path | Ledger | None, namespace: str) -> Ledger:
    """``"memory"``, ``"sqlite"`` (per-user file), ``"sqlite:///path.db"``, a ``.db``/``.sqlite3`` path,
    ``"redis://host:port/db"``, or a ledger object."""
    accepted = (
        "'memory', 'sqlite', 'sqlite:///path/to/ledger.db', a path ending .db/.sqlite/.sqlite3, 'redis://host:port/db'"
    )
    if spec is None or spec == "sqlite":
        return SQLiteLedger(namespace=namespace)
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str):
        if all(hasattr(spec, m) for m in ("reserve", "commit", "release", "spent", "reserved")):
            return spec
        raise ConfigError(f"ledger must be one of {accepted} or a ledger object, got {spec!r}")
    if spec == "memory":
        return MemoryLedger()
    if spec.startswith("sqlite:///") and len(spec) > len("sqlite:///"):
        path = spec[len("sqlite:///") :]
        if path.endswith(("/", os.sep)) or Path(path).expanduser().is_dir():
            # said here, with the value as given: the file's own check would name only the directory
            example = "sqlite:///" + str(PurePosixPath(path) / "ledger.sqlite3")
            raise ConfigError(
                f"ledger {spec!r} names the directory {path!r}, not a file: add the file's name, e.g. {example!r} "
                "(after 'sqlite:///' comes the path: '/...' is absolute, anything else relative to the working "
                "directory)"
            )
        return SQLiteLedger(path, namespace=namespace)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        parts = urlsplit(spec)
        if parts.password:
            remember_secret(parts.password)  # the error below repeats the URL: never its password
        try:
            port = parts.port
        except ValueError:
            port = -1
        unix = parts.scheme == "unix"
        if (unix and not parts.path) or (not parts.hostname and not unix) or port == -1:
            raise ConfigError(
                redact(f"malformed ledger URL {spec!r}: expected one of {accepted} or 'unix:///path/to/redis.sock'")
            )
        return RedisLedger(spec, namespace=namespace)
    if spec.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in spec:
        return SQLiteLedger(spec, namespace=namespace)
    raise ConfigError(f"malformed ledger {spec!r}: expected one of {accepted}")
