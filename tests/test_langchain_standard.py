"""langchain-tests' standard unit suite for AutoPicker."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from coffee_nb import AutoPicker


class TestAutoPickerStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[AutoPicker]:
        return AutoPicker

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-3-5-haiku-latest"]}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # AutoPicker spans several providers, so it takes no single api_key: each provider's key comes
        # from its own environment variable. Everything else is the standard set.
        params = super().standard_chat_model_params
        params.pop("api_key")
        return params

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENAI_API_KEY": "sk-from-env-0000000000"},
            {"model": "openai/gpt-4o-mini"},
            {"model_names": ["openai/gpt-4o-mini"]},
        )
