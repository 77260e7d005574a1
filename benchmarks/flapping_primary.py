"""A flapping primary, by hand: down for a while (every request gets 503), then healthy again.

One request every ``--every`` seconds (default 4) through ``AutoPicker("sandbox/fast", ["sandbox/smart"])``
for ``--run`` seconds (default 100), the primary down for the first ``--down`` seconds (default 60).
Prints when the primary was tried (the sandbox's request log), which model answered each request, the
breaker's state before each request (``picker.health()``), and how long after the recovery the primary
answered again (issue 24: within 30 s under this traffic).

    .venv/bin/python benchmarks/flapping_primary.py [--down 60] [--run 100] [--every 4]
"""

from __future__ import annotations

import argparse
import time

from coffee_nb import AutoPicker, Policy, capture_records, sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=60.0, help="seconds the primary answers 503")
    parser.add_argument("--run", type=float, default=100.0, help="seconds of traffic")
    parser.add_argument("--every", type=float, default=4.0, help="seconds between requests")
    args = parser.parse_args()

    sandbox.set_latency_scale(0.0)
    picker = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy())
    picker.invoke("warm up both clients")  # building the clients is not part of the scenario
    sandbox.clear_log()
    sandbox.inject("sandbox/fast", [f"down:{args.down:g}"])
    start = time.monotonic()
    policy = picker.policy_in_force
    print(
        f"policy: cooldown_min={policy.cooldown_min:g}s, cooldown_max={policy.cooldown_max:g}s; "
        f"primary down for {args.down:g}s, a request every {args.every:g}s for {args.run:g}s"
    )
    back: float | None = None
    n = 0
    while (at := start + n * args.every) < start + args.run:
        time.sleep(max(0.0, at - time.monotonic()))
        state = picker.health()["sandbox/fast"].state
        sent = time.monotonic() - start
        with capture_records() as records:
            picker.invoke(f"request {n}")
        took = time.monotonic() - start - sent
        model = next(r.model for r in records if r.outcome == "ok")
        if back is None and model == "sandbox/fast" and sent >= args.down:
            back = sent
        print(f"  t={sent:6.1f}s  breaker {state:<9}  answered by {model:<13} in {took:5.2f}s")
        n += 1
    tried = [a["t"] - start for a in sandbox.attempts("sandbox/fast")]
    print("primary tried at (s):", ", ".join(f"{t:.1f}" for t in tried))
    if back is None:
        print(f"primary NOT back in use within {args.run - args.down:g}s of recovering")
    else:
        print(f"primary back in use {back - args.down:.1f}s after it recovered (at t={back:.1f}s)")


if __name__ == "__main__":
    main()
