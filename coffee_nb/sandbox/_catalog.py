"""The sandbox's ready-made models: pure data (prices, windows, latency, behaviour), no server.

Built in: ``fast`` (cheap, 16k window), ``smart`` (slow, expensive, 200k window), ``flaky`` (fails one
request in three), ``limited`` (always 429), ``echo`` (repeats the prompt) and ``vision``, the one that
takes images (each one's size and dominant colour, then the usual text answer; see ``_vision``). The
others are text-only: an image gets them OpenAI's 400, so routing around a text-only model can be shown.

The served models live in ``coffee_nb._shared._config`` (``MODELS`` here is that dict); the built-in ones are
registered there when this module is imported, and ``reset_defaults()`` brings them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from coffee_nb._shared import _config
from coffee_nb.errors._errors import ConfigError
from coffee_nb.pricing._pricing import prices_changed
from coffee_nb.sandbox._faults import check_fault_name

if TYPE_CHECKING:
    from coffee_nb.sandbox._server import SandboxServer

__all__ = ["ENCODING", "MODELS", "SandboxModel", "add_model", "get_model"]

ENCODING = "o200k_base"  # what the sandbox counts tokens with (so coffee_nb's counts of it are exact)


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxModel:
    """A model the sandbox serves. Prices are *sandbox prices* (USD per 1M tokens), labelled as such."""

    name: str  # served as "<name>", used as "sandbox/<name>"
    description: str
    input_price: Decimal = Decimal("0.10")
    output_price: Decimal = Decimal("0.40")
    cached_input_price: Decimal | None = None
    context_window: int = 16_000
    reply_tokens: int = 40  # length of a default answer
    latency_ms: float = 20.0  # median time to first byte
    latency_sigma: float = 0.3  # lognormal spread
    token_ms: float = 1.0  # time per streamed token
    echo: bool = False  # answer with the last user message
    vision: bool = False  # takes image content parts (text-only models answer them with a 400)
    failure_rates: dict[str, float] = field(default_factory=dict)  # fault name -> probability


_SANDBOX: _config.SandboxState[SandboxServer, SandboxModel] = _config.SANDBOX
MODELS: dict[str, SandboxModel] = _SANDBOX.models


def add_model(model: SandboxModel) -> SandboxModel:
    """Serve another sandbox model (replaces one of the same name)."""
    if not model.name or "/" in model.name or any(c.isspace() for c in model.name):
        raise ConfigError(f"sandbox model names are single words like 'fast', got {model.name!r}")
    for fault, p in model.failure_rates.items():
        check_fault_name(fault)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"failure rate for {fault!r} must be within [0, 1], got {p!r}")
    with _SANDBOX.lock:
        MODELS[model.name] = model
    prices_changed()  # a replaced model may have new prices: resolved ones are dropped
    return model


def get_model(name: str) -> SandboxModel | None:
    """The served model called ``name`` (``"fast"`` or ``"sandbox/fast"``), or None."""
    return MODELS.get(name.removeprefix("sandbox/"))


_BUILTIN = (
    SandboxModel(
        name="fast",
        description="fast and cheap, small context window",
        input_price=Decimal("0.10"),
        output_price=Decimal("0.40"),
        cached_input_price=Decimal("0.05"),
        context_window=16_000,
        latency_ms=20,
    ),
    SandboxModel(
        name="smart",
        description="slow and expensive, big context window",
        input_price=Decimal("5.00"),
        output_price=Decimal("15.00"),
        context_window=200_000,
        reply_tokens=80,
        latency_ms=300,
        token_ms=4,
    ),
    SandboxModel(
        name="flaky",
        description="cheap, fails one request in three (500 or 503), seeded",
        input_price=Decimal("0.10"),
        output_price=Decimal("0.40"),
        latency_ms=30,
        failure_rates={"server_error": 0.15, "overloaded": 0.18},
    ),
    SandboxModel(
        name="limited",
        description="always rate-limited (429 with Retry-After)",
        input_price=Decimal("0.10"),
        output_price=Decimal("0.40"),
        latency_ms=5,
        failure_rates={"rate_limit": 1.0},
    ),
    SandboxModel(
        name="echo",
        description="repeats the last user message; tiny price",
        input_price=Decimal("0.01"),
        output_price=Decimal("0.01"),
        latency_ms=5,
        echo=True,
    ),
    SandboxModel(
        name="vision",
        description="takes images: says each one's size and dominant colour, then answers the text",
        input_price=Decimal("0.50"),
        output_price=Decimal("2.00"),
        cached_input_price=Decimal("0.25"),
        context_window=128_000,
        latency_ms=60,
        token_ms=2,
        vision=True,
    ),
)
with _SANDBOX.lock:
    _SANDBOX.builtin_models.update({m.name: m for m in _BUILTIN})
    for _m in _BUILTIN:
        MODELS.setdefault(_m.name, _m)
