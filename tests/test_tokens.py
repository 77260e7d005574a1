"""Offline tokens: exact for OpenAI encodings, a labelled estimate otherwise."""

from __future__ import annotations

import bpe_openai
from langchain_core.messages import HumanMessage, SystemMessage

from coffee_nb import count_message_tokens, count_tokens
from coffee_nb._tokens import encoding_for

TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé, emoji 🎉, code: def f(x): return {x: 1}"


def test_exact_o200k_and_cl100k():
    for name in ("o200k_base", "cl100k_base"):
        assert count_tokens(TEXT, name) == len(bpe_openai.get_encoding(name).encode(TEXT))
    assert count_tokens("", "o200k_base") == 0


def test_encodings_by_model():
    assert encoding_for("openai", "gpt-4o-mini") == ("o200k_base", True)
    assert encoding_for("openai", "gpt-5") == ("o200k_base", True)
    assert encoding_for("openai", "o3-mini") == ("o200k_base", True)
    assert encoding_for("openai", "gpt-4") == ("cl100k_base", True)
    assert encoding_for("openai", "gpt-3.5-turbo") == ("cl100k_base", True)
    assert encoding_for("anthropic", "claude-3-5-haiku-latest") == ("o200k_base", False)


def test_message_count_includes_framing_and_is_labelled():
    messages = [SystemMessage("be brief"), HumanMessage(TEXT)]
    exact = count_message_tokens(messages, "openai", "gpt-4o")
    body = count_tokens("be brief") + count_tokens(TEXT)
    assert exact.tokens == body + 2 * 3 + 3
    assert exact.exact and exact.encoding == "o200k_base"
    estimate = count_message_tokens(messages, "anthropic", "claude-3-5-haiku-latest")
    assert not estimate.exact and estimate.tokens == exact.tokens


def test_multimodal_content_blocks_count_their_text():
    msg = HumanMessage(
        content=[{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]
    )
    assert count_message_tokens([msg], "openai", "gpt-4o").tokens == count_tokens("hello world") + 6
