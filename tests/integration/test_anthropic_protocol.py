"""The real anthropic SDK and langchain-anthropic against a local server speaking the Messages protocol:
errors sent inside a stream are classified by what they say (issue 24, item 10), and AutoPicker routes
them like their out-of-band twins: an overload mid-stream continues on the fallback by prefill."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anthropic
import httpx2
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage

from coffee_nb import AutoPicker, StreamInterruptedError
from coffee_nb.errors._errors import ErrorClass, classify
from tests.integration.anthropic_server import (
    CANONICAL,
    Answer,
    AnthropicServer,
    InBandError,
    StatusError,
    words,
)

PRIMARY = "claude-3-5-haiku-latest"
FALLBACK = "claude-3-5-haiku-20241022"
KEY = "sk-ant-test"


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(api_key=KEY) as s:
        yield s


def chat(server: AnthropicServer, model: str) -> ChatAnthropic:
    return ChatAnthropic(model=model, base_url=server.url, api_key=KEY, max_retries=0)


def stream_error(llm: ChatAnthropic) -> tuple[str, BaseException]:
    """Stream ``llm`` until it raises: the text it yielded, and the exception."""
    got = ""
    with pytest.raises(Exception) as info:  # any: which one is what the tests read
        for chunk in llm.stream("Tell me about coffee"):
            got += chunk.text
    return got, info.value


# -- (1) the real SDK's exception for an in-band error, classified ----------------------------------------
@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ErrorClass.SERVER),
        ("rate_limit_error", ErrorClass.RATE_LIMIT),
        ("api_error", ErrorClass.SERVER),
        ("timeout_error", ErrorClass.TIMEOUT),
        ("request_too_large", ErrorClass.CONTEXT_OVERFLOW),
        ("invalid_request_error", ErrorClass.BAD_REQUEST),
        ("some_future_error", ErrorClass.SERVER),  # an error after a 200 is not the caller's fault
    ],
)
def test_in_band_error_mid_stream_is_classified_by_its_type(server, error_type, expected):
    server.script(PRIMARY, InBandError(after=20, type=error_type, message="Overloaded"))
    text, exc = stream_error(chat(server, PRIMARY))
    assert text == "".join(words(CANONICAL)[:20])  # the error came mid-stream, after 20 deltas
    # what the SDK raises for it: an APIStatusError carrying the stream's 200
    assert isinstance(exc, anthropic.APIStatusError) and exc.status_code == 200
    failure = classify(exc)
    assert failure.error_class is expected
    assert failure.status is None  # the 200 is not the failure's status


async def test_in_band_overload_on_the_async_client_is_server(server):
    server.script(PRIMARY, InBandError(after=3, type="overloaded_error"))
    got = ""
    with pytest.raises(anthropic.APIStatusError) as info:
        async for chunk in chat(server, PRIMARY).astream("Tell me about coffee"):
            got += chunk.text
    assert got == "".join(words(CANONICAL)[:3])
    assert classify(info.value).error_class is ErrorClass.SERVER


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (529, "overloaded_error", ErrorClass.SERVER),
        (429, "rate_limit_error", ErrorClass.RATE_LIMIT),
        (400, "invalid_request_error", ErrorClass.BAD_REQUEST),
    ],
)
def test_out_of_band_twins_classify_the_same(server, status, error_type, expected):
    server.script(PRIMARY, StatusError(status, error_type))
    text, exc = stream_error(chat(server, PRIMARY))
    assert text == ""
    failure = classify(exc)
    assert (failure.error_class, failure.status) == (expected, status)


# -- (2) an overload mid-stream continues on the fallback by prefill -------------------------------------
def test_mid_stream_overload_continues_on_the_fallback_by_prefill(server):
    server.script(PRIMARY, InBandError(after=20, type="overloaded_error"))
    server.script(FALLBACK, Answer())
    llm = AutoPicker(chat(server, PRIMARY), [chat(server, FALLBACK)], max_retries=0)

    text = "".join(chunk.text for chunk in llm.stream("Tell me about coffee"))

    assert text == CANONICAL  # one answer: nothing duplicated, nothing spliced
    primary, fallback = server.seen(PRIMARY), server.seen(FALLBACK)
    assert [r.outcome for r in primary] == ["in-band overloaded_error after 20"]
    assert len(fallback) == 1 and fallback[0].outcome == "answered"
    delivered = "".join(words(CANONICAL)[:20])
    assert primary[0].sent == delivered
    # the fallback was asked to continue: its last message is the assistant prefill of the delivered text
    last = fallback[0].messages[-1]
    assert last["role"] == "assistant" and fallback[0].prefill == delivered
    assert fallback[0].sent == CANONICAL[len(delivered) :]


def test_mid_stream_overload_whose_fallback_refuses_prefill_is_never_spliced(server):
    """The fallback turns the prefill down (400): a plain consumer ends with the whole answer or an
    exception carrying exactly what it was given (never spliced text), and the failure it reports first is
    the overload, read as ``server`` (not the prefill's 400)."""
    server.script(PRIMARY, InBandError(after=20, type="overloaded_error"))
    server.refuse_prefill(FALLBACK)
    llm = AutoPicker(chat(server, PRIMARY), [chat(server, FALLBACK)], max_retries=0)
    got = ""
    try:
        for chunk in llm.stream("Tell me about coffee"):
            got += chunk.text
    except StreamInterruptedError as exc:
        assert got == exc.partial_text == "".join(words(CANONICAL)[:20])
        assert exc.attempts[0].model.endswith(PRIMARY) and exc.attempts[0].error_class == ErrorClass.SERVER
        assert "overloaded_error" in str(exc).splitlines()[1]
    else:
        assert got == CANONICAL
    assert any(r.prefill is not None and r.outcome.startswith("400") for r in server.seen(FALLBACK))


# -- (3) an out-of-band refusal before the first token falls back ----------------------------------------
@pytest.mark.parametrize(("status", "error_type"), [(529, "overloaded_error"), (429, "rate_limit_error")])
@pytest.mark.parametrize("mode", ["stream", "invoke", "astream"])
def test_refusal_before_the_first_token_falls_back(server, status, error_type, mode):
    server.script(PRIMARY, StatusError(status, error_type, "try later"))
    llm = AutoPicker(chat(server, PRIMARY), [chat(server, FALLBACK)], max_retries=0)

    if mode == "stream":
        text = "".join(chunk.text for chunk in llm.stream("Tell me about coffee"))
    elif mode == "astream":

        async def collect() -> str:
            return "".join([chunk.text async for chunk in llm.astream("Tell me about coffee")])

        text = asyncio.run(collect())
    else:
        text = llm.invoke("Tell me about coffee").text

    assert text == CANONICAL
    assert [r.outcome for r in server.seen(PRIMARY)] == [f"{status} {error_type}"]
    assert [(r.outcome, r.prefill) for r in server.seen(FALLBACK)] == [("answered", None)]


# -- (4) an error saying the event loop is closed is a connection failure --------------------------------
def test_a_closed_event_loop_is_a_connection_failure():
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed") as info:
        loop.call_soon(print)  # what a pooled connection opened on a finished asyncio.run hits
    bare = info.value
    assert classify(bare).error_class is ErrorClass.CONNECTION

    request = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
    wrapped = anthropic.APIConnectionError(request=request)
    wrapped.__cause__ = bare  # as the SDK raises it (``raise ... from err``)
    assert classify(wrapped).error_class is ErrorClass.CONNECTION

    closing = ValueError("while closing the client")
    closing.__context__ = bare  # raised while handling it
    assert classify(closing).error_class is ErrorClass.CONNECTION

    # not every RuntimeError: the text decides
    assert classify(RuntimeError("generator raised StopIteration")).error_class is ErrorClass.UNKNOWN


def test_a_prefill_ending_in_whitespace_is_refused_like_the_real_api(server):
    # the server holds the real API's rule (the raw SDK sends what it is given) ...
    client = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    prefilled = [{"role": "user", "content": "Tell me about coffee"}, {"role": "assistant", "content": "Coffee0 "}]
    with pytest.raises(anthropic.BadRequestError, match="trailing whitespace"):
        client.messages.create(model=FALLBACK, max_tokens=100, messages=prefilled)
    # ... and langchain-anthropic trims the prefill, which is still continued exactly
    llm = chat(server, FALLBACK)
    assert llm.invoke([HumanMessage("Tell me about coffee"), AIMessage("Coffee0 beans1 ")]).text == CANONICAL[14:]
    assert server.seen(FALLBACK)[-1].prefill == "Coffee0 beans1"
