"""``ChatOpenAICompatible``: LangChain's OpenAI chat model for servers that speak OpenAI's API but not all
of it (imported only when such a model is built: it imports langchain-openai)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import LangSmithParams
from langchain_core.messages import AIMessage
from langchain_openai.chat_models.base import BaseChatOpenAI

__all__ = ["ChatOpenAICompatible"]


class ChatOpenAICompatible(BaseChatOpenAI):
    """``BaseChatOpenAI`` as LangChain's own partner packages use it (ChatDeepSeek, ChatXAI): unlike
    ``ChatOpenAI`` it sends ``max_tokens`` as is, the spelling OpenRouter, DeepSeek, Together, Fireworks,
    vLLM, LM Studio and llama.cpp's server all take (``max_completion_tokens`` is newer and not everywhere).
    """

    provider: str = "openai-compatible"  # named in traces and records

    @property
    def _llm_type(self) -> str:
        return "openai-compatible-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        return params

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """The request, with a final assistant message marked ``prefix: true`` when it asks for that (DeepSeek's
        prefix completion; coffee_nb continues a broken stream so with ``ModelSpec(prefill="prefix")``)."""
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        sent = payload.get("messages")
        if sent and sent[-1].get("role") == "assistant":
            last = self._convert_input(input_).to_messages()[-1]
            if isinstance(last, AIMessage) and last.additional_kwargs.get("prefix") is True:
                sent[-1]["prefix"] = True
        return payload
