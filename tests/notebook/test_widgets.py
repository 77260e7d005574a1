"""Widgets built directly (no front end), fed by calls through the sandbox: sync, async batch, threads."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import numpy as np
import pytest

from coffee_nb import AutoPicker, Budget, Limit, LocalMetrics, capture_records, register_price, sandbox
from coffee_nb.metrics import MetricsSnapshot
from coffee_nb.notebook.widgets import BudgetGauge, CostTable, Dashboard, LatencyHistogram, _Live
from coffee_nb.testing import ScriptedChatModel, http_error

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def test_budget_gauge_values_and_colours_at_thresholds():
    budget = Budget(daily=1, total=Limit(2, hard=False), warn_at=0.5, ledger="memory")
    gauge = BudgetGauge(budget, rate=1000)
    assert set(gauge.bars) == {"daily", "total"}
    assert gauge.bars["daily"].value == 0 and gauge.bars["daily"].bar_style == "success"
    budget.record("0.3")
    gauge.refresh()
    assert gauge.bars["daily"].value == pytest.approx(30) and gauge.bars["daily"].bar_style == "success"
    budget.record("0.3")
    gauge.refresh()
    assert gauge.bars["daily"].value == pytest.approx(60) and gauge.bars["daily"].bar_style == "warning"
    budget.record("0.5")
    gauge.refresh()
    assert gauge.bars["daily"].value == 100 and gauge.bars["daily"].bar_style == "danger"
    assert "limit reached" in gauge.texts["daily"].value
    assert gauge.bars["total"].bar_style == "warning"  # 1.1 of 2 at warn_at 0.5
    assert "(soft)" in gauge.children[2].children[0].value and "(hard)" in gauge.children[1].children[0].value
    assert "resets in" in gauge.texts["daily"].value and "never resets" in gauge.texts["total"].value


def test_budget_gauge_shows_reservations_in_flight():
    budget = Budget(daily=1, ledger="memory")
    gauge = BudgetGauge(budget, rate=1000)
    lease = budget.reserve("sandbox/smart", Decimal("0.25"))
    gauge.refresh()
    assert gauge.bars["daily"].value == 0 and gauge.held["daily"].value == pytest.approx(25)
    assert "$0.25 in flight" in gauge.texts["daily"].value
    budget.release(lease)
    gauge.refresh()
    assert gauge.held["daily"].value == 0


def test_live_updates_from_calls_in_threads_and_async():
    metrics = LocalMetrics()
    budget = Budget(daily=10, ledger="memory")
    board = Dashboard(metrics, budget, rate=50)
    llm = AutoPicker("sandbox/fast", ["sandbox/echo"], metrics=metrics, budget=budget)
    threads = [threading.Thread(target=lambda: [llm.invoke("t") for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    asyncio.run(llm.abatch([f"a{i}" for i in range(10)]))
    board.refresh()
    assert board.counter_values()["requests"] == 30
    df = board.costs.dataframe()
    assert df.loc["sandbox/fast", "calls"] == 30 and df.loc["total", "calls"] == 30
    assert board.costs.dataframe().loc["total", "cost_usd"] == metrics.get_metrics()["costs"]["total"]
    assert board.gauge.bars["daily"].value > 0
    assert board.histogram.data()["count"] == 30
    assert "sandbox/fast" in board.recent.value


def test_redraws_are_coalesced_under_a_burst():
    metrics = LocalMetrics()
    costs = CostTable(metrics, rate=5)  # at most 5 redraws per second
    llm = AutoPicker(ScriptedChatModel(model_name="m"), metrics=metrics)
    start = time.monotonic()
    for _ in range(300):
        llm.invoke("x")
    elapsed = time.monotonic() - start
    costs._live.flush()
    assert costs._live.pokes == 300
    assert 1 <= costs.redraws <= elapsed * 5 + 2  # bounded by the rate, not the number of calls
    assert costs.dataframe().loc["fake/m", "calls"] == 300  # and the last redraw saw everything


def test_live_limits_rate():
    calls = []
    live = _Live(lambda: calls.append(time.monotonic()), rate=10)
    for _ in range(1000):
        live.poke()
    live.flush()
    assert len(calls) == 1
    live.close()
    live.poke()
    assert live.redraws == 1


def test_cost_table_totals_and_unpriced_flag():
    register_price("fake/priced", input=1_000_000, output=1_000_000)
    metrics = LocalMetrics()
    priced = ScriptedChatModel(model_name="priced", script=[http_error(500), "two words"])
    free = ScriptedChatModel(model_name="free", script=["one"])
    AutoPicker(priced, metrics=metrics, max_retries=0, policy=None).batch(["a"], return_exceptions=True)
    AutoPicker(priced, metrics=metrics).invoke("b")
    AutoPicker(free, metrics=metrics).invoke("c")
    table = CostTable(metrics, rate=1000)
    df = table.dataframe()
    assert list(df.index) == ["fake/free", "fake/priced", "total"]
    assert df.loc["fake/priced", "errors"] == 1 and df.loc["fake/priced", "cost_usd"] == Decimal(4 + 2)
    assert df.loc["total", "calls"] == df.loc["fake/free", "calls"] + df.loc["fake/priced", "calls"]
    assert df.loc["fake/priced", "share"] == 1.0 and df.loc["fake/free", "unpriced_calls"] == 1
    assert "⚠ 1 unpriced" in table.table.value and "<td>total</td>" in table.table.value


def test_fallback_counted_in_cost_table():
    metrics = LocalMetrics()
    sandbox.inject("sandbox/fast", ["auth"])
    AutoPicker("sandbox/fast", ["sandbox/echo"], metrics=metrics).invoke("x")
    df = CostTable(metrics, rate=1000).dataframe()
    assert df.loc["sandbox/echo", "fallbacks"] == 1
    board = Dashboard(metrics, rate=1000)
    assert "sandbox/fast -&gt; sandbox/echo (1)" in board.counters.value and "auth 1" in board.counters.value


def test_histogram_readable_with_one_and_100k_calls():
    metrics = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="solo"), metrics=metrics)
    llm.invoke("x")
    hist = LatencyHistogram(metrics, rate=2)  # a redraw renders a figure: keep them rare while 100 k arrive
    d = hist.data()
    assert d["count"] == 1 and sum(d["models"]["fake/solo"]) == 1 and d["p50"] == d["p95"]
    assert bytes(hist.image.value).startswith(b"\x89PNG")
    # 100 k synthetic records, two models, a long tail
    from datetime import UTC, datetime

    from coffee_nb import CallRecord, Outcome, Role

    now = datetime.now(UTC)
    for i in range(100_000):
        metrics.emit(
            CallRecord(
                call_id=str(i),
                attempt=0,
                role=Role.PRIMARY,
                provider="p",
                model=f"p/m{i % 2}",
                outcome=Outcome.OK,
                started_at=now,
                latency_s=0.05 * (1 + (i % 997) ** 1.5 / 100),
                ttft_s=0.01 if i % 2 else None,
            )
        )
    hist.refresh()
    d = hist.data()
    assert d["count"] == 100_001 and len(d["edges"]) - 1 <= hist.max_bins
    assert sum(sum(c) for c in d["models"].values()) == 100_001
    assert d["p50"] < d["p95"] and d["log"]  # a wide range switches to a log axis
    hist.model.value = "p/m1"
    assert hist.data()["count"] == 50_000
    hist.view.value = "time to first token"
    assert hist.data()["count"] == 50_000 and hist.data()["p50"] == pytest.approx(0.01)
    assert "50000 answered calls" in hist.caption.value


def test_works_when_displayed_after_the_calls_and_several_watch_one_session():
    metrics = LocalMetrics()
    llm = AutoPicker("sandbox/fast", metrics=metrics)
    for _ in range(3):
        llm.invoke("before")
    a, b = Dashboard(metrics, rate=1000), Dashboard(metrics, rate=1000)
    assert a.counter_values()["requests"] == b.counter_values()["requests"] == 3
    llm.invoke("after")
    a.flush()
    b.flush()
    assert "requests <b>4</b>" in a.counters.value and "requests <b>4</b>" in b.counters.value


def test_closing_detaches():
    metrics = LocalMetrics()
    budget = Budget(daily=1, ledger="memory")
    board = Dashboard(metrics, budget, rate=1000)
    assert len(metrics._listeners) == 1 and len(budget._listeners) == 1  # one timer drives every part
    gauge = BudgetGauge(budget, metrics=metrics, rate=1000)
    assert len(metrics._listeners) == 2
    gauge.close()
    board.close()
    assert metrics._listeners == [] and budget._listeners == []
    AutoPicker("sandbox/fast", metrics=metrics).invoke("x")  # no redraw of a closed widget, no error
    assert board.redraws == 0  # no coalesced redraw after the initial draw


def test_reprs_are_cheap_and_fixed():
    metrics = LocalMetrics()
    board = Dashboard(metrics, Budget(daily=1, ledger="memory"), rate=1000)
    assert repr(board) == "coffee_nb dashboard (live)"
    assert repr(board.gauge) == "coffee_nb budget gauge (live)"


def test_core_objects_render_without_widgets():
    budget = Budget(daily=2, total=Limit(5, hard=False), ledger="memory")
    budget.record("1.5")
    html = budget._repr_html_()
    assert "daily" in html and "$1.50 / $2.00" in html and "soft" in html
    metrics = LocalMetrics()
    assert "no calls yet" in metrics._repr_html_()
    with capture_records():
        AutoPicker("sandbox/fast", metrics=metrics).invoke("x")
    assert "sandbox/fast" in metrics._repr_html_() and "LocalMetrics(requests=1" in repr(metrics)


def test_summary_and_cost_table_share_their_numbers():
    register_price("fake/priced", input=1_000_000, output=1_000_000)
    metrics = LocalMetrics()
    priced = ScriptedChatModel(model_name="priced", script=[http_error(500), "two words", http_error(401)])
    free = ScriptedChatModel(model_name="free", script=["one", "three more words"])
    AutoPicker(priced, metrics=metrics, max_retries=0, policy=None).batch(["a"], return_exceptions=True)
    AutoPicker(priced, metrics=metrics).invoke("b")
    AutoPicker(priced, [free], metrics=metrics).invoke("c")  # 401 → answered by the fallback
    AutoPicker(free, metrics=metrics).invoke("d")
    summary = metrics.summary()
    table = CostTable(metrics, rate=1000).dataframe()
    per_model = table.drop(index="total")
    assert list(summary.index) == list(per_model.index) == ["fake/free", "fake/priced"]
    same = {
        "calls": "calls",
        "errors": "errors",
        "fallbacks": "fallbacks",
        "input_tokens": "tokens_in",
        "output_tokens": "tokens_out",
        "cost_share": "share",
        "unpriced_calls": "unpriced_calls",
    }
    for ours, theirs in same.items():
        assert summary[ours].tolist() == per_model[theirs].tolist(), ours
    assert summary.loc["fake/free", "fallbacks"] == 1 and summary.loc["fake/priced", "errors"] == 2
    assert summary.loc["fake/priced", "cost_usd"] == float(per_model.loc["fake/priced", "cost_usd"])  # float vs exact
    assert np.isnan(summary.loc["fake/free", "cost_usd"]) and per_model.loc["fake/free", "cost_usd"] == 0
    snap = metrics.snapshot()
    assert table.loc["total", "calls"] == snap.attempts and table.loc["total", "cost_usd"] == snap.cost


def test_dashboard_draws_from_one_snapshot_per_redraw(monkeypatch):
    metrics = LocalMetrics()
    sandbox.inject("sandbox/fast", ["auth"])
    AutoPicker("sandbox/fast", ["sandbox/echo"], metrics=metrics).invoke("x")
    board = Dashboard(metrics, Budget(daily=1, ledger="memory"), rate=1000)
    taken: list[MetricsSnapshot] = []
    real = metrics.snapshot
    monkeypatch.setattr(metrics, "snapshot", lambda: taken.append(real()) or taken[-1])
    board.refresh()
    assert len(taken) == 1  # the counters and the cost table read the same moment
    values = board.counter_values(taken[0])
    assert values["fallbacks"] == {"sandbox/fast -> sandbox/echo": 1} and values["errors"] == {"auth": 1}
    assert values["requests"] == taken[0].attempts == 2
    board.close()
