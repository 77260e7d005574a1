"""Gemini (Google AI Studio) through langchain-google-genai, on the pooled HTTP clients.

The google-genai SDK builds its own httpx clients; the transport we hand it (``client_args``) sends
through coffee_nb's pool. Retries are off (``max_retries=0`` means one attempt in google-genai) and each
call gets the attempt's timeout. A blocked prompt (HTTP 200, ``promptFeedback.blockReason``) or a
``SAFETY`` finish raises ``content_filter`` instead of passing for an empty answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coffee_nb.errors._errors import ErrorClass
from coffee_nb.providers._base import missing_extra
from coffee_nb.providers._params import SAMPLING, Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["ERRORS", "register"]

E = ErrorClass
ERRORS: dict[str, ErrorClass | None] = {
    # google-genai: APIError carries the HTTP status in ``code`` (ClientError 4xx, ServerError 5xx)
    "google.genai.APIError": None,
    "google.genai.ClientError": None,
    "google.genai.ServerError": None,
    "google.genai.UnknownFunctionCallArgumentError": E.BAD_REQUEST,  # automatic function calling: the
    "google.genai.UnsupportedFunctionError": E.BAD_REQUEST,  # caller's functions, not the provider
    "google.genai.FunctionInvocationError": E.BAD_REQUEST,
    "google.genai.UnknownApiResponseError": E.SERVER,  # a body that is not JSON
    "google.genai.ContinuationInterruptedError": E.SERVER,
    # google-auth (Vertex AI credentials)
    "google.auth.GoogleAuthError": E.AUTH,
    "google.auth.TransportError": E.CONNECTION,
    "google.auth.TimeoutError": E.TIMEOUT,
    "google.auth.ResponseError": E.SERVER,
    # langchain-google-genai re-raises SDK errors as its own, from them: the status is the cause's
    # (its ModelError subclasses are read from langchain-core's table first)
    "langchain_google_genai.GoogleGenerativeAIError": None,
    "langchain_google_genai.ChatGoogleGenerativeAIError": None,
}
# Gemini answers a bad key with 400 INVALID_ARGUMENT; the reason in the details says what it is
CODES = {"API_KEY_INVALID": E.AUTH, "DEADLINE_EXCEEDED": E.TIMEOUT}
PARAMS = Params(max_tokens="max_output_tokens", sampling=SAMPLING)


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_google_genai import ChatGoogleGenerativeAI  # lazy: langchain_google_genai
    except ImportError as exc:
        raise missing_extra("google", "google") from exc
    import httpx  # lazy: httpx

    from coffee_nb.providers._guard import guarded  # lazy: langchain_core
    from coffee_nb.providers._transport import AsyncPooledTransport, PooledTransport  # lazy: httpx

    params = dict(s.params)
    # one model per event loop for async calls (the Candidate builds them so): its transport is the
    # loop's pooled client; a sync model's is the sync pool. A client of the user's goes first.
    sync_client, async_client = params.pop("http_client", None), params.pop("http_async_client", None)
    transport = AsyncPooledTransport(async_client) if s.loop is not None else PooledTransport(sync_client)
    # google-genai picks httpx or httpx2 by the classes it finds in client_args, walking their bases'
    # modules; the groq SDK relabels httpx.BaseTransport as "groq", hiding ours. Limits (unused beside a
    # transport) says "httpx" plainly.
    client_args = {"transport": transport, "limits": httpx.Limits()}
    kwargs: dict[str, Any] = {
        "model": model,
        "max_retries": 0,
        "timeout": s.timeout,
        "client_args": client_args,
        **params,
    }
    if key is not None:
        kwargs.setdefault("api_key", key)
    return ChatGoogleGenerativeAI(**guarded(kwargs))


def register() -> None:
    register_provider(
        "google",
        _build,
        env_var=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        timeout_kwarg=True,  # a per-call ``timeout=`` (seconds) becomes the request's
        finish_reason=True,
        errors=ERRORS,
        codes=CODES,
        params=PARAMS,
        classes=("ChatGoogleGenerativeAI",),
        extra="google",
        needs="langchain_google_genai",
        examples=("gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"),
    )
