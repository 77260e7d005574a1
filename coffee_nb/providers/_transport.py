"""httpx transports that send through coffee_nb's pooled clients.

SDKs that build their own ``httpx.Client`` (with a base URL and auth headers baked in) take a
``transport``: these ride the shared pool instead of opening one per model. The pooled client is looked
up when a request is sent, so a model built once follows ``configure_http()`` and works on any event loop.
"""

from __future__ import annotations

import httpx

from coffee_nb._shared import _http

__all__ = ["AsyncPooledTransport", "PooledTransport"]


class PooledTransport(httpx.BaseTransport):
    """Sends each request through ``client`` (default: coffee_nb's pooled sync client)."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self._client or _http.get_http_client()
        # the request already holds the SDK's URL, headers and timeout; the pool adds nothing but a connection
        return client.send(request, stream=True)

    def close(self) -> None:
        """The pool outlives the clients that borrow it: nothing to close here."""


class AsyncPooledTransport(httpx.AsyncBaseTransport):
    """Sends each request through ``client`` (default: the pooled async client of the running loop)."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client = self._client or _http.get_async_http_client()
        return await client.send(request, stream=True)

    async def aclose(self) -> None:
        """The pool outlives the clients that borrow it: nothing to close here."""
