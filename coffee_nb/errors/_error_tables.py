"""The classification tables: provider/transport exception classes, HTTP statuses, error codes and
message markers, each mapped to one :class:`ErrorClass` (read by ``_errors.classify``).

To map a new SDK's exceptions, add them to :data:`_SDK_TABLE` (or bring them with the provider's
registration, ``register_provider(errors=..., codes=...)``); ``tests/test_errors.py`` checks every
exception class of the SDKs it lists is mapped.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import ClassVar

from coffee_nb._shared import _config  # imports nothing of coffee_nb itself: no cycle

__all__ = ["ErrorClass", "lookup"]


class ErrorClass(StrEnum):
    """What kind of failure an attempt hit. The policy table is keyed by these."""

    RATE_LIMIT = "rate_limit"
    SERVER = "server"  # 5xx, overloaded, malformed response
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONTEXT_OVERFLOW = "context_overflow"
    CONTENT_FILTER = "content_filter"
    AUTH = "auth"  # bad/missing key, permission denied
    NOT_FOUND = "not_found"  # unknown model
    BAD_REQUEST = "bad_request"  # the caller's fault: never trips a cooldown
    BUDGET = "budget"
    COST = "cost"  # skipped: costlier than the policy allows (fallback_cost, max_cost)
    COOLDOWN = "cooldown"  # skipped: the model's circuit breaker is open
    CAPABILITY = "capability"  # skipped: the model can't do what the call needs (continue a prefill, ...)
    UNKNOWN = "unknown"  # raised inside a candidate's call and not recognised (the policy says what then)


# Keyed by "<top-level package>.<class name>" so no SDK is imported to build it (they load lazily).
# langchain-core's normalized classes are checked before SDK classes: langchain-openai raises
# e.g. OpenAIContextOverflowError(openai.BadRequestError, ContextOverflowError), which must read as
# context_overflow, not bad_request. A value of None means "decide by HTTP status".
_LANGCHAIN_TABLE: dict[str, ErrorClass] = {
    "langchain_core.ContextOverflowError": ErrorClass.CONTEXT_OVERFLOW,
    "langchain_core.ModelRateLimitError": ErrorClass.RATE_LIMIT,
    "langchain_core.ModelAPIError": ErrorClass.SERVER,
    "langchain_core.ModelConnectionError": ErrorClass.CONNECTION,
    "langchain_core.ModelTimeoutError": ErrorClass.TIMEOUT,
    "langchain_core.ModelAuthenticationError": ErrorClass.AUTH,
    "langchain_core.ModelPermissionDeniedError": ErrorClass.AUTH,
    "langchain_core.ModelNotFoundError": ErrorClass.NOT_FOUND,
    "langchain_core.ModelInvalidRequestError": ErrorClass.BAD_REQUEST,
    "langchain_core.ModelRefusalError": ErrorClass.CONTENT_FILTER,
    "langchain_core.ModelError": ErrorClass.SERVER,
}

_SDK_COMMON: dict[str, ErrorClass | None] = {
    # Shared by the Stainless-generated SDKs (openai, anthropic).
    "APITimeoutError": ErrorClass.TIMEOUT,
    "APIConnectionError": ErrorClass.CONNECTION,
    "RateLimitError": ErrorClass.RATE_LIMIT,
    "InternalServerError": ErrorClass.SERVER,
    "AuthenticationError": ErrorClass.AUTH,
    "PermissionDeniedError": ErrorClass.AUTH,
    "NotFoundError": ErrorClass.NOT_FOUND,
    "BadRequestError": ErrorClass.BAD_REQUEST,
    "UnprocessableEntityError": ErrorClass.BAD_REQUEST,
    "ConflictError": ErrorClass.SERVER,  # 409: the SDKs themselves retry it
    "APIResponseValidationError": ErrorClass.SERVER,  # malformed response body
    "APIStatusError": None,
    "APIError": ErrorClass.SERVER,
}

_HTTPX_COMMON: dict[str, ErrorClass | None] = {
    "TimeoutException": ErrorClass.TIMEOUT,  # Connect/Read/Write/PoolTimeout
    "NetworkError": ErrorClass.CONNECTION,  # Connect/Read/Write/CloseError
    "RemoteProtocolError": ErrorClass.CONNECTION,  # peer hung up mid-response
    "ProxyError": ErrorClass.CONNECTION,
    "TransportError": ErrorClass.CONNECTION,
    "LocalProtocolError": ErrorClass.BAD_REQUEST,
    "ProtocolError": ErrorClass.CONNECTION,
    "UnsupportedProtocol": ErrorClass.BAD_REQUEST,
    "DecodingError": ErrorClass.SERVER,
    "TooManyRedirects": ErrorClass.SERVER,
    "RequestError": ErrorClass.CONNECTION,
    "HTTPStatusError": None,
    "InvalidURL": ErrorClass.BAD_REQUEST,
    "CookieConflict": ErrorClass.BAD_REQUEST,
    "StreamError": ErrorClass.BAD_REQUEST,  # StreamConsumed/Closed, Request/ResponseNotRead: misuse
    "HTTPError": ErrorClass.CONNECTION,
}

_SDK_TABLE: dict[str, ErrorClass | None] = {
    **{f"openai.{k}": v for k, v in _SDK_COMMON.items()},
    **{f"anthropic.{k}": v for k, v in _SDK_COMMON.items()},
    **{f"httpx.{k}": v for k, v in _HTTPX_COMMON.items()},
    **{f"httpx2.{k}": v for k, v in _HTTPX_COMMON.items()},
    "openai.ContentFilterFinishReasonError": ErrorClass.CONTENT_FILTER,
    "openai.LengthFinishReasonError": ErrorClass.BAD_REQUEST,  # max_tokens too small for a parse
    "openai.InvalidWebhookSignatureError": ErrorClass.BAD_REQUEST,
    "openai.OAuthError": ErrorClass.AUTH,
    "openai.WebSocketConnectionClosedError": ErrorClass.CONNECTION,
    "openai.WebSocketQueueFullError": ErrorClass.CONNECTION,
    "openai._AmbiguousModuleClientUsageError": ErrorClass.BAD_REQUEST,
    "openai.OpenAIError": ErrorClass.BAD_REQUEST,  # client misconfiguration (refined below)
    "anthropic.AnthropicError": ErrorClass.BAD_REQUEST,
    "anthropic.OverloadedError": ErrorClass.SERVER,
    "anthropic.ServiceUnavailableError": ErrorClass.SERVER,
    "anthropic.GatewayTimeoutError": ErrorClass.TIMEOUT,
    "anthropic.DeadlineExceededError": ErrorClass.TIMEOUT,
    "anthropic.RequestTimeoutError": ErrorClass.TIMEOUT,
    "anthropic.RequestTooLargeError": ErrorClass.CONTEXT_OVERFLOW,
    "anthropic.ContentTooLargeError": ErrorClass.CONTEXT_OVERFLOW,
    "anthropic.CredentialsError": ErrorClass.AUTH,
    "anthropic.WorkloadIdentityError": ErrorClass.AUTH,
    "anthropic.IdentityTokenFileError": ErrorClass.AUTH,
    # builtins
    "builtins.TimeoutError": ErrorClass.TIMEOUT,  # also asyncio.TimeoutError
    "builtins.ConnectionError": ErrorClass.CONNECTION,
    "json.JSONDecodeError": ErrorClass.SERVER,  # a provider answered with a body that is not JSON
    # a refusal answered with HTTP 200 (a finish reason, a blocked prompt): coffee_nb.providers._guard
    "coffee_nb.ContentFilteredError": ErrorClass.CONTENT_FILTER,
}
# Every other provider SDK (google-genai, botocore, groq, mistralai, ...) brings its slice of the table
# and its structured error codes with its registration (``register_provider(errors=..., codes=...)``):
# ``lookup`` reads them merged with the table above (which wins on a clash).

_STATUS: dict[int, ErrorClass] = {
    400: ErrorClass.BAD_REQUEST,
    401: ErrorClass.AUTH,
    402: ErrorClass.BUDGET,  # provider-side spend limit / payment required
    403: ErrorClass.AUTH,
    404: ErrorClass.NOT_FOUND,
    408: ErrorClass.TIMEOUT,
    409: ErrorClass.SERVER,
    413: ErrorClass.CONTEXT_OVERFLOW,
    422: ErrorClass.BAD_REQUEST,
    429: ErrorClass.RATE_LIMIT,
}

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "input tokens exceed",
    "too many tokens",
    "exceeds the maximum number of tokens",  # Gemini
    "input is too long",  # Bedrock (ValidationException)
    "exceed context limit",  # Bedrock
    "too large for model with",  # Mistral, vLLM
)
# A model name the provider doesn't know, said with a 400 (Bedrock, Mistral, OpenRouter, DeepSeek, ...)
_NOT_FOUND_MARKERS = (
    "model identifier is invalid",
    "model_not_found",
    "invalid model",
    "unknown model",
    "model not found",
    "not a valid model",
    "model not exist",
    "model does not exist",
)
# A model that takes no images, said with a 400: it can't do what the call needs (another model may)
_NO_IMAGE_MARKERS = (
    "image_url is only supported by certain models",  # OpenAI (and the sandbox)
    "does not support image",
    "image input is not supported",
    "images are not supported",
    "image inputs are not supported",
    "vision is not supported",
    "does not support vision",
)
_FILTER_MARKERS = ("content_filter", "content_policy", "content management policy", "responsibleaipolicy")
# Structured error codes/types (from the error body or the exception's attributes), lower-cased.
_FILTER_CODES = (
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicyviolation",
    "safety",
    "prohibited_content",
    "blocklist",
    "guardrail",
    "refusal",
)
_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length", "request_too_large")

# An error sent inside a response that began as 200 (an SSE ``event: error``, an OpenAI-compatible chunk
# holding ``{"error": {...}}``) has no HTTP status of its own: the SDKs raise it with the 200 (anthropic's
# APIStatusError) or none (openai's APIError). Its body's type or code says what happened; each maps to
# the class its out-of-band twin (the same error sent as an HTTP status) gets. Exact codes, lower-case;
# a numeric code (OpenRouter's ``{"error": {"code": 429}}``) is read as the status it names.
_INBAND_CODES: dict[str, ErrorClass] = {
    # Anthropic's error types (https://docs.anthropic.com/en/api/errors), with their statuses
    "overloaded_error": ErrorClass.SERVER,  # 529
    "api_error": ErrorClass.SERVER,  # 500
    "rate_limit_error": ErrorClass.RATE_LIMIT,  # 429
    "timeout_error": ErrorClass.TIMEOUT,  # 504
    "request_too_large": ErrorClass.CONTEXT_OVERFLOW,  # 413 (as the table reads RequestTooLargeError)
    "billing_error": ErrorClass.BUDGET,  # 402
    "not_found_error": ErrorClass.NOT_FOUND,  # 404
    "permission_error": ErrorClass.AUTH,  # 403
    "authentication_error": ErrorClass.AUTH,  # 401
    "invalid_request_error": ErrorClass.BAD_REQUEST,  # 400 (also OpenAI's type)
    # OpenAI and the OpenAI-compatible servers (OpenRouter, Groq, DeepSeek, vLLM, ...): code, then type
    "rate_limit_exceeded": ErrorClass.RATE_LIMIT,  # 429
    "insufficient_quota": ErrorClass.RATE_LIMIT,  # 429, as its out-of-band twin reads
    "server_error": ErrorClass.SERVER,  # 500
    "internal_error": ErrorClass.SERVER,
    "internal_server_error": ErrorClass.SERVER,  # Groq
    "overloaded": ErrorClass.SERVER,  # 503 "the engine is currently overloaded"
    "service_unavailable": ErrorClass.SERVER,
    "service_unavailable_error": ErrorClass.SERVER,
    "bad_gateway": ErrorClass.SERVER,
    "invalid_api_key": ErrorClass.AUTH,  # 401
    "permission_denied": ErrorClass.AUTH,
    "model_not_found": ErrorClass.NOT_FOUND,  # 404
}
_INBAND_STATUS = {  # a numeric code: the status it names, read as an out-of-band status would be
    str(s): _STATUS.get(s, ErrorClass.SERVER if s >= 500 else ErrorClass.BAD_REQUEST) for s in range(400, 600)
}


# Namespace packages shared by unrelated SDKs: their classes are keyed by two levels ("google.genai.X",
# "google.auth.X"), everything else by the top-level package.
_NAMESPACES = frozenset({"google", "azure"})


def _key(cls: type) -> str:
    parts = cls.__module__.split(".", 2)
    top = f"{parts[0]}.{parts[1]}" if parts[0] in _NAMESPACES and len(parts) > 1 else parts[0]
    return f"{top}.{cls.__qualname__}"


class _Slices:
    """The table merged with the registered providers' slices, rebuilt when the registry changes."""

    token = -1  # the provider registry's generation the table was built for
    table: dict[str, ErrorClass | None] = _SDK_TABLE
    codes: dict[str, ErrorClass] = {}  # noqa: RUF012 - replaced whole, never mutated
    # the same with the in-band codes, for an error that came with no HTTP status of its own
    inband: ClassVar[dict[str, ErrorClass]] = {**_INBAND_STATUS, **_INBAND_CODES}


def _merged() -> None:
    """Bring :class:`_Slices` up to date with the provider registry (one int compare when it is)."""
    providers = _config.PROVIDERS.ready()  # built-in slices register on first use
    if providers.generation == _Slices.token:
        return
    token = providers.generation
    table: dict[str, ErrorClass | None] = {}
    codes: dict[str, ErrorClass] = {}
    for provider in list(providers.values()):
        table.update(getattr(provider, "errors", None) or {})
        codes.update(getattr(provider, "codes", None) or {})
    _Slices.table, _Slices.codes = {**table, **_SDK_TABLE}, codes
    _Slices.inband = {**codes, **_INBAND_STATUS, **_INBAND_CODES}  # (the core's win a clash, as in the table)
    _lookup.cache_clear()
    _Slices.token = token


def lookup(cls: type) -> tuple[bool, ErrorClass | None]:
    """Find ``cls`` (or its nearest mapped base) in the tables: langchain-core's, then the SDK table with
    every registered provider's slice (cached per class until the registry changes).

    Returns ``(found, error_class)``; ``error_class`` is None when it depends on the HTTP status.
    """
    _merged()
    return _lookup(cls)


@functools.lru_cache(maxsize=1024)
def _lookup(cls: type) -> tuple[bool, ErrorClass | None]:
    mro = cls.__mro__
    for base in mro:
        hit = _LANGCHAIN_TABLE.get(_key(base))
        if hit is not None:
            return True, hit
    table = _Slices.table
    for base in mro:
        k = _key(base)
        if k in table:
            return True, table[k]
    return False, None
