"""Input tokens of one image, by the provider's own published rule.

``image_tokens(provider, model, width, height, detail)`` says how many prompt tokens an image of that
size costs on that model, which rule it used, and whether the number is the provider's exact rule or an
estimate (an unknown provider, a model whose rule is not published, a rule the provider calls a maximum).

A table of per-model numbers, then one pure function per rule. An image of unknown size (width or height
<= 0: an image given by URL, not fetched) costs the most that rule can charge for one image, labelled so.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

__all__ = ["ImageTokens", "image_bound", "image_tokens"]


class ImageTokens(NamedTuple):
    tokens: int
    exact: bool  # the provider's published rule for this model (else an estimate)
    rule: str  # what was applied, in words ("OpenAI tiles, high detail: 4 tiles")


def _ceil(x: float) -> int:
    """``ceil`` that forgives float noise (``33.000000001`` patches are 33)."""
    return math.ceil(x - 1e-9)


def _floor(x: float) -> int:
    return math.floor(x + 1e-9)


# --- OpenAI -------------------------------------------------------------------------------------------------
# https://platform.openai.com/docs/guides/images-vision#calculating-costs
# Tiles ("GPT 4o, GPT-4.1, GPT-4o-mini, CUA, and o-series (except o4-mini)"): low detail costs the base;
# high fits the image in 2048 x 2048, scales its short side down to 768, then base + tile tokens per
# 512-px tile. Patches ("GPT-4.1-mini, GPT-4.1-nano, o4-mini" and the gpt-5 mini/nano of the multiplier
# table): 32-px patches, scaled down to at most 1536, times a per-model multiplier.


class _Tiles(NamedTuple):
    base: int  # tokens of a low-detail image, and added to every high-detail one
    tile: int  # tokens per 512-px tile


class _Patches(NamedTuple):
    multiplier: float  # image tokens (32-px patches) times this are billed


_DEFAULT_TILES = _Tiles(85, 170)  # GPT-4o's numbers: the rule for an OpenAI model not in the table

# Model id prefixes (a dated snapshot "gpt-4o-2024-08-06" is "gpt-4o"), most specific first.
_OPENAI: tuple[tuple[str, _Tiles | _Patches], ...] = (
    ("gpt-4.1-mini", _Patches(1.62)),
    ("gpt-4.1-nano", _Patches(2.46)),
    ("gpt-5-mini", _Patches(1.62)),
    ("gpt-5-nano", _Patches(2.46)),
    ("o4-mini", _Patches(1.72)),
    ("gpt-4o-mini", _Tiles(2833, 5667)),
    ("gpt-4o", _DEFAULT_TILES),
    ("chatgpt-4o", _DEFAULT_TILES),
    ("gpt-4.1", _DEFAULT_TILES),
    ("gpt-4.5", _DEFAULT_TILES),
    ("gpt-5", _Tiles(70, 140)),  # "gpt-5, gpt-5-chat-latest"
    ("o1", _Tiles(75, 150)),  # "o1, o1-pro, o3"
    ("o3", _Tiles(75, 150)),
    ("computer-use-preview", _Tiles(65, 129)),
)
_PATCH_BUDGET = 1536  # at most this many 32-px patches per image
_MAX_TILES = 8  # a 768 x 2048 image: the most 512-px tiles the high-detail resize leaves


def _openai_rule(name: str, *, inside: bool = False) -> tuple[str, _Tiles | _Patches] | None:
    """The table entry whose prefix ``name`` starts with (``gpt-4o-mini-2024-07-18``); with ``inside``, also one
    named inside a longer name (an Azure deployment ``prod-gpt-4o-mini``)."""
    for key, rule in _OPENAI:
        if name == key or name.startswith(key + "-"):
            return key, rule
    if inside:
        for key, rule in _OPENAI:
            if re.search(rf"(?<![a-z0-9.]){re.escape(key)}(?![a-z0-9.])", name):
                return key, rule
    return None


def _openai_tiles(width: int, height: int, detail: str, numbers: _Tiles = _DEFAULT_TILES) -> tuple[int, str]:
    """OpenAI's tile rule: low detail is the base; else fit in 2048 x 2048, scale the short side down to 768,
    count 512-px tiles."""
    if detail == "low":
        return numbers.base, "OpenAI, low detail"
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = _ceil(w / 512) * _ceil(h / 512)
    return numbers.base + numbers.tile * tiles, f"OpenAI tiles, {detail} detail: {tiles} tile{'s' * (tiles != 1)}"


def _openai_patches(width: int, height: int, multiplier: float) -> tuple[int, str]:
    """OpenAI's patch rule: 32-px patches; over 1536, the image is scaled down to fit a whole number of
    patches within 1536; the patches times the model's multiplier (rounded up: OpenAI does not say how)."""
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > _PATCH_BUDGET:
        r = math.sqrt(32 * 32 * _PATCH_BUDGET / (width * height))
        across, down = width * r / 32, height * r / 32
        r *= min(max(_floor(across), 1) / across, max(_floor(down), 1) / down)
        patches = _ceil(width * r / 32) * _ceil(height * r / 32)
    patches = min(patches, _PATCH_BUDGET)
    return _ceil(patches * multiplier), f"OpenAI patches: {patches} of 32 px x {multiplier}"


def _openai(name: str, width: int, height: int, detail: str, *, inside: bool = False) -> tuple[int, str, bool]:
    """Tokens, rule, and whether that is OpenAI's own number: the model is in OpenAI's tables (else GPT-4o's tile
    numbers stand in) and the size is known (or does not matter: low detail)."""
    found = _openai_rule(name, inside=inside)
    rule = found[1] if found else _DEFAULT_TILES
    label = f" ({found[0]})" if found and rule != _DEFAULT_TILES else ""
    unknown = width <= 0 or height <= 0
    if isinstance(rule, _Patches):
        if unknown:
            tokens = _ceil(_PATCH_BUDGET * rule.multiplier)
            return (
                tokens,
                f"size unknown: the most an image costs, {_PATCH_BUDGET} patches x {rule.multiplier}{label}",
                False,
            )
        tokens, text = _openai_patches(width, height, rule.multiplier)
        return tokens, text + label, found is not None
    if unknown and detail == "high":
        tokens = rule.base + rule.tile * _MAX_TILES
        return tokens, f"size unknown: the most a high-detail image costs, {_MAX_TILES} tiles{label}", False
    tokens, text = _openai_tiles(width, height, detail, rule)
    return tokens, text + label, found is not None


# --- Anthropic ----------------------------------------------------------------------------------------------
# https://platform.claude.com/docs/en/build-with-claude/vision#evaluate-image-size and
# https://platform.claude.com/docs/en/build-with-claude/vision-coordinates#how-claude-resizes-and-pads-images
# One visual token per 28-px patch, ceil(w/28) x ceil(h/28); an image over the model's long-edge or
# visual-token limit is first resized to the largest aspect-preserving size within both (the reference
# implementation, reproduced below). (The docs' older rule, w*h/750, was their approximation of this.)


class _ClaudeTier(NamedTuple):
    name: str
    max_edge: int  # px, long edge
    max_tokens: int  # visual tokens


_CLAUDE_STANDARD = _ClaudeTier("standard", 1568, 1568)  # "all other models"
_CLAUDE_HIGH = _ClaudeTier("high-resolution", 2576, 4784)  # "Claude 4.7 and later models"


def _claude_tier(name: str) -> _ClaudeTier | None:
    """The tier of a Claude model id (``claude-opus-4-7``, ``claude-3-5-sonnet-20241022``,
    ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``, ``claude-haiku-4-5@20251001``); None when the id says
    no version."""
    _, found, rest = name.partition("claude")
    if not found:
        return None
    rest = re.sub(r"-v\d+(:\d+)?$", "", rest.partition("@")[0])  # Bedrock's "-v1:0", Vertex's "@date"
    numbers = [int(n) for n in re.findall(r"(?<!\d)\d{1,2}(?!\d)", rest)]  # not the 8-digit dates
    if not numbers:
        return None
    version = (numbers[0], numbers[1] if len(numbers) > 1 else 0)
    return _CLAUDE_HIGH if version >= (4, 7) else _CLAUDE_STANDARD


def _claude_patches(width: int, height: int) -> int:
    return math.ceil(width / 28) * math.ceil(height / 28)


def _claude_size(width: int, height: int, tier: _ClaudeTier) -> tuple[int, int]:
    """The size Claude resizes an image to (Anthropic's reference implementation, unchanged)."""

    def fits(w: int, h: int) -> bool:
        edge = tier.max_edge
        return (
            math.ceil(w / 28) * 28 <= edge
            and math.ceil(h / 28) * 28 <= edge
            and _claude_patches(w, h) <= tier.max_tokens
        )

    if fits(width, height):
        return width, height
    if height > width:
        h, w = _claude_size(height, width, tier)
        return w, h
    aspect = width / height
    lo, hi = 1, width  # lo always fits, hi never does
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if fits(mid, max(round(mid / aspect), 1)):
            lo = mid
        else:
            hi = mid
    return lo, max(round(lo / aspect), 1)


def _anthropic(name: str, width: int, height: int) -> tuple[int, str, bool]:
    tier = _claude_tier(name)
    known = tier is not None
    tier = tier or _CLAUDE_HIGH  # a Claude whose version the id does not say: the larger limits
    tier_text = f"{tier.name} tier" if known else f"{tier.name} tier assumed, model version unknown"
    if width <= 0 or height <= 0:
        return tier.max_tokens, f"size unknown: the most an image costs on Anthropic's {tier_text}", False
    w, h = _claude_size(width, height, tier)
    resized = f" resized to {w}x{h}" if (w, h) != (width, height) else ""
    cols, rows = math.ceil(w / 28), math.ceil(h / 28)
    return cols * rows, f"Anthropic: {width}x{height} px{resized}, {cols}x{rows} patches of 28 px ({tier_text})", known


# --- Google Gemini ------------------------------------------------------------------------------------------
# https://ai.google.dev/gemini-api/docs/tokens (multimodal tokens): "Image inputs with both dimensions <=384
# pixels are counted as 258 tokens. Images larger in one or both dimensions are cropped and scaled as needed
# into tiles of 768x768 pixels, each counted as 258 tokens." How the tiles are cut is not said: counted here
# as ceil(w/768) x ceil(h/768) after the scale-down to fit 3072 x 3072 that Google's image docs described
# (https://ai.google.dev/gemini-api/docs/vision, "larger images are scaled down to a maximum resolution of
# 3072x3072"). That is the default media_resolution; a request's media_resolution setting changes it.
# https://ai.google.dev/gemini-api/docs/media-resolution (token counts): Gemini 3 allots an image at most
# 1120 tokens by default (MEDIA_RESOLUTION_UNSPECIFIED, the same as HIGH), whatever its size.

_GEMINI_SMALL = 384  # both sides at most this: one image is 258 tokens
_GEMINI_TILE = 768
_GEMINI_TILE_TOKENS = 258
_GEMINI_MAX_SIDE = 3072
_GEMINI3_DEFAULT = 1120


def _gemini_tiles(width: int, height: int) -> tuple[int, str, bool]:
    if width <= 0 or height <= 0:
        tiles = (_GEMINI_MAX_SIDE // _GEMINI_TILE) ** 2
        return tiles * _GEMINI_TILE_TOKENS, f"size unknown: the most an image costs on Gemini, {tiles} tiles", False
    if width <= _GEMINI_SMALL and height <= _GEMINI_SMALL:
        return _GEMINI_TILE_TOKENS, f"Gemini: {_GEMINI_TILE_TOKENS} tokens (both sides <= {_GEMINI_SMALL} px)", True
    w, h = float(width), float(height)
    scaled = ""
    if max(w, h) > _GEMINI_MAX_SIDE:
        s = _GEMINI_MAX_SIDE / max(w, h)
        w, h = w * s, h * s
        scaled = f", scaled to fit {_GEMINI_MAX_SIDE} px"
    tiles = _ceil(w / _GEMINI_TILE) * _ceil(h / _GEMINI_TILE)
    text = (
        f"Gemini: {tiles} tile{'s' * (tiles != 1)} of {_GEMINI_TILE} px{scaled} (Google does not say how it cuts tiles)"
    )
    return tiles * _GEMINI_TILE_TOKENS, text, False


def _gemini(name: str, width: int, height: int) -> tuple[int, str, bool]:
    m = re.search(r"gemini-(\d+)", name)
    if m and int(m.group(1)) >= 3:
        return (
            _GEMINI3_DEFAULT,
            f"Gemini 3: at most {_GEMINI3_DEFAULT} tokens per image (default media_resolution)",
            False,
        )
    tokens, text, exact = _gemini_tiles(width, height)
    return tokens, text, exact and m is not None  # the 258 of a small image, on a Gemini whose rule this is


# --- Mistral ------------------------------------------------------------------------------------------------
# Mistral publishes no per-image billing rule; its open tokenizer does (mistral-common, ImageEncoder:
# https://github.com/mistralai/mistral-common/blob/main/src/mistral_common/tokens/tokenizers/image.py):
# scale the long side down to max_image_size, then one token per patch plus one break/end token per row.
# Pixtral 12B: 16-px patches, 1024 px. Later vision models (Pixtral Large, Mistral Small/Medium 3+, ...):
# 14-px patches merged 2 x 2 (28 px), 1540 px (their published processor_config.json).


class _MistralImages(NamedTuple):
    patch: int  # px per token
    max_size: int  # px, long side


_PIXTRAL_12B = _MistralImages(16, 1024)
_MISTRAL_LATER = _MistralImages(28, 1540)


def _mistral(name: str, width: int, height: int) -> tuple[int, str, bool]:
    spec = _PIXTRAL_12B if "pixtral-12b" in name else _MISTRAL_LATER
    unknown = width <= 0 or height <= 0
    w, h = (spec.max_size, spec.max_size) if unknown else (width, height)
    ratio = max(w, h) / spec.max_size
    if ratio > 1:
        w, h = round(w / ratio), round(h / ratio)
    cols, rows = (w - 1) // spec.patch + 1, (h - 1) // spec.patch + 1
    text = f"Mistral's tokenizer: {cols}x{rows} patches of {spec.patch} px + {rows} row ends"
    return (cols + 1) * rows, f"size unknown: the most an image costs, {text}" if unknown else text, False


# --- Dispatch -----------------------------------------------------------------------------------------------

_GOOGLE = ("google", "google_genai", "vertexai")


def _estimate(provider: str, name: str, width: int, height: int, detail: str) -> ImageTokens:
    """A provider without a published rule: the rule of the model's own family when its name says it (a
    Claude on Vertex, a Pixtral on Bedrock), else OpenAI's tile rule."""
    if "claude" in name:
        tokens, text, _ = _anthropic(name, width, height)
    elif "gemini" in name:
        tokens, text, _ = _gemini(name, width, height)
    elif "pixtral" in name or "mistral" in name:
        tokens, text, _ = _mistral(name, width, height)
    else:
        tokens, text, _ = _openai(name, width, height, detail)
    return ImageTokens(tokens, False, f"{text} (estimate: {provider or 'this provider'} publishes no image rule)")


def image_tokens(provider: str, model: str, width: int, height: int, detail: str = "auto") -> ImageTokens:
    """Prompt tokens of a ``width`` x ``height`` image on ``provider/model`` (``detail``: OpenAI's
    ``low`` / ``high`` / ``auto``, which OpenAI documents as high for sizing purposes; other providers ignore
    it). ``width`` or ``height`` <= 0 (size unknown): the most one image can cost there, ``exact=False`` (but
    an OpenAI low-detail image, whose cost does not depend on its size)."""
    provider = provider.lower()
    name = model.lower().rpartition("/")[2]  # "openai/gpt-4o", "publishers/google/models/gemini-2.5-pro"
    detail = "low" if detail.lower() == "low" else "high"
    if provider == "sandbox":  # coffee_nb's offline server counts images by OpenAI's tile rule, GPT-4o numbers
        if detail == "high" and (width <= 0 or height <= 0):
            tokens = _DEFAULT_TILES.base + _DEFAULT_TILES.tile * _MAX_TILES
            return ImageTokens(tokens, False, f"size unknown: the most a high-detail image costs, {_MAX_TILES} tiles")
        tokens, text = _openai_tiles(width, height, detail)
        return ImageTokens(tokens, True, text)
    if provider == "openai":
        tokens, text, exact = _openai(name, width, height, detail)
        if _openai_rule(name) is None:
            text += f" (estimate: {name} is not in OpenAI's tables)"
        return ImageTokens(tokens, exact, text)
    if provider == "azure":  # a deployment named after its model (or naming it) counts as that model
        tokens, text, exact = _openai(name, width, height, detail, inside=True)
        if _openai_rule(name, inside=True) is None:
            text += " (estimate: Azure deployment not recognised as an OpenAI model)"
        elif _openai_rule(name) is None:
            exact = False
            text += " (estimate: model read from the deployment name)"
        return ImageTokens(tokens, exact, text)
    claude = "claude" in name or "anthropic" in name  # Bedrock's "anthropic.claude-...", Vertex's "claude-..."
    if provider == "anthropic" or (provider in ("bedrock", *_GOOGLE) and claude):
        tokens, text, exact = _anthropic(name, width, height)
        return ImageTokens(tokens, exact, text)
    if provider in _GOOGLE and "gemini" in name:
        tokens, text, exact = _gemini(name, width, height)
        return ImageTokens(tokens, exact, text)
    if provider == "mistral":
        tokens, text, _ = _mistral(name, width, height)
        return ImageTokens(tokens, False, f"{text} (estimate: Mistral publishes no billing rule for images)")
    return _estimate(provider, name, width, height, detail)


# the dearest image rule of each provider coffee_nb knows (gpt-4o-mini's tiles are priced to cost what
# GPT-4o's do at its lower price: many tokens; Claude's high-resolution tier; Gemini 3's maximum)
_DEAREST = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1-nano"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-opus-4-7"),
    ("google_genai", "gemini-2.5-pro"),
    ("google_genai", "gemini-3-pro"),
    ("mistral", "pixtral-large-latest"),
)


def image_bound(width: int, height: int) -> int:
    """At least the tokens an image of this size costs on any model coffee_nb knows a rule for: a bound
    for when the answering model is not known yet (a candidate's own rule is used wherever it is)."""
    return max(image_tokens(p, m, width, height, "high").tokens for p, m in _DEAREST)
