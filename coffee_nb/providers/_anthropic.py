"""Anthropic: ChatAnthropic (the anthropic SDK's errors are in the core table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coffee_nb.providers._base import missing_extra
from coffee_nb.providers._params import Params

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb._models import BuildSettings

__all__ = ["register"]

PARAMS = Params(sampling=frozenset({"temperature", "top_p", "top_k"}))


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_anthropic import ChatAnthropic
    except ImportError as exc:  # an optional extra
        raise missing_extra("anthropic", "anthropic") from exc
    from coffee_nb.providers._guard import guarded

    kwargs: dict[str, Any] = {"model": model, "api_key": key, "max_retries": 0, "timeout": s.timeout, **s.params}
    return ChatAnthropic(**guarded(kwargs))  # by alias names, which its stubs don't list


def register() -> None:
    from coffee_nb._models import register_provider

    register_provider(
        "anthropic",
        _build,
        env_var="ANTHROPIC_API_KEY",
        prefill=True,
        finish_reason=True,
        params=PARAMS,
        classes=("ChatAnthropic",),
        extra="anthropic",
        needs="langchain_anthropic",
        examples=("claude-3-5-haiku-latest", "claude-sonnet-4-5"),
    )
