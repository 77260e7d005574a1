"""No key in any data a provider's exception carries, for the real error classes of every SDK we ship.

A provider may echo a key in its reply's body, its error message, its JSON details; the request the SDK
keeps holds it in a header or the URL's query string. ``scrub`` (run on every failure by ``classify``)
must leave none of it anywhere in the exception: not in ``str(e)``, not in ``vars(e)``, not in
``e.body``, ``e.response.text``, ``e.request.headers`` or a nested exception, so that logging
``vars(e)`` or ``e.body`` leaks nothing (issue 26, item 3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from coffee_nb._shared._redact import scrub

from .conftest import CANARIES, CANARY_ANTHROPIC, CANARY_OPENAI


def _payload() -> dict[str, Any]:
    """A provider's error body, the key deep inside (as one provider nests it: error.details.api_message)."""
    return {
        "error": {
            "message": f"Incorrect API key provided: {CANARY_OPENAI}",
            "type": "invalid_request_error",
            "details": {
                "api_message": f"Incorrect API key provided: Bearer {CANARY_ANTHROPIC}",
                "hints": [CANARY_OPENAI],
            },
        }
    }


def _http(module: Any) -> tuple[Any, Any]:
    """A request carrying the key in a header and the query string, and the response echoing it."""
    request = module.Request(
        "POST",
        f"https://api.example.com/v1/chat?key={CANARY_ANTHROPIC}",
        headers={"Authorization": f"Bearer {CANARY_OPENAI}", "x-api-key": CANARY_ANTHROPIC},
    )
    response = module.Response(401, request=request, content=json.dumps(_payload()).encode())
    return request, response


def _openai() -> BaseException:
    import openai

    _, response = _http(httpx)
    return openai.AuthenticationError(f"Error code: 401 - {_payload()}", response=response, body=_payload())


def _anthropic() -> BaseException:
    import anthropic
    import httpx2

    _, response = _http(httpx2)
    return anthropic.AuthenticationError(f"Error code: 401 - {_payload()}", response=response, body=_payload())


def _groq() -> BaseException:
    import groq

    _, response = _http(httpx)
    return groq.AuthenticationError(f"Error code: 401 - {_payload()}", response=response, body=_payload())


def _mistral() -> BaseException:
    import httpx2
    from mistralai.client.errors import SDKError

    _, response = _http(httpx2)
    return SDKError("Unauthorized", response)


def _google() -> BaseException:
    from google.genai.errors import ClientError

    _, response = _http(httpx)
    return ClientError(401, _payload(), response)


def _bedrock() -> BaseException:
    from botocore.exceptions import ClientError

    error = {
        "Error": {"Code": "UnrecognizedClientException", "Message": f"The security token {CANARY_OPENAI} is invalid"},
        "ResponseMetadata": {"HTTPStatusCode": 403, "HTTPHeaders": {"x-amzn-errormessage": CANARY_ANTHROPIC}},
    }
    return ClientError(error, "Converse")


def _ollama() -> BaseException:
    import ollama

    return ollama.ResponseError(json.dumps(_payload()), 401)


SDK_ERRORS: dict[str, Callable[[], BaseException]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "groq": _groq,
    "mistralai": _mistral,
    "google-genai": _google,
    "bedrock (botocore)": _bedrock,
    "ollama": _ollama,
}


def leaks(value: Any, where: str = "e", depth: int = 0, seen: set[int] | None = None) -> list[str]:
    """Every place under ``value`` (attributes, items, HTTP headers, URL and body) that holds a canary."""
    seen = set() if seen is None else seen
    if depth > 10 or id(value) in seen:
        return []
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return [where for canary in CANARIES if canary in value][:1]
    if value is None or isinstance(value, int | float | bool | type):
        return []
    seen.add(id(value))
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            found += leaks(v, f"{where}[{k!r}]", depth + 1, seen)
        return found
    if isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            found += leaks(v, f"{where}[{i}]", depth + 1, seen)
        return found
    if isinstance(value, BaseException):
        found += leaks(str(value), f"str({where})", depth + 1, seen)
        found += leaks(value.args, f"{where}.args", depth + 1, seen)
        for link in ("__cause__", "__context__"):
            found += leaks(getattr(value, link), f"{where}.{link}", depth + 1, seen)
    if hasattr(value, "headers") and hasattr(value, "url"):  # an HTTP request or response
        found += leaks(str(value.url), f"{where}.url", depth + 1, seen)
        found += leaks(dict(value.headers), f"{where}.headers", depth + 1, seen)
        if hasattr(value, "status_code"):
            found += leaks(value.content, f"{where}.content", depth + 1, seen)
            found += leaks(value.text, f"{where}.text", depth + 1, seen)
    for name, v in (getattr(value, "__dict__", None) or {}).items():
        if not callable(v) or isinstance(v, BaseException):
            found += leaks(v, f"{where}.{name}", depth + 1, seen)
    return found


@pytest.mark.parametrize("sdk", list(SDK_ERRORS))
def test_no_key_anywhere_in_a_real_sdk_error(canaries, sdk):
    exc = SDK_ERRORS[sdk]()
    assert leaks(exc), f"the {sdk} error was built without a key in it: the test would prove nothing"
    scrub(exc)
    assert leaks(exc) == [], f"{sdk}: a key left in {leaks(exc)}"
    assert "[redacted]" in repr(vars(exc)) + str(exc.args)  # redacted, not dropped: the reply is still readable


def test_a_key_in_a_nested_exception_and_an_exception_group(canaries):
    inner = _openai()
    outer = RuntimeError("wrapped")
    outer.errors = [inner, {"detail": CANARY_OPENAI}]  # type: ignore[attr-defined]  # data an SDK may hang on it
    group = ExceptionGroup("two failed", [outer, _anthropic()])
    scrub(group)
    assert leaks(group) == [], leaks(group)


def test_an_error_that_holds_itself_is_scrubbed_once():
    exc = ValueError(f"bad {CANARY_OPENAI}")
    exc.again = exc  # type: ignore[attr-defined]
    exc.__context__ = exc
    scrub(exc)  # no recursion error
    assert CANARY_OPENAI not in str(exc)


def test_the_llm_cell_keeps_no_key_in_the_exception_it_leaves(ip, canaries):
    """``%%llm`` with every model failing: the exception the cell leaves (and ``Err``, the error log of
    ``{err}``) holds no key anywhere, the provider errors' responses and requests included."""
    from IPython.utils.capture import capture_output

    import coffee_nb
    from coffee_nb import AutoPicker
    from coffee_nb.testing import ScriptedChatModel

    picker = AutoPicker(
        ScriptedChatModel(script=[_openai()], model_name="a"), [ScriptedChatModel(script=[_groq()], model_name="b")]
    )
    coffee_nb.configure(models=[picker])
    with capture_output():
        result = ip.run_cell("%%llm --no-cache\nhello", store_history=True)
    kept = result.error_in_exec
    assert kept is not None and kept.__cause__ is not None  # the provider's own error travels with it
    assert leaks([kept, ip.user_ns.get("Err")]) == [], leaks([kept, ip.user_ns.get("Err")])


def test_what_an_exception_only_points_at_is_never_edited(canaries):
    """A dict or list an exception carries may be live state (a client's config, the environment): the
    exception gets a clean copy, the original is left as it was."""
    import os

    config = {"api_key": CANARY_OPENAI, "base_url": "http://127.0.0.1"}
    history = [f"sent with {CANARY_OPENAI}"]
    exc = RuntimeError("failed")
    exc.config, exc.history, exc.env = config, history, os.environ  # type: ignore[attr-defined]
    scrub(exc)
    assert config["api_key"] == CANARY_OPENAI and history == [f"sent with {CANARY_OPENAI}"]
    assert os.environ["OPENAI_API_KEY"] == CANARY_OPENAI
    assert CANARY_OPENAI not in repr(exc.config) + repr(exc.history)  # type: ignore[attr-defined]
