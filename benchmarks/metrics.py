"""Metrics strategies side by side: per-record cost of emit(), and LocalMetrics at 1 M records.

Prints median ns per ``emit`` for NoOp, Local and Prometheus sinks (same records, interleaved; for
Local including the batched intake of what it queued), then
loads 1 M records into LocalMetrics and reports ``to_dataframe()`` time and DataFrame bytes per
record (targets: < 1 s and <= 300 B/record), and what ``snapshot()``, ``get_metrics()`` and
``summary()`` cost at that size.

    .venv/bin/python benchmarks/metrics.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

from coffee_nb import CallRecord, LocalMetrics, NoOpMetrics, Outcome, PrometheusMetrics, Role

MODELS = [f"provider/model-{i}" for i in range(8)]
OUTCOMES = [Outcome.OK] * 8 + [Outcome.ERROR]


def records(n: int, start: int = 0) -> list[CallRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(start, start + n):
        outcome = OUTCOMES[i % len(OUTCOMES)]
        out.append(
            CallRecord(
                call_id=f"call-{i // 2:08x}",
                attempt=i % 2,
                role=Role.PRIMARY if i % 2 == 0 else Role.FALLBACK,
                provider="provider",
                model=MODELS[i % len(MODELS)],
                outcome=outcome,
                started_at=now,
                latency_s=0.1 + (i % 100) / 100,
                error_class="server" if outcome is Outcome.ERROR else None,
                ttft_s=0.05 if i % 3 == 0 else None,
                input_tokens=100 + i % 50,
                output_tokens=40 + i % 30,
                cost=Decimal("0.000123") if i % 5 else None,
                price_source="genai-prices",
                fallback_from=MODELS[0] if i % 2 else None,
                fallback_reason="server" if i % 2 else None,
            )
        )
    return out


def per_record_ns(sink: object, recs: list[CallRecord]) -> float:
    emit = sink.emit  # type: ignore[attr-defined]
    gc.collect()
    t = time.perf_counter_ns()
    for r in recs:
        emit(r)
    if isinstance(sink, LocalMetrics):
        len(sink)  # a read takes in whatever is still queued: its cost belongs to emit
    return (time.perf_counter_ns() - t) / len(recs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    sample = records(20_000)
    results: dict[str, list[float]] = {"noop": [], "local": [], "prometheus": []}
    for _ in range(5):
        results["noop"].append(per_record_ns(NoOpMetrics(), sample))
        results["local"].append(per_record_ns(LocalMetrics(), sample))
        results["prometheus"].append(per_record_ns(PrometheusMetrics(), sample))
    print("emit() cost per record (median of 5 rounds × 20 k records)")
    for name, values in results.items():
        print(f"  {name:<10} {statistics.median(values):8.0f} ns")

    print(f"LocalMetrics with {args.records:,} records")
    local = LocalMetrics()
    load = 0.0
    for k in range(0, args.records, 50_000):  # distinct call ids throughout, like a real history
        batch = records(min(50_000, args.records - k), start=k)
        t = time.perf_counter()
        for r in batch:
            local.emit(r)
        len(local)  # take in the queued tail
        load += time.perf_counter() - t
    times = []
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        df = local.to_dataframe()
        times.append(time.perf_counter() - t)
    size = df.memory_usage(deep=True).sum()
    print(f"  emit all:            {load:6.2f} s")
    print(f"  to_dataframe():      {statistics.median(times):6.2f} s   (target < 1 s)")
    print(f"  DataFrame bytes/rec: {size / len(df):6.0f} B   (target <= 300 B; {len(df):,} rows, deep memory)")
    for name, read in (
        ("snapshot()", local.snapshot),
        ("get_metrics()", local.get_metrics),
        ("summary()", local.summary),
    ):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            read()
            times.append(time.perf_counter() - t)
        print(f"  {name + ':':<20} {statistics.median(times) * 1e3:6.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
