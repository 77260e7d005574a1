"""OpenAI: ChatOpenAI on the pooled clients (the openai/httpx errors are in the core table).

A user's own ChatOpenAI (or AzureChatOpenAI) on another event loop is copied with a fresh async client
(:data:`ASYNC_CLIENTS`): langchain-openai shares one cached default httpx client among all its instances
with the same URL and timeout, so the copy's SDK client gets the pool's client of that loop instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _http
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import build_openai_compatible, register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["ASYNC_CLIENTS", "PARAMS", "REASONING", "register"]

# o1/o3/o4 and gpt-5 (but gpt-5-chat) reject sampling parameters with a 400 ("Unsupported value")
REASONING = r"(?:^|/)(o\d|gpt-5(?!-chat))"
_REFUSED = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
# Chat Completions takes no top_k (the SDK's create() would raise a TypeError on it)
SAMPLING = frozenset({"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"})
PARAMS = Params(sampling=SAMPLING, refuses=((REASONING, _REFUSED),))


def _build(model: str, key: str | None, settings: BuildSettings) -> BaseChatModel:
    return build_openai_compatible(model, key, settings)


def _held_by(model: Any) -> Any:
    return getattr(getattr(model, "root_async_client", None), "_client", None)


def _theirs(model: Any) -> bool:
    # an http_async_client next to openai_proxy is langchain's own (it refuses both from the user)
    given = getattr(model, "http_async_client", None) is not None and not getattr(model, "openai_proxy", None)
    return given or getattr(model, "root_async_client", None) is None  # an async_client given without its root


def _renew(model: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``model`` with its SDK client copied (key, URL, timeout, retries, headers, query) onto a fresh httpx client."""
    proxy = getattr(model, "openai_proxy", None)
    if proxy:
        import openai  # lazy: openai

        http: Any = openai.DefaultAsyncHttpxClient(proxy=proxy)
    else:
        http = _http.get_async_http_client(loop)
    root = model.root_async_client.copy(http_client=http)
    # http_async_client too: a pooled client closed by configure_http() is seen, and the copy made again
    return model.model_copy(
        update={"root_async_client": root, "async_client": root.chat.completions, "http_async_client": http}
    )


ASYNC_CLIENTS = AsyncClients(held_by=_held_by, theirs=_theirs, renew=_renew)


def register() -> None:
    register_provider(
        "openai",
        _build,
        env_var="OPENAI_API_KEY",
        timeout_kwarg=True,
        finish_reason=True,
        params=PARAMS,
        classes=("ChatOpenAI",),
        async_clients=ASYNC_CLIENTS,
        needs="langchain_openai",
        examples=("gpt-4o-mini", "gpt-4.1-mini", "o3-mini"),
    )
