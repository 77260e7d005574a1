"""Input tokens of one image, by the provider's own published rule.

``image_tokens(provider, model, width, height, detail)`` says how many prompt tokens an image of that
size costs on that model, which rule it used, and whether the number is the provider's exact rule or an
estimate (an unknown provider, a model whose rule is not published).
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["ImageTokens", "image_bound", "image_tokens"]


class ImageTokens(NamedTuple):
    tokens: int
    exact: bool  # the provider's published rule for this model (else an estimate)
    rule: str  # what was applied, in words ("OpenAI tiles, high detail: 4 tiles")


def _openai_tiles(width: int, height: int, detail: str, base: int = 85, per_tile: int = 170) -> tuple[int, str]:
    """OpenAI's tile rule (GPT-4o, GPT-4.1, o-series): low detail is ``base``; else fit in 2048 x 2048,
    scale the short side to 768, count 512-px tiles."""
    if detail == "low":
        return base, "OpenAI, low detail"
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base + per_tile * tiles, f"OpenAI tiles, {detail} detail: {tiles} tile{'s' * (tiles != 1)}"


def image_tokens(provider: str, model: str, width: int, height: int, detail: str = "auto") -> ImageTokens:
    """Prompt tokens of a ``width`` x ``height`` image on ``provider/model`` (``detail``: OpenAI's
    ``low`` / ``high`` / ``auto``, which OpenAI documents as high for sizing purposes)."""
    if width <= 0 or height <= 0:  # unreadable: the most a high-detail OpenAI image can cost
        tokens, _ = _openai_tiles(2048, 2048, "high")
        return ImageTokens(tokens, False, "size unknown: the most a high-detail image costs")
    tokens, rule = _openai_tiles(width, height, "low" if detail == "low" else "high")
    return ImageTokens(tokens, provider in ("openai", "azure", "sandbox"), rule)


_BOUND_PROVIDERS = ("openai", "anthropic", "google_genai", "mistral")


def image_bound(width: int, height: int) -> int:
    """At least the tokens an image of this size costs on any model coffee_nb knows a rule for: a bound
    for routing and reservations that holds before the answering model is known."""
    return max(image_tokens(p, "", width, height, "high").tokens for p in _BOUND_PROVIDERS)
