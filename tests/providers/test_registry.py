"""Providers are data; bad input says what to do: an unknown provider lists them all, a missing extra names
the pip line, a missing key or setting names the variables and is an error of that attempt (the chain falls
back past it), never of construction. Keys never show."""

from __future__ import annotations

import sys

import pytest

from coffee_nb import AutoPicker, ConfigError, ModelSpec, capture_records
from coffee_nb.invoke._models import PROVIDERS, Candidate, parse_spec

from . import shapes
from .conftest import KEYS, POLICY

ALL = (
    "openai",
    "anthropic",
    "ollama",
    "google",
    "azure",
    "bedrock",
    "mistral",
    "groq",
    "openrouter",
    "deepseek",
    "xai",
    "together",
    "fireworks",
    "openai-compatible",
    "sandbox",
)


def _fails_over(spec: str | ModelSpec) -> str:
    """Run ``spec`` with the sandbox behind it; the failed attempt's message."""
    llm = AutoPicker(spec, ["sandbox/fast"], policy=POLICY)  # construction needs no key, extra or setting
    with capture_records() as records:
        assert llm.invoke("Hi").content
    assert [r.model for r in records][-1] == "sandbox/fast"
    first = records[0]
    assert first.outcome == "error"
    return str(first.error_message)


def test_every_provider_is_registered_with_its_data():
    parse_spec("sandbox/fast")
    assert set(ALL) <= set(PROVIDERS)
    google = PROVIDERS["google"]
    assert google.key_vars == ("GOOGLE_API_KEY", "GEMINI_API_KEY") and google.extra == "google"
    assert google.errors and google.codes and google.params.max_tokens == "max_output_tokens"
    assert "AWS_SECRET_ACCESS_KEY" in PROVIDERS["bedrock"].secret_vars  # for redaction
    for name in ALL:
        assert PROVIDERS[name].secret_vars == tuple(dict.fromkeys(PROVIDERS[name].secret_vars))


def test_an_unknown_provider_lists_them_all():
    with pytest.raises(ConfigError) as raised:
        AutoPicker("gemini/gemini-2.5-flash")
    for name in ALL:
        assert f"'{name}/<model>'" in str(raised.value)
    with pytest.raises(ConfigError, match=r"Did you mean 'google/gemini-2\.5-flash'"):
        AutoPicker("gemini-2.5-flash")


@pytest.mark.parametrize(
    ("spec", "module", "extra"),
    [
        ("google/gemini-2.5-flash", "langchain_google_genai", "google"),
        ("bedrock/amazon.nova-lite-v1:0", "langchain_aws", "bedrock"),
        ("mistral/mistral-small-latest", "langchain_mistralai", "mistral"),
        ("groq/llama-3.3-70b-versatile", "langchain_groq", "groq"),
        ("anthropic/claude-3-5-haiku-latest", "langchain_anthropic", "anthropic"),
        ("ollama/llama3.2", "langchain_ollama", "ollama"),
    ],
)
def test_a_missing_extra_names_the_pip_line(monkeypatch, keys, spec, module, extra):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    line = f"pip install 'coffee_nb[{extra}]'"
    with pytest.raises(ImportError, match=line.replace("[", r"\[").replace("]", r"\]")):
        Candidate(spec, cooldown_after=1, cooldown=0).chat_model()
    assert line in _fails_over(spec)


def test_a_missing_key_names_the_variables_and_the_chain_falls_back(monkeypatch, keys):
    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert "GOOGLE_API_KEY or GEMINI_API_KEY" in _fails_over("google/gemini-2.5-flash")
    assert "MISTRAL_API_KEY" in _fails_over("mistral/mistral-small-latest")
    assert "OPENROUTER_API_KEY" in _fails_over("openrouter/openai/gpt-4o-mini")


def test_either_google_variable_will_do(monkeypatch, wire, keys):
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-only-key-0123456789")
    wire.script("generativelanguage.googleapis.com", shapes.google("ok", "gemini-2.5-flash"))
    assert AutoPicker("google/gemini-2.5-flash", policy=POLICY).invoke("Hi").content == shapes.TEXT
    assert wire.requests[-1].headers["x-goog-api-key"] == "gemini-only-key-0123456789"


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"),
        ("AZURE_OPENAI_ENDPOINT", "azure_endpoint"),
        ("OPENAI_API_VERSION", "api_version"),
    ],
)
def test_azure_names_what_it_misses(monkeypatch, keys, missing, named):
    monkeypatch.delenv(missing)
    message = _fails_over("azure/gpt-4o-mini")
    assert missing in message and named in message


def test_azure_settings_may_come_as_params(monkeypatch, wire, keys):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    wire.script("other.openai.azure.com", shapes.openai_ok("gpt-4o-mini"))
    spec = ModelSpec(
        model="azure/gpt-4o-mini",
        params={"azure_endpoint": "https://other.openai.azure.com", "api_key": "given-azure-key-0123456789"},
    )
    assert AutoPicker(spec, policy=POLICY).invoke("Hi").content == shapes.TEXT


def test_openai_compatible_needs_a_base_url(monkeypatch, wire, keys):
    monkeypatch.delenv("COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL")
    message = _fails_over("openai-compatible/qwen3")
    assert "COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL" in message and "base_url" in message
    wire.script("lmstudio.test", shapes.openai_ok("qwen3"))
    spec = ModelSpec(model="openai-compatible/qwen3", params={"base_url": "http://lmstudio.test:1234/v1"})
    assert AutoPicker(spec, policy=POLICY).invoke("Hi").content == shapes.TEXT
    assert "authorization" in wire.requests[-1].headers  # a placeholder key: the OpenAI client insists


def test_llm_models_lists_every_provider_and_never_a_key(monkeypatch, keys):
    from IPython.core.interactiveshell import InteractiveShell

    import coffee_nb

    monkeypatch.delenv("MISTRAL_API_KEY")
    monkeypatch.setitem(sys.modules, "langchain_groq", None)
    monkeypatch.setattr("importlib.util.find_spec", _hide("langchain_groq"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.reset()
    try:
        table = shell.run_line_magic("llm_models", "")
    finally:
        coffee_nb.reset()
    assert set(ALL) <= set(table["provider"])
    assert table.loc["google/gemini-2.5-flash", "key"] == "yes"
    assert table.loc["mistral/mistral-small-latest", "key"] == "no (set MISTRAL_API_KEY)"
    assert table.loc["groq/llama-3.3-70b-versatile", "extra"] == "pip install 'coffee_nb[groq]'"
    assert table.loc["google/gemini-2.5-flash", "extra"] == "installed"
    assert table.loc["bedrock/amazon.nova-lite-v1:0", "key"].startswith("yes (AWS_ACCESS_KEY_ID")
    assert table.loc["google/gemini-2.5-flash", "context_window"] == 1_048_576
    assert table.loc["google/gemini-2.5-flash", "input_per_1M"] > 0
    assert table.loc["openai-compatible/<model>", "price_source"] == "unpriced"
    text = table.to_string()
    for value in (*KEYS.values(), "aws-secret-test-0123456789"):
        if "KEY" in value.upper() or "secret" in value:
            assert value not in text


def _hide(name: str):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(module: str, *args, **kwargs):
        return None if module == name else real(module, *args, **kwargs)

    return find_spec


def test_user_instances_get_their_providers_error_slice_and_param_rules():
    """A chat model passed as an instance (not a spec) is classified by the same table and its call
    parameters follow its class's provider."""
    from langchain_google_genai import ChatGoogleGenerativeAI

    model = ChatGoogleGenerativeAI(model="gemini-2.5-flash", api_key="goog-instance-key-0123456789")
    cand = Candidate(model, cooldown_after=1, cooldown=0)
    assert cand.call_kwargs({"max_tokens": 9}) == {"max_output_tokens": 9}
    assert cand.provider == "google_genai"  # LangChain's name for it: priced all the same
    assert cand.facts.price is not None and cand.facts.price.source == "genai-prices"
