"""The notebook session: what it opens it closes on reset, what it was given stays the caller's; Python
and %%llm share its cache and metrics."""

from __future__ import annotations

import json
import os
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import coffee_nb
from coffee_nb.budget import Budget
from coffee_nb.session._session import Session


def test_session_reset_closes_its_ledger_and_cache_connections():
    session = Session()
    budget, cache = session.budget, session.cache
    budget.status()
    session.reset()
    for db in (budget.ledger._db, cache._db):
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")
    assert session.budget is not budget and session.budget.status()  # usable again: opens anew
    assert session.models is None and session.cache_enabled and len(session.conversation) == 0


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files through /proc")
def test_file_descriptors_do_not_grow_over_50_resets():
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    session = Session()
    session.configure(daily=3, ledger="sqlite")
    session.budget.status(), len(session.cache)
    session.reset()
    before = open_files()
    for i in range(50):
        session.configure(daily=1 + i % 3)
        session.configure(hourly=1)  # a new Budget on the same (already open) ledger
        session.budget.status()
        len(session.cache)
        session.reset()
    # a leak would be one handle or more per reset (50+); other tests' background threads (pooled HTTP
    # connections closing, a sandbox stream ending) may move a descriptor or two meanwhile
    assert open_files() <= before + 3


def test_session_reset_leaves_budgets_and_ledgers_it_was_given_open(tmp_path):
    mine = Budget(daily=1, ledger=str(tmp_path / "mine.db"))
    session = Session()
    session.configure(budget=mine)
    session.reset()
    assert mine.status()["daily"]["spent"] == 0  # still open
    from coffee_nb.budget import MemoryLedger

    ledger = MemoryLedger()
    session.configure(daily=2, ledger=ledger)
    session.reset()
    assert session._ledger is None and ledger.spent(["x"]) == [0]
    mine.close()


def test_configure_keeps_the_session_ledger():
    session = Session()
    session.configure(ledger="memory", daily=5)
    session.budget.record("1")
    session.configure(daily=10)  # new limits, same ledger: spend is kept
    assert session.budget.spent("daily") == 1
    session.reset()


def test_ask_from_python_shares_cache_and_metrics(quiet_sandbox):
    a = coffee_nb.ask("shared", models=["sandbox/fast"])
    b = coffee_nb.ask("shared", models=["sandbox/fast"])
    assert (not a.cache_hit and b.cache_hit and b.cost == 0) or b.cost_text() == "$0 (cache hit)"
    m = coffee_nb.get_session().metrics.get_metrics()
    assert m["requests"]["cache_hits"] == 1 and m["requests"]["total"] == 1
    assert Decimal(0) <= a.cost
    json.dumps(a.tokens)


def test_a_cell_ending_in_configure_shows_the_session_in_words_never_a_key():
    from langchain_openai import ChatOpenAI

    session = coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], daily=2, hourly=0.5, hard=False)
    assert repr(session) == (
        "coffee_nb session: models sandbox/fast, sandbox/echo · budget hourly $0.50 (soft), daily $2.00 (soft) · "
        "cache on"
    )
    key = "sk-canary-0123456789abcdef"
    shown = repr(coffee_nb.configure(models=[ChatOpenAI(model="gpt-4o-mini", api_key=key)], cache=False))
    assert "gpt-4o-mini" in shown and "cache off" in shown and key not in shown
    assert "object at 0x" not in repr(Session())  # a fresh session, nothing opened
