"""The same scenarios against real providers, when their keys are set (marker ``real_api``)."""

from __future__ import annotations

import asyncio
import os

import pytest

from coffee_nb import AutoPicker, capture_records

pytestmark = [pytest.mark.real_api, pytest.mark.enable_socket]  # real providers: the one place with outside network

PROVIDERS = {
    "openai/gpt-4o-mini": "OPENAI_API_KEY",
    "anthropic/claude-3-5-haiku-latest": "ANTHROPIC_API_KEY",
}


def _needs(spec: str) -> None:
    var = PROVIDERS[spec]
    if not os.environ.get(var):
        pytest.skip(f"{var} is not set: real-provider test for {spec} skipped (no network calls without a key)")


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
    assert record.cost is not None and record.cost > 0 and record.price_source == "genai-prices"


def test_stream_and_async(spec):
    llm = AutoPicker(spec, max_tokens=20)
    assert "".join(c.content if isinstance(c.content, str) else "" for c in llm.stream("Count to three."))
    assert asyncio.run(llm.ainvoke("Say 'ok'.")).content


def test_invalid_model_falls_back_to_real(spec):
    provider = spec.split("/")[0]
    with capture_records() as records:
        msg = AutoPicker(f"{provider}/no-such-model-xyz", [spec], max_tokens=20).invoke("Say 'ok'.")
    assert msg.response_metadata["coffee_nb"]["model"] == spec
    assert records[0].error_class == "not_found"
