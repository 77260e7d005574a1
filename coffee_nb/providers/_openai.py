"""OpenAI: ChatOpenAI on the pooled clients (the openai/httpx errors are in the core table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffee_nb.providers._params import Params

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb._models import BuildSettings

__all__ = ["PARAMS", "REASONING", "register"]

# o1/o3/o4 and gpt-5 (but gpt-5-chat) reject sampling parameters with a 400 ("Unsupported value")
REASONING = r"(?:^|/)(o\d|gpt-5(?!-chat))"
_REFUSED = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
# Chat Completions takes no top_k (the SDK's create() would raise a TypeError on it)
SAMPLING = frozenset({"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"})
PARAMS = Params(sampling=SAMPLING, refuses=((REASONING, _REFUSED),))


def _build(model: str, key: str | None, settings: BuildSettings) -> BaseChatModel:
    from coffee_nb._models import build_openai_compatible

    return build_openai_compatible(model, key, settings)


def register() -> None:
    from coffee_nb._models import register_provider

    register_provider(
        "openai",
        _build,
        env_var="OPENAI_API_KEY",
        timeout_kwarg=True,
        finish_reason=True,
        params=PARAMS,
        classes=("ChatOpenAI",),
        needs="langchain_openai",
        examples=("gpt-4o-mini", "gpt-4.1-mini", "o3-mini"),
    )
