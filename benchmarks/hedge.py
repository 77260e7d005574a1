"""Hedged requests against a heavy-tailed primary: p99 latency and mean cost, with and without hedging.

The primary is a sandbox model whose latency is lognormal with p99 ≈ 10 × p50; the backup has the same
price and a steady latency. Each variant makes the same sequence of calls (interleaved, so noise hits
both alike); cost counts every record of a call, the cancelled loser's included. Targets (issue 19):
p99 with hedging ≤ 0.3 × p99 without, at ≤ 1.15 × the mean cost.

    .venv/bin/python benchmarks/hedge.py [--calls 1000] [--hedge-after p50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal

from coffee_nb import AutoPicker, Policy, capture_records, sandbox
from coffee_nb.sandbox import SandboxModel, add_model


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--hedge-after", default="p50", help="seconds, or a percentile of the primary's latency")
    args = parser.parse_args()
    hedge_after: float | str = args.hedge_after if args.hedge_after.startswith("p") else float(args.hedge_after)
    add_model(SandboxModel(name="tail", description="heavy tail", latency_ms=40, latency_sigma=0.99))
    add_model(SandboxModel(name="steady", description="steady", latency_ms=40, latency_sigma=0.1))
    sandbox.set_latency_scale(1.0)
    plain = AutoPicker("sandbox/tail", ["sandbox/steady"], policy=Policy(max_retries=0))
    hedged = AutoPicker("sandbox/tail", ["sandbox/steady"], policy=Policy(max_retries=0, hedge_after=hedge_after))
    for picker in (plain, hedged):  # warm up: clients, and the latency history a percentile needs
        for i in range(30):
            picker.invoke(f"warm-up {i}")
    results: dict[str, tuple[list[float], list[Decimal], int]] = {"plain": ([], [], 0), "hedged": ([], [], 0)}
    for i in range(args.calls):
        for name, picker in (("plain", plain), ("hedged", hedged)):
            latencies, costs, hedges = results[name]
            with capture_records() as records:
                start = time.perf_counter()
                picker.invoke(f"question {i}")
                latencies.append(time.perf_counter() - start)
            costs.append(sum((r.cost or Decimal(0)) for r in records))
            results[name] = (latencies, costs, hedges + any(r.role == "hedge" for r in records))
    print(f"{args.calls} calls per variant, primary lognormal (p50 40 ms, sigma 0.99), hedge_after={hedge_after!r}")
    print(f"  {'variant':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean cost':>14} {'hedged':>7}")
    for name, (latencies, costs, hedges) in results.items():
        print(
            f"  {name:<8} {quantile(latencies, 0.5) * 1000:8.1f} {quantile(latencies, 0.95) * 1000:8.1f} "
            f"{quantile(latencies, 0.99) * 1000:8.1f} {statistics.fmean(costs):14.10f} {hedges:7d}"
        )
    p99 = quantile(results["hedged"][0], 0.99) / quantile(results["plain"][0], 0.99)
    cost = statistics.fmean(results["hedged"][1]) / statistics.fmean(results["plain"][1])
    print(f"  p99 hedged / plain: {p99:.2f} (target <= 0.30); mean cost hedged / plain: {cost:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
