"""``MetricsSnapshot``: LocalMetrics' numbers at one moment, as frozen typed values.

``LocalMetrics.snapshot()`` builds one from the exact counters (one entry per distinct model, role,
outcome, error class, ... — a few dozen, however many records there are) and the latency window.
``as_dict()`` is the plain dict ``get_metrics()`` has always returned; ``model_frame()`` is the one
per-model table, behind both ``LocalMetrics.summary()`` and the widgets' cost table.

Over ~400 lines as one thing: the typed snapshot and every view of it the widgets and DataFrames read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from coffee_nb._shared._records import Outcome, Role

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["FallbackRoute", "LatencyStats", "MetricsSnapshot", "ModelStats", "Samples", "model_frame"]

_ZERO = Decimal(0)
_OK, _ERROR, _SKIPPED = Outcome.OK, Outcome.ERROR, Outcome.SKIPPED
_PRIMARY, _RETRY, _FALLBACK = Role.PRIMARY, Role.RETRY, Role.FALLBACK


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Seconds, over answered attempts in the window (cache hits excluded); ``None`` when there are none."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p95": self.p95, "p99": self.p99}


NO_LATENCY = LatencyStats(0, None, None, None, None)


class FallbackRoute(NamedTuple):  # a tuple: a hashable mapping key that unpacks as (from, to, reason)
    """A call that another model answered: the model it tried first, the one that answered, and why it moved on."""

    from_model: str
    to_model: str
    reason: str  # the error class of the first failure; "unknown" when none was recorded


class Samples(NamedTuple):
    """Per model, the latencies and times to first token of answered attempts in the window (numpy arrays)."""

    latency: dict[str, np.ndarray]
    ttft: dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One model's numbers. Counts are exact; ``latency`` and ``ttft`` cover the retained window."""

    model: str
    attempts: int  # requests sent: not skipped, not answered from the cache
    ok: int
    skipped: int  # candidates passed over without a request (cooldown, budget, context too small)
    errors_by_class: Mapping[str, int]
    fallbacks: int  # calls this model answered after another model failed
    cost: Decimal | None  # None: no priced attempt
    unpriced: int  # answered attempts without a known price
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency: LatencyStats
    ttft: LatencyStats  # streamed answers only

    @property
    def errors(self) -> int:
        return sum(self.errors_by_class.values())


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What a ``LocalMetrics`` has seen, at one moment. ``as_dict()`` gives ``get_metrics()``'s dict.

    Counts and costs are exact (``Decimal`` USD); latency covers the retained window. ``calls`` counts
    distinct call ids (with a ``capacity``, an id seen again after leaving the window counts twice).
    """

    calls: int
    attempts: int  # requests sent: not skipped, not answered from the cache
    ok: int
    errors: int
    cache_hits: int
    skipped: int
    cost: Decimal
    unpriced: int  # answered attempts without a known price
    primary_attempts: int
    retry_attempts: int
    fallback_attempts: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency: LatencyStats
    models: tuple[ModelStats, ...]  # in the order first seen
    fallbacks: Mapping[FallbackRoute, int]  # answered calls per route
    error_classes: Mapping[str, int]  # failed attempts per error class
    # candidates passed over without a request, per reason ("budget": refused by a budget, "cooldown", ...)
    skip_classes: Mapping[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> int:
        """Attempts a budget refused (nothing was sent)."""
        return self.skip_classes.get("budget", 0)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cached_tokens + self.reasoning_tokens

    @property
    def fallback_count(self) -> int:
        return sum(self.fallbacks.values())

    def model(self, name: str) -> ModelStats | None:
        """The stats of model ``name`` ("provider/model"), or None if it was never seen."""
        return next((m for m in self.models if m.model == name), None)

    def routes(self) -> dict[tuple[str, str], int]:
        """Answered fallbacks per (from model, to model), whatever the reason."""
        out: dict[tuple[str, str], int] = {}
        for (a, b, _), n in self.fallbacks.items():
            out[(a, b)] = out.get((a, b), 0) + n
        return out

    def as_dict(self) -> dict[str, Any]:
        """The nested dict of ``get_metrics()``, with the seed's flat keys."""
        models = self.models
        by_reason: dict[str, int] = {}
        for route, n in self.fallbacks.items():
            by_reason[route.reason] = by_reason.get(route.reason, 0) + n
        fallbacks = self.fallback_count
        return {
            "requests": {
                "total": self.attempts,
                "successful": self.ok,
                "by_model": {m.model: m.attempts for m in models if m.attempts},
                "primary": self.primary_attempts,
                "retry": self.retry_attempts,
                "fallback": self.fallback_attempts,
                "skipped": self.skipped,
                "cache_hits": self.cache_hits,
            },
            "errors": {
                "total": self.errors,
                "by_model": {m.model: m.errors for m in models if m.errors_by_class},
                "by_class": dict(self.error_classes),
            },
            "costs": {
                "total": self.cost,
                "by_model": {m.model: m.cost for m in models if m.cost is not None},
                "unpriced_calls": self.unpriced,
                "unpriced_by_model": {m.model: m.unpriced for m in models if m.unpriced},
            },
            "latency": {
                **self.latency.as_dict(),
                "by_model": {m.model: m.latency.as_dict() for m in models if m.latency.count},
            },
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cached": self.cached_tokens,
                "reasoning": self.reasoning_tokens,
                "by_model": {m.model: t for m in models if (t := _token_kinds(m))},
            },
            "fallbacks": {
                "total": fallbacks,
                "by_route": {f"{a} -> {b}": n for (a, b), n in self.routes().items()},
                "by_reason": by_reason,
            },
            "totals": {
                "requests": self.attempts,
                "successful": self.ok,
                "errors": self.errors,
                "fallbacks": fallbacks,
                "cost": self.cost,
                "tokens": self.tokens,
            },
            # the seed's flat keys
            "total_requests": self.attempts,
            "successful_requests": self.ok,
            "failed_requests": self.errors,
            "total_cost": self.cost,
            "average_latency": self.latency.mean,
            "fallback_count": fallbacks,
        }


def _token_kinds(m: ModelStats) -> dict[str, int]:
    kinds = (
        ("input", m.input_tokens),
        ("output", m.output_tokens),
        ("cached", m.cached_tokens),
        ("reasoning", m.reasoning_tokens),
    )
    return {kind: n for kind, n in kinds if n}


class _Tally:
    """One model's counts while the groups are summed up."""

    __slots__ = (
        "attempts",
        "cached",
        "cost",
        "errors",
        "fallbacks",
        "input",
        "ok",
        "output",
        "reasoning",
        "skipped",
        "unpriced",
    )

    def __init__(self) -> None:
        self.attempts = self.ok = self.skipped = self.fallbacks = self.unpriced = 0
        self.input = self.output = self.cached = self.reasoning = 0
        self.cost: Decimal | None = None
        self.errors: dict[str, int] = {}


def build_snapshot(groups: Sequence[tuple[Any, ...]], cache_hits: int, calls: int, samples: Samples) -> MetricsSnapshot:
    """Sum the store's groups (see ``ColumnStore._read``) per model; latency stats from ``samples``."""
    import numpy as np  # lazy: numpy

    tallies: dict[str, _Tally] = {}
    error_classes: dict[str, int] = {}
    skip_classes: dict[str, int] = {}
    fallbacks: dict[FallbackRoute, int] = {}
    roles = {_PRIMARY: 0, _RETRY: 0, _FALLBACK: 0}
    for key, n, t_in, t_out, t_cached, t_reasoning, g_cost, g_unpriced in groups:
        if not n:  # a group of cache hits only: they are counted apart, and sent no request
            continue
        model, role, outcome, error_class = key.model, key.role, key.outcome, key.error_class
        fallback_from, fallback_reason = key.fallback_from, key.fallback_reason
        t = tallies.get(model)
        if t is None:
            t = tallies[model] = _Tally()
        if outcome == _SKIPPED:
            t.skipped += n
            reason = error_class or "unknown"
            skip_classes[reason] = skip_classes.get(reason, 0) + n
        else:
            t.attempts += n
            if role in roles:
                roles[role] += n
        if outcome == _OK:
            t.ok += n
            if role == _FALLBACK and fallback_from:
                route = FallbackRoute(fallback_from, model, fallback_reason or "unknown")
                fallbacks[route] = fallbacks.get(route, 0) + n
                t.fallbacks += n
        elif outcome == _ERROR and error_class:
            t.errors[error_class] = t.errors.get(error_class, 0) + n
            error_classes[error_class] = error_classes.get(error_class, 0) + n
        if g_cost is not None:
            t.cost = g_cost if t.cost is None else t.cost + g_cost
        t.unpriced += g_unpriced
        t.input += t_in
        t.output += t_out
        t.cached += t_cached
        t.reasoning += t_reasoning
    # models in the order first seen, which is also the order samples come in
    order = dict.fromkeys(key.model for key, *_ in groups)
    models = tuple(
        ModelStats(
            str(model),
            t.attempts,
            t.ok,
            t.skipped,
            t.errors,
            t.fallbacks,
            t.cost,
            t.unpriced,
            t.input,
            t.output,
            t.cached,
            t.reasoning,
            _stats(samples.latency.get(str(model))),
            _stats(samples.ttft.get(str(model))),
        )
        for model in order
        if (t := tallies.get(model)) is not None
    )
    answered = list(samples.latency.values())
    # concatenated model by model, as get_metrics() always did: the mean's float rounding depends on the order
    everything = np.concatenate(answered) if answered else None
    return MetricsSnapshot(
        calls=calls,
        attempts=sum(m.attempts for m in models),
        ok=sum(m.ok for m in models),
        errors=sum(error_classes.values()),
        cache_hits=cache_hits,
        skipped=sum(m.skipped for m in models),
        cost=sum((m.cost for m in models if m.cost is not None), _ZERO),
        unpriced=sum(m.unpriced for m in models),
        primary_attempts=roles[_PRIMARY],
        retry_attempts=roles[_RETRY],
        fallback_attempts=roles[_FALLBACK],
        input_tokens=sum(m.input_tokens for m in models),
        output_tokens=sum(m.output_tokens for m in models),
        cached_tokens=sum(m.cached_tokens for m in models),
        reasoning_tokens=sum(m.reasoning_tokens for m in models),
        latency=_stats(everything),
        models=models,
        fallbacks=fallbacks,
        error_classes=error_classes,
        skip_classes=skip_classes,
    )


def _stats(values: np.ndarray | None) -> LatencyStats:
    if values is None or not len(values):
        return NO_LATENCY
    p50, p95, p99 = _percentiles(values)
    return LatencyStats(len(values), float(values.mean()), p50, p95, p99)


_QUANTILES = (50 / 100, 95 / 100, 99 / 100)


def _percentiles(values: np.ndarray) -> list[float]:
    """``np.percentile(values, [50, 95, 99])`` (linear interpolation), to the last bit, at a third of its
    cost on the small arrays a dashboard redraw sees: numpy's per-call overhead, not the work, dominated."""
    import numpy as np  # lazy: numpy

    last = len(values) - 1
    spots = []
    for q in _QUANTILES:
        virtual = last * q
        below = math.floor(virtual)
        spots.append((virtual, below) if virtual < last else (virtual, last))
    kth = sorted({i for _, below in spots for i in (below, min(below + 1, last))})
    ordered = np.partition(values, kth)
    out = []
    for virtual, below in spots:
        if below == last:  # at or past the end: the maximum
            out.append(float(ordered[last]))
            continue
        a, b = float(ordered[below]), float(ordered[below + 1])
        gamma = virtual - below
        # numpy's _lerp: from the nearer end, so that gamma 1 gives b exactly
        out.append(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)
    return out


_FRAME_COLUMNS = [
    "model",
    "calls",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_share",
    "unpriced_calls",
    "p50_latency_s",
    "p95_latency_s",
]


def model_frame(snapshot: MetricsSnapshot, *, exact_costs: bool = False, totals: bool = False) -> pd.DataFrame:
    """Per model, sorted: calls sent, errors, fallbacks answered, tokens, cost and share of it, unpriced
    answers, p50/p95 latency. A model that was only ever skipped (nothing sent, nothing spent) has no row.

    ``cost_usd`` is a float, NaN for a model without a priced attempt; ``exact_costs=True``: the exact
    ``Decimal`` ($0 when none). ``totals=True`` adds a "total" row.
    """
    import pandas as pd  # lazy: pandas

    total_cost = snapshot.cost
    rows = []
    for m in sorted(snapshot.models, key=lambda m: m.model):
        cost = m.cost
        if not m.attempts and cost is None:
            continue
        rows.append(
            {
                "model": m.model,
                "calls": m.attempts,
                "errors": m.errors,
                "fallbacks": m.fallbacks,
                "input_tokens": m.input_tokens,
                "output_tokens": m.output_tokens,
                "cost_usd": (_ZERO if cost is None else cost)
                if exact_costs
                else (float("nan") if cost is None else float(cost)),
                "cost_share": float(cost / total_cost) if cost is not None and total_cost else 0.0,
                "unpriced_calls": m.unpriced,
                "p50_latency_s": m.latency.p50,
                "p95_latency_s": m.latency.p95,
            }
        )
    df = pd.DataFrame(rows, columns=_FRAME_COLUMNS)
    if totals and rows:
        s = snapshot
        total = {
            "model": "total",
            "calls": s.attempts,
            "errors": s.errors,
            "fallbacks": s.fallback_count,
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cost_usd": total_cost if exact_costs else float(total_cost),
            "cost_share": 1.0 if total_cost else 0.0,
            "unpriced_calls": s.unpriced,
            "p50_latency_s": s.latency.p50,
            "p95_latency_s": s.latency.p95,
        }
        df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    return df.set_index("model")
