"""The same scenarios against real providers, when their keys are set (marker ``real_api``).

Each provider runs when its variables are set and is skipped otherwise, the skip naming what is missing.
``openai-compatible`` runs against your own server: COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL, and the model it
serves in COFFEE_NB_OPENAI_COMPATIBLE_MODEL.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from coffee_nb import AutoPicker, capture_records

pytestmark = [pytest.mark.real_api, pytest.mark.enable_socket]  # real providers: the one place with outside network

_COMPATIBLE_MODEL = os.environ.get("COFFEE_NB_OPENAI_COMPATIBLE_MODEL", "")

# spec -> the variables it needs: each entry one variable, or alternatives joined by "|"
PROVIDERS: dict[str, tuple[str, ...]] = {
    "openai/gpt-4o-mini": ("OPENAI_API_KEY",),
    "anthropic/claude-3-5-haiku-latest": ("ANTHROPIC_API_KEY",),
    "google/gemini-2.5-flash-lite": ("GOOGLE_API_KEY|GEMINI_API_KEY",),
    # the deployment to use, named after its model (or set AZURE_OPENAI_DEPLOYMENT)
    f"azure/{os.environ.get('AZURE_OPENAI_DEPLOYMENT', 'gpt-4o-mini')}": (
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "OPENAI_API_VERSION",
    ),
    "bedrock/amazon.nova-lite-v1:0": (
        "AWS_ACCESS_KEY_ID|AWS_PROFILE|AWS_BEARER_TOKEN_BEDROCK",
        "AWS_REGION|AWS_DEFAULT_REGION",
    ),
    "mistral/mistral-small-latest": ("MISTRAL_API_KEY",),
    "groq/llama-3.1-8b-instant": ("GROQ_API_KEY",),
    "openrouter/openai/gpt-4o-mini": ("OPENROUTER_API_KEY",),
    "deepseek/deepseek-chat": ("DEEPSEEK_API_KEY",),
    "xai/grok-3-mini": ("XAI_API_KEY",),
    "together/meta-llama/Llama-3.3-70B-Instruct-Turbo": ("TOGETHER_API_KEY",),
    "fireworks/accounts/fireworks/models/llama-v3p1-8b-instruct": ("FIREWORKS_API_KEY",),
    f"openai-compatible/{_COMPATIBLE_MODEL or 'model'}": (
        "COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL",
        "COFFEE_NB_OPENAI_COMPATIBLE_MODEL",
    ),
}


def _needs(spec: str) -> None:
    missing = [need for need in PROVIDERS[spec] if not any(os.environ.get(v) for v in need.split("|"))]
    if missing:
        names = ", ".join(m.replace("|", " or ") for m in missing)
        pytest.skip(f"{names} not set: real-provider test for {spec} skipped (no network calls without a key)")


@pytest.fixture(params=list(PROVIDERS))
def spec(request):
    _needs(request.param)
    return request.param


def test_invoke_cost_and_usage(spec):
    with capture_records() as records:
        msg = AutoPicker(spec, max_tokens=20).invoke("Say 'ok'.")
    assert msg.content
    record = records[-1]
    assert record.outcome == "ok" and not record.tokens_estimated
    if spec.startswith("openai-compatible/"):
        assert record.cost is None and record.price_source == "unpriced"  # your server: yours to price
    else:
        assert record.cost is not None and record.cost > 0 and record.price_source == "genai-prices"


def test_stream_and_async(spec):
    llm = AutoPicker(spec, max_tokens=20)
    with capture_records() as records:
        assert "".join(c.text for c in llm.stream("Count to three."))
    assert records[-1].output_tokens > 0
    assert asyncio.run(llm.ainvoke("Say 'ok'.")).content


def test_invalid_model_falls_back_to_real(spec):
    provider = spec.split("/")[0]
    if provider == "openai-compatible":
        pytest.skip("a local server may serve whatever model name it is asked for")
    with capture_records() as records:
        msg = AutoPicker(f"{provider}/no-such-model-xyz", [spec], max_tokens=20).invoke("Say 'ok'.")
    assert msg.response_metadata["coffee_nb"]["model"] == spec
    assert records[0].error_class == "not_found"
