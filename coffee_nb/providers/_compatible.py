"""OpenAI-compatible services (OpenRouter, DeepSeek, xAI, Together, Fireworks) and any such server of
your own (``openai-compatible/<model>``: vLLM, LM Studio, llama.cpp, ...), through one builder: LangChain's
OpenAI chat model with the service's base URL and key variable, on the pooled clients. Their errors are
the openai SDK's (in the core table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coffee_nb.providers._base import Setting
from coffee_nb.providers._openai import REASONING
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import BuildSettings, build_openai_compatible, register_provider

if TYPE_CHECKING:
    from collections.abc import Callable

    from langchain_core.language_models import BaseChatModel

__all__ = ["BASE_URL_VAR", "HOSTS", "Host", "register"]

BASE_URL_VAR = "COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL"
KEY_VAR = "COFFEE_NB_OPENAI_COMPATIBLE_API_KEY"  # optional: local servers rarely want one
_SAMPLING = frozenset({"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"})
_PENALTIES = frozenset({"presence_penalty", "frequency_penalty"})


@dataclass(frozen=True, slots=True)
class Host:
    base_url: str | None
    env_var: str | None
    examples: tuple[str, ...]
    params: Params


HOSTS: dict[str, Host] = {
    "openrouter": Host(
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "meta-llama/llama-3.3-70b-instruct"),
        # OpenRouter routes to the vendor: OpenAI's reasoning models refuse sampling there too
        Params(
            sampling=_SAMPLING,
            extra_body=frozenset({"top_k"}),
            refuses=((REASONING, frozenset({"temperature", "top_p", *_PENALTIES})),),
        ),
    ),
    "deepseek": Host(
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        ("deepseek-chat", "deepseek-reasoner"),
        # the reasoner ignores sampling parameters (and rejects logprobs)
        Params(sampling=_SAMPLING, refuses=(("reasoner", frozenset({"temperature", "top_p", *_PENALTIES})),)),
    ),
    "xai": Host(
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        ("grok-3-mini", "grok-4"),
        # grok's reasoning models reject the penalties
        Params(sampling=_SAMPLING, refuses=((r"grok-(3-mini|4)", _PENALTIES),)),
    ),
    "together": Host(
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo",),
        Params(sampling=_SAMPLING, extra_body=frozenset({"top_k"})),
    ),
    "fireworks": Host(
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        ("accounts/fireworks/models/llama-v3p1-8b-instruct",),
        Params(sampling=_SAMPLING, extra_body=frozenset({"top_k"})),
    ),
    # vLLM, LM Studio, llama.cpp, TGI, LocalAI...: top_k where they take it, outside OpenAI's schema
    "openai-compatible": Host(None, None, (), Params(sampling=_SAMPLING, extra_body=frozenset({"top_k"}))),
}


def _builder(name: str, host: Host) -> Callable[[str, str | None, BuildSettings], BaseChatModel]:
    def build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
        from coffee_nb.providers._compatible_chat import ChatOpenAICompatible  # lazy: langchain_openai

        params: dict[str, Any] = {"provider": name, **s.params}
        base_url = host.base_url or os.environ.get(BASE_URL_VAR)  # params' base_url wins over both
        if key is None:  # the OpenAI client insists on some key; local servers ignore it
            key = os.environ.get(KEY_VAR) or "not-needed"
        return build_openai_compatible(
            model, key, BuildSettings(s.timeout, params, s.loop), base_url=base_url, cls=ChatOpenAICompatible
        )

    return build


def register() -> None:
    for name, host in HOSTS.items():
        register_provider(
            name,
            _builder(name, host),
            env_var=host.env_var,
            settings=(
                ()
                if host.base_url
                else (Setting((BASE_URL_VAR,), "base_url", "the server's base URL (e.g. http://127.0.0.1:8000/v1)"),)
            ),
            secret_vars=() if host.env_var else (KEY_VAR,),
            timeout_kwarg=True,
            finish_reason=True,
            params=host.params,
            needs="langchain_openai",
            examples=host.examples,
        )
