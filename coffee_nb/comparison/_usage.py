"""What a set of calls used: calls, errors, cache hits, tokens, cost and latencies (p50/p95), one row of a
comparison's models × metrics table; the same for a model's answers and for the judge's verdicts, so the
judge's own spend reads like any model's."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["USAGE_COLUMNS", "usage"]

USAGE_COLUMNS = [
    "calls",
    "errors",
    "cached",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_p50",
    "latency_p95",
    "ttft_p50",
    "ttft_p95",
    "error_classes",
]


def usage(calls: pd.DataFrame) -> dict[str, Any]:
    """The numbers of ``calls`` (a frame with error_class, cache_hit, tokens, cost, latency_s, ttft_s).

    ``cost`` is None when an answered call is unpriced (a sum would pass for the whole); failed calls
    cost what their attempts were billed. Latencies are those of answered calls only.
    """
    ok = calls[calls.error_class.isna()]
    unpriced = any(c is None for c in ok.cost)
    classes = Counter(e for e in calls.error_class if isinstance(e, str))
    return {
        "calls": len(calls),
        "errors": len(calls) - len(ok),
        "cached": int(calls.cache_hit.sum()),
        "input_tokens": int(calls.input_tokens.sum()),
        "output_tokens": int(calls.output_tokens.sum()),
        "cost": None if unpriced else sum((c for c in calls.cost if c is not None), Decimal(0)),
        "latency_p50": _quantile(ok.latency_s, 0.5),
        "latency_p95": _quantile(ok.latency_s, 0.95),
        "ttft_p50": _quantile(ok.ttft_s, 0.5),
        "ttft_p95": _quantile(ok.ttft_s, 0.95),
        "error_classes": ", ".join(f"{k} ×{n}" for k, n in classes.most_common()),
    }


def _quantile(values: Any, q: float) -> float | None:
    present = values.dropna()
    return None if present.empty else float(present.quantile(q))
