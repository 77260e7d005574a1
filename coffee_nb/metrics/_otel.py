"""OpenTelemetry: every AutoPicker call as GenAI spans and metrics, into the user's own observability stack.

``OpenTelemetryMetrics()`` is a record sink like ``LocalMetrics`` that also follows whole calls. Each call is
one span named by the GenAI semantic conventions (``chat {model}``, kind CLIENT), a child of the caller's
current span (a ``%%llm`` cell with none is one trace of its own); each attempt (retry, fallback, hedge,
restart, a skipped candidate) is a child span of it, timed as it ran. The conventions' metrics are
recorded: ``gen_ai.client.token.usage`` (by token type), ``gen_ai.client.operation.duration`` and, for
streams, ``gen_ai.client.operation.time_to_first_chunk``; beside them ``coffee_nb.client.cost`` (USD).

Names follow the current GenAI conventions (``gen_ai.provider.name``, ``gen_ai.usage.cache_read.input_tokens``,
...). The one attribute that moved, ``gen_ai.system``, is emitted beside its successor for backends that
still read it, unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` holds ``gen_ai_latest_experimental``: then only the
latest names are (as the conventions' transition plan says). coffee_nb's own facts carry a ``coffee_nb.``
prefix: the cost in USD (no convention has one yet: semantic-conventions-genai PR #443 proposes
``gen_ai.usage.cost.amount``), priced or not, the role, the fallback reason, the budget left, cache hits,
cassette replays.

Message content is captured only when asked (``capture_content=True``, or the conventions' variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), redacted like every other artifact, images as the
digests of their bytes. No API key reaches a span, an event or a metric.

Where spans go: the global ``TracerProvider`` / ``MeterProvider`` when the application has set one (the
user's tracing: Langfuse, Phoenix, Honeycomb SDK setups), else providers of its own exporting with the
standard OTLP/HTTP exporters, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables. Its own
providers export in the background (a call never waits for the collector) and are flushed and shut down
at exit, which a Jupyter kernel's shutdown runs: the last spans of a stopped kernel are not lost.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import facts, is_image
from coffee_nb._shared._records import CallRecord, Outcome
from coffee_nb._shared._redact import redact

__all__ = ["OpenTelemetryMetrics", "trace_carrier", "traced_by"]

log = logging.getLogger("coffee_nb")

_INSTALL = "OpenTelemetry export needs its extra: pip install 'coffee_nb[otel]'"
_LATEST = "gen_ai_latest_experimental"
_CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_KEEP_ENDED = 256  # calls whose span ended, remembered for records that come later (an abandoned call)

# coffee_nb's provider names -> the conventions' well-known values (others go as they are)
_PROVIDERS = {
    "google": "gcp.gen_ai",
    "vertexai": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
}
# the conventions' advisory bucket boundaries
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_SECONDS_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


def _provider(name: str) -> str:
    return _PROVIDERS.get(name, name)


def _split(label: str) -> tuple[str, str]:
    """("provider", "model") of a record's "provider/model" label."""
    provider, _, model = label.partition("/")
    return (provider, model) if model else ("", label)


def _ns(record: CallRecord) -> tuple[int, int]:
    start = int(record.started_at.timestamp() * 1e9)
    return start, start + int(record.latency_s * 1e9)


class OpenTelemetryMetrics:
    """Export every call as GenAI spans and metrics (see the module's docstring).

    ``tracer_provider`` / ``meter_provider``: where to send them (given one, the other is the global one;
    given neither: the global ones when the application set them, else OTLP/HTTP from the
    ``OTEL_EXPORTER_OTLP_*`` variables; ``endpoint`` overrides the variables' base URL).
    ``capture_content``: put the prompt and the answer on the call span (redacted; off by default).
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        endpoint: str | None = None,
        capture_content: bool | None = None,
        service_name: str = "coffee_nb",
    ) -> None:
        try:
            from opentelemetry import metrics, trace  # lazy: opentelemetry
        except ImportError as exc:
            raise ImportError(_INSTALL) from exc
        self._trace = trace
        from opentelemetry import context  # lazy: opentelemetry

        self._context = context
        self._owned: list[Any] = []  # providers this object made: flushed and shut down at exit
        # given one of them, the other is the application's own too (the global one: a no-op when unset)
        # the application's own setup, when it has one (given here, or set globally): used for both, even
        # where it set only one of them (then the other is its no-op): coffee_nb invents no exporter then
        given = tracer_provider is not None or meter_provider is not None
        given = given or _set_up(trace.get_tracer_provider()) or _set_up(metrics.get_meter_provider())
        if not given and os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":  # the SDK's off switch
            tracer_provider, meter_provider = trace.NoOpTracerProvider(), metrics.NoOpMeterProvider()
        elif given:
            tracer_provider = tracer_provider or trace.get_tracer_provider()
            meter_provider = meter_provider or metrics.get_meter_provider()
        # the SDK's standard switches for one signal: OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none
        if tracer_provider is None and os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
            tracer_provider = trace.NoOpTracerProvider()
        if meter_provider is None and os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
            meter_provider = metrics.NoOpMeterProvider()
        self.tracer_provider = tracer_provider or self._tracer_provider(trace, endpoint, service_name)
        self.meter_provider = meter_provider or self._meter_provider(metrics, endpoint, service_name)
        scope = ("coffee_nb", _version())
        self.tracer = self.tracer_provider.get_tracer(*scope)
        meter = self.meter_provider.get_meter(*scope)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used by GenAI operations, by token type",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of GenAI operations (an AutoPicker call, its retries and fallbacks included)",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to the first chunk of a streamed answer",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.cost = meter.create_counter(
            "coffee_nb.client.cost", unit="USD", description="What model calls cost (priced attempts), in USD"
        )
        if capture_content is None:
            said = os.environ.get(_CAPTURE_VAR, "").strip().lower()
            capture_content = said in ("true", "1", "span_only", "span_and_event")
        self.capture_content = bool(capture_content)
        self.latest_only = _LATEST in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
        self._client = trace.SpanKind.CLIENT
        self._chains: dict[
            tuple[str, ...], tuple[str, dict[str, Any], str]
        ] = {}  # a chain's span name, attributes, first model
        self._models: dict[str, dict[str, str]] = {}  # "provider/model" -> its spans' constant attributes
        self._labels: dict[tuple[str, str | None], dict[str, str]] = {}  # metric attributes
        self._lock = threading.Lock()
        self._open: dict[str, Any] = {}  # call id -> the caller's context, while the call runs
        self._ended: OrderedDict[str, Any] = OrderedDict()  # call id -> its span's context, for a while after
        if self._owned:
            atexit.register(_shutdown_at_exit, weakref.ref(self))

    def __repr__(self) -> str:
        where = "own OTLP exporters" if self._owned else "the global providers"
        return f"OpenTelemetryMetrics({where}, capture_content={self.capture_content})"

    # -- where spans and metrics go ----------------------------------------------------------------
    def _tracer_provider(self, trace: Any, endpoint: str | None, service: str) -> Any:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # lazy: opentelemetry
            from opentelemetry.sdk.resources import Resource  # lazy: opentelemetry
            from opentelemetry.sdk.trace import TracerProvider  # lazy: opentelemetry
            from opentelemetry.sdk.trace.export import BatchSpanProcessor  # lazy: opentelemetry
        except ImportError as exc:
            raise ImportError(_INSTALL) from exc
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        url = f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None
        # exported in the background (a call never waits for the collector), within half a second, and
        # flushed at exit: a kernel that stops (its shutdown runs atexit) loses none
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url), schedule_delay_millis=500))
        self._owned.append(provider)
        return provider

    def _meter_provider(self, metrics: Any, endpoint: str | None, service: str) -> Any:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # lazy: opentelemetry
            from opentelemetry.sdk.metrics import MeterProvider  # lazy: opentelemetry
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # lazy: opentelemetry
            from opentelemetry.sdk.resources import Resource  # lazy: opentelemetry
        except ImportError as exc:
            raise ImportError(_INSTALL) from exc
        url = f"{endpoint.rstrip('/')}/v1/metrics" if endpoint else None
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url))
        provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
        self._owned.append(provider)
        return provider

    def flush(self) -> None:
        """Export what is pending now (spans and metrics of this object's own providers)."""
        for provider in self._owned:
            provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop this object's own providers (done at exit by itself)."""
        owned, self._owned = self._owned, []
        for provider in owned:
            provider.shutdown()

    # -- a job (map_rows) ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def job_span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[dict[str, str]]:
        """A span over a whole job, current while it runs (its rows' call spans are its children);
        yields a carrier of it (W3C trace context) for processes that run part of the job (Dask workers)."""
        with self.tracer.start_as_current_span(name, attributes=dict(attributes)):
            yield trace_carrier()

    # -- a call ------------------------------------------------------------------------------------
    def call_started(self, call: Any) -> Any:
        """Note the caller's current context (the call span's parent). The spans are made when the call
        ends, from its records, each with its own times: one batch of SDK work per call."""
        parent = self._context.get_current()
        with self._lock:
            self._open[call.plan.call_id] = parent
        return parent

    def call_ended(self, parent: Any, call: Any, error: BaseException | None) -> None:
        """The call's span, with what happened (who answered, tokens, cost, the error if it failed), and a
        child span per attempt; then the metrics."""
        records: list[CallRecord] = list(call.plan.records)
        names = tuple(c.name for c in call.plan.core.candidates)
        constant = self._chains.get(names)
        if constant is None:
            constant = self._chains[names] = (
                f"chat {_split(names[0])[1]}",
                {**self._model_attrs(names[0]), "coffee_nb.models": list(names)},
                names[0],
            )
        name, base, first = constant
        attrs = {**base, "coffee_nb.stream": call.streaming}
        max_tokens = call.kwargs.get("max_tokens", call.picker.max_tokens)
        if isinstance(max_tokens, int):
            attrs["gen_ai.request.max_tokens"] = max_tokens
        temperature = call.kwargs.get("temperature", getattr(call.picker, "temperature", None))
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            attrs["gen_ai.request.temperature"] = float(temperature)
        tried = [r for r in records if r.outcome is not Outcome.SKIPPED]
        final = next((r for r in reversed(tried) if r.outcome is Outcome.OK), tried[-1] if tried else None)
        summary = call.summary or {}
        attrs["coffee_nb.attempts"] = len(tried)
        if final is not None:
            attrs.update(self._usage(final))
            attrs["gen_ai.response.model"] = _split(final.model)[1]
            attrs["coffee_nb.answered_by"] = final.model
            attrs["coffee_nb.role"] = final.role.value
            if final.fallback_reason:
                attrs["coffee_nb.fallback_reason"] = final.fallback_reason
        costs = [r.cost for r in records if r.cost is not None]
        attrs["coffee_nb.priced"] = len(costs) == len([r for r in tried if r.input_tokens or r.output_tokens])
        if costs:
            attrs["coffee_nb.cost_usd"] = float(sum(costs))
        if summary.get("finish_reason"):
            attrs["gen_ai.response.finish_reasons"] = [str(summary["finish_reason"])]
        left = _budget_left(call.picker.budget)
        if left is not None:
            attrs["coffee_nb.budget_left_usd"] = left
        if self.capture_content:
            attrs.update(_content(call.messages, call.answer_text))
        labels = self._metric_labels(first, final)
        trace = self._trace
        status = None
        if error is not None:
            stopped = type(error).__name__ in ("GeneratorExit", "KeyboardInterrupt", "CancelledError")
            kind = "cancelled" if stopped else type(error).__name__  # cancelled: the caller stopped it
            attrs["error.type"] = labels["error.type"] = kind
            status = trace.Status(trace.StatusCode.ERROR, redact(str(error))[:500])
        span = self.tracer.start_span(
            name, context=parent, kind=self._client, attributes=attrs, start_time=call.started_ns
        )
        if status is not None:
            span.set_status(status)
        inside = trace.set_span_in_context(span)
        for record in records:
            self._attempt(record, inside)
        now = time.time_ns()
        self.duration.record((now - call.started_ns) / 1e9, labels)
        ttft = summary.get("ttft_s")
        if call.streaming and isinstance(ttft, (int, float)):
            self.first_chunk.record(float(ttft), labels)
        span.end(end_time=now)
        call_id = call.plan.call_id
        with self._lock:
            self._open.pop(call_id, None)
            self._ended[call_id] = inside
            while len(self._ended) > _KEEP_ENDED:
                self._ended.popitem(last=False)

    # -- an attempt (every record) -----------------------------------------------------------------
    def emit(self, record: CallRecord) -> None:
        """A record of a call in progress waits for its end (its span is made then); any other (a cache
        hit outside a call, a late record of an abandoned attempt) is a span now, under its call's span
        when that call was seen."""
        if record.call_id in self._open:
            return
        with self._lock:
            context = self._ended.get(record.call_id)
        self._attempt(record, context)
        if context is None and (record.cache_hit or record.replayed):  # a call of its own: its duration too
            self.duration.record(record.latency_s, self._metric_labels(record.model, record))

    def _attempt(self, record: CallRecord, context: Any) -> None:
        """The span of one attempt (under ``context``), and its tokens and cost in the metrics."""
        attrs: dict[str, Any] = {
            **self._model_attrs(record.model),
            "coffee_nb.outcome": record.outcome.value,
            "coffee_nb.role": record.role.value,
        }
        ok = record.outcome is Outcome.OK
        if ok:
            attrs["gen_ai.response.model"] = attrs["gen_ai.request.model"]
        attrs.update(self._usage(record))
        if record.cost is not None:
            attrs["coffee_nb.cost_usd"] = float(record.cost)
        else:
            attrs["coffee_nb.priced"] = False
        for flag in ("cache_hit", "replayed", "abandoned", "streamed"):
            if getattr(record, flag):
                attrs[f"coffee_nb.{flag}"] = True
        if record.fallback_reason:
            attrs["coffee_nb.fallback_reason"] = record.fallback_reason
        if record.ttft_s is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = record.ttft_s
        error = record.outcome is Outcome.ERROR
        if record.error_class:
            attrs["error.type" if error else "coffee_nb.skipped_for"] = record.error_class
        if record.error_message:
            attrs["coffee_nb.error_message"] = redact(record.error_message)[:500]
        start, end = _ns(record)
        name = f"chat {attrs['gen_ai.request.model']}"
        span = self.tracer.start_span(name, context=context, kind=self._client, attributes=attrs, start_time=start)
        if error:
            trace = self._trace
            span.set_status(trace.Status(trace.StatusCode.ERROR, attrs.get("coffee_nb.error_message", "")))
        span.end(end_time=max(end, start))
        if record.input_tokens or record.output_tokens or record.cost:
            labels = self._metric_labels(record.model, record)
            if record.input_tokens:
                self.token_usage.record(record.input_tokens, {**labels, "gen_ai.token.type": "input"})
            if record.output_tokens:
                self.token_usage.record(record.output_tokens, {**labels, "gen_ai.token.type": "output"})
            if record.cost:
                self.cost.add(float(record.cost), labels)

    # -- attributes ------------------------------------------------------------------------------
    def _model_attrs(self, label: str) -> dict[str, str]:
        """The attributes every span of a "provider/model" carries (made once per model)."""
        found = self._models.get(label)
        if found is None:
            provider, model = _split(label)
            found = self._models[label] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                **self._provider_attrs(provider),
            }
        return found

    def _provider_attrs(self, provider: str) -> dict[str, str]:
        name = _provider(provider)
        if self.latest_only:
            return {"gen_ai.provider.name": name}
        return {"gen_ai.provider.name": name, "gen_ai.system": name}  # the name it had, for older backends

    def _usage(self, record: CallRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gen_ai.usage.input_tokens": record.input_tokens,
            "gen_ai.usage.output_tokens": record.output_tokens,
        }
        if record.cached_tokens:
            out["gen_ai.usage.cache_read.input_tokens"] = record.cached_tokens
        if record.reasoning_tokens:
            out["gen_ai.usage.reasoning.output_tokens"] = record.reasoning_tokens
        if record.tokens_estimated:
            out["coffee_nb.tokens_estimated"] = True
        return out

    def _metric_labels(self, label: str, record: CallRecord | None) -> dict[str, str]:
        """Metric attributes: the conventions' (the moved ``gen_ai.system`` is left to spans), made once."""
        answered = record.model if record is not None and record.outcome is Outcome.OK else None
        key = (label, answered)
        found = self._labels.get(key)
        if found is None:
            provider, model = _split(label)
            found = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
            found["gen_ai.provider.name"] = _provider(provider)
            if answered is not None:
                found["gen_ai.response.model"] = _split(answered)[1]
            self._labels[key] = found
        return dict(found)


def _content(messages: Sequence[Any] | str, answer: str | None) -> dict[str, str]:
    """The conventions' ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON), redacted; images
    by the digest of their bytes, never the bytes."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    items = [messages] if isinstance(messages, str) else list(messages)
    out = []
    for m in items:
        content = m if isinstance(m, str) else getattr(m, "content", "")
        blocks = content if isinstance(content, list) else [content]
        parts: list[dict[str, Any]] = []
        for block in blocks:
            if isinstance(block, dict) and is_image(block):
                f = facts(block)
                parts.append({"type": "image", "mime_type": f.mime_type, "sha256": f.digest})
            else:
                text = block if isinstance(block, str) else content_text([block])
                parts.append({"type": "text", "content": redact(text)})
        role = "user" if isinstance(m, str) else roles.get(getattr(m, "type", "human"), "user")
        out.append({"role": role, "parts": parts})
    result = {"gen_ai.input.messages": json.dumps(out, ensure_ascii=False)}
    if answer is not None:
        reply = [{"role": "assistant", "parts": [{"type": "text", "content": redact(answer)}]}]
        result["gen_ai.output.messages"] = json.dumps(reply, ensure_ascii=False)
    return result


def _budget_left(budget: Any) -> float | None:
    """The least a budget has left over its periods (None without a budget or when it can't be read)."""
    if budget is None:
        return None
    try:
        status: Mapping[str, Mapping[str, Any]] = budget.status()
        left = [float(s["remaining"]) for s in status.values() if s.get("remaining") is not None]
    except Exception:  # noqa: BLE001 - a span must not fail a call
        return None
    return min(left) if left else None


def _version() -> str:
    try:
        return version("coffee_nb")
    except PackageNotFoundError:
        return "0"


def _shutdown_at_exit(ref: weakref.ref[OpenTelemetryMetrics]) -> None:
    exporter = ref()
    if exporter is not None:
        try:
            exporter.shutdown()
        except Exception:
            log.warning("coffee_nb: could not flush OpenTelemetry data at exit", exc_info=True)


def _set_up(provider: Any) -> bool:
    """Did the application set this global provider (rather than the API's placeholder or no-op)?"""
    return type(provider).__name__ not in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C ``traceparent`` headers (plain strings: picklable, sendable)."""
    from opentelemetry import propagate  # lazy: opentelemetry

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def traced_by(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Run the block inside the trace context another process handed over (no-op without one)."""
    if not carrier:
        yield
        return
    from opentelemetry import context, propagate  # lazy: opentelemetry

    token = context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)
