"""The sandbox as a standalone OpenAI-compatible server: the official SDK, raw HTTP, bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from coffee_nb import ConfigError, sandbox
from coffee_nb.sandbox import SandboxModel, add_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def standalone():
    """``python -m coffee_nb.sandbox --port P`` in its own process."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffee_nb.sandbox", "--port", str(port), "--latency-scale", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/v1/models", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox exited: {proc.stdout.read()}") from None
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("standalone sandbox did not come up")
    yield base
    proc.terminate()
    proc.wait(10)


def test_official_openai_client(standalone):
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    resp = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi there"}])
    assert "hi there" in resp.choices[0].message.content
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    models = {m.id for m in client.models.list()}
    assert {"fast", "smart", "flaky", "limited", "echo"} <= models


def test_official_client_streaming_with_usage_chunk(standalone):
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    stream = client.chat.completions.create(
        model="sandbox/echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_official_client_sees_injected_faults_over_http(standalone):
    httpx.post(f"{standalone}/sandbox/faults", json={"model": "fast", "sequence": ["rate_limit:7"]}).raise_for_status()
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded"
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])  # fault used up
    httpx.request("DELETE", f"{standalone}/sandbox/faults").raise_for_status()


def test_unknown_model_is_openai_404(standalone):
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param", "text"),
    [
        (b"{not json", None, "could not parse the JSON body"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "model parameter"),
        (b'{"model": "fast"}', "messages", "messages"),
        (b'{"model": "fast", "messages": []}', "messages", "messages"),
        (b'{"model": "fast", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role", "role"),
        (
            b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "temperature": 5}',
            "temperature",
            "temperature",
        ),
        (
            b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            "max_tokens",
            "max_tokens",
        ),
    ],
)
def test_malformed_requests_get_openai_shaped_400s(standalone, body, param, text):
    r = httpx.post(f"{standalone}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert text.lower() in err["message"].lower()


def test_unknown_routes_and_methods(standalone):
    assert httpx.get(f"{standalone}/v1/nothing").status_code == 404
    assert httpx.get(f"{standalone}/v1/chat/completions").status_code == 405
    assert "error" in httpx.get(f"{standalone}/v1/nothing").json()


def test_bad_control_plane_spec(standalone):
    r = httpx.post(f"{standalone}/sandbox/faults", json={"model": "fast", "sequence": ["explode"]})
    assert r.status_code == 400 and "explode" in r.json()["error"]["message"]


def test_max_tokens_truncates_with_length_finish(standalone):
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    resp = client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "long please"}], max_tokens=5
    )
    assert resp.choices[0].finish_reason == "length" and resp.usage.completion_tokens == 5


def test_stop_sequences(standalone):
    client = openai.OpenAI(base_url=f"{standalone}/v1", api_key="anything", max_retries=0)
    resp = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "alpha STOP beta"}], stop=["STOP"]
    )
    assert resp.choices[0].message.content == "alpha "


@pytest.mark.parametrize("bad", ["explode", "429x", "rate_limit:soon", 42])
def test_bad_fault_specs_name_the_accepted_faults(bad):
    with pytest.raises(ConfigError) as info:
        sandbox.inject("sandbox/fast", [bad])
    assert isinstance(info.value, ValueError)
    assert "rate_limit" in str(info.value) and "server_error" in str(info.value)


def test_bad_fault_targets_and_rates():
    with pytest.raises(ValueError, match="unknown sandbox model"):
        sandbox.inject("sandbox/nope", ["429"])
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        sandbox.inject("sandbox/fast", rates={"503": 1.5})
    with pytest.raises(ValueError, match="more than 1"):
        sandbox.inject("sandbox/fast", rates={"503": 0.6, "500": 0.6})
    with pytest.raises(ValueError, match="loopback"):
        sandbox.SandboxServer(host="0.0.0.0")


def test_add_model_is_served_and_priced():
    from decimal import Decimal

    from coffee_nb import AutoPicker, capture_records

    add_model(SandboxModel(name="custom-test", description="test", input_price=Decimal(1), output_price=Decimal(2)))
    with capture_records() as records:
        AutoPicker("sandbox/custom-test").invoke("hi")
    assert records[0].price_source == "sandbox" and records[0].cost > 0
    with pytest.raises(ValueError, match="single words"):
        add_model(SandboxModel(name="bad name", description="x"))
