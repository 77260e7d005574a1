"""A kernel-like process for the concurrency and crash tests: threads calling AutoPicker under a budget.

    python _worker.py LEDGER NAMESPACE CAP THREADS DELAY [LEASE_TTL]

Prints one line per committed call ("ok <call_id> <cost>") and "done" at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from decimal import Decimal

import coffee_nb
from coffee_nb import AutoPicker, Budget, BudgetExceededError, register_price
from coffee_nb.testing import ScriptedChatModel


def main() -> None:
    ledger, namespace, cap, threads, delay = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    lease_ttl = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    register_price("fake/worker", input=1000, output=1000)  # $0.001 per token
    budget = Budget(total=Decimal(cap), ledger=ledger, name=namespace, lease_ttl=lease_ttl)
    model = ScriptedChatModel(model_name="worker", script=["four words right here"], delay=delay)
    llm = AutoPicker(model, budget=budget, max_tokens=4)
    lock = threading.Lock()

    def run(offset: float) -> None:
        time.sleep(offset)  # staggered: the threads never all sit between a commit and the next reserve
        while True:
            try:
                msg = llm.invoke("two words")
            except BudgetExceededError:
                return
            meta = coffee_nb.CallSummary.of(msg)
            with lock:
                print(f"ok {meta.call_id} {meta.cost}", flush=True)

    workers = [threading.Thread(target=run, args=(i * delay / threads,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("done", flush=True)


if __name__ == "__main__":
    main()
