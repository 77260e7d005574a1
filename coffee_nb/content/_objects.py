"""Objects a notebook shows, as image content blocks: matplotlib figures and axes, PIL images, IPython's
``Image``, PNG/JPEG/GIF/WebP bytes, and paths to image files.

Each is read through its own methods (``savefig``, ``save``, ``.data``), so nothing here imports
matplotlib, PIL or IPython: an object of a library that isn't loaded can't be in the namespace anyway.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from coffee_nb._shared._images import image_block, sniff_mime
from coffee_nb.errors._errors import ConfigError

__all__ = ["MAX_IMAGE_BYTES", "as_image", "content_blocks", "is_image_like"]

# OpenAI takes up to 20 MB per image (Anthropic 5 MB, Gemini 20 MB per request): anything larger fails at
# every provider, so it is refused here, before anything is sent
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def _module(value: Any) -> str:
    return type(value).__module__ or ""


def _is_figure(value: Any) -> bool:
    return _module(value).startswith("matplotlib.") and callable(getattr(value, "savefig", None))


def _is_axes(value: Any) -> bool:
    return _module(value).startswith("matplotlib.") and callable(getattr(value, "get_figure", None))


def _is_pil(value: Any) -> bool:
    return _module(value).startswith("PIL.") and callable(getattr(value, "save", None)) and hasattr(value, "mode")


def _is_ipython_image(value: Any) -> bool:
    return _module(value).startswith("IPython.") and type(value).__name__ == "Image"


def _image_path(value: Any) -> Path | None:
    """``value`` as the path of an existing image file (by suffix), else None."""
    if isinstance(value, str):
        if len(value) > 4096 or "\n" in value or Path(value).suffix.lower() not in _SUFFIXES:
            return None
        path = Path(value).expanduser()
    elif isinstance(value, os.PathLike):
        path = Path(value).expanduser()
        if path.suffix.lower() not in _SUFFIXES:
            return None
    else:
        return None
    return path if path.is_file() else None


def is_image_like(value: Any) -> bool:
    """Would :func:`as_image` make an image of ``value`` (without reading or rendering anything)?"""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sniff_mime(bytes(value[:12])) is not None
    drawn = _is_figure(value) or _is_axes(value) or _is_pil(value) or _is_ipython_image(value)
    return drawn or _image_path(value) is not None


def as_image(value: Any, what: str = "the value") -> dict[str, Any] | None:
    """The image content block of ``value``, or None when it is not an image. ``what`` names it in errors
    (``"{fig}"``): an image that can't be sent (too large, an IPython image by URL) is a ConfigError."""
    data: bytes | None
    mime: str | None = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if sniff_mime(data) is None:
            return None
    elif _is_figure(value) or _is_axes(value):
        figure = value if _is_figure(value) else value.get_figure()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")  # at the figure's own size and dpi, as the notebook shows it
        data, mime = buffer.getvalue(), "image/png"
    elif _is_pil(value):
        data, mime = _pil_bytes(value)
    elif _is_ipython_image(value):
        data = getattr(value, "data", None)
        if not isinstance(data, (bytes, bytearray)):
            raise ConfigError(
                f"{what} is an IPython Image given by URL, which coffee_nb does not fetch: make it with "
                "Image(filename=...) or Image(data=...), or put the file's path in the prompt"
            )
        data = bytes(data)
    else:
        path = _image_path(value)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{what} names the image {path}, which can't be read: {exc.strerror or exc}") from None
        if sniff_mime(data) is None:
            raise ConfigError(f"{what} names {path}, which is not a PNG, JPEG, GIF or WebP image (by its content)")
    if len(data) > MAX_IMAGE_BYTES:
        raise ConfigError(
            f"{what} is an image of {len(data) / 2**20:.1f} MB; providers take at most 20 MB per image "
            "(Anthropic 5 MB): make it smaller (a lower dpi, a resized or JPEG copy) before sending it"
        )
    return image_block(data, mime)


def _pil_bytes(image: Any) -> tuple[bytes, str]:
    """A PIL image encoded for sending: as JPEG when it was a JPEG (a photo stays small), else as PNG."""
    buffer = io.BytesIO()
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue(), "image/jpeg"
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):  # CMYK, YCbCr, ...: not in PNG
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def content_blocks(*values: Any) -> list[dict[str, Any]]:
    """LangChain content blocks for ``values`` in order: each image-like one (figure, axes, PIL or IPython
    image, image bytes, a path to an image file) as an image block, anything else as a text block (strings
    as they are, other objects as ``str()``). For a ``HumanMessage(content=...)`` built by hand:

    >>> HumanMessage(content_blocks("What does this plot show?", fig))
    """
    out: list[dict[str, Any]] = []
    for i, value in enumerate(values):
        block = as_image(value, f"argument {i + 1}")
        out.append(block if block is not None else {"type": "text", "text": str(value)})
    return out
