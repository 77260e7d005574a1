"""Groq through langchain-groq (the groq SDK is Stainless-generated: the openai names, under groq.)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _http
from coffee_nb.errors._errors import ErrorClass
from coffee_nb.providers._base import missing_extra
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["ERRORS", "register"]

E = ErrorClass
ERRORS: dict[str, ErrorClass | None] = {
    "groq.APITimeoutError": E.TIMEOUT,
    "groq.APIConnectionError": E.CONNECTION,
    "groq.RateLimitError": E.RATE_LIMIT,
    "groq.InternalServerError": E.SERVER,
    "groq.AuthenticationError": E.AUTH,
    "groq.PermissionDeniedError": E.AUTH,
    "groq.NotFoundError": E.NOT_FOUND,
    "groq.BadRequestError": E.BAD_REQUEST,
    "groq.UnprocessableEntityError": E.BAD_REQUEST,
    "groq.ConflictError": E.SERVER,
    "groq.APIResponseValidationError": E.SERVER,
    "groq.APIStatusError": None,
    "groq.APIError": E.SERVER,
    "groq.GroqError": E.BAD_REQUEST,  # client misconfiguration
}
# groq's create() takes no top_k
PARAMS = Params(sampling=frozenset({"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"}))


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_groq import ChatGroq  # lazy: langchain_groq
    except ImportError as exc:
        raise missing_extra("groq", "groq") from exc
    from coffee_nb.providers._guard import guarded  # lazy: langchain_core

    kwargs: dict[str, Any] = {
        "model": model,
        "api_key": key,
        "max_retries": 0,
        "request_timeout": s.timeout,
        "http_client": _http.get_http_client(),
        **s.params,
    }
    if s.loop is not None and "http_async_client" not in s.params:
        kwargs["http_async_client"] = _http.get_async_http_client(s.loop)
    return ChatGroq(**guarded(kwargs))


def _root(model: Any) -> Any:
    """The AsyncGroq client behind ``model.async_client`` (its chat completions resource)."""
    return getattr(getattr(model, "async_client", None), "_client", None)


def _renew(model: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``model`` with its AsyncGroq client copied (key, URL, timeout, retries, headers) onto the loop's pool."""
    http = _http.get_async_http_client(loop)
    root = _root(model).copy(http_client=http)
    return model.model_copy(update={"async_client": root.chat.completions, "http_async_client": http})


ASYNC_CLIENTS = AsyncClients(
    held_by=lambda model: getattr(_root(model), "_client", None),
    theirs=lambda model: getattr(model, "http_async_client", None) is not None or _root(model) is None,
    renew=_renew,
)


def register() -> None:
    register_provider(
        "groq",
        _build,
        env_var="GROQ_API_KEY",
        timeout_kwarg=True,
        finish_reason=True,
        errors=ERRORS,
        params=PARAMS,
        classes=("ChatGroq",),
        async_clients=ASYNC_CLIENTS,
        extra="groq",
        needs="langchain_groq",
        examples=("llama-3.3-70b-versatile", "llama-3.1-8b-instant", "openai/gpt-oss-120b"),
    )
