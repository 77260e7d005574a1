"""An offline OpenAI-compatible Chat Completions server (asyncio + h11), with fault injection.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming, usage chunk on
``stream_options.include_usage``), ``GET /v1/models``, and a control plane for other processes:
``POST /sandbox/faults`` ``{"model", "sequence": [...], "rates": {...}, "seed"}``,
``DELETE /sandbox/faults``, ``GET /sandbox/stats``, ``GET /sandbox/log`` (every request with its time and
fault, so tests can check a client's conduct: retries, waits, hammering).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import h11

from coffee_nb._errors import ConfigError
from coffee_nb._format import content_text
from coffee_nb._tokens import count_prompt, count_tokens
from coffee_nb.sandbox._catalog import ENCODING, MODELS, SandboxModel
from coffee_nb.sandbox._faults import Fault, FaultBook
from coffee_nb.sandbox._sse import STREAM_ONLY, stream_answer

__all__ = ["SandboxServer"]

_WORDS = [
    "the",
    "model",
    "answers",
    "offline",
    "with",
    "deterministic",
    "text",
    "so",
    "notebooks",
    "stay",
    "reproducible",
    "and",
    "every",
    "number",
    "stays",
    "honest",
    "while",
    "budgets",
    "latency",
    "tokens",
    "and",
    "costs",
    "flow",
    "through",
    "the",
    "same",
    "path",
    "as",
    "real",
    "providers",
    "coffee",
    "is",
    "brewing",
    "data",
    "science",
    "needs",
    "careful",
    "measurement",
    "of",
    "where",
    "money",
    "and",
    "seconds",
    "go",
    "fallback",
    "chains",
    "survive",
    "outages",
    "retries",
    "respect",
    "deadlines",
    "cooldowns",
    "protect",
    "flaky",
    "services",
    "streaming",
    "shows",
    "tokens",
    "as",
    "they",
    "arrive",
]
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


def _error(
    status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None
) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _model_of(body: bytes) -> str | None:
    """The model an (invalid) request named, for the request log."""
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return model.removeprefix("sandbox/") if isinstance(model, str) else None


class _BadRequestError(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _example_for(
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    numbers: list[float] | None = None,
    strings: list[str] | None = None,
) -> Any:
    """A deterministic value matching a JSON schema (for tool calls and structured output).

    Numbers and quoted strings found in the prompt fill numeric and string fields in order, the
    way a model would pick them up.
    """
    numbers = [] if numbers is None else numbers
    strings = [] if strings is None else strings
    if "$ref" in schema:
        return _example_for(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, numbers, strings)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example_for(schema[key][0], defs, numbers, strings)
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _example_for(v, defs, numbers, strings) for k, v in props.items()}
    if kind == "array":
        return [_example_for(schema.get("items", {}), defs, numbers, strings)]
    if kind in ("integer", "number") and numbers:
        n = numbers.pop(0)
        return int(n) if kind == "integer" else n
    if kind == "string" and strings:
        return strings.pop(0)
    return {"string": "sandbox", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(kind, "sandbox")


def _prompt_hints(text: str) -> tuple[list[float], list[str]]:
    """Numbers and quoted strings in the prompt, in order: what a model would copy into fields."""
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]
    strings = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)]
    return numbers, strings


class SandboxServer:
    """The sandbox HTTP server. ``start()`` runs it on a background thread; ``serve_forever()`` in this one."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, latency_scale: float = 1.0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the sandbox listens on loopback only (127.0.0.1), got host {host!r}")
        self.host = host
        self.port = port
        self.seed = seed
        self.latency_scale = latency_scale
        self.faults = FaultBook()
        self.replies: dict[str, list[str]] = {}
        self.requests: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []  # every chat request: monotonic time, model, fault, stream, prefill
        self._rngs: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counter = 0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> SandboxServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="coffee_nb-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the coffee_nb sandbox did not start within 10 s")
        return self

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._open())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        # every task of this loop, not only self._tasks: a connection accepted just before stop() has a
        # handler task that hasn't run (nor registered itself) yet, and would be destroyed pending
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None
        self._ready.clear()

    def serve_forever(self) -> None:
        async def main() -> None:
            await self._open()
            print(f"coffee_nb sandbox serving OpenAI-compatible API at {self.url} (Ctrl-C to stop)", flush=True)
            assert self._server is not None
            async with self._server:
                await self._server.serve_forever()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    # -- HTTP plumbing ---------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._next(conn, reader)
                if not isinstance(request, h11.Request):
                    break
                body = bytearray()
                while True:
                    event = await self._next(conn, reader)
                    if isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                keep = await self._dispatch(conn, writer, request, bytes(body))
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return h11.ConnectionClosed()

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, *events: Any) -> None:
        for event in events:
            data = conn.send(event)
            if data:
                writer.write(data)
        await writer.drain()

    async def _json(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        hdrs = [("content-type", "application/json"), ("content-length", str(len(body)))] + (headers or [])
        await self._send(
            conn, writer, h11.Response(status_code=status, headers=hdrs), h11.Data(data=body), h11.EndOfMessage()
        )

    async def _dispatch(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request, body: bytes
    ) -> bool:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0].rstrip("/")
        if path == "/v1/chat/completions" and method == "POST":
            return await self._chat(conn, writer, body)
        if path == "/v1/models" and method == "GET":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "coffee_nb-sandbox"} for m in MODELS]
            await self._json(conn, writer, 200, {"object": "list", "data": data})
            return True
        if path == "/sandbox/faults":
            return await self._control(conn, writer, method, body)
        if path == "/sandbox/stats" and method == "GET":
            await self._json(conn, writer, 200, {"requests": dict(self.requests)})
            return True
        if path == "/sandbox/log" and method == "GET":
            await self._json(conn, writer, 200, {"attempts": list(self.log)})
            return True
        known = {"/v1/chat/completions", "/v1/models", "/sandbox/faults", "/sandbox/stats", "/sandbox/log"}
        status = 405 if path in known else 404
        message = (
            f"Invalid URL ({method} {request.target.decode()})" if status == 404 else f"Method {method} not allowed"
        )
        await self._json(conn, writer, *_error(status, message, type_="invalid_request_error"))
        return True

    async def _control(self, conn: h11.Connection, writer: asyncio.StreamWriter, method: str, body: bytes) -> bool:
        try:
            if method == "DELETE":
                spec = json.loads(body) if body else {}
                self.faults.clear(spec.get("model"))
            elif method == "POST":
                spec = json.loads(body)
                model = str(spec["model"]).removeprefix("sandbox/")
                if spec.get("sequence"):
                    self.faults.script(model, spec["sequence"])
                if spec.get("rates") is not None:
                    self.faults.set_rates(model, spec["rates"], int(spec.get("seed", 0)))
            else:
                await self._json(
                    conn, writer, *_error(405, f"Method {method} not allowed", type_="invalid_request_error")
                )
                return True
        except (ValueError, KeyError, TypeError) as exc:
            await self._json(conn, writer, *_error(400, f"bad fault spec: {exc}", type_="invalid_request_error"))
            return True
        await self._json(conn, writer, 200, {"ok": True})
        return True

    # -- the API ---------------------------------------------------------------------------------------
    def _validate(self, body: bytes) -> dict[str, Any]:
        try:
            req = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequestError(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload.)"
            ) from None
        if not isinstance(req, dict):
            raise _BadRequestError("The request body must be a JSON object.")
        if not isinstance(req.get("model"), str) or not req["model"]:
            raise _BadRequestError("you must provide a model parameter", param="model")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequestError("'messages' must be a non-empty array of message objects.", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise _BadRequestError(
                    f"Invalid value for 'messages[{i}].role': expected one of {sorted(_ROLES)}.",
                    param=f"messages[{i}].role",
                )
        t = req.get("temperature")
        if t is not None and (not isinstance(t, (int, float)) or not 0 <= t <= 2):
            raise _BadRequestError(
                f"Invalid 'temperature': {t!r}. Expected a number between 0 and 2.", param="temperature"
            )
        for key in ("max_tokens", "max_completion_tokens"):
            v = req.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise _BadRequestError(f"Invalid '{key}': {v!r}. Expected an integer >= 1.", param=key)
        n = req.get("n")
        if n not in (None, 1):
            raise _BadRequestError("The sandbox supports n=1 only.", param="n")
        return req

    def _latency(self, model: SandboxModel, base_ms: float) -> float:
        if self.latency_scale <= 0 or base_ms <= 0:
            return 0.0
        with self._lock:
            rng = self._rngs.setdefault(model.name, random.Random(f"{self.seed}/{model.name}"))
            draw = rng.lognormvariate(math.log(base_ms), model.latency_sigma)
        return draw * self.latency_scale / 1000.0

    def _reply(self, model: SandboxModel, req: dict[str, Any], prompt: str) -> str:
        with self._lock:
            queue = self.replies.get(model.name)
            if queue:
                return queue.pop(0)
        if model.echo:
            return prompt
        digest = hashlib.sha256(f"{model.name}\0{json.dumps(req['messages'], sort_keys=True)}".encode()).digest()
        rng = random.Random(digest)
        words = [rng.choice(_WORDS) for _ in range(model.reply_tokens)]
        words[0] = words[0].capitalize()
        snippet = " ".join(prompt.split())[:60]
        return f"[sandbox/{model.name}] You said: {snippet!r}. " + " ".join(words) + "."

    async def _chat(self, conn: h11.Connection, writer: asyncio.StreamWriter, body: bytes) -> bool:
        try:
            req = self._validate(body)
        except _BadRequestError as exc:
            self.log.append(
                {
                    "t": time.monotonic(),
                    "model": _model_of(body),
                    "fault": "bad_request",
                    "stream": False,
                    "prefill": False,
                }
            )
            await self._json(
                conn, writer, *_error(400, str(exc), type_="invalid_request_error", param=exc.param, code=exc.code)
            )
            return True
        name = req["model"].removeprefix("sandbox/")
        model = MODELS.get(name)
        self.requests[name] += 1
        if model is None:
            await self._json(
                conn,
                writer,
                *_error(
                    404,
                    f"The model `{req['model']}` does not exist or you do not have access to it.",
                    type_="invalid_request_error",
                    code="model_not_found",
                ),
            )
            return True
        with self._lock:
            rng = self._rngs.setdefault(f"faults/{name}", random.Random(f"{self.seed}/faults/{name}"))
        fault = self.faults.draw(name, model.failure_rates, rng)
        stream = bool(req.get("stream"))
        messages = req["messages"]
        prefill = messages[-1].get("role") == "assistant"
        if self.faults.down(name) > 0:
            fault = Fault("overloaded")
        self.log.append(
            {
                "t": time.monotonic(),
                "model": name,
                "fault": fault.kind if fault else None,
                "stream": stream,
                "prefill": prefill,
            }
        )
        await asyncio.sleep(self._latency(model, model.latency_ms))
        if fault is not None and fault.kind == "no_prefill":
            if prefill:
                await self._json(
                    conn,
                    writer,
                    *_error(
                        400,
                        "This model does not support assistant message prefill (the last message must be from "
                        "the user).",
                        type_="invalid_request_error",
                        param="messages",
                    ),
                )
                return True
            fault = None
        if fault is not None and fault.kind == "slow_first":
            if not stream:
                await asyncio.sleep(20.0 if fault.seconds is None else fault.seconds)
                fault = None
        elif fault is not None and fault.kind in STREAM_ONLY:
            if not stream:  # the plain-request twin of a stream fault
                plain = STREAM_ONLY[fault.kind]
                if plain is None:
                    fault = None
                elif plain == "hang_then_answer":
                    await asyncio.sleep(30.0 if fault.seconds is None else fault.seconds)
                    fault = None
                else:
                    return await self._fault(conn, writer, Fault(plain), model)
        elif fault is not None:
            return await self._fault(conn, writer, fault, model)

        prompt_tokens = count_prompt(messages, ENCODING)
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        if prompt_tokens + (max_tokens or 0) > model.context_window:
            await self._json(
                conn,
                writer,
                *_error(
                    400,
                    f"This model's maximum context length is {model.context_window} tokens. However, you requested "
                    f"{prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, {max_tokens or 0} "
                    "in the completion). Please reduce the length of the messages or completion.",
                    type_="invalid_request_error",
                    param="messages",
                    code="context_length_exceeded",
                ),
            )
            return True
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        tool_call = None if prefill else self._tool_call(req)
        asked = {**req, "messages": messages[:-1]} if prefill else req  # the answer the prefill is part of
        text = "" if tool_call else self._reply(model, asked, content_text(last_user.get("content")))
        if prefill:  # continue the assistant's text: the rest of this model's answer, word by word
            done = len(content_text(messages[-1].get("content")).split())
            rest = text.split(" ")[done:]
            text = (" " + " ".join(rest)) if rest else ""
        if not tool_call:
            fmt = req.get("response_format") or {}
            if fmt.get("type") == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema") or {}
                numbers, strings = _prompt_hints(content_text(last_user.get("content")))
                text = json.dumps(_example_for(schema, schema.get("$defs", {}), numbers, strings))
            elif fmt.get("type") == "json_object":
                text = json.dumps({"answer": text})
        finish = "tool_calls" if tool_call else "stop"
        stop = req.get("stop")
        for s in [stop] if isinstance(stop, str) else (stop or []):
            if s and s in text:
                text = text[: text.index(s)]
        completion_tokens = count_tokens(text, ENCODING)
        if max_tokens is not None and completion_tokens > max_tokens:
            from coffee_nb._tokens import _encoding

            enc = _encoding(ENCODING)
            text = enc.decode(enc.encode_ordinary(text)[:max_tokens])
            completion_tokens = max_tokens
            finish = "length"
        if tool_call:
            completion_tokens = count_tokens(tool_call["function"]["arguments"], ENCODING) + 3
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        with self._lock:
            self._counter += 1
            cid = f"chatcmpl-sandbox{self._counter:08d}"
        created = int(time.time())
        if stream:
            return await stream_answer(
                self, conn, writer, req, model, cid, created, text, tool_call, finish, usage, fault
            )
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if tool_call:
            message["tool_calls"] = [tool_call]
        await self._json(
            conn,
            writer,
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "system_fingerprint": "coffee_nb-sandbox",
            },
        )
        return True

    def _tool_call(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """Like an eager agent model: when tools are bound and the user just spoke, call the tool whose
        name and description share the most words with the message; answer in text after a tool result."""
        tools = [t.get("function", {}) for t in req.get("tools") or [] if isinstance(t, dict)]
        choice = req.get("tool_choice")
        last = req["messages"][-1]
        if not tools or choice == "none" or last.get("role") != "user":
            return None
        text = content_text(last.get("content"))
        words = set(re.findall(r"\w+", text.lower()))

        def overlap(fn: dict[str, Any]) -> int:
            name = str(fn.get("name", ""))
            own = set(re.findall(r"\w+", f"{name.replace('_', ' ')} {fn.get('description', '')}".lower()))
            return len(own & words) + (10 if name and name in text else 0)

        fn = max(tools, key=overlap)
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            fn = next((t for t in tools if t.get("name") == wanted), fn)
        params = fn.get("parameters") or {}
        numbers, strings = _prompt_hints(text)
        args = _example_for(params, params.get("$defs", {}), numbers, strings)
        with self._lock:
            self._counter += 1
            call_id = f"call_sandbox{self._counter:08d}"
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)},
        }

    async def _fault(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, fault: Fault, model: SandboxModel
    ) -> bool:
        kind = fault.kind
        if kind == "rate_limit":
            retry_after = 1.0 if fault.seconds is None else fault.seconds
            await self._json(
                conn,
                writer,
                *_error(
                    429,
                    f"Rate limit reached for {model.name} (sandbox). Please try again in {retry_after:g}s.",
                    type_="requests",
                    code="rate_limit_exceeded",
                ),
                headers=[("retry-after", f"{retry_after:g}")],
            )
        elif kind == "server_error":
            await self._json(
                conn,
                writer,
                *_error(500, "The server had an error while processing your request.", type_="server_error"),
            )
        elif kind == "overloaded":
            await self._json(
                conn,
                writer,
                *_error(
                    503,
                    "The engine is currently overloaded, please try again later.",
                    type_="server_error",
                    code="overloaded",
                ),
            )
        elif kind == "auth":
            await self._json(
                conn,
                writer,
                *_error(
                    401,
                    "Incorrect API key provided. You can find your API key in your account settings.",
                    type_="invalid_request_error",
                    code="invalid_api_key",
                ),
            )
        elif kind == "context_overflow":
            await self._json(
                conn,
                writer,
                *_error(
                    400,
                    f"This model's maximum context length is {model.context_window} tokens. "
                    "However, your messages resulted in more tokens.",
                    type_="invalid_request_error",
                    param="messages",
                    code="context_length_exceeded",
                ),
            )
        elif kind == "content_filter":
            await self._json(
                conn,
                writer,
                *_error(
                    400,
                    "The response was filtered due to the prompt triggering the content management policy.",
                    type_="invalid_request_error",
                    param="prompt",
                    code="content_filter",
                ),
            )
        elif kind == "malformed":
            body = b'{"id": "chatcmpl-broken", "choices": [{"message": '
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            await self._send(
                conn, writer, h11.Response(status_code=200, headers=headers), h11.Data(data=body), h11.EndOfMessage()
            )
        elif kind == "hang":
            await asyncio.sleep(60.0 if fault.seconds is None else fault.seconds)
            await self._json(conn, writer, *_error(504, "The sandbox hung on purpose.", type_="server_error"))
        elif kind == "silent":  # accepted, never answered: hold until the client gives up
            await asyncio.sleep(300.0 if fault.seconds is None else fault.seconds)
            return False
        elif kind == "reset_early":
            writer.transport.abort()
            return False
        elif kind == "reset":
            writer.write(
                b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{"id": "chatcmpl-'
            )
            await writer.drain()
            writer.transport.abort()
            return False
        return True
