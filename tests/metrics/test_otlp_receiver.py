"""The OTLP receiver the integration tests export to (Arize Phoenix, coffee_nb.testing.phoenix_server), proved
with the OpenTelemetry SDK alone: what the SDK's OTLP/HTTP exporter sends, Phoenix's own API gives back."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

pytestmark = pytest.mark.otlp_receiver


def test_the_receiver_gets_spans_from_the_sdk(otlp_receiver):
    provider = TracerProvider(resource=Resource.create({"service.name": "coffee_nb-receiver-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, timeout=10)))
    tracer = provider.get_tracer("coffee_nb.tests")
    try:
        call = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "sandbox",
            "gen_ai.request.model": "fast",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.response.finish_reasons": ("stop",),
            "coffee_nb.cost_usd": 0.25,
        }
        with (  # the second opens inside the first: its child
            tracer.start_as_current_span("chat sandbox/fast", kind=SpanKind.CLIENT, attributes=call) as root,
            tracer.start_as_current_span("attempt 1", attributes={"coffee_nb.attempt": 1}) as child,
        ):
            pass
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    spans = otlp_receiver.wait_for_spans(2, trace_id=trace_id)

    by_name = {span["name"]: span for span in spans}
    assert sorted(by_name) == ["attempt 1", "chat sandbox/fast"]
    got_root, got_child = by_name["chat sandbox/fast"], by_name["attempt 1"]
    assert got_root["context"] == {"trace_id": trace_id, "span_id": format(root.get_span_context().span_id, "016x")}
    assert got_root["parent_id"] is None
    assert got_child["context"]["span_id"] == format(child.get_span_context().span_id, "016x")
    assert got_child["parent_id"] == got_root["context"]["span_id"]
    assert got_child["context"]["trace_id"] == trace_id
    # what was sent is there as sent (Phoenix adds its OpenInference llm.* keys beside the gen_ai.* ones)
    assert {key: got_root["attributes"].get(key) for key in call} == {
        **call,
        "gen_ai.response.finish_reasons": ["stop"],
    }
    assert got_root["attributes"]["llm.model_name"] == "fast"
    assert got_child["attributes"] == {"coffee_nb.attempt": 1}
