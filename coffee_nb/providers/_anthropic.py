"""Anthropic: ChatAnthropic on the pooled HTTP clients (the anthropic SDK's errors are in the core table).

ChatAnthropic builds its anthropic clients itself, on httpx2 clients of its own; the model coffee_nb
builds is a ChatAnthropic whose clients get an httpx2 client over :mod:`coffee_nb.providers._bridge`
instead, so its requests ride coffee_nb's pool (``configure_http``, one connection pool per process and
per event loop) like every other provider's. Built only from its public fields (key, URL, headers,
timeout, ``max_retries``); a user's own ChatAnthropic instance is left as it is, but on an event loop other
than its first it is called through a copy whose async client (a ``cached_property`` built over
langchain-anthropic's shared, cached httpx2 client) is a fresh one over the bridge (:data:`ASYNC_CLIENTS`).
"""

from __future__ import annotations

import asyncio
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from coffee_nb.providers._base import missing_extra
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["register"]

PARAMS = Params(sampling=frozenset({"temperature", "top_p", "top_k"}))


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_anthropic import ChatAnthropic  # lazy: langchain_anthropic
    except ImportError as exc:  # an optional extra
        raise missing_extra("anthropic", "anthropic") from exc
    from coffee_nb.providers._guard import guarded  # lazy: langchain_core

    kwargs: dict[str, Any] = {"model": model, "api_key": key, "max_retries": 0, "timeout": s.timeout, **s.params}
    chat: BaseChatModel = _pooled(ChatAnthropic)(**guarded(kwargs))  # by alias names, which its stubs don't list
    return chat


@cache
def _pooled(base: type[Any]) -> type[Any]:
    """A ChatAnthropic whose anthropic clients send through the pool (same class name: it is one)."""
    import anthropic  # lazy: anthropic
    import httpx2  # lazy: httpx2

    from coffee_nb.providers._bridge import AsyncBridge, Bridge  # lazy: httpx, httpx2

    def params(model: Any) -> dict[str, Any]:
        timeout = model.default_request_timeout
        return {
            "api_key": model.anthropic_api_key.get_secret_value(),
            "base_url": model.anthropic_api_url,
            "max_retries": model.max_retries,
            "default_headers": model.default_headers,
            **({"timeout": timeout} if timeout is None or timeout > 0 else {}),
        }

    class ChatAnthropic(base):  # type: ignore[misc]
        @cached_property
        def _client(self) -> anthropic.Client:
            return anthropic.Client(**params(self), http_client=httpx2.Client(transport=Bridge()))

        @cached_property
        def _async_client(self) -> anthropic.AsyncClient:
            return anthropic.AsyncClient(**params(self), http_client=httpx2.AsyncClient(transport=AsyncBridge()))

    ChatAnthropic.__qualname__ = base.__qualname__
    ChatAnthropic.__module__ = base.__module__
    return ChatAnthropic


def _held_by(model: Any) -> Any:
    return getattr(model._async_client, "_client", None)


def _renew(model: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``model`` whose anthropic async client is the same client (``copy``: key, URL, timeout, retries,
    headers) on a fresh httpx2 client: over the bridge to the pool, or its own proxy's."""
    import httpx2  # lazy: httpx2

    proxy = getattr(model, "anthropic_proxy", None)
    if proxy:
        import anthropic  # lazy: anthropic

        http: Any = anthropic.DefaultAsyncHttpxClient(proxy=proxy)
    else:
        from coffee_nb.providers._bridge import AsyncBridge  # lazy: httpx, httpx2

        http = httpx2.AsyncClient(transport=AsyncBridge())  # the pool of the loop that sends
    copy = model.model_copy()
    # the cached_property's slot (model_copy copied the original's): set, as functools would
    copy.__dict__["_async_client"] = model._async_client.copy(http_client=http)
    return copy


# ChatAnthropic takes no async client from the user: the one it holds is always its own
ASYNC_CLIENTS = AsyncClients(held_by=_held_by, theirs=lambda model: False, renew=_renew)


def register() -> None:
    register_provider(
        "anthropic",
        _build,
        env_var="ANTHROPIC_API_KEY",
        prefill=True,
        finish_reason=True,
        params=PARAMS,
        classes=("ChatAnthropic",),
        async_clients=ASYNC_CLIENTS,
        extra="anthropic",
        needs="langchain_anthropic",
        examples=("claude-3-5-haiku-latest", "claude-sonnet-4-5"),
    )
