"""What the SQLite ledger's fast path must not cost: lazy purging, the one-statement reserve, the
settle triggers, and the migration of a version-1 file. Two ledgers on one file are two connections,
as two kernels would be."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from coffee_nb.budget import CallRow
from coffee_nb.budget._ledger import LimitHit
from coffee_nb.budget._sqlite import SQLiteLedger


@pytest.fixture
def path(tmp_path):
    return tmp_path / "shared.sqlite3"


@pytest.fixture
def pair(path):
    a, b = SQLiteLedger(path, namespace="t"), SQLiteLedger(path, namespace="t")
    yield a, b
    a.close()
    b.close()


def row(lease: str, amount: int) -> CallRow:
    return CallRow(lease, "m", amount, 1000.0)


def test_an_expired_lease_of_another_kernel_does_not_block(pair):
    a, b = pair
    a.reserve("a1", 100, ["total"], [("total", 100)], expires=1010, now=1000)
    with pytest.raises(LimitHit) as info:
        b.reserve("b1", 1, ["total"], [("total", 100)], expires=1020, now=1005)  # still held
    assert info.value.reserved == 100
    # a's kernel died; nothing purged its lease since, and the fast check alone would refuse
    b.reserve("b2", 100, ["total"], [("total", 100)], expires=1100, now=1011)
    assert a.reserved(["total"], now=1011) == [100]  # b's hold only


def test_expired_leases_are_purged_before_several_checks_fail(pair):
    a, b = pair
    a.reserve("a1", 60, ["day", "total"], [("day", 100), ("total", 1000)], expires=1010, now=1000)
    with pytest.raises(LimitHit) as info:
        b.reserve("b1", 50, ["day", "total"], [("total", 1000), ("day", 100)], expires=1020, now=1005)
    assert (info.value.bucket, info.value.spent, info.value.reserved) == ("day", 0, 60)
    b.reserve("b2", 100, ["day", "total"], [("total", 1000), ("day", 100)], expires=1100, now=1011)
    assert b.reserved(["day", "total"], now=1011) == [100, 100]


def test_commit_after_another_kernel_purged_the_lease_spends_once_and_holds_nothing(pair):
    a, b = pair
    a.reserve("a1", 70, ["total"], [("total", 100)], expires=1010, now=1000)
    assert b.reserved(["total"], now=1011) == [0]  # b purges a's expired lease
    assert a.commit("a1", 50, ["total", "day"], row("a1", 50), watch=["total"]) == [50]
    assert a.commit("a1", 50, ["total", "day"], row("a1", 50)) is None
    assert b.commit("a1", 50, ["total", "day"], row("a1", 50)) is None  # idempotent across connections
    a.release("a1")  # after the commit: harmless
    assert b.spent(["total", "day"]) == [50, 50]
    assert b.reserved(["total", "day"], now=1011) == [0, 0]


def test_commit_and_release_give_back_exactly_what_was_held(pair):
    a, b = pair
    a.reserve("a1", 30, ["x", "x", "y"], [("x", 1000)], expires=2000, now=1000)  # a bucket named twice
    b.reserve("b1", 5, ["y"], [], expires=2000, now=1000)  # no hard checks: held all the same
    assert a.reserved(["x", "y"], now=1000) == [60, 35]
    a.commit("a1", 20, ["x", "y"], row("a1", 20))
    b.release("b1")
    assert a.reserved(["x", "y"], now=1000) == [0, 0]
    assert a.spent(["x", "y"]) == [20, 20]


def test_limits_beyond_64_bits_still_check_exactly(path):
    led = SQLiteLedger(path)
    huge = 10**19 * 7  # e.g. Budget(total=7e7) in picodollars: more than SQLite's integers hold
    led.reserve("a", 10**18, ["total"], [("total", huge)], expires=2000, now=1000)
    led.reserve("b", 10**18, ["total", "day"], [("total", huge), ("day", huge)], expires=2000, now=1000)
    with pytest.raises(LimitHit):
        led.reserve("c", 3, ["total"], [("total", 2 * 10**18 + 2)], expires=2000, now=1000)
    led.reserve("c", 2, ["total"], [("total", 2 * 10**18 + 2)], expires=2000, now=1000)  # exactly fits
    assert led.reserved(["total"], now=1000) == [2 * 10**18 + 2]
    led.close()


def test_two_connections_racing_never_overshoot(pair):
    limit, amount, ok = 1000, 7, []
    lock = threading.Lock()

    def worker(led: SQLiteLedger, n: int) -> None:
        for i in range(40):
            lease = f"{n}-{i}"
            try:
                led.reserve(lease, amount, ["b"], [("b", limit)], expires=10**10, now=1000)
            except LimitHit:
                continue
            led.commit(lease, amount, ["b"], row(lease, amount))
            with lock:
                ok.append(lease)

    threads = [threading.Thread(target=worker, args=(pair[n % 2], n)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pair[0].spent(["b"]) == [len(ok) * amount] == [(limit // amount) * amount]
    assert pair[1].reserved(["b"], now=1000) == [0]


def test_a_version_1_file_is_migrated_with_its_spend_holds_and_history(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE spend (ns TEXT NOT NULL, bucket TEXT NOT NULL, amount INTEGER NOT NULL,
                            PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
        CREATE TABLE held (ns TEXT NOT NULL, bucket TEXT NOT NULL, amount INTEGER NOT NULL,
                           PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
        CREATE TABLE leases (ns TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL,
                             buckets TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (ns, id));
        CREATE INDEX leases_by_expiry ON leases (ns, expires);
        CREATE TABLE calls (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, id TEXT NOT NULL, model TEXT NOT NULL,
                            amount INTEGER NOT NULL, at REAL NOT NULL, priced INTEGER NOT NULL);
        CREATE UNIQUE INDEX calls_by_id ON calls (ns, id);
        INSERT INTO spend VALUES ('t', 'total', 40), ('t', 'day', 40), ('u', 'total', 7);
        INSERT INTO held VALUES ('t', 'total', 25), ('t', 'day', 25);
        INSERT INTO leases VALUES ('t', 'open', 25, 'total' || char(10) || 'day', 5000);
        INSERT INTO calls (ns, id, model, amount, at, priced) VALUES ('t', 'old', 'm', 40, 900, 1);
        """
    )
    db.close()
    led, other = SQLiteLedger(path, namespace="t"), SQLiteLedger(path, namespace="u")  # the second finds it done
    assert led.spent(["total", "day"]) == [40, 40] and other.spent(["total"]) == [7]
    assert led.reserved(["total", "day"], now=1000) == [25, 25]
    assert [c.lease_id for c in led.calls()] == ["old"]
    assert led.commit("old", 40, ["total"], row("old", 40)) is None  # still idempotent
    led.commit("open", 10, ["total", "day"], row("open", 10))  # the old lease settles like a new one
    assert led.spent(["total", "day"]) == [50, 50]
    assert led.reserved(["total", "day"], now=1000) == [0, 0]
    led.close()
    other.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"buckets", "leases", "calls"}
