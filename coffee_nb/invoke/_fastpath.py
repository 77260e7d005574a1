"""The fast path: with nobody listening, ``invoke`` / ``ainvoke`` skip AutoPicker's own layer of
LangChain's chat-model machinery (about as costly as the model call itself for a fast model).

The candidates' own ``invoke`` still runs in full. "Nobody listening" means no callbacks, tracing,
LLM cache, rate limiter, debug/verbose mode or configure hook (see ``_compat.nothing_listening``).
Switch it off with ``COFFEE_NB_FAST_PATH=0`` in the environment or :func:`set_fast_path`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from coffee_nb.invoke._compat import nothing_listening

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from coffee_nb.invoke._invoker import AutoPicker

__all__ = ["fast_path_enabled", "fast_prompt", "prompt", "set_fast_path", "unobserved"]

_enabled = [os.environ.get("COFFEE_NB_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")]


def set_fast_path(enabled: bool) -> None:
    """Turn the fast path on or off for this process (on by default)."""
    _enabled[0] = bool(enabled)


def fast_path_enabled() -> bool:
    return _enabled[0]


def unobserved(picker: AutoPicker, config: Any, kwargs: dict[str, Any]) -> bool:
    """True when our own run would reach no callback handler, tracer, cache or rate limiter."""
    if not _enabled[0]:
        return False
    if (config and config.get("callbacks")) or picker.callbacks or picker.verbose or picker.streaming:
        return False
    if kwargs.get("stream") or picker.rate_limiter is not None or picker.cache not in (None, False):
        return False
    return nothing_listening(picker.cache is False)


def prompt(picker: AutoPicker, input: Any) -> list[BaseMessage] | str:  # noqa: A002 - LangChain's name
    """What the fast path hands to the candidates: a string as it is (each candidate turns it into
    the same one user message, and it counts the same), anything else converted and validated once."""
    if type(input) is str:
        return input
    return picker._convert_input(input).to_messages()


def fast_prompt(picker: AutoPicker, input: Any, config: Any, kwargs: dict[str, Any]) -> list[BaseMessage] | str | None:  # noqa: A002
    """The prompt to hand straight to the runner when nobody is listening (:func:`unobserved`), else None:
    one question for the invoker to ask."""
    if not unobserved(picker, config, kwargs):
        return None
    return prompt(picker, input)
