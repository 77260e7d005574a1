"""Fakes for your own tests: a scripted chat model, record capture, a clean global state. No network, no keys.

>>> from coffee_nb.testing import ScriptedChatModel, capture_records, http_error, isolated
>>> flaky = ScriptedChatModel(script=[http_error(429, retry_after=0.1), "hello"])
>>> with isolated():   # registered prices, providers, sinks, HTTP pool, session, sandbox: fresh inside
...     ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from coffee_nb._shared._config import isolated
from coffee_nb._shared._records import capture_records

__all__ = [
    "PhoenixServer",
    "ScriptedChatModel",
    "capture_records",
    "fill_disk",
    "http_error",
    "isolated",
    "phoenix_server",
    "read_only_dir",
    "redis_server",
    "sqlite_fault",
    "tiny_disk",
]


def http_error(
    status: int, message: str = "", *, retry_after: float | None = None, code: str | None = None
) -> Exception:
    """An ``openai`` SDK error for ``status``, as the real client would raise it (for scripts)."""
    import openai  # lazy: openai

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
def redis_server(*, timeout: float = 20.0, password: str | None = None) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port; yields its URL (without the ``password`` it
    requires, if given), stops it after.

    Raises FileNotFoundError when redis-server is not installed (``apt-get install redis-server``).
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *auth],
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PhoenixServer:
    """A running Arize Phoenix: where to send OTLP/HTTP traces, and its REST API to read them back."""

    url: str  # http://127.0.0.1:PORT (the web UI too)
    endpoint: str  # the OTLP/HTTP traces endpoint: {url}/v1/traces
    log: Path  # its stdout and stderr

    def spans(self, project: str = "default", *, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The spans Phoenix has stored in ``project`` (of one trace, a 32-hex-digit id, if given), oldest first,
        as its REST API returns them (``GET /v1/projects/{project}/spans``, every page); ``[]`` before the
        project's first span.

        Each is a dict: ``name``, ``context`` (``trace_id``, ``span_id``), ``parent_id``, ``span_kind``,
        ``status_code``, ``attributes`` (flat dotted keys, with the OpenInference ``llm.*`` keys Phoenix derives
        from ``gen_ai.*`` ones beside them), ``events``, ``start_time``, ``end_time``. Spans land in the project
        named by the ``openinference.project.name`` resource attribute, else in ``default``; the resource's other
        attributes (``service.name``) are not kept.
        """
        params: dict[str, str | int] = {"limit": 1000}
        if trace_id is not None:
            params["trace_id"] = trace_id
        out: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.url, timeout=10.0, trust_env=False) as client:
            while True:
                response = client.get(f"/v1/projects/{project}/spans", params=params)
                if response.status_code == 404:  # no span in that project yet
                    return []
                response.raise_for_status()
                body = response.json()
                out.extend(body["data"])
                if not body.get("next_cursor"):
                    break
                params["cursor"] = body["next_cursor"]
        out.reverse()  # Phoenix pages newest first
        return out

    def wait_for_spans(
        self, count: int, project: str = "default", *, trace_id: str | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """:meth:`spans` once at least ``count`` are stored (Phoenix inserts what it receives in batches, a
        fraction of a second later); ``TimeoutError`` naming what it has after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.spans(project, trace_id=trace_id)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                names = [span["name"] for span in found]
                raise TimeoutError(f"Phoenix holds {len(found)} span(s) {names} in {project!r}, not {count}")
            time.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def phoenix_server(*, timeout: float = 120.0, python: str | None = None) -> Iterator[PhoenixServer]:
    """A throwaway Arize Phoenix, a real OTLP trace receiver, in a process of its own on free 127.0.0.1 ports
    (HTTP and gRPC), its database in a temporary directory; yields a :class:`PhoenixServer` once it answers,
    stops its process group and deletes its data after.

    No network beyond 127.0.0.1: its telemetry pixels, external resources, agent assistant and MCP server are
    off, and no ``PHOENIX_*`` or ``OTEL_*`` variable of ours reaches it. ``python`` is the interpreter to run
    it with (one whose environment has ``arize-phoenix``; by default this one). Raises FileNotFoundError when
    arize-phoenix is not installed here, RuntimeError (with its log) when it does not start in ``timeout``
    seconds.
    """
    if python is None:
        try:
            version("arize-phoenix")
        except PackageNotFoundError:
            raise FileNotFoundError(
                "arize-phoenix is not installed: pip install 'arize-phoenix>=19.17,<19.18' (coffee_nb's dev extra)"
            ) from None
        python = sys.executable
    elif shutil.which(python) is None:
        raise FileNotFoundError(f"no Python at {python}")
    port, grpc_port = _free_port(), _free_port()
    base = Path(tempfile.mkdtemp(prefix="coffee_nb-phoenix-"))
    log = base / "phoenix.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(base / "data"),  # its SQLite database and files
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_ENABLE_MCP_SERVER="false",
    )
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "phoenix.server.main", "serve"],
            env=env,
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped whole
        )
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                try:
                    if client.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {timeout:g} s"
                    raise RuntimeError(f"Phoenix did not start ({why}); the end of its log:\n{_tail(log)}")
                time.sleep(0.1)
        yield PhoenixServer(url=url, endpoint=f"{url}/v1/traces", log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)


# -- storage faults, for real (no mocks of coffee_nb): read-only directories, full disks, SQLite refusing
def _mount(args: list[str], target: Path) -> None:
    exe = shutil.which("mount")
    if exe is None:
        raise OSError(f"can't mount a tmpfs on {target}: no mount command")
    done = subprocess.run([exe, *args, str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"can't mount a tmpfs on {target} (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextmanager
def read_only_dir(parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A directory no file can be created or changed in, even by root.

    Not root: a directory of mode 0o555. Root ignores modes, so there a read-only tmpfs is mounted on it
    (root with CAP_SYS_ADMIN, as in most containers and CI runners). ``OSError`` when neither works.
    Put files in it first with :func:`tiny_disk` and ``remount``, or test opening new files in it.
    """
    base = Path(tempfile.mkdtemp(dir=parent))
    target = base / "read-only"
    target.mkdir()
    mounted = False
    try:
        if os.geteuid() != 0:
            target.chmod(0o555)
        else:
            _mount(["-t", "tmpfs", "-o", "ro,size=64k", "coffee_nb_ro"], target)
            mounted = True
        yield target
    finally:
        if mounted:
            _umount(target)
        target.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def tiny_disk(size_kib: int = 256, parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A directory on its own tiny filesystem (a tmpfs of ``size_kib``), to fill up: see :func:`fill_disk`.
    Needs root with CAP_SYS_ADMIN; ``OSError`` otherwise (then use :func:`sqlite_fault`)."""
    base = Path(tempfile.mkdtemp(dir=parent))
    target = base / "disk"
    target.mkdir()
    mounted = False
    try:
        if os.geteuid() != 0:
            raise OSError("a tiny filesystem needs root (mount -t tmpfs)")
        _mount(["-t", "tmpfs", "-o", f"size={int(size_kib)}k", "coffee_nb_tiny"], target)
        mounted = True
        yield target
    finally:
        if mounted:
            _umount(target)
        shutil.rmtree(base, ignore_errors=True)


def fill_disk(directory: str | os.PathLike[str]) -> Path:
    """Fill the filesystem holding ``directory`` to the last byte; returns the filler (delete it to free)."""
    filler = Path(directory) / "coffee_nb-filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):  # big writes first, then down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@contextmanager
def sqlite_fault(store: Any, kind: str) -> Iterator[None]:
    """Make the SQLite connection of ``store`` (a SQLite ledger or a ResponseCache) fail like a real
    storage fault, inside the block: ``"read_only"`` (``PRAGMA query_only``: writes fail with SQLITE_READONLY,
    as in a read-only directory) or ``"full"`` (``PRAGMA max_page_count`` at its current size: any write
    needing a new page fails with SQLITE_FULL, as on a full disk). For where root makes chmod useless and
    no filesystem can be mounted."""
    db = store._db
    if kind == "read_only":
        db.execute("PRAGMA query_only=1")
        try:
            yield
        finally:
            db.execute("PRAGMA query_only=0")
    elif kind == "full":
        before = db.execute("PRAGMA max_page_count").fetchone()[0]
        db.execute("PRAGMA max_page_count=1")  # SQLite keeps it at the current size: no page can be added
        try:
            yield
        finally:
            db.execute(f"PRAGMA max_page_count={int(before)}")
    else:
        raise ValueError(f"kind must be 'read_only' or 'full', got {kind!r}")
