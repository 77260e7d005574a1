"""Images in prompts, as plain data: LangChain's standard image content block.

An image coffee_nb puts in a prompt is ``{"type": "image", "base64": ..., "mime_type": "image/png"}``
(langchain-core's ``ImageContentBlock``), which every provider package translates to its own wire format.
Nothing else is added to the block: what coffee_nb needs to know of an image (its size, for the token
estimate; a digest of its bytes, for cache and cassette keys) is read from the bytes when asked, once
per image (``facts``).

The readers here also recognise the other shapes an image block takes in LangChain messages (OpenAI's
``image_url`` with a data URL, langchain-core 0.3's ``source_type`` blocks), so prompts built by hand
count and key the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

__all__ = ["ImageFacts", "digests", "facts", "image_block", "images_in", "is_image", "keyed", "sniff_mime"]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageFacts(NamedTuple):
    """What coffee_nb knows of one image: pixels (0 when unreadable), type, size in bytes, SHA-256 (hex)."""

    width: int
    height: int
    mime_type: str
    nbytes: int
    digest: str


def sniff_mime(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes (PNG, JPEG, GIF, WebP), None if it is none of them."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_block(data: bytes, mime_type: str | None = None) -> dict[str, Any]:
    """The standard content block for image bytes (their type sniffed when not given)."""
    mime = mime_type or sniff_mime(data) or "image/png"
    return {"type": "image", "base64": base64.b64encode(data).decode("ascii"), "mime_type": mime}


def _inline(block: Any) -> tuple[str, str] | None:
    """(base64 text, mime type) of an image block carrying its bytes; None for anything else."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "image":
        if isinstance(block.get("base64"), str):
            return block["base64"], str(block.get("mime_type") or "")
        if block.get("source_type") == "base64" and isinstance(block.get("data"), str):  # langchain-core 0.3
            return block["data"], str(block.get("mime_type") or "")
        return None
    if kind == "image_url":  # OpenAI's shape: {"image_url": {"url": "data:image/png;base64,..."}}
        ref = block.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            head, _, data = url.partition(";base64,")
            return data, head[5:]
    return None


def is_image(block: Any) -> bool:
    """Whether a content block is an image (inline or by URL), in any shape LangChain messages use."""
    return isinstance(block, dict) and (
        block.get("type") in ("image", "image_url")
        or (block.get("type") == "file" and str(block.get("mime_type", "")).startswith("image/"))
    )


def images_in(messages: Sequence[Any] | str) -> Iterator[dict[str, Any]]:
    """Every image block of a prompt (LangChain messages, OpenAI dicts or a plain string), in order."""
    if isinstance(messages, str):
        return
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if isinstance(content, list):
            for block in content:
                if is_image(block):
                    yield block


def facts(block: dict[str, Any]) -> ImageFacts:
    """Size, type and digest of an image block. An image given by URL only is not fetched (no network):
    its size is unknown (0 x 0) and its digest is the URL's."""
    inline = _inline(block)
    if inline is None:
        ref = block.get("url") or block.get("image_url") or block.get("file_id") or ""
        url = ref.get("url", "") if isinstance(ref, dict) else str(ref)
        return ImageFacts(0, 0, str(block.get("mime_type") or ""), 0, hashlib.sha256(url.encode()).hexdigest())
    return _facts(*inline)


def _facts(b64: str, mime: str) -> ImageFacts:
    """Facts of one image, remembered for the few most recent (a call reads them several times: routing,
    reservation, keys) and at most ``_REMEMBER_CHARS`` of base64 text in all, so that a notebook sending
    large images doesn't keep them alive here."""
    key = (b64, mime)
    with _lock:
        found = _recent.get(key)
        if found is not None:
            _recent.move_to_end(key)
            return found
    found = _read(b64, mime)
    with _lock:
        global _held
        if key not in _recent:
            _recent[key] = found
            _held += len(b64)
        while _recent and (_held > _REMEMBER_CHARS or len(_recent) > _REMEMBER):
            (old, _), _ = _recent.popitem(last=False)
            _held -= len(old)
    return found


_REMEMBER = 64
_REMEMBER_CHARS = 64 * 2**20
_recent: OrderedDict[tuple[str, str], ImageFacts] = OrderedDict()
_held = 0
_lock = threading.Lock()


def _read(b64: str, mime: str) -> ImageFacts:
    try:
        data = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        data = b""
    width, height = _size(data)
    return ImageFacts(width, height, mime or sniff_mime(data) or "", len(data), hashlib.sha256(data).hexdigest())


def _size(data: bytes) -> tuple[int, int]:
    """Pixel size from the image's header (Pillow reads only that); (0, 0) when it is no image Pillow reads."""
    from PIL import Image, UnidentifiedImageError  # lazy: PIL

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return 0, 0
    return int(width), int(height)


def keyed(content: Any) -> Any:
    """``content`` for a request key: each image replaced by the SHA-256 of its bytes (the same picture
    keys the same in every shape, and a key never carries, or costs hashing, the base64 text twice)."""
    if not isinstance(content, list) or not any(is_image(b) for b in content):
        return content
    return [{"type": "image", "sha256": facts(b).digest} if is_image(b) else b for b in content]


def digests(content: Any) -> list[str]:
    """The SHA-256 of each image in a message's ``content``, in order (empty for text)."""
    if not isinstance(content, list):
        return []
    return [facts(b).digest for b in content if is_image(b)]
