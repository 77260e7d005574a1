"""Process memory and first-call cost: AutoPicker over a ChatOpenAI vs the same ChatOpenAI unwrapped.

The sandbox runs in its own process; each variant runs in a fresh Python process that imports
LangChain, builds the model, makes one call (timed: the first-call overhead) and then 1 000 more,
and reports its resident memory (VmRSS) after them. Targets (issue 13): AutoPicker's RSS ≤ the
unwrapped model's + 15 MB, and its first call ≤ 50 ms slower.

    .venv/bin/python benchmarks/memory.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from throughput import start_sandbox

CHILD = r"""
import json, sys, time

def rss_mb():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024

url, calls, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from langchain_openai import ChatOpenAI
model = ChatOpenAI(model="fast", base_url=url, api_key="sandbox", max_retries=0, timeout=30)
if variant != "bare":
    import coffee_nb
    coffee_nb.register_price("openai/fast", input=0.15, output=0.6)
    kwargs = {}
    if variant == "full":
        kwargs = {"metrics": coffee_nb.LocalMetrics(), "budget": coffee_nb.Budget(daily=5, ledger="memory")}
    model = coffee_nb.AutoPicker(model, **kwargs)
prompt = "Explain p95 latency to a data scientist in three sentences."
before = rss_mb()
start = time.perf_counter()
model.invoke(prompt)
first = time.perf_counter() - start
for i in range(calls):
    model.invoke(f"{prompt} ({i})")
print(json.dumps({"before_mb": before, "first_s": first, "after_mb": rss_mb()}))
"""


def run(url: str, calls: int, variant: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(calls), variant], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    proc, url = start_sandbox()
    try:
        results: dict[str, list[dict[str, float]]] = {"bare": [], "autopicker": [], "full": []}
        for _ in range(args.rounds):  # alternate, so machine noise hits every variant alike
            for variant in results:
                results[variant].append(run(url, args.calls, variant))
    finally:
        proc.kill()
    best = {v: {k: min(r[k] for r in rs) for k in rs[0]} for v, rs in results.items()}
    bare = best["bare"]
    print(f"{args.calls} calls after the first, best of {args.rounds} rounds (fresh process each)")
    print(f"  {'variant':<34} {'RSS before':>10} {'RSS after':>10} {'first call':>11}")
    labels = {
        "bare": "ChatOpenAI unwrapped",
        "autopicker": "AutoPicker(ChatOpenAI)",
        "full": "AutoPicker + LocalMetrics + Budget",
    }
    for v, label in labels.items():
        b = best[v]
        print(f"  {label:<34} {b['before_mb']:8.1f} MB {b['after_mb']:8.1f} MB {b['first_s'] * 1000:8.1f} ms")
    for v in ("autopicker", "full"):
        extra = best[v]["after_mb"] - bare["after_mb"]
        first = (best[v]["first_s"] - bare["first_s"]) * 1000
        print(f"  {labels[v]}: RSS +{extra:.1f} MB (target <= 15), first call +{first:.1f} ms (target <= 50)")


if __name__ == "__main__":
    main()
