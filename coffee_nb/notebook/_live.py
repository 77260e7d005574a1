"""The machinery under every live view: a coalescing redraw timer, the display, and the widget twin.

A view is plain Python, not an ipywidget: it is shown with ``display(..., display_id=...)`` as a
mimebundle of ``text/html`` (its parts drawn as HTML, figures as PNG data URIs) and a short fixed
``text/plain`` label, and each redraw replaces that output in place (``update_display``). Whatever the
front end last received is what a saved notebook, nbval and an HTML export show once the kernel is
gone: a snapshot, never "Error displaying widget". For ipywidgets layouts and Voila, ``view.widget()`` is an
ipywidgets twin (``_twin``, the ``widgets`` extra) that the same redraws re-set; ``display(view)`` stays HTML.

Models hold views weakly (a view nobody holds unsubscribes when it is collected; a widget twin holds its
view until either is closed), ``close()`` unsubscribes at once, and a view displayed by a cell replaces
the views that cell displayed in an earlier run (re-running ``%llm_dashboard`` leaves one live dashboard,
not fifty).

The parts a view is made of are in _parts; the views themselves in widgets, _dashboard, _histogram and
health_panel.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from coffee_nb._shared._markdown import NO_MATH  # "$0.01 … $4.99" must not turn into LaTeX
from coffee_nb.notebook._parts import HTML, Bar, Box, Choice, Image, draw

__all__ = ["HTML", "NO_MATH", "WIDGETS_MISSING", "Bar", "Box", "Choice", "Image", "_Live", "_View", "live_views"]

WIDGETS_MISSING = "a live view's widget() needs ipywidgets, the widgets extra: pip install 'coffee_nb[widgets]'"

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
        self._running: threading.Thread | None = None
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
            self._running = threading.current_thread()  # flush() waits for a redraw underway too
        try:
            with self.drawing:
                try:
                    self._redraw()
                finally:
                    self.redraws += 1
        finally:
            with self._lock:
                if self._running is threading.current_thread():
                    self._running = None

    def flush(self, timeout: float = 5.0) -> None:
        """Wait for a pending redraw, and one underway (tests, and ``refresh()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                thread = self._timer or self._running
            if thread is None or thread is threading.current_thread():
                return
            thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


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
        self._twin: Any = None  # the ipywidgets twin, once widget() made it
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
        return "".join(draw(c) for c in self.children)

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
        if self._twin is not None and not self.closed:
            self._twin.sync()
        for part in self._subviews():  # a part also displayed on its own follows the redraws that drive it
            part._show_update()

    def _subviews(self) -> list[_View]:
        return []

    # -- the ipywidgets twin -------------------------------------------------------------------------
    def widget(self) -> Any:
        """This view as an ``ipywidgets`` widget (a ``VBox``), for a layout of your own or a Voila dashboard.

        The redraws that update the HTML display re-set it (no second timer); every call returns the same
        widget (a new one once it was closed). While shown it keeps the view redrawing, until ``close()``.
        Settings such as the histogram's model are dropdowns there. ``display(view)`` stays the HTML
        snapshot: a saved notebook keeps that without a kernel, a widget needs one. Needs the ``widgets``
        extra; the first ``widget()`` of a new view, like its display, replaces what an earlier run of
        the cell showed.
        """
        with self._live.drawing:
            if self._twin is None:
                self._replace_earlier_runs()
            return self._twin_widget()

    def _twin_widget(self) -> Any:
        if self._twin is None or self._twin.closed:
            try:
                import ipywidgets  # noqa: F401  # lazy: ipywidgets (checked here: the twin module may be loaded)
            except ImportError as error:
                raise ImportError(WIDGETS_MISSING) from error
            from coffee_nb.notebook._twin import Twin  # lazy: ipywidgets

            self._twin = Twin(self)
        return self._twin.root

    def _twin_parts(self) -> list[Any]:
        """What the twin shows: the children, and settings the HTML snapshot leaves out (``LatencyHistogram``)."""
        return self.children

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
        if self._twin is not None:
            self._twin.detach()

    def __repr__(self) -> str:
        return self._label
