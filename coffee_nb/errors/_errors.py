"""coffee_nb's exceptions and the one place provider errors are classified (``CoffeeError`` and
``ConfigError`` are defined in ``_shared/_exceptions.py``, below every layer that raises them).

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
:class:`ErrorClass`, and the policy table (``_policy.py``) decides what to do about it. The tables it
reads are in ``_error_tables.py``; reading statuses, codes and waits off an exception in ``_error_probe.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffee_nb._shared._exceptions import CoffeeError, ConfigError
from coffee_nb._shared._redact import chained, is_clean, redact, remember_secret, scrub, secret_values
from coffee_nb.errors._error_probe import codes_of, retry_after, status_of
from coffee_nb.errors._error_tables import (  # noqa: F401 - _SDK_TABLE, _Slices: where tests and docs look them up
    _CONTEXT_CODES,
    _CONTEXT_MARKERS,
    _FILTER_CODES,
    _FILTER_MARKERS,
    _NO_IMAGE_MARKERS,
    _NOT_FOUND_MARKERS,
    _SDK_TABLE,
    _STATUS,
    ErrorClass,
    _Slices,
    lookup,
)

if TYPE_CHECKING:
    from coffee_nb._shared._records import CallRecord

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
    "lookup",
    "redact",
    "remember_secret",
    "scrub",
]


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


_UNREAD = object()


class Failure:
    """A classified exception: its class, its (redacted) message, its HTTP status (None for an error sent
    inside a stream that began as 200), and ``retry_after``, the seconds the provider asked to wait
    (Retry-After / retry-after-ms headers, Google's RetryInfo), which is read off the exception only when
    the policy asks for it (a rate limit, a retry). Read-only by convention (one is built per failure:
    plain slots, no frozen-attribute machinery)."""

    __slots__ = ("error_class", "message", "status", "_retry_after", "_exc")

    error_class: ErrorClass
    message: str
    status: int | None
    _retry_after: object  # float | None, or _UNREAD until asked
    _exc: BaseException | None

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        *,
        exc: BaseException | None = None,
    ) -> None:
        self.error_class = error_class
        self.message = message
        self.status = status
        self._retry_after = _UNREAD if exc is not None and retry_after is None else retry_after
        self._exc = exc

    @property
    def retry_after(self) -> float | None:
        value = self._retry_after
        if value is _UNREAD:
            value = retry_after(self._exc) if self._exc is not None else None
            self._retry_after, self._exc = value, None  # read once; the exception need not be kept alive
        return value if isinstance(value, (int, float)) else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failure):
            return NotImplemented
        return (self.error_class, self.message, self.status, self.retry_after) == (
            other.error_class,
            other.message,
            other.status,
            other.retry_after,
        )

    def __hash__(self) -> int:
        return hash((self.error_class, self.message, self.status))

    def __repr__(self) -> str:
        return (
            f"Failure(error_class={self.error_class!r}, message={self.message!r}, status={self.status!r}, "
            f"retry_after={self.retry_after!r})"
        )


# What an asyncio object says when it is used after its event loop closed, or from another loop: a
# client's pooled connections outlived the loop they were opened on. A fresh client fixes it.
_LOOP_MARKERS = ("Event loop is closed", "attached to a different loop", "bound to a different event loop")
_LOOP_SUSPECTS = (ErrorClass.UNKNOWN, ErrorClass.BAD_REQUEST, ErrorClass.SERVER)


def _loop_gone(exc: BaseException) -> bool:
    """Does ``exc``, or an exception chained to it, say its event loop is gone?"""
    for e in chained(exc, 4):
        if isinstance(e, RuntimeError):
            text = str(e)
            if any(m in text for m in _LOOP_MARKERS):
                return True
    return False


def classify(exc: BaseException) -> Failure:
    """Map any exception raised by a model call to a :class:`Failure`.

    In order: coffee_nb's own errors; the class tables (nearest mapped base class); an HTTP status
    found by duck typing; then the structured error codes and the message refine ``bad_request`` /
    ``server`` into ``context_overflow`` / ``content_filter`` / ``auth``. An error sent inside a stream
    (no status, or the 200 the stream began with) is read by its body's type or code first, like the
    same error sent as a status (an in-band ``overloaded_error`` is ``server``, not ``bad_request``).
    An error saying its event loop is closed is ``connection``. What is still unknown is ``unknown``
    (the policy decides whether that falls back).
    """
    secrets = secret_values()  # read once for both
    scrub(exc, secrets, deep=False)  # its text; the drivers scrub deeply what leaves coffee_nb
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
    status = status_of(exc)
    if status is not None and 200 <= status < 300:
        # An error event inside a stream that began as 200 (anthropic raises APIStatusError with the 200):
        # the 200 says nothing about the failure, the body says what it is (read below as in-band codes).
        status = None
    codes = codes_of(exc)
    # With no HTTP status (an error sent in-band: anthropic's ``event: error``, openai's error chunk), the
    # body's type/code decides, as its out-of-band twin's status would; else only the providers' own codes.
    by_code = _Slices.codes if status is not None else _Slices.inband
    coded = next((by_code[c] for c in codes.split() if c in by_code), None) if by_code and codes else None
    if coded is not None and error_class in (None, ErrorClass.BAD_REQUEST, ErrorClass.SERVER):
        # a provider's own code says more (botocore's ThrottlingException, Gemini's API_KEY_INVALID)
        error_class, found = coded, True
    if error_class is None and status is not None:
        error_class = _STATUS.get(status, ErrorClass.SERVER if status >= 500 else ErrorClass.BAD_REQUEST)
        found = True
    if error_class is None:
        error_class = ErrorClass.SERVER if found else ErrorClass.UNKNOWN
    if codes and any(m in codes for m in _FILTER_CODES):
        error_class = ErrorClass.CONTENT_FILTER
    elif codes and any(m in codes for m in _CONTEXT_CODES):
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
        elif error_class is ErrorClass.BAD_REQUEST and any(m in low for m in _NO_IMAGE_MARKERS):
            error_class = ErrorClass.CAPABILITY
        elif "api_key" in low and status is None:
            error_class = ErrorClass.AUTH
    if status == 529 or (status == 503 and "overloaded" in message.lower()):
        error_class = ErrorClass.SERVER
    elif status is None and error_class in _LOOP_SUSPECTS and _loop_gone(exc):
        error_class = ErrorClass.CONNECTION  # a client bound to a closed (or another) event loop
    if error_class is ErrorClass.UNKNOWN and not message.startswith(type(exc).__name__):
        message = f"{type(exc).__name__}: {message}"  # an unknown error names its class
    return Failure(error_class, message, status, exc=exc)
