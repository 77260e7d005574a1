"""Live widgets: BudgetGauge, LatencyHistogram, CostTable and the Dashboard that holds them.

Widgets are thin views over a model's state (a ``Budget``, a ``LocalMetrics`` read through its typed
``snapshot()`` and ``samples()``). Records and budget
events only *poke* a view; a timer redraws at most ``max_redraws_per_second`` times, from whatever
thread or event loop the calls run on, so a burst of calls never waits for a redraw. Views also
work when displayed after the calls were made (they read the state, not an event log). ``close()``
detaches a view from its model.
"""

from __future__ import annotations

import atexit
import html
import io
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as W  # noqa: N812 - one letter: it prefixes every widget below

from coffee_nb._format import money
from coffee_nb.metrics._snapshot import model_frame

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.metrics import MetricsSnapshot, Samples

__all__ = ["BudgetGauge", "CostTable", "Dashboard", "LatencyHistogram"]

DEFAULT_MAX_REDRAWS_PER_SECOND = 2.0
_MPL_LOCK = threading.Lock()  # matplotlib's text layout is not thread-safe; views redraw from timer threads


_ALL_LIVE: weakref.WeakSet[_Live] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At exit, cancel pending redraws and wait for running ones: a redraw inside matplotlib's C++ code
    while the interpreter finalizes aborts the process."""
    for live in list(_ALL_LIVE):
        live.close()
        with live.drawing:
            pass


class _Live:
    """Coalesces pokes from any thread into at most ``rate`` redraws per second (trailing edge)."""

    def __init__(self, redraw: Callable[[], None], rate: float) -> None:
        self._redraw = redraw
        self.drawing = threading.Lock()  # one redraw of a view at a time (timer vs refresh())
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self.pokes = 0
        self.redraws = 0
        _ALL_LIVE.add(self)

    def poke(self, *_: Any) -> None:
        with self._lock:
            self.pokes += 1
            if self._timer is not None or self._closed:
                return  # a redraw is already due: this change will be in it
            self._timer = threading.Timer(self.interval, self._fire)
            # not a daemon: interpreter exit waits for a due redraw instead of killing it mid-render
            self._timer.daemon = False
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
        with self.drawing:
            try:
                self._redraw()
            finally:
                self.redraws += 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait for a pending redraw (tests, and ``refresh()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                timer = self._timer
            if timer is None:
                return
            timer.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class _View(W.VBox):  # type: ignore[misc]  # ipywidgets ships no types: its classes are Any
    """Base: subscribe to models, redraw through a _Live, detach on close, a cheap fixed repr."""

    _label = "coffee_nb view"

    def __init__(self, *, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, watch: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._live = _Live(self.redraw, rate)
        self._unsubscribe: list[Callable[[], Any]] = []
        self._watching = watch  # False: a part of a Dashboard, redrawn by the dashboard's timer

    def _watch(self, model: Any) -> None:
        if self._watching and model is not None and hasattr(model, "subscribe"):
            self._unsubscribe.append(model.subscribe(self._live.poke))

    def redraw(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw now (after any pending coalesced redraw)."""
        self._live.flush()
        with self._live.drawing:
            self.redraw()

    @property
    def redraws(self) -> int:
        return self._live.redraws

    def close(self) -> None:
        self._live.close()
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe.clear()
        super().close()

    def __repr__(self) -> str:
        return self._label


def _bar_style(fraction: float, warn_at: float) -> str:
    if fraction >= 1.0:
        return "danger"
    if fraction >= warn_at:
        return "warning"
    return "success"


def _until(when: Any) -> str:
    if when is None:
        return "never resets"
    from datetime import UTC, datetime

    seconds = max(0, int((when - datetime.now(UTC)).total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    return f"resets in {days}d {hours}h" if days else f"resets in {hours}h {rem // 60:02d}m"


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
        self.bars: dict[str, W.FloatProgress] = {}
        self.held: dict[str, W.FloatProgress] = {}
        self.texts: dict[str, W.HTML] = {}
        rows = []
        for name, status in budget.status().items():
            kind = "hard" if status["hard"] else "soft"
            label = W.HTML(
                f"<b>{html.escape(name)}</b> <span style='opacity:.6'>({kind})</span>", layout=W.Layout(width="190px")
            )
            bar = W.FloatProgress(min=0.0, max=100.0, layout=W.Layout(width="260px"))
            held = W.FloatProgress(min=0.0, max=100.0, bar_style="info", layout=W.Layout(width="260px", height="6px"))
            text = W.HTML()
            self.bars[name], self.held[name], self.texts[name] = bar, held, text
            rows.append(W.HBox([label, W.VBox([bar, held]), text]))
        if not rows:
            rows.append(W.HTML("<i>No budget limits configured.</i>"))
        self.children = [W.HTML("<b>Budget</b>"), *rows]
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
    """Latency distribution per model (toggle), p50 and p95 marked; time to first token as a second view."""

    _label = "coffee_nb latency histogram (live)"

    def __init__(
        self, metrics: Any, *, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, max_bins: int = 40, watch: bool = True
    ) -> None:
        super().__init__(rate=rate, watch=watch)
        self.metrics = metrics
        self.max_bins = max_bins
        self.model = W.Dropdown(
            options=["all models"], value="all models", description="model", layout=W.Layout(width="320px")
        )
        self.view = W.ToggleButtons(options=["latency", "time to first token"], value="latency")
        self.image = W.Image(format="png", layout=W.Layout(width="520px"))
        self.caption = W.HTML()
        self.model.observe(lambda _: self.redraw(), names="value")
        self.view.observe(lambda _: self.redraw(), names="value")
        # the matplotlib figure is rendered to PNG (Agg, no pyplot state) into an Image widget: it redraws in
        # place from any thread and shows in every front end, including saved notebooks
        self.children = [W.HTML("<b>Latency</b>"), W.HBox([self.model, self.view]), self.image, self.caption]
        self._watch(metrics)
        self.redraw()

    def data(self, samples: Samples | None = None) -> dict[str, Any]:
        """What the figure shows: per model the histogram counts and bin edges, with p50/p95."""
        import numpy as np

        if samples is None:
            samples = self.metrics.samples()
        by_model = samples.latency if self.view.value == "latency" else samples.ttft
        if self.model.value != "all models":
            by_model = {k: v for k, v in by_model.items() if k == self.model.value}
        values = np.concatenate(list(by_model.values())) if by_model else np.empty(0)
        if not len(values):
            return {"models": {}, "count": 0, "p50": None, "p95": None, "edges": None}
        lo, hi = float(values.min()), float(values.max())
        log = lo > 0 and hi / lo > 100  # wide ranges read better on a log axis
        n_bins = int(min(self.max_bins, max(1, math.ceil(math.sqrt(len(values))))))
        if hi == lo:
            edges = np.array([lo * 0.9, lo * 1.1 + 1e-9])
        elif log:
            edges = np.logspace(math.log10(lo), math.log10(hi), n_bins + 1)
            edges[0], edges[-1] = lo, hi  # exact ends: rounding must not drop the extremes
        else:
            edges = np.linspace(lo, hi, n_bins + 1)
        models = {m: np.histogram(v, bins=edges)[0] for m, v in by_model.items()}
        p50, p95 = np.percentile(values, [50, 95])
        return {
            "models": models,
            "count": len(values),
            "p50": float(p50),
            "p95": float(p95),
            "edges": edges,
            "log": log,
        }

    def redraw(self) -> None:
        samples = self.metrics.samples()
        names = ["all models", *sorted(samples.latency)]
        if list(self.model.options) != names:
            current = self.model.value
            self.model.options = names
            self.model.value = current if current in names else "all models"
        d = self.data(samples)
        self.image.value = self._png(d)
        if d["count"]:
            self.caption.value = (
                f"{d['count']} answered call{'s' if d['count'] != 1 else ''} · "
                f"p50 {d['p50']:.3f} s · p95 {d['p95']:.3f} s"
            )
        else:
            self.caption.value = "<i>no answered calls yet</i>"

    def _png(self, d: dict[str, Any]) -> bytes:
        with _MPL_LOCK:
            return self._render(d)

    def _render(self, d: dict[str, Any]) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.2, 2.4), dpi=80)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.1, right=0.98, top=0.95, bottom=0.2)  # tight_layout costs more than the plot
        ax = fig.add_subplot(1, 1, 1)
        what = "time to first token" if self.view.value != "latency" else "latency"
        if d["count"]:
            edges = d["edges"]
            baseline: Any = 0
            for model, counts in d["models"].items():  # stacked, one artist per model
                top = counts + baseline
                ax.stairs(top, edges, baseline=baseline, fill=True, alpha=0.8, label=model)
                baseline = top
            ymax = float(baseline.max()) if hasattr(baseline, "max") else 1.0
            ax.set_ylim(0, ymax * 1.15 or 1)
            for q, value, style in (("p50", d["p50"], "--"), ("p95", d["p95"], ":")):
                ax.axvline(value, color="black", linestyle=style, linewidth=1)
                ax.text(value, ymax * 1.05, f" {q} {value:.2f}s", fontsize=7, ha="left")
            if d.get("log"):
                ax.set_xscale("log")
            if len(d["models"]) > 1:
                ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{what} (s)", fontsize=8)
        ax.set_ylabel("calls", fontsize=8)
        ax.tick_params(labelsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
        return buf.getvalue()


# the column names CostTable.dataframe() had before it and summary() came to share model_frame()
_COST_TABLE_NAMES = {"input_tokens": "tokens_in", "output_tokens": "tokens_out", "cost_share": "share"}
_COST_TABLE_COLUMNS = ["calls", "errors", "fallbacks", "tokens_in", "tokens_out", "cost_usd", "share", "unpriced_calls"]


class CostTable(_View):
    """Per model: calls, errors, fallbacks, tokens in/out, cost, share; a totals row; unpriced flagged."""

    _label = "coffee_nb cost table (live)"

    def __init__(self, metrics: Any, *, rate: float = DEFAULT_MAX_REDRAWS_PER_SECOND, watch: bool = True) -> None:
        super().__init__(rate=rate, watch=watch)
        self.metrics = metrics
        self.table = W.HTML()
        self.children = [W.HTML("<b>Costs</b>"), self.table]
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
            weight = "font-weight:bold;border-top:1px solid #999" if model == "total" else ""
            rows.append(
                f"<tr style='{weight}'><td>{html.escape(str(model))}</td><td>{r['calls']}</td><td>{r['errors']}</td>"
                f"<td>{r['fallbacks']}</td><td>{r['tokens_in']}</td><td>{r['tokens_out']}</td>"
                f"<td>{money(r['cost_usd'])}{flag}</td><td>{r['share']:.0%}</td></tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in ("model", "calls", "errors", "fallbacks", "tokens in", "tokens out", "cost", "share")
        )
        self.table.value = (
            f"<table class='coffee-nb-costs tex2jax_ignore mathjax_ignore'><tr>{head}</tr>{''.join(rows)}</table>"
        )


class Dashboard(_View):
    """Budget gauge, latency histogram and cost table, with counters and the last calls; with ``health``
    (True: the session's, or an AutoPicker, or a function returning a Health) router health too.

    One coalescing timer drives every part (at most ``rate`` redraws per second); the histogram, whose
    figure is the costly part, re-renders at most every ``histogram_interval`` seconds.
    """

    _label = "coffee_nb dashboard (live)"

    def __init__(
        self,
        metrics: Any,
        budget: Any = None,
        *,
        last: int = 8,
        rate: float = 2.0,
        histogram_interval: float = 3.0,
        health: Any = None,
    ) -> None:
        super().__init__(rate=rate)
        self.metrics = metrics
        self.last_n = last
        self.histogram_interval = histogram_interval
        self._histogram_at = 0.0
        self.gauge = BudgetGauge(budget, rate=0, watch=False) if budget is not None else None
        self.histogram = LatencyHistogram(metrics, rate=0, watch=False)
        self.costs = CostTable(metrics, rate=0, watch=False)
        self.health_panel = _health_panel(health)
        self._histogram_at = time.monotonic()
        self.counters = W.HTML()
        self.recent = W.HTML()
        parts: list[Any] = [W.HTML("<h4 style='margin:4px 0'>coffee_nb</h4>"), self.counters]
        if self.gauge is not None:
            parts.append(self.gauge)
        parts += [self.costs, self.histogram, W.HTML("<b>Last calls</b>"), self.recent]
        if self.health_panel is not None:
            parts.append(self.health_panel)
        self.children = parts
        self._watch(metrics)
        self._watch(budget)
        self._draw_own()

    def counter_values(self, snapshot: MetricsSnapshot | None = None) -> dict[str, Any]:
        """The counters line's values; fallback routes labelled "from -> to" as shown."""
        s = self.metrics.snapshot() if snapshot is None else snapshot
        return {
            "requests": s.attempts,
            "answered": s.ok,
            "errors": dict(s.error_classes),
            "fallbacks": {f"{a} -> {b}": n for (a, b), n in s.routes().items()},
            "cache_hits": s.cache_hits,
            "cost": s.cost,
        }

    def _draw_own(self, snapshot: MetricsSnapshot | None = None) -> None:
        import pandas as pd

        c = self.counter_values(snapshot)
        errors = ", ".join(f"{k} {n}" for k, n in sorted(c["errors"].items())) or "none"
        routes = ", ".join(f"{k} ({n})" for k, n in c["fallbacks"].items()) or "none"
        self.counters.value = (
            f"requests <b>{c['requests']}</b> · answered <b>{c['answered']}</b> · cache hits <b>{c['cache_hits']}</b>"
            f" · cost <b>{money(c['cost'])}</b><br>errors: {html.escape(errors)}<br>fallbacks: {html.escape(routes)}"
        )
        df = self.metrics.to_dataframe(last=self.last_n)
        rows = "".join(
            f"<tr><td>{r.started_at:%H:%M:%S}</td><td>{html.escape(str(r.model))}</td><td>{r.role}</td>"
            f"<td>{r.outcome}{'' if pd.isna(r.error_class) else ' · ' + str(r.error_class)}"
            f"</td><td>{r.latency_s:.2f}s</td>"
            f"<td>{'cache' if r.cache_hit else ('' if r.priced else 'unpriced')}</td></tr>"
            for r in df.itertuples()
        )
        self.recent.value = f"<table>{rows}</table>" if rows else "<i>no calls yet</i>"

    def redraw(self, *, force: bool = False) -> None:
        snapshot = self.metrics.snapshot()  # one read serves the counters and the cost table
        self._draw_own(snapshot)
        if self.gauge is not None:
            self.gauge.redraw()
        self.costs.redraw(snapshot)
        now = time.monotonic()
        if force or now - self._histogram_at >= self.histogram_interval:
            self.histogram.redraw()
            self._histogram_at = now
        else:
            self._live.poke()  # come back for the histogram once its interval has passed
        if self.health_panel is not None:
            self.health_panel.redraw()
            if self.health_panel.ticking:
                self._live.poke()  # a breaker is open: come back for its countdown

    def refresh(self) -> None:
        self._live.flush()
        with self._live.drawing:
            self.redraw(force=True)

    def flush(self) -> None:
        """Wait until pending coalesced redraws have run."""
        self._live.flush()

    def close(self) -> None:
        for part in (self.gauge, self.histogram, self.costs, self.health_panel):
            if part is not None:
                part.close()
        super().close()


def _health_panel(health: Any) -> Any:
    """The Dashboard's router-health part (``health``: what HealthPanel reads), or None without one."""
    if health is None or health is False:
        return None
    from coffee_nb.notebook.health_panel import HealthPanel  # it builds on _View, defined above

    return HealthPanel(None if health is True else health, rate=0, watch=False)
