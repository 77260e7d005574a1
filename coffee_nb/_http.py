"""Pooled httpx clients shared by every provider client coffee_nb builds.

One sync client per process and one async client per event loop, created on first use (never at
import), safe to request from many threads at once.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["configure_http", "close", "get_async_http_client", "get_http_client", "reset"]

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_MAX_KEEPALIVE = 20
DEFAULT_KEEPALIVE_EXPIRY = 30.0
DEFAULT_TIMEOUT = 60.0

_lock = threading.Lock()
_settings: dict[str, float | int] = {
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "max_keepalive_connections": DEFAULT_MAX_KEEPALIVE,
    "keepalive_expiry": DEFAULT_KEEPALIVE_EXPIRY,
    "timeout": DEFAULT_TIMEOUT,
}
_sync_client: httpx.Client | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def configure_http(
    *,
    max_connections: int | None = None,
    max_keepalive_connections: int | None = None,
    keepalive_expiry: float | None = None,
    timeout: float | None = None,
) -> None:
    """Change pool settings. Clients already made are closed; the next request builds new ones."""
    from coffee_nb._validate import positive_int, positive_number

    changes: dict[str, float | int] = {}
    for name, value, check in (
        ("max_connections", max_connections, positive_int),
        ("max_keepalive_connections", max_keepalive_connections, positive_int),
        ("keepalive_expiry", keepalive_expiry, positive_number),
        ("timeout", timeout, positive_number),
    ):
        if value is not None:
            changes[name] = check(f"configure_http({name}=...)", value)
    with _lock:
        _settings.update(changes)
    reset()


def _limits_and_timeout() -> tuple[httpx.Limits, httpx.Timeout]:
    import httpx

    limits = httpx.Limits(
        max_connections=int(_settings["max_connections"]),
        max_keepalive_connections=int(_settings["max_keepalive_connections"]),
        keepalive_expiry=float(_settings["keepalive_expiry"]),
    )
    return limits, httpx.Timeout(float(_settings["timeout"]), connect=10.0)


def get_http_client() -> httpx.Client:
    """The shared sync client (created on first call)."""
    global _sync_client
    client = _sync_client
    if client is not None and not client.is_closed:
        return client
    with _lock:
        if _sync_client is None or _sync_client.is_closed:
            import httpx

            limits, timeout = _limits_and_timeout()
            _sync_client = httpx.Client(limits=limits, timeout=timeout)
        return _sync_client


def get_async_http_client(loop: asyncio.AbstractEventLoop | None = None) -> httpx.AsyncClient:
    """The shared async client of ``loop`` (default: the running loop). Each event loop gets its own."""
    if loop is None:
        loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is not None and not client.is_closed:
        return client
    with _lock:
        client = _async_clients.get(loop)
        if client is None or client.is_closed:
            import httpx

            limits, timeout = _limits_and_timeout()
            client = httpx.AsyncClient(limits=limits, timeout=timeout)
            _async_clients[loop] = client
        return client


def close() -> None:
    """Close every pooled client (async ones on their own loop when it still runs)."""
    global _sync_client
    with _lock:
        sync, _sync_client = _sync_client, None
        pairs = list(_async_clients.items())
        _async_clients.clear()
    if sync is not None:
        sync.close()
    for loop, client in pairs:
        if loop.is_closed():
            continue
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(client.aclose())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        else:
            loop.run_until_complete(client.aclose())


def reset() -> None:
    """Close the pooled clients; the next request builds fresh ones with the current settings."""
    close()
