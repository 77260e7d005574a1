"""Hedged requests against a heavy-tailed primary: p99 latency and mean cost, with and without hedging.

The primary is a sandbox model whose latency is lognormal with p99 ≈ 10 × p50; the backup has the same
price and a steady latency. Each variant makes the same sequence of calls (interleaved, so noise hits
both alike); cost counts every record of a call, the cancelled loser's included. Targets (issue 19):
p99 with hedging ≤ 0.3 × p99 without, at ≤ 1.15 × the mean cost.

Two workloads: ``invoke`` (latency of the whole answer) and ``stream`` (``picker.stream``, hedged on the
first token: time to first token and total time of the stream, both measured by the caller). A hedge
shortens a stream's wait for its first token, not the generation after it, so the p99 of a stream's
total time falls less than its time to first token does when generation takes longer than that wait.

    .venv/bin/python benchmarks/hedge.py [--calls 1000] [--hedge-after p50] [--mode invoke|stream|both]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from coffee_nb import AutoPicker, Policy, capture_records, sandbox
from coffee_nb.sandbox import SandboxModel, add_model


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Variant:
    """The numbers of one variant: per call, the times measured and the cost of every record."""

    def __init__(self, picker: AutoPicker) -> None:
        self.picker = picker
        self.times: dict[str, list[float]] = {}
        self.costs: list[Decimal] = []
        self.hedges = 0

    def measure(self, call: Callable[[AutoPicker], dict[str, float]]) -> None:
        with capture_records() as records:
            for name, seconds in call(self.picker).items():
                self.times.setdefault(name, []).append(seconds)
        self.costs.append(sum((r.cost or Decimal(0)) for r in records))
        self.hedges += any(r.role == "hedge" for r in records)


def invoke(prompt: str) -> Callable[[AutoPicker], dict[str, float]]:
    def call(picker: AutoPicker) -> dict[str, float]:
        start = time.perf_counter()
        picker.invoke(prompt)
        return {"latency": time.perf_counter() - start}

    return call


def stream(prompt: str) -> Callable[[AutoPicker], dict[str, float]]:
    def call(picker: AutoPicker) -> dict[str, float]:
        start = time.perf_counter()
        first = None
        for chunk in picker.stream(prompt):
            if first is None and chunk.content:
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        return {"ttft": total if first is None else first, "total": total}

    return call


def compare(mode: str, calls: int, hedge_after: float | str) -> None:
    policy = Policy(max_retries=0)
    plain = Variant(AutoPicker("sandbox/tail", ["sandbox/steady"], policy=policy))
    hedged = Variant(
        AutoPicker("sandbox/tail", ["sandbox/steady"], policy=Policy(max_retries=0, hedge_after=hedge_after))
    )
    make = invoke if mode == "invoke" else stream
    for variant in (plain, hedged):  # warm up: clients, and the latency history a percentile needs
        for i in range(30):
            make(f"warm-up {i}")(variant.picker)
    for i in range(calls):
        for variant in (plain, hedged):
            variant.measure(make(f"question {i}"))
    print(f"{mode}: {calls} calls per variant, primary lognormal (p50 40 ms, sigma 0.99), hedge_after={hedge_after!r}")
    names = list(plain.times)
    header = "".join(f" {name + ' p50/p95/p99 ms':>28}" for name in names)
    print(f"  {'variant':<8}{header} {'mean cost':>14} {'hedged':>7}")
    for label, variant in (("plain", plain), ("hedged", hedged)):
        cells = "".join(
            f" {'/'.join(f'{quantile(variant.times[n], q) * 1000:.1f}' for q in (0.5, 0.95, 0.99)):>28}" for n in names
        )
        print(f"  {label:<8}{cells} {statistics.fmean(variant.costs):14.10f} {variant.hedges:7d}")
    for name in names:
        ratio = quantile(hedged.times[name], 0.99) / quantile(plain.times[name], 0.99)
        print(f"  p99 {name} hedged / plain: {ratio:.2f} (target <= 0.30)")
    if mode == "stream":  # hedging shortens the wait for the first token; the tokens after it take as long
        gen = [
            statistics.median(t - f for t, f in zip(v.times["total"], v.times["ttft"], strict=True))
            for v in (plain, hedged)
        ]
        print(f"  (generation after the first token, p50: {gen[0] * 1000:.1f} ms plain, {gen[1] * 1000:.1f} ms hedged)")
    cost = statistics.fmean(hedged.costs) / statistics.fmean(plain.costs)
    print(f"  mean cost hedged / plain: {cost:.3f} (target <= 1.15)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--hedge-after", default="p50", help="seconds, or a percentile of the primary's latency")
    parser.add_argument("--mode", choices=("invoke", "stream", "both"), default="both")
    args = parser.parse_args()
    hedge_after: float | str = args.hedge_after if args.hedge_after.startswith("p") else float(args.hedge_after)
    add_model(SandboxModel(name="tail", description="heavy tail", latency_ms=40, latency_sigma=0.99))
    add_model(SandboxModel(name="steady", description="steady", latency_ms=40, latency_sigma=0.1))
    sandbox.set_latency_scale(1.0)
    for mode in ("invoke", "stream") if args.mode == "both" else (args.mode,):
        compare(mode, args.calls, hedge_after)


if __name__ == "__main__":
    main()
