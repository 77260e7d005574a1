"""``view.widget()``: each live view's ipywidgets twin, built directly (no front end), re-set by the same
coalescing redraws as the view's HTML display (``_live.flush()`` waits for the timer's redraw)."""

from __future__ import annotations

import gc
import sys
import weakref
from decimal import Decimal

import ipywidgets
import pytest

from coffee_nb import AutoPicker, Budget, BudgetWarning, HealthPanel, LocalMetrics, Policy
from coffee_nb._shared._format import money
from coffee_nb.jobs import JobStatus
from coffee_nb.notebook._dashboard import Dashboard
from coffee_nb.notebook._live import live_views
from coffee_nb.notebook.widgets import BudgetGauge, CostTable, LatencyHistogram
from coffee_nb.testing import ScriptedChatModel, http_error

pytestmark = pytest.mark.usefixtures("quiet_sandbox")


def shown(widget: ipywidgets.Widget) -> str:
    """What a front end draws from the widget, as text: HTML values, bars as value/max and style, figures
    as their bytes' size, dropdowns as their choice."""
    if isinstance(widget, ipywidgets.Box):
        return "\n".join(shown(child) for child in widget.children)
    if isinstance(widget, ipywidgets.FloatProgress):
        return f"[bar {widget.value:g}/{widget.max:g} {widget.bar_style}]"
    if isinstance(widget, ipywidgets.Image):
        return f"[png {len(widget.value)} bytes]" if len(widget.value) else ""
    if isinstance(widget, ipywidgets.Dropdown):
        return f"[{widget.description}: {widget.value} of {', '.join(widget.options)}]"
    return str(widget.value)


def images(widget: ipywidgets.Widget) -> list[bytes]:
    if isinstance(widget, ipywidgets.Box):
        return [png for child in widget.children for png in images(child)]
    return [bytes(widget.value)] if isinstance(widget, ipywidgets.Image) else []


def dropdowns(widget: ipywidgets.Widget) -> dict[str, ipywidgets.Dropdown]:
    if isinstance(widget, ipywidgets.Box):
        return {k: v for child in widget.children for k, v in dropdowns(child).items()}
    return {widget.description: widget} if isinstance(widget, ipywidgets.Dropdown) else {}


def test_budget_gauge_widget_follows_spending():
    metrics = LocalMetrics()
    budget = Budget(daily=1, ledger="memory")
    gauge = BudgetGauge(budget, metrics=metrics, rate=1000)
    widget = gauge.widget()
    assert isinstance(widget, ipywidgets.DOMWidget) and gauge.widget() is widget  # one twin per view
    assert "[bar 0/100 success]" in shown(widget) and "$0.00 / $1.00" in shown(widget)
    llm = AutoPicker("sandbox/smart", metrics=metrics, budget=budget)
    llm.invoke("spend a little")
    gauge._live.flush()  # the view's own timer redraws: the HTML display and the widget
    spent = budget.status()["daily"]["spent"]
    assert spent > 0 and f"{money(spent)} / $1.00" in shown(widget)
    assert f"[bar {gauge.bars['daily'].value:g}/100 success]" in shown(widget) and gauge.bars["daily"].value > 0
    llm.invoke("and a little more")
    gauge._live.flush()
    assert budget.status()["daily"]["spent"] > spent
    assert f"{money(budget.status()['daily']['spent'])} / $1.00" in shown(widget)
    with pytest.warns(BudgetWarning):
        budget.record("0.9")  # past the warning threshold: the bar turns yellow
    gauge._live.flush()
    assert "warning]" in shown(widget)
    gauge.close()


def test_cost_table_widget_follows_calls():
    metrics = LocalMetrics()
    table = CostTable(metrics, rate=1000)
    widget = table.widget()
    assert "no calls yet" in shown(widget)
    llm = AutoPicker(ScriptedChatModel(model_name="m"), metrics=metrics)
    llm.invoke("one")
    table._live.flush()
    assert "fake/m" in shown(widget) and "<td style='padding:1px 10px 1px 0;text-align:left'>1</td>" in shown(widget)
    for _ in range(2):
        llm.invoke("more")
    table._live.flush()
    assert table.dataframe().loc["fake/m", "calls"] == 3 and ">3</td>" in shown(widget)
    widget.close()  # closed by its user: the next widget() is a new one, as it stands
    again = table.widget()
    assert again is not widget and shown(again) == shown(widget)
    table.close()


def test_histogram_widget_shows_the_figure_and_its_settings_are_dropdowns():
    metrics = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="solo"), metrics=metrics)
    llm.invoke("x")
    hist = LatencyHistogram(metrics, rate=1000)
    widget = hist.widget()
    (first,) = images(widget)
    assert first.startswith(b"\x89PNG") and first == hist.image.value  # the PNG itself, not a data URI
    assert "1 answered call " in shown(widget)
    for _ in range(2):
        llm.invoke("y")
    hist._live.flush()
    (second,) = images(widget)
    assert second != first and "3 answered calls" in shown(widget)
    # settings the HTML snapshot can't offer: the dropdowns set the view's choices and redraw it
    picks = dropdowns(widget)
    assert picks["model"].options == ("all models", "fake/solo") and picks["showing"].value == "latency"
    picks["showing"].value = "time to first token"
    assert hist.view.value == "time to first token" and "none of the 3 answered calls was streamed" in shown(widget)
    hist.view.value = "latency"  # and a choice made in Python shows in the dropdown at the next redraw
    hist.refresh()
    assert picks["showing"].value == "latency" and "3 answered calls" in shown(widget)
    hist.close()


def test_dashboard_widget_holds_its_parts_twins_and_follows_calls():
    metrics = LocalMetrics()
    budget = Budget(daily=1, ledger="memory")
    board = Dashboard(metrics, budget, rate=1000, histogram_interval=0)  # every redraw redraws the figure too
    widget = board.widget()
    for part in (board.gauge, board.costs, board.histogram):
        assert part.widget() in widget.children  # the same twin, re-set by the dashboard's timer
    assert "calls <b>0</b>" in shown(widget) and "no calls yet" in shown(widget)
    llm = AutoPicker("sandbox/fast", metrics=metrics, budget=budget)
    llm.invoke("x")
    board.flush()
    assert "calls <b>1</b> · attempts <b>1</b>" in shown(widget) and "sandbox/fast" in shown(widget)
    for _ in range(2):
        llm.invoke("y")
    board.flush()
    assert "calls <b>3</b> · attempts <b>3</b>" in shown(widget)
    assert images(widget) == [board.histogram.image.value] and "3 answered calls" in shown(widget)
    assert board._repr_mimebundle_().keys() == {"text/plain", "text/html"}  # display(board) is still HTML
    board.close()


def test_health_panel_widget_follows_the_models():
    failing = ScriptedChatModel(script=[http_error(503, "overloaded")], model_name="down")
    llm = AutoPicker(failing, ["sandbox/echo"], policy=Policy(max_retries=0, cooldown_after=5))
    panel = HealthPanel(llm, rate=1000)
    widget = panel.widget()
    assert "% of" not in shown(widget)
    llm.invoke("one")  # the primary fails, the fallback answers
    panel._live.flush()
    assert "100% of 1" in shown(widget) and "0% of 1" in shown(widget) and "overloaded" in shown(widget)
    llm.invoke("two")
    panel._live.flush()
    assert "100% of 2" in shown(widget) and "0% of 2" in shown(widget)
    assert "coffee-nb-health-closed" in shown(widget)  # two failures in a row, five to open the breaker
    panel.close()


def test_job_progress_widget_follows_the_job():
    from coffee_nb.notebook.map_magic import progress_view

    view = progress_view(10)
    widget = view.widget()
    assert "[bar 0/10 info]" in shown(widget)
    view.update(JobStatus("running", 10, 4, 1, 2, 0, 3, Decimal("0.001"), 0, None, None, 1.0, 8, 0, 0.0))
    assert "[bar 5/10 warning]" in shown(widget) and "5 / 10 rows" in shown(widget)
    done = JobStatus("budget", 10, 6, 1, 2, 3, 0, Decimal("0.002"), 0, None, None, 2.0, 8, 0, 0.0)
    view.finish(done, "stopped at the budget")
    assert "[bar 10/10 danger]" in shown(widget) and "stopped at the budget" in shown(widget)


def test_a_view_that_empties_itself_empties_its_widget():
    from coffee_nb.notebook.compare_magic import _progress

    bar = _progress("2 models")
    widget = bar.widget()
    bar.update(1, 2)
    assert "[bar 1/2 info]" in shown(widget) and "1 / 2 calls" in shown(widget)
    bar.hide()
    assert widget.children == ()


def test_a_shown_widget_keeps_its_view_redrawing_until_the_view_is_closed():
    metrics = LocalMetrics()
    widget = CostTable(metrics, rate=1000).widget()  # nobody holds the view: its widget does
    gc.collect()
    (table,) = [v for v in live_views() if isinstance(v, CostTable) and v.metrics is metrics]
    llm = AutoPicker(ScriptedChatModel(model_name="kept"), metrics=metrics)
    llm.invoke("x")
    table._live.flush()
    assert "fake/kept" in shown(widget)
    picture = shown(widget)
    table.close()  # stops redrawing: the widget keeps its last picture, and lets go of the view
    llm.invoke("y")
    assert shown(widget) == picture and metrics._listeners == []
    view = weakref.ref(table)
    del table
    gc.collect()
    assert view() is None


def test_widget_without_ipywidgets_says_how_to_install_it(monkeypatch):
    table = CostTable(LocalMetrics(), rate=1000)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'coffee_nb\[widgets\]'"):
        table.widget()
    assert "no calls yet" in table.html()  # the HTML view needs none
    table.close()
