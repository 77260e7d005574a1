"""Model specs (``"provider/model"``) and the candidates AutoPicker tries.

Spec strings build real LangChain clients lazily, on the first attempt: a missing API key is an
error of that attempt (so the chain can fall back past it), never of construction.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb import _config
from coffee_nb._errors import ConfigError, MissingAPIKeyError, remember_secret
from coffee_nb._health import RecentAttempts
from coffee_nb._policy import CircuitBreaker, RateLimit, RateLimiter
from coffee_nb._pricing import ModelFacts, Price, generation, model_info, prices_changed
from coffee_nb._tokens import encoding_for
from coffee_nb._validate import optional_positive_int

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "PROVIDERS",
    "BuildSettings",
    "Candidate",
    "ModelSpec",
    "Provider",
    "build_openai_compatible",
    "parse_spec",
    "register_provider",
]


@dataclass(frozen=True, slots=True)
class Provider:
    """How to build a chat model for a provider. ``build(model, key, settings)`` returns a BaseChatModel.

    ``model_info(model)`` (optional) gives the provider's own price and context window of a model
    (a ``ModelFacts``, or None when unknown), for providers that know their models better than
    genai-prices does; ``encoding`` (optional) names the tiktoken encoding its server counts tokens with.
    """

    name: str
    env_var: str | None  # API key variable; None when no key is needed
    build: Callable[[str, str | None, BuildSettings], BaseChatModel]
    timeout_kwarg: bool = False  # accepts a per-call ``timeout=`` (Stainless SDKs do)
    model_info: Callable[[str], ModelFacts | None] | None = None
    encoding: str | None = None
    prefill: bool = False  # continues a final assistant message (stream recovery can "continue" on it)
    finish_reason: bool = False  # streams end with a finish reason: one without it was cut off


@dataclass(frozen=True, slots=True)
class BuildSettings:
    timeout: float
    params: Mapping[str, Any]  # user's extra constructor params (base_url, temperature, ...)
    loop: asyncio.AbstractEventLoop | None  # build for this event loop's pooled async client


def build_openai_compatible(
    model: str, key: str | None, settings: BuildSettings, *, base_url: str | None = None
) -> BaseChatModel:
    """A ``ChatOpenAI`` on coffee_nb's pooled HTTP clients, with retries off (one retry loop: ours).

    For OpenAI itself and any OpenAI-compatible server (``base_url``, e.g. the sandbox, vLLM, LM Studio);
    ``settings.params`` (the user's) win over ``base_url``.
    """
    from langchain_openai import ChatOpenAI

    from coffee_nb import _http

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
    if settings.loop is not None:
        kwargs["http_async_client"] = _http.get_async_http_client(settings.loop)
    return ChatOpenAI(**kwargs)


def _build_openai(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    return build_openai_compatible(model, key, s)


def _build_anthropic(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_anthropic import ChatAnthropic
    except ImportError as exc:  # an optional extra
        raise ImportError("anthropic models need the anthropic extra: pip install 'coffee_nb[anthropic]'") from exc
    kwargs: dict[str, Any] = {"model": model, "api_key": key, "max_retries": 0, "timeout": s.timeout, **s.params}
    return ChatAnthropic(**kwargs)  # by alias names, which its stubs don't list


def _build_ollama(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError as exc:
        raise ImportError("ollama models need the ollama extra: pip install 'coffee_nb[ollama]'") from exc
    params = dict(s.params)
    params.setdefault("base_url", os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))
    params.setdefault("client_kwargs", {"timeout": s.timeout})
    return ChatOllama(model=model, **params)


def _ollama_info(model: str) -> ModelFacts:
    # runs on the user's machine: no API fee, and labelled so
    return ModelFacts(_LOCAL_PRICE, None)


_LOCAL_PRICE = Price(Decimal(0), Decimal(0), source="local")


def register_builtin_providers() -> None:
    """The providers coffee_nb knows out of the box (the sandbox registers itself: coffee_nb.sandbox)."""
    register_provider("openai", _build_openai, env_var="OPENAI_API_KEY", timeout_kwarg=True, finish_reason=True)
    register_provider("anthropic", _build_anthropic, env_var="ANTHROPIC_API_KEY", prefill=True, finish_reason=True)
    register_provider("ollama", _build_ollama, model_info=_ollama_info, finish_reason=True)


# The registry itself lives in _config (reset with the rest of the global state); this is the same dict.
# Its default entries load on first use: read it through _providers() here.
PROVIDERS: dict[str, Provider] = _config.PROVIDERS


def _providers() -> dict[str, Provider]:
    return _config.PROVIDERS.ready()


def register_provider(
    name: str,
    build: Callable[[str, str | None, BuildSettings], BaseChatModel],
    *,
    env_var: str | None = None,
    timeout_kwarg: bool = False,
    model_info: Callable[[str], ModelFacts | None] | None = None,
    encoding: str | None = None,
    prefill: bool = False,
    finish_reason: bool = False,
) -> None:
    """Teach spec strings a new provider: ``build(model, api_key, settings)`` returns a chat model.

    ``model_info(model)`` may give the provider's own prices and context windows (see ``Provider``);
    ``encoding`` names the tiktoken encoding its server counts with, making token counts exact;
    ``prefill`` says its models continue a final assistant message (used to resume broken streams);
    ``finish_reason`` that its streams always end with a finish reason (so one without it was cut off).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"provider name must be a simple identifier, got {name!r}")
    if not callable(build):
        raise ConfigError(f"build for provider {name!r} must be callable (model, api_key, settings), got {build!r}")
    if model_info is not None and not callable(model_info):
        raise ConfigError(f"model_info for provider {name!r} must be callable (model) or None, got {model_info!r}")
    if encoding is not None and not isinstance(encoding, str):
        raise ConfigError(
            f"encoding for provider {name!r} must be an encoding name like 'o200k_base', got {encoding!r}"
        )
    registry = _providers()
    registry[name] = Provider(
        name, env_var, build, timeout_kwarg, model_info, encoding, bool(prefill), bool(finish_reason)
    )
    prices_changed()  # resolved facts of this provider's models may differ now


def _accepted() -> str:
    return ", ".join(f"'{p}/<model>'" for p in _providers())


def parse_spec(spec: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``; a bad spec is a ConfigError."""
    if not isinstance(spec, str):
        raise ConfigError(f"a model must be a 'provider/model' string or a chat model, got {spec!r}")
    provider, sep, model = spec.strip().partition("/")
    if not sep or not provider or not model or any(c.isspace() for c in spec.strip()):
        hint = ""
        if not sep and spec.strip():
            guess = "anthropic" if spec.startswith("claude") else "openai"
            hint = f" Did you mean '{guess}/{spec.strip()}'?"
        raise ConfigError(f"malformed model spec {spec!r}: expected 'provider/model', one of {_accepted()}.{hint}")
    if provider not in _providers():
        raise ConfigError(f"unknown provider {provider!r} in {spec!r}: expected one of {_accepted()}")
    return provider, model


# Parameter names that hold a secret (``api_key``, ``openai_api_key``, ``aws_secret_access_key``, ...):
# kept as pydantic ``SecretStr`` (LangChain's chat models take those) so reprs and dumps show stars.
_SECRET_PARAM = re.compile(r"(^|_)(api_?key|key|secret|token|password|passwd)$", re.IGNORECASE)
# Header names (in ``default_headers`` and the like) that carry a key: remembered for redaction.
_SECRET_HEADER = re.compile(r"^(authorization|x-api-key|api-key|x-goog-api-key|proxy-authorization)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ModelSpec:
    """A candidate model with its own settings, checked when made.

    ``model`` is a spec string or any LangChain chat model; ``name`` labels it in records.
    ``params`` go to the constructor of a model built from a spec (e.g. ``base_url``); secret ones
    (``api_key``, ``*_token``, ...) are kept as ``SecretStr``, so they never print.
    """

    model: Any
    name: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            parse_spec(self.model)
        elif not hasattr(self.model, "invoke"):
            raise ConfigError(
                f"a model must be a 'provider/model' string ({_accepted()}) or a LangChain chat model, "
                f"got {self.model!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError(f"ModelSpec name must be a non-empty string or None, got {self.name!r}")
        label = self.name or (self.model if isinstance(self.model, str) else type(self.model).__name__)
        for attr in ("context_window", "max_output_tokens", "rpm", "tpm"):
            optional_positive_int(f"{attr} for {label}", getattr(self, attr))
        object.__setattr__(self, "params", _params(self.params, label))

    def __repr__(self) -> str:
        params = {k: ("**********" if _SECRET_HEADER.match(str(k)) else v) for k, v in self.params.items()}
        for k, v in params.items():
            if isinstance(v, Mapping):  # headers: keys hidden, other values shown
                params[k] = {h: ("**********" if _SECRET_HEADER.match(str(h)) else x) for h, x in v.items()}
        fields = [f"model={self.model!r}"] + [
            f"{n}={getattr(self, n)!r}"
            for n in ("name", "rpm", "tpm", "context_window", "max_output_tokens")
            if getattr(self, n) is not None
        ]
        if params:
            fields.append(f"params={params!r}")
        return f"ModelSpec({', '.join(fields)})"


def _params(params: Any, label: str) -> Mapping[str, Any]:
    """``params`` checked (a mapping with string keys), its secrets as ``SecretStr`` and remembered for
    redaction (also those in header mappings, which are sent as they are)."""
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ConfigError(
            f"params for {label} must be a dict of constructor arguments with string keys, "
            f"e.g. {{'base_url': 'http://127.0.0.1:8000/v1'}}; got {params!r}"
        )
    from pydantic import SecretStr

    out: dict[str, Any] = {}
    for key, value in params.items():
        if _SECRET_PARAM.search(key) and isinstance(value, str):
            value = SecretStr(value)
        if isinstance(value, SecretStr):
            remember_secret(value)
        elif isinstance(value, Mapping):
            for header, text in value.items():
                if isinstance(header, str) and _SECRET_HEADER.match(header):
                    remember_secret(text.split(" ", 1)[-1] if isinstance(text, str) else text)
        out[key] = value
    return out  # a dict: pydantic can dump it (SecretStr as stars)


def _instance_name(model: Any) -> tuple[str, str]:
    """(provider, model name) for a chat model instance."""
    try:
        ls = model._get_ls_params()
        provider = str(ls.get("ls_provider") or "")
        name = str(ls.get("ls_model_name") or "")
    except Exception:  # noqa: BLE001 - any chat model goes; naming must not fail
        provider, name = "", ""
    for attr in ("model_name", "model", "model_id"):
        if not name:
            value = getattr(model, attr, None)
            name = value if isinstance(value, str) else ""
    provider = provider or type(model).__name__
    return provider, name or type(model).__name__


# Chat model classes (by name, so nothing is imported) whose instances take a per-call ``timeout=``,
# and those that continue a final assistant message.
_TIMEOUT_KWARG_CLASSES = frozenset({"ChatOpenAI", "AzureChatOpenAI", "BaseChatOpenAI", "ChatAnthropic"})
_PREFILL_CLASSES = frozenset({"ChatAnthropic", "ChatAnthropicVertex"})
_FINISH_REASON_CLASSES = frozenset({"ChatOpenAI", "AzureChatOpenAI", "ChatAnthropic", "ChatOllama"})
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict", "max_new_tokens")
_REASONING_NAMES = re.compile(r"(^|/)(o\d|gpt-5|deepseek-r|deepseek-reasoner|qwq|.*-thinking|.*reason)", re.IGNORECASE)


class Candidate:
    """One model in the chain, with its breaker, rate limiter and lazily built client."""

    def __init__(
        self,
        item: Any,
        *,
        cooldown_after: int,
        cooldown: float,
        cooldown_min: float | None = None,
        client_timeout: float = 60.0,
    ) -> None:
        spec = item if isinstance(item, ModelSpec) else ModelSpec(model=item)
        self.instance: BaseChatModel | None = None
        self.params = dict(spec.params)
        if isinstance(spec.model, str):
            self.provider, self.model = parse_spec(spec.model)
            self.name = spec.name or f"{self.provider}/{self.model}"
            self._provider: Provider | None = _providers()[self.provider]
        elif hasattr(spec.model, "invoke"):
            self.instance = spec.model
            self.provider, self.model = _instance_name(spec.model)
            self.name = spec.name or f"{self.provider}/{self.model}"
            self._provider = None
        else:
            raise ConfigError(
                f"a model must be a 'provider/model' string ({_accepted()}) or a LangChain chat model, "
                f"got {spec.model!r}"
            )
        # ModelSpec validated its numbers when it was made
        self.limiter = RateLimiter(RateLimit(rpm=spec.rpm, tpm=spec.tpm)) if (spec.rpm or spec.tpm) else None
        self.recent = RecentAttempts()  # what health() reports
        self.breaker = CircuitBreaker(cooldown_after, cooldown, cooldown if cooldown_min is None else cooldown_min)
        self.client_timeout = client_timeout  # what clients we build are built with (a cache key, not per attempt)
        self._window = spec.context_window
        self._facts: tuple[int, ModelFacts, int | None] | None = None
        self.encoding, self.exact_tokens = encoding_for(self.provider, self.model)
        self.max_output_tokens = spec.max_output_tokens
        # worst-case output when a call gives no max_tokens: the spec's, the instance's own setting
        # (max_tokens / max_completion_tokens / num_predict ..., also when bound), else the model profile's
        self.output_cap: int | None = (
            spec.max_output_tokens
            or _instance_max_tokens(self.instance)
            or _positive_int(spec.params.get("max_tokens"))
            or self._profile("max_output_tokens")
        )
        self.reasoning = bool(self._profile_flag("reasoning_output") or _REASONING_NAMES.search(self.model))
        cls = type(self.instance).__name__ if self.instance is not None else ""
        self.prefill = cls in _PREFILL_CLASSES if self._provider is None else self._provider.prefill
        self._own_timeout = _own_timeout(self.instance)  # read once: settings of a client rarely change
        self.reports_finish = cls in _FINISH_REASON_CLASSES if self._provider is None else self._provider.finish_reason
        # does a call bound its own time? (a per-call timeout we pass, or the client's own, short enough)
        self.timeout_kwarg = cls in _TIMEOUT_KWARG_CLASSES if self._provider is None else self._provider.timeout_kwarg
        self._lock = threading.Lock()
        self._sync: tuple[Any, BaseChatModel] | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BaseChatModel] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"Candidate({self.name!r})"

    def bounds_itself(self, seconds: float) -> bool:
        """Will a call of this model end by itself within ``seconds`` (so no watchdog is needed)?"""
        if self.timeout_kwarg:
            return True
        own = self._own_timeout
        return own is not None and own <= seconds

    def _profile_flag(self, key: str) -> bool:
        profile = getattr(self.instance, "profile", None) if self.instance is not None else None
        return bool(profile.get(key)) if isinstance(profile, Mapping) else False

    @property
    def facts(self) -> ModelFacts:
        """Price and context window, resolved once (again after ``register_price``)."""
        cached = self._facts
        if cached is not None and cached[0] == generation():
            return cached[1]
        return self._resolve()[1]

    @property
    def context_window(self) -> int | None:
        cached = self._facts
        if cached is not None and cached[0] == generation():
            return cached[2]
        return self._resolve()[2]

    def _resolve(self) -> tuple[int, ModelFacts, int | None]:
        gen = generation()
        facts = model_info(self.provider, self.model, name=self.name)
        window = self._window or facts.context_window or self._profile("max_input_tokens")
        self._facts = (gen, facts, window)
        return self._facts

    def _profile(self, key: str) -> int | None:
        """A positive integer from the instance's LangChain model profile, if it has one."""
        profile = getattr(self.instance, "profile", None) if self.instance is not None else None
        value = profile.get(key) if isinstance(profile, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def api_key(self) -> str | None:
        provider = self._provider
        if provider is None or provider.env_var is None:
            return None
        if "api_key" in self.params:
            return None  # given explicitly in params
        key = os.environ.get(provider.env_var)
        if not key:
            raise MissingAPIKeyError(self.provider, provider.env_var)
        return key

    def chat_model(self, *, loop: asyncio.AbstractEventLoop | None = None) -> BaseChatModel:
        """The model to call: the user's instance, or one built from the spec (per event loop for async).

        Built clients get ``client_timeout`` (the policy's attempt timeout): the same for every attempt,
        so the cached client stays right; each attempt's own, shorter limit is enforced by the runner.
        """
        timeout = self.client_timeout
        if self.instance is not None:
            return self.instance
        assert self._provider is not None
        from coffee_nb import _http

        if loop is None:
            pooled = _http.get_http_client() if self._provider.timeout_kwarg else None
            cached = self._sync
            if cached is not None and cached[0] is pooled:
                return cached[1]
            key = self.api_key()
            with self._lock:
                cached = self._sync
                if cached is not None and cached[0] is pooled:  # another thread built it meanwhile
                    return cached[1]
                model = self._provider.build(self.model, key, BuildSettings(timeout, self.params, None))
                self._sync = (pooled, model)
            return model
        found = self._async.get(loop)
        if found is not None and not _closed_async(found):
            return found
        key = self.api_key()
        with self._lock:
            found = self._async.get(loop)
            if found is None or _closed_async(found):
                found = self._provider.build(self.model, key, BuildSettings(timeout, self.params, loop))
                self._async[loop] = found
        return found


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _instance_max_tokens(instance: Any) -> int | None:
    """The output cap a chat model instance (or a ``.bind(max_tokens=...)`` of one) sets for itself."""
    if instance is None:
        return None
    bound = getattr(instance, "kwargs", None)  # RunnableBinding
    for source in (bound if isinstance(bound, Mapping) else {}, instance):
        for name in _MAX_TOKEN_FIELDS:
            value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
            found = _positive_int(value)
            if found is not None:
                return found
    inner = getattr(instance, "bound", None)
    return _instance_max_tokens(inner) if inner is not None and inner is not instance else None


def _own_timeout(instance: Any) -> float | None:
    """The longest a call of ``instance`` can take by its own settings (its timeout × tries), if it says."""
    if instance is None:
        return None
    for name in ("request_timeout", "timeout", "default_request_timeout"):
        value = getattr(instance, name, None)
        read = getattr(value, "read", None)  # an httpx.Timeout
        seconds = read if isinstance(read, (int, float)) else value
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            retries = getattr(instance, "max_retries", 0)
            tries = 1 + (retries if isinstance(retries, int) and retries > 0 else 0)
            return float(seconds) * tries
    return None


def _closed_async(model: Any) -> bool:
    client = getattr(model, "http_async_client", None)
    return bool(getattr(client, "is_closed", False))
