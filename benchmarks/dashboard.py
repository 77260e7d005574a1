"""10 k calls through a fake model with a live dashboard attached vs without, in one run.

Both runs record into LocalMetrics and a memory Budget; the dashboard run also has a Dashboard
(budget gauge, latency histogram, cost table, counters) watching them, redrawing at its default
rate from its timer thread. Rounds alternate so machine noise hits both alike. Target: <= 1.05x.
Then what one redraw costs with ``--calls`` calls in the metrics: counters, gauge and cost table,
and all of it with the latency histogram's figure.

    .venv/bin/python benchmarks/dashboard.py [--calls 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from overhead import Bare

from coffee_nb import AutoPicker, Budget, LocalMetrics, register_price
from coffee_nb.notebook.widgets import Dashboard


def run(calls: int, with_dashboard: bool) -> tuple[float, int]:
    metrics = LocalMetrics()
    budget = Budget(daily=1_000_000, ledger="memory")
    board = Dashboard(metrics, budget) if with_dashboard else None
    llm = AutoPicker(Bare(), metrics=metrics, budget=budget)
    start = time.perf_counter()
    for _ in range(calls):
        llm.invoke("hello")
    elapsed = time.perf_counter() - start
    redraws = 0
    if board is not None:
        board.flush()
        redraws = sum(p.redraws for p in (board, board.gauge, board.histogram, board.costs))
        board.close()
    return elapsed, redraws


def redraw_ms(calls: int, repeat: int = 21) -> tuple[float, float]:
    """Median ms of one dashboard redraw without and with the histogram, ``calls`` calls recorded."""
    metrics = LocalMetrics()
    budget = Budget(daily=1_000_000, ledger="memory")
    llm = AutoPicker(Bare(), metrics=metrics, budget=budget)
    for _ in range(calls):
        llm.invoke("hello")
    board = Dashboard(metrics, budget)
    board._live.close()  # no timer redraws in between: only the ones timed here
    board.histogram_interval = float("inf")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for force in (False, True):
            t = time.perf_counter()
            board.redraw(force=force)
            times[force].append(time.perf_counter() - t)
    board.close()
    return statistics.median(times[False]) * 1e3, statistics.median(times[True]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    register_price("bench/bare", input=0.15, output=0.6)
    run(500, True)  # warm up imports, matplotlib, pandas
    plain, live, redraws = [], [], []
    for _ in range(args.rounds):
        plain.append(run(args.calls, False)[0])
        t, n = run(args.calls, True)
        live.append(t)
        redraws.append(n)
    a, b = statistics.median(plain), statistics.median(live)
    print(f"{args.calls} calls per run, {args.rounds} rounds each, alternating")
    print(f"  without dashboard  {a:7.2f} s   ({a / args.calls * 1e6:.0f} µs/call)")
    print(
        f"  with dashboard     {b:7.2f} s   ({b / args.calls * 1e6:.0f} µs/call, "
        f"{statistics.median(redraws):.0f} redraws)"
    )
    print(f"  ratio with / without: {b / a:.3f}  (target <= 1.05)")
    parts, full = redraw_ms(args.calls)
    print(f"one redraw, {args.calls} calls recorded (median of 21)")
    print(f"  counters, gauge, cost table   {parts:7.2f} ms")
    print(f"  and the histogram             {full:7.2f} ms")


if __name__ == "__main__":
    main()
