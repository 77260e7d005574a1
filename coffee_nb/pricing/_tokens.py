"""Offline token counting: exact for OpenAI encodings (o200k_base, cl100k_base), a labelled estimate otherwise.

Uses ``bpe-openai`` (tiktoken-compatible, ships its encodings; nothing downloads). Loaded on first use.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coffee_nb._shared import _config
from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import facts, images_in
from coffee_nb.pricing._image_tokens import image_bound, image_tokens

__all__ = [
    "DEFAULT_OUTPUT_ESTIMATE",
    "TokenCount",
    "count_message_tokens",
    "count_prompt",
    "count_tokens",
    "encoding_for",
    "estimate_prompt",
    "estimate_tokens",
    "images_tokens",
    "prompt_bound",
    "text_bound",
]

DEFAULT_OUTPUT_ESTIMATE = 4096  # worst-case output tokens when neither max_tokens nor the model says

# OpenAI's chat format: every message costs a few tokens of framing, the reply is primed with 3.
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3

_O200K = re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d|chatgpt-4o|gpt-oss|codex)")
_CL100K = re.compile(r"^(gpt-4|gpt-3\.?5|text-embedding-3|text-embedding-ada)")  # Azure spells it gpt-35
_OPENAI_FAMILY = ("openai", "azure")  # whose model names say which encoding they use

log = logging.getLogger("coffee_nb")
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool  # True: the model's own encoding; False: an estimate with a stand-in encoding
    encoding: str

    def __int__(self) -> int:
        return self.tokens


def encoding_for(provider: str, model: str) -> tuple[str, bool]:
    """The encoding used to count for ``provider/model`` and whether the count is exact.

    OpenAI's models by name (also when another provider serves them under ``openai/``); else the encoding
    a provider declared it counts with (``register_provider(..., encoding="o200k_base")``, as the sandbox
    does); else an estimate.
    """
    vendor, _, name = model.lower().rpartition("/")
    # OpenAI's own, Azure's deployments of them, and OpenAI models served by others ("openai/gpt-4o-mini"
    # on OpenRouter, "openai/gpt-oss-120b" on Groq): counted as OpenAI counts
    if provider in _OPENAI_FAMILY or vendor.endswith("openai"):
        if _O200K.match(name):
            return "o200k_base", True
        if _CL100K.match(name):
            return "cl100k_base", True
    declared = getattr(_config.PROVIDERS.ready().get(provider), "encoding", None)
    if declared:
        return declared, True
    return "o200k_base", False  # a good stand-in for modern tokenizers, labelled as an estimate


@functools.cache
def _encoding(name: str) -> Any:
    # bpe-openai uses importlib.resources.open_binary (deprecated): a filter for that warning alone, added
    # once. Not warnings.catch_warnings(): it restores the whole filter list on exit, which, on the %load_ext
    # warm-up thread, undid filters other threads added meanwhile (urllib3's, whose SOCKS warning then
    # landed in a notebook cell)
    warnings.filterwarnings("ignore", message=r".*open_binary", category=DeprecationWarning)
    with _lock:
        import bpe_openai  # lazy: bpe_openai

        return bpe_openai.get_encoding(name)


def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Tokens in ``text`` with ``encoding``. Never fails: long texts are counted in pieces, and if the
    tokenizer can't count at all the answer is :func:`estimate_tokens` (logged)."""
    if not text:
        return 0
    try:
        if len(text) <= _CACHE_MAX_CHARS:
            return _cached_count(text, encoding)
        enc = _encoding(encoding)
        return sum(len(enc.encode_ordinary(piece)) for piece in _pieces(text))
    except Exception:
        log.warning("coffee_nb: could not count tokens with %s; estimating instead", encoding, exc_info=True)
        return estimate_tokens(text)


def estimate_tokens(text: str) -> int:
    """A cheap estimate (about 4 bytes of UTF-8 per token), for numbers nothing depends on."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // 4) if text else 0


def _pieces(text: str) -> list[str]:
    """``text`` cut at whitespace into parts of at most about ``_PIECE_CHARS`` (the tokenizer refuses
    very long inputs: "Input too long to encode safely"); a cut costs at most a token or two."""
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + _PIECE_CHARS)
        if end < len(text):
            space = text.rfind(" ", start + _PIECE_CHARS // 2, end)
            end = space if space > start else end
        out.append(text[start:end])
        start = end
    return out


_CACHE_MAX_CHARS = 20_000
_PIECE_CHARS = 50_000


@functools.lru_cache(maxsize=4096)
def _cached_count(text: str, encoding: str) -> int:
    # Chats re-send the same system prompt and history every turn, and retries re-send everything:
    # count each distinct message once.
    return len(_encoding(encoding).encode_ordinary(text))


def count_message_tokens(messages: Sequence[Any] | str, provider: str, model: str) -> TokenCount:
    """Estimated prompt tokens of chat ``messages`` (LangChain messages or OpenAI dicts) for ``provider/model``.

    A plain string counts as one user message, as LangChain turns it into one.
    """
    encoding, exact = encoding_for(provider, model)
    tokens, images_exact = images_tokens(messages, provider, model)
    return TokenCount(count_prompt(messages, encoding) + tokens, exact and images_exact, encoding)


def images_tokens(messages: Sequence[Any] | str, provider: str, model: str) -> tuple[int, bool]:
    """The prompt tokens of the images in ``messages`` on ``provider/model`` by the provider's rule, and
    whether every one of them was counted exactly (0, True when there are none)."""
    total, exact = 0, True
    for block in images_in(messages):
        f = facts(block)
        detail = block.get("detail") or (block.get("image_url") or {}).get("detail") or "auto"
        counted = image_tokens(provider, model, f.width, f.height, str(detail))
        total += counted.tokens
        exact = exact and counted.exact
    return total, exact


def _images_bound(messages: Sequence[Any] | str) -> int:
    """At least what the images in ``messages`` cost on any model (0 when there are none)."""
    return sum(image_bound(f.width, f.height) for f in map(facts, images_in(messages)))


def _texts(messages: Sequence[Any] | str) -> list[str]:
    """The texts of a prompt: each message's content and tool calls (LangChain messages or OpenAI dicts)."""
    if isinstance(messages, str):
        return [messages]
    out: list[str] = []
    for m in messages:
        if isinstance(m, dict):  # OpenAI wire format (the sandbox counts this way)
            out.append(content_text(m.get("content")))
            tool_calls = m.get("tool_calls")
        else:
            out.append(content_text(getattr(m, "content", m)))
            tool_calls = getattr(m, "tool_calls", None)
        if tool_calls:
            out.append(repr(tool_calls))
    return out


def _framing(messages: Sequence[Any] | str) -> int:
    # OpenAI's chat format: a few tokens per message, and the reply is primed with 3. Framing differs
    # by provider; our count for non-OpenAI models is an estimate either way.
    return _REPLY_PRIMING + _TOKENS_PER_MESSAGE * (1 if isinstance(messages, str) else len(messages))


def count_prompt(messages: Sequence[Any] | str, encoding: str) -> int:
    """Prompt tokens of ``messages`` with ``encoding``, OpenAI's chat framing included (exact for OpenAI)."""
    return _framing(messages) + sum(count_tokens(t, encoding) for t in _texts(messages))


def prompt_bound(messages: Sequence[Any] | str) -> int:
    """An upper bound on the prompt tokens for any byte-level tokenizer: every token is at least one
    byte of UTF-8; each image at its dearest known rule. Costs no tokenizer: when the bound settles a
    question, nothing is counted."""
    return text_bound(messages) + _images_bound(messages)


def text_bound(messages: Sequence[Any] | str) -> int:
    """:func:`prompt_bound` without the images (add a model's own image tokens to it)."""
    return _framing(messages) + sum(len(t.encode("utf-8", "surrogatepass")) for t in _texts(messages))


def estimate_prompt(messages: Sequence[Any] | str) -> int:
    """A cheap estimate of the prompt tokens (labelled as such wherever shown)."""
    images, _ = images_tokens(messages, "openai", "")  # OpenAI's tiles: a middling rule, for an estimate
    return _framing(messages) + sum(estimate_tokens(t) for t in _texts(messages)) + images
