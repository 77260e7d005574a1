"""A live view's ipywidgets twin (``view.widget()``), for layouts of one's own and Voila dashboards.

The twin mirrors the view's parts one for one: ``HTML`` (and any other part) as ``ipywidgets.HTML``, ``Bar``
as ``FloatProgress``, ``Image`` as ``ipywidgets.Image`` (the PNG bytes, not a data URI), ``Box`` as
``HBox``/``VBox``, a view inside another as that view's own twin, and a ``Choice`` as a ``Dropdown`` that sets
it (what the HTML snapshot can't offer: it has no kernel to ask). The redraw that updates the view's HTML
display re-sets the twin (``_View._show_update``), so there is no timer of its own; traitlets sends only the
values that changed, so an unchanged figure is not sent again.

The HTML snapshot stays what ``display(view)`` shows: a widget needs a live kernel, a snapshot does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from coffee_nb._shared._markdown import NO_MATH
from coffee_nb.notebook._parts import Bar, Box, Choice, Image, Part

__all__ = ["Twin"]

_BAR_STYLES = frozenset({"success", "info", "warning", "danger", ""})


def _no_math(html: str) -> str:
    """An HTML widget's value: the front end typesets ``$...$`` in it unless told not to ($0.01 … $4.99)."""
    return f"<div class='{NO_MATH}'>{html}</div>"


def _shape(parts: Sequence[Any]) -> tuple[Any, ...]:
    """Which parts, in which boxes: the twin is rebuilt only when this changes (a view that empties itself)."""
    return tuple((id(p), _shape(p.children) if isinstance(p, Box) else ()) for p in parts)


class Twin:
    """The widgets of one view (``root``, a ``VBox``), re-set from its parts by ``sync()``.

    ``root`` holds its view: a widget on screen keeps its view redrawing (ipywidgets holds every widget until
    it is closed) until the view is closed; ``detach()`` lets go of it."""

    def __init__(self, view: Any) -> None:
        self.view: Any = view
        self.root = widgets.VBox()
        for cls in ("coffee-nb-view", f"coffee-nb-{type(view).__name__.lower()}", *NO_MATH.split()):
            self.root.add_class(cls)
        self.root._coffee_nb_view = view
        self._shape: tuple[Any, ...] | None = None
        self._leaves: list[tuple[Any, Any]] = []  # (part, its widget), re-set by every sync
        self._built: list[Any] = []  # widgets made here (closed when rebuilt), not nested views' twins
        self._syncing = False  # values set by sync() are not a user's choice
        self.sync()

    @property
    def closed(self) -> bool:
        """Closed by the user (``widget.close()``): the next ``view.widget()`` makes a new twin."""
        return self.root.comm is None

    def sync(self) -> None:
        parts = self.view._twin_parts()
        shape = _shape(parts)
        if shape != self._shape:
            self._rebuild(parts)
            self._shape = shape
        self._syncing = True
        try:
            for part, widget in self._leaves:
                _set(part, widget)
        finally:
            self._syncing = False

    def detach(self) -> None:
        """The view is closed: what is on screen stays, the view can go."""
        self.view = None
        self.root._coffee_nb_view = None

    def _rebuild(self, parts: Sequence[Any]) -> None:
        old = self._built
        self._leaves, self._built = [], []
        self.root.children = tuple(self._build(p) for p in parts)
        for widget in old:
            widget.close()

    def _build(self, part: Any) -> Any:
        if isinstance(part, Box):
            box = (widgets.HBox if part.row else widgets.VBox)(tuple(self._build(c) for c in part.children))
            if part.row:
                box.layout.align_items = "center"
            self._built.append(box)
            return box
        if not isinstance(part, Part) and hasattr(part, "_twin_widget"):
            return part._twin_widget()  # a view inside this one: its own twin, which its redraws re-set
        widget = _widget(part)
        if isinstance(part, Choice):
            widget.observe(lambda change: self._chosen(part, change["new"]), names="value")
        self._leaves.append((part, widget))
        self._built.append(widget)
        return widget

    def _chosen(self, choice: Choice, value: str) -> None:
        """A user picked ``value`` in the dropdown: the view's setting changes and the view redraws."""
        view = self.view
        if self._syncing or view is None or value == choice.value or value not in choice.options:
            return
        with view._live.drawing:
            choice.value = value  # its on_change redraws the view
            if choice.on_change is None:
                view.redraw()
            view._show_update()


def _widget(part: Any) -> Any:
    if isinstance(part, Bar):
        return widgets.FloatProgress(layout=widgets.Layout(width=f"{part.width}px", height=f"{part.height}px"))
    if isinstance(part, Image):
        return widgets.Image(format="png", width=str(part.width or ""))
    if isinstance(part, Choice):
        return widgets.Dropdown(options=part.options, value=part.value, description=part.description)
    return widgets.HTML()


def _set(part: Any, widget: Any) -> None:
    if isinstance(part, Bar):
        with widget.hold_sync(), widget.hold_trait_notifications():  # min, max and value checked together
            widget.min, widget.max, widget.value = part.min, max(part.max, part.min), part.value
            widget.bar_style = part.bar_style if part.bar_style in _BAR_STYLES else ""
    elif isinstance(part, Image):
        widget.value = part.value
        widget.layout.display = None if part.value else "none"
    elif isinstance(part, Choice):
        if tuple(widget.options) != tuple(part.options):
            widget.options = part.options  # resets the selection: set again just below
        widget.value = part.value
    else:  # HTML, or any other part: its HTML
        widget.value = _no_math(str(part.html()))
