"""Ollama: ChatOllama on a local server, its httpx clients riding the pool. Its call options (sampling,
``num_predict``) live in one ``options`` dict."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import TYPE_CHECKING

from coffee_nb.errors._errors import ErrorClass
from coffee_nb.pricing._pricing import ModelFacts, Price
from coffee_nb.providers._base import missing_extra
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["register"]

# ChatOllama's fields that it sends as ``options``: an ``options`` argument replaces them all, so the
# call's own values are merged over the model's
_OPTION_FIELDS = (
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "num_ctx",
    "num_gpu",
    "num_thread",
    "num_predict",
    "repeat_last_n",
    "repeat_penalty",
    "temperature",
    "seed",
    "stop",
    "tfs_z",
    "top_k",
    "top_p",
)
ERRORS: dict[str, ErrorClass | None] = {
    "ollama.ResponseError": None,  # the server's error reply: ``status_code`` (404: model not pulled)
    "ollama.RequestError": ErrorClass.BAD_REQUEST,  # the client refused the request (no model given, ...)
}
PARAMS = Params(
    max_tokens="num_predict",
    sampling=frozenset({"temperature", "top_p", "top_k", "seed"}),
    nest="options",
    nest_fields=_OPTION_FIELDS,
)


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama  # lazy: langchain_ollama
    except ImportError as exc:
        raise missing_extra("ollama", "ollama") from exc
    from coffee_nb.providers._transport import AsyncPooledTransport, PooledTransport  # lazy: httpx

    params = dict(s.params)
    params.setdefault("base_url", os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))
    params.setdefault("client_kwargs", {"timeout": s.timeout})
    params.setdefault("sync_client_kwargs", {"transport": PooledTransport()})
    params.setdefault("async_client_kwargs", {"transport": AsyncPooledTransport()})
    return ChatOllama(model=model, **params)


def _info(model: str) -> ModelFacts:
    # runs on the user's machine: no API fee, and labelled so
    return ModelFacts(Price(Decimal(0), Decimal(0), source="local"), None)


def register() -> None:
    register_provider(
        "ollama",
        _build,
        model_info=_info,
        finish_reason=True,
        errors=ERRORS,
        params=PARAMS,
        classes=("ChatOllama",),
        extra="ollama",
        needs="langchain_ollama",
        examples=("llama3.2",),
    )
