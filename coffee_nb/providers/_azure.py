"""Azure OpenAI: AzureChatOpenAI on the pooled clients; the spec names the deployment.

``ModelSpec("azure/my-deployment", params={"model": "gpt-4o-mini"})`` says which model a deployment
runs, for prices, windows and token counts (a deployment named after its model needs nothing).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from coffee_nb.providers._base import Setting
from coffee_nb.providers._openai import ASYNC_CLIENTS, PARAMS, REASONING
from coffee_nb.providers._registry import BuildSettings, build_openai_compatible, register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["register"]

# AzureChatOpenAI sends max_tokens as given (ChatOpenAI renames it); Azure's o-series deployments refuse
# it for max_completion_tokens. The rules go by the deployment's model (``model_param``).
AZURE_PARAMS = replace(PARAMS, max_tokens_for=((REASONING, "max_completion_tokens"),))
SETTINGS = (
    Setting(("AZURE_OPENAI_ENDPOINT",), "azure_endpoint", "an endpoint (https://NAME.openai.azure.com)"),
    Setting(("OPENAI_API_VERSION",), "api_version", "an API version (e.g. 2024-10-21)"),
)


def _build(deployment: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    from langchain_openai import AzureChatOpenAI  # lazy: langchain_openai

    params = {"azure_deployment": deployment, **s.params}
    return build_openai_compatible(deployment, key, BuildSettings(s.timeout, params, s.loop), cls=AzureChatOpenAI)


def register() -> None:
    register_provider(
        "azure",
        _build,
        env_var="AZURE_OPENAI_API_KEY",
        settings=SETTINGS,
        key_params=("api_key", "azure_ad_token", "azure_ad_token_provider"),
        timeout_kwarg=True,
        finish_reason=True,
        params=AZURE_PARAMS,
        classes=("AzureChatOpenAI",),
        async_clients=ASYNC_CLIENTS,  # AsyncAzureOpenAI.copy keeps the endpoint, version and AD token
        model_param="model",
        needs="langchain_openai",
        examples=("gpt-4o-mini", "gpt-4.1-mini"),
    )
