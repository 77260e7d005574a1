"""Progress: the projection and status lines, the tqdm view, the notebook widget (built directly), throttling."""

from __future__ import annotations

import io
import sys
from decimal import Decimal

import pandas as pd

from coffee_nb.jobs import JobStatus, Projection, TqdmView, map_rows
from coffee_nb.jobs._progress import Progress, make_view


def projection(**changes) -> Projection:
    values = {
        "rows": 1000,
        "cached": 200,
        "to_call": 800,
        "unfilled": 0,
        "models": ("sandbox/fast", "sandbox/smart"),
        "worst": Decimal("1.5"),
        "expected": Decimal("0.02"),
        "output_tokens": 200,
        "measured": False,
        "budget_left": Decimal("0.01"),
        "budget_label": "daily",
        "price_source": "sandbox",
    }
    return Projection(**{**values, **changes})


def test_projection_line_says_cost_cache_and_budget():
    line = projection().line()
    assert line.startswith("map_rows: 1,000 rows on sandbox/fast → sandbox/smart: 200 cached, 800 to call")
    assert "expected ~$0.02 (sandbox prices) (~200 output tokens a row, assumed)" in line
    assert "worst case $1.50 (sandbox prices)" in line
    assert "daily budget left $0.01; likely to stop at the budget (re-run later to resume)" in line
    assert "unpriced" in projection(worst=None, expected=None, budget_left=None).line()


def test_snapshot_projects_total_and_eta_from_rows_done():
    progress = Progress(projection())
    progress.answered = progress.cached = 200
    first = progress.snapshot()
    assert first.projected == Decimal("0.02")  # nothing called yet: the expected cost of what is left
    assert first.eta_s is None
    progress.first_launch = progress.started - 10.0
    progress.answered += 100
    progress.called = 100
    progress.spent = progress.called_cost = Decimal("0.01")
    later = progress.snapshot()
    assert later.projected == Decimal("0.01") + Decimal("0.0001") * 700  # the average so far, for the 700 left
    assert later.eta_s is not None and 60 < later.eta_s < 80  # 700 rows at ~10 rows/s


def test_status_line():
    status = Progress(projection()).snapshot()
    assert "0/1,000 rows · 0 failed · 0 cached · $0.00 (sandbox prices) spent" in status.line()
    assert "concurrency" in status.line()


def test_tqdm_view_outside_notebooks():
    out = io.StringIO()
    view = TqdmView(10, file=out)
    view.start(projection(rows=10))
    status = JobStatus("running", 10, 4, 1, 2, 0, 3, Decimal("0.001"), 0, Decimal("0.0025"), 3.0, 1.0, 16, 2, 0.5)
    view.update(status)
    view.finish(JobStatus("done", 10, 9, 1, 2, 0, 0, Decimal("0.002"), 0, None, None, 2.0, 16, 2, 0.5), None)
    text = out.getvalue()
    assert text.startswith("map_rows: 10 rows on")
    assert "1 failed, 2 cached" in text and "conc 16" in text and "2 rate limits" in text
    assert text.rstrip().endswith(
        "10/10 rows · 1 failed · 2 cached · $0.002 spent · 2.0 s · 2 rate limits (0.5 s held back)"
    )


def test_tqdm_view_without_ipywidgets_is_the_text_bar(monkeypatch):
    """ipywidgets is an extra: without it, the text bar at once (tqdm.auto would warn "IProgress not found"
    in a kernel first); with it, tqdm.auto's choice."""
    from tqdm.std import tqdm as text_bar

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if not installed: find_spec says None
    view = TqdmView(3, file=io.StringIO())
    view.start(projection(rows=3))
    assert type(view.bar) is text_bar
    view.bar.close()
    monkeypatch.undo()
    from tqdm.auto import tqdm as auto_bar

    view = TqdmView(3, file=io.StringIO())
    view.start(projection(rows=3))
    assert type(view.bar) is auto_bar
    view.bar.close()


def test_notebook_widget_view_is_a_thin_view_with_a_fixed_repr(capsys):
    from coffee_nb.notebook.map_magic import progress_view

    view = progress_view(10)
    assert repr(view) == "coffee_nb map_rows progress"
    view.start(projection(rows=10))
    assert "10 rows on" in view.head.value
    view.update(JobStatus("running", 10, 4, 1, 2, 0, 3, Decimal("0.001"), 0, None, None, 1.0, 8, 0, 0.0))
    assert view.bar.value == 5 and view.bar.max == 10 and "5 / 10 rows" in view.count.value
    assert view.bar.bar_style == "warning"  # a failed row shows
    done = JobStatus("budget", 10, 6, 1, 2, 3, 0, Decimal("0.002"), 0, None, None, 2.0, 8, 0, 0.0)
    view.finish(done, "stopped at the budget")
    assert view.bar.bar_style == "danger" and "stopped at the budget" in view.stats.value


def test_views_are_chosen_by_the_progress_option():
    assert make_view(False, 3) is None
    assert isinstance(make_view(True, 3), TqdmView)  # not in a kernel here
    mine = TqdmView(3)
    assert make_view(mine, 3) is mine


def test_a_view_hears_the_projection_first_then_updates_then_the_end():
    calls: list[str] = []

    class Recorder:
        def start(self, projection):
            calls.append("start")

        def update(self, status):
            calls.append("update")

        def finish(self, status, note):
            calls.append(f"finish:{status.status}")

    frame = pd.DataFrame({"q": ["a", "b", "c"]})
    map_rows(frame, "Say {q}", models=["sandbox/echo"], progress=Recorder())
    assert calls[0] == "start" and calls[-1] == "finish:done"
