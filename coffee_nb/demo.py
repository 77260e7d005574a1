"""``make demo``: coffee_nb's main job, offline, on the built-in sandbox provider. No keys, no network.

Runs a fallback chain through the sandbox's real HTTP path, injects an outage and a rate limit,
streams an answer, runs a batch, and prints what happened and what it cost.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from decimal import Decimal

from coffee_nb import AllModelsFailedError, AutoPicker, CallRecord, Policy, sandbox


def main() -> int:
    records: list[CallRecord] = []
    llm = AutoPicker(
        "sandbox/fast",
        ["sandbox/smart"],
        on_record=records.append,
        policy=Policy(backoff_base=0.05, backoff_cap=0.2, deadline=30),
    )
    print("coffee_nb demo — offline, on the sandbox provider (sandbox prices, not real ones)\n")

    answer = llm.invoke("What is coffee_nb for?")
    meta = answer.response_metadata["coffee_nb"]
    print(f"1. invoke        → {meta['model']}: {answer.content[:70]}…")

    sandbox.inject("sandbox/fast", ["rate_limit:0.1"])
    answer = llm.invoke("Try again after a rate limit")
    meta = answer.response_metadata["coffee_nb"]
    print(f"2. 429, retried  → {meta['model']} after {len(meta['attempts'])} attempts")

    sandbox.inject("sandbox/fast", ["overloaded"] * 3)
    answer = llm.invoke("The primary is down")
    meta = answer.response_metadata["coffee_nb"]
    print(f"3. outage        → fell back to {meta['model']} (reason: {meta['fallback_reason']})")

    print("4. stream        → ", end="", flush=True)
    for chunk in llm.stream("Stream a short answer"):
        print(chunk.content, end="", flush=True)
    print()

    answers = asyncio.run(llm.abatch([f"Question {i}" for i in range(8)]))
    print(f"5. async batch   → {len(answers)} answers")

    broken = AutoPicker("sandbox/no-such-model", ["sandbox/limited"], policy=Policy(max_retries=1, deadline=5, max_retry_after=0.5))
    try:
        broken.invoke("This chain cannot answer")
    except AllModelsFailedError as exc:
        print(f"6. all failed    → AllModelsFailedError with {len(exc.attempts)} attempts:")
        for line in str(exc).splitlines()[1:]:
            print("     " + line[:110])

    ok = [r for r in records if r.outcome == "ok"]
    cost = sum((r.cost for r in ok if r.cost is not None), Decimal(0))
    fallbacks = Counter(r.model for r in ok if r.role == "fallback")
    errors = Counter(r.error_class for r in records if r.outcome == "error")
    skipped = Counter(r.error_class for r in records if r.outcome == "skipped")
    print("\nSummary")
    print(f"  calls answered : {len(ok)}  (attempts: {len(records)})")
    print(f"  fallbacks      : {dict(fallbacks) or 'none'}")
    print(f"  errors by class: {dict(errors) or 'none'}")
    print(f"  skipped, why   : {dict(skipped) or 'none'}  (a cooling-down model is skipped, not called)")
    print(f"  tokens in/out  : {sum(r.input_tokens for r in ok)} / {sum(r.output_tokens for r in ok)}")
    print(f"  cost           : ${cost:.6f} (sandbox prices)")
    print(f"  p50 latency    : {sorted(r.latency_s for r in ok)[len(ok) // 2] * 1000:.0f} ms")
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
