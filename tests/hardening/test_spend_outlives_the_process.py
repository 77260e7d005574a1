"""Spend a failed write left in memory never depends on a later call: it is written in the background as
soon as the ledger works again, on close (the budget's, its ledger's, the session's) and when the process
ends, a Jupyter kernel's shutdown included. The same for calls recorded in a ledger file deleted while in
use, within the second before the ledger looks again.

The faults are real (a file size limit, a full tiny filesystem, a deleted file, Redis out of memory, a
read-only connection). Process A makes its call and exits at once, normally (no kill, no sleep, no close,
no further call); process B (this one) opens the ledger and sees every cent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from contextlib import suppress
from decimal import Decimal
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler

import coffee_nb
from coffee_nb import AutoPicker, ModelSpec
from coffee_nb.budget import Budget, BudgetWarning, _unsaved
from coffee_nb.budget._sqlite import SQLiteLedger
from coffee_nb.session._session import Session
from coffee_nb.testing import ScriptedChatModel, capture_records, sqlite_fault

REPO = Path(coffee_nb.__file__).resolve().parents[1]  # the checkout under test: process A imports it too
PICO = Decimal(10) ** 12


def _run(tmp_path: Path, body: str, *args: str) -> dict:
    """Run ``body`` as process A (this checkout's coffee_nb); what it printed last, as JSON."""
    script = tmp_path / "process_a.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COFFEE_NB_SANDBOX_LATENCY_SCALE": "0"}
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _total(ledger) -> Decimal:
    """What another kernel opening the ledger sees."""
    budget = Budget(total=1000, ledger=ledger)
    try:
        return budget.spent("total")
    finally:
        budget.close()


def _calls(path) -> int:
    budget = Budget(total=1000, ledger=path)
    try:
        return len(budget.calls())
    finally:
        budget.close()


# Process A's beginning: calls in a row, so the ledger holds a block of headroom and the next reservation
# writes nothing; its commit is the first write after the fault (see test_storage_faults).
_WARM = """
    import json, os, resource, sys, warnings
    from decimal import Decimal
    import coffee_nb
    from coffee_nb import AutoPicker
    from coffee_nb.budget import Budget
    from coffee_nb.testing import fill_disk

    warnings.simplefilter("ignore")
    path = sys.argv[1]
    budget = Budget(total=100, ledger=path)
    llm = AutoPicker("sandbox/fast", budget=budget)
    for n in range(6):
        llm.invoke(f"warm {n}")
    assert budget.ledger._blocks.by_key
"""


def test_spend_kept_after_a_file_size_limit_reaches_the_file_when_the_process_exits_right_after(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    a = _run(
        tmp_path,
        _WARM
        + """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    grown = max(os.path.getsize(path), os.path.getsize(f"{path}-wal"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (grown, hard))  # no file may grow: the commit fails (EFBIG)
    llm.invoke("paid")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # writes work again; the process ends now
    print(json.dumps({"kept": len(budget._unsaved.items), "spent": str(budget.spent("total"))}))
    """,
        str(path),
    )
    assert a["kept"] == 1  # the fault was real: the call's cost could not be written
    assert _total(path) == Decimal(a["spent"]) > 0
    assert _calls(path) == 7


def test_spend_kept_on_a_full_disk_reaches_the_file_when_the_process_exits_right_after(tiny_disk):
    path = tiny_disk / "ledger.sqlite3"
    a = _run(
        tiny_disk.parent,
        _WARM
        + """
    filler = fill_disk(os.path.dirname(path))
    n = 0
    while not budget._unsaved:  # a full disk refuses only writes that need new space
        n += 1
        assert n < 60, "the full disk never refused a write"
        llm.invoke(f"call {n}")
    os.remove(filler)  # room again; the process ends now
    print(json.dumps({"kept": len(budget._unsaved.items), "spent": str(budget.spent("total")), "calls": 6 + n}))
    """,
        str(path),
    )
    assert a["kept"] == 1
    assert _total(path) == Decimal(a["spent"]) > 0
    assert _calls(path) == a["calls"]


def test_calls_recorded_in_a_deleted_ledger_reach_the_new_file_when_the_process_exits(tmp_path):
    """The calls go to the deleted file (the ledger looks at most once a second), then the budget is dropped
    and the process ends: what the deleted file holds is carried to the file at the path."""
    path = tmp_path / "ledger.sqlite3"
    a = _run(
        tmp_path,
        """
    import json, os, sys, warnings
    from decimal import Decimal
    import coffee_nb
    from coffee_nb import AutoPicker
    from coffee_nb.budget import Budget

    warnings.simplefilter("ignore")
    path = sys.argv[1]

    def work():
        budget = Budget(total=100, ledger=path)
        llm = AutoPicker("sandbox/fast", budget=budget)
        costs = [coffee_nb.CallSummary.of(llm.invoke("before")).cost]
        for suffix in ("", "-wal", "-shm"):
            os.remove(path + suffix)
        costs.append(coffee_nb.CallSummary.of(llm.invoke("into the deleted file")).cost)
        return {"unnoticed": not os.path.exists(path), "spent": str(sum(costs))}

    print(json.dumps(work()))  # the budget and its ledger are gone with work()'s frame; the process ends now
    """,
        str(path),
    )
    assert a["unnoticed"]  # both calls were recorded in the deleted file only
    assert _total(path) == Decimal(a["spent"]) > 0
    assert _calls(path) == 2


def test_spend_kept_while_redis_refuses_writes_reaches_it_when_the_process_exits(tmp_path, redis_url):
    a = _run(
        tmp_path,
        """
    import json, sys, warnings
    import redis
    from langchain_core.callbacks import BaseCallbackHandler
    from coffee_nb import AutoPicker, ModelSpec, register_price
    from coffee_nb.budget import Budget
    from coffee_nb.testing import ScriptedChatModel

    warnings.simplefilter("ignore")
    url = sys.argv[1]
    server = redis.Redis.from_url(url)

    class OutOfMemory(BaseCallbackHandler):  # while the model answers: Redis refuses every write
        def on_chat_model_start(self, *args, **kwargs):
            server.config_set("maxmemory-policy", "noeviction")
            server.config_set("maxmemory", 1)

    register_price("fake/scripted", input=1, output=1)
    budget = Budget(total=100, ledger=url, name="exits-with-redis-oom")
    model = ScriptedChatModel(script=["paid answer"], callbacks=[OutOfMemory()])
    AutoPicker(ModelSpec(model=model, name="fake/scripted"), budget=budget).invoke("paid")
    kept = len(budget._unsaved.items)
    server.config_set("maxmemory", 0)  # writes work again; the process ends now
    print(json.dumps({"kept": kept, "spent": str(budget.spent("total"))}))
    """,
        redis_url,
    )
    assert a["kept"] == 1
    budget = Budget(total=1000, ledger=redis_url, name="exits-with-redis-oom")
    assert budget.spent("total") == Decimal(a["spent"]) > 0
    assert len(budget.calls()) == 1
    budget.close()


def test_a_kernel_shut_down_by_its_frontend_writes_kept_spend_and_carries_a_deleted_ledger(tmp_path, monkeypatch):
    """A Jupyter shutdown_request (what closing a notebook or restarting its kernel sends): the kernel stops
    its loop and exits normally, clearing its namespace and then running the exit hooks."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("COFFEE_NB_SANDBOX_LATENCY_SCALE", "0")
    full, deleted = tmp_path / "full.sqlite3", tmp_path / "deleted.sqlite3"
    cells = [
        "import json, os, resource, warnings\nimport coffee_nb\nfrom coffee_nb import AutoPicker\n"
        "from coffee_nb.budget import Budget\nwarnings.simplefilter('ignore')",
        # a file size limit during a call, lifted after it
        f"budget = Budget(total=100, ledger={str(full)!r})\nllm = AutoPicker('sandbox/fast', budget=budget)\n"
        "for n in range(6):\n    llm.invoke(f'warm {n}')\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)\n"
        "grown = max(os.path.getsize(budget.ledger.path), os.path.getsize(f'{budget.ledger.path}-wal'))\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (grown, hard))\nllm.invoke('paid')\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))\n"
        "print(json.dumps({'kept': len(budget._unsaved.items), 'spent': str(budget.spent('total'))}))",
        # a ledger deleted between two calls a moment apart
        f"other = Budget(total=100, ledger={str(deleted)!r})\npicker = AutoPicker('sandbox/fast', budget=other)\n"
        "costs = [coffee_nb.CallSummary.of(picker.invoke('before')).cost]\n"
        "for suffix in ('', '-wal', '-shm'):\n    os.remove(f'{other.ledger.path}{suffix}')\n"
        "costs.append(coffee_nb.CallSummary.of(picker.invoke('into the deleted file')).cost)\n"
        "print(json.dumps({'unnoticed': not os.path.exists(other.ledger.path), 'spent': str(sum(costs))}))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # shutdown_kernel="graceful" (the default): a shutdown_request, then the kernel process exits by itself
    NotebookClient(nb, timeout=120, kernel_name="python3", shutdown_kernel="graceful").execute()
    printed = ["".join(o.get("text", "") for o in c.outputs if o["output_type"] == "stream") for c in nb.cells[1:]]
    outputs = [json.loads(text.strip().splitlines()[-1]) for text in printed]
    assert outputs[0]["kept"] == 1 and outputs[1]["unnoticed"]
    assert _total(full) == Decimal(outputs[0]["spent"]) > 0
    assert _total(deleted) == Decimal(outputs[1]["spent"]) > 0


# -- in one process: the background retry, closing, and nothing counted twice ------------------------------
class FaultDuringCall(BaseCallbackHandler):
    """A SQLite fault (see ``sqlite_fault``) turned on while the model answers: after the reservation,
    before the commit."""

    def __init__(self, ledger, kind: str = "read_only") -> None:
        self.fault = sqlite_fault(ledger, kind)
        self.on = False

    def on_chat_model_start(self, *args, **kwargs) -> None:
        if not self.on:
            self.fault.__enter__()
            self.on = True

    def lift(self) -> None:
        if self.on:
            self.fault.__exit__(None, None, None)
            self.on = False


def _faulty(budget, fault: FaultDuringCall) -> AutoPicker:
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    model = ScriptedChatModel(script=["paid answer"], callbacks=[fault])
    return AutoPicker(ModelSpec(model=model, name="fake/scripted"), budget=budget)


def _until(done, what: str, within: float = 60.0) -> None:
    """Wait for ``done()``: the background retry runs on its own time (a deadline for a hang, not a measure)."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.02)


def test_kept_spend_is_written_in_the_background_once_the_ledger_works_again(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(total=100, ledger=path)
    fault = FaultDuringCall(budget.ledger)
    with capture_records() as records, warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        assert _faulty(budget, fault).invoke("paid").content == "paid answer"
    cost = records[-1].cost
    assert budget._unsaved and cost > 0 and _total(path) == 0  # kept: the ledger is read-only
    fault.lift()  # no further call from here on
    _until(lambda: _total(path) == cost, "the background write")
    assert not budget._unsaved and budget.spent("total") == cost  # written once, no longer counted as waiting
    budget.close()
    assert _total(path) == cost


def test_kept_spend_of_a_budget_dropped_meanwhile_is_written_all_the_same(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(total=100, ledger=path)
    fault = FaultDuringCall(budget.ledger)
    with capture_records() as records, warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        _faulty(budget, fault).invoke("paid")
    fault.lift()
    del budget  # a cell that makes a new Budget(...) under the same name
    _until(lambda: _total(path) == records[-1].cost > 0, "the background write")


def test_closing_the_session_writes_the_spend_its_ledger_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(
        _unsaved, "RETRY_FIRST", 3600.0, raising=False
    )  # the background retry waits: closing must write it
    path = tmp_path / "session.sqlite3"
    session = Session()
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    fault = FaultDuringCall(session.configure(ledger=str(path)).budget.ledger)
    model = ScriptedChatModel(script=["paid answer"], callbacks=[fault])
    session.configure(models=[ModelSpec(model=model, name="fake/scripted")], cache=False)
    with capture_records() as records, warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        assert session.ask("paid").text == "paid answer"
    assert session.budget._unsaved and _total(path) == 0
    fault.lift()
    session.close()
    assert _total(path) == records[-1].cost > 0


def test_a_commit_that_landed_though_it_reported_a_failure_is_counted_once(tmp_path):
    """A write can succeed and still report a failure (a reply lost on its way back): the spend is kept, and
    every later write of it (the retry, a call, close, exit) finds it recorded and adds nothing."""
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(total=100, ledger=path)
    fault = FaultDuringCall(budget.ledger)
    with capture_records() as records, warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        _faulty(budget, fault).invoke("paid")
    (lease_id, amount, buckets, row) = budget._unsaved.items[0]
    other = SQLiteLedger(path)  # the write that landed, through another connection
    other.commit(lease_id, amount, buckets, row)
    other.close()
    fault.lift()
    budget.flush()  # and every other way of writing it after: nothing more is added
    _unsaved.flush_for(budget.ledger, "closing the ledger")
    budget.close()
    assert _total(path) == records[-1].cost == Decimal(amount) / PICO
    assert _calls(path) == 1


def test_spend_that_still_cant_be_written_at_close_is_said_to_be_lost_once(tmp_path):
    budget = Budget(total=100, ledger=tmp_path / "ledger.sqlite3")
    fault = FaultDuringCall(budget.ledger)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _faulty(budget, fault).invoke("paid")
        budget.close()  # still read-only
        with suppress(sqlite3.ProgrammingError):  # the fault ends with its (closed) connection
            fault.lift()
        _unsaved.flush_for(budget.ledger, "closing the ledger")  # nothing waits any more: said once, at close
    lost = [str(w.message) for w in caught if "never recorded" in str(w.message)]
    assert len(lost) == 1 and "closing with spend never recorded: $0.000" in lost[0]
    assert "read-only" in lost[0] and str(budget.ledger.path) in lost[0]
    assert not _unsaved._WAITING.waiting()
