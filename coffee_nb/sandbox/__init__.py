"""The offline sandbox provider: an OpenAI-compatible server on 127.0.0.1 with fault injection.

Use ``"sandbox/<name>"`` as a model spec; the first use starts one server per process (stopped at
exit) and the model is a real ``langchain_openai.ChatOpenAI`` talking HTTP to it. Or run it alone:
``python -m coffee_nb.sandbox --port 8765`` and point any OpenAI client at ``http://127.0.0.1:8765/v1``.

>>> from coffee_nb import sandbox
>>> sandbox.inject("sandbox/fast", ["429", "429"])       # the next two requests get rate-limited
>>> sandbox.inject("sandbox/fast", rates={"503": 0.2})    # then one in five is overloaded (seeded)
>>> sandbox.clear_faults()
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from coffee_nb.sandbox._catalog import MODELS, SandboxModel, add_model
from coffee_nb.sandbox._faults import FAULTS, Fault
from coffee_nb.sandbox._server import SandboxServer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb._models import BuildSettings

__all__ = [
    "FAULTS",
    "MODELS",
    "Fault",
    "SandboxModel",
    "SandboxServer",
    "add_model",
    "build_chat_model",
    "clear_faults",
    "faults",
    "inject",
    "script_replies",
    "server",
    "set_latency_scale",
    "stop",
]

_lock = threading.Lock()
_server: SandboxServer | None = None


def _env_latency_scale() -> float:
    """``COFFEE_NB_SANDBOX_LATENCY_SCALE`` slows (or, at 0, removes) simulated latency, e.g. for demos."""
    import os

    raw = os.environ.get("COFFEE_NB_SANDBOX_LATENCY_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if value >= 0 else 1.0


_latency_scale = _env_latency_scale()


def server() -> SandboxServer:
    """This process's sandbox server, started on first use."""
    global _server
    if _server is None:
        with _lock:
            if _server is None:
                _server = SandboxServer(latency_scale=_latency_scale).start()
                atexit.register(stop)
    return _server


def stop() -> None:
    """Stop this process's sandbox server (a later use starts a new one)."""
    global _server
    with _lock:
        srv, _server = _server, None
    if srv is not None:
        srv.stop()


def set_latency_scale(scale: float) -> None:
    """Multiply every simulated latency (0 turns latency off; tests use it)."""
    global _latency_scale
    from coffee_nb._validate import non_negative_number

    _latency_scale = float(non_negative_number("latency scale", scale))
    if _server is not None:
        _server.latency_scale = _latency_scale


def _name(model: str) -> str:
    from coffee_nb._errors import ConfigError

    name = model.removeprefix("sandbox/")
    if name not in MODELS:
        raise ConfigError(f"unknown sandbox model {model!r}: expected one of {sorted('sandbox/' + m for m in MODELS)}")
    return name


def inject(
    model: str,
    sequence: Iterable[str | Fault] | str | None = None,
    *,
    rates: Mapping[str, float] | None = None,
    seed: int = 0,
) -> None:
    """Inject faults for ``model``: a scripted ``sequence`` (consumed one per request, then normal),
    and/or ``rates`` (fault → probability for every later request, seeded).

    Faults: rate_limit (429, ``"rate_limit:0.5"`` sets Retry-After), server_error (500), overloaded (503),
    hang (``"hang:3"``), reset, malformed, stream_error, context_overflow, auth (401), content_filter, ok.
    """
    name = _name(model)
    srv = server()
    if isinstance(sequence, str):
        sequence = [sequence]
    if sequence is not None:
        srv.faults.script(name, sequence)
    if rates is not None:
        srv.faults.set_rates(name, rates, seed)


def clear_faults(model: str | None = None) -> None:
    """Remove injected faults (of one model, or all). Built-in failure rates (e.g. sandbox/flaky) stay."""
    if _server is not None:
        _server.faults.clear(None if model is None else _name(model))


@contextmanager
def faults(model: str, sequence: Iterable[str | Fault] | str | None = None, **kwargs: Any) -> Iterator[None]:
    """``with sandbox.faults("sandbox/fast", ["429"]): ...`` — injected inside, cleared after."""
    inject(model, sequence, **kwargs)
    try:
        yield
    finally:
        clear_faults(model)


def script_replies(model: str, replies: Iterable[str]) -> None:
    """The next answers of ``model``, in order (then back to its usual deterministic text)."""
    name = _name(model)
    srv = server()
    with srv._lock:
        srv.replies.setdefault(name, []).extend(str(r) for r in replies)


def build_chat_model(model: str, settings: BuildSettings) -> BaseChatModel:
    """A real ChatOpenAI pointed at this process's sandbox, on coffee_nb's pooled HTTP clients."""
    from dataclasses import replace

    from coffee_nb._models import _build_openai

    params = {"base_url": server().url, **settings.params}
    return _build_openai(model, "sandbox-no-key-needed", replace(settings, params=params))
