"""The candidates AutoPicker tries: each model of the chain at run time (its client, built lazily, its
breaker, rate limiter, facts and capabilities). How a model is declared is ``_spec.ModelSpec``.

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
from typing import TYPE_CHECKING, Any

from coffee_nb._shared import _http
from coffee_nb.errors._errors import ConfigError, MissingAPIKeyError
from coffee_nb.invoke._health import RecentAttempts
from coffee_nb.invoke._policy import CircuitBreaker, RateLimit, RateLimiter
from coffee_nb.invoke._spec import ModelSpec
from coffee_nb.pricing._pricing import PRICES, ModelFacts, Price, model_info
from coffee_nb.pricing._tokens import encoding_for
from coffee_nb.providers._base import MissingSettingError, Setting
from coffee_nb.providers._loops import for_loop
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import (
    PROVIDERS,
    BuildSettings,
    Provider,
    accepted,
    async_clients_of,
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
_PREFILL_CLASSES = {"ChatAnthropic": "message", "ChatAnthropicVertex": "message", "ChatMistralAI": "prefix"}
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
        # another AutoPicker used as a candidate: it prices, budgets and records its own calls
        self.inner: Any = spec.model if getattr(spec.model, "_llm_type", None) == "coffee_nb-autopicker" else None
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
        declared: Any = spec.prefill
        if declared is None and self._provider is None:
            declared = _PREFILL_CLASSES.get(cls, False)
        elif declared is None:
            prefill = self._provider.prefill if self._provider is not None else False
            declared = prefill(self.catalog_model) if callable(prefill) else prefill
        # continues a final assistant message (learned False when the model turns one down), and how
        self.prefill = bool(declared)
        self.prefill_style = declared if isinstance(declared, str) else "message"
        # a user's instance: its own per-request timeout and the retries its SDK makes (read once)
        self.own_timeout, self._own_retries = _own_timeout(self.instance)
        self.reports_finish = cls in _FINISH_REASON_CLASSES if self._provider is None else self._provider.finish_reason
        # does a call bound its own time? (a per-call timeout we pass, or the client's own, short enough)
        self.timeout_kwarg = cls in _TIMEOUT_KWARG_CLASSES if self._provider is None else self._provider.timeout_kwarg
        self._vision: bool | None = spec.vision
        self._vision_known = spec.vision is not None or self.inner is not None  # an AutoPicker routes for itself
        self._lock = threading.Lock()
        self._sync: tuple[Any, BaseChatModel] | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BaseChatModel] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"Candidate({self.name!r})"

    def prefill_message(self, text: str) -> Any:
        """The final assistant message that asks this model to continue ``text``."""
        from langchain_core.messages import AIMessage  # lazy: langchain_core

        if self.prefill_style == "prefix":
            return AIMessage(content=text, additional_kwargs={"prefix": True})
        return AIMessage(content=text)

    def prefill_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Call kwargs a continued request adds (vLLM continues the last message only when asked)."""
        if self.prefill_style != "vllm":
            return {}
        body = dict(kwargs.get("extra_body") or {})
        body.update(continue_final_message=True, add_generation_prompt=False)
        return {"extra_body": body}

    def attempt_limit(self, policy_limit: float) -> float:
        """Seconds one attempt of this model may take: the policy's, or the instance's own timeout where
        that is stricter (a user's ``ChatOpenAI(timeout=2)`` gives up after 2 s, and so does its attempt)."""
        own = self.own_timeout
        return policy_limit if own is None or own >= policy_limit else own

    def bounds_itself(self, seconds: float) -> bool:
        """Will a call of this model end by itself within ``seconds`` (so no watchdog is needed)?"""
        own, retries = self.own_timeout, self._own_retries
        if self.timeout_kwarg and not retries:  # we pass ``timeout=`` per call and the SDK won't try again
            return True
        return own is not None and own * (1 + retries) <= seconds

    @property
    def vision(self) -> bool | None:
        """Does the model take images? As declared (``ModelSpec(vision=...)``), else as its provider says,
        else as LangChain's model profile of the chat model says (``image_inputs``); None: nobody says.
        Asked only of a prompt with images; a model that can't be built here (no key) is unknown."""
        if not self._vision_known:
            self._vision, self._vision_known = self._sees(), True
        return self._vision

    def sees(self, vision: bool) -> None:
        """What a call learned: the model took images, or turned them down."""
        self._vision, self._vision_known = vision, True

    def _sees(self) -> bool | None:
        provider = self._provider
        said = provider.vision if provider is not None else None
        if callable(said):
            said = said(self.catalog_model)
        if said is not None:
            return bool(said)
        try:
            model: Any = self.chat_model()
        except Exception:  # noqa: BLE001 - no key, no extra: unknown here (the attempt will say why)
            return None
        while type(model).__name__ in ("RunnableBinding", "RunnableSequence"):  # a bound instance
            model = getattr(model, "bound", None)
        profile = getattr(model, "profile", None)
        flag = profile.get("image_inputs") if isinstance(profile, Mapping) else None
        return flag if isinstance(flag, bool) else None

    def _profile_flag(self, key: str) -> bool:
        profile = getattr(self.instance, "profile", None) if self.instance is not None else None
        return bool(profile.get(key)) if isinstance(profile, Mapping) else False

    @property
    def facts(self) -> ModelFacts:
        """Price and context window, resolved once (again after ``register_price``)."""
        cached = self._facts
        if cached is not None and cached[0] == PRICES.generation:  # read, not called: on every attempt
            return cached[1]
        return self._resolve()[1]

    @property
    def context_window(self) -> int | None:
        cached = self._facts
        if cached is not None and cached[0] == PRICES.generation:
            return cached[2]
        return self._resolve()[2]

    def _resolve(self) -> tuple[int, ModelFacts, int | None]:
        gen = PRICES.generation
        inner = self.inner
        if inner is not None:  # another AutoPicker: its dearest model bounds a reservation, it reports the cost
            facts = _chain_facts(inner.candidates)
        else:
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

        On an event loop other than the one its async connections belong to, a user's instance is called
        through a copy with a fresh async client (per loop, for the classes a provider knows how to renew;
        see ``coffee_nb.providers._loops``). Built clients get ``client_timeout`` (the policy's attempt
        timeout): the same for every attempt, so the cached client stays right; each attempt's own, shorter
        limit is enforced by the runner.
        """
        timeout = self.client_timeout
        if self.instance is not None:
            return self.instance if loop is None else _instance_on(self, loop)
        assert self._provider is not None
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


def _own_timeout(instance: Any) -> tuple[float | None, int]:
    """A user's instance's own per-request timeout (if it sets one) and the retries its SDK makes on its
    own (``max_retries``; None there means the SDK's default, read from its client)."""
    if instance is None:
        return None, 0  # built by us: max_retries=0, and the policy's timeout per call
    inner = getattr(instance, "bound", None)  # a RunnableBinding (``.bind(...)``): the model inside
    if inner is not None and inner is not instance:
        return _own_timeout(inner)
    retries = getattr(instance, "max_retries", None)
    if not isinstance(retries, int) or isinstance(retries, bool):
        retries = next(
            (
                r
                for attr in ("root_client", "client", "_client")
                if isinstance(r := getattr(getattr(instance, attr, None), "max_retries", None), int)
            ),
            0,
        )
    retries = max(0, retries)
    for name in ("request_timeout", "timeout", "default_request_timeout"):
        value = getattr(instance, name, None)
        read = getattr(value, "read", None)  # an httpx.Timeout
        seconds = read if isinstance(read, (int, float)) else value
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            return float(seconds), retries
    return None, retries


def _closed_async(model: Any) -> bool:
    client = getattr(model, "http_async_client", None)
    return bool(getattr(client, "is_closed", False))


def _instance_on(cand: Candidate, loop: asyncio.AbstractEventLoop) -> BaseChatModel:
    """The user's instance of ``cand`` for ``loop``: itself on its own loop, else a copy with a fresh async
    client (kept per loop, weakly, like built models; made again if its pooled client was closed)."""
    found = cand._async.get(loop)
    if found is not None and not _closed_async(found):
        return found
    assert cand.instance is not None
    with cand._lock:
        found = cand._async.get(loop)
        if found is None or _closed_async(found):
            found = for_loop(cand.instance, loop, async_clients_of)
            cand._async[loop] = found
    return found


def _chain_facts(candidates: Any) -> ModelFacts:
    """Facts of a nested AutoPicker's chain for the outer call: per token, the dearest of its models' prices
    (None when any is unpriced), and the largest context window it can route to (None when any is unknown)."""
    prices = [c.facts.price for c in candidates]
    windows = [c.context_window for c in candidates]
    price = None
    if prices and all(p is not None for p in prices):
        known = [p for p in prices if p is not None]
        price = Price(
            input=max(p.input for p in known),
            output=max(p.output for p in known),
            source="nested",
        )
    window = max(w for w in windows if w is not None) if windows and None not in windows else None
    return ModelFacts(price, window)
