"""The sandbox's SSE streaming answer, and the faults that strike a stream part-way through.

Stream faults: ``stream_error`` (an error event after a few chunks), ``cut:N`` (the connection ends
after N tokens with no finish reason and no ``[DONE]``), ``stall:N:S`` (S seconds of silence after N
tokens, connection open, then the rest), ``bad_sse:N`` (a malformed event at token N), ``no_done[:S]``
(a complete answer with usage but no ``[DONE]``, the connection held open S seconds) and
``slow_first:S`` (headers at once, the first token after S seconds).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import h11

from coffee_nb.sandbox._catalog import SandboxModel
from coffee_nb.sandbox._faults import Fault

if TYPE_CHECKING:
    from coffee_nb.sandbox._server import SandboxServer

__all__ = ["STREAM_ONLY", "stream_answer"]

# stream faults -> what a plain (non-streamed) request gets instead: a fault name, "hang_then_answer", or None
STREAM_ONLY: dict[str, str | None] = {
    "stream_error": "server_error",
    "cut": "reset",
    "stall": "hang_then_answer",
    "bad_sse": "malformed",
    "no_done": None,
}


async def stream_answer(
    srv: SandboxServer,
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    req: dict[str, Any],
    model: SandboxModel,
    cid: str,
    created: int,
    text: str,
    tool_call: dict[str, Any] | None,
    finish: str,
    usage: dict[str, Any],
    fault: Fault | None,
) -> bool:
    """Stream ``text`` (or ``tool_call``) as OpenAI chat-completion chunks; False: close the connection."""
    headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
    await srv._send(conn, writer, h11.Response(status_code=200, headers=headers))
    kind = fault.kind if fault is not None else None
    at = fault.tokens if fault is not None and fault.tokens is not None else 3

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.name,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    async def event(payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await srv._send(conn, writer, h11.Data(data=f"data: {data}\n\n".encode()))

    if kind == "slow_first":
        await asyncio.sleep(20.0 if fault is None or fault.seconds is None else fault.seconds)
    await event(chunk({"role": "assistant", "content": ""}))
    if tool_call:
        await event(chunk({"tool_calls": [{"index": 0, **tool_call}]}))
    else:
        pieces = text.split(" ") if text else []
        for i, piece in enumerate(pieces):
            if kind == "stream_error" and i >= 2:  # a few chunks, then an error event
                await event(
                    {
                        "error": {
                            "message": "The server had an error while streaming",
                            "type": "server_error",
                            "code": None,
                        }
                    }
                )
                await srv._send(conn, writer, h11.EndOfMessage())
                return True
            if i == at:
                if kind == "cut":  # the connection just ends: no finish reason, no [DONE]
                    await srv._send(conn, writer, h11.EndOfMessage())
                    return False
                if kind == "stall":
                    await asyncio.sleep(30.0 if fault is None or fault.seconds is None else fault.seconds)
                if kind == "bad_sse":
                    await srv._send(conn, writer, h11.Data(data=b'data: {"id": "chatcmpl-broken", "choices": [{\n\n'))
            await asyncio.sleep(srv._latency(model, model.token_ms))
            await event(chunk({"content": piece if i == 0 else " " + piece}))
    await event(chunk({}, finish))
    if (req.get("stream_options") or {}).get("include_usage"):
        await event({**chunk({}), "choices": [], "usage": usage})
    if kind == "no_done":  # complete, but neither [DONE] nor the end of the response for a while
        await asyncio.sleep(30.0 if fault is None or fault.seconds is None else fault.seconds)
        await srv._send(conn, writer, h11.EndOfMessage())
        return False
    await event("[DONE]")
    await srv._send(conn, writer, h11.EndOfMessage())
    return True
