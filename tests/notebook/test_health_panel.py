"""HealthPanel built directly (no front end): scripted failures open a breaker, the panel shows it with a
countdown; alone it comes back for the countdown, in the Dashboard the dashboard's timer does."""

from __future__ import annotations

import time

import pytest

import coffee_nb
from coffee_nb import AutoPicker, HealthPanel, LocalMetrics, Policy, sandbox
from coffee_nb.notebook._dashboard import Dashboard
from coffee_nb.notebook.health_panel import countdown, health_html
from coffee_nb.testing import ScriptedChatModel, http_error

pytestmark = pytest.mark.usefixtures("quiet_sandbox")

OPENS = Policy(max_retries=0, cooldown_after=2, cooldown_min=600, cooldown=600)


def _tripped(policy: Policy = OPENS) -> AutoPicker:
    """A two-model chain whose primary fails twice in a row (its breaker opens); the fallback answers."""
    failing = ScriptedChatModel(script=[http_error(503, "overloaded, key sk-proj-abcdefghijklmnop")], model_name="down")
    llm = AutoPicker(failing, ["sandbox/echo"], policy=policy)
    llm.invoke("one")
    llm.invoke("two")
    return llm


def test_an_open_breaker_shows_with_its_countdown():
    llm = _tripped()
    panel = HealthPanel(llm)
    down = panel.health[0]
    assert down.state == "open" and panel.ticking
    html = panel.table.value
    assert "coffee-nb-health-open" in html and f"reopens in {countdown(down.reopens_in_s)}" in html
    assert f"until {down.reopens_at.astimezone():%H:%M:%S}" in html
    assert "<td>2</td>" in html  # failures in a row
    assert "server: " in html and "100% of 2" in html  # last error class, recent error rate
    assert "sk-proj-abcdefghijklmnop" not in html and "[redacted]" in html
    assert "coffee-nb-health-closed" in html and "sandbox/echo" in html  # the fallback, closed, with latency
    assert repr(panel) == "coffee_nb router health (live)"
    panel.close()


def test_alone_the_panel_comes_back_for_the_countdown_until_the_breaker_half_opens():
    llm = _tripped(Policy(max_retries=0, cooldown_after=2, cooldown_min=0.3, cooldown=0.3))
    panel = HealthPanel(llm, rate=50)
    assert panel.ticking and panel._live.pokes >= 1  # a redraw is due for the countdown
    deadline = time.monotonic() + 10
    while panel.health[0].state == "open" and time.monotonic() < deadline:
        panel._live.flush()  # the panel's own timer redraws it
        time.sleep(0.02)
    assert panel.health[0].state == "half-open" and not panel.ticking
    assert "the next call probes it" in panel.table.value and "reopens in" not in panel.table.value
    pokes = panel._live.pokes
    panel.refresh()
    assert panel._live.pokes == pokes  # nothing to count down: no more redraws asked for
    panel.close()


def test_records_of_any_picker_poke_a_live_panel_and_close_detaches_it():
    llm = AutoPicker("sandbox/echo")
    panel = HealthPanel(llm, rate=1000)
    before = panel._live.pokes
    llm.invoke("hi")
    assert panel._live.pokes > before
    panel._live.flush()
    assert "100%" not in panel.table.value and "0% of 1" in panel.table.value
    panel.close()
    after = panel._live.pokes
    llm.invoke("again")
    assert panel._live.pokes == after


def test_in_the_dashboard_the_dashboard_timer_drives_the_countdown():
    llm = _tripped()
    board = Dashboard(LocalMetrics(), health=llm, rate=1000)
    assert board.health_panel in board.children and "reopens in" in board.health_panel.table.value
    before = board._live.pokes
    board.refresh()
    assert board._live.pokes > before  # open breaker: the dashboard comes back for the countdown
    assert not board.health_panel._watching  # no timer or subscription of its own
    board.close()
    assert Dashboard(LocalMetrics()).health_panel is None  # without health=, no panel (as before)


def test_the_session_dashboard_shows_session_health(no_keys):
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], ledger="memory")
    sandbox.inject("sandbox/fast", ["server_error"] * 3)
    assert coffee_nb.ask("hi", cache=False).model == "sandbox/echo"  # the session chain fell back
    board = coffee_nb.dashboard(display=False)
    text = board.health_panel.table.value
    assert "sandbox/fast" in text and "sandbox/echo" in text and "server: " in text
    board.close()
    panel = HealthPanel()  # the session's, read through coffee_nb.health()
    assert [r.model for r in panel.health][:2] == ["sandbox/fast", "sandbox/echo"]
    panel.close()


def test_health_html_and_countdown_text():
    assert countdown(0.2) == "1 s" and countdown(59.01) == "60 s" and countdown(125) == "2 min 05 s"
    assert countdown(None) == "?"
    assert health_html(coffee_nb.Health([])) == "<i>no models yet</i>"
    with pytest.raises(TypeError, match="HealthPanel reads"):
        HealthPanel(42)
