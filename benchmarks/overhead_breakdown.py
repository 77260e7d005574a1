"""Where AutoPicker's per-call self-time goes: ``overhead.py``'s ratios with the per-call work of one
feature switched off at a time, then of all of them together (a diagnostic, run by hand).

Each configuration runs in a fresh interpreter that measures ``with_fallbacks`` and AutoPicker side by
side, round-robin in small batches, and keeps the mean of the fastest fifth of the batches (the least
disturbed by the machine). Switching a feature off means replacing its per-call step with a no-op in
that process only: the answers stay right for this benchmark, but nothing here is a supported setting.

    .venv/bin/python benchmarks/overhead_breakdown.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# feature -> (what it gives, which per-call step of it is switched off)
FEATURES: dict[str, tuple[str, str]] = {
    "health": ("health(): each model's recent attempts", "RecentAttempts.add"),
    "finish": ("finish reason / truncation in the footer", "finish_reason"),
    "saved": ("what a fallback saved against the primary", "Spend.primary_cost"),
    "cassette": ("cassettes: is one active?", "the cassette lookup"),
    "events": ("live retry status in %%llm", "tell"),
    "scrub": ("keys taken out of the provider's exception itself", "scrub"),
    "codes": ("structured provider error codes", "codes_of"),
    "keyvars": ("every provider's key variables redacted", "secret_values (remembered keys only)"),
}


def switch_off(name: str) -> None:
    from coffee_nb._shared import _redact
    from coffee_nb.errors import _errors
    from coffee_nb.invoke import _attempt, _health, _plan, _spend

    if name == "health":
        _health.RecentAttempts.add = lambda self, record: None  # type: ignore[method-assign]
    elif name == "finish":
        _spend.finish_reason = lambda metadata: None  # type: ignore[assignment]
    elif name == "saved":
        _spend.Spend.primary_cost = lambda self, cand, usage: None  # type: ignore[method-assign]
    elif name == "cassette":
        _attempt.active_cassette = lambda: None  # type: ignore[assignment]
    elif name == "events":
        _plan.tell = lambda *args, **kwargs: None  # type: ignore[assignment]
    elif name == "scrub":
        _errors.scrub = lambda exc, secrets=None: exc  # type: ignore[assignment]
    elif name == "codes":
        _errors.codes_of = lambda exc: ""  # type: ignore[assignment]
    elif name == "keyvars":
        _errors.secret_values = lambda: sorted(_redact._SECRETS, key=len, reverse=True)  # type: ignore[assignment]
    else:
        raise SystemExit(f"no feature {name!r}: pick from {', '.join(FEATURES)}")


def measure(off: list[str], rounds: int) -> dict[str, float]:
    """In this process: switch ``off`` off, then time the variants side by side."""
    sys.path.insert(0, str(Path(__file__).parent))
    from overhead import Bare, budget, sinks  # the same fake model and setup as overhead.py

    from coffee_nb import AutoPicker, Policy, register_price

    for name in off:
        switch_off(name)
    register_price("bench/bare", input=0.15, output=0.6)
    register_price("bench/bare2", input=0.15, output=0.6)
    bare, bare2, failing = Bare(), Bare(name_="bare2"), Bare(name_="failing", fail=True)
    variants: dict[str, Any] = {
        "bare": bare,
        "lc": bare.with_fallbacks([bare2]),
        "ap_nb": AutoPicker(bare, [bare2], metrics=sinks(), policy=Policy(max_retries=0)),
        "ap": AutoPicker(bare, [bare2], metrics=sinks(), budget=budget(), policy=Policy(max_retries=0)),
        "lc_fail": failing.with_fallbacks([bare2]),
        "ap_fail": AutoPicker(
            failing, [bare2], metrics=sinks(), budget=budget(), policy=Policy(max_retries=0, cooldown_after=10**9)
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for runnable in variants.values():
        for _ in range(300):
            runnable.invoke("hello")
    batch = 20
    for _ in range(rounds):
        for key, runnable in variants.items():
            start = time.perf_counter_ns()
            for _ in range(batch):
                runnable.invoke("hello")
            times[key].append((time.perf_counter_ns() - start) / batch / 1000)

    def calm(values: list[float]) -> float:
        ordered = sorted(values)
        return statistics.fmean(ordered[: max(1, len(ordered) // 5)])

    m = {k: calm(v) for k, v in times.items()}
    lc_self = m["lc"] - m["bare"]
    return {
        "no budget": (m["ap_nb"] - m["bare"]) / lc_self,
        "budget": (m["ap"] - m["bare"]) / lc_self,
        "failure": m["ap_fail"] / m["lc_fail"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--off", help=argparse.SUPPRESS)  # a child run: features to switch off, comma-separated
    args = parser.parse_args()
    if args.off is not None:
        print(json.dumps(measure([f for f in args.off.split(",") if f], args.rounds)))
        return
    rows = [("everything on", "")] + [(f"without {name}", name) for name in FEATURES]
    rows.append(("without all of the above", ",".join(FEATURES)))
    print(f"self-time ratio AutoPicker / with_fallbacks ({args.rounds} rounds each, fastest fifth of the batches)")
    print(f"  {'':40s} {'no budget':>10s} {'budget':>8s} {'failure':>8s}")
    for label, off in rows:
        out = subprocess.run(
            [sys.executable, __file__, "--rounds", str(args.rounds), "--off", off],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        why = f"  ({FEATURES[off][0]})" if off in FEATURES else ""
        print(f"  {label:40s} {r['no budget']:10.2f} {r['budget']:8.2f} {r['failure']:8.3f}{why}")


if __name__ == "__main__":
    main()
