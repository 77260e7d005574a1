"""The Dashboard: counters, budget gauge, cost table, latency histogram, the last calls and (optionally)
router health, all driven by one coalescing timer and shown as one static snapshot updated in place."""

from __future__ import annotations

import html
import time
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb.notebook._live import HTML, _View
from coffee_nb.notebook.health_panel import HealthPanel
from coffee_nb.notebook.widgets import BudgetGauge, CostTable, LatencyHistogram, _title, table_html
from coffee_nb.session._session import get_session

if TYPE_CHECKING:
    from coffee_nb.metrics import MetricsSnapshot

__all__ = ["Dashboard", "dashboard"]

LAST_CALLS_COLUMNS = ["time", "model", "role", "outcome", "latency", "tokens in→out", "cost"]


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


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
        self.gauge = BudgetGauge(budget, rate=0, watch=False) if budget is not None else None
        self.histogram = LatencyHistogram(metrics, rate=0, watch=False)
        self.costs = CostTable(metrics, rate=0, watch=False)
        self.health_panel = _health_panel(health)
        self._histogram_at = time.monotonic()
        self.counters = HTML()
        self.recent = HTML()
        parts: list[Any] = [HTML("<h4 style='margin:4px 0'>coffee_nb</h4>"), self.counters]
        if self.gauge is not None:
            parts.append(self.gauge)
        parts += [self.costs, self.histogram, _title("Last calls"), self.recent]
        if self.health_panel is not None:
            parts.append(self.health_panel)
        self.children = parts
        self._watch(metrics)
        self._watch(budget)
        self._draw_own()

    def counter_values(self, snapshot: MetricsSnapshot | None = None) -> dict[str, Any]:
        """The counters line's values: ``calls`` (prompts sent, each counted once however many attempts it
        took), ``attempts`` (requests to models, retries and fallbacks included; ``requests`` is the same
        number under its old name), ``refused`` (attempts a budget refused, nothing sent), skips by reason;
        fallback routes labelled "from -> to" as shown."""
        s = self.metrics.snapshot() if snapshot is None else snapshot
        return {
            "calls": s.calls,
            "attempts": s.attempts,
            "requests": s.attempts,
            "answered": s.ok,
            "errors": dict(s.error_classes),
            "refused": s.refused,
            "skipped": {k: n for k, n in s.skip_classes.items() if k != "budget"},
            "fallbacks": {f"{a} -> {b}": n for (a, b), n in s.routes().items()},
            "cache_hits": s.cache_hits,
            "cost": s.cost,
        }

    def _draw_own(self, snapshot: MetricsSnapshot | None = None) -> None:
        c = self.counter_values(snapshot)
        problems = [f"{k} {n}" for k, n in sorted(c["errors"].items())]
        if c["refused"]:
            problems.append(f"refused by the budget {c['refused']}")
        problems += [f"skipped ({k}) {n}" for k, n in sorted(c["skipped"].items())]
        routes = ", ".join(f"{k} ({n})" for k, n in c["fallbacks"].items()) or "none"
        self.counters.value = (
            f"<span class='coffee-nb-counts'>calls <b>{c['calls']}</b> · attempts <b>{c['attempts']}</b></span>"
            f" · answered <b>{c['answered']}</b> · cache hits <b>{c['cache_hits']}</b> · cost <b>{money(c['cost'])}</b>"
            f"<br>errors: {html.escape(', '.join(problems) or 'none')}<br>fallbacks: {html.escape(routes)}"
        )
        self.recent.value = self._last_calls()

    def _last_calls(self) -> str:
        import pandas as pd  # lazy: pandas

        df = self.metrics.to_dataframe(last=self.last_n)
        if not len(df):
            return "<i>no calls yet</i>"
        rows = []
        for r in df.itertuples():
            error = "" if pd.isna(r.error_class) else f" · {html.escape(str(r.error_class))}"
            skipped = str(r.outcome) == "skipped"
            rows.append(
                [
                    f"{datetime.fromtimestamp(r.started_at.timestamp()):%H:%M:%S}",  # local time
                    html.escape(str(r.model)),
                    html.escape(str(r.role)),
                    f"{html.escape(str(r.outcome))}{error}",
                    "–" if skipped or r.cache_hit else f"{r.latency_s:.2f} s",
                    "–" if skipped else f"{r.input_tokens}→{r.output_tokens}",
                    _cost_cell(r),
                ]
            )
        return table_html(LAST_CALLS_COLUMNS, rows, "coffee-nb-last-calls")

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
            self._show_update()

    def flush(self) -> None:
        """Wait until pending coalesced redraws have run."""
        self._live.flush()

    def _subviews(self) -> list[_View]:
        return [p for p in (self.gauge, self.histogram, self.costs, self.health_panel) if p is not None]

    def close(self) -> None:
        for part in self._subviews():
            part.close()
        super().close()


def _cost_cell(r: Any) -> str:
    """The last-calls cost: the amount of a priced attempt, $0 for the cache, "unpriced" only for an
    answered attempt without a price; a failure that used nothing charged nothing ("–")."""
    if r.cache_hit:
        return "$0 (cache)"
    if r.priced:
        return money(Decimal(repr(float(r.cost_usd)))) + (
            " (sandbox prices)" if str(r.price_source) == "sandbox" else ""
        )
    if str(r.outcome) == "ok":
        return "<span style='color:#b26a00'>unpriced</span>"
    return "–"


def _health_panel(health: Any) -> Any:
    """The Dashboard's router-health part (``health``: what HealthPanel reads), or None without one."""
    if health is None or health is False:
        return None
    return HealthPanel(None if health is True else health, rate=0, watch=False)


def dashboard(*, display: bool = True, **kwargs: Any) -> Dashboard:
    """The live dashboard of the notebook session (budget, latency, costs, counters, last calls)."""
    session = get_session()
    kwargs.setdefault("health", True)  # router health: breaker states, countdowns to reopening
    board = Dashboard(session.metrics, session.budget, **kwargs)
    if display:
        from IPython.display import display as show  # lazy: IPython

        show(board)
    return board
