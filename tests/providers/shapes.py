"""Provider-shaped HTTP replies (as each provider documents and sends them) and Bedrock via botocore.

Kinds: ``ok``, ``rate_limit`` (429 with Retry-After), ``server`` (5xx), ``context_overflow``, ``auth``,
``content_filter``; ``stream`` for a streamed success with usage.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

import httpx

IN, OUT = 11, 7  # the usage every success reports
TEXT = "Hello from the provider"
RETRY_AFTER = 0.05


def _sse(events: list[Any], done: bool = True) -> httpx.Response:
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ("data: [DONE]\n\n" if done else "")
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


# -- OpenAI's wire format: Azure, OpenRouter, DeepSeek, xAI, Together, Fireworks, vLLM & co, Groq ----------
def openai_ok(model: str, finish: str = "stop", text: str = TEXT) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": IN, "completion_tokens": OUT, "total_tokens": IN + OUT},
        },
    )


def openai_stream(model: str, usage_in: str = "chunk") -> httpx.Response:
    """``usage_in``: ``chunk`` (a last chunk with no choices, stream_options), ``x_groq`` (Groq's)."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    usage = {"prompt_tokens": IN, "completion_tokens": OUT, "total_tokens": IN + OUT}
    half = len(TEXT) // 2
    events: list[dict[str, Any]] = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT[:half]}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {"content": TEXT[half:]}, "finish_reason": None}]},
    ]
    last: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if usage_in == "x_groq":
        last["x_groq"] = {"id": "req_1", "usage": usage}
        events.append(last)
    else:
        events += [last, {**base, "choices": [], "usage": usage}]
    return _sse(events)


def openai_error(status: int, message: str, code: str | None, type_: str = "invalid_request_error", **headers: str):
    return httpx.Response(
        status, json={"error": {"message": message, "type": type_, "param": None, "code": code}}, headers=headers
    )


def openai_like(kind: str, model: str, *, host: str = "") -> httpx.Response:
    if kind == "ok":
        return openai_ok(model)
    if kind == "stream":
        return openai_stream(model, "x_groq" if "groq" in host else "chunk")
    if kind == "rate_limit":
        return openai_error(
            429,
            "Rate limit reached for requests",
            "rate_limit_exceeded",
            "requests",
            **{"retry-after": str(RETRY_AFTER)},
        )
    if kind == "server":
        return openai_error(503, "The server is overloaded or not ready yet.", None, "server_error")
    if kind == "context_overflow":
        return openai_error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 200000 tokens.",
            "context_length_exceeded",
        )
    if kind == "auth":
        return openai_error(401, "Incorrect API key provided: sk-or-****", "invalid_api_key")
    if kind == "content_filter":  # the answer was withheld: HTTP 200, finish_reason content_filter
        return openai_ok(model, finish="content_filter", text="")
    raise ValueError(kind)


def azure(kind: str, model: str) -> httpx.Response:
    if kind == "rate_limit":
        return httpx.Response(
            429,
            json={
                "error": {
                    "code": "429",
                    "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                    "2024-10-21 have exceeded token rate limit of your current AIServices S0 pricing tier.",
                }
            },
            headers={"retry-after": str(RETRY_AFTER)},
        )
    if kind == "auth":
        return httpx.Response(
            401,
            json={
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API endpoint.",
                }
            },
        )
    if kind == "content_filter":  # the prompt filter: a 400 with code content_filter
        return httpx.Response(
            400,
            json={
                "error": {
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                    "management policy.",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {"violence": {"filtered": True, "severity": "medium"}},
                    },
                }
            },
        )
    return openai_like(kind, model)


def mistral(kind: str, model: str) -> httpx.Response:
    if kind == "ok":
        return openai_ok(model)
    if kind == "stream":  # usage rides on the last chunk, with the finish reason
        base = {"id": "m1", "object": "chat.completion.chunk", "created": 1, "model": model}
        usage = {"prompt_tokens": IN, "completion_tokens": OUT, "total_tokens": IN + OUT}
        return _sse(
            [
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT}, "finish_reason": None}],
                },
                {**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], "usage": usage},
            ]
        )
    if kind == "rate_limit":
        return httpx.Response(
            429,
            json={"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited", "code": "1300"},
            headers={"retry-after": str(RETRY_AFTER)},
        )
    if kind == "server":
        return httpx.Response(503, json={"object": "error", "message": "Service unavailable", "type": "internal"})
    if kind == "context_overflow":
        return httpx.Response(
            400,
            json={
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 "
                "maximum context length",
                "type": "invalid_request_error",
                "code": "3051",
            },
        )
    if kind == "auth":
        return httpx.Response(401, json={"message": "Unauthorized", "request_id": "r1"})
    raise ValueError(kind)


# -- Gemini (generativelanguage.googleapis.com) ------------------------------------------------------------
def _gemini_usage(out: int = OUT) -> dict[str, int]:
    return {"promptTokenCount": IN, "candidatesTokenCount": out, "totalTokenCount": IN + out}


def _gemini_error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None, **headers: str):
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if details:
        error["details"] = details
    return httpx.Response(status, json={"error": error}, headers=headers)


def google(kind: str, model: str) -> httpx.Response:
    if kind == "ok":
        return httpx.Response(
            200,
            json={
                "candidates": [
                    {"content": {"parts": [{"text": TEXT}], "role": "model"}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": _gemini_usage(),
                "modelVersion": model,
                "responseId": "r1",
            },
        )
    if kind == "stream":
        half = len(TEXT) // 2
        return _sse(
            [
                {
                    "candidates": [{"content": {"parts": [{"text": TEXT[:half]}], "role": "model"}, "index": 0}],
                    "usageMetadata": _gemini_usage(2),
                    "modelVersion": model,
                },
                {
                    "candidates": [
                        {
                            "content": {"parts": [{"text": TEXT[half:]}], "role": "model"},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": _gemini_usage(),
                    "modelVersion": model,
                },
            ],
            done=False,
        )
    if kind == "rate_limit":
        return _gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER}s"}],
        )
    if kind == "server":
        return _gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if kind == "context_overflow":
        return _gemini_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        )
    if kind == "auth":  # Gemini says a bad key with a 400 and the reason API_KEY_INVALID
        return _gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        )
    if kind == "content_filter":  # a blocked prompt: HTTP 200, no candidates, promptFeedback.blockReason
        return httpx.Response(
            200,
            json={
                "promptFeedback": {
                    "blockReason": "SAFETY",
                    "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
                },
                "usageMetadata": {"promptTokenCount": IN, "totalTokenCount": IN},
                "modelVersion": model,
            },
        )
    raise ValueError(kind)


# -- Bedrock: botocore's Stubber for Converse; an event-stream body for ConverseStream ---------------------
def converse_ok(text: str = TEXT, stop: str = "end_turn") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop,
        "usage": {"inputTokens": IN, "outputTokens": OUT, "totalTokens": IN + OUT},
        "metrics": {"latencyMs": 12},
    }


BEDROCK_ERRORS: dict[str, tuple[str, str, int]] = {
    "rate_limit": ("ThrottlingException", "Too many requests, please wait before trying again.", 429),
    "server": ("ServiceUnavailableException", "Bedrock is unable to process your request.", 503),
    "context_overflow": ("ValidationException", "Input is too long for requested model.", 400),
    "auth": ("AccessDeniedException", "You don't have access to the model with the specified model ID.", 403),
}


def stub_bedrock(stubber: Any, kind: str, operation: str = "converse") -> None:
    """Script one Converse reply of ``kind`` on a botocore ``Stubber``."""
    if kind == "ok":
        stubber.add_response(operation, converse_ok())
    elif kind == "content_filter":  # a guardrail stopped it: HTTP 200, stopReason guardrail_intervened
        stubber.add_response(operation, converse_ok("Sorry, the model cannot answer this.", "guardrail_intervened"))
    else:
        code, message, status = BEDROCK_ERRORS[kind]
        meta = {"HTTPHeaders": {"retry-after": str(RETRY_AFTER)}} if kind == "rate_limit" else None
        stubber.add_client_error(
            operation, service_error_code=code, service_message=message, http_status_code=status, response_meta=meta
        )


def _event(headers: dict[str, str], payload: dict[str, Any]) -> bytes:
    """One message of the AWS event-stream encoding (what ConverseStream sends)."""
    head = b"".join(
        struct.pack("B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    body = json.dumps(payload).encode()
    total = 12 + len(head) + len(body) + 4
    prelude = struct.pack(">II", total, len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + body
    return message + struct.pack(">I", binascii.crc32(message))


def converse_stream_body(*, error_after: str | None = None) -> bytes:
    """A ConverseStream reply: text deltas, the stop and the usage metadata; or an error event after the
    first delta (``error_after`` names it, e.g. ``throttlingException``)."""
    half = len(TEXT) // 2

    def ev(kind: str, payload: dict[str, Any]) -> bytes:
        headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        return _event(headers, payload)

    parts = [
        ev("messageStart", {"role": "assistant"}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": TEXT[:half]}}),
    ]
    if error_after:
        headers = {":exception-type": error_after, ":content-type": "application/json", ":message-type": "exception"}
        return b"".join([*parts, _event(headers, {"message": "Too many requests"})])
    parts += [
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": TEXT[half:]}}),
        ev("contentBlockStop", {"contentBlockIndex": 0}),
        ev("messageStop", {"stopReason": "end_turn"}),
        ev(
            "metadata",
            {"usage": {"inputTokens": IN, "outputTokens": OUT, "totalTokens": IN + OUT}, "metrics": {"latencyMs": 9}},
        ),
    ]
    return b"".join(parts)


class _Raw:
    """The raw body botocore reads an event stream from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any):
        yield from (self._data[i : i + 64] for i in range(0, len(self._data), 64))

    def close(self) -> None:
        pass


def serve_converse_stream(client: Any, bodies: list[bytes]) -> None:
    """Answer the client's ConverseStream calls with ``bodies``, in order, through botocore's own
    ``before-send`` hook: the request is built and signed for real; the reply is parsed by botocore."""
    from botocore.awsrequest import AWSResponse

    queue = list(bodies)

    def send(request: Any, **kwargs: Any) -> Any:
        data = queue.pop(0) if len(queue) > 1 else queue[0]
        headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "r1"}
        return AWSResponse(request.url, 200, headers, _Raw(data))

    client.meta.events.register("before-send.bedrock-runtime.ConverseStream", send)


# -- Anthropic's Messages API (api.anthropic.com) -----------------------------------------------------------
def _anthropic_error(status: int, type_: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"type": "error", "error": {"type": type_, "message": message}}, headers=headers)


def _anthropic_message(model: str, text: str, stop: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": IN, "output_tokens": OUT},
    }


def anthropic(kind: str, model: str) -> httpx.Response:
    if kind == "ok":
        return httpx.Response(200, json=_anthropic_message(model, TEXT, "end_turn"))
    if kind == "stream":  # named SSE events; message_delta carries the whole usage (cumulative), as the API sends it
        start = {**_anthropic_message(model, "", None), "usage": {"input_tokens": IN, "output_tokens": 1}}  # type: ignore[arg-type]
        half = len(TEXT) // 2

        def delta(text: str) -> dict[str, Any]:
            return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}

        block = {"type": "text", "text": ""}
        end = {"stop_reason": "end_turn", "stop_sequence": None}
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", delta(TEXT[:half])),
            ("content_block_delta", delta(TEXT[half:])),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {"type": "message_delta", "delta": end, "usage": {"input_tokens": IN, "output_tokens": OUT}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
    if kind == "rate_limit":
        return _anthropic_error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
            **{"retry-after": str(RETRY_AFTER)},
        )
    if kind == "server":
        return _anthropic_error(529, "overloaded_error", "Overloaded")
    if kind == "context_overflow":
        return _anthropic_error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    if kind == "auth":
        return _anthropic_error(401, "authentication_error", "invalid x-api-key")
    if kind == "content_filter":  # Claude's streaming classifiers end an answer with stop_reason "refusal"
        return httpx.Response(200, json=_anthropic_message(model, "", "refusal"))
    raise ValueError(kind)
