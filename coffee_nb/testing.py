"""Fakes for your own tests: a scripted chat model, record capture, a clean global state. No network, no keys.

>>> from coffee_nb.testing import ScriptedChatModel, capture_records, http_error, isolated
>>> flaky = ScriptedChatModel(script=[http_error(429, retry_after=0.1), "hello"])
>>> with isolated():   # registered prices, providers, sinks, HTTP pool, session, sandbox: fresh inside
...     ...
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from coffee_nb._config import isolated
from coffee_nb._records import capture_records

__all__ = ["ScriptedChatModel", "capture_records", "http_error", "isolated", "redis_server"]


def http_error(
    status: int, message: str = "", *, retry_after: float | None = None, code: str | None = None
) -> Exception:
    """An ``openai`` SDK error for ``status``, as the real client would raise it (for scripts)."""
    import openai

    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    body = {"error": {"message": message or f"HTTP {status}", "code": code, "type": "test"}}
    response = httpx.Response(status, headers=headers, request=request, json=body)
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    cls = classes.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    text = f"Error code: {status} - {body}"
    # recent openai releases annotate the response as httpx2.Response; an httpx.Response has its interface
    return cls(text, response=response, body=body)  # type: ignore[arg-type]


class ScriptedChatModel(BaseChatModel):
    """A chat model that plays a script, one step per call.

    Each step is a reply string, an exception instance to raise, or an ``AIMessage``. When the
    script runs out the last step repeats. ``delay`` sleeps before answering; ``usage`` reports
    token usage like a real provider (else none is reported and coffee_nb estimates).
    ``fail_after_chunks`` makes streams break after that many chunks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: list[Any] = Field(default_factory=lambda: ["ok"])
    model_name: str = "scripted"
    delay: float = 0.0
    usage: bool = True
    fail_after_chunks: int | None = None
    _step: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    calls: list[dict[str, Any]] = Field(default_factory=list, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "fake"
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            step = self.script[min(self._step, len(self.script) - 1)]
            self._step += 1
            self.calls.append({"messages": messages, "kwargs": dict(kwargs)})
        if isinstance(step, BaseException):
            raise step
        message = step if isinstance(step, AIMessage) else AIMessage(content=str(step))
        if self.usage and message.usage_metadata is None:
            n_in = sum(len(str(m.content).split()) for m in messages) + 3
            n_out = len(str(message.content).split())
            message = message.model_copy(
                update={"usage_metadata": {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}}
            )
        return message

    @property
    def steps_taken(self) -> int:
        return self._step

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            time.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    def _chunks(self, message: AIMessage) -> list[AIMessageChunk]:
        words = str(message.content).split(" ")
        chunks = [AIMessageChunk(content=(w if i == 0 else " " + w)) for i, w in enumerate(words)]
        if message.usage_metadata:
            chunks.append(AIMessageChunk(content="", usage_metadata=message.usage_metadata))
        return chunks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.delay:
            time.sleep(self.delay)
        for i, chunk in enumerate(self._chunks(self._next(messages, kwargs))):
            if self.fail_after_chunks is not None and i >= self.fail_after_chunks:
                raise ConnectionResetError("stream broke (scripted)")
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.delay:
            await asyncio.sleep(self.delay)
        for i, chunk in enumerate(self._chunks(self._next(messages, kwargs))):
            if self.fail_after_chunks is not None and i >= self.fail_after_chunks:
                raise ConnectionResetError("stream broke (scripted)")
            yield ChatGenerationChunk(message=chunk)


@contextmanager
def redis_server(*, timeout: float = 20.0) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port; yields its URL, stops it after.

    Raises FileNotFoundError when redis-server is not installed (``apt-get install redis-server``).
    """
    import shutil
    import socket
    import subprocess

    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
