"""Reading a provider's exception by duck typing: the HTTP status, structured error codes and the
wait it asked for, wherever each SDK keeps them (attributes, parsed bodies, headers, wrapped causes)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from coffee_nb._shared._redact import chained

__all__ = ["chained", "codes_of", "retry_after", "status_of"]


def status_of(exc: BaseException) -> int | None:
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


def codes_of(exc: BaseException) -> str:
    """Error codes and types a provider put in the structured error (lower-cased, space-separated).

    LangChain's messages may omit them (``content_policy_violation`` is in ``exc.code``, not in
    ``str(exc)``), so classification reads the attributes and the parsed body, and the cause's too.
    """
    found: list[str] = []
    for e in chained(exc, 4):
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
        if isinstance(body, dict):
            _body_codes(body, found)
    return " ".join(found).lower() if found else ""


# where a parsed error body keeps its codes, and where its nested errors are; in the order they are read
_CODE_KEYS = {k: i for i, k in enumerate(("code", "type", "status", "Code", "reason", "finish_reason", "block_reason"))}
_NESTED_KEYS = {k: i for i, k in enumerate(("error", "Error", "details", "promptFeedback"))}


def _body_codes(body: dict[Any, Any], out: list[str], depth: int = 0) -> None:
    """Append the codes in a parsed error body (and in its nested errors, two levels deep) to ``out``:
    this level's in the order of ``_CODE_KEYS``, then each nested error's in the order of ``_NESTED_KEYS``.
    (One pass over the body's few keys, not a lookup of every key it might have.)"""
    hits: list[tuple[int, str]] = []
    nested: list[tuple[int, Any]] = []
    for k, v in body.items():
        rank = _CODE_KEYS.get(k)
        if rank is not None:
            if isinstance(v, str):
                hits.append((rank, v))
        elif depth < 2 and (rank := _NESTED_KEYS.get(k)) is not None:
            nested.append((rank, v))
    if hits:
        hits.sort()  # (ranks differ: one per key, and a dict's keys are distinct)
        out += [v for _, v in hits]
    if nested:
        nested.sort()
        for _, inner in nested:
            if isinstance(inner, dict):
                _body_codes(inner, out, depth + 1)
            elif isinstance(inner, list):
                for item in inner[:4]:
                    if isinstance(item, dict):
                        _body_codes(item, out, depth + 1)


def retry_after(exc: BaseException) -> float | None:
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
