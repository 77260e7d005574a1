"""Prices: resolved once from genai-prices' bundled data, then arithmetic that matches genai-prices exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_nb import ConfigError, price_for, register_price
from coffee_nb.pricing._pricing import Price, model_info, to_pico

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-5"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
]


@pytest.mark.parametrize(("provider", "model"), MODELS)
@settings(max_examples=40, deadline=None)
@given(
    inp=st.integers(0, 400_000),
    out=st.integers(0, 50_000),
    cached_share=st.floats(0, 1),
)
def test_cost_matches_genai_prices(provider, model, inp, out, cached_share):
    cached = int(inp * cached_share)
    price = price_for(provider, model)
    assert price is not None and price.source == "genai-prices"
    ours = price.cost(inp, out, cached)
    theirs = calc_price(
        Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached), model, provider_id=provider
    ).total_price
    assert ours == theirs
    assert price.pico(inp, out, cached) == to_pico(theirs)  # the integer picodollars budgets count in


@settings(max_examples=60, deadline=None)
@given(
    rates=st.tuples(*[st.decimals(min_value=0, max_value=100, places=p) for p in (2, 6, 9, 3)]),
    tokens=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_picodollars_agree_with_decimal_arithmetic_for_any_rates(rates, tokens):
    """Whole-picodollar rates go through integer arithmetic, finer ones through Decimals; both agree."""
    inp, out, cached = tokens[0] + tokens[2], tokens[1], tokens[2]
    price = Price(input=rates[0], output=rates[1], cached_input=rates[2], cache_write=rates[3])
    exact = ((inp - cached) * rates[0] + out * rates[1] + cached * rates[2]) / Decimal(1_000_000)
    assert price.cost(inp, out, cached) == exact
    assert price.pico(inp, out, cached) == to_pico(exact)
    whole = all(r * 10**6 == (r * 10**6).to_integral_value() for r in rates)
    assert (price._pico is not None) == whole  # integer arithmetic exactly when the rates allow it


def test_cached_input_is_cheaper_and_reasoning_is_output():
    price = price_for("openai", "gpt-4o-mini")
    full = price.cost(1_000_000, 0)
    half_cached = price.cost(1_000_000, 0, cached_tokens=500_000)
    assert full == Decimal("0.15")
    assert half_cached == Decimal("0.15") / 2 + Decimal("0.075") / 2
    # reasoning tokens are part of output_tokens (LangChain/OpenAI convention): priced once, as output
    assert price.cost(0, 1_000_000) == Decimal("0.6")


def test_tiers_apply_to_all_tokens_past_the_threshold():
    price = price_for("anthropic", "claude-sonnet-4-5")
    assert price.cost(200_000, 0) == Decimal(3) * Decimal("0.2")
    assert price.cost(200_001, 0) == Decimal(6) * Decimal(200001) / Decimal(1_000_000)


def test_unknown_models_are_unpriced_not_free():
    assert price_for("openai", "definitely-not-a-model-xyz") is None
    assert price_for("fake", "whatever") is None
    assert price_for("ollama", "llama3.2").cost(1000, 1000) == 0
    assert price_for("ollama", "llama3.2").source == "local"


def test_register_price_overrides_and_is_used():
    register_price("openai/my-finetune", input="3", output=12, cached_input=1.5, context_window=16_000)
    facts = model_info("openai", "my-finetune")
    assert facts.context_window == 16_000
    assert facts.price.cost(1_000_000, 1_000_000, 1_000_000) == Decimal("13.5")
    register_price("openai/gpt-4o-mini", input=100, output=100)
    assert price_for("openai", "gpt-4o-mini").source == "custom"


def test_resolution_is_cached():
    a = model_info("openai", "gpt-4o-mini")
    assert model_info("openai", "gpt-4o-mini") is a


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "abc"])
def test_bad_prices(bad):
    with pytest.raises(ConfigError, match="price input"):
        register_price("openai/x", input=bad, output=1)


def test_bad_price_model():
    with pytest.raises(ConfigError, match="model spec"):
        register_price("", input=1, output=1)
