"""coffee_nb's exceptions and the one place provider errors are classified.

Exception tree::

    CoffeeError
     ├── ConfigError (also ValueError)      bad spec, limit or option, raised at construction
     ├── MissingAPIKeyError                 a provider's key is not set (classified as ``auth``)
     ├── EmptyResponseError                 a stream ended before any chunk (classified as ``server``)
     ├── AllModelsFailedError               every candidate failed; carries every attempt
     │    ├── DeadlineExceededError         ...because the call's deadline ran out
     │    └── StreamInterruptedError        a stream broke after its first chunk and wasn't recovered
     └── BudgetExceededError                no candidate fits a hard budget

Provider and transport exceptions (openai, anthropic, httpx/httpx2, langchain-core's ``ModelError``
subclasses, builtins) are never wrapped on the way through; :func:`classify` maps each to one
:class:`ErrorClass`, and the policy table (``_policy.py``) decides what to do about it.
"""

from __future__ import annotations

import email.utils
import functools
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from coffee_nb._redact import is_clean, redact, remember_secret, scrub, secret_values

if TYPE_CHECKING:
    from coffee_nb._records import CallRecord

__all__ = [
    "AllModelsFailedError",
    "BudgetExceededError",
    "CoffeeError",
    "ConfigError",
    "DeadlineExceededError",
    "ErrorClass",
    "Failure",
    "MissingAPIKeyError",
    "StreamInterruptedError",
    "classify",
    "is_clean",
    "redact",
    "remember_secret",
    "scrub",
]


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
    UNKNOWN = "unknown"  # raised inside a candidate's call and not recognised (the policy says what then)


class CoffeeError(Exception):
    """Root of every exception coffee_nb raises itself. Its text never holds a key (see :func:`redact`)."""

    def __str__(self) -> str:
        # messages repeat values users gave (specs, URLs, provider replies): the last line of defence
        return redact(super().__str__())

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback wall: what happened, not where in our code.
        lines = str(self).splitlines() or [""]
        return [f"{type(self).__name__}: {lines[0]}", *lines[1:]]


class ConfigError(CoffeeError, ValueError):
    """A bad model spec, limit or option. Raised at construction, naming the value and the accepted forms."""


class MissingAPIKeyError(CoffeeError):
    """A provider's API key is not set. Raised when that model is tried, so the chain can fall back."""

    def __init__(self, provider: str, env_var: str) -> None:
        self.provider = provider
        self.env_var = env_var
        super().__init__(
            f"No API key for provider {provider!r}: set the environment variable {env_var} "
            f"(or pass a ready-made chat model instead of a spec string)."
        )


class EmptyResponseError(CoffeeError):
    """A provider answered a stream with no chunks at all (classified as ``server``)."""


class BudgetExceededError(CoffeeError):
    """No candidate model fits a hard budget. The message names the period, limit, spent, reserved and reset."""


class AllModelsFailedError(CoffeeError):
    """Every candidate model failed. ``attempts`` holds one :class:`CallRecord` per attempt."""

    def __init__(self, attempts: list[CallRecord], reason: str = "all candidate models failed") -> None:
        self.attempts = list(attempts)
        lines = [f"{reason} ({len(self.attempts)} attempt{'s' if len(self.attempts) != 1 else ''}):"]
        for r in self.attempts:
            what = r.error_class or r.outcome
            msg = f": {r.error_message}" if r.error_message else ""
            lines.append(f"  {r.attempt + 1}. {r.model} [{r.role}] {what} after {r.latency_s:.3f}s{msg}")
        super().__init__("\n".join(lines))


class DeadlineExceededError(AllModelsFailedError):
    """The call's deadline ran out before any candidate answered."""


class StreamInterruptedError(AllModelsFailedError):
    """A stream broke after text reached the caller and was not recovered (``Policy(stream_recovery="raise")``,
    or no fallback could finish it). ``partial_text`` is what was delivered; ``attempts`` every attempt."""

    def __init__(self, attempts: list[CallRecord], partial_text: str, reason: str) -> None:
        self.partial_text = partial_text
        super().__init__(attempts, f"stream interrupted after {len(partial_text)} characters: {reason}")


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified exception."""

    error_class: ErrorClass
    message: str
    status: int | None = None
    retry_after: float | None = None  # seconds, from Retry-After / retry-after-ms


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


# Namespace packages shared by unrelated SDKs: their classes are keyed by two levels ("google.genai.X",
# "google.auth.X"), everything else by the top-level package.
_NAMESPACES = frozenset({"google", "azure"})


def _key(cls: type) -> str:
    parts = cls.__module__.split(".", 2)
    top = f"{parts[0]}.{parts[1]}" if parts[0] in _NAMESPACES and len(parts) > 1 else parts[0]
    return f"{top}.{cls.__qualname__}"


class _Slices:
    """The table merged with the registered providers' slices, rebuilt when the registry changes."""

    token: tuple[int, ...] = ()
    table: dict[str, ErrorClass | None] = _SDK_TABLE
    codes: dict[str, ErrorClass] = {}  # noqa: RUF012 - replaced whole, never mutated


def _merged() -> None:
    """Bring :class:`_Slices` up to date with the provider registry (one tuple compare when it is)."""
    from coffee_nb import _config  # no cycle: _config imports nothing of coffee_nb at import

    providers = _config.PROVIDERS.ready()  # built-in slices register on first use
    values = list(providers.values())
    # registering (or a reset) bumps the prices' generation; ids tell providers apart within one
    token = (_config.PRICES.generation, *map(id, values))
    if token == _Slices.token:
        return
    table: dict[str, ErrorClass | None] = {}
    codes: dict[str, ErrorClass] = {}
    for provider in values:
        table.update(getattr(provider, "errors", None) or {})
        codes.update(getattr(provider, "codes", None) or {})
    _Slices.table, _Slices.codes = {**table, **_SDK_TABLE}, codes
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


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, by duck typing (``status_code``, ``status``, an int ``code``,
    ``response.status_code``, botocore's ``response["ResponseMetadata"]["HTTPStatusCode"]``), or the one
    of the exception it wraps (LangChain integrations re-raise SDK errors as their own, ``from`` them)."""
    status = _own_status(exc)
    cause = exc.__cause__
    for _ in range(3):
        if status is not None or cause is None:
            break
        status, cause = _own_status(cause), cause.__cause__
    return status


def _own_status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "http_status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(response, dict):  # botocore ClientError
        meta = response.get("ResponseMetadata")
        status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
        if isinstance(status, int):
            return status
    return None


def _codes_of(exc: BaseException) -> str:
    """Error codes and types a provider put in the structured error (lower-cased, space-separated).

    LangChain's messages may omit them (``content_policy_violation`` is in ``exc.code``, not in
    ``str(exc)``), so classification reads the attributes and the parsed body, and the cause's too.
    """
    found: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 4:
            continue
        seen.add(id(e))
        for attr in ("code", "type", "error_code", "reason", "finish_reason"):
            value = getattr(e, attr, None)
            if isinstance(value, str):
                found.append(value)
        body = getattr(e, "body", None)
        if body is None:
            body = getattr(e, "details", None)  # google-genai's APIError: the parsed error body
        response = getattr(e, "response", None)
        if isinstance(response, dict):  # botocore ClientError: response["Error"]["Code"]
            body = body or response
        found += _body_codes(body)
        todo += [e.__cause__, e.__context__]
    return " ".join(found).lower()


def _body_codes(body: Any, depth: int = 0) -> list[str]:
    if not isinstance(body, dict) or depth > 2:
        return []
    out = [
        v
        for k in ("code", "type", "status", "Code", "reason", "finish_reason", "block_reason")
        if isinstance(v := body.get(k), str)
    ]
    for k in ("error", "Error", "details", "promptFeedback"):
        inner = body.get(k)
        if isinstance(inner, list):
            for item in inner[:4]:
                out += _body_codes(item, depth + 1)
        else:
            out += _body_codes(inner, depth + 1)
    return out


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked to wait: Retry-After(-ms) headers, or Google's ``RetryInfo.retryDelay``,
    of ``exc`` or the exception it wraps."""
    e: BaseException | None = exc
    for _ in range(3):
        if e is None:
            return None
        found = _header_wait(_headers_of(e))
        if found is None:
            found = _google_retry_delay(getattr(e, "details", None))
        if found is not None:
            return found
        e = e.__cause__
    return None


def _headers_of(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        meta = response.get("ResponseMetadata")
        return meta.get("HTTPHeaders") if isinstance(meta, dict) else None
    headers = getattr(response, "headers", None)
    if headers is None:  # mistralai's errors keep them on the exception (and on raw_response)
        headers = getattr(exc, "headers", None) or getattr(getattr(exc, "raw_response", None), "headers", None)
    return headers


def _google_retry_delay(details: Any) -> float | None:
    """``"37s"`` from a google.rpc.RetryInfo in an error body's details."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else ():
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def _header_wait(headers: Any) -> float | None:
    if headers is None or not hasattr(headers, "get"):
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except Exception:  # noqa: BLE001 - odd header objects must not break classification
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify(exc: BaseException) -> Failure:
    """Map any exception raised by a model call to a :class:`Failure`.

    In order: coffee_nb's own errors; the class tables (nearest mapped base class); an HTTP status
    found by duck typing; then the structured error codes and the message refine ``bad_request`` /
    ``server`` into ``context_overflow`` / ``content_filter`` / ``auth``. What is still unknown is
    ``unknown`` (the policy decides whether that falls back).
    """
    secrets = secret_values()  # read once for both
    scrub(exc, secrets)  # the exception itself may reach the caller (a bad_request is raised as is): no key in it
    message = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, MissingAPIKeyError):
        return Failure(ErrorClass.AUTH, message)
    if isinstance(exc, BudgetExceededError):
        return Failure(ErrorClass.BUDGET, message)
    if isinstance(exc, EmptyResponseError) or (
        type(exc) is ValueError and "No generation chunks were returned" in message  # langchain-core, empty stream
    ):
        return Failure(ErrorClass.SERVER, message)
    cls: type = type(exc)  # (typed as a plain type: mypy can't see a class object as Hashable)
    found, error_class = lookup(cls)
    status = _status_of(exc)
    codes = _codes_of(exc)
    by_code = _Slices.codes
    coded = next((by_code[c] for c in codes.split() if c in by_code), None) if by_code and codes else None
    if coded is not None and error_class in (None, ErrorClass.BAD_REQUEST, ErrorClass.SERVER):
        # a provider's own code says more (botocore's ThrottlingException, Gemini's API_KEY_INVALID)
        error_class, found = coded, True
    if error_class is None and status is not None:
        error_class = _STATUS.get(status, ErrorClass.SERVER if status >= 500 else ErrorClass.BAD_REQUEST)
        found = True
    if error_class is None:
        error_class = ErrorClass.SERVER if found else ErrorClass.UNKNOWN
    if any(m in codes for m in _FILTER_CODES):
        error_class = ErrorClass.CONTENT_FILTER
    elif any(m in codes for m in _CONTEXT_CODES):
        error_class = ErrorClass.CONTEXT_OVERFLOW
    elif error_class in (ErrorClass.BAD_REQUEST, ErrorClass.SERVER) and found:
        # Providers report context overflow and content filtering as plain 400s (or 413s); read the text.
        low = message.lower()
        if any(m in low for m in _CONTEXT_MARKERS):
            error_class = ErrorClass.CONTEXT_OVERFLOW
        elif any(m in low for m in _FILTER_MARKERS):
            error_class = ErrorClass.CONTENT_FILTER
        elif error_class is ErrorClass.BAD_REQUEST and any(m in low for m in _NOT_FOUND_MARKERS):
            error_class = ErrorClass.NOT_FOUND
        elif "api_key" in low and status is None:
            error_class = ErrorClass.AUTH
    if status == 529 or (status == 503 and "overloaded" in message.lower()):
        error_class = ErrorClass.SERVER
    if error_class is ErrorClass.UNKNOWN and not message.startswith(type(exc).__name__):
        message = f"{type(exc).__name__}: {message}"  # an unknown error names its class
    return Failure(error_class, message, status, _retry_after(exc))
