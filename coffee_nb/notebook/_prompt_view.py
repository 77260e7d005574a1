"""``--show-prompt``: the prompt exactly as it will be sent (every message, tables as the model reads them,
thumbnails of the images), above the dry run's tokens and worst-case cost per model. Nothing is called.

The HTML shows thumbnails (small JPEG copies, so a saved notebook stays small); the text twin, which
nbval compares, names each image by its size, type and digest instead.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterator, Sequence
from typing import Any

from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import facts, is_image
from coffee_nb._shared._markdown import NO_MATH

__all__ = ["PromptView"]

_THUMB = 160  # px, the longer side of a thumbnail
_CAPTION = "font-size:12px;color:#666"
_ROLES = {"system": "system", "human": "you", "ai": "assistant", "tool": "tool"}
_PRE = "white-space:pre-wrap;margin:2px 0 6px 0;padding:6px;background:rgba(127,127,127,0.08);font-size:12px"


def _role(message: Any) -> str:
    kind = getattr(message, "type", "human")
    return _ROLES.get(kind, str(kind))


def _blocks(message: Any) -> list[Any]:
    content = getattr(message, "content", message)
    return content if isinstance(content, list) else [content]


def _image_label(block: dict[str, Any], number: int) -> str:
    f = facts(block)
    size = f"{f.width}x{f.height} px" if f.width else "size unknown"
    kind = (f.mime_type or "image").removeprefix("image/").upper()
    return f"[image {number}: {size} {kind}, {f.nbytes / 1024:.0f} KB, sha256 {f.digest[:12]}]"


def _thumbnail(block: dict[str, Any]) -> str | None:
    """A small JPEG data URL of the image (None if it can't be read here: a URL, an unreadable file)."""
    from PIL import Image, UnidentifiedImageError  # lazy: PIL

    data = block.get("base64")
    if not isinstance(data, str):
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            img.thumbnail((_THUMB, _THUMB))
            out = io.BytesIO()
            img.convert("RGB").save(out, format="JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


class PromptView:
    """The messages a call will send, and the dry run under them (a table, a job's projection: anything
    with a text and an HTML rendering)."""

    def __init__(self, messages: Sequence[Any], below: Any, title: str = "Prompt as it will be sent") -> None:
        self.messages = list(messages)
        self.below = below
        self.title = title

    def _parts(self) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
        """Per message: its role, and its parts in order, each ("text", text) or ("image", (block, label))."""
        number = 0
        for m in self.messages:
            parts: list[tuple[str, Any]] = []
            for block in _blocks(m):
                if is_image(block):
                    number += 1
                    parts.append(("image", (block, _image_label(block, number))))
                else:
                    parts.append(("text", block if isinstance(block, str) else content_text([block])))
            yield _role(m), parts

    def __repr__(self) -> str:
        out = [f"{self.title} — no call made"]
        for role, parts in self._parts():
            out.append(f"[{role}]\n" + "".join(p[1] if kind == "image" else p for kind, p in parts))
        return "\n".join(out) + "\n\n" + repr(self.below)

    def _repr_html_(self) -> str:
        rows = [f"<div><b>{html.escape(self.title)}</b> — no call made</div>"]
        for role, parts in self._parts():
            cells = []
            for kind, part in parts:
                if kind == "image":
                    block, label = part[0], html.escape(part[1])
                    thumb = _thumbnail(block)
                    img = f"<img src='{thumb}' alt='{label}' style='max-width:{_THUMB}px'/>" if thumb else ""
                    caption = f"<figcaption style='{_CAPTION}'>{label}</figcaption>"
                    cells.append(f"<figure style='margin:4px 0'>{img}{caption}</figure>")
                elif part:
                    cells.append(f"<pre style='{_PRE}'>{html.escape(part)}</pre>")
            rows.append(f"<div><i>{html.escape(role)}</i>{''.join(cells)}</div>")
        below = getattr(self.below, "_repr_html_", None)
        shown = below() if callable(below) else f"<pre>{html.escape(repr(self.below))}</pre>"
        return f"<div class='coffee-nb-prompt {NO_MATH}'>{''.join(rows)}{shown}</div>"
