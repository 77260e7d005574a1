"""A local server speaking Anthropic's Messages API (``POST /v1/messages``) on 127.0.0.1, for driving the
real anthropic SDK and langchain-anthropic offline.

It answers every model with one canonical text, streamed one word per ``text_delta`` (leading spaces on
the delta, so a cut never leaves a prefill ending in whitespace) in the events the real API sends:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
``message_delta`` (stop reason and usage), ``message_stop``. A script per model name says what each
request gets: :class:`Answer`, :class:`InBandError` (HTTP 200, N deltas, then ``event: error``) or
:class:`StatusError` (an error body with its status before any event). A request whose last message is
the assistant's is a prefill: the answer continues from it (the rest of the canonical text), or is
refused with a 400 ``invalid_request_error`` for a model told to refuse prefills. Every request is logged
(:attr:`AnthropicServer.requests`).

    with AnthropicServer() as server:
        server.script("claude-3-5-haiku-latest", InBandError(after=20))
        ChatAnthropic(model="claude-3-5-haiku-latest", base_url=server.url, api_key="sk-ant-test")
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CANONICAL", "Answer", "AnthropicServer", "InBandError", "Seen", "StatusError", "words"]

# 60 distinct words (each numbered): a duplicated or spliced piece of text shows in any comparison
_VOCABULARY = ["Coffee", "beans", "are", "roasted", "ground", "brewed", "and", "poured", "slowly"]
CANONICAL = " ".join(f"{w}{i}" for i, w in enumerate(itertools.islice(itertools.cycle(_VOCABULARY), 60)))

# the status each error type comes with when it is sent out of band (https://docs.anthropic.com/en/api/errors)
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
NO_PREFILL = "This model does not support assistant message prefill. The conversation must end with a user message."
TRAILING_WHITESPACE = "messages: final assistant content cannot end with trailing whitespace"


def words(text: str) -> list[str]:
    """``text`` as the server streams it: one delta per word, each with the spaces before it."""
    return re.findall(r"\s*\S+", text)


@dataclass(frozen=True)
class Answer:
    """Answer in full (or the rest of the answer after an assistant prefill)."""


@dataclass(frozen=True)
class InBandError:
    """Begin the stream with HTTP 200, send ``after`` text deltas, then an ``event: error`` of ``type``.
    (A request that does not stream gets the type's own status instead.)"""

    after: int
    type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class StatusError:
    """Refuse the request before any event: ``status`` with an Anthropic error body of ``type``."""

    status: int
    type: str
    message: str = "error"


Step = Answer | InBandError | StatusError


@dataclass
class Seen:
    """One request as the server saw it, and what it did about it."""

    model: str
    stream: bool
    messages: list[dict[str, Any]]
    prefill: str | None  # the final assistant turn's text, when there was one
    outcome: str = ""  # "answered", "in-band overloaded_error after 20", "529 overloaded_error", ...
    sent: str = ""  # the text it sent before it finished or failed


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


@dataclass
class AnthropicServer:
    """The server; a context manager that starts it on a free loopback port and stops it."""

    answer: str = CANONICAL
    api_key: str = "sk-ant-test"  # requests without it get a 401 (the key is never echoed)
    requests: list[Seen] = field(default_factory=list)
    _scripts: dict[str, list[Step]] = field(default_factory=dict)
    _served: dict[str, int] = field(default_factory=dict)
    _no_prefill: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------------
    def script(self, model: str, *steps: Step) -> None:
        """What successive requests for ``model`` get, in order (the last step repeats; default: answer)."""
        with self._lock:
            self._scripts[model] = list(steps)
            self._served[model] = 0

    def refuse_prefill(self, model: str) -> None:
        """``model`` answers a final assistant turn with a 400, as models without prefill support do."""
        self._no_prefill.add(model)

    def seen(self, model: str) -> list[Seen]:
        """The requests for ``model``, in order."""
        with self._lock:
            return [r for r in self.requests if r.model == model]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first (with AnthropicServer() as server: ...)"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> AnthropicServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="anthropic-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- what a request gets ---------------------------------------------------------------------------
    def _next_step(self, model: str) -> Step:
        with self._lock:
            steps = self._scripts.get(model) or [Answer()]
            n = self._served.get(model, 0)
            self._served[model] = n + 1
            return steps[min(n, len(steps) - 1)]

    def _log(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)


class _Handler(BaseHTTPRequestHandler):
    owner: AnthropicServer
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the real API

    def log_message(self, fmt: str, *args: Any) -> None:
        """Quiet: tests read :attr:`AnthropicServer.requests` instead."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.split("?")[0] != "/v1/messages":
            self._error(404, "not_found_error", f"Not found: {self.path}")
            return
        # the key as x-api-key, or as a bearer token (what anthropic 2.x sends)
        if self.owner.api_key not in (self.headers.get("x-api-key"), self.headers.get("authorization", "")[7:]):
            self._error(401, "authentication_error", "invalid x-api-key")
            return
        model = str(body.get("model", ""))
        messages = list(body.get("messages") or [])
        last = messages[-1] if messages else {}
        prefill = _text(last.get("content", "")) if last.get("role") == "assistant" else None
        seen = Seen(model=model, stream=bool(body.get("stream")), messages=messages, prefill=prefill)
        self.owner._log(seen)
        step = self.owner._next_step(model)
        if prefill is not None and model in self.owner._no_prefill:
            step = StatusError(400, "invalid_request_error", NO_PREFILL)
        elif prefill is not None and prefill != prefill.rstrip():
            step = StatusError(400, "invalid_request_error", TRAILING_WHITESPACE)
        if isinstance(step, InBandError) and not seen.stream:
            step = StatusError(_STATUS_OF_TYPE.get(step.type, 500), step.type, step.message)
        if isinstance(step, StatusError):
            seen.outcome = f"{step.status} {step.type}"
            self._error(step.status, step.type, step.message)
            return
        answer = self.owner.answer
        # a prefill is continued: the rest of the answer (a prefill it doesn't start: the whole answer,
        # as a model would, so a test sees the duplicate)
        rest = answer[len(prefill) :] if prefill is not None and answer.startswith(prefill) else answer
        deltas = words(rest)
        if not seen.stream:
            seen.outcome, seen.sent = "answered", rest
            self._json(200, self._message(model, rest, len(deltas)))
            return
        cut = step.after if isinstance(step, InBandError) else None
        self._stream(seen, deltas, cut, step if isinstance(step, InBandError) else None)

    # -- replies -------------------------------------------------------------------------------------------
    def _message(self, model: str, text: str, out_tokens: int) -> dict[str, Any]:
        return {
            "id": "msg_local_0001",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": out_tokens},
        }

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_local_0001")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, type_: str, message: str) -> None:
        self._json(status, {"type": "error", "error": {"type": type_, "message": message}})

    def _stream(self, seen: Seen, deltas: list[str], cut: int | None, error: InBandError | None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", "req_local_0001")
        self.end_headers()
        start = self._message(seen.model, "", 1)
        start["content"], start["stop_reason"] = [], None
        self._event("message_start", {"type": "message_start", "message": start})
        block = {"type": "text", "text": ""}
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        self._event("ping", {"type": "ping"})
        for i, delta in enumerate(deltas):
            if cut is not None and i == cut:
                break
            text_delta = {"type": "text_delta", "text": delta}
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": text_delta})
            seen.sent += delta
        if error is not None:
            seen.outcome = f"in-band {error.type} after {cut}"
            self._event("error", {"type": "error", "error": {"type": error.type, "message": error.message}})
        else:
            seen.outcome = "answered"
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            usage = {"output_tokens": len(deltas)}
            stop = {"stop_reason": "end_turn", "stop_sequence": None}
            self._event("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
            self._event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")  # the chunked body's end
        self.wfile.flush()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()
