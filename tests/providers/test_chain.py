"""A chain across providers: google → azure → bedrock → openai-compatible (the sandbox as a vLLM-like
server). Scripted failures on the first three; the last answers. In invoke, ainvoke and stream."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coffee_nb import AutoPicker, ModelSpec, capture_records, sandbox

from . import shapes
from .conftest import POLICY

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

GOOGLE_HOST = "generativelanguage.googleapis.com"
AZURE_HOST = "unit-test.openai.azure.com"
EXPECTED = [
    ("google/gemini-2.5-flash", "server"),
    ("azure/gpt-4o-mini", "rate_limit"),
    ("bedrock/amazon.nova-lite-v1:0", "auth"),
    ("openai-compatible/fast", None),
]


@pytest.fixture
def chain(wire, keys, monkeypatch):
    """The chain, each provider scripted to fail once (retries off: every failure moves on)."""
    monkeypatch.setenv("COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL", sandbox.server().url)
    wire.script(GOOGLE_HOST, shapes.google("server", "gemini-2.5-flash"))
    wire.script(AZURE_HOST, shapes.azure("rate_limit", "gpt-4o-mini"))
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        llm = AutoPicker(
            "google/gemini-2.5-flash",
            [
                "azure/gpt-4o-mini",
                ModelSpec(model="bedrock/amazon.nova-lite-v1:0", params={"client": client}),
                "openai-compatible/fast",
            ],
            policy=replace(POLICY, max_retries=0),
        )
        yield llm, stubber, wire
        stubber.assert_no_pending_responses()


def _check(records, answer: str) -> None:
    assert [(r.model, r.error_class) for r in records] == EXPECTED
    assert answer.startswith("[sandbox/fast]")  # the sandbox's own reply
    assert all(not r.cost for r in records[:3])  # failed attempts: never charged
    last = records[-1]
    assert last.provider == "openai-compatible" and last.price_source == "unpriced"  # yours to price
    assert last.input_tokens > 0 and not last.tokens_estimated  # usage read from the server


def test_invoke(chain):
    llm, stubber, _ = chain
    shapes.stub_bedrock(stubber, "auth")
    with capture_records() as records:
        answer = llm.invoke("Which model answers?")
    _check(records, str(answer.content))
    assert answer.response_metadata["coffee_nb"]["model"] == "openai-compatible/fast"


async def test_ainvoke(chain):
    llm, stubber, wire = chain
    wire.install_loop()
    shapes.stub_bedrock(stubber, "auth")
    with capture_records() as records:
        answer = await llm.ainvoke("Which model answers?")
    _check(records, str(answer.content))


def test_stream(chain):
    llm, stubber, _ = chain
    shapes.stub_bedrock(stubber, "auth", operation="converse_stream")
    with capture_records() as records:
        text = "".join(c.text for c in llm.stream("Which model answers?"))
    _check(records, text)
    assert records[-1].streamed
