"""Pooled httpx clients: lazy, shared across threads, one async client per event loop."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

import coffee_nb
from coffee_nb._shared import _http


@pytest.fixture(autouse=True)
def fresh_pool():
    _http.reset()
    yield
    _http.configure_http(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30, timeout=60)
    _http.reset()


def test_no_client_until_asked():
    assert _http._sync_client is None and len(_http._async_clients) == 0


def test_defaults():
    client = coffee_nb.get_http_client()
    pool = client._transport._pool
    assert pool._max_connections == 100
    assert pool._max_keepalive_connections == 20
    assert pool._keepalive_expiry == 30


def test_concurrent_first_calls_share_one_working_client():
    barrier = threading.Barrier(32)
    got: list[httpx.Client] = []

    def grab():
        barrier.wait()
        got.append(coffee_nb.get_http_client())

    threads = [threading.Thread(target=grab) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 32 and len({id(c) for c in got}) == 1
    assert not got[0].is_closed


def test_one_async_client_per_loop():
    async def grab():
        a = coffee_nb.get_async_http_client()
        b = coffee_nb.get_async_http_client()
        assert a is b
        return a

    first = asyncio.run(grab())
    second = asyncio.run(grab())
    assert first is not second


def test_configure_and_reset():
    old = coffee_nb.get_http_client()
    coffee_nb.configure_http(max_connections=7)
    assert old.is_closed
    new = coffee_nb.get_http_client()
    assert new is not old and new._transport._pool._max_connections == 7
    with pytest.raises(ValueError, match="max_connections"):
        coffee_nb.configure_http(max_connections=-1)


def test_close_async_from_inside_loop():
    async def go():
        client = coffee_nb.get_async_http_client()
        coffee_nb.close_http_clients()
        await asyncio.sleep(0)
        return client

    assert asyncio.run(go()).is_closed
