"""Providers are data: a builder, an env-var list, prices and an encoding, registered through one hook."""

from __future__ import annotations

from decimal import Decimal

from coffee_nb import sandbox
from coffee_nb.invoke import _models
from coffee_nb.pricing import _tokens
from coffee_nb.pricing._pricing import model_info, price_for, register_price
from coffee_nb.testing import ScriptedChatModel


def test_the_sandbox_is_a_provider_like_any_other():
    _models.parse_spec("sandbox/fast")
    entry = _models.PROVIDERS["sandbox"]
    assert entry.env_var is None and entry.timeout_kwarg and entry.encoding == "o200k_base"
    assert entry.model_info("fast").price.source == "sandbox" and entry.model_info("nope") is None
    assert _tokens.encoding_for("sandbox", "fast") == ("o200k_base", True)


def test_a_provider_can_declare_prices_and_encoding():
    from coffee_nb.pricing._pricing import ModelFacts, Price

    facts = ModelFacts(Price(Decimal(1), Decimal(2), source="house"), 4096)
    _models.register_provider(
        "house",
        lambda m, k, s: ScriptedChatModel(),
        model_info=lambda m: facts if m == "a" else None,
        encoding="cl100k_base",
    )
    assert model_info("house", "a") == facts and model_info("house", "b").price is None
    assert _tokens.encoding_for("house", "a") == ("cl100k_base", True)
    register_price("house/a", input=5, output=5)  # a registration wins over the provider's own
    assert price_for("house", "a").source == "custom"


def test_build_openai_compatible_is_shared_by_openai_and_the_sandbox():
    from langchain_openai import ChatOpenAI

    settings = _models.BuildSettings(timeout=5, params={"temperature": 0.5}, loop=None)
    model = _models.build_openai_compatible("m", "k", settings, base_url="http://127.0.0.1:9/v1")
    assert isinstance(model, ChatOpenAI) and model.max_retries == 0 and model.temperature == 0.5
    assert str(model.openai_api_base) == "http://127.0.0.1:9/v1"
    built = sandbox.build_chat_model("fast", settings)
    assert built.openai_api_base == sandbox.server().url
    user = _models.BuildSettings(timeout=5, params={"base_url": "http://127.0.0.1:8/v1"}, loop=None)
    assert sandbox.build_chat_model("fast", user).openai_api_base == "http://127.0.0.1:8/v1"  # the user's wins
