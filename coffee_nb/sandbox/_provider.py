"""The sandbox as a provider, registered through the same public hook as any other.

``coffee_nb._shared._config`` lists :func:`register` among the provider registry's default loaders, so it runs
the first time any spec is resolved (never at ``import coffee_nb``), and again after a reset. The
sandbox's prices and context windows are not registered model by model: the catalog is the one source
(``add_model`` may add or replace models at any time, and ``reset_prices()`` must not lose them), so the
provider hands coffee_nb a resolver over the catalog instead; a user's ``register_price("sandbox/...")``
still wins over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffee_nb.pricing._pricing import ModelFacts, Price
from coffee_nb.providers._registry import BuildSettings, build_openai_compatible, register_provider
from coffee_nb.sandbox._catalog import ENCODING, get_model
from coffee_nb.sandbox._running import server

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["build_chat_model", "model_info", "register"]

_NO_KEY = "sandbox-no-key-needed"  # the OpenAI client insists on some key


def register() -> None:
    """Register the ``sandbox`` provider (a default entry of the provider registry)."""
    register_provider(
        "sandbox",
        _build,
        timeout_kwarg=True,
        model_info=model_info,
        encoding=ENCODING,
        prefill=True,
        finish_reason=True,
        vision=vision,
    )


def build_chat_model(model: str, settings: BuildSettings) -> BaseChatModel:
    """A real ChatOpenAI pointed at this process's sandbox (started on first use), on pooled HTTP clients."""
    return build_openai_compatible(model, _NO_KEY, settings, base_url=server().url)


def _build(model: str, key: str | None, settings: BuildSettings) -> BaseChatModel:
    return build_chat_model(model, settings)


def vision(model: str) -> bool | None:
    """Whether a served model takes images (``sandbox/vision`` does; the others answer an image with a 400)."""
    m = get_model(model)
    return None if m is None else m.vision


def model_info(model: str) -> ModelFacts | None:
    """Sandbox prices (labelled ``"sandbox"`` wherever shown) and window of a served model; None if unknown."""
    m = get_model(model)
    if m is None:
        return None
    return ModelFacts(Price(m.input_price, m.output_price, m.cached_input_price, source="sandbox"), m.context_window)
