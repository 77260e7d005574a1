"""The providers coffee_nb knows out of the box, one small module per provider or family.

Each module registers its provider through the same public hook as anyone's
(:func:`coffee_nb.register_provider`): a builder, the variables it reads, its slice of the error table
and its capabilities. Nothing here imports an SDK: builders import theirs when a model is first built.
:class:`Params` (how a model takes call parameters), :class:`Setting` (what it needs besides a key) and
:class:`AsyncClients` (how a user's own instance gets a fresh async client on another event loop) are the
data a provider of your own can declare too.

========================  ====================================================  ==========================
spec                      key / settings                                        extra
========================  ====================================================  ==========================
``openai/<model>``        OPENAI_API_KEY                                        (core)
``anthropic/<model>``     ANTHROPIC_API_KEY                                     ``anthropic``
``ollama/<model>``        OLLAMA_HOST (optional)                                ``ollama``
``google/<model>``        GOOGLE_API_KEY or GEMINI_API_KEY                      ``google``
``azure/<deployment>``    AZURE_OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT,          (core)
                          OPENAI_API_VERSION
``bedrock/<model-id>``    the AWS credential chain and region                   ``bedrock``
``mistral/<model>``       MISTRAL_API_KEY                                       ``mistral``
``groq/<model>``          GROQ_API_KEY                                          ``groq``
``openrouter/<v/model>``  OPENROUTER_API_KEY                                    (core)
``deepseek/<model>``      DEEPSEEK_API_KEY                                      (core)
``xai/<model>``           XAI_API_KEY                                           (core)
``together/<model>``      TOGETHER_API_KEY                                      (core)
``fireworks/<model>``     FIREWORKS_API_KEY                                     (core)
``openai-compatible/<m>`` base_url or COFFEE_NB_OPENAI_COMPATIBLE_BASE_URL       (core)
========================  ====================================================  ==========================
"""

from __future__ import annotations

import importlib

from coffee_nb.providers._base import Setting
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params

__all__ = ["AsyncClients", "Params", "Setting", "register_builtin"]

_MODULES = ("_openai", "_anthropic", "_ollama", "_google", "_azure", "_bedrock", "_mistral", "_groq", "_compatible")


def register_builtin() -> None:
    """Register every built-in provider (a default loader of the provider registry)."""
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}").register()
