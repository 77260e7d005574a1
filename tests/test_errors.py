"""The error taxonomy: every SDK exception class is mapped; instances are classified by status and body."""

from __future__ import annotations

import inspect

import anthropic
import httpx
import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core import exceptions as lc_exceptions

from coffee_nb import ErrorClass, MissingAPIKeyError
from coffee_nb._errors import classify, lookup, redact
from coffee_nb.testing import http_error


def _exception_classes(module):
    found = {}
    for mod in (module, getattr(module, "_exceptions", None)):
        for name in dir(mod) if mod is not None else ():
            obj = getattr(mod, name, None)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)  # warnings are not raised by calls
                and obj.__module__.startswith(module.__name__)
            ):
                found[obj] = None
    return list(found)


@pytest.mark.parametrize("module", [openai, httpx, httpx2, anthropic], ids=lambda m: m.__name__)
def test_every_sdk_exception_class_is_mapped(module):
    classes = _exception_classes(module)
    assert len(classes) >= 10
    unmapped = [c.__qualname__ for c in classes if not lookup(c)[0]]
    assert unmapped == [], f"{module.__name__} exceptions without a mapping: {unmapped}"


def test_every_langchain_model_error_is_mapped():
    classes = [c for c in _exception_classes(lc_exceptions) if issubclass(c, lc_exceptions.ModelError)]
    assert len(classes) >= 10
    for cls in classes:
        found, error_class = lookup(cls)
        assert found and error_class is not None, cls


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ErrorClass.BAD_REQUEST),
        (401, ErrorClass.AUTH),
        (403, ErrorClass.AUTH),
        (404, ErrorClass.NOT_FOUND),
        (409, ErrorClass.SERVER),
        (422, ErrorClass.BAD_REQUEST),
        (429, ErrorClass.RATE_LIMIT),
        (500, ErrorClass.SERVER),
        (503, ErrorClass.SERVER),
        (529, ErrorClass.SERVER),
    ],
)
def test_status_codes(status, expected):
    assert classify(http_error(status)).error_class is expected


def test_rate_limit_keeps_retry_after():
    failure = classify(http_error(429, retry_after=7))
    assert failure.error_class is ErrorClass.RATE_LIMIT
    assert failure.retry_after == 7.0
    assert failure.status == 429


def test_retry_after_ms_wins():
    exc = http_error(429)
    exc.response.headers["retry-after-ms"] = "250"
    assert classify(exc).retry_after == 0.25


def test_context_overflow_read_from_400_body():
    exc = http_error(400, "This model's maximum context length is 8192 tokens", code="context_length_exceeded")
    assert classify(exc).error_class is ErrorClass.CONTEXT_OVERFLOW


def test_content_filter_read_from_400_body():
    exc = http_error(400, "The response was filtered", code="content_filter")
    assert classify(exc).error_class is ErrorClass.CONTENT_FILTER


def test_langchain_openai_context_overflow_beats_bad_request():
    from langchain_openai.chat_models.base import OpenAIContextOverflowError

    base = http_error(400, "too long")
    exc = OpenAIContextOverflowError(message="too long", response=base.response, body=base.body)
    assert classify(exc).error_class is ErrorClass.CONTEXT_OVERFLOW


def test_transport_errors():
    request = httpx.Request("GET", "http://127.0.0.1")
    assert classify(httpx.ReadTimeout("slow", request=request)).error_class is ErrorClass.TIMEOUT
    assert classify(httpx.ConnectError("refused", request=request)).error_class is ErrorClass.CONNECTION
    assert classify(httpx.RemoteProtocolError("reset", request=request)).error_class is ErrorClass.CONNECTION
    assert classify(openai.APITimeoutError(request=request)).error_class is ErrorClass.TIMEOUT
    assert classify(openai.APIConnectionError(request=request)).error_class is ErrorClass.CONNECTION
    assert classify(TimeoutError()).error_class is ErrorClass.TIMEOUT
    assert classify(ConnectionResetError()).error_class is ErrorClass.CONNECTION


def test_unknown_errors_stay_unknown():
    assert classify(ZeroDivisionError("bug")).error_class is ErrorClass.UNKNOWN
    assert classify(KeyError("x")).error_class is ErrorClass.UNKNOWN


def test_missing_key_is_auth_and_names_the_variable():
    exc = MissingAPIKeyError("openai", "OPENAI_API_KEY")
    assert classify(exc).error_class is ErrorClass.AUTH
    assert "OPENAI_API_KEY" in str(exc)


def test_redact_hides_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "weird-key-without-prefix-123456")
    text = "bad key sk-proj-ABCDEFGHIJKLMNOP1234 and weird-key-without-prefix-123456 and Bearer abcdefghijkl"
    out = redact(text)
    assert "sk-proj-ABCDEFGHIJKLMNOP1234" not in out
    assert "weird-key-without-prefix-123456" not in out
    assert "abcdefghijkl" not in out
    assert out.count("[redacted]") == 3


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    prefix=st.sampled_from(["sk-", "sk-ant-", "sk-proj-", "Bearer ", "x-api-key: ", "x-api-key "]),
    body=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=8, max_size=60),
)
def test_redact_hides_any_key_shaped_text(before, after, prefix, body):
    out = redact(f"{before} {prefix}{body} {after}")
    assert f"{prefix}{body}" not in out and "[redacted]" in out


def test_content_filter_read_from_the_structured_error_not_the_message():
    # langchain-openai's message can omit the code; the SDK keeps it on the exception and its body
    exc = http_error(400, "Your request was rejected by our safety system.", code="content_policy_violation")
    assert "content_policy_violation" not in str(exc).split("'code'")[0]
    assert classify(exc).error_class is ErrorClass.CONTENT_FILTER

    wrapped = RuntimeError("model call failed")
    wrapped.__cause__ = exc  # a provider wrapper that chains the SDK error
    assert classify(wrapped).error_class is ErrorClass.CONTENT_FILTER


def test_unknown_sdk_errors_classified_by_duck_typed_status():
    class VendorError(Exception):
        def __init__(self, status: int, body: dict | None = None) -> None:
            super().__init__(f"vendor said {status}")
            self.status_code = status
            self.body = body

    assert classify(VendorError(429)).error_class is ErrorClass.RATE_LIMIT
    assert classify(VendorError(503)).error_class is ErrorClass.SERVER
    assert (
        classify(VendorError(400, {"error": {"code": "context_length_exceeded"}})).error_class
        is ErrorClass.CONTEXT_OVERFLOW
    )

    class BotoLikeError(Exception):
        def __init__(self, code: str, status: int) -> None:
            super().__init__(f"An error occurred ({code})")
            self.response = {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}

    assert classify(BotoLikeError("ThrottlingException", 429)).error_class is ErrorClass.RATE_LIMIT
    assert classify(BotoLikeError("GuardrailIntervened", 400)).error_class is ErrorClass.CONTENT_FILTER


def test_unknown_error_names_its_class():
    failure = classify(RuntimeError("custom model exploded"))
    assert failure.error_class is ErrorClass.UNKNOWN
    assert failure.message == "RuntimeError: custom model exploded"
