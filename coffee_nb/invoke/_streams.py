"""Consuming AutoPicker streams: restart markers honoured, one final message out.

A stream that breaks mid-answer continues on a model that takes the text so far as an assistant
prefill, so a plain ``for chunk in llm.stream(...)`` still adds up to one answer. Where no model left can
continue it, the answer may start over on another model, but only for a consumer that said it handles
that: such a stream carries an in-band marker (a chunk with ``response_metadata["coffee_nb"]["restart"] =
True``) after which the answer starts again. ``collect`` / ``acollect`` say so, and return the final
message with the marker taken into account; any other consumer gets ``StreamInterruptedError`` instead.

>>> message = coffee_nb.collect(llm.stream("Explain p95 latency"))
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessageChunk

__all__ = ["RESTARTS_OK", "Collector", "acollect", "collect", "handles_restarts", "is_restart"]

# Set while a consumer that honours restart markers reads an AutoPicker stream.
RESTARTS_OK: ContextVar[bool] = ContextVar("coffee_nb_restarts_ok", default=False)


@contextmanager
def handles_restarts() -> Iterator[None]:
    """Streams started (first read) inside this block may restart on another model after a restart marker.

    For a consumer that reads the chunks itself and honours :func:`is_restart` (a UI that clears what it
    showed). ``collect`` and ``acollect`` do this for you.
    """
    token = RESTARTS_OK.set(True)
    try:
        yield
    finally:
        RESTARTS_OK.reset(token)


def is_restart(chunk: Any) -> bool:
    """Is ``chunk`` (a message chunk or a ChatGenerationChunk) a restart marker?"""
    message = getattr(chunk, "message", chunk)
    meta = getattr(message, "response_metadata", None) or {}
    value = meta.get("coffee_nb")
    # the closing summary of a restarted stream says "restarted" and has a call_id; the marker has neither
    return isinstance(value, dict) and bool(value.get("restart")) and "call_id" not in value


class Collector:
    """Adds chunks up into the final message, starting over at a restart marker."""

    def __init__(self) -> None:
        self.total: BaseMessageChunk | None = None
        self.summary: Any = None

    def add(self, chunk: Any) -> None:
        message = getattr(chunk, "message", chunk)
        if is_restart(message):
            self.total = None  # the answer starts over
            return
        meta = message.response_metadata.get("coffee_nb")
        if meta is not None:  # the closing summary: kept as it is, not merged
            self.summary = meta
            message = AIMessageChunk(content="", response_metadata={})
        self.total = message if self.total is None else self.total + message

    def result(self) -> AIMessage:
        total = self.total
        if total is None:
            total = AIMessageChunk(content="")
        meta = dict(total.response_metadata)
        if self.summary is not None:
            meta["coffee_nb"] = self.summary
        return AIMessage(
            content=total.content,
            response_metadata=meta,
            usage_metadata=getattr(total, "usage_metadata", None),
            tool_calls=getattr(total, "tool_calls", []),
            id=total.id,
        )


def collect(stream: Iterable[Any]) -> AIMessage:
    """The final message of a stream of chunks, honouring coffee_nb's restart markers."""
    collector = Collector()
    with handles_restarts():
        for chunk in stream:
            collector.add(chunk)
    return collector.result()


async def acollect(stream: AsyncIterable[Any]) -> AIMessage:
    """:func:`collect` for an async stream."""
    collector = Collector()
    with handles_restarts():
        async for chunk in stream:
            collector.add(chunk)
    return collector.result()
