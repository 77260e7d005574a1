"""Metrics strategies: sinks of CallRecords. ``LocalMetrics``, ``PrometheusMetrics``, ``OpenTelemetryMetrics``
(which also follows whole calls: GenAI spans), ``NoOpMetrics``.

Pass one or several as ``AutoPicker(..., metrics=[...])``. Anything with ``emit(record)`` works too.
``LocalMetrics.snapshot()`` returns a ``MetricsSnapshot`` (per model: ``ModelStats``; fallbacks keyed
by ``FallbackRoute``; latency as ``LatencyStats``).
"""

from __future__ import annotations

from typing import Any

from coffee_nb.errors._errors import ConfigError
from coffee_nb.metrics._local import LocalMetrics
from coffee_nb.metrics._noop import NoOpMetrics
from coffee_nb.metrics._otel import OpenTelemetryMetrics
from coffee_nb.metrics._prometheus import PrometheusMetrics
from coffee_nb.metrics._snapshot import FallbackRoute, LatencyStats, MetricsSnapshot, ModelStats, Samples

__all__ = [
    "FallbackRoute",
    "LatencyStats",
    "LocalMetrics",
    "MetricsSnapshot",
    "ModelStats",
    "NoOpMetrics",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
    "Samples",
    "create_metrics_strategy",
]

STRATEGIES = ("local", "prometheus", "otel", "noop")


def create_metrics_strategy(name: str = "local", **kwargs: Any) -> Any:
    """The seed's factory: ``"local"``, ``"prometheus"`` or ``"noop"``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "local":
        return LocalMetrics(**kwargs)
    if key == "prometheus":
        return PrometheusMetrics(**kwargs)
    if key in ("otel", "opentelemetry"):
        return OpenTelemetryMetrics(**kwargs)
    if key == "noop":
        return NoOpMetrics(**kwargs)
    raise ConfigError(f"unknown metrics strategy {name!r}: expected one of {', '.join(repr(s) for s in STRATEGIES)}")
