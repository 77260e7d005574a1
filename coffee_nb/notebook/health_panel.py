"""``HealthPanel``: router health, live. Per model the breaker state (closed / open until a time, with a
countdown to reopening / half-open), failures in a row, the last error (redacted), the recent error rate,
p50/p95 latency and rate-limit headroom; read from ``coffee_nb.health()`` (or one AutoPicker's ``health()``).

Records poke the panel; while a breaker is open the panel comes back for its countdown (about once a
second), and stops when every breaker has closed or gone half-open. In the Dashboard it is one more part
redrawn by the dashboard's timer.
"""

from __future__ import annotations

import html
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _config
from coffee_nb.notebook._live import HTML, _View
from coffee_nb.session._session import health

if TYPE_CHECKING:
    from coffee_nb._shared._records import CallRecord
    from coffee_nb.invoke._health import Health, ModelHealth

__all__ = ["HealthPanel", "countdown", "health_html"]

_STATE_COLOURS = {"closed": "#2e7d32", "open": "#c62828", "half-open": "#ef6c00"}


def _reader(source: Any) -> Callable[[], Health]:
    """What to read: the session (None), an AutoPicker or Session (its ``health()``), a function, or a Health."""
    if source is None:
        return health
    read = getattr(source, "health", None)  # an AutoPicker's or a Session's health()
    reader: Callable[[], Health]
    if callable(read):
        reader = read
    elif callable(source):
        reader = source  # a function returning a Health
    elif hasattr(source, "rows"):
        reader = lambda: source  # noqa: E731 - a Health: a still picture
    else:
        raise TypeError(f"HealthPanel reads coffee_nb.health(), an AutoPicker or a function; got {source!r}")
    return reader


def countdown(seconds: float | None) -> str:
    """``17 s``, ``2 min 05 s``: whole seconds, rounded up (a breaker at 0.2 s is not yet open for 0 s)."""
    if seconds is None:
        return "?"
    whole = max(0, math.ceil(seconds))
    if whole < 90:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    return f"{minutes} min {secs:02d} s"


def _state(row: ModelHealth) -> str:
    colour = _STATE_COLOURS.get(row.state, "#555")
    badge = f"<b style='color:{colour}'>{html.escape(row.state)}</b>"
    if row.state == "open":
        until = f" until {row.reopens_at.astimezone():%H:%M:%S}" if row.reopens_at is not None else ""
        return f"{badge}{until} · <span class='coffee-nb-countdown'>reopens in {countdown(row.reopens_in_s)}</span>"
    if row.state == "half-open":
        return f"{badge} · the next call probes it"
    return badge


def _headroom(rpm: int | None, tpm: int | None) -> str:
    if rpm is None and tpm is None:
        return "–"
    return f"{'∞' if rpm is None else rpm} req · {'∞' if tpm is None else f'{tpm:,}'} tok"


def health_html(health: Health) -> str:
    """The panel's table (also usable on its own: ``HTML(health_html(coffee_nb.health()))``)."""
    if not len(health):
        return "<i>no models yet</i>"
    head = "".join(
        f"<th style='text-align:left'>{h}</th>"
        for h in ("model", "breaker", "fails in a row", "errors (recent)", "p50 / p95", "headroom / min", "last error")
    )
    rows = []
    for r in health:
        rate = "–" if r.error_rate is None else f"{r.error_rate:.0%} of {r.recent_attempts}"
        latency = "–" if r.p50_latency_s is None else f"{r.p50_latency_s:.2f} / {r.p95_latency_s or 0:.2f} s"
        error = "" if r.last_error_class is None else f"{r.last_error_class}: {r.last_error or ''}"
        if len(error) > 160:
            error = error[:159] + "…"
        rows.append(
            f"<tr class='coffee-nb-health-{html.escape(r.state)}'><td>{html.escape(r.model)}</td><td>{_state(r)}</td>"
            f"<td>{r.consecutive_failures}</td><td>{rate}</td><td>{latency}</td>"
            f"<td>{_headroom(r.rpm_headroom, r.tpm_headroom)}</td><td>{html.escape(error)}</td></tr>"
        )
    return f"<table class='coffee-nb-health'><tr>{head}</tr>{''.join(rows)}</table>"


class HealthPanel(_View):
    """Router health, live: ``HealthPanel()`` for the session's models, ``HealthPanel(picker)`` for one
    AutoPicker's. ``health`` is the last reading shown; ``ticking`` says a countdown is running."""

    _label = "coffee_nb router health (live)"

    def __init__(self, source: Any = None, *, rate: float = 1.0, watch: bool = True) -> None:
        super().__init__(rate=rate, watch=watch)
        self._read = _reader(source)
        self.health: Health | None = None
        self.table = HTML()
        self.children = [HTML("<b>Router health</b>", style="margin:6px 0 2px 0"), self.table]
        if watch:
            self._watch_records()
        self.redraw()

    def _watch_records(self) -> None:
        """Every record (of any AutoPicker) pokes the panel; a weak reference, so a panel nobody holds goes."""
        live = weakref.ref(self._live)

        def poke(_record: CallRecord) -> None:
            target = live()
            if target is None:
                _config.SINKS.remove(poke)
            else:
                target.poke()

        _config.SINKS.add(poke)
        self._unsubscribe.append(lambda: _config.SINKS.remove(poke))
        weakref.finalize(self._live, _config.SINKS.remove, poke)  # collected without close(): gone at once

    @property
    def ticking(self) -> bool:
        """Is a breaker open (so the countdown needs redraws)?"""
        return self.health is not None and any(r.state == "open" for r in self.health)

    def redraw(self) -> None:
        self.health = self._read()
        self.table.value = health_html(self.health)
        if self.ticking and self._watching:
            self._live.poke()  # come back for the countdown (a Dashboard's timer does this for its part)
