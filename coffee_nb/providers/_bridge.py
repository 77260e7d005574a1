"""httpx2 transports that send through coffee_nb's pooled (httpx) clients.

The anthropic SDK takes only ``httpx2`` clients (it rejects an ``httpx.Client``), so the pool's clients
can't be handed to it as they are. These transports sit inside an ``httpx2.Client``: each request is
re-issued on the pooled httpx client (same method, URL, headers, body and per-request timeout) and the
response body is streamed back untouched (raw bytes: httpx2 decodes them by the headers as usual).
Transport errors come back as httpx2's class of the same name, so the SDK turns a timeout into its
``APITimeoutError`` as it would on its own client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2  # comes with the SDKs that need it (anthropic); this module is imported only by their builders

from coffee_nb._shared import _http

__all__ = ["AsyncBridge", "Bridge"]


def _request(request: httpx2.Request, body: bytes) -> httpx.Request:
    return httpx.Request(
        request.method,
        str(request.url),
        headers=list(request.headers.raw),
        content=body,
        extensions={k: v for k, v in request.extensions.items() if k == "timeout"},
    )


def _error(exc: httpx.HTTPError, request: httpx2.Request) -> httpx2.HTTPError:
    """httpx2's exception of the same name (``ReadTimeout`` → ``httpx2.ReadTimeout``), else its TransportError."""
    cls = getattr(httpx2, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx2.TransportError)):
        cls = httpx2.TransportError
    return cls(str(exc), request=request)


def _response(resp: httpx.Response, stream: Any, request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(resp.status_code, headers=resp.headers.raw, stream=stream, request=request)


class _Body(httpx2.SyncByteStream):
    def __init__(self, resp: httpx.Response, request: httpx2.Request) -> None:
        self._resp, self._request = resp, request

    def __iter__(self) -> Iterator[bytes]:
        if self._resp.is_stream_consumed:  # a body already in memory (a mock transport's, a cached reply)
            yield self._resp.content
            return
        try:
            yield from self._resp.iter_raw()
        except httpx.HTTPError as exc:  # a read timeout or reset mid-body
            raise _error(exc, self._request) from exc

    def close(self) -> None:
        self._resp.close()


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, resp: httpx.Response, request: httpx2.Request) -> None:
        self._resp, self._request = resp, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._resp.is_stream_consumed:
            yield self._resp.content
            return
        try:
            async for chunk in self._resp.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _error(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._resp.aclose()


class Bridge(httpx2.BaseTransport):
    """Sends each request through coffee_nb's pooled sync client (looked up per request)."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        client = _http.get_http_client()
        try:
            resp = client.send(_request(request, request.read()), stream=True)
        except httpx.HTTPError as exc:
            raise _error(exc, request) from exc
        return _response(resp, _Body(resp, request), request)

    def close(self) -> None:
        """The pool outlives the clients that borrow it: nothing to close here."""


class AsyncBridge(httpx2.AsyncBaseTransport):
    """Sends each request through the pooled async client of the running event loop."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        client = _http.get_async_http_client()
        try:
            resp = await client.send(_request(request, await request.aread()), stream=True)
        except httpx.HTTPError as exc:
            raise _error(exc, request) from exc
        return _response(resp, _AsyncBody(resp, request), request)

    async def aclose(self) -> None:
        """The pool outlives the clients that borrow it: nothing to close here."""
