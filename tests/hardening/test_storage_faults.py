"""Storage faults, made for real: a read-only directory, a file that is not SQLite, a truncated ledger, a
ledger deleted or replaced while open, a full disk (a tiny filesystem, or SQLite refusing to grow), a
Redis that goes away. Each is a coffee_nb error naming the file, what is wrong and what to do; no spend
is lost (the ledger's total equals the committed calls); no paid answer is lost."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from decimal import Decimal

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from langchain_core.callbacks import BaseCallbackHandler

import coffee_nb
from coffee_nb import AutoPicker, ConfigError, ModelSpec
from coffee_nb._shared._paths import StorageError
from coffee_nb.budget import Budget, BudgetWarning
from coffee_nb.replay._cache import CacheWarning, ResponseCache
from coffee_nb.testing import ScriptedChatModel, capture_records, fill_disk, sqlite_fault


def _committed(records) -> Decimal:
    return sum((r.cost for r in records if r.cost is not None), Decimal(0))


def _ledger_total(path) -> Decimal:
    """What a fresh kernel reads from the file."""
    budget = Budget(total=1000, ledger=path)
    try:
        return budget.spent("total")
    finally:
        budget.close()


def _garbage(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _truncated_ledger(path) -> None:
    budget = Budget(total=100, ledger=path)
    for i in range(300):
        budget.record("0.001", model=f"m{i}")
    budget.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


# -- files that are not (whole) SQLite ledgers ------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "wrong"),
    [
        (lambda p: _garbage(p, b"this is a CSV, not a ledger\n" * 200), "is not a SQLite database"),
        (lambda p: _garbage(p, b"SQLite format 3\x00" + b"\xff" * 4000), "is not a SQLite database"),
        (lambda p: _garbage(p, b""), None),  # an empty file is a new database: fine
        (_truncated_ledger, "is damaged"),
    ],
    ids=["text", "bad-header", "empty", "truncated"],
)
def test_a_ledger_file_that_is_not_sqlite_names_the_file_what_is_wrong_and_what_to_do(tmp_path, make, wrong):
    path = tmp_path / "ledger.sqlite3"
    make(path)
    if wrong is None:
        Budget(daily=1, ledger=path).close()
        return
    with pytest.raises(StorageError) as info:
        Budget(daily=1, ledger=path)
    message = str(info.value)
    assert str(path) in message and wrong in message and "move it aside" in message
    assert isinstance(info.value, ConfigError)


def test_a_garbage_cache_file_names_it(tmp_path):
    path = tmp_path / "cache.sqlite3"
    _garbage(path, b"\x00garbage" * 500)
    with pytest.raises(StorageError, match=f"response cache at {path} .*not a SQLite database"):
        ResponseCache(path)


def test_a_read_only_directory_names_the_directory(read_only_dir):
    for make in (
        lambda: Budget(daily=1, ledger=read_only_dir / "l.sqlite3"),
        lambda: ResponseCache(read_only_dir / "c"),
    ):
        with pytest.raises(StorageError) as info:
            make()
        assert str(read_only_dir) in str(info.value) and "read-only" in str(info.value)


class FaultDuringCall(BaseCallbackHandler):
    """Turns a storage fault on while the model is answering: after the reservation, before the commit
    (a LangChain callback on the model itself; the fault is SQLite's own, see ``sqlite_fault``)."""

    def __init__(self, ledger, kind: str) -> None:
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


def test_a_ledger_that_turns_read_only_during_a_call_keeps_the_cost_and_the_answer(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(daily=5, ledger=path)
    AutoPicker("sandbox/fast", budget=budget).invoke("first")
    fault = FaultDuringCall(budget.ledger, "read_only")
    model = ScriptedChatModel(script=["paid answer"], callbacks=[fault])
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    llm = AutoPicker(ModelSpec(model=model, name="fake/scripted"), ["sandbox/fast"], budget=budget)
    with capture_records() as records:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert llm.invoke("second").content == "paid answer"  # its cost can't be written: kept
        assert any(issubclass(w.category, BudgetWarning) and "could not be recorded" in str(w.message) for w in caught)
        assert budget.spent("total") == _committed(records) + budget.calls()[0].amount / Decimal(10**12)
        with pytest.raises(StorageError) as info:
            llm.invoke("third")  # no new call while spend waits to be recorded
        assert str(path) in str(info.value) and "read-only" in str(info.value)
        assert "not recorded yet" in str(info.value)
        fault.lift()
        llm.invoke("fourth")  # writable again: the waiting cost is written first
    assert budget.spent("total") == _ledger_total(path)
    assert len(budget.calls()) == 3 and budget.calls()[1].model == "fake/scripted"
    budget.close()


# -- deleted or replaced while open ------------------------------------------------------------------------
def _remove(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")


class Clock:
    """Wall-clock time that moves on only when told: the ledger looks at its file at most once a second
    on the hot path (reads and close always look)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_ledger_deleted_while_open_loses_no_spend(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    clock = Clock()
    first = Budget(total=100, ledger=path, clock=clock)
    first.record("7")
    _remove(path)  # the file and its -wal/-shm: what `rm ledger.sqlite3*` or a cleaner does
    second = Budget(total=100, ledger=path)  # another kernel: a new, empty file
    clock.now += 2
    with pytest.warns(BudgetWarning, match=r"deleted or replaced while in use; the \$7 of spend and 1 call"):
        first.record("1")  # the first kernel's next commit notices, carries its spend over, records there
    assert second.spent("total") == first.spent("total") == Decimal(8)
    assert not second.can_afford("92.5")
    first.close()
    second.close()
    assert _ledger_total(path) == Decimal(8)


def test_a_ledger_deleted_while_open_is_noticed_by_any_read(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    first = Budget(total=100, ledger=path)
    first.record("7")
    _remove(path)
    with pytest.warns(BudgetWarning, match="carried"):
        assert not first.can_afford("93.5")  # a read looks at once
    second = Budget(total=100, ledger=path)
    assert second.spent("total") == Decimal(7) and not second.can_afford("93.5")
    first.close()
    second.close()


def test_a_main_file_deleted_under_its_wal_is_refused_to_others_until_carried(tmp_path):
    """``rm ledger.sqlite3`` alone leaves the live kernel's -wal: a second kernel must not read it as its own."""
    path = tmp_path / "ledger.sqlite3"
    first = Budget(total=100, ledger=path)
    first.record("7")
    os.remove(path)
    assert os.path.getsize(f"{path}-wal") > 0
    with pytest.raises(StorageError, match="deleted while a kernel had it open") as info:
        Budget(total=100, ledger=path)
    assert str(path) in str(info.value)
    with pytest.warns(BudgetWarning, match=r"\$7 of spend"):
        first.status()  # the first kernel carries its spend into a new file
    second = Budget(total=100, ledger=path)
    assert second.spent("total") == Decimal(7)
    first.record("1")
    assert second.spent("total") == Decimal(8)
    first.close()
    second.close()
    assert _ledger_total(path) == Decimal(8)


def test_a_ledger_replaced_while_open_carries_its_spend_into_the_new_file(tmp_path):
    path, other = tmp_path / "ledger.sqlite3", tmp_path / "backup.sqlite3"
    old = Budget(total=100, ledger=other)
    old.record("2")
    old.close()
    live = Budget(total=100, ledger=path)
    live.record("5")
    shutil.move(other, path)  # a backup restored over the live file
    with pytest.warns(BudgetWarning, match="carried"):
        assert live.spent("total") == Decimal(7)  # both: nothing recorded is lost
    live.close()
    assert _ledger_total(path) == Decimal(7)


def test_a_ledger_deleted_while_idle_is_carried_on_close(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(total=10, ledger=path)
    budget.record("3")
    _remove(path)
    with pytest.warns(BudgetWarning, match="carried"):
        budget.close()
    assert _ledger_total(path) == Decimal(3)


def test_a_ledger_whose_directory_is_deleted_too_is_recreated(tmp_path):
    path = tmp_path / "data" / "ledger.sqlite3"
    budget = Budget(total=10, ledger=path)
    budget.record("4")
    shutil.rmtree(tmp_path / "data")
    with pytest.warns(BudgetWarning, match="carried"):
        assert budget.spent("total") == Decimal(4)
    budget.close()
    assert _ledger_total(path) == Decimal(4)


# -- a full disk ------------------------------------------------------------------------------------------
def _calls_until_full(llm, budget, limit: int = 60) -> int:
    """Call until a cost can't be written (a full disk refuses only writes that need new space)."""
    for n in range(1, limit + 1):
        assert llm.invoke(f"call {n}").content  # every paid answer arrives
        if budget._unsaved:
            return n
    pytest.fail("the full disk never refused a write")


def test_disk_full_during_calls_loses_no_spend_and_no_answer(tiny_disk):
    path = tiny_disk / "ledger.sqlite3"
    budget = Budget(total=100, ledger=path)
    llm = AutoPicker("sandbox/fast", budget=budget)
    with capture_records() as records:
        # calls in a row: the ledger holds a block of headroom, so reservations are taken in memory and the
        # first write after the disk fills is a commit, whatever room the last partly used page leaves
        # (with a write per reservation, which write fails first would depend on that room)
        for n in range(6):
            llm.invoke(f"before {n}")
        assert budget.ledger._blocks.by_key
        filler = fill_disk(tiny_disk)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _calls_until_full(llm, budget)
            with pytest.raises(StorageError) as info:
                llm.invoke("refused until there is room")
        assert "disk holding it is full" in str(info.value) and str(path) in str(info.value)
        assert "no transaction is active" not in str(info.value)
        assert any("could not be recorded" in str(w.message) for w in caught)
        os.remove(filler)
        llm.invoke("after")  # room again: the waiting costs are written, then this call
    assert budget.spent("total") == _committed(records)
    budget.close()
    assert _ledger_total(path) == _committed(records)


def test_disk_full_injected_in_sqlite_loses_no_spend(tmp_path):
    """The same without a mountable filesystem: SQLite refuses to grow the file (SQLITE_FULL)."""
    path = tmp_path / "ledger.sqlite3"
    budget = Budget(total=100, ledger=path)
    llm = AutoPicker("sandbox/fast", budget=budget)
    with capture_records() as records:
        with sqlite_fault(budget.ledger, "full"), pytest.warns(BudgetWarning, match="disk holding it is full"):
            _calls_until_full(llm, budget, limit=400)
            with pytest.raises(StorageError, match="disk holding it is full"):
                llm.invoke("refused")
        llm.invoke("after")
    assert budget.spent("total") == _committed(records) == _ledger_total(path)
    budget.close()


def test_a_ledger_that_stays_read_only_at_close_says_what_is_lost(tmp_path):
    budget = Budget(total=100, ledger=tmp_path / "l.sqlite3")
    fault = FaultDuringCall(budget.ledger, "read_only")
    coffee_nb.register_price("fake/scripted", input=1, output=1)
    model = ScriptedChatModel(script=["paid"], callbacks=[fault])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AutoPicker(ModelSpec(model=model, name="fake/scripted"), budget=budget).invoke("paid")
        budget.close()
    assert any("closing with spend never recorded" in str(w.message) for w in caught)


# -- the notebook: magics name the file; those that don't need the ledger keep working ---------------------
def test_magics_with_an_unusable_ledger(ip, tmp_path, monkeypatch):
    data = tmp_path / "data"
    _garbage(data / "ledger.sqlite3", b"not a ledger" * 100)
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(data))
    config = repr(ip.run_line_magic("llm_config", ""))  # shows the session, and what is wrong
    assert "can't be used" in config and "not a SQLite database" in config
    with capture_output() as cap:
        ip.run_cell_magic("llm", "sandbox/fast --dry-run", "how much?")  # works, budget left unknown
    assert "budget left is unknown" in cap.stderr and str(data / "ledger.sqlite3") in cap.stderr
    assert cap.outputs  # the table
    for run in (
        lambda: ip.run_cell_magic("llm", "sandbox/fast", "a real call needs the ledger"),
        lambda: ip.run_line_magic("llm_budget", ""),
        lambda: ip.run_line_magic("llm_config", "--daily 3"),
    ):
        with pytest.raises(UsageError) as info:
            run()
        assert str(data / "ledger.sqlite3") in str(info.value) and "move it aside" in str(info.value)
    ip.run_line_magic("llm_costs", "")  # metrics need no ledger
    ip.run_line_magic("llm_history", "")


def test_a_full_cache_never_loses_a_paid_answer(ip, tiny_disk, monkeypatch):
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(tiny_disk))
    coffee_nb.configure(ledger="memory")  # only the cache lives on the tiny disk
    ip.run_cell_magic("llm", "sandbox/fast --no-stream", "warm the cache up")
    fill_disk(tiny_disk)
    big = "x" * 20_000  # an answer bigger than anything left on the disk
    coffee_nb.sandbox.script_replies("sandbox/echo", [big, big])
    with capture_output() as cap, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ip.run_cell_magic("llm", "sandbox/echo --no-stream", "a paid call")
        ip.run_cell_magic("llm", "sandbox/echo --no-stream", "another paid call")
    assert ip.user_ns["_"].text == big  # shown and kept
    assert any(big in o.data.get("text/plain", "") for o in cap.outputs)
    cache_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1 and "disk holding it is full" in str(cache_warnings[0].message)


def test_a_garbage_cache_file_answers_without_the_cache(ip, tmp_path, monkeypatch):
    data = tmp_path / "data"
    _garbage(data / "cache.sqlite3", b"garbage" * 100)
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(data))
    coffee_nb.configure(ledger="memory")
    with capture_output(), pytest.warns(CacheWarning, match="not a SQLite database"):
        ip.run_cell_magic("llm", "sandbox/fast --no-stream", "works without a cache")
    assert ip.user_ns["_"].text


def test_a_damaged_cache_row_is_a_miss(tmp_path):
    from langchain_core.messages import AIMessage

    cache = ResponseCache(tmp_path / "c.sqlite3")
    cache.put("k", AIMessage("hi"), {"tokens": {"input": "lots"}})
    cache._db.execute("UPDATE responses SET message = '{not json'")
    assert cache.get("k") is None
    cache.close()


# -- Redis ----------------------------------------------------------------------------------------------
def test_a_redis_ledger_that_goes_away_names_its_url_without_the_password(tmp_path):
    from coffee_nb.testing import redis_server

    try:
        server = redis_server(password="hunter2secret")
        url = server.__enter__()
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"redis-server is needed under CI=true: {exc}")
        pytest.skip(str(exc))
    shown = url.replace("redis://", "redis://:hunter2secret@")
    budget = Budget(daily=5, ledger=shown, name="gone")
    llm = AutoPicker("sandbox/fast", budget=budget)
    llm.invoke("while it runs")
    server.__exit__(None, None, None)
    with pytest.raises(StorageError) as info:
        llm.invoke("after it stopped")
    message = str(info.value)
    assert url.split("/0")[0].replace("redis://", "") in message and "hunter2secret" not in message
    assert "start Redis there" in message
    with pytest.raises(StorageError, match="can't be used"):
        budget.status()
