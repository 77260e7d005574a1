"""One ledger contract, three backends: the same tests run on memory, SQLite and Redis."""

from __future__ import annotations

import threading
import uuid

import pytest

from coffee_nb.budget import CallRow, MemoryLedger
from coffee_nb.budget._ledger import LimitHit
from coffee_nb.budget._redis import RedisLedger
from coffee_nb.budget._sqlite import SQLiteLedger


@pytest.fixture(params=["memory", "sqlite", "redis"])
def ledger(request, tmp_path):
    if request.param == "memory":
        led = MemoryLedger()
    elif request.param == "sqlite":
        led = SQLiteLedger(tmp_path / "l.sqlite3", namespace="t")
    else:
        url = request.getfixturevalue("redis_url")
        led = RedisLedger(url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    yield led
    led.close()


def row(lease: str, amount: int, model: str = "m") -> CallRow:
    return CallRow(lease, model, amount, 1000.0)


def test_reserve_commit_moves_hold_to_spend(ledger):
    ledger.reserve("a", 50, ["b1", "b2"], [("b1", 100)], expires=2000, now=1000)
    assert ledger.reserved(["b1", "b2"], now=1000) == [50, 50]
    assert ledger.commit("a", 30, ["b1", "b2", "b3"], row("a", 30), watch=["b3", "zz"]) == [30, 0]
    assert ledger.reserved(["b1", "b2"], now=1000) == [0, 0]
    assert ledger.spent(["b1", "b2", "b3", "missing"]) == [30, 30, 30, 0]


def test_hard_check_counts_spend_and_holds(ledger):
    ledger.reserve("a", 60, ["b"], [("b", 100)], expires=2000, now=1000)
    with pytest.raises(LimitHit) as info:
        ledger.reserve("b", 50, ["b"], [("b", 100)], expires=2000, now=1000)
    hit = info.value
    assert (hit.bucket, hit.limit, hit.spent, hit.reserved) == ("b", 100, 0, 60)
    ledger.reserve("c", 40, ["b"], [("b", 100)], expires=2000, now=1000)  # exactly fits
    assert ledger.reserved(["b"], now=1000) == [100]


def test_release_frees_the_hold(ledger):
    ledger.reserve("a", 70, ["b"], [("b", 100)], expires=2000, now=1000)
    ledger.release("a")
    ledger.release("a")  # twice is harmless
    ledger.reserve("b", 100, ["b"], [("b", 100)], expires=2000, now=1000)
    assert ledger.spent(["b"]) == [0]


def test_leases_expire(ledger):
    ledger.reserve("a", 100, ["b"], [("b", 100)], expires=1010, now=1000)
    with pytest.raises(LimitHit):
        ledger.reserve("b", 1, ["b"], [("b", 100)], expires=1020, now=1005)
    assert ledger.reserved(["b"], now=1011) == [0]
    ledger.reserve("c", 100, ["b"], [("b", 100)], expires=1100, now=1011)
    # committing an expired lease still records the money spent
    ledger.commit("a", 5, ["b"], row("a", 5))
    assert ledger.spent(["b"]) == [5]


def test_commit_is_idempotent(ledger):
    ledger.reserve("a", 10, ["b"], [], expires=2000, now=1000)
    assert ledger.commit("a", 10, ["b"], row("a", 10)) == []
    assert ledger.commit("a", 10, ["b"], row("a", 10), watch=["b"]) is None
    assert ledger.spent(["b"]) == [10]
    assert [c.lease_id for c in ledger.calls()] == ["a"]


def test_calls_history_and_limit(ledger):
    for i in range(5):
        ledger.commit(f"k{i}", i, ["b"], row(f"k{i}", i, model=f"m{i}"))
    assert [c.model for c in ledger.calls()] == ["m0", "m1", "m2", "m3", "m4"]
    assert [c.amount for c in ledger.calls(2)] == [3, 4]


def test_reset_by_prefix(ledger):
    ledger.commit("a", 10, ["global|d:2026-01-01", "global|total", "model:x|d:2026-01-01"], row("a", 10))
    ledger.reset(["global|d:"])
    assert ledger.spent(["global|d:2026-01-01", "global|total", "model:x|d:2026-01-01"]) == [0, 10, 10]
    ledger.reset(None)
    assert ledger.spent(["global|total", "model:x|d:2026-01-01"]) == [0, 0]


def test_big_amounts_stay_exact(ledger):
    big = 123_456_789_012_345_678  # ~$123k in picodollars
    ledger.reserve("a", big, ["b"], [("b", big * 2)], expires=2000, now=1000)
    ledger.commit("a", big, ["b"], row("a", big))
    ledger.commit("c", big, ["b"], row("c", big))
    assert ledger.spent(["b"]) == [2 * big]
    assert ledger.reserved(["b"], now=1000) == [0]


def test_threads_never_overshoot(ledger):
    limit, amount = 1000, 7
    ok = []

    def worker(n: int) -> None:
        for i in range(40):
            lease = f"{n}-{i}"
            try:
                ledger.reserve(lease, amount, ["b"], [("b", limit)], expires=10**10, now=1000)
            except LimitHit:
                continue
            ledger.commit(lease, amount, ["b"], row(lease, amount))
            ok.append(lease)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = ledger.spent(["b"])[0]
    assert spent <= limit and spent == len(ok) * amount == (limit // amount) * amount
    assert len(ledger.calls()) == len(ok)
