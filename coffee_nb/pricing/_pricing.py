"""Prices: genai-prices' bundled data (never its updater), resolved once per model; per-call cost is arithmetic.

A model with no known price is *unpriced*: ``price_for`` returns None and costs are None, never $0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from coffee_nb._shared import _config
from coffee_nb._shared._validate import optional_positive_int, price_rate, spec_name, usd

__all__ = [
    "PRICES",
    "ModelFacts",
    "Price",
    "from_pico",
    "generation",
    "model_info",
    "price_for",
    "prices_changed",
    "register_price",
    "reset_prices",
    "to_pico",
]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
_PICO = Decimal("1e12")


def to_pico(amount: Decimal) -> int:
    """USD → integer picodollars (1e-12 USD), rounding half to even: exact for every real price."""
    return int((amount * _PICO).to_integral_value(ROUND_HALF_EVEN))


def from_pico(value: int) -> Decimal:
    """Integer picodollars → USD, without trailing zeros (``Decimal('0.0000036')``, ``Decimal('10')``)."""
    if value % 1_000_000_000_000 == 0:  # whole dollars (or zero): plain integers, never '1E+1'
        return Decimal(value // 1_000_000_000_000)
    return Decimal(value).scaleb(-12).normalize()


def _pico_per_token(rate: Rate) -> int | None:
    """A flat USD-per-million rate as whole picodollars per token; None when tiered or finer than that."""
    if rate is None:
        return 0
    if not isinstance(rate, Decimal):
        return None
    scaled = rate * _MILLION
    return int(scaled) if scaled == scaled.to_integral_value() else None


# genai-prices provider ids for coffee_nb provider names (a provider not here is unpriced unless a price is
# registered; ``openai-compatible`` servers are yours to price).
_PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure",
    "google": "google",
    "bedrock": "aws",
    "mistral": "mistral",
    "groq": "groq",
    "openrouter": "openrouter",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "together": "together",
    "fireworks": "fireworks",
    # LangChain's provider names, which chat model instances report (``_get_ls_params``)
    "google_genai": "google",
    "amazon_bedrock": "aws",
}
_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile)/(.+)$")
_GPT_NO_DASH = re.compile(r"^gpt(\d)", re.IGNORECASE)


def _names(provider_id: str, model: str) -> list[str]:
    """The names to look ``model`` up by in genai-prices, best first: as given, then as genai-prices spells
    it. Bedrock: a model or inference-profile ARN → its id (genai-prices reads the ``us.``/``eu.``/
    ``global.`` prefixes itself); Azure: a deployment named ``gpt4o`` → ``gpt-4o`` (``gpt-35-turbo`` it
    knows); Gemini: ``models/gemini-2.5-flash`` → ``gemini-2.5-flash``; Fireworks: a bare name → its
    ``accounts/fireworks/models/`` path."""
    names = [model]
    if provider_id == "aws" and (arn := _ARN.match(model)):
        names.append(arn.group(1))
    elif provider_id == "azure" and _GPT_NO_DASH.match(model):
        names.append(_GPT_NO_DASH.sub(r"gpt-\1", model))
    elif provider_id == "google" and model.startswith("models/"):
        names.append(model.removeprefix("models/"))
    elif provider_id == "fireworks" and not model.startswith("accounts/"):
        names.append(f"accounts/fireworks/models/{model}")
    return names


@dataclass(frozen=True, slots=True)
class _Tiered:
    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (start, price), ascending

    def at(self, total_input: int) -> Decimal:
        for start, price in reversed(self.tiers):
            if total_input > start:  # genai-prices' "cliff" rule: the tier applies to all tokens
                return price
        return self.base


Rate = Decimal | _Tiered | None


def _rate(value: Rate, total_input: int) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    return value.at(total_input)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cached_input`` defaults to the input rate when a provider has no discount."""

    input: Rate
    output: Rate
    cached_input: Rate = None
    cache_write: Rate = None
    source: str = "custom"  # "genai-prices", "custom", "sandbox", "local"
    # (input, output, cached input, cache write) in whole picodollars per token, when the rates allow
    _pico: tuple[int, int, int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inp, out = _pico_per_token(self.input), _pico_per_token(self.output)
        cached = inp if self.cached_input is None else _pico_per_token(self.cached_input)
        write = inp if self.cache_write is None else _pico_per_token(self.cache_write)
        if None not in (inp, out, cached, write):
            object.__setattr__(self, "_pico", (inp, out, cached, write))

    def pico(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0) -> int:
        """Cost of one call in integer picodollars: integer arithmetic when the rates allow (nearly always)."""
        rates = self._pico
        if rates is None:
            return to_pico(self._decimal_cost(input_tokens, output_tokens, cached_tokens, cache_write_tokens))
        inp, out, cached, write = rates
        total = max(0, input_tokens - cached_tokens - cache_write_tokens) * inp + output_tokens * out
        if cached_tokens:
            total += cached_tokens * cached
        if cache_write_tokens:
            total += cache_write_tokens * write
        return total

    def cost(
        self, input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
    ) -> Decimal:
        """Cost of one call in USD. ``input_tokens`` includes cached and cache-write tokens (LangChain/OpenAI usage)."""
        if self._pico is not None:
            return from_pico(self.pico(input_tokens, output_tokens, cached_tokens, cache_write_tokens))
        return self._decimal_cost(input_tokens, output_tokens, cached_tokens, cache_write_tokens)

    def _decimal_cost(
        self, input_tokens: int, output_tokens: int, cached_tokens: int, cache_write_tokens: int
    ) -> Decimal:
        inp = _rate(self.input, input_tokens) or _ZERO
        out = _rate(self.output, input_tokens) or _ZERO
        total = max(0, input_tokens - cached_tokens - cache_write_tokens) * inp + output_tokens * out
        if cached_tokens:  # most calls have none: skip the Decimal work
            cached = _rate(self.cached_input, input_tokens)
            total += cached_tokens * (inp if cached is None else cached)
        if cache_write_tokens:
            write = _rate(self.cache_write, input_tokens)
            total += cache_write_tokens * (inp if write is None else write)
        return total / _MILLION

    def describe(self) -> str:
        def fmt(r: Rate) -> str:
            if r is None:
                return "-"
            return f"${r}" if isinstance(r, Decimal) else f"${r.base}+tiers"

        return f"{fmt(self.input)} in / {fmt(self.output)} out per 1M tokens ({self.source})"


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What maintained data says about a model."""

    price: Price | None
    context_window: int | None


_UNKNOWN = ModelFacts(None, None)


# registered prices, resolved facts and their generation live in _config: this is the same object, typed
PRICES: _config.PriceState[Price, ModelFacts] = _config.PRICES


def generation() -> int:
    """A number that changes whenever ``register_price`` / ``reset_prices`` may have changed a model's facts."""
    return PRICES.generation


def _rate_arg(name: str, value: Any) -> Decimal | None:
    return None if value is None else usd(f"price {name}", value, unit="USD per 1M tokens")


def register_price(
    model: str,
    *,
    input: float | Decimal | str,  # noqa: A002 - reads best at the call site
    output: float | Decimal | str,
    cached_input: float | Decimal | str | None = None,
    cache_write: float | Decimal | str | None = None,
    context_window: int | None = None,
    source: str = "custom",
) -> Price:
    """Declare a price (USD per 1M tokens) for a custom or self-hosted model, by spec (``"provider/model"``).

    >>> register_price("ollama/llama3.2", input=0, output=0, source="local")
    """
    spec_name("register_price model", model)  # "nospecslash" or "openai/x " would silently never match
    window = optional_positive_int("context_window", context_window)
    price = Price(
        input=price_rate("input", input),  # required: a missing price must read as unpriced, never as $0
        output=price_rate("output", output),
        cached_input=_rate_arg("cached_input", cached_input),
        cache_write=_rate_arg("cache_write", cache_write),
        source=source,
    )
    with PRICES.lock:
        PRICES.custom[model] = price
        if window is not None:
            PRICES.windows[model] = window
    PRICES.changed()
    return price


def reset_prices() -> None:
    """Forget every registered price and every resolved one (providers' own prices, e.g. the sandbox's, stay)."""
    PRICES.reset()


def prices_changed() -> None:
    """Tell coffee_nb a provider's own prices changed (e.g. a sandbox model was added): models re-resolve."""
    PRICES.changed()


def _convert(value: Any) -> Rate:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    tiers = getattr(value, "tiers", None)
    if tiers is not None:
        return _Tiered(Decimal(value.base), tuple((t.start, Decimal(t.price)) for t in tiers))
    return Decimal(str(value))


def _from_genai_prices(provider: str, model: str) -> ModelFacts:
    provider_id = _PROVIDER_IDS.get(provider)
    if provider_id is None:
        return ModelFacts(None, None)
    from genai_prices import data_snapshot  # lazy: genai_prices (bundled data; the updater is never started)

    snapshot = data_snapshot.get_snapshot()
    for name in _names(provider_id, model):
        try:
            _, info = snapshot.find_provider_model(name, None, provider_id, None)
            break
        except LookupError:
            continue
    else:
        return ModelFacts(None, None)
    mp = info.get_prices(datetime.now(UTC))
    price = Price(
        input=_convert(getattr(mp, "input_mtok", None)),
        output=_convert(getattr(mp, "output_mtok", None)),
        cached_input=_convert(getattr(mp, "cache_read_mtok", None)),
        cache_write=_convert(getattr(mp, "cache_write_mtok", None)),
        source="genai-prices",
    )
    if price.input is None and price.output is None:
        return ModelFacts(None, info.context_window)
    return ModelFacts(price, info.context_window)


def model_info(provider: str, model: str, *, name: str | None = None) -> ModelFacts:
    """Price and context window for ``provider/model``: registered as ``name`` or the spec first, then the
    provider's own resolver (``register_provider(..., model_info=...)``), then genai-prices. Cached until
    the next ``register_price``."""
    spec = f"{provider}/{model}"
    key = (name or spec, spec)
    facts = PRICES.resolved.get(key)
    if facts is not None:
        return facts
    # first: loading the registry's defaults (once) registers providers, which bumps the generation
    resolver = getattr(_config.PROVIDERS.ready().get(provider), "model_info", None)
    with PRICES.lock:
        gen = PRICES.generation
        custom = PRICES.custom.get(name) if name else None
        custom = custom or PRICES.custom.get(spec)
        window = PRICES.windows.get(name) if name else None
        window = window or PRICES.windows.get(spec)
    if custom is not None:
        facts = ModelFacts(custom, window)
    elif resolver is not None:  # the provider knows its own models (the sandbox's catalog, ollama's $0)
        own = resolver(model) or _UNKNOWN
        facts = ModelFacts(own.price, window or own.context_window)
    else:
        found = _from_genai_prices(provider, model)
        facts = ModelFacts(found.price, window or found.context_window)
    with PRICES.lock:
        if PRICES.generation == gen:  # not stale: a registration meanwhile would have dropped this
            PRICES.resolved[key] = facts
    return facts


def price_for(provider: str, model: str) -> Price | None:
    """The price of ``provider/model``, or None when it is unpriced."""
    return model_info(provider, model).price
