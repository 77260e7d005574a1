"""Offline token counting: exact for OpenAI encodings (o200k_base, cl100k_base), a labelled estimate otherwise.

Uses ``bpe-openai`` (tiktoken-compatible, ships its encodings; nothing downloads). Loaded on first use.
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coffee_nb import _config
from coffee_nb._format import content_text

__all__ = ["TokenCount", "count_message_tokens", "count_prompt", "count_tokens", "encoding_for"]

# OpenAI's chat format: every message costs a few tokens of framing, the reply is primed with 3.
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3

_O200K = re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d|chatgpt-4o|gpt-oss|codex)")
_CL100K = re.compile(r"^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada)")
_OPENAI_FAMILY = ("openai", "azure")  # whose model names say which encoding they use

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

    OpenAI's models by name; else the encoding a provider declared it counts with
    (``register_provider(..., encoding="o200k_base")``, as the sandbox does); else an estimate.
    """
    if provider in _OPENAI_FAMILY:
        name = model.rsplit("/", 1)[-1].lower()
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
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # bpe-openai uses importlib.resources.open_binary
        import bpe_openai

        return bpe_openai.get_encoding(name)


def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Tokens in ``text`` with ``encoding``."""
    if not text:
        return 0
    if len(text) <= _CACHE_MAX_CHARS:
        return _cached_count(text, encoding)
    return len(_encoding(encoding).encode_ordinary(text))


_CACHE_MAX_CHARS = 20_000


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
    return TokenCount(count_prompt(messages, encoding), exact, encoding)


def count_prompt(messages: Sequence[Any] | str, encoding: str) -> int:
    """Prompt tokens of ``messages`` with ``encoding``, OpenAI's chat framing included."""
    if isinstance(messages, str):
        return _REPLY_PRIMING + _TOKENS_PER_MESSAGE + count_tokens(messages, encoding)
    total = _REPLY_PRIMING
    for m in messages:
        total += _TOKENS_PER_MESSAGE
        if isinstance(m, dict):  # OpenAI wire format (the sandbox counts this way)
            total += count_tokens(content_text(m.get("content")), encoding)
            tool_calls = m.get("tool_calls")
            if tool_calls:
                total += count_tokens(repr(tool_calls), encoding)
            continue
        total += count_tokens(content_text(getattr(m, "content", m)), encoding)
        tool_calls = getattr(m, "tool_calls", None)
        if tool_calls:
            total += count_tokens(repr(tool_calls), encoding)
    # Framing differs by provider; our count for non-OpenAI models is an estimate either way.
    return total
