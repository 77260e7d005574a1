"""The offline sandbox provider: an OpenAI-compatible server on 127.0.0.1 with fault injection.

Use ``"sandbox/<name>"`` as a model spec; the first use starts one server per process (stopped at
exit) and the model is a real ``langchain_openai.ChatOpenAI`` talking HTTP to it. Or run it alone:
``python -m coffee_nb.sandbox --port 8765`` and point any OpenAI client at ``http://127.0.0.1:8765/v1``.

>>> from coffee_nb import sandbox
>>> sandbox.inject("sandbox/fast", ["429", "429"])       # the next two requests get rate-limited
>>> sandbox.inject("sandbox/fast", rates={"503": 0.2})    # then one in five is overloaded (seeded)
>>> sandbox.clear_faults()

Answers are deterministic text (``sandbox/echo`` repeats the prompt; ``sandbox/vision`` takes images and
says each one's size and dominant colour first, see ``coffee_nb.sandbox._vision``; the other models are
text-only and answer an image with OpenAI's 400). A judge's request, as
``coffee_nb.compare(..., judge="sandbox/smart")`` sends it, gets a well-formed verdict by a fixed rule with
a position bias built in, so judging can be shown offline: each answer rates 0-99 from a hash of its text,
the answer shown first gets 25 points more, the higher total wins. Two answers rated more than 25 apart get
the same verdict in both orders; closer ones get "the first one" both ways round, so the orders disagree
(the details, and the score mode: ``coffee_nb.sandbox._judge``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _config
from coffee_nb._shared._validate import non_negative_number
from coffee_nb.errors._errors import ConfigError
from coffee_nb.sandbox._catalog import MODELS, SandboxModel, add_model
from coffee_nb.sandbox._provider import build_chat_model
from coffee_nb.sandbox._running import server, stop

if TYPE_CHECKING:
    from coffee_nb.sandbox._faults import FAULTS, Fault
    from coffee_nb.sandbox._server import SandboxServer

__all__ = [
    "FAULTS",
    "MODELS",
    "Fault",
    "SandboxModel",
    "SandboxServer",
    "add_model",
    "attempts",
    "build_chat_model",
    "clear_faults",
    "clear_log",
    "faults",
    "inject",
    "script_replies",
    "server",
    "set_latency_scale",
    "stop",
]

# The server handle, latency scale and served models live in _config: reset_defaults() stops the server.
_SANDBOX: _config.SandboxState[SandboxServer, SandboxModel] = _config.SANDBOX
# the server, its faults and the asyncio machinery load with the first server, not with this package
_LAZY = {
    "FAULTS": "coffee_nb.sandbox._faults",
    "Fault": "coffee_nb.sandbox._faults",
    "SandboxServer": "coffee_nb.sandbox._server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def set_latency_scale(scale: float) -> None:
    """Multiply every simulated latency (0 turns latency off; tests use it)."""
    value = float(non_negative_number("latency scale", scale))
    with _SANDBOX.lock:
        _SANDBOX.latency_scale = value
        srv = _SANDBOX.server
    if srv is not None:
        srv.latency_scale = value


def _name(model: str) -> str:
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
    hang (``"hang:3"``), reset, malformed, stream_error, context_overflow, auth (401), content_filter, ok;
    mid-stream ``cut:N``, ``stall:N:S``, ``bad_sse:N``, ``no_done``; ``slow_first:S``, ``silent``,
    ``reset_early``, ``no_prefill``, and ``down:S`` (every request for S seconds from now gets 503).
    ``sandbox.FAULTS`` describes each.
    """
    name = _name(model)
    srv = server()
    if isinstance(sequence, str):
        sequence = [sequence]
    if sequence is not None:
        srv.faults.script(name, sequence)
    if rates is not None:
        srv.faults.set_rates(name, rates, seed)


def attempts(model: str | None = None) -> list[dict[str, Any]]:
    """Every chat request the server saw (oldest first): ``t`` (monotonic seconds, this process's clock),
    ``model``, ``fault`` (the one it got, or None), ``stream`` and ``prefill``. Tests read conduct here."""
    srv = _SANDBOX.server
    if srv is None:
        return []
    name = None if model is None else _name(model)
    return [dict(a) for a in list(srv.log) if name is None or a["model"] == name]


def clear_log() -> None:
    """Forget the requests seen so far (see :func:`attempts`)."""
    srv = _SANDBOX.server
    if srv is not None:
        srv.log.clear()


def clear_faults(model: str | None = None) -> None:
    """Remove injected faults (of one model, or all). Built-in failure rates (e.g. sandbox/flaky) stay."""
    srv = _SANDBOX.server
    if srv is not None:
        srv.faults.clear(None if model is None else _name(model))


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
