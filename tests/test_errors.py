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
from coffee_nb.errors._errors import classify, lookup, redact
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


# -- every installed provider SDK ---------------------------------------------------------------------
# (module path, how many exception classes at least): skipped, naming the module, when not installed
PROVIDER_SDK_MODULES = [
    ("groq", 10),
    ("google.genai.errors", 6),
    ("google.auth.exceptions", 10),
    ("botocore.exceptions", 60),
    ("mistralai.client.errors", 5),
    ("mistralai.gcp.client.errors", 4),
    ("mistralai.extra.exceptions", 4),
    ("ollama._types", 2),
    ("langchain_google_genai.chat_models", 8),
    ("langchain_aws.chat_models.bedrock_converse", 1),
    ("langchain_aws.chat_models.openai", 2),
]


@pytest.mark.parametrize(("path", "at_least"), PROVIDER_SDK_MODULES, ids=[p for p, _ in PROVIDER_SDK_MODULES])
def test_every_provider_sdk_exception_class_is_mapped(path, at_least):
    import importlib

    pytest.importorskip(path.split(".")[0])
    module = importlib.import_module(path)
    prefix = path.split(".")[0]
    classes = [
        obj
        for name in dir(module)
        if inspect.isclass(obj := getattr(module, name, None))
        and issubclass(obj, BaseException)
        and not issubclass(obj, Warning)
        and obj.__module__.startswith(prefix)
    ]
    assert len(classes) >= at_least, [c.__qualname__ for c in classes]
    unmapped = [f"{c.__module__}.{c.__qualname__}" for c in classes if not lookup(c)[0]]
    assert unmapped == [], f"{path} exceptions without a mapping: {unmapped}"


def test_every_modelled_bedrock_error_has_its_own_class():
    """botocore raises a service's modelled errors as classes named after their codes: each of
    bedrock-runtime's is mapped by name (not only through ClientError's status)."""
    boto3 = pytest.importorskip("boto3")
    from coffee_nb.errors._errors import _Slices

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    modelled = list(client.exceptions._code_to_exception.values())
    assert len(modelled) >= 8
    lookup(ValueError)  # brings the registered slices in
    table = _Slices.table
    missing = [c.__name__ for c in modelled if table.get(f"botocore.{c.__name__}") is None]
    assert missing == []


def _client_error(code: str, message: str, status: int, **headers: str):
    from botocore.exceptions import ClientError

    meta = {"HTTPStatusCode": status, "HTTPHeaders": headers}
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, "Converse")


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("ThrottlingException", "Too many requests", 400, ErrorClass.RATE_LIMIT),  # the code beats the status
        ("ServiceUnavailableException", "Try again", 503, ErrorClass.SERVER),
        ("ValidationException", "Input is too long for requested model.", 400, ErrorClass.CONTEXT_OVERFLOW),
        ("ValidationException", "Malformed input request", 400, ErrorClass.BAD_REQUEST),
        ("AccessDeniedException", "You don't have access to the model", 403, ErrorClass.AUTH),
        ("UnrecognizedClientException", "The security token included in the request is invalid", 403, ErrorClass.AUTH),
        ("ModelTimeoutException", "Model timed out", 408, ErrorClass.TIMEOUT),
        ("ResourceNotFoundException", "Model not found", 404, ErrorClass.NOT_FOUND),
    ],
)
def test_botocore_client_errors_by_code(code, message, status, expected):
    pytest.importorskip("botocore")
    assert classify(_client_error(code, message, status)).error_class is expected


def test_botocore_transport_credentials_and_stream_errors():
    pytest.importorskip("botocore")
    from botocore import exceptions as bx

    assert classify(bx.NoCredentialsError()).error_class is ErrorClass.AUTH
    assert classify(bx.NoRegionError()).error_class is ErrorClass.AUTH
    assert classify(bx.EndpointConnectionError(endpoint_url="https://x")).error_class is ErrorClass.CONNECTION
    assert classify(bx.ReadTimeoutError(endpoint_url="https://x")).error_class is ErrorClass.TIMEOUT
    assert classify(bx.ParamValidationError(report="bad")).error_class is ErrorClass.BAD_REQUEST
    stream = bx.EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream")
    assert classify(stream).error_class is ErrorClass.RATE_LIMIT
    throttled = _client_error("ThrottlingException", "Too many requests", 429, **{"retry-after": "3"})
    assert classify(throttled).retry_after == 3.0


def test_google_genai_errors_by_status_reason_and_retry_info():
    pytest.importorskip("google.genai")
    from google.genai import errors

    def error(status: int, body: dict, **headers: str) -> errors.APIError:
        cls = errors.ClientError if status < 500 else errors.ServerError
        return cls(status, body, httpx.Response(status, json=body, headers=headers))

    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    assert classify(error(400, bad_key)).error_class is ErrorClass.AUTH
    quota = {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}],
        }
    }
    failure = classify(error(429, quota))
    assert failure.error_class is ErrorClass.RATE_LIMIT and failure.retry_after == 37.0
    too_long = {"error": {"code": 400, "message": "The input token count (2000000) exceeds the maximum number of "
                          "tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}  # fmt: skip
    assert classify(error(400, too_long)).error_class is ErrorClass.CONTEXT_OVERFLOW
    assert classify(error(503, {"error": {"code": 503, "status": "UNAVAILABLE"}})).error_class is ErrorClass.SERVER


def test_langchain_google_wrappers_keep_the_sdks_status_and_retry_after():
    """langchain-google-genai re-raises a ClientError as its own error ``from`` it: the status and the
    Retry-After are the cause's."""
    pytest.importorskip("langchain_google_genai")
    from google.genai import errors
    from langchain_google_genai.chat_models import ChatGoogleGenerativeAIError

    body = {"error": {"code": 409, "message": "conflict", "status": "ABORTED"}}
    cause = errors.ClientError(409, body, httpx.Response(409, json=body, headers={"retry-after": "2"}))
    wrapped = ChatGoogleGenerativeAIError("Error calling model 'x' (ABORTED): conflict")
    wrapped.__cause__ = cause
    failure = classify(wrapped)
    assert failure.status == 409 and failure.error_class is ErrorClass.SERVER and failure.retry_after == 2.0


def test_mistralai_and_groq_errors():
    mistral = pytest.importorskip("mistralai.client.errors")
    groq = pytest.importorskip("groq")
    import httpx2

    request = httpx2.Request("POST", "https://api.mistral.ai/v1/chat/completions")
    reply = httpx2.Response(429, headers={"retry-after": "4"}, json={"message": "rate limited"}, request=request)
    failure = classify(mistral.SDKError("API error occurred", reply))
    assert failure.error_class is ErrorClass.RATE_LIMIT and failure.retry_after == 4.0
    request = httpx.Request("POST", "https://api.groq.com/openai/v1/chat/completions")
    response = httpx.Response(429, headers={"retry-after": "1"}, request=request)
    assert classify(groq.RateLimitError("slow down", response=response, body=None)).error_class is ErrorClass.RATE_LIMIT


def test_a_registered_providers_slice_joins_the_table_and_leaves_with_it():
    from coffee_nb.invoke import _models
    from coffee_nb.testing import ScriptedChatModel, isolated

    class HouseError(Exception):
        pass

    HouseError.__module__, HouseError.__qualname__ = "househttp.errors", "HouseError"
    assert classify(HouseError("x")).error_class is ErrorClass.UNKNOWN
    with isolated():
        _models.register_provider(
            "house", lambda m, k, s: ScriptedChatModel(), errors={"househttp.HouseError": ErrorClass.RATE_LIMIT}
        )
        assert classify(HouseError("x")).error_class is ErrorClass.RATE_LIMIT
        _models.register_provider(  # re-registered: the new slice, not a cached answer
            "house", lambda m, k, s: ScriptedChatModel(), errors={"househttp.HouseError": ErrorClass.AUTH}
        )
        assert classify(HouseError("x")).error_class is ErrorClass.AUTH
    assert classify(HouseError("x")).error_class is ErrorClass.UNKNOWN  # gone with the provider


@pytest.mark.parametrize(
    "message",
    [
        "The provided model identifier is invalid.",  # Bedrock (ValidationException)
        "Invalid model: mistral-nope",  # Mistral
        "nope/nope is not a valid model ID",  # OpenRouter
        "Model Not Exist",  # DeepSeek
    ],
)
def test_an_unknown_model_said_with_a_400_is_not_found(message):
    assert classify(http_error(400, message)).error_class is ErrorClass.NOT_FOUND


# -- errors sent inside a stream (issue 24, item 10) -------------------------------------------------------
def _openai_stream_error(error: object) -> BaseException:
    """What the real openai SDK raises for a chunk ``{"error": error}`` after one good chunk of a 200 stream."""
    import json

    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    chunk["choices"] = [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps({'error': error})}\n\n".encode()

    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="sk-test-not-a-key",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(reply)),
        max_retries=0,
    )
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True):
            pass
    return info.value


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}, ErrorClass.RATE_LIMIT),
        ({"message": "The server had an error", "type": "server_error", "code": None}, ErrorClass.SERVER),
        ({"message": "The engine is currently overloaded", "type": "overloaded"}, ErrorClass.SERVER),
        ({"message": "Overloaded", "type": "overloaded_error"}, ErrorClass.SERVER),  # Anthropic-shaped
        ({"message": "Provider returned error", "code": 429}, ErrorClass.RATE_LIMIT),  # OpenRouter: a status
        ({"message": "Upstream gateway", "code": 502}, ErrorClass.SERVER),
        ({"message": "max_tokens is too large", "type": "invalid_request_error"}, ErrorClass.BAD_REQUEST),
        ({"message": "Incorrect API key provided", "code": "invalid_api_key"}, ErrorClass.AUTH),
        ({"message": "too long", "code": "context_length_exceeded"}, ErrorClass.CONTEXT_OVERFLOW),
        ({"message": "something new went wrong"}, ErrorClass.SERVER),  # nothing said: an error after a 200
    ],
)
def test_openai_compatible_error_chunks_route_like_their_out_of_band_twins(error, expected):
    exc = _openai_stream_error(error)
    assert type(exc) is openai.APIError and getattr(exc, "status_code", None) is None  # in-band: no status
    failure = classify(exc)
    assert failure.error_class is expected
    assert failure.status is None


def test_in_band_codes_do_not_override_an_out_of_band_status():
    # with a status, the status and the SDK class decide as before: a 400 stays the caller's fault
    assert classify(http_error(400, "bad", code="server_error")).error_class is ErrorClass.BAD_REQUEST
    assert classify(http_error(500, "oops", code="invalid_request_error")).error_class is ErrorClass.SERVER


def test_errors_saying_the_event_loop_is_gone_are_connection_failures():
    import asyncio

    async def future() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    first = asyncio.new_event_loop()
    fut = first.run_until_complete(future())

    async def wait() -> None:
        await fut  # a connection's future from the first loop, awaited on the second

    with pytest.raises(RuntimeError, match="attached to a different loop") as info:
        asyncio.run(wait())
    assert classify(info.value).error_class is ErrorClass.CONNECTION
    first.close()
    with pytest.raises(RuntimeError, match="Event loop is closed") as info:
        first.call_soon(print)
    assert classify(info.value).error_class is ErrorClass.CONNECTION
    unknown = classify(RuntimeError("dictionary changed size during iteration"))
    assert unknown.error_class is ErrorClass.UNKNOWN
