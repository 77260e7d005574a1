"""Several kernels against one hard cap, and a kernel killed mid-run: on SQLite and on Redis."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from coffee_nb import Budget

WORKER = str(Path(__file__).with_name("_worker.py"))
# Each call commits 5 input tokens (2 words + 3) and 4 output tokens at $0.001/token = $0.009. It reserves
# the worst case first: 8 estimated prompt tokens (o200k stand-in, with framing) + max_tokens=4, times the
# 1.25 margin for estimated counts = $0.015. So calls stop once less than $0.015 is left.
CALL_COST = Decimal("0.009")
WORST_CASE = Decimal("0.015")


@pytest.fixture(params=["sqlite", "redis"])
def ledger_spec(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "shared.sqlite3")
    return request.getfixturevalue("redis_url")


def _spawn(ledger: str, ns: str, cap: str, threads: int, delay: float, lease_ttl: float = 2.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, ledger, ns, cap, str(threads), str(delay), str(lease_ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_processes_sixteen_threads_never_exceed_the_cap(ledger_spec):
    ns = f"conc-{uuid.uuid4().hex[:8]}"
    cap = "0.5"  # room for 55 calls of $0.009; 64 threads race for them
    procs = [_spawn(ledger_spec, ns, cap, 16, 0.005) for _ in range(4)]
    lines: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        lines += out.splitlines()
    oks = [ln.split() for ln in lines if ln.startswith("ok ")]
    assert lines.count("done") == 4
    reported = sum((Decimal(c) for _, _, c in oks), Decimal(0))
    budget = Budget(total=Decimal(cap), ledger=ledger_spec, name=ns)
    assert budget.spent("total") == reported <= Decimal(cap)  # never past the cap
    assert all(Decimal(c) == CALL_COST for _, _, c in oks)
    assert Decimal(cap) - reported < WORST_CASE  # the cap was used up to one worst-case reservation
    assert len(budget.calls()) == len(oks)  # every committed call is in the ledger
    assert budget.status()["total"]["reserved"] == 0


def test_kill_9_mid_run_keeps_committed_calls_and_leases_expire(ledger_spec):
    ns = f"crash-{uuid.uuid4().hex[:8]}"
    # slow calls: leases are always in flight; a TTL long enough that a slow machine still sees them held
    proc = _spawn(ledger_spec, ns, "1000", 4, 0.3, lease_ttl=5)
    seen = []
    assert proc.stdout is not None
    while len(seen) < 6:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "worker died"
        if line.startswith("ok "):
            seen.append(line.split()[1])
    proc.kill()  # SIGKILL: no cleanup, no atexit
    proc.wait()
    budget = Budget(total=1000, ledger=ledger_spec, name=ns, lease_ttl=5)
    calls = budget.calls()
    assert {c.lease_id for c in calls}  # something was committed
    assert len(calls) >= len(seen)  # every call the worker saw committed is there (a few more may be)
    assert budget.spent("total") == sum((Decimal(c.amount) for c in calls), Decimal(0)) / Decimal(10**12)
    assert budget.status()["total"]["reserved"] > 0  # the dead kernel's in-flight holds...
    give_up = time.monotonic() + 15
    while budget.status()["total"]["reserved"] > 0 and time.monotonic() < give_up:
        time.sleep(0.25)
    assert budget.status()["total"]["reserved"] == 0  # ...expire with their lease (5 s)
