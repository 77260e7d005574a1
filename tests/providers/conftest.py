"""Offline provider tests: the real SDK/LangChain classes over an injected transport.

``wire`` puts a scripted httpx transport into coffee_nb's connection pool (the same pool every client
coffee_nb builds uses), so a test drives the provider exactly as a user's call would, minus the network:
requests to the provider's host get the scripted, provider-shaped responses; requests to loopback (the
sandbox, the chain's last resort) go through to the real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from coffee_nb import Policy
from coffee_nb._shared import _config

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]

# fast retries and waits; a Retry-After up to a second is honoured, a longer one moves to the next model
POLICY = Policy(backoff_base=0.001, backoff_cap=0.002, max_retry_after=1.0, deadline=30)

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-key-0123456789",
    "GOOGLE_API_KEY": "goog-test-key-0123456789",
    "AZURE_OPENAI_API_KEY": "azure-test-key-0123456789",
    "AZURE_OPENAI_ENDPOINT": "https://unit-test.openai.azure.com",
    "OPENAI_API_VERSION": "2024-10-21",
    "MISTRAL_API_KEY": "mistral-test-key-0123456789",
    "GROQ_API_KEY": "gsk_test-key-0123456789",
    "OPENROUTER_API_KEY": "sk-or-test-key-0123456789",
    "DEEPSEEK_API_KEY": "sk-deepseek-test-key-0123456789",
    "XAI_API_KEY": "xai-test-key-0123456789",
    "TOGETHER_API_KEY": "together-test-key-0123456789",
    "FIREWORKS_API_KEY": "fw-test-key-0123456789",
    "COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL": "http://vllm.test:8000/v1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class Wire(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Scripted replies per host (in order; the last one repeats), every request recorded."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    _local: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    _alocal: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)

    def script(self, host: str, *replies: Reply) -> None:
        self.replies[host] = list(replies)

    def bodies(self, host: str) -> list[dict[str, Any]]:
        """The JSON bodies sent to ``host``."""
        return [json.loads(r.content or b"{}") for r in self.requests if r.url.host == host]

    def _reply(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.replies.get(request.url.host)
        if not queue:
            return httpx.Response(599, json={"error": f"nothing scripted for {request.url.host}"})
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(reply):
            return reply(request)
        # a fresh response each time: a client wraps the one it reads (sync or async) for good
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in ("127.0.0.1", "localhost"):
            return self._local.handle_request(request)
        return self._reply(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in ("127.0.0.1", "localhost"):
            return await self._alocal.handle_async_request(request)
        await request.aread()
        return self._reply(request)

    def install_loop(self) -> None:
        """Make this wire the pooled async client of the running event loop."""
        _config.HTTP.async_clients[asyncio.get_running_loop()] = httpx.AsyncClient(transport=self)


@pytest.fixture
def wire() -> Wire:
    """A scripted transport installed as coffee_nb's pooled sync client (``install_loop()`` for async)."""
    w = Wire()
    _config.HTTP.sync_client = httpx.Client(transport=w)
    return w


@pytest.fixture
def keys(monkeypatch):
    """Fake keys and settings for every provider (none of them valid anywhere)."""
    for var, value in KEYS.items():
        monkeypatch.setenv(var, value)
    for var in ("GEMINI_API_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-test-0123456789")
    return KEYS


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):
    """The sandbox (the chains' last resort) answers at once."""
    yield
