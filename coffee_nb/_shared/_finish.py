"""Why an answer ended, the same word for every provider: ``stop``, ``length`` (the output limit was hit),
``tool_calls``, ``content_filter`` (or the provider's own word, lower-cased, when it has no common one).

Each provider says it its own way, in its own metadata key: OpenAI and the OpenAI-compatible servers
(Azure, Groq, Mistral, OpenRouter, DeepSeek, xAI, Together, Fireworks, vLLM, the sandbox)
``finish_reason: length``; Anthropic ``stop_reason: max_tokens``; Gemini ``finish_reason: MAX_TOKENS``;
Bedrock Converse ``stopReason: max_tokens``; Ollama ``done_reason: length``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["finish_reason"]

_KEYS = ("finish_reason", "stop_reason", "stopReason", "done_reason")
_COMMON = {
    # the output limit
    "length": "length",  # OpenAI & compatible, Mistral, Groq, Ollama
    "max_tokens": "length",  # Anthropic, Bedrock Converse
    "max_output_tokens": "length",
    "model_length": "length",  # Mistral (the context ran out while generating)
    "model_context_window_exceeded": "length",  # Anthropic (newer models)
    # a natural end
    "stop": "stop",  # OpenAI & compatible, Gemini (STOP), Ollama
    "end_turn": "stop",  # Anthropic, Bedrock
    "stop_sequence": "stop",  # Anthropic, Bedrock
    "eos": "stop",
    "complete": "stop",
    # tools
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",  # Anthropic, Bedrock
    "function_call": "tool_calls",
    # withheld (these normally raise before an answer is shown: providers/_guard.py)
    "content_filter": "content_filter",
    "safety": "content_filter",
    "guardrail_intervened": "content_filter",
    "refusal": "content_filter",
}


def finish_reason(metadata: Mapping[str, Any] | None) -> str | None:
    """The common word for why the answer in ``metadata`` (a message's ``response_metadata``) ended."""
    if not metadata:
        return None
    for key in _KEYS:
        value = metadata.get(key)
        value = getattr(value, "name", value)  # SDK enums (Gemini's FinishReason.MAX_TOKENS)
        if isinstance(value, str) and value:
            word = value.lower().rsplit(".", 1)[-1]
            return _COMMON.get(word, word)
    return None
