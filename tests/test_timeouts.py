"""Calls run on coffee_nb's worker threads (models that can't bound their own time, streams pumped for a
hedge or a first-token limit) see the caller's context: a ``with coffee_nb.cassette(...)`` block,
LangSmith's parent run, whatever the caller's code set in a ContextVar."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from coffee_nb import AutoPicker

REQUEST = contextvars.ContextVar("request", default="unset")


class Reader(BaseChatModel):
    """Answers with the ContextVar's value as its thread sees it (no timeout of its own: a worker runs it)."""

    threads: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "reader"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.threads.append(threading.current_thread().name)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REQUEST.get()))])

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        yield ChatGenerationChunk(message=AIMessageChunk(content=REQUEST.get()))


def test_a_call_on_a_worker_thread_sees_the_callers_context():
    model = Reader()
    llm = AutoPicker(model)
    token = REQUEST.set("req-42")
    try:
        assert llm.invoke("hi").content == "req-42"
        assert "".join(str(c.content) for c in llm.stream("hi")) == "req-42"
    finally:
        REQUEST.reset(token)
    assert model.threads and all(name == "coffee_nb-call" for name in model.threads)  # really on a worker
    assert llm.invoke("hi").content == "unset"  # and nothing leaks back out
