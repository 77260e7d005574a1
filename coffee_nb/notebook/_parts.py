"""The static parts a live view is made of (``HTML``, ``Bar``, ``Image``, ``Choice``, ``Box``), each drawn as
HTML, with the attributes of the ipywidgets they replaced: a view's redraw sets their values, then the
view's display (``_live``) and its ipywidgets twin (``_twin``) show them.

Apart from ``_live`` so that ``_twin`` can read them without reaching back into the machinery that calls it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["HTML", "Bar", "Box", "Choice", "Image", "Part", "draw"]


class Part:
    def html(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class HTML(Part):
    """A fragment of HTML (``value``)."""

    def __init__(self, value: str = "", *, style: str = "") -> None:
        self.value = value
        self.style = style

    def html(self) -> str:
        return f"<div style='{self.style}'>{self.value}</div>" if self.style else self.value


_BAR_COLOURS = {"success": "#43a047", "warning": "#f9a825", "danger": "#e53935", "info": "#1e88e5", "": "#1e88e5"}


class Bar(Part):
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


class Image(Part):
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


class Choice(Part):
    """A setting of a view (``options``, ``value``), changed from Python; ``on_change`` redraws the view.
    Shown as text: a snapshot has no kernel to ask for another picture (the widget twin has a dropdown)."""

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


class Box(Part):
    """Parts in a column (or a ``row``)."""

    def __init__(self, children: Sequence[Any] = (), *, row: bool = False, style: str = "") -> None:
        self.children = list(children)
        self.row = row
        self.style = style

    def html(self) -> str:
        flow = "display:flex;flex-direction:row;align-items:center;gap:8px" if self.row else ""
        inner = "".join(draw(c) for c in self.children)
        style = ";".join(s for s in (flow, self.style) if s)
        return f"<div style='{style}'>{inner}</div>" if style else f"<div>{inner}</div>"


def draw(part: Any) -> str:
    """A part's HTML; a view inside another (it has ``inner_html``) gives its parts, without a second outer frame."""
    inner = getattr(part, "inner_html", None)
    return str(inner() if inner is not None else part.html())
