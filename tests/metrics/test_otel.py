"""OpenTelemetry export with the SDK's in-memory exporters: the span tree of every kind of call (success,
retry, fallback, hedge, mid-stream restart, all failed), the GenAI conventions' attribute names and
values, the metrics, the user's own tracing as parent, content only when asked, and no key anywhere."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from langchain_core.messages import HumanMessage
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

import coffee_nb
from coffee_nb import AllModelsFailedError, AutoPicker, Budget, OpenTelemetryMetrics, Policy, register_price, sandbox
from coffee_nb.testing import ScriptedChatModel, http_error

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


class Otel:
    """An OpenTelemetryMetrics on in-memory exporters, and readers of what it exported."""

    def __init__(self, **kwargs):
        self.spans_out = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.sink = OpenTelemetryMetrics(
            tracer_provider=self.provider, meter_provider=MeterProvider(metric_readers=[self.reader]), **kwargs
        )

    def spans(self):
        return list(self.spans_out.get_finished_spans())

    def tree(self):
        """[(call span name, [(child name, outcome, error.type), ...])] in start order."""
        spans = self.spans()
        roots = [s for s in spans if s.parent is None or s.parent.span_id not in {x.context.span_id for x in spans}]
        out = []
        for root in sorted(roots, key=lambda s: s.start_time):
            kids = sorted(
                (s for s in spans if s.parent and s.parent.span_id == root.context.span_id),
                key=lambda s: (s.start_time, s.attributes.get("coffee_nb.attempt", 0)),
            )
            out.append(
                (root.name, [(k.name, k.attributes["coffee_nb.outcome"], k.attributes.get("error.type")) for k in kids])
            )
        return out

    def call_span(self):
        (root,) = [s for s in self.spans() if s.parent is None]
        return root

    def points(self, name):
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out += list(m.data.data_points)
        return out


def test_a_call_answered_first_time_is_one_call_span_with_one_attempt_and_the_conventions_attributes():
    otel = Otel()
    llm = AutoPicker("sandbox/fast", metrics=[otel.sink], max_tokens=500, temperature=0.2)
    llm.invoke("Why is the sky blue?")
    assert otel.tree() == [("chat fast", [("chat fast", "ok", None)])]
    call = otel.call_span()
    a = call.attributes
    assert call.kind is trace.SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "sandbox"
    assert a["gen_ai.system"] == "sandbox"  # the moved name, still emitted by default
    assert a["gen_ai.request.model"] == "fast" and a["gen_ai.response.model"] == "fast"
    assert a["gen_ai.request.max_tokens"] == 500 and a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["coffee_nb.cost_usd"] > 0 and a["coffee_nb.priced"] is True and a["coffee_nb.role"] == "primary"
    (attempt,) = [s for s in otel.spans() if s.parent is not None]
    assert attempt.start_time >= call.start_time and attempt.end_time <= call.end_time
    assert attempt.attributes["coffee_nb.cost_usd"] > 0 and "coffee_nb.priced" not in attempt.attributes


def test_retry_and_fallback_are_child_spans_in_order_with_their_errors():
    otel = Otel()
    sandbox.inject("sandbox/fast", ["server_error", "server_error", "server_error"])
    llm = AutoPicker("sandbox/fast", ["sandbox/smart"], metrics=[otel.sink], policy=Policy(max_retries=1))
    llm.invoke("hello")
    assert otel.tree() == [
        ("chat fast", [("chat fast", "error", "server"), ("chat fast", "error", "server"), ("chat smart", "ok", None)])
    ]
    call = otel.call_span()
    assert call.attributes["coffee_nb.fallback_reason"] == "server" and call.attributes["coffee_nb.role"] == "fallback"
    assert call.attributes["gen_ai.response.model"] == "smart" and call.attributes["coffee_nb.attempts"] == 3
    errors = [s for s in otel.spans() if s.attributes.get("coffee_nb.outcome") == "error"]
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in errors)
    assert call.status.status_code is trace.StatusCode.UNSET  # the call itself was answered


def test_a_hedge_is_two_overlapping_children():
    otel = Otel()
    sandbox.inject("sandbox/fast", ["slow_first:5"])
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], metrics=[otel.sink], policy=Policy(hedge_after=0.2))
    asyncio.run(llm.ainvoke("hedge me"))
    (_, kids) = otel.tree()[0]
    assert sorted(kids) == [("chat echo", "ok", None), ("chat fast", "cancelled", None)]
    loser, winner = sorted((s for s in otel.spans() if s.parent), key=lambda s: s.start_time)
    assert winner.start_time < loser.end_time  # they raced
    assert winner.attributes["coffee_nb.role"] == "hedge"


def test_a_stream_restarted_mid_answer_and_its_time_to_first_chunk():
    otel = Otel()
    broken = ScriptedChatModel(model_name="m0", script=["a b c d"], fail_after_chunks=2)
    fallback = ScriptedChatModel(model_name="m1", script=["whole answer here"])
    llm = AutoPicker(broken, [fallback], metrics=[otel.sink], policy=Policy(max_retries=0))
    assert coffee_nb.collect(llm.stream("hi")).content == "whole answer here"
    assert otel.tree() == [("chat m0", [("chat m0", "error", "connection"), ("chat m1", "ok", None)])]
    first = next(s for s in otel.spans() if s.name == "chat m0" and s.parent is not None)
    assert (
        first.attributes["coffee_nb.streamed"] is True and first.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    )
    assert otel.call_span().attributes["coffee_nb.stream"] is True
    assert otel.points("gen_ai.client.operation.time_to_first_chunk")


def test_all_failed_is_an_error_call_span_with_error_type_and_skips_are_children_too():
    otel = Otel()
    llm = AutoPicker(
        ScriptedChatModel(model_name="a", script=[http_error(401)]),
        [ScriptedChatModel(model_name="b", script=[http_error(500)])],
        metrics=[otel.sink],
        policy=Policy(max_retries=0, cooldown_after=1),
    )
    for _ in range(2):
        with pytest.raises(AllModelsFailedError):
            llm.invoke("hello")
    first, second = otel.tree()
    assert first == ("chat a", [("chat a", "error", "auth"), ("chat b", "error", "server")])
    assert [k[1] for k in second[1]] == ["skipped", "skipped"]  # both breakers open: skipped, said as children
    calls = [s for s in otel.spans() if s.parent is None]
    assert all(c.attributes["error.type"] == "AllModelsFailedError" for c in calls)
    assert all(c.status.status_code is trace.StatusCode.ERROR for c in calls)
    skipped = [s for s in otel.spans() if s.attributes.get("coffee_nb.outcome") == "skipped"]
    assert all(s.attributes["coffee_nb.skipped_for"] == "cooldown" for s in skipped)


def test_the_metrics_follow_the_conventions():
    otel = Otel()
    register_price("fake/priced", input=1, output=2)
    llm = AutoPicker(ScriptedChatModel(model_name="priced", script=["one two three"]), metrics=[otel.sink])
    llm.invoke("count these words please")
    usage = otel.points("gen_ai.client.token.usage")
    kinds = {p.attributes["gen_ai.token.type"]: p for p in usage}
    assert set(kinds) == {"input", "output"} and kinds["output"].sum == 3
    assert kinds["input"].attributes["gen_ai.request.model"] == "priced"
    assert kinds["input"].attributes["gen_ai.provider.name"] == "fake"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and duration.sum > 0 and "error.type" not in duration.attributes
    (cost,) = otel.points("coffee_nb.client.cost")
    assert cost.value > 0


def test_the_users_current_span_is_the_parent_and_a_cell_with_none_is_its_own_trace():
    otel = Otel()
    llm = AutoPicker("sandbox/fast", metrics=[otel.sink])
    outer = otel.provider.get_tracer("user")
    with outer.start_as_current_span("analysis") as mine:
        llm.invoke("inside")
    llm.invoke("outside")
    spans = otel.spans()
    inside, outside = sorted(
        (s for s in spans if s.name == "chat fast" and s.attributes.get("coffee_nb.models")), key=lambda s: s.start_time
    )
    assert inside.parent.span_id == mine.get_span_context().span_id
    assert inside.context.trace_id == mine.get_span_context().trace_id
    assert outside.parent is None and outside.context.trace_id != inside.context.trace_id


def test_content_is_captured_only_when_asked_redacted_and_images_as_digests(monkeypatch):
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 3
    quiet = Otel()
    AutoPicker("sandbox/echo", metrics=[quiet.sink]).invoke(f"my key is {key}")
    assert "gen_ai.input.messages" not in quiet.call_span().attributes
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    told = Otel()
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(png, format="PNG")
    picture = coffee_nb.content_blocks(f"see {key}", png.getvalue())
    AutoPicker("sandbox/vision", metrics=[told.sink]).invoke([HumanMessage(picture)])
    a = told.call_span().attributes
    (message,) = json.loads(a["gen_ai.input.messages"])
    assert (
        message["role"] == "user"
        and message["parts"][1]["type"] == "image"
        and len(message["parts"][1]["sha256"]) == 64
    )
    assert (
        "output" not in a["gen_ai.input.messages"] and json.loads(a["gen_ai.output.messages"])[0]["role"] == "assistant"
    )
    for span in quiet.spans() + told.spans():
        assert key not in json.dumps(dict(span.attributes), default=str)  # no key in any span, ever
        assert not any(key in str(e.attributes) for e in span.events)


def test_no_key_reaches_a_span_from_an_error_message():
    otel = Otel()
    key = "sk-ant-api03-" + "x" * 40
    model = ScriptedChatModel(model_name="leaky", script=[ValueError(f"Incorrect API key provided: {key}")])
    with pytest.raises(Exception):  # noqa: B017 - whatever it is, what was exported matters
        AutoPicker(model, metrics=[otel.sink], policy=Policy(max_retries=0)).invoke("hi")
    for span in otel.spans():
        assert key not in json.dumps(dict(span.attributes), default=str)
        assert key not in (span.status.description or "")


def test_only_the_latest_names_when_opted_in(monkeypatch):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    otel = Otel()
    AutoPicker("sandbox/fast", metrics=[otel.sink]).invoke("hi")
    for span in otel.spans():
        assert "gen_ai.system" not in span.attributes and span.attributes["gen_ai.provider.name"] == "sandbox"


def test_cache_hits_are_spans_of_their_own_and_the_session_exports_through_configure():
    otel = Otel()
    session = coffee_nb.configure(models=["sandbox/fast"], metrics=otel.sink, ledger="memory")
    coffee_nb.ask("cache me")
    coffee_nb.ask("cache me")  # from the response cache
    roots = [s for s in otel.spans() if s.parent is None]
    assert len(roots) == 2 and roots[1].attributes["coffee_nb.cache_hit"] is True
    assert roots[1].attributes["coffee_nb.cost_usd"] == 0
    assert session.exporters == [otel.sink]
    coffee_nb.configure(metrics="local")
    assert session.exporters == []


def test_the_budget_left_is_on_the_call_span():
    otel = Otel()
    AutoPicker("sandbox/fast", metrics=[otel.sink], budget=Budget(daily=2, ledger="memory")).invoke("hi")
    assert 0 < otel.call_span().attributes["coffee_nb.budget_left_usd"] < 2


def test_a_map_rows_job_is_one_span_with_each_rows_call_beneath_it():
    import pandas as pd

    otel = Otel()
    llm = AutoPicker("sandbox/fast", metrics=[otel.sink])
    df = pd.DataFrame({"text": ["a", "b", "c"]})
    coffee_nb.map_rows(df, "Say {text}", models=llm, progress=False, cache=False)
    spans = otel.spans()
    (job,) = [s for s in spans if s.name == "map_rows 3 rows"]
    calls = [s for s in spans if s.parent is not None and s.parent.span_id == job.context.span_id]
    assert len(calls) == 3 and all(c.name == "chat fast" for c in calls)
    assert job.attributes["coffee_nb.rows"] == 3 and all(c.context.trace_id == job.context.trace_id for c in calls)


def test_a_stream_the_caller_stops_reading_is_a_cancelled_call():
    otel = Otel()
    llm = AutoPicker(ScriptedChatModel(model_name="long", script=["one two three four five"]), metrics=[otel.sink])
    stream = llm.stream("hi")
    next(stream)
    stream.close()  # the consumer walked away after the first chunk
    call = otel.call_span()
    assert call.attributes["error.type"] == "cancelled" and call.status.status_code is trace.StatusCode.ERROR
    (attempt,) = [s for s in otel.spans() if s.parent is not None]
    assert attempt.attributes["coffee_nb.outcome"] == "cancelled"
