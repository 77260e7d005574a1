"""What ``sandbox/vision`` sees in an image, and which images a request carries, so image prompts run offline.

Images arrive as langchain-openai sends them to Chat Completions: LangChain's standard block
``{"type": "image", "base64": ..., "mime_type": "image/png"}`` becomes the content part
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` (no ``detail``: OpenAI reads
that as ``auto``), and OpenAI-shaped parts pass through as they are. Only inline (data URL) images are
taken: the sandbox never touches the network, so a remote URL is refused, as are images for a text-only
model (with OpenAI's own wording for that).

An image is described by its pixel size and dominant colour, a pure function of its bytes: the image is
cut down to at most 64 x 64 pixels (JPEGs decode at reduced scale), transparency is laid over white, the
pixels are binned (8 levels per channel), and the fullest bin (ties: the higher bin) gives the colour,
its members' mean as hex. The name comes from hue and lightness (:func:`colour_name`), so the same bytes
always read the same.

Each image costs prompt tokens by ``coffee_nb.pricing._image_tokens`` with the size coffee_nb's own
reader finds (``_shared._images.facts``): the server's count is what coffee_nb estimates for the prompt.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import io
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from coffee_nb._shared._images import facts
from coffee_nb.pricing._image_tokens import image_tokens
from coffee_nb.sandbox._catalog import SandboxModel
from coffee_nb.sandbox._replies import BadRequestError

__all__ = ["ImagePart", "Seen", "check_images", "colour_name", "describe", "image_parts", "image_prompt_tokens", "look"]

_SIDE = 64  # the most pixels a side keeps before colours are counted: 4096 pixels, whatever the image
_DETAILS = ("auto", "low", "high")
# OpenAI's answers to the same mistakes (a text-only model given an image; bytes that are no image)
_NOT_VISION = "Invalid content type. image_url is only supported by certain models."
_UNSUPPORTED = (
    "You uploaded an unsupported image. Please make sure your image is below 20 MB in size and is of one the "
    "following formats: ['png', 'jpeg', 'gif', 'webp']."
)


class ImagePart(NamedTuple):
    """An image content part of a request: where it is (OpenAI's spelling, ``messages.[0].content.[1]``),
    the part itself, its URL and its ``detail`` (``auto`` when absent)."""

    where: str
    part: dict[str, Any]
    url: str
    detail: str


class Seen(NamedTuple):
    """What the vision model makes of one image: its size in pixels and its dominant colour."""

    width: int
    height: int
    hex: str  # "#1f3b73"
    name: str  # "dark blue"


def image_parts(messages: Sequence[dict[str, Any]]) -> list[ImagePart]:
    """Every ``image_url`` part of the request's messages, in order (content may be a string or a list)."""
    out: list[ImagePart] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            detail = ref.get("detail") if isinstance(ref, dict) else None
            out.append(
                ImagePart(
                    f"messages.[{i}].content.[{j}]",
                    part,
                    url if isinstance(url, str) else "",
                    "auto" if detail is None else str(detail),
                )
            )
    return out


def check_images(model: SandboxModel, parts: Sequence[ImagePart]) -> None:
    """Refuse what the real API would refuse, with its wording: images for a text-only model, an unknown
    ``detail``; and what the sandbox can't take: an image that is not inline (it is never fetched)."""
    for p in parts:
        if not model.vision:
            raise BadRequestError(
                f"{_NOT_VISION} (sandbox/{model.name} is text-only; sandbox/vision takes images.)",
                param=f"{p.where}.type",
            )
        if p.detail not in _DETAILS:
            raise BadRequestError(
                f"Invalid value: {p.detail!r}. Supported values are: 'auto', 'low', and 'high'.",
                param=f"{p.where}.image_url.detail",
                code="invalid_value",
            )
        if not p.url:
            raise BadRequestError(
                f"Missing required parameter: '{p.where}.image_url.url'.",
                param=f"{p.where}.image_url.url",
                code="missing_required_parameter",
            )
        if not p.url.startswith("data:"):
            shown = p.url if len(p.url) <= 80 else p.url[:77] + "..."
            raise BadRequestError(
                f"The sandbox only takes inline images (data URLs, data:image/png;base64,...): it never fetches "
                f"{shown!r} (no network). Send the image's bytes, e.g. LangChain's "
                "{'type': 'image', 'base64': ..., 'mime_type': 'image/png'}.",
                param=f"{p.where}.image_url.url",
                code="invalid_image_url",
            )


def look(part: ImagePart) -> Seen:
    """Size and dominant colour of an inline image (:class:`BadRequestError` if its bytes are no image)."""
    info = facts(part.part)  # the size coffee_nb's own estimate reads
    _, _, b64 = part.url.partition(",")
    try:
        data = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        data = b""
    rgb = _dominant(data) if info.width > 0 and info.height > 0 else None
    if rgb is None:
        raise BadRequestError(_UNSUPPORTED, param=part.where, code="invalid_image_format")
    return Seen(info.width, info.height, "#{:02x}{:02x}{:02x}".format(*rgb), colour_name(*rgb))


def image_prompt_tokens(model: SandboxModel, parts: Sequence[ImagePart], seen: Sequence[Seen]) -> int:
    """Prompt tokens of the images, by coffee_nb's rule for the sandbox (added to the text's count)."""
    return sum(
        image_tokens("sandbox", model.name, s.width, s.height, p.detail).tokens
        for p, s in zip(parts, seen, strict=True)
    )


def describe(seen: Sequence[Seen]) -> str:
    """``Image 1: 640x480 px, mostly dark blue (#1f3b73).``, one sentence per image, in order."""
    return " ".join(f"Image {n}: {s.width}x{s.height} px, mostly {s.name} ({s.hex})." for n, s in enumerate(seen, 1))


def _dominant(data: bytes) -> tuple[int, int, int] | None:
    """The mean colour of the fullest colour bin of the image cut down to ``_SIDE`` pixels a side."""
    from PIL import Image  # lazy: PIL

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (_SIDE, _SIDE))  # JPEG: decode at 1/2 to 1/8 scale, never below _SIDE
            scale = min(1.0, _SIDE / max(img.size))
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            small = img.resize(size, Image.Resampling.NEAREST).convert("RGBA")  # nearest: no blended colours
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    flat = Image.alpha_composite(Image.new("RGBA", small.size, "white"), small).convert("RGB")
    counts: Counter[tuple[int, int, int]] = Counter()
    sums: dict[tuple[int, int, int], list[int]] = {}
    for n, colour in flat.getcolors(size[0] * size[1]) or []:
        if not isinstance(colour, tuple):  # an RGB image's colours are tuples (typed as maybe single bands)
            continue
        r, g, b = colour[:3]
        key = (r >> 5, g >> 5, b >> 5)
        counts[key] += n
        acc = sums.setdefault(key, [0, 0, 0])
        acc[0] += n * r
        acc[1] += n * g
        acc[2] += n * b
    if not counts:
        return None
    top = max(counts, key=lambda k: (counts[k], k))
    r, g, b = (round(v / counts[top]) for v in sums[top])
    return r, g, b


# hue (degrees, upper bound) -> name; lightness below 0.33 reads "dark", above 0.7 "light"
_HUES = (
    (15, "red"),
    (40, "orange"),
    (70, "yellow"),
    (160, "green"),
    (190, "cyan"),
    (260, "blue"),
    (290, "violet"),
    (335, "magenta"),
    (361, "red"),
)
_SHADES = {
    "dark orange": "brown",
    "dark yellow": "olive",
    "dark cyan": "teal",
    "dark magenta": "purple",
    "light red": "pink",
    "light magenta": "pink",
}
_GREYS = ((0.15, "black"), (0.4, "dark grey"), (0.7, "grey"), (0.92, "light grey"), (2.0, "white"))


def colour_name(r: int, g: int, b: int) -> str:
    """A plain name for an sRGB colour: a grey when it has little colour (max - min channel below 26),
    else its hue's name, darkened or lightened by its lightness (``dark blue``, ``pink``, ``olive``)."""
    lightness = (max(r, g, b) + min(r, g, b)) / 510
    if max(r, g, b) - min(r, g, b) < 26:
        return next(name for top, name in _GREYS if lightness < top)
    hue = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)[0] * 360
    name = next(name for top, name in _HUES if hue < top)
    shade = "dark " if lightness < 0.33 else "light " if lightness > 0.7 else ""
    return _SHADES.get(shade + name, shade + name)
