"""Model specs (``"provider/model"``) and the candidates AutoPicker tries.

Spec strings build real LangChain clients lazily, on the first attempt: a missing API key is an
error of that attempt (so the chain can fall back past it), never of construction. The providers
themselves are data (``Provider``), registered through :func:`register_provider` (the registry lives in
``coffee_nb.providers._registry``, re-exported here); the built-in ones live in ``coffee_nb.providers``,
one small module each.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coffee_nb._errors import ConfigError, MissingAPIKeyError, remember_secret
from coffee_nb._health import RecentAttempts
from coffee_nb._policy import CircuitBreaker, RateLimit, RateLimiter
from coffee_nb._pricing import ModelFacts, generation, model_info
from coffee_nb._tokens import encoding_for
from coffee_nb._validate import optional_positive_int
from coffee_nb.providers._base import MissingSettingError, Setting
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import (
    PROVIDERS,
    BuildSettings,
    Provider,
    accepted,
    build_openai_compatible,
    parse_spec,
    providers,
    register_builtin_providers,
    register_provider,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "PROVIDERS",
    "BuildSettings",
    "Candidate",
    "ModelSpec",
    "Params",
    "Provider",
    "Setting",
    "build_openai_compatible",
    "parse_spec",
    "register_builtin_providers",
    "register_provider",
]

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
                f"a model must be a 'provider/model' string ({accepted()}) or a LangChain chat model, "
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
            self._provider: Provider | None = providers()[self.provider]
        elif hasattr(spec.model, "invoke"):
            self.instance = spec.model
            self.provider, self.model = _instance_name(spec.model)
            self.name = spec.name or f"{self.provider}/{self.model}"
            self._provider = None
        else:
            raise ConfigError(
                f"a model must be a 'provider/model' string ({accepted()}) or a LangChain chat model, "
                f"got {spec.model!r}"
            )
        # the model name prices, windows and token counts go by (Azure: the deployment's model, if given)
        model_param = self._provider.model_param if self._provider is not None else None
        self.catalog_model = str(self.params.get(model_param) or self.model) if model_param else self.model
        # how this model takes call parameters (by class for a user's instance of a known chat model)
        self._params = self._provider.params if self._provider is not None else _instance_params(self.instance)
        # ModelSpec validated its numbers when it was made
        self.limiter = RateLimiter(RateLimit(rpm=spec.rpm, tpm=spec.tpm)) if (spec.rpm or spec.tpm) else None
        self.recent = RecentAttempts()  # what health() reports
        self.breaker = CircuitBreaker(cooldown_after, cooldown, cooldown if cooldown_min is None else cooldown_min)
        self.client_timeout = client_timeout  # what clients we build are built with (a cache key, not per attempt)
        self._window = spec.context_window
        self._facts: tuple[int, ModelFacts, int | None] | None = None
        self.encoding, self.exact_tokens = encoding_for(self.provider, self.catalog_model)
        self.max_output_tokens = spec.max_output_tokens
        # worst-case output when a call gives no max_tokens: the spec's, the instance's own setting
        # (max_tokens / max_completion_tokens / num_predict ..., also when bound), else the model profile's
        self.output_cap: int | None = (
            spec.max_output_tokens
            or _instance_max_tokens(self.instance)
            or next((n for f in _MAX_TOKEN_FIELDS if (n := _positive_int(spec.params.get(f)))), None)
            or self._profile("max_output_tokens")
        )
        self.reasoning = bool(self._profile_flag("reasoning_output") or _REASONING_NAMES.search(self.catalog_model))
        cls = type(self.instance).__name__ if self.instance is not None else ""
        if self._provider is None:
            self.prefill = cls in _PREFILL_CLASSES
        else:
            prefill = self._provider.prefill
            self.prefill = bool(prefill(self.catalog_model)) if callable(prefill) else prefill
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
        facts = model_info(self.provider, self.catalog_model, name=self.name)
        window = self._window or facts.context_window or self._profile("max_input_tokens")
        self._facts = (gen, facts, window)
        return self._facts

    def _profile(self, key: str) -> int | None:
        """A positive integer from the instance's LangChain model profile, if it has one."""
        profile = getattr(self.instance, "profile", None) if self.instance is not None else None
        value = profile.get(key) if isinstance(profile, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def api_key(self) -> str | None:
        """The key from the environment (None when none is needed or ``params`` give one); a missing key
        or setting raises :class:`MissingAPIKeyError`, naming the variables: an error of this attempt."""
        provider = self._provider
        if provider is None:
            return None
        key: str | None = None
        if provider.env_var is not None and not any(p in self.params for p in provider.key_params):
            keys = provider.key_vars or (provider.env_var,)
            key = next((value for var in keys if (value := os.environ.get(var))), None)
            if not key:
                raise MissingAPIKeyError(self.provider, " or ".join(keys))
        for setting in provider.settings:
            if not setting.given(self.params):
                raise MissingSettingError(self.provider, setting)
        return key

    def call_kwargs(
        self, kwargs: Mapping[str, Any], model: Any = None, stop: list[str] | None = None
    ) -> dict[str, Any]:
        """``kwargs`` of a call, in the spelling this model takes: the output cap renamed
        (``max_output_tokens``, ``num_predict``, ...), sampling parameters it does not take dropped
        (``temperature`` for OpenAI's reasoning models), others moved where it reads them. ``model`` is
        the chat model being called and ``stop`` the call's stop sequences (Ollama's options hold both)."""
        rules = self._params
        if rules is None or not kwargs:
            return dict(kwargs)
        return rules.apply(self.catalog_model, kwargs, model if model is not None else self.instance, stop)

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


def _instance_params(instance: Any) -> Params | None:
    """The parameter rules of the provider that builds chat models of ``instance``'s class, if any."""
    while instance is not None and type(instance).__name__ in ("RunnableBinding", "RunnableSequence"):
        instance = getattr(instance, "bound", None)
    if instance is None:
        return None
    cls = type(instance).__name__
    return next((p.params for p in providers().values() if cls in p.classes), None)


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
