"""Prices and windows from genai-prices for every provider (Bedrock and Azure ids normalised); token
counts exact where an offline encoding is known, a labelled estimate otherwise."""

from __future__ import annotations

import pytest

from coffee_nb import ModelSpec
from coffee_nb.invoke._models import Candidate
from coffee_nb.pricing._pricing import model_info
from coffee_nb.pricing._tokens import encoding_for


@pytest.mark.parametrize(
    ("provider", "model", "as_"),
    [
        ("google", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),  # the API's own spelling
        ("azure", "gpt-4o-mini", "gpt-4o-mini"),
        ("azure", "gpt4o", "gpt-4o"),  # a deployment named without the dash
        ("azure", "gpt-35-turbo", "gpt-3.5-turbo"),
        ("bedrock", "amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
        ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        (
            "bedrock",
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0",
            "amazon.nova-lite-v1:0",
        ),
        ("bedrock", "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
        ("mistral", "mistral-small-latest", "mistral-small-latest"),
        ("groq", "llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("openrouter", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("deepseek", "deepseek-chat", "deepseek-chat"),
        ("xai", "grok-3-mini", "grok-3-mini"),
        ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("fireworks", "llama-v3p1-8b-instruct", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
    ],
)
def test_every_provider_is_priced_from_genai_prices(provider, model, as_):
    facts = model_info(provider, model)
    assert facts.price is not None and facts.price.source == "genai-prices", (provider, model)
    assert facts.price.input and facts.price.output
    canonical = model_info(provider, as_)
    assert facts.price == canonical.price and facts.context_window == canonical.context_window


def test_unknown_models_stay_unpriced():
    assert model_info("azure", "my-team-deployment").price is None  # a name that says nothing
    assert model_info("bedrock", "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123").price is None
    assert model_info("openai-compatible", "llama-3.1-8b").price is None  # your server: register_price it


def test_windows_come_along():
    assert model_info("google", "gemini-2.5-flash").context_window == 1_048_576
    assert model_info("bedrock", "amazon.nova-lite-v1:0").context_window == 300_000


def test_an_azure_deployment_is_priced_by_the_model_it_runs():
    cand = Candidate(ModelSpec(model="azure/prod-chat", params={"model": "gpt-4o-mini"}), cooldown_after=1, cooldown=0)
    assert cand.facts.price == model_info("azure", "gpt-4o-mini").price
    assert (cand.encoding, cand.exact_tokens) == ("o200k_base", True)
    assert Candidate("azure/prod-chat", cooldown_after=1, cooldown=0).facts.price is None


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("azure", "gpt-4o-mini", ("o200k_base", True)),
        ("azure", "gpt-35-turbo", ("cl100k_base", True)),
        ("openrouter", "openai/gpt-4o-mini", ("o200k_base", True)),  # OpenAI's model, served by another
        ("groq", "openai/gpt-oss-120b", ("o200k_base", True)),
        ("google", "gemini-2.5-flash", ("o200k_base", False)),  # no offline Gemini tokenizer: an estimate
        ("bedrock", "amazon.nova-lite-v1:0", ("o200k_base", False)),
        ("mistral", "mistral-small-latest", ("o200k_base", False)),
        ("openrouter", "anthropic/claude-3.5-sonnet", ("o200k_base", False)),
    ],
)
def test_token_counts_are_exact_only_where_an_encoding_is_known(provider, model, expected):
    assert encoding_for(provider, model) == expected
