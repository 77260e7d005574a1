"""Widgets built directly (no front end), fed by calls through the sandbox: sync, async batch, threads."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import numpy as np
import pytest

from coffee_nb import (
    AutoPicker,
    Budget,
    BudgetExceededError,
    Limit,
    LocalMetrics,
    Policy,
    capture_records,
    register_price,
    sandbox,
)
from coffee_nb.metrics import MetricsSnapshot
from coffee_nb.notebook._dashboard import Dashboard
from coffee_nb.notebook.widgets import BudgetGauge, CostTable, LatencyHistogram, _Live
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
    assert "⚠ 1 unpriced" in table.table.value and ">total</td>" in table.table.value


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
    assert "src='data:image/png;base64," in hist.html()  # the figure travels inside the HTML snapshot
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
    assert "50000 streamed answers" in hist.caption.value


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
    assert "attempts <b>4</b>" in a.counters.value and "attempts <b>4</b>" in b.counters.value


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


# -- issue 15 item 8: legibility ------------------------------------------------------------------


def _labels(fig):
    """The figure's p50/p95 label boxes (pixels) and the y axis tick labels, once drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {t.get_text().split()[0]: t.get_window_extent(renderer) for t in ax.texts}
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    return boxes, ticks


@pytest.mark.parametrize("latencies", [[0.42], [0.3, 0.31], [0.01] * 30 + [3.0], [0.5] * 9 + [0.51]])
def test_histogram_labels_do_not_overlap_and_counts_are_integers(latencies):
    from coffee_nb.notebook._histogram import build_figure, histogram_data

    d = histogram_data({"m": np.array(latencies)}, 40)
    fig = build_figure(d, "latency")
    boxes, ticks = _labels(fig)
    assert set(boxes) == {"p50", "p95"}
    assert not boxes["p50"].overlaps(boxes["p95"]), (latencies, boxes)
    assert ticks and all(t.replace("\u2212", "-").lstrip("-").isdigit() for t in ticks), ticks  # "1", never "0.2"
    width, height = fig.canvas.get_width_height()
    assert width >= 700 and height >= 280  # larger than the old 416 x 192
    inside = fig.bbox
    for box in boxes.values():  # labels stay inside the picture
        assert box.x0 >= inside.x0 and box.x1 <= inside.x1


def test_time_to_first_token_says_why_it_is_empty():
    metrics = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="plain"), metrics=metrics)
    for _ in range(3):
        llm.invoke("not streamed")
    hist = LatencyHistogram(metrics, rate=1000)
    assert "none of the 3 answered calls was streamed" in hist.caption.value  # under the latency figure
    hist.view.value = "time to first token"
    assert hist.data()["count"] == 0
    assert "measured on streamed answers" in hist.caption.value and "3 answered" in hist.caption.value
    list(llm.stream("now streamed"))
    hist.refresh()
    assert hist.data()["count"] == 1 and "1 streamed answer " in hist.caption.value
    hist.close()


def test_counters_show_calls_and_attempts_apart():
    metrics = LocalMetrics()
    fast = Policy(max_retries=4, cooldown_after=10, backoff_base=0.001, backoff_cap=0.001)
    llm = AutoPicker("sandbox/fast", metrics=metrics, policy=fast)
    sandbox.inject("sandbox/fast", ["server_error"] * 4)  # four retries among ten prompts
    for i in range(10):
        llm.invoke(f"prompt {i}")
    board = Dashboard(metrics, rate=1000)
    values = board.counter_values()
    assert values["calls"] == 10 and values["attempts"] == 14 and values["answered"] == 10
    assert "calls <b>10</b> · attempts <b>14</b>" in board.counters.value
    assert "errors: server 4" in board.counters.value
    board.close()


def test_a_budget_refusal_is_not_errors_none():
    metrics = LocalMetrics()
    budget = Budget(total=Decimal("0.0000001"), ledger="memory")
    llm = AutoPicker("sandbox/smart", metrics=metrics, budget=budget)
    with pytest.raises(BudgetExceededError):
        llm.invoke("too dear for this budget")
    board = Dashboard(metrics, budget, rate=1000)
    values = board.counter_values()
    assert values["refused"] == 1 and values["calls"] == 1 and values["attempts"] == 0
    assert "errors: none" not in board.counters.value
    assert "refused by the budget 1" in board.counters.value
    assert "budget" in board.recent.value  # the refusal is in the last calls, as skipped · budget
    board.close()


def test_last_calls_have_headers_and_costs_where_priced():
    register_price("fake/priced", input=1_000_000, output=1_000_000)
    metrics = LocalMetrics()
    priced = ScriptedChatModel(model_name="priced", script=[http_error(500), "two words"])
    AutoPicker(priced, metrics=metrics, policy=Policy(backoff_base=0.001, backoff_cap=0.001)).invoke("a")
    AutoPicker(ScriptedChatModel(model_name="free", script=["one"]), metrics=metrics).invoke("b")
    board = Dashboard(metrics, rate=1000)
    table = board.recent.value
    for header in ("time", "model", "role", "outcome", "latency", "tokens in→out", "cost"):
        assert f">{header}</th>" in table
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 3
    failed, answered, free = rows
    assert "error · server" in failed and "unpriced" not in failed and ">–</td>" in failed  # nothing charged
    assert "fake/priced" in answered and "$" in answered and "unpriced" not in answered
    assert "fake/free" in free and "unpriced" in free  # truly unpriced: answered by a model without a price
    board.close()


# -- saved notebooks reopen clean: a static snapshot, no ipywidgets --------------------------------


def test_views_are_static_snapshots_with_a_fixed_text_label():
    metrics = LocalMetrics()
    budget = Budget(daily=1, ledger="memory")
    AutoPicker("sandbox/fast", metrics=metrics, budget=budget).invoke("x")
    board = Dashboard(metrics, budget, rate=1000)
    bundle = board._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and bundle["text/plain"] == "coffee_nb dashboard (live)"
    page = bundle["text/html"]
    assert page.count("data:image/png;base64,") == 1 and "calls <b>1</b> · attempts <b>1</b>" in page
    assert "coffee-nb-bar-fill" in page and "<th" in page and "tex2jax_ignore" in page
    assert page.endswith("<!--/coffee-nb-view-->") and page.count("<!--/coffee-nb-view-->") == 1
    for view in (board.gauge, board.histogram, board.costs):
        assert view._repr_mimebundle_()["text/plain"] == repr(view)
    board.close()


def test_no_ipywidgets_behind_the_views():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from coffee_nb import AutoPicker, Budget, HealthPanel, LocalMetrics\n"
        "from coffee_nb.notebook._dashboard import Dashboard\n"
        "from coffee_nb.notebook.map_magic import progress_view\n"
        "m = LocalMetrics()\n"
        "AutoPicker('sandbox/echo', metrics=m).invoke('x')\n"
        "Dashboard(m, Budget(daily=1, ledger='memory'), health=True).refresh()\n"
        "HealthPanel().close()\n"
        "progress_view(3)\n"
        "print('ipywidgets' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_a_view_nobody_holds_unsubscribes_when_collected():
    import gc

    metrics = LocalMetrics()
    budget = Budget(daily=1, ledger="memory")
    Dashboard(metrics, budget, rate=1000)
    BudgetGauge(budget, metrics=metrics, rate=1000)
    gc.collect()
    assert metrics._listeners == [] and budget._listeners == []
    AutoPicker("sandbox/fast", metrics=metrics).invoke("x")  # nothing left to poke


def test_rerunning_the_dashboard_cell_50_times_leaves_one_live_dashboard(ip, capsys):
    """Issue 15 item 12: a re-run replaces the cell's previous dashboard (it stops redrawing, unsubscribes)."""
    import coffee_nb
    from coffee_nb.notebook._live import live_views

    coffee_nb.configure(models=["sandbox/fast"], ledger="memory", daily=5)
    session = coffee_nb.get_session()
    before = len(session.metrics._listeners), len(session.budget._listeners)
    boards = []
    for _ in range(50):
        result = ip.run_cell("%llm_dashboard", store_history=True)
        assert result.success, result.error_in_exec
        boards.append(result.result)
    assert len({id(b) for b in boards}) == 50 and all(isinstance(b, Dashboard) for b in boards)
    assert [b.closed for b in boards] == [True] * 49 + [False]
    assert len(session.metrics._listeners) == before[0] + 1 and len(session.budget._listeners) == before[1] + 1
    assert [v for v in live_views() if isinstance(v, Dashboard)] == [boards[-1]]
    redraws = [b.redraws for b in boards]
    for i in range(20):
        coffee_nb.ask(f"question {i}", cache=False)
    boards[-1].flush()
    after = [b.redraws for b in boards]
    assert after[:49] == redraws[:49]  # the replaced ones never redraw again
    assert after[49] > redraws[49]
    assert boards[-1].counter_values()["calls"] == 20
    # the same view displayed twice in one run (display(board); board) is not a re-run: it stays live
    ip.run_cell(
        "import coffee_nb\nfrom IPython.display import display\nb = coffee_nb.dashboard(display=False)\ndisplay(b)\nb",
        store_history=True,
    )
    assert not ip.user_ns["b"].closed
    capsys.readouterr()


def test_the_first_sandbox_call_does_not_count_server_start_up_as_latency():
    """Issue 15 item 8: in a fresh process the first call starts the sandbox (and loads its tokenizer);
    that start-up is over before the attempt's clock starts, so it doesn't skew the model's p95."""
    import subprocess
    import sys

    code = (
        "from datetime import UTC, datetime\n"
        "from coffee_nb import AutoPicker, capture_records, sandbox\n"
        "from coffee_nb.pricing._tokens import _encoding\n"
        "from coffee_nb.sandbox._server import SandboxServer\n"
        "ready = []\n"
        "real = SandboxServer.start\n"
        "def start(self):\n"
        "    out = real(self)\n"
        "    ready.append((datetime.now(UTC), _encoding.cache_info().currsize))\n"
        "    return out\n"
        "SandboxServer.start = start\n"
        "sandbox.set_latency_scale(0)\n"
        "assert _encoding.cache_info().currsize == 0\n"
        "with capture_records() as records:\n"
        "    AutoPicker('sandbox/fast').invoke('first call of this process')\n"
        "(at, tokenizers), = ready\n"
        "print(records[0].started_at >= at, tokenizers)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    started_after_ready, tokenizers_loaded = out.stdout.split()
    assert started_after_ready == "True"  # the attempt began once the server was up
    assert int(tokenizers_loaded) >= 1  # and the server had loaded its tokenizer while starting
