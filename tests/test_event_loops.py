"""A user's own chat model on more than one event loop (issue 24, item 4).

The real LangChain clients against local servers (the sandbox for ChatOpenAI; a small keep-alive server
here for Anthropic's Messages API and the OpenAI-shaped Groq, Mistral and Azure routes): an instance's
async client keeps connections of the loop that opened them, so a second ``asyncio.run`` or ``map_rows``
job used to fail with "Event loop is closed". Now the first loop keeps the instance and any other gets a
copy that differs only in its async client.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pandas as pd
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_openai import ChatOpenAI

from coffee_nb import AutoPicker, ErrorClass, sandbox
from coffee_nb.errors._errors import classify
from coffee_nb.invoke._models import Candidate
from coffee_nb.providers._loops import ClientLoopError, connections

KEY = "sk-test-not-a-real-key-0123"
TEXT = "Beans are roasted."
SANDBOX = "[sandbox/fast]"  # how the sandbox begins an answer


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):
    yield


def candidate(model: Any) -> Candidate:
    return Candidate(model, cooldown_after=3, cooldown=1.0)


async def ask(cand: Candidate) -> tuple[Any, str]:
    """The model ``cand`` gives this loop, and its answer to a question asked on this loop."""
    model = cand.chat_model(loop=asyncio.get_running_loop())
    answer = await model.ainvoke("How are beans made ready?")
    return model, str(answer.content)


def openai_on_sandbox(**kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=sandbox.server().url, api_key=KEY, model="fast", max_retries=0, **kwargs)


# -- through AutoPicker and map_rows ------------------------------------------------------------------------
def test_two_asyncio_runs_on_one_autopicker_over_a_users_chatopenai_both_answer():
    picker = AutoPicker(openai_on_sandbox(), fallbacks=[])
    first = asyncio.run(picker.ainvoke("hi"))
    second = asyncio.run(picker.ainvoke("hi"))
    for message in (first, second):
        summary = message.response_metadata["coffee_nb"]
        assert "You said: 'hi'" in str(message.content)
        assert [a["outcome"] for a in summary["attempts"]] == ["ok"]  # no failure on the way


def test_two_map_rows_runs_on_one_users_chatopenai_answer_every_row():
    from coffee_nb.jobs import map_rows

    picker = AutoPicker(openai_on_sandbox(), fallbacks=[])
    frame = pd.DataFrame({"q": [f"question {i}" for i in range(12)]})
    for _ in range(2):  # each job runs on an event loop of its own; cache off, so the second calls again
        result = map_rows(frame, "Answer: {q}", models=picker, cache=False, progress=False, concurrency=4)
        assert result["error"].isna().all(), list(result["error"].dropna())[:3]
        assert result["answer"].notna().all() and set(result["model"]) == {picker.model_names[0]}


# -- the candidate's model per loop -------------------------------------------------------------------------
def test_the_first_loop_keeps_the_instance_and_another_gets_a_copy_with_only_a_fresh_async_client():
    from coffee_nb._shared import _http

    class Handler(BaseCallbackHandler):
        pass

    handler = Handler()
    llm = openai_on_sandbox(timeout=17, max_tokens=40, default_headers={"X-Team": "beans"}, callbacks=[handler])
    root, held_by = llm.root_async_client, llm.root_async_client._client
    cand = candidate(llm)

    async def twice() -> tuple[Any, Any, str, Any]:
        model, text = await ask(cand)
        return model, cand.chat_model(loop=asyncio.get_running_loop()), text, _http.get_async_http_client()

    first, again, text1, _ = asyncio.run(twice())
    second, again2, text2, pool = asyncio.run(twice())
    assert text1.startswith(SANDBOX) and text2.startswith(SANDBOX)
    assert first is llm and again is llm  # the first loop keeps the instance
    assert second is not llm and again2 is second  # another loop: a copy, made once for that loop
    assert llm.root_async_client is root and root._client is held_by  # the instance itself is untouched
    fresh = second.root_async_client
    assert fresh._client is pool and second.http_async_client is pool  # that loop's pooled client
    assert second.async_client._client is fresh
    for name in ("model_name", "openai_api_key", "openai_api_base", "request_timeout", "max_tokens", "max_retries"):
        assert getattr(second, name) == getattr(llm, name), name
    assert second.default_headers == {"X-Team": "beans"} and second.callbacks == [handler]
    assert (fresh.base_url, fresh.timeout, fresh.max_retries) == (root.base_url, root.timeout, root.max_retries)
    assert fresh.api_key == root.api_key and fresh.default_headers["X-Team"] == "beans"


def test_a_bound_instance_keeps_its_bound_arguments_on_another_loop():
    llm = openai_on_sandbox()
    bound = llm.bind(max_tokens=7)
    cand = candidate(bound)
    first, _ = asyncio.run(ask(cand))
    second, text = asyncio.run(ask(cand))
    assert first is bound and text.startswith(SANDBOX)
    assert second is not bound and second.kwargs == {"max_tokens": 7}
    assert second.bound is not llm and second.bound.model_name == llm.model_name


def test_a_copy_whose_pooled_client_was_closed_is_made_again():
    cand = candidate(openai_on_sandbox())
    asyncio.run(ask(cand))

    async def close_then_ask() -> tuple[Any, Any, str]:
        copy, _ = await ask(cand)
        await copy.http_async_client.aclose()  # as configure_http() does
        again, text = await ask(cand)
        return copy, again, text

    copy, again, text = asyncio.run(close_then_ask())
    assert again is not copy and not again.http_async_client.is_closed and text.startswith(SANDBOX)


def test_an_instance_whose_client_already_holds_connections_is_copied_even_on_the_first_loop_we_see():
    llm = openai_on_sandbox()
    asyncio.run(llm.ainvoke("used before AutoPicker saw it"))  # on a loop of the user's, now closed
    assert connections(llm.root_async_client._client)
    model, text = asyncio.run(ask(candidate(llm)))
    assert model is not llm and text.startswith(SANDBOX)


# -- a client the user gave stays theirs --------------------------------------------------------------------
def test_a_users_own_async_client_is_not_replaced_and_a_dead_loops_connections_are_named():
    own = httpx.AsyncClient()
    cand = candidate(openai_on_sandbox(http_async_client=own))
    first, _ = asyncio.run(ask(cand))
    assert first.root_async_client._client is own and connections(own) == 1  # kept alive for the next call
    with pytest.raises(ClientLoopError) as caught:
        asyncio.run(ask(cand))
    message = str(caught.value)
    assert "ChatOpenAI's own async HTTP client (the http_async_client you gave it)" in message
    assert "an event loop that has closed" in message and "leave http_async_client out" in message
    assert classify(caught.value).error_class is ErrorClass.AUTH  # an error of the attempt: the chain falls back


def test_a_users_own_client_without_connections_to_any_loop_moves_on():
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=openai_completion("fast"))

    own = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    llm = openai_on_sandbox(http_async_client=own)
    cand = candidate(llm)
    results = [asyncio.run(ask(cand)) for _ in range(2)]
    assert [m for m, _ in results] == [llm, llm] and [t for _, t in results] == [TEXT, TEXT]


def test_a_class_no_provider_knows_is_used_as_it_is():
    from coffee_nb.testing import ScriptedChatModel

    model = ScriptedChatModel(script=["fine"])
    cand = candidate(model)
    assert [asyncio.run(ask(cand)) for _ in range(2)] == [(model, "fine"), (model, "fine")]


# -- the other chat model classes coffee_nb knows how to renew -----------------------------------------------
def openai_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def anthropic_message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 3},
    }


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (as real APIs): a client's connections outlive the loop that opened them."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        path = self.path.split("?", 1)[0]
        model = str(body.get("model") or "deployment")
        reply = anthropic_message(model) if path.endswith("/messages") else openai_completion(model)
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.paths.append(path)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


@pytest.fixture(scope="module")
def local_server() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _anthropic(url: str) -> Any:
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model="claude-3-5-haiku-latest", base_url=url, api_key=KEY, max_retries=0)


def _groq(url: str) -> Any:
    from langchain_groq import ChatGroq

    return ChatGroq(model="llama-3.1-8b-instant", base_url=url, api_key=KEY, max_retries=0)


def _mistral(url: str) -> Any:
    from langchain_mistralai import ChatMistralAI

    return ChatMistralAI(model="mistral-small-latest", endpoint=f"{url}/v1", api_key=KEY, max_retries=0)


def _azure(url: str) -> Any:
    from langchain_openai import AzureChatOpenAI

    return AzureChatOpenAI(
        azure_endpoint=url, azure_deployment="beans", api_version="2024-10-21", api_key=KEY, max_retries=0
    )


@pytest.mark.parametrize(
    ("make", "route"),
    [
        (_anthropic, "/v1/messages"),
        (_groq, "/openai/v1/chat/completions"),
        (_mistral, "/v1/chat/completions"),
        (_azure, "/openai/deployments/beans/chat/completions"),
    ],
    ids=["ChatAnthropic", "ChatGroq", "ChatMistralAI", "AzureChatOpenAI"],
)
def test_each_known_class_answers_on_three_event_loops(local_server, make, route):
    url = f"http://127.0.0.1:{local_server.server_address[1]}"
    llm = make(url)
    cand = candidate(llm)
    del local_server.paths[:]
    results = [asyncio.run(ask(cand)) for _ in range(3)]
    assert [text for _, text in results] == [TEXT] * 3
    assert local_server.paths == [route] * 3  # the copies kept the URL (and their requests were accepted)
    models = [model for model, _ in results]
    assert models[0] is llm and models[1] is not llm and models[2] is not llm and models[2] is not models[1]
    own = llm.model_dump(exclude={"http_async_client"})  # ChatGroq's copy names the pooled client it got
    for model in models:
        assert type(model) is type(llm) and model.model_dump(exclude={"http_async_client"}) == own
