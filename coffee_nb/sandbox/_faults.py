"""Fault injection for the sandbox: scripted sequences and seeded probabilities, per model."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coffee_nb.errors._errors import ConfigError

__all__ = ["FAULTS", "Fault", "FaultBook", "check_fault_name", "parse_fault"]

FAULTS: dict[str, str] = {
    "rate_limit": "429 with Retry-After (rate_limit:SECONDS sets it; default 1)",
    "server_error": "500 internal server error",
    "overloaded": "503 overloaded",
    "hang": "no answer until the client gives up (hang:SECONDS; default 60)",
    "reset": "connection reset mid-response",
    "malformed": "200 with a body that is not JSON",
    "stream_error": "an error event after a few streamed chunks (plain requests: 500)",
    "context_overflow": "400 context_length_exceeded",
    "auth": "401 invalid API key",
    "content_filter": "400 content_filter",
    "cut": "stream cut after N tokens, no finish reason and no [DONE] (cut:N; default 3; plain requests: reset)",
    "stall": "stream stalls after N tokens for S seconds, connection open (stall:N:S; default 3:30)",
    "bad_sse": "a malformed SSE event at token N (bad_sse:N; default 3; plain requests: malformed)",
    "no_done": "a complete stream without [DONE], connection held open S seconds (no_done:S; default 30)",
    "slow_first": "the first token (plain: the answer) after S seconds (slow_first:S; default 20)",
    "silent": "accept the request and never answer (silent:S holds it S seconds; default 300)",
    "reset_early": "connection reset before any byte of the response",
    "no_prefill": "400 when the last message is an assistant prefill (an OpenAI-style server)",
    "down": "every request for the next S seconds gets 503 (down:S; the window starts when injected)",
    "ok": "no fault: answer normally (useful inside scripted sequences)",
}
_ALIASES = {"429": "rate_limit", "500": "server_error", "503": "overloaded", "401": "auth", "400": "context_overflow"}


def _accepted() -> str:
    return ", ".join(FAULTS) + " (or 429, 500, 503, 401)"


def check_fault_name(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in FAULTS:
        raise ConfigError(f"unknown sandbox fault {name!r}: expected one of {_accepted()}")
    return name


# faults whose first argument is a token count (stall takes seconds as its second)
_TOKEN_FIRST = frozenset({"cut", "stall", "bad_sse"})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    seconds: float | None = None  # Retry-After for rate_limit, duration for hang/stall/silent/down/...
    tokens: int | None = None  # where a stream fault strikes: after this many tokens

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", check_fault_name(self.kind))
        if self.seconds is not None and (not isinstance(self.seconds, (int, float)) or self.seconds < 0):
            raise ConfigError(f"fault seconds must be a number >= 0, got {self.seconds!r}")
        if self.tokens is not None and (not isinstance(self.tokens, int) or self.tokens < 0):
            raise ConfigError(f"fault tokens must be a whole number >= 0, got {self.tokens!r}")


def parse_fault(spec: str | Fault) -> Fault:
    """``"rate_limit"``, ``"429"``, ``"rate_limit:0.5"``, ``"hang:3"``, ``"cut:40"``, ``"stall:5:30"`` or a Fault."""
    if isinstance(spec, Fault):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"a sandbox fault is a name like 'rate_limit' or '429', got {spec!r}; one of {_accepted()}")
    name, *args = spec.strip().split(":")
    kind = check_fault_name(name)
    try:
        if kind in _TOKEN_FIRST:
            tokens = int(args[0]) if args else None
            seconds = float(args[1]) if len(args) > 1 else None
        else:
            tokens, seconds = None, (float(args[0]) if args else None)
    except ValueError:
        raise ConfigError(
            f"bad argument in sandbox fault {spec!r}: expected e.g. 'rate_limit:0.5', 'cut:40' or 'stall:5:30'; "
            f"faults: {_accepted()}"
        ) from None
    return Fault(kind, seconds, tokens)


class FaultBook:
    """Per-model scripted fault sequences and probabilities. Thread-safe; seeded for repeatable runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Fault]] = {}
        self._rates: dict[str, tuple[dict[str, float], random.Random]] = {}
        self._down: dict[str, float] = {}  # model -> monotonic time it comes back

    def script(self, model: str, sequence: Iterable[str | Fault]) -> None:
        """Queue faults for the next requests; ``down:S`` instead starts an outage window now."""
        faults = [parse_fault(f) for f in sequence]
        with self._lock:
            for fault in faults:
                if fault.kind == "down":
                    self._down[model] = time.monotonic() + (30.0 if fault.seconds is None else fault.seconds)
                else:
                    self._scripts.setdefault(model, deque()).append(fault)

    def down(self, model: str) -> float:
        """Seconds ``model`` stays down (0: it is up)."""
        with self._lock:
            until = self._down.get(model, 0.0)
        return max(0.0, until - time.monotonic())

    def set_rates(self, model: str, rates: Mapping[str, float], seed: int = 0) -> None:
        checked: dict[str, float] = {}
        for name, p in rates.items():
            kind = check_fault_name(name)
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ConfigError(f"probability for fault {name!r} must be within [0, 1], got {p!r}")
            checked[kind] = float(p)
        if sum(checked.values()) > 1 + 1e-9:
            raise ConfigError(f"fault probabilities for {model} add up to more than 1: {checked}")
        with self._lock:
            self._rates[model] = (checked, random.Random(seed))

    def clear(self, model: str | None = None) -> None:
        with self._lock:
            if model is None:
                self._scripts.clear()
                self._rates.clear()
                self._down.clear()
            else:
                self._scripts.pop(model, None)
                self._rates.pop(model, None)
                self._down.pop(model, None)

    def pending(self, model: str) -> int:
        with self._lock:
            return len(self._scripts.get(model, ()))

    def draw(self, model: str, default_rates: Mapping[str, float], default_rng: random.Random) -> Fault | None:
        """The fault for the next request to ``model``: scripted first, then by probability."""
        with self._lock:
            script = self._scripts.get(model)
            if script:
                fault = script.popleft()
                return None if fault.kind == "ok" else fault
            rates, rng = self._rates.get(model, (default_rates, default_rng))
            if not rates:
                return None
            x = rng.random()
            for kind, p in rates.items():
                if x < p:
                    return Fault(kind)
                x -= p
            return None
