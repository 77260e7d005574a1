"""Cassette replay and recording, as the attempt runner uses them (the store itself is ``_cassette.py``).

:func:`replayed` turns a recorded answer into what a driver yields (a message, or chunks and the
summary), with a ``replayed`` record and nothing spent; :func:`taped` records an answer the runner got.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.utils.function_calling import convert_to_openai_tool

from coffee_nb._shared._format import content_text
from coffee_nb.invoke._plan import Usage
from coffee_nb.invoke._summary import summary_data
from coffee_nb.replay._cassette import request_of

if TYPE_CHECKING:
    from coffee_nb.invoke._attempt import Call

__all__ = ["replayed", "request_params", "taped"]

# Our private kwargs (set by bind_tools/with_structured_output) and tracing-only ones: not part of a request.
_PRIVATE = frozenset({"coffee_tools", "coffee_structured", "ls_structured_output_format", "max_cost"})


def replayed(call: Call) -> Iterator[Any]:
    """The recorded answer, as the driver yields it (the message, or chunks and the summary); nothing
    when there is no cassette or no entry (strict mode raises :class:`CassetteMissError` instead)."""
    tape = call.tape
    if tape is None:
        return
    request = call.request = request_of(call.picker.model_names, call.messages, request_params(call))
    found = tape.find(request)
    if found is None:
        return
    usage = Usage(found.usage.get("input", 0), found.usage.get("output", 0), found.usage.get("cached", 0))
    record = call.plan.replay(found.model, found.provider, usage)
    summary = summary_data((record,), latency_s=call.plan.elapsed(), replayed=True, recorded_cost=found.cost)
    usage_metadata = UsageMetadata(
        input_tokens=usage.input, output_tokens=usage.output, total_tokens=usage.input + usage.output
    )
    if not call.streaming:
        yield AIMessage(
            content=found.content,
            tool_calls=found.tool_calls,
            usage_metadata=usage_metadata,
            response_metadata={"coffee_nb": summary},
        )
        return
    for i, word in enumerate(found.content.split(" ") if found.content else []):  # replays stream too
        yield ChatGenerationChunk(message=AIMessageChunk(content=word if i == 0 else " " + word))
    calls = [
        tool_call_chunk(name=c.get("name"), args=json.dumps(c.get("args")), id=c.get("id"), index=i)
        for i, c in enumerate(found.tool_calls)
    ]
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            tool_call_chunks=calls,
            usage_metadata=usage_metadata,
            response_metadata={"coffee_nb": summary},
        )
    )


def request_params(call: Call) -> dict[str, Any]:
    picker, kwargs = call.picker, call.kwargs
    params = {k: v for k, v in kwargs.items() if k not in _PRIVATE}
    params.setdefault("temperature", picker.temperature)
    params.setdefault("max_tokens", picker.max_tokens)
    params["stop"] = call.stop
    tools = kwargs.get("coffee_tools")
    if tools is not None:
        params["tools"] = [convert_to_openai_tool(t) for t in tools[0]]
        params["tool_options"] = tools[1]
    structured = kwargs.get("coffee_structured")
    if structured is not None:
        params["schema"] = structured[0]
    return params


def taped(call: Call, message: BaseMessage, usage: Usage, cost: Any) -> None:
    """Record the answer on the cassette (record and replay modes)."""
    tape = call.tape
    if tape is None or tape.mode not in ("record", "replay"):
        return
    request = call.request or request_of(call.picker.model_names, call.messages, request_params(call))
    final = call.plan.records[-1]
    tape.store(
        request,
        {
            "model": final.model,
            "provider": final.provider,
            "content": content_text(message.content),
            "tool_calls": [
                {"name": c["name"], "args": c["args"], "id": c.get("id"), "type": "tool_call"}
                for c in getattr(message, "tool_calls", None) or []
            ],
            "usage": {"input": usage.input, "output": usage.output, "cached": usage.cached},
            "cost": cost,
            "attempts": [
                {"model": r.model, "outcome": r.outcome.value, "error_class": r.error_class} for r in call.plan.records
            ],
        },
    )
