"""The machinery under every live view: a coalescing redraw timer, static parts, and the display.

A view is plain Python, not an ipywidget: it is shown with ``display(..., display_id=...)`` as a
mimebundle of ``text/html`` (its parts drawn as HTML, figures as PNG data URIs) and a short fixed
``text/plain`` label, and each redraw replaces that output in place (``update_display``). Whatever the
front end last received is what a saved notebook, nbval and an HTML export show once the kernel is
gone: a snapshot, never "Error displaying widget".

Models hold views weakly (a view nobody holds unsubscribes when it is collected), ``close()``
unsubscribes at once, and a view displayed by a cell replaces the views that cell displayed in an
earlier run (re-running ``%llm_dashboard`` leaves one live dashboard, not fifty).

Over ~400 lines as one thing: the parts a live view is made of and the display/redraw/subscription
machinery they share; the views themselves are in widgets, _dashboard, _histogram and health_panel.
"""

from __future__ import annotations

import atexit
import base64
import html
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from coffee_nb._shared._markdown import NO_MATH  # "$0.01 … $4.99" must not turn into LaTeX

__all__ = ["HTML", "NO_MATH", "Bar", "Box", "Choice", "Image", "_Live", "_View", "live_views"]

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

    @property
    def closed(self) -> bool:
        return self._closed

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


# -- static parts: what a view is made of, each with the attributes its ipywidgets twin had ---------------


class _Part:
    def html(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class HTML(_Part):
    """A fragment of HTML (``value``)."""

    def __init__(self, value: str = "", *, style: str = "") -> None:
        self.value = value
        self.style = style

    def html(self) -> str:
        return f"<div style='{self.style}'>{self.value}</div>" if self.style else self.value


_BAR_COLOURS = {"success": "#43a047", "warning": "#f9a825", "danger": "#e53935", "info": "#1e88e5", "": "#1e88e5"}


class Bar(_Part):
    """A progress bar: ``value`` between ``min`` and ``max``; ``bar_style`` success/warning/danger/info."""

    def __init__(  # min/max: the names of ipywidgets' progress bars, which these replace
        self,
        value: float = 0.0,
        *,
        min: float = 0.0,  # noqa: A002
        max: float = 100.0,  # noqa: A002
        bar_style: str = "",
        width: int = 260,
        height: int = 14,
    ) -> None:
        self.value, self.min, self.max, self.bar_style = value, min, max, bar_style
        self.width, self.height = width, height

    @property
    def fraction(self) -> float:
        span = self.max - self.min
        return 0.0 if span <= 0 else max(0.0, min(1.0, (self.value - self.min) / span))

    def html(self) -> str:
        colour = _BAR_COLOURS.get(self.bar_style, _BAR_COLOURS[""])
        fill = f"coffee-nb-bar-fill coffee-nb-bar-{self.bar_style or 'info'}"
        return (
            f"<div class='coffee-nb-bar' style='width:{self.width}px;height:{self.height}px;background:#e0e0e0;"
            f"border-radius:3px;overflow:hidden'><div class='{fill}'"
            f" style='width:{self.fraction * 100:.1f}%;height:100%;background:{colour}'></div></div>"
        )


class Image(_Part):
    """A PNG (``value``: bytes), drawn as a data URI; the encoding is kept until the bytes change."""

    def __init__(self, value: bytes = b"", *, width: int | None = None, alt: str = "") -> None:
        self.value = value
        self.width = width
        self.alt = alt
        self._encoded: tuple[bytes, str] | None = None

    def html(self) -> str:
        if not self.value:
            return ""
        if self._encoded is None or self._encoded[0] is not self.value:
            self._encoded = (self.value, base64.b64encode(self.value).decode("ascii"))
        width = f" width='{self.width}'" if self.width else ""
        return (
            f"<div><img class='coffee-nb-image' alt='{html.escape(self.alt)}'{width}"
            f" src='data:image/png;base64,{self._encoded[1]}'></div>"
        )


class Choice(_Part):
    """A setting of a view (``options``, ``value``), changed from Python; ``on_change`` redraws the view.
    Shown as text: a snapshot has no kernel to ask for another picture."""

    def __init__(self, options: Sequence[str], value: str, *, description: str = "") -> None:
        self._options = list(options)
        self._value = value
        self.description = description
        self.on_change: Callable[[], Any] | None = None

    @property
    def options(self) -> list[str]:
        return self._options

    @options.setter
    def options(self, options: Sequence[str]) -> None:
        self._options = list(options)

    @property
    def value(self) -> str:
        return self._value

    @value.setter
    def value(self, value: str) -> None:
        if value not in self._options:
            raise ValueError(f"{value!r} is not one of {self._options}")
        changed, self._value = value != self._value, value
        if changed and self.on_change is not None:
            self.on_change()

    def html(self) -> str:
        label = f"{html.escape(self.description)}: " if self.description else ""
        return f"<span class='coffee-nb-choice'>{label}<b>{html.escape(self._value)}</b></span>"


class Box(_Part):
    """Parts in a column (or a ``row``)."""

    def __init__(self, children: Sequence[Any] = (), *, row: bool = False, style: str = "") -> None:
        self.children = list(children)
        self.row = row
        self.style = style

    def html(self) -> str:
        flow = "display:flex;flex-direction:row;align-items:center;gap:8px" if self.row else ""
        inner = "".join(_draw(c) for c in self.children)
        style = ";".join(s for s in (flow, self.style) if s)
        return f"<div style='{style}'>{inner}</div>" if style else f"<div>{inner}</div>"


def _draw(part: Any) -> str:
    if isinstance(part, _View):  # a view inside another: its parts, without a second outer frame
        return part.inner_html()
    return str(part.html())


# -- views ---------------------------------------------------------------------------------------


_BY_CELL: dict[str, list[tuple[int, weakref.ref[_View]]]] = {}
_BY_CELL_LOCK = threading.Lock()
_VIEWS: weakref.WeakSet[_View] = weakref.WeakSet()


def live_views() -> list[_View]:
    """Views that are not closed (and not collected): what still redraws."""
    return [v for v in list(_VIEWS) if not v.closed]


def _current_cell() -> tuple[str, int] | None:
    """(which cell is running, its execution count) in an IPython shell; None outside one."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return None
    from coffee_nb.notebook._options import _cell_key  # lazy: IPython

    raw = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    text = raw[-1] if raw else ""
    key = _cell_key(shell, text)
    if not text and key.startswith("text:"):
        return None  # no cell id and no history: nothing to tell cells apart by
    return key, int(getattr(shell, "execution_count", 0) or 0)


_SETTLING: list[bool] = []


def _settle_after_cells() -> None:
    """Once per shell: after every cell, each shown live view that changed draws a complete picture."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or _SETTLING:
        return
    _SETTLING.append(True)

    def settle(*_: Any) -> None:
        for view in live_views():
            try:
                view.settle()
            except Exception:  # a view that can't draw must not break the user's cell
                logging.getLogger("coffee_nb").debug("a live view could not redraw", exc_info=True)

    shell.events.register("post_run_cell", settle)


class _View:
    """Base: subscribe to models (weakly), redraw through a _Live, show as a display that each redraw
    updates in place, detach on close, a cheap fixed repr. ``children`` are the parts, top to bottom."""

    _label = "coffee_nb view"

    def __init__(self, *, rate: float = 2.0, watch: bool = True) -> None:
        self.children: list[Any] = []
        self._live = _Live(self._redraw_and_show, rate)
        self._unsubscribe: list[Callable[[], Any]] = []
        self._watching = watch  # False: a part of a Dashboard, redrawn by the dashboard's timer
        self._display_id = uuid.uuid4().hex
        self._shown = False
        self._settled = 0  # pokes seen by the last complete picture
        _VIEWS.add(self)

    # -- models --------------------------------------------------------------------------------------
    def _watch(self, model: Any) -> None:
        """Redraw when ``model`` changes. The model holds the view weakly: one nobody holds unsubscribes."""
        if not (self._watching and model is not None and hasattr(model, "subscribe")):
            return
        target = weakref.ref(self._live)

        def poke(*_: Any) -> None:
            live = target()
            if live is not None:
                live.poke()

        undo = model.subscribe(poke)
        self._unsubscribe.append(undo)
        weakref.finalize(self._live, undo)  # collected without close(): unsubscribe then

    # -- drawing -------------------------------------------------------------------------------------
    def redraw(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _redraw_and_show(self) -> None:
        self.redraw()
        self._show_update()

    def refresh(self) -> None:
        """Redraw now (after any pending coalesced redraw)."""
        self._live.flush()
        with self._live.drawing:
            self.redraw()
            self._show_update()

    @property
    def redraws(self) -> int:
        return self._live.redraws

    @property
    def closed(self) -> bool:
        return self._live.closed

    def _body(self) -> str:
        return "".join(_draw(c) for c in self.children)

    def inner_html(self) -> str:
        return f"<div class='coffee-nb-{type(self).__name__.lower()}'>{self._body()}</div>"

    def html(self) -> str:
        """The view as it stands: one block of HTML (what a saved notebook shows), ending in a marker
        (``<!--/coffee-nb-view-->``) that nbval's sanitizer finds."""
        return (
            f"<div class='coffee-nb-view {NO_MATH}' style='font-size:13px;line-height:1.45'>"
            f"{self.inner_html()}</div><!--/coffee-nb-view-->"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self._label, "text/html": self.html()}

    # -- the display ---------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        """Shown by IPython (a cell's value or ``display(view)``): a display this view's redraws update."""
        from IPython.display import display  # lazy: IPython

        self._replace_earlier_runs()
        display(self._repr_mimebundle_(), raw=True, display_id=self._display_id)
        self._shown = True
        self._settled = self._live.pokes
        _settle_after_cells()

    def settle(self) -> None:
        """If anything changed since the last complete picture, draw one now (every part, the costly ones
        too): what the notebook keeps when it is saved right after a cell."""
        pokes = self._live.pokes
        if self._shown and not self.closed and pokes != self._settled:
            self._settled = pokes
            self.refresh()

    def _show_update(self) -> None:
        if self._shown and not self.closed:
            from IPython.display import update_display  # lazy: IPython

            update_display(self._repr_mimebundle_(), raw=True, display_id=self._display_id)
        for part in self._subviews():  # a part also displayed on its own follows the redraws that drive it
            part._show_update()

    def _subviews(self) -> list[_View]:
        return []

    def _replace_earlier_runs(self) -> None:
        """Close the views an earlier run of this cell displayed (they stop redrawing, unsubscribe)."""
        cell = _current_cell()
        if cell is None:
            return
        key, count = cell
        with _BY_CELL_LOCK:
            mine = _BY_CELL.setdefault(key, [])
            stale = [ref() for n, ref in mine if n != count]
            mine[:] = [(n, ref) for n, ref in mine if n == count and ref() is not None]
            mine.append((count, weakref.ref(self)))
        for view in stale:
            if view is not None and view is not self:
                view.close()

    def close(self) -> None:
        """Stop redrawing and unsubscribe; what is on screen stays as it was."""
        self._live.close()
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe.clear()

    def __repr__(self) -> str:
        return self._label
