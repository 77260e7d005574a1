"""Budget costs per ledger, side by side in one run: memory, SQLite, Redis.

1. reserve + commit per call (what AutoPicker adds to every attempt), median µs;
2. a ``status()`` query after 1 k and after 1 M recorded calls (target ratio ≤ 1.1: spend lives in
   per-period buckets, so history length must not matter); and reserve + commit again, on both
   (a year of period buckets spreads a call's buckets over more pages than a fresh ledger's).

History is loaded in bulk straight into each ledger's own tables/keys (1 M calls spread over a year
and 20 models, every period bucket filled the way commits fill them), because 1 M one-by-one
commits would only measure the loading.

    .venv/bin/python benchmarks/budget.py [--calls 1000000] [--redis URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from coffee_nb import Budget
from coffee_nb.budget import MemoryLedger
from coffee_nb.budget._redis import RedisLedger
from coffee_nb.budget._sqlite import SQLiteLedger
from coffee_nb.testing import redis_server

MODELS = [f"provider/model-{i}" for i in range(20)]
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
YEAR = 365 * 24 * 3600.0


def make_budget(kind: str, tmp: Path, redis_url: str | None, name: str) -> Budget:
    ledger: Any = {"memory": "memory", "sqlite": tmp / f"{name}.sqlite3", "redis": redis_url}[kind]
    return Budget(
        hourly=1e6,
        daily=1e6,
        weekly=1e6,
        monthly=1e6,
        total=1e7,
        per_model={MODELS[0]: {"daily": 1e5}, MODELS[1]: {"monthly": 1e5}},
        ledger=ledger,
        name=name,
        timezone="UTC",
    )


def median_us(fn: Any, n: int) -> float:
    for _ in range(min(50, n)):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def bulk_history(budget: Budget, n: int) -> None:
    """Write ``n`` committed calls (and their bucket totals) straight into the ledger."""
    amount = 1_000_000  # $0.000001 each, in picodollars
    per_bucket: Counter[str] = Counter()
    rows = []
    for i in range(n):
        t = START + YEAR * i / n
        model = MODELS[i % len(MODELS)]
        when = datetime.fromtimestamp(t, UTC)
        for b in budget._all_buckets(model, when):  # the same buckets a commit fills
            per_bucket[b] += amount
        rows.append((uuid.uuid4().hex, model, amount, t))
    ledger = budget.ledger
    if isinstance(ledger, MemoryLedger):
        for b, v in per_bucket.items():
            ledger._spent[b] = ledger._spent.get(b, 0) + v
        ledger._calls.extend((r[0], r[1], r[2], r[3], True) for r in rows)
        ledger._committed.update(r[0] for r in rows)
    elif isinstance(ledger, SQLiteLedger):
        db = ledger._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO calls (ns, id, model, amount, at, priced) VALUES (?,?,?,?,?,1)",
            [(ledger.ns, *r) for r in rows],
        )
        db.executemany(
            "INSERT INTO buckets (ns, bucket, spent) VALUES (?,?,?) "
            "ON CONFLICT (ns, bucket) DO UPDATE SET spent = spent + excluded.spent",
            [(ledger.ns, b, v) for b, v in per_bucket.items()],
        )
        db.execute("COMMIT")
    else:
        assert isinstance(ledger, RedisLedger)
        pipe = ledger._r.pipeline(transaction=False)
        for k in range(0, len(rows), 10_000):
            chunk = rows[k : k + 10_000]
            pipe.rpush(f"{ledger.prefix}:calls", *[json.dumps([r[0], r[1], r[2], r[3], True]) for r in chunk])
            pipe.sadd(f"{ledger.prefix}:done", *[r[0] for r in chunk])
            pipe.execute()
        items = list(per_bucket.items())
        for k in range(0, len(items), 10_000):
            for b, v in items[k : k + 10_000]:
                pipe.hincrby(f"{ledger.prefix}:spent", b, v)
            pipe.execute()


def reserve_commit(budget: Budget) -> None:
    lease = budget.reserve(MODELS[0], Decimal("0.0001"))
    budget.commit(lease, Decimal("0.00008"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--redis", default=None, help="use this Redis instead of starting redis-server")
    args = parser.parse_args()
    server = None
    redis_url = args.redis
    if redis_url is None:
        try:
            server = redis_server()
            redis_url = server.__enter__()
        except FileNotFoundError:
            print("redis-server not found: Redis rows skipped (apt-get install redis-server)")
    kinds = ["memory", "sqlite"] + (["redis"] if redis_url else [])
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            print("reserve + commit per call (median µs; 5 periods + per-model rules; all buckets updated)")
            for kind in kinds:
                budget = make_budget(kind, tmp, redis_url, f"rc-{kind}-{uuid.uuid4().hex[:6]}")
                print(f"  {kind:<7} {median_us(lambda b=budget: reserve_commit(b), 2000):8.1f} µs")
            print(f"status() query after 1 k vs after {args.calls:,} recorded calls (median µs)")
            for kind in kinds:
                small = make_budget(kind, tmp, redis_url, f"s-{kind}-{uuid.uuid4().hex[:6]}")
                big = make_budget(kind, tmp, redis_url, f"b-{kind}-{uuid.uuid4().hex[:6]}")
                bulk_history(small, 1000)
                t = time.perf_counter()
                bulk_history(big, args.calls)
                load = time.perf_counter() - t
                q_small = median_us(small.status, 300)
                q_big = median_us(big.status, 300)
                q_small2 = median_us(small.status, 300)  # again, so drift shows
                small_med = statistics.median([q_small, q_small2])
                print(
                    f"  {kind:<7} 1k: {small_med:8.1f}   {args.calls:,}: {q_big:8.1f}   ratio {q_big / small_med:.2f}"
                    f"  (target <= 1.10; load took {load:.0f}s)"
                )
                rc_small = median_us(lambda b=small: reserve_commit(b), 1000)
                rc_big = median_us(lambda b=big: reserve_commit(b), 1000)
                print(f"          reserve + commit after 1k: {rc_small:8.1f}   after {args.calls:,}: {rc_big:8.1f}")
    finally:
        if server is not None:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
