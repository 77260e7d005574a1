"""Blocks (``budget/_sqlite_blocks.py``): a busy kernel holds headroom in the SQLite file and reserves from it in
memory. What must still hold: a killed kernel's block is reclaimed and its spend counted; processes racing
for a hard cap never overrun it and use it up; near a cap blocks go back, and an idle kernel's block makes
another kernel's refusal early by at most that block; a version-2 file migrates with its spend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from coffee_nb.budget import CallRow
from coffee_nb.budget._ledger import LimitHit
from coffee_nb.budget._sqlite import SQLiteLedger
from coffee_nb.budget._sqlite_blocks import _FAR, _GROW_CALLS

AMOUNT = 7  # picodollars reserved per call (the worst case); each call then costs COST
COST = 5
FAR_CAP = AMOUNT * _FAR * 4  # far enough from the cap for blocks


def _calls(led: SQLiteLedger, prefix: str, n: int, cap: int, now: float = 1000.0) -> int:
    """Reserve-and-commit ``n`` calls (or until refused); how many were committed."""
    done = 0
    for i in range(n):
        lease = f"{prefix}-{i}"
        try:
            led.reserve(lease, AMOUNT, ["total", "day"], [("total", cap)], expires=now + 300, now=now)
        except LimitHit:
            break
        led.commit(lease, COST, ["total", "day"], CallRow(lease, "m", COST, now), watch=["total"])
        done += 1
    return done


def _held_rows(path: Path) -> list[tuple[str, int, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, amount, spent FROM leases").fetchall()
    finally:
        db.close()


def test_a_busy_kernel_reserves_from_a_block_that_others_see_held(tmp_path):
    path = tmp_path / "l.sqlite3"
    a, b = SQLiteLedger(path, namespace="t"), SQLiteLedger(path, namespace="t")
    assert _calls(a, "a", 40, FAR_CAP) == 40
    rows = _held_rows(path)
    assert len(rows) == 1 and rows[0][0].startswith("block:")  # one row holds headroom; no lease per call
    assert b.spent(["total", "day"]) == [40 * COST, 40 * COST]  # spend is exact for everyone at once
    assert b.reserved(["total"], now=1000.0) == [rows[0][1] - rows[0][2]]  # the block's unused part is held
    assert a.reserved(["total"], now=1000.0) == [0]  # ...by another kernel: a's own unused part is not in flight
    assert [c.amount for c in b.calls()] == [COST] * 40
    a.close()  # gives the block back, its spend folded into the buckets
    assert _held_rows(path) == [] and b.spent(["total", "day"]) == [40 * COST, 40 * COST]
    assert b.reserved(["total", "day"], now=1000.0) == [0, 0]
    b.close()


_KILLED = textwrap.dedent(
    """
    import os, sys
    from coffee_nb.budget import CallRow
    from coffee_nb.budget._sqlite import SQLiteLedger
    led = SQLiteLedger(sys.argv[1], namespace="t")
    for i in range(int(sys.argv[2])):
        led.reserve(f"k-{i}", 7, ["total", "day"], [("total", 10**9)], expires=1300.0, now=1000.0)
        led.commit(f"k-{i}", 5, ["total", "day"], CallRow(f"k-{i}", "m", 5, 1000.0), watch=["total"])
    led.reserve("k-open", 7, ["total", "day"], [("total", 10**9)], expires=1300.0, now=1000.0)  # in flight
    print("committed", flush=True)
    os.kill(os.getpid(), 9)  # no close, no atexit: the block stays in the file
    """
)


def test_a_killed_kernels_block_is_reclaimed_and_its_spend_counted(tmp_path):
    path = tmp_path / "l.sqlite3"
    run = subprocess.run([sys.executable, "-c", _KILLED, str(path), "30"], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "committed" and run.returncode == -9, run.stderr
    (block,) = _held_rows(path)
    assert block[0].startswith("block:") and 0 < block[2] < 30 * COST  # its spend lives in the block row
    led = SQLiteLedger(path, namespace="t")
    assert led.spent(["total", "day"]) == [30 * COST, 30 * COST]  # counted while the block lives
    assert led.reserved(["total"], now=1000.0) == [block[1] - block[2]]  # the dead kernel's headroom, held
    later = 1300.0 + 61  # past the block's expiry (its leases' expiry and at most a minute more)
    assert led.reserved(["total", "day"], now=later) == [0, 0]  # purged: nothing held any more...
    assert _held_rows(path) == []
    assert led.spent(["total", "day"]) == [30 * COST, 30 * COST]  # ...and its spend folded into the buckets
    led.reserve("new", 10**9 - 30 * COST, ["total"], [("total", 10**9)], expires=later + 300, now=later)
    led.close()


_RACER = textwrap.dedent(
    """
    import sys, threading
    from coffee_nb.budget import CallRow
    from coffee_nb.budget._ledger import LimitHit
    from coffee_nb.budget._sqlite import SQLiteLedger
    led = SQLiteLedger(sys.argv[1], namespace="t")
    cap, name, out, lock = int(sys.argv[2]), sys.argv[3], [], threading.Lock()
    def run(t):
        i = 0
        while True:
            lease = f"{name}-{t}-{i}"
            i += 1
            try:
                led.reserve(lease, 7, ["total", "day"], [("total", cap)], expires=10**10, now=1000.0)
            except LimitHit:
                return
            led.commit(lease, 5, ["total", "day"], CallRow(lease, "m", 5, 1000.0), watch=["total"])
            with lock:
                out.append(lease)
    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(out), flush=True)
    """
)


def test_two_processes_racing_with_blocks_never_overrun_and_use_the_cap_up(tmp_path):
    path = tmp_path / "l.sqlite3"
    cap = AMOUNT * (_FAR + 600)  # blocks at first, exact reservations near the end
    SQLiteLedger(path, namespace="t").close()  # the file exists before both start
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(cap), n], stdout=subprocess.PIPE, text=True)
        for n in ("p", "q")
    ]
    counts = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    led = SQLiteLedger(path, namespace="t")
    spent = led.spent(["total"])[0]
    assert spent == sum(counts) * COST == len(led.calls()) * COST  # every commit counted once
    assert spent <= cap  # never past the cap
    # used up: nothing more fits, and refusals came only when less than one worst case was left
    assert cap - spent < AMOUNT + COST
    assert led.reserved(["total"], now=1000.0) == [0]  # both gave their blocks back on exit
    led.close()


def test_near_the_cap_an_active_kernels_block_goes_back_and_an_idle_one_costs_at_most_its_block(tmp_path):
    path = tmp_path / "l.sqlite3"
    cap = AMOUNT * (_FAR + 100)
    a, b = SQLiteLedger(path, namespace="t"), SQLiteLedger(path, namespace="t")
    assert _calls(a, "a", 10, cap) == 10  # a holds a block now, and goes idle
    (block,) = _held_rows(path)
    idle = block[1] - block[2]  # its unused headroom: what b can't see as free
    assert 0 < idle <= _GROW_CALLS * AMOUNT
    b_calls = _calls(b, "b", 10**6, cap)  # b alone runs to the cap: blocks first, then exact near it
    left = cap - (10 + b_calls) * COST
    assert AMOUNT <= left < idle + AMOUNT  # refused early, by at most a's idle block
    # a goes on: it spends its block (in memory), then, near the cap, gives it back and reserves exactly
    a_more = _calls(a, "a2", 10**6, cap)
    assert [r for r in _held_rows(path) if r[0].startswith("block:")] == []
    b_more = _calls(b, "b2", 10**6, cap)
    assert cap - (10 + b_calls + a_more + b_more) * COST < AMOUNT  # every bit of headroom was used
    assert b.reserved(["total"], now=1000.0) == [0]
    a.close()
    b.close()


V2_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (ns TEXT NOT NULL, bucket TEXT NOT NULL, spent INTEGER NOT NULL DEFAULT 0,
                                    held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (ns TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL,
                                   buckets TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS leases_hold AFTER INSERT ON leases BEGIN
    INSERT INTO buckets (ns, bucket, held) SELECT NEW.ns, value, NEW.amount FROM json_each(NEW.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET held = held + excluded.held;
END;
CREATE TRIGGER IF NOT EXISTS leases_unhold AFTER DELETE ON leases BEGIN
    INSERT INTO buckets (ns, bucket, held) SELECT OLD.ns, value, -OLD.amount FROM json_each(OLD.buckets) WHERE 1
    ON CONFLICT (ns, bucket) DO UPDATE SET held = held + excluded.held;
END;
CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, id TEXT NOT NULL,
                                  model TEXT NOT NULL, amount INTEGER NOT NULL, at REAL NOT NULL,
                                  priced INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS calls_by_id ON calls (ns, id);
CREATE TRIGGER IF NOT EXISTS calls_settle AFTER INSERT ON calls BEGIN
    DELETE FROM leases WHERE ns = NEW.ns AND id = NEW.id;
END;
"""


def test_a_version_2_file_is_migrated_with_its_spend_holds_and_history(tmp_path):
    path = tmp_path / "l.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V2_SCHEMA)
    db.executescript(
        """
        INSERT INTO buckets (ns, bucket, spent) VALUES ('t', 'total', 40), ('t', 'day', 40), ('u', 'total', 7);
        INSERT INTO leases VALUES ('t', 'open', 25, '["total", "day"]', 5000);
        INSERT INTO calls (ns, id, model, amount, at, priced) VALUES ('t', 'old', 'm', 40, 900, 1);
        PRAGMA user_version=2;
        """
    )
    db.close()
    led, other = SQLiteLedger(path, namespace="t"), SQLiteLedger(path, namespace="u")
    assert led.spent(["total", "day"]) == [40, 40] and other.spent(["total"]) == [7]
    assert led.reserved(["total", "day"], now=1000) == [25, 25]
    assert led.commit("old", 40, ["total"], CallRow("old", "m", 40, 900)) is None  # still idempotent
    led.commit("open", 10, ["total", "day"], CallRow("open", "m", 10, 1000))
    assert led.spent(["total", "day"]) == [50, 50] and led.reserved(["total", "day"], now=1000) == [0, 0]
    assert _calls(led, "n", 20, FAR_CAP) == 20  # blocks work on the migrated file
    assert led.spent(["total"]) == [50 + 20 * COST]
    led.close()
    other.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


def test_blocks_wait_for_a_busy_key(tmp_path):
    """An occasional call holds nothing beyond itself: another kernel sees exactly its hold."""
    a = SQLiteLedger(tmp_path / "l.sqlite3", namespace="t")
    for i in range(5):
        a.reserve(f"x{i}", AMOUNT, ["total"], [("total", FAR_CAP)], expires=2000 + i, now=1000.0 + 2 * i)
        assert a.reserved(["total"], now=1000.0 + 2 * i) == [AMOUNT * (i + 1)]
    assert all(not r[0].startswith("block:") for r in _held_rows(tmp_path / "l.sqlite3"))
    a.close()
