"""An offline OpenAI-compatible Chat Completions server (asyncio + h11), with fault injection.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming, usage chunk on
``stream_options.include_usage``), ``GET /v1/models``, and a control plane for other processes:
``POST /sandbox/faults`` ``{"model", "sequence": [...], "rates": {...}, "seed"}``,
``DELETE /sandbox/faults``, ``GET /sandbox/stats``, ``GET /sandbox/log`` (every request with its time and
fault, so tests can check a client's conduct: retries, waits, hammering).

Message content may be a string or a list of parts; image parts are read in ``_vision`` (``sandbox/vision``
describes them, text-only models refuse them with OpenAI's 400, and they count as prompt tokens).

Over ~400 lines as one thing: the HTTP/1.1 server and its routes (replies, faults, SSE and images are elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import h11

from coffee_nb.errors._errors import ConfigError
from coffee_nb.pricing._tokens import count_prompt, count_tokens
from coffee_nb.sandbox._catalog import ENCODING, MODELS, SandboxModel
from coffee_nb.sandbox._faults import Fault, FaultBook
from coffee_nb.sandbox._replies import (
    BadRequestError,
    answer,
    error_body,
    fault_reply,
    model_of,
    reply_text,
    tool_call,
    validate,
)
from coffee_nb.sandbox._sse import STREAM_ONLY, stream_answer
from coffee_nb.sandbox._vision import Seen, check_images, describe, image_parts, image_prompt_tokens, look

__all__ = ["SandboxServer"]


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
        # part of starting up, not of the first request: loading the tokenizer (~0.4 s) would otherwise land
        # in the first call's latency and skew its model's p95
        count_tokens("warm up", ENCODING)
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
        await self._json(conn, writer, *error_body(status, message, type_="invalid_request_error"))
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
                    conn, writer, *error_body(405, f"Method {method} not allowed", type_="invalid_request_error")
                )
                return True
        except (ValueError, KeyError, TypeError) as exc:
            await self._json(conn, writer, *error_body(400, f"bad fault spec: {exc}", type_="invalid_request_error"))
            return True
        await self._json(conn, writer, 200, {"ok": True})
        return True

    # -- the API ---------------------------------------------------------------------------------------
    def _latency(self, model: SandboxModel, base_ms: float) -> float:
        if self.latency_scale <= 0 or base_ms <= 0:
            return 0.0
        with self._lock:
            rng = self._rngs.setdefault(model.name, random.Random(f"{self.seed}/{model.name}"))
            draw = rng.lognormvariate(math.log(base_ms), model.latency_sigma)
        return draw * self.latency_scale / 1000.0

    def _reply(self, model: SandboxModel, req: dict[str, Any], prompt: str, seen: Sequence[Seen] = ()) -> str:
        with self._lock:
            queue = self.replies.get(model.name)
            if queue:
                return queue.pop(0)
        text = reply_text(model, req["messages"], prompt)
        return f"{describe(seen)} {text}" if seen else text

    async def _refuse(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, model: str | None, exc: BadRequestError
    ) -> bool:
        """A 400 the real API would send (logged as the request's ``bad_request`` fault)."""
        self.log.append(
            {"t": time.monotonic(), "model": model, "fault": "bad_request", "stream": False, "prefill": False}
        )
        await self._json(
            conn, writer, *error_body(400, str(exc), type_="invalid_request_error", param=exc.param, code=exc.code)
        )
        return True

    async def _chat(self, conn: h11.Connection, writer: asyncio.StreamWriter, body: bytes) -> bool:
        try:
            req = validate(body)
        except BadRequestError as exc:
            return await self._refuse(conn, writer, model_of(body), exc)
        name = req["model"].removeprefix("sandbox/")
        model = MODELS.get(name)
        self.requests[name] += 1
        if model is None:
            await self._json(
                conn,
                writer,
                *error_body(
                    404,
                    f"The model `{req['model']}` does not exist or you do not have access to it.",
                    type_="invalid_request_error",
                    code="model_not_found",
                ),
            )
            return True
        messages = req["messages"]
        images = image_parts(messages)
        seen: list[Seen] = []
        if images:  # refused like any bad request: before faults are drawn, without latency
            try:
                check_images(model, images)
                # decoding a big image takes a while: off the loop, so other connections don't wait on it
                seen = await asyncio.to_thread(lambda: [look(p) for p in images])
            except BadRequestError as exc:
                return await self._refuse(conn, writer, name, exc)
        with self._lock:
            rng = self._rngs.setdefault(f"faults/{name}", random.Random(f"{self.seed}/faults/{name}"))
        fault = self.faults.draw(name, model.failure_rates, rng)
        stream = bool(req.get("stream"))
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
                    *error_body(
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

        # the text as coffee_nb counts it, plus each image by coffee_nb's image rule: its estimate stays exact
        prompt_tokens = count_prompt(messages, ENCODING) + image_prompt_tokens(model, images, seen)
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        if prompt_tokens + (max_tokens or 0) > model.context_window:
            await self._json(
                conn,
                writer,
                *error_body(
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

        def reply(model: SandboxModel, req: dict[str, Any], prompt: str) -> str:
            return self._reply(model, req, prompt, seen)

        text, tool, finish, usage = answer(
            model, req, prompt_tokens, max_tokens, reply=reply, tool=None if prefill else self._tool_call
        )
        with self._lock:
            self._counter += 1
            cid = f"chatcmpl-sandbox{self._counter:08d}"
        created = int(time.time())
        if stream:
            return await stream_answer(self, conn, writer, req, model, cid, created, text, tool, finish, usage, fault)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if tool:
            message["tool_calls"] = [tool]
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
        with self._lock:
            self._counter += 1
            number = self._counter
        return tool_call(req, f"call_sandbox{number:08d}")

    async def _fault(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, fault: Fault, model: SandboxModel
    ) -> bool:
        """Answer with ``fault`` instead of the model; False: the connection is gone."""
        kind = fault.kind
        canned = fault_reply(fault, model)
        if canned is not None:
            status, body, headers = canned
            await self._json(conn, writer, status, body, headers=headers)
        elif kind == "malformed":
            data = b'{"id": "chatcmpl-broken", "choices": [{"message": '
            headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
            await self._send(
                conn, writer, h11.Response(status_code=200, headers=headers), h11.Data(data=data), h11.EndOfMessage()
            )
        elif kind == "hang":
            await asyncio.sleep(60.0 if fault.seconds is None else fault.seconds)
            await self._json(conn, writer, *error_body(504, "The sandbox hung on purpose.", type_="server_error"))
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
