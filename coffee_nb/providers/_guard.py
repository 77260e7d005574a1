"""Answers that are refusals: read from the finish reason or the prompt feedback, raised as errors.

Gemini answers a blocked prompt with HTTP 200, no text and ``promptFeedback.blockReason``; Azure OpenAI
ends a filtered answer with ``finish_reason: content_filter``; Bedrock with ``guardrail_intervened``.
Taken as answers, these would be empty "successes". The models coffee_nb builds carry :data:`GUARD`, a
callback that raises :class:`ContentFilteredError` (classified ``content_filter``) when the call ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from coffee_nb.providers._base import ContentFilteredError

__all__ = ["GUARD", "RefusalGuard", "guarded", "refusal"]

# finish / stop reasons (lower-cased) that mean the provider withheld the answer
_REFUSALS = frozenset(
    {
        "content_filter",  # OpenAI, Azure OpenAI, OpenAI-compatible servers
        "safety",  # Gemini
        "prohibited_content",
        "blocklist",
        "spii",
        "recitation",
        "image_safety",
        "guardrail_intervened",  # Bedrock Converse
        "content_filtered",
        "refusal",  # Anthropic
    }
)
_UNBLOCKED = frozenset({"", "0", "none", "block_reason_unspecified"})


def refusal(message: Any) -> str | None:
    """The provider's reason when ``message`` is a refusal or a blocked prompt, else None."""
    meta = getattr(message, "response_metadata", None)
    if not isinstance(meta, Mapping):
        return None
    for key in ("finish_reason", "stop_reason", "stopReason"):
        value = _text(meta.get(key))
        if value.lower() in _REFUSALS:
            detail = meta.get("finish_message")
            return f"finish reason {value}" + (f": {detail}" if detail else "")
    feedback = meta.get("prompt_feedback")
    if isinstance(feedback, Mapping):
        block = _text(feedback.get("block_reason"))
        if block.lower() not in _UNBLOCKED:
            detail = feedback.get("block_reason_message")
            return f"prompt blocked ({block})" + (f": {detail}" if detail else "")
    return None


def _text(value: Any) -> str:
    value = getattr(value, "value", value)  # SDK enums
    return value if isinstance(value, str) else "" if value is None else str(value)


class RefusalGuard(BaseCallbackHandler):
    """Raises :class:`ContentFilteredError` when a call of the model it is attached to ends in a refusal."""

    raise_error = True  # LangChain swallows handler errors unless told
    run_inline = True  # async calls too: in the call's own task, so the error reaches the caller

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                reason = refusal(getattr(generation, "message", None))
                if reason is not None:
                    raise ContentFilteredError(f"the provider withheld the answer: {reason}")

    def __repr__(self) -> str:
        return "RefusalGuard()"


GUARD = RefusalGuard()


def guarded(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor ``kwargs`` of a chat model with :data:`GUARD` among its callbacks (the user's kept)."""
    given = kwargs.get("callbacks")
    handlers = list(given) if isinstance(given, (list, tuple)) else []
    if given is not None and not isinstance(given, (list, tuple)):
        return kwargs  # a callback manager of the user's: left as it is
    kwargs["callbacks"] = [*handlers, GUARD]
    return kwargs
