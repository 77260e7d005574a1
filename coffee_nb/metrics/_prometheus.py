"""PrometheusMetrics: CallRecords as Prometheus series, on a registry of its own.

Names follow Prometheus style and OpenTelemetry GenAI naming where they overlap
(``gen_ai.client.operation.duration`` → ``coffee_nb_request_duration_seconds``). Label values are
bounded: error *classes*, never messages; at most ``max_models`` distinct models, then "other".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._records import CallRecord, Outcome, Role
from coffee_nb.errors._errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusMetrics"]

# LLM calls span milliseconds (cache hits, tiny models) to minutes (long generations).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)
DEFAULT_MAX_MODELS = 25


def _import_prometheus() -> Any:
    try:
        import prometheus_client  # lazy: prometheus_client
    except ImportError as exc:
        raise ImportError("PrometheusMetrics needs the prometheus extra: pip install 'coffee_nb[prometheus]'") from exc
    return prometheus_client


class _BudgetCollector:
    """Reads budget remaining at scrape time (prometheus_client's one-method Collector protocol)."""

    def __init__(self, budget: Any) -> None:
        self.budget = budget

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily  # lazy: prometheus_client

        family = GaugeMetricFamily(
            "coffee_nb_budget_remaining_usd", "Budget left in the current period (USD)", labels=["period"]
        )
        for period, status in self.budget.status().items():
            family.add_metric([period], float(status["remaining"]))
        yield family


class PrometheusMetrics:
    """Prometheus counters and histograms fed by CallRecords.

    >>> prom = PrometheusMetrics(budget=my_budget)
    >>> prom.serve(9464)                     # http://127.0.0.1:9464/metrics

    Each instance has its **own** ``CollectorRegistry`` unless ``registry=`` is given, so building it
    again when a notebook cell re-runs never raises "Duplicated timeseries".
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        budget: Any = None,
        max_models: int = DEFAULT_MAX_MODELS,
    ) -> None:
        prom = _import_prometheus()
        if not isinstance(max_models, int) or isinstance(max_models, bool) or max_models < 1:
            raise ConfigError(f"max_models must be a positive integer, got {max_models!r}")
        self.registry = registry if registry is not None else prom.CollectorRegistry(auto_describe=True)
        self.max_models = max_models
        self._models: set[str] = set()
        self._lock = threading.Lock()
        self._server: Any = None
        r = self.registry
        self.requests = prom.Counter(
            "coffee_nb_requests", "Model requests sent, by outcome", ["provider", "model", "outcome"], registry=r
        )
        self.errors = prom.Counter(
            "coffee_nb_errors", "Failed requests by error class", ["model", "error_class"], registry=r
        )
        self.skips = prom.Counter(
            "coffee_nb_skips", "Candidates skipped without a request", ["model", "reason"], registry=r
        )
        self.fallbacks = prom.Counter(
            "coffee_nb_fallbacks",
            "Calls answered by a fallback model",
            ["from_model", "to_model", "reason"],
            registry=r,
        )
        self.cost = prom.Counter("coffee_nb_cost_usd", "Spend in USD (priced requests)", ["model"], registry=r)
        self.unpriced = prom.Counter(
            "coffee_nb_unpriced_requests", "Answered requests with no known price", ["model"], registry=r
        )
        self.tokens = prom.Counter("coffee_nb_tokens", "Tokens by type", ["model", "type"], registry=r)
        self.duration = prom.Histogram(
            "coffee_nb_request_duration_seconds", "Request latency", ["model"], buckets=DURATION_BUCKETS, registry=r
        )
        self.ttft = prom.Histogram(
            "coffee_nb_time_to_first_token_seconds",
            "Time to first token of streams",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.cache_hits = prom.Counter(
            "coffee_nb_cache_hits", "Answers served from the response cache", ["model"], registry=r
        )
        if budget is not None:
            r.register(_BudgetCollector(budget))

    def __repr__(self) -> str:
        where = f", serving on 127.0.0.1:{self._server[0].server_port}" if self._server else ""
        return f"PrometheusMetrics(models={len(self._models)}{where})"

    def _label(self, model: str | None) -> str:
        if model is None:
            return "unknown"
        if model in self._models:
            return model
        with self._lock:
            if model in self._models:
                return model
            if len(self._models) >= self.max_models:
                return "other"
            self._models.add(model)
            return model

    def emit(self, record: CallRecord) -> None:
        model = self._label(record.model)
        if record.cache_hit:  # answered from the response cache: no request was sent
            self.cache_hits.labels(model).inc()
            return
        if record.outcome is Outcome.SKIPPED:
            self.skips.labels(model, record.error_class or "unknown").inc()
            return
        self.requests.labels(record.provider, model, record.outcome.value).inc()
        if record.outcome is Outcome.ERROR and record.error_class:
            self.errors.labels(model, record.error_class).inc()
        if record.outcome is Outcome.OK:
            self.duration.labels(model).observe(record.latency_s)
            if record.ttft_s is not None:
                self.ttft.labels(model).observe(record.ttft_s)
            if record.role is Role.FALLBACK and record.fallback_from:
                self.fallbacks.labels(
                    self._label(record.fallback_from), model, record.fallback_reason or "unknown"
                ).inc()
            if record.cost is None:
                self.unpriced.labels(model).inc()
        if record.cost is not None and record.cost > 0:
            self.cost.labels(model).inc(float(record.cost))
        for kind, n in (
            ("input", record.input_tokens),
            ("output", record.output_tokens),
            ("cached", record.cached_tokens),
            ("reasoning", record.reasoning_tokens),
        ):
            if n:
                self.tokens.labels(model, kind).inc(n)

    def serve(self, port: int = 0) -> int:
        """Expose ``/metrics`` on 127.0.0.1 (``port=0``: any free port). Returns the port."""
        prom = _import_prometheus()
        if self._server is not None:
            return int(self._server[0].server_port)
        server, thread = prom.start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = (server, thread)
        return int(server.server_port)

    def stop(self) -> None:
        """Stop the ``/metrics`` server, if serving."""
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._server = None

    def push(self, gateway: str, job: str = "coffee_nb", **kwargs: Any) -> None:
        """Push the current values to a Prometheus Pushgateway (``prometheus_client.push_to_gateway``)."""
        prom = _import_prometheus()
        prom.push_to_gateway(gateway, job=job, registry=self.registry, **kwargs)

    def exposition(self) -> str:
        """The text exposition format, as a scrape would return it."""
        prom = _import_prometheus()
        text: bytes = prom.generate_latest(self.registry)
        return text.decode()
