"""The provider registry: ``Provider`` (a provider as data), ``register_provider``, spec parsing, and the
OpenAI-compatible builder most providers share. ``coffee_nb.invoke._models`` re-exports all of it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _config
from coffee_nb.errors._errors import ConfigError, ErrorClass
from coffee_nb.pricing._pricing import ModelFacts, prices_changed
from coffee_nb.providers import register_builtin
from coffee_nb.providers._base import Setting
from coffee_nb.providers._loops import AsyncClients
from coffee_nb.providers._params import Params

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "PREFILL_STYLES",
    "PROVIDERS",
    "BuildSettings",
    "Provider",
    "accepted",
    "async_clients_of",
    "build_openai_compatible",
    "parse_spec",
    "providers",
    "register_builtin_providers",
    "register_provider",
]

_NO_PARAMS = Params()
# How a server is asked to continue a final assistant message: as it is (Anthropic, Bedrock, llama.cpp),
# marked ``prefix: true`` (Mistral, DeepSeek's beta), or with vLLM's ``continue_final_message``.
PREFILL_STYLES = ("message", "prefix", "vllm")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """A provider, as data: how to build its chat model (``build(model, key, settings)``), what it needs
    from the environment, how its errors read, and what its models can do.

    ``model_info(model)`` (optional) gives the provider's own price and context window of a model
    (a ``ModelFacts``, or None when unknown), for providers that know their models better than
    genai-prices does; ``encoding`` (optional) names the tiktoken encoding its server counts tokens with.
    ``async_clients`` (optional) says how a user's instance of one of its ``classes`` gets a fresh async
    client on another event loop (see :class:`~coffee_nb.providers.AsyncClients`).
    """

    name: str
    env_var: str | None  # the API key variable (the first of ``key_vars``); None when no key is needed
    build: Callable[[str, str | None, BuildSettings], BaseChatModel]
    timeout_kwarg: bool = False  # accepts a per-call ``timeout=`` (Stainless SDKs do)
    model_info: Callable[[str], ModelFacts | None] | None = None
    encoding: str | None = None
    # continues a final assistant message (per model, if callable): True, or how it is asked for
    # ("prefix": the message is marked ``prefix: true``, Mistral/DeepSeek; "vllm": vLLM's continue_final_message)
    prefill: bool | str | Callable[[str], bool | str] = False
    finish_reason: bool = False  # streams end with a finish reason: one without it was cut off
    # takes images (per model, if callable; None: unknown here, LangChain's model profile may say)
    vision: bool | Callable[[str], bool | None] | None = None
    key_vars: tuple[str, ...] = ()  # the key's variables, first set wins (GOOGLE_API_KEY, GEMINI_API_KEY)
    key_params: tuple[str, ...] = ("api_key",)  # params that stand in for the key (Azure AD tokens)
    settings: tuple[Setting, ...] = ()  # needed besides the key (Azure's endpoint and API version)
    secret_vars: tuple[str, ...] = ()  # every variable holding a secret of this provider (never shown)
    errors: Mapping[str, ErrorClass | None] = field(default_factory=dict)  # its slice of the error table
    codes: Mapping[str, ErrorClass] = field(default_factory=dict)  # structured error codes (lower-case)
    params: Params = _NO_PARAMS  # how its chat model takes call parameters
    classes: tuple[str, ...] = ()  # chat model classes it builds: instances of them get its ``params``
    async_clients: AsyncClients | None = None  # how instances of ``classes`` get a fresh async client per loop
    model_param: str | None = None  # the param naming the underlying model (Azure: a deployment's model)
    extra: str | None = None  # the pip extra its builder needs
    needs: str | None = None  # the module its builder imports (is the extra installed?)
    examples: tuple[str, ...] = ()  # model names shown by %llm_models
    status: Callable[[], str] | None = None  # %llm_models' key column, for credentials found otherwise (AWS)

    def key_status(self, params: Mapping[str, Any] | None = None) -> str:
        """Whether the key and settings are there, naming variables, never values: ``"yes"``, ``"not
        needed"``, or ``"no (set GOOGLE_API_KEY or GEMINI_API_KEY)"``."""
        if self.status is not None:
            return self.status()
        params = params or {}
        missing = [" or ".join(s.env) or str(s.param) for s in self.settings if not s.given(params)]
        keys = self.key_vars or ((self.env_var,) if self.env_var else ())
        if keys and not any(p in params for p in self.key_params) and not any(os.environ.get(v) for v in keys):
            missing.insert(0, " or ".join(keys))
        if missing:
            return f"no (set {', '.join(missing)})"
        return "yes" if keys or self.settings else "not needed"


@dataclass(frozen=True, slots=True)
class BuildSettings:
    timeout: float
    params: Mapping[str, Any]  # user's extra constructor params (base_url, temperature, ...)
    loop: asyncio.AbstractEventLoop | None  # build for this event loop's pooled async client


def build_openai_compatible(
    model: str, key: str | None, settings: BuildSettings, *, base_url: str | None = None, cls: Any = None
) -> BaseChatModel:
    """A ``ChatOpenAI`` on coffee_nb's pooled HTTP clients, with retries off (one retry loop: ours).

    For OpenAI itself and any OpenAI-compatible server (``base_url``, e.g. the sandbox, vLLM, LM Studio);
    ``settings.params`` (the user's) win over ``base_url``. ``cls`` builds another ``BaseChatOpenAI``
    class the same way (``AzureChatOpenAI``, or one that keeps ``max_tokens`` for third-party servers).
    A refusal (``finish_reason: content_filter``) raises instead of passing for an answer.
    """
    from langchain_openai import ChatOpenAI  # lazy: langchain_openai

    from coffee_nb._shared import _http  # lazy: %load_ext path
    from coffee_nb.providers._guard import guarded  # lazy: langchain_core

    kwargs: dict[str, Any] = {
        "model": model,
        "api_key": key,
        "max_retries": 0,
        "timeout": settings.timeout,
        "stream_usage": True,
        "http_client": _http.get_http_client(),
    }
    if base_url is not None:
        kwargs["base_url"] = base_url
    kwargs.update(settings.params)
    if settings.loop is not None and "http_async_client" not in settings.params:
        kwargs["http_async_client"] = _http.get_async_http_client(settings.loop)
    model_cls: Any = cls or ChatOpenAI
    built: BaseChatModel = model_cls(**guarded(kwargs))
    return built


def register_builtin_providers() -> None:
    """The providers coffee_nb knows out of the box (``coffee_nb.providers``; the sandbox registers
    itself: ``coffee_nb.sandbox``)."""
    register_builtin()


# The registry itself lives in _config (reset with the rest of the global state); this is the same dict.
# Its default entries load on first use: read it through providers() here.
PROVIDERS: _config.Registry[Provider] = _config.PROVIDERS


def providers() -> dict[str, Provider]:
    """The registry, its default entries loaded."""
    return PROVIDERS.ready()


def async_clients_of(model: Any) -> AsyncClients | None:
    """The :class:`AsyncClients` a provider declares for ``model``'s class (or a base class of it)."""
    names = {cls.__name__ for cls in type(model).__mro__}
    return next(
        (p.async_clients for p in providers().values() if p.async_clients is not None and names & set(p.classes)),
        None,
    )


_PROVIDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_ERROR_KEY = re.compile(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*")


def register_provider(
    name: str,
    build: Callable[[str, str | None, BuildSettings], BaseChatModel],
    *,
    env_var: str | Sequence[str] | None = None,
    timeout_kwarg: bool = False,
    model_info: Callable[[str], ModelFacts | None] | None = None,
    encoding: str | None = None,
    prefill: bool | str | Callable[[str], bool | str] = False,
    finish_reason: bool = False,
    vision: bool | Callable[[str], bool | None] | None = None,
    settings: Sequence[Setting] = (),
    key_params: Sequence[str] = ("api_key",),
    secret_vars: Sequence[str] = (),
    errors: Mapping[str, ErrorClass | None] | None = None,
    codes: Mapping[str, ErrorClass] | None = None,
    params: Params | None = None,
    classes: Sequence[str] = (),
    async_clients: AsyncClients | None = None,
    model_param: str | None = None,
    extra: str | None = None,
    needs: str | None = None,
    examples: Sequence[str] = (),
    status: Callable[[], str] | None = None,
) -> None:
    """Teach spec strings a new provider: ``build(model, api_key, settings)`` returns a chat model.

    ``env_var`` names the API key variable (or alternatives, first set wins; ``key_params`` are the params
    that stand in for it); ``settings`` what it needs besides (each a :class:`Setting`: variables or a
    param). ``model_info(model)`` may give the provider's
    own prices and context windows (see ``Provider``); ``encoding`` names the tiktoken encoding its
    server counts with, making token counts exact; ``prefill`` says its models continue a final assistant
    message (used to resume broken streams; a callable decides per model; ``"prefix"`` or ``"vllm"`` say how
    the server is asked to, see :class:`~coffee_nb.ModelSpec`); ``finish_reason`` that its
    streams always end with a finish reason (so one without it was cut off). ``errors`` maps its SDK's
    exception classes (``"package.ClassName"``) to an ``ErrorClass`` (None: by HTTP status), ``codes``
    its structured error codes; ``params`` says how its model takes call parameters (:class:`Params`).
    ``vision`` says whether its models take images (a callable decides per model; None: unknown, then
    LangChain's model profile of the built model decides, else the model is tried).
    ``async_clients`` how a user's own instance of one of its ``classes`` is copied with a fresh async
    client for another event loop (:class:`AsyncClients`; without it such instances are used as they are).
    """
    if not isinstance(name, str) or not _PROVIDER_NAME.fullmatch(name):
        raise ConfigError(f"provider name must be a simple name (letters, digits, '_', '-'), got {name!r}")
    if not callable(build):
        raise ConfigError(f"build for provider {name!r} must be callable (model, api_key, settings), got {build!r}")
    if model_info is not None and not callable(model_info):
        raise ConfigError(f"model_info for provider {name!r} must be callable (model) or None, got {model_info!r}")
    if encoding is not None and not isinstance(encoding, str):
        raise ConfigError(
            f"encoding for provider {name!r} must be an encoding name like 'o200k_base', got {encoding!r}"
        )
    key_vars = (env_var,) if isinstance(env_var, str) else tuple(env_var or ())
    if not all(isinstance(v, str) and v for v in key_vars):
        raise ConfigError(f"env_var for provider {name!r} must be a variable name or a list of them, got {env_var!r}")
    if not all(isinstance(s, Setting) for s in settings):
        raise ConfigError(f"settings for provider {name!r} must be Setting(env, param, what) items, got {settings!r}")
    for key, value in (errors or {}).items():
        if (
            not isinstance(key, str)
            or not _ERROR_KEY.fullmatch(key)
            or not (value is None or isinstance(value, ErrorClass))
        ):
            raise ConfigError(
                f"errors for provider {name!r} map 'package.ClassName' to an ErrorClass or None, got {key!r}: {value!r}"
            )
    if not all(isinstance(k, str) and isinstance(v, ErrorClass) for k, v in (codes or {}).items()):
        raise ConfigError(f"codes for provider {name!r} map error codes to an ErrorClass, got {codes!r}")
    if params is not None and not isinstance(params, Params):
        raise ConfigError(f"params for provider {name!r} must be a Params(...), got {params!r}")
    if async_clients is not None and not isinstance(async_clients, AsyncClients):
        raise ConfigError(
            f"async_clients for provider {name!r} must be an AsyncClients(held_by=, theirs=, renew=), "
            f"got {async_clients!r}"
        )
    if isinstance(prefill, str) and prefill not in PREFILL_STYLES:
        raise ConfigError(
            f"prefill for provider {name!r} must be True/False or one of {PREFILL_STYLES}, got {prefill!r}"
        )
    registry = providers()
    registry[name] = Provider(
        name=name,
        env_var=key_vars[0] if key_vars else None,
        build=build,
        timeout_kwarg=bool(timeout_kwarg),
        model_info=model_info,
        encoding=encoding,
        prefill=prefill if callable(prefill) or isinstance(prefill, str) else bool(prefill),
        finish_reason=bool(finish_reason),
        vision=vision if vision is None or callable(vision) else bool(vision),
        key_vars=key_vars,
        settings=tuple(settings),
        key_params=tuple(key_params),
        secret_vars=tuple(dict.fromkeys([*key_vars, *secret_vars])),
        errors=dict(errors or {}),
        codes={k.lower(): v for k, v in (codes or {}).items()},
        params=params or _NO_PARAMS,
        classes=tuple(classes),
        async_clients=async_clients,
        model_param=model_param,
        extra=extra,
        needs=needs,
        examples=tuple(examples),
        status=status,
    )
    prices_changed()  # resolved facts of this provider's models may differ now (and the error table reads it)


def accepted() -> str:
    """The accepted spec forms, for messages: ``'openai/<model>', 'google/<model>', ...``."""
    return ", ".join(f"'{p}/<model>'" for p in providers())


# a bare model name's likely provider, for the hint in a malformed spec
_GUESSES = (
    ("claude", "anthropic"),
    ("gemini", "google"),
    ("mistral", "mistral"),
    ("grok", "xai"),
    ("deepseek", "deepseek"),
    ("llama", "ollama"),
)


def resolve(spec: object) -> object:
    """The spec an alias names (``fast`` → ``openai/gpt-4o-mini``, see ``_aliases``); anything else unchanged.
    Readers take no lock."""
    if isinstance(spec, str):
        target = _config.ALIASES.names.get(spec.strip())
        if target is not None:
            return target
    return spec


def parse_spec(spec: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``; a bad spec is a ConfigError."""
    if not isinstance(spec, str):
        raise ConfigError(f"a model must be a 'provider/model' string or a chat model, got {spec!r}")
    spec = str(resolve(spec))  # an alias ("fast") stands for the spec it names
    provider, sep, model = spec.strip().partition("/")
    if not sep or not provider or not model or any(c.isspace() for c in spec.strip()):
        hint = ""
        if not sep and spec.strip():
            low = spec.strip().lower()
            guess = next((p for prefix, p in _GUESSES if low.startswith(prefix)), "openai")
            hint = f" Did you mean '{guess}/{spec.strip()}'?"
        raise ConfigError(f"malformed model spec {spec!r}: expected 'provider/model', one of {accepted()}.{hint}")
    if provider not in providers():
        raise ConfigError(f"unknown provider {provider!r} in {spec!r}: expected one of {accepted()}")
    return provider, model
