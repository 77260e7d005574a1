"""Mistral AI through langchain-mistralai, whose httpx clients (built here) ride the pool.

langchain-mistralai talks HTTP itself and raises ``httpx.HTTPStatusError`` (in the core table); the
``mistralai`` SDK's errors are mapped too, for instances built on it.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from coffee_nb.errors._errors import ErrorClass
from coffee_nb.providers._base import missing_extra, secret
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["ERRORS", "register"]

E = ErrorClass
ERRORS: dict[str, ErrorClass | None] = {
    # mistralai (Speakeasy-generated; the Azure and GCP clients' bases have their own names)
    "mistralai.MistralError": None,  # an HTTP error response: ``status_code``
    "mistralai.MistralAzureError": None,
    "mistralai.MistralGCPError": None,
    "mistralai.SDKError": None,
    "mistralai.HTTPValidationError": E.BAD_REQUEST,  # 422: the request's fields
    "mistralai.ResponseValidationError": E.SERVER,  # a reply that doesn't parse
    "mistralai.NoResponseError": E.CONNECTION,
    "mistralai.StreamDisconnectedError": E.CONNECTION,
    "mistralai.MistralClientException": E.BAD_REQUEST,  # agents, workflows, MCP helpers
}
PARAMS = Params(
    sampling=frozenset({"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"}),
    renames={"seed": "random_seed"},
)
_BASE_URL = "https://api.mistral.ai/v1"


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_mistralai import ChatMistralAI  # lazy: langchain_mistralai
    except ImportError as exc:
        raise missing_extra("mistral", "mistral") from exc
    import httpx  # lazy: httpx

    from coffee_nb.providers._guard import guarded  # lazy: langchain_core
    from coffee_nb.providers._transport import AsyncPooledTransport, PooledTransport  # lazy: httpx

    params = dict(s.params)
    token = secret(params.pop("api_key", None)) or key or ""
    base = str(params.pop("base_url", None) or os.environ.get("MISTRAL_BASE_URL") or _BASE_URL)
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {token}"}
    # its clients carry the base URL and the key; their connections come from the pool
    client = httpx.Client(
        base_url=base, headers=headers, timeout=s.timeout, transport=PooledTransport(params.pop("http_client", None))
    )
    async_client = httpx.AsyncClient(
        base_url=base,
        headers=headers,
        timeout=s.timeout,
        transport=AsyncPooledTransport(params.pop("http_async_client", None)),
    )
    kwargs: dict[str, Any] = {
        "model": model,
        "api_key": token,
        "base_url": base,
        "client": client,
        "async_client": async_client,
        "max_retries": 0,
        **params,
    }
    return ChatMistralAI(**guarded(kwargs))


def _theirs(model: Any) -> bool:
    """Is ``model.async_client`` one the user gave? langchain-mistralai makes its own on httpx's default
    transport; one on any other transport (a mock, a proxy, ours) is left alone."""
    import httpx  # lazy: httpx

    client = getattr(model, "async_client", None)
    return not isinstance(client, httpx.AsyncClient) or type(client._transport) is not httpx.AsyncHTTPTransport


def _renew(model: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``model`` with an async client of the same URL, headers (key) and timeout, sending through the pool."""
    import httpx  # lazy: httpx

    from coffee_nb.providers._transport import AsyncPooledTransport  # lazy: httpx

    old = model.async_client
    fresh = httpx.AsyncClient(
        base_url=old.base_url, headers=old.headers, timeout=old.timeout, transport=AsyncPooledTransport()
    )
    return model.model_copy(update={"async_client": fresh})


ASYNC_CLIENTS = AsyncClients(held_by=lambda model: getattr(model, "async_client", None), theirs=_theirs, renew=_renew)


def register() -> None:
    register_provider(
        "mistral",
        _build,
        env_var="MISTRAL_API_KEY",
        finish_reason=True,
        prefill="prefix",  # a final assistant message marked ``prefix: true`` is continued
        errors=ERRORS,
        params=PARAMS,
        classes=("ChatMistralAI",),
        async_clients=ASYNC_CLIENTS,
        extra="mistral",
        needs="langchain_mistralai",
        examples=("mistral-small-latest", "mistral-large-latest", "open-mistral-nemo"),
    )
