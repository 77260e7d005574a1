"""Live views: BudgetGauge, LatencyHistogram, CostTable and the Dashboard that holds them.

Views are thin views over a model's state (a ``Budget``, a ``LocalMetrics`` read through its typed
``snapshot()`` and ``samples()``). Records and budget events only *poke* a view; a timer redraws at
most ``max_redraws_per_second`` times, from whatever thread or event loop the calls run on, so a burst
of calls never waits for a redraw. Views also work when displayed after the calls were made (they read
the state, not an event log). ``close()`` detaches a view from its model.

A view is shown as static HTML (figures as PNG inside it) that each redraw replaces in place
(``coffee_nb.notebook._live``): a saved notebook shows the last picture, with or without a kernel.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb.metrics._snapshot import model_frame
from coffee_nb.notebook._histogram import histogram_data, render_png
from coffee_nb.notebook._live import HTML, Bar, Box, Choice, Image, _Live, _View

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.metrics import MetricsSnapshot, Samples

__all__ = ["BudgetGauge", "CostTable", "LatencyHistogram", "_Live", "_View"]  # Dashboard: notebook._dashboard

DEFAULT_MAX_REDRAWS_PER_SECOND = 2.0
TABLE = "border-collapse:collapse"
CELL = "padding:1px 10px 1px 0;text-align:left"


def _bar_style(fraction: float, warn_at: float) -> str:
    if fraction >= 1.0:
        return "danger"
    if fraction >= warn_at:
        return "warning"
    return "success"


def _until(when: Any) -> str:
    if when is None:
        return "never resets"
    seconds = max(0, int((when - datetime.now(UTC)).total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    return f"resets in {days}d {hours}h" if days else f"resets in {hours}h {rem // 60:02d}m"


def _title(text: str) -> HTML:
    return HTML(f"<b>{text}</b>", style="margin:6px 0 2px 0")


def table_html(columns: list[str], rows: list[list[str]], cls: str, *, bold_last: bool = False) -> str:
    """A table with a header row; ``rows`` hold HTML already escaped."""
    head = "".join(f"<th style='{CELL}'>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        style = " style='font-weight:bold;border-top:1px solid #999'" if bold_last and i == len(rows) - 1 else ""
        body.append(f"<tr{style}>" + "".join(f"<td style='{CELL}'>{v}</td>" for v in r) + "</tr>")
    return f"<table class='{cls}' style='{TABLE}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class BudgetGauge(_View):
    """One bar per configured limit: spent / limit, remaining, time to reset, reserved in flight.

    Bars turn yellow at the warning threshold and red when a limit is reached; soft limits say so.
    """

    _label = "coffee_nb budget gauge (live)"

    def __init__(
        self, budget: Any, *, metrics: Any = None, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, watch: bool = True
    ) -> None:
        super().__init__(rate=rate, watch=watch)
        self.budget = budget
        self.bars: dict[str, Bar] = {}
        self.held: dict[str, Bar] = {}
        self.texts: dict[str, HTML] = {}
        rows: list[Any] = []
        for name, status in budget.status().items():
            kind = "hard" if status["hard"] else "soft"
            label = HTML(f"<b>{html.escape(name)}</b> <span style='opacity:.6'>({kind})</span>", style="width:150px")
            bar = Bar(0.0)
            held = Bar(0.0, bar_style="info", height=5)
            text = HTML()
            self.bars[name], self.held[name], self.texts[name] = bar, held, text
            rows.append(
                Box([label, Box([bar, held], style="display:flex;flex-direction:column;gap:2px"), text], row=True)
            )
        if not rows:
            rows.append(HTML("<i>No budget limits configured.</i>"))
        self.children = [_title("Budget"), *rows]
        self._watch(budget)
        self._watch(metrics)  # spending shows up as records
        self.redraw()

    def redraw(self) -> None:
        for name, s in self.budget.status().items():
            if name not in self.bars:
                continue
            limit = s["budget"]
            spent_frac = float(s["spent"] / limit) if limit else (1.0 if s["spent"] else 0.0)
            held_frac = float((s["spent"] + s["reserved"]) / limit) if limit else 0.0
            bar = self.bars[name]
            bar.value = min(100.0, spent_frac * 100)
            bar.bar_style = _bar_style(spent_frac, s["warn_at"])
            self.held[name].value = min(100.0, held_frac * 100)
            reserved = (
                f" · <span style='color:#1a73e8'>{money(s['reserved'])} in flight</span>" if s["reserved"] else ""
            )
            over = " · <b style='color:#c62828'>limit reached</b>" if spent_frac >= 1 else ""
            self.texts[name].value = (
                f"{money(s['spent'])} / {money(limit)} · <b>{money(s['remaining'])} left</b>{reserved}"
                f" · {_until(s['resets_at'])}{over}"
            )


class LatencyHistogram(_View):
    """Latency distribution, stacked per model, p50 and p95 marked; ``view.value = "time to first token"``
    shows streamed answers' time to first token instead, ``model.value`` one model."""

    _label = "coffee_nb latency histogram (live)"

    def __init__(
        self, metrics: Any, *, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, max_bins: int = 40, watch: bool = True
    ) -> None:
        super().__init__(rate=rate, watch=watch)
        self.metrics = metrics
        self.max_bins = max_bins
        self.model = Choice(["all models"], "all models", description="model")
        self.view = Choice(["latency", "time to first token"], "latency", description="showing")
        self.image = Image(alt="latency histogram")
        self.caption = HTML()
        self.model.on_change = self.view.on_change = self.redraw
        self.children = [_title("Latency"), self.image, self.caption]
        self._settings = Box([self.model, self.view], row=True)  # dropdowns in the widget twin only
        self._watch(metrics)
        self.redraw()

    def data(self, samples: Samples | None = None) -> dict[str, Any]:
        """What the figure shows: per model the histogram counts and bin edges, with p50/p95."""
        if samples is None:
            samples = self.metrics.samples()
        by_model = samples.latency if self.view.value == "latency" else samples.ttft
        if self.model.value != "all models":
            by_model = {k: v for k, v in by_model.items() if k == self.model.value}
        return histogram_data(by_model, self.max_bins)

    def _answered(self, samples: Samples) -> int:
        chosen = self.model.value
        return sum(len(v) for k, v in samples.latency.items() if chosen in ("all models", k))

    def redraw(self) -> None:
        samples = self.metrics.samples()
        names = ["all models", *sorted(samples.latency)]
        if list(self.model.options) != names:
            current = self.model.value
            self.model.options = names
            self.model._value = current if current in names else "all models"
        d = self.data(samples)
        answered = self._answered(samples)
        ttft = self.view.value != "latency"
        empty = "no answered calls yet"
        if ttft and answered:
            empty = "no streamed answers yet: time to first token is measured on streams\n"
            empty += f"({answered} answered, none streamed)"
        self.image.value = render_png(d, "time to first token" if ttft else "latency", empty)
        which = "" if self.model.value == "all models" else f" · {html.escape(self.model.value)}"
        if d["count"]:
            noun = ("streamed answer" if ttft else "answered call") + ("s" if d["count"] != 1 else "")
            self.caption.value = (
                f"{'time to first token' if ttft else 'latency'}{which}: {d['count']} {noun}"
                f" · p50 {d['p50']:.3f} s · p95 {d['p95']:.3f} s"
            )
        elif ttft and answered:
            calls = "the one answered call was" if answered == 1 else f"none of the {answered} answered calls was"
            self.caption.value = (
                f"<i>time to first token{which}: none — it is measured on streamed answers, and {calls} streamed</i>"
            )
        else:
            self.caption.value = "<i>no answered calls yet</i>"
        self.caption.value += self._ttft_note(samples) if not ttft else ""

    def _ttft_note(self, samples: Samples) -> str:
        """Under the latency figure: time to first token in one line, or why there is none."""
        chosen = self.model.value
        values = [v for k, v in samples.ttft.items() if chosen in ("all models", k)]
        streamed = sum(len(v) for v in values)
        answered = self._answered(samples)
        if not answered:
            return ""
        if not streamed:
            calls = "the one answered call was" if answered == 1 else f"none of the {answered} answered calls was"
            return (
                "<br><span style='opacity:.75'>time to first token: none — it is measured on streamed answers, "
                f"and {calls} streamed</span>"
            )
        import numpy as np  # lazy: numpy

        p50, p95 = np.percentile(np.concatenate(values), [50, 95])
        return (
            f"<br><span style='opacity:.75'>time to first token: {streamed} streamed · p50 {p50:.3f} s · "
            f"p95 {p95:.3f} s</span>"
        )

    def _body(self) -> str:
        return "".join(str(part.html()) for part in (self.children[0], self.image, self.caption))

    def _twin_parts(self) -> list[Any]:
        return [self.children[0], self._settings, self.image, self.caption]


# the column names CostTable.dataframe() had before it and summary() came to share model_frame()
_COST_TABLE_NAMES = {"input_tokens": "tokens_in", "output_tokens": "tokens_out", "cost_share": "share"}
_COST_TABLE_COLUMNS = ["calls", "errors", "fallbacks", "tokens_in", "tokens_out", "cost_usd", "share", "unpriced_calls"]


class CostTable(_View):
    """Per model: calls, errors, fallbacks, tokens in/out, cost, share; a totals row; unpriced flagged."""

    _label = "coffee_nb cost table (live)"

    def __init__(self, metrics: Any, *, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, watch: bool = True) -> None:
        super().__init__(rate=rate, watch=watch)
        self.metrics = metrics
        self.table = HTML()
        self.children = [_title("Costs"), self.table]
        self._watch(metrics)
        self.redraw()

    def dataframe(self, snapshot: MetricsSnapshot | None = None) -> pd.DataFrame:
        """Per model and in total: calls, errors, fallbacks, tokens in/out, exact cost, share, unpriced calls.

        The numbers of ``LocalMetrics.summary()`` (one function makes both), under this table's column names.
        """
        if snapshot is None:
            snapshot = self.metrics.snapshot()
        df = model_frame(snapshot, exact_costs=True, totals=True)
        return df.rename(columns=_COST_TABLE_NAMES)[_COST_TABLE_COLUMNS]

    def redraw(self, snapshot: MetricsSnapshot | None = None) -> None:
        df = self.dataframe(snapshot)
        if df.empty:
            self.table.value = "<i>no calls yet</i>"
            return
        rows = []
        for model, r in df.iterrows():
            flag = f" ⚠ {r['unpriced_calls']} unpriced" if r["unpriced_calls"] else ""
            rows.append(
                [
                    html.escape(str(model)),
                    str(r["calls"]),
                    str(r["errors"]),
                    str(r["fallbacks"]),
                    str(r["tokens_in"]),
                    str(r["tokens_out"]),
                    f"{money(r['cost_usd'])}{flag}",
                    f"{r['share']:.0%}",
                ]
            )
        columns = ["model", "attempts", "errors", "fallbacks", "tokens in", "tokens out", "cost", "share"]
        self.table.value = table_html(columns, rows, "coffee-nb-costs", bold_last=True)
