"""Pooled httpx clients shared by every provider client coffee_nb builds.

One sync client per process and one async client per event loop, created on first use (never at
import), safe to request from many threads at once. The settings and clients live in
``coffee_nb._shared._config`` (``reset_defaults()`` closes them); this module is how they are used.
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _config
from coffee_nb._shared._validate import positive_int, positive_number

if TYPE_CHECKING:
    import httpx

__all__ = [
    "RESPONSES",
    "abort",
    "close",
    "configure_http",
    "get_async_http_client",
    "get_http_client",
    "reset",
]

DEFAULT_MAX_CONNECTIONS = int(_config.DEFAULT_HTTP_SETTINGS["max_connections"])
DEFAULT_MAX_KEEPALIVE = int(_config.DEFAULT_HTTP_SETTINGS["max_keepalive_connections"])
DEFAULT_KEEPALIVE_EXPIRY = float(_config.DEFAULT_HTTP_SETTINGS["keepalive_expiry"])
DEFAULT_TIMEOUT = float(_config.DEFAULT_HTTP_SETTINGS["timeout"])

_HTTP = _config.HTTP

# The sync responses a worker opened through the pooled client, when it keeps a list here (a stream pumped
# on a worker: ``invoke/_timeouts.Pump``), so that whoever gives up on the stream can close them at once.
RESPONSES: ContextVar[list[Any] | None] = ContextVar("coffee_nb_responses", default=None)


def _track(response: Any) -> None:
    held = RESPONSES.get()
    if held is not None:
        held.append(response)


def abort(responses: list[Any]) -> None:
    """Stop the responses a worker still reads, from another thread: their sockets are shut down, so the
    worker's blocked read ends now instead of at its next chunk or its read timeout. (A response closed
    already is left alone: its connection may serve another request by now.)"""
    for response in responses:
        if getattr(response, "is_closed", True):
            continue
        stream = getattr(response, "extensions", {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with suppress(OSError):  # closed meanwhile: nothing left to stop
                sock.shutdown(socket.SHUT_RDWR)


def configure_http(
    *,
    max_connections: int | None = None,
    max_keepalive_connections: int | None = None,
    keepalive_expiry: float | None = None,
    timeout: float | None = None,
) -> None:
    """Change pool settings. Clients already made are closed; the next request builds new ones."""
    changes: dict[str, float | int] = {}
    for name, value, check in (
        ("max_connections", max_connections, positive_int),
        ("max_keepalive_connections", max_keepalive_connections, positive_int),
        ("keepalive_expiry", keepalive_expiry, positive_number),
        ("timeout", timeout, positive_number),
    ):
        if value is not None:
            changes[name] = check(f"configure_http({name}=...)", value)
    with _HTTP.lock:
        _HTTP.settings.update(changes)
    reset()


def _limits_and_timeout() -> tuple[httpx.Limits, httpx.Timeout]:
    import httpx  # lazy: httpx

    s = _HTTP.settings
    limits = httpx.Limits(
        max_connections=int(s["max_connections"]),
        max_keepalive_connections=int(s["max_keepalive_connections"]),
        keepalive_expiry=float(s["keepalive_expiry"]),
    )
    return limits, httpx.Timeout(float(s["timeout"]), connect=10.0)


def get_http_client() -> httpx.Client:
    """The shared sync client (created on first call)."""
    client = _HTTP.sync_client
    if client is not None and not client.is_closed:
        return client
    with _HTTP.lock:
        client = _HTTP.sync_client
        if client is None or client.is_closed:
            import httpx  # lazy: httpx

            limits, timeout = _limits_and_timeout()
            hooks = {"response": [_track]}  # a pumped stream's responses, so that giving up can stop them
            client = _HTTP.sync_client = httpx.Client(limits=limits, timeout=timeout, event_hooks=hooks)
        return client


def get_async_http_client(loop: asyncio.AbstractEventLoop | None = None) -> httpx.AsyncClient:
    """The shared async client of ``loop`` (default: the running loop). Each event loop gets its own."""
    if loop is None:
        loop = asyncio.get_running_loop()
    client = _HTTP.async_clients.get(loop)
    if client is not None and not client.is_closed:
        return client
    with _HTTP.lock:
        client = _HTTP.async_clients.get(loop)
        if client is None or client.is_closed:
            import httpx  # lazy: httpx

            limits, timeout = _limits_and_timeout()
            client = httpx.AsyncClient(limits=limits, timeout=timeout)
            _HTTP.async_clients[loop] = client
        return client


def close() -> None:
    """Close every pooled client (async ones on their own loop when it still runs)."""
    _HTTP.close_clients()


def reset() -> None:
    """Close the pooled clients; the next request builds fresh ones with the current settings."""
    close()


def __getattr__(name: str) -> Any:
    # the clients used to be module globals here; read-only views for code that still looks
    if name == "_sync_client":
        return _HTTP.sync_client
    if name == "_async_clients":
        return _HTTP.async_clients
    if name == "_settings":
        return _HTTP.settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
