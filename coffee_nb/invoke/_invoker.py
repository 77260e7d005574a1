"""AutoPicker: a LangChain chat model that tries a primary model, retries, and falls back.

This module is the LangChain face of it (construction, plumbing, tools, structured output). The
decisions live in ``_plan.py`` (no I/O), the I/O in ``_attempt.py`` (one runner for invoke, ainvoke,
stream and astream), the fast path in ``_fastpath.py``, and every touch of LangChain internals in
``_compat.py``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from coffee_nb._shared._records import as_sinks, call_observers
from coffee_nb._shared._validate import flag, max_tokens, non_negative_number, positive_number, temperature
from coffee_nb.errors._errors import ConfigError, remember_secret
from coffee_nb.invoke._attempt import RESTARTED, Call
from coffee_nb.invoke._compat import PARENT, as_chunk, own_run, scoped, scoped_async
from coffee_nb.invoke._drivers import adrive, arun, drive, is_summary, run
from coffee_nb.invoke._fastpath import fast_prompt
from coffee_nb.invoke._health import Health, picker_health
from coffee_nb.invoke._models import Candidate, ModelSpec
from coffee_nb.invoke._plan import DEFAULT_OUTPUT_ESTIMATE, BudgetLike, Core
from coffee_nb.invoke._policy import Policy
from coffee_nb.invoke._summary import take_structured

__all__ = ["DEFAULT_OUTPUT_ESTIMATE", "AutoPicker", "AutoPickerLLM", "AutoPickerLLMRefactored", "BudgetLike"]


def _pick_structured(include_raw: bool) -> Runnable[AIMessage, Any]:
    def pick(message: AIMessage) -> Any:
        s = take_structured(message.response_metadata["coffee_nb"]["call_id"])
        if s is None:
            raise ValueError("this structured answer was already read (or its call ran in another process)")
        if include_raw:
            return {"raw": message, "parsed": s["parsed"], "parsing_error": s["parsing_error"]}
        if s["parsing_error"] is not None:
            raise s["parsing_error"]
        return s["parsed"]

    return RunnableLambda(pick, name="coffee_nb_structured")


# The seed design's keyword names, accepted as they were documented there.
_SEED_NAMES = {"metrics_strategy": "metrics", "budget_enforcer": "budget"}


def _seed_kwargs(kwargs: dict[str, Any]) -> None:
    """Translate the seed design's constructor keywords (``primary_llm=``, ``primary_model_name=``,
    ``fallback_llms=``, ``metrics_strategy=``, ``budget_enforcer=``) into AutoPicker's own, in place."""
    for old, new in _SEED_NAMES.items():
        if old in kwargs:
            if new in kwargs:
                raise ConfigError(f"give {new}= once: {old}= is another name for it")
            kwargs[new] = kwargs.pop(old)
    name = kwargs.pop("primary_model_name", None)
    if "primary_llm" in kwargs:
        if "primary" in kwargs or "model" in kwargs:
            raise ConfigError("give the primary model once: primary_llm= or primary=/model=")
        llm = kwargs.pop("primary_llm")
        kwargs["primary"] = ModelSpec(model=llm, name=name) if name is not None else llm
    elif name is not None:
        raise ConfigError("primary_model_name= labels primary_llm=; give primary_llm= too")
    if "fallback_llms" in kwargs:
        if "fallbacks" in kwargs:
            raise ConfigError("give fallbacks once: fallback_llms= or fallbacks=")
        items = kwargs.pop("fallback_llms") or []
        kwargs["fallbacks"] = [_seed_fallback(item) for item in items]


def _seed_fallback(item: Any) -> Any:
    """A fallback of the seed design: a model, or a ``(model, "provider/name")`` pair."""
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], str):
            raise ConfigError(f"a fallback pair must be (model, 'provider/name'), got {item!r}")
        return ModelSpec(model=item[0], name=item[1])
    return item


def _check_options(kwargs: dict[str, Any]) -> None:
    """Check the options pydantic would coerce or explain badly; each error names the value."""
    if kwargs.get("temperature") is not None:
        temperature(kwargs["temperature"])
    if kwargs.get("max_tokens") is not None:
        max_tokens(kwargs["max_tokens"])
    if kwargs.get("timeout") is not None:
        positive_number("timeout (seconds, the whole call's deadline)", kwargs["timeout"])
    if kwargs.get("max_retries") is not None:
        non_negative_number("max_retries", kwargs["max_retries"], integer=True)
    if kwargs.get("seed") is not None:
        non_negative_number("seed", kwargs["seed"], integer=True)
    if "streaming" in kwargs:
        flag("streaming", kwargs["streaming"])
    policy = kwargs.get("policy")
    if policy is not None and not isinstance(policy, Policy):
        raise ConfigError(f"policy must be a coffee_nb.Policy, e.g. Policy(deadline=60), got {policy!r}")
    budget = kwargs.get("budget")
    if budget is not None and not all(callable(getattr(budget, m, None)) for m in ("reserve", "commit", "release")):
        raise ConfigError(
            f"budget must be a coffee_nb.Budget (e.g. Budget(daily=5)) or an object with reserve/commit/release, "
            f"got {budget!r}"
        )
    stop = kwargs.get("stop")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise ConfigError(f"stop must be a list of strings, got {stop!r}")
    fallbacks = kwargs.get("fallbacks")
    if fallbacks is not None and not isinstance(fallbacks, Sequence):
        raise ConfigError(f"fallbacks must be a list of models, e.g. ['sandbox/fast'], got {fallbacks!r}")
    for name in ("metrics", "on_record"):
        as_sinks(kwargs.get(name))  # a ConfigError naming what is not a sink


def _remember_keys(model: Any) -> None:
    """Keys inside a chat model the user built (``ChatOpenAI(api_key=...)``): redacted wherever they echo."""
    seen = 0
    while model is not None and seen < 4:  # a RunnableBinding wraps the model in ``bound``
        for value in getattr(model, "__dict__", {}).values():
            if isinstance(value, SecretStr):
                remember_secret(value)
        model, seen = getattr(model, "bound", None), seen + 1


class AutoPicker(BaseChatModel):
    """A chat model over a primary model and ordered fallbacks, with retries, deadline, cooldowns and budget.

    >>> llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "sandbox/fast"])
    >>> llm.invoke("Hello").response_metadata["coffee_nb"]["model"]

    ``primary`` and each fallback are ``"provider/model"`` specs, chat model instances, or
    :class:`coffee_nb.ModelSpec`. ``metrics`` and ``on_record`` take record sinks (objects with
    ``emit(record)``, or callables). ``timeout`` is the whole call's deadline in seconds and
    ``max_retries`` the retries per model; both override ``policy``.

    The seed design's names work too: ``AutoPicker(primary_llm=llm, primary_model_name="openai/gpt-4o",
    fallback_llms=[(llm2, "anthropic/claude-3-5-haiku-latest")], metrics_strategy=metrics,
    budget_enforcer=budget)``; ``AutoPickerLLM`` and ``AutoPickerLLMRefactored`` are aliases.

    A stream that breaks mid-answer continues on a model that takes the text so far as a prefill, or
    starts over for a consumer that handles that (``coffee_nb.collect``), or raises
    ``StreamInterruptedError``: never spliced text. Wrapping a model changes what happens on failure and
    nothing else: the summary on a message is plain data, the chosen model's run is a child of this one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", populate_by_name=True)

    primary: Any = Field(default=None, alias="model")
    fallbacks: list[Any] = Field(default_factory=list)
    budget: Any = None
    metrics: Any = None
    policy: Policy | None = None
    on_record: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False
    seed: int | None = Field(default=None, exclude=True)  # seeds backoff jitter (tests)

    _core: Core = PrivateAttr()

    def __init__(self, primary: Any = None, fallbacks: Sequence[Any] | None = None, /, **kwargs: Any) -> None:
        _seed_kwargs(kwargs)
        if primary is not None:
            if "model" in kwargs or "primary" in kwargs:
                raise ConfigError("give the primary model once: positionally or as model=/primary=")
            kwargs["primary"] = primary
        if fallbacks is not None:
            if "fallbacks" in kwargs:
                raise ConfigError("give fallbacks once: positionally or as fallbacks=")
            kwargs["fallbacks"] = fallbacks
        if isinstance(kwargs.get("fallbacks"), (str, bytes)):
            kwargs["fallbacks"] = [kwargs["fallbacks"]]
        _check_options(kwargs)  # before pydantic, which would turn True into 1.0 and 'x' into a wall of text
        super().__init__(**kwargs)
        self._build()  # outside pydantic validation, so a ConfigError reaches the user unwrapped

    def _build(self) -> None:
        if self.primary is None:
            raise ConfigError("AutoPicker needs at least one model: AutoPicker('openai/gpt-4o-mini', ['sandbox/fast'])")
        policy = self.policy or Policy()
        changes: dict[str, Any] = {}
        if self.timeout is not None:
            changes["deadline"] = self.timeout
        if self.max_retries is not None:
            changes["max_retries"] = self.max_retries
        if changes:
            policy = replace(policy, **changes)
        items = [self.primary, *self.fallbacks]
        for item in items:
            _remember_keys(item.model if isinstance(item, ModelSpec) else item)
        candidates = [
            Candidate(
                item,
                cooldown_after=policy.cooldown_after,
                cooldown=policy.cooldown,
                cooldown_min=policy.cooldown_min,
                client_timeout=policy.attempt_timeout,
            )
            for item in items
        ]
        names = [c.name for c in candidates]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"the same model appears twice in the chain: {sorted(dupes)}; give each a name=")
        sinks = as_sinks(self.metrics) + as_sinks(self.on_record)
        self._core = Core(candidates, policy, sinks, random.Random(self.seed), observers=call_observers(self.metrics))

    # -- LangChain plumbing ------------------------------------------------------------------------
    @classmethod
    def is_lc_serializable(cls) -> bool:
        """``dumpd``/``load`` round-trip an AutoPicker built from specs (a chain of model instances, a budget
        or metrics object serialize as their own classes allow)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["coffee_nb"]

    @property
    def _llm_type(self) -> str:
        return "coffee_nb-autopicker"

    @property
    def model_names(self) -> list[str]:
        """The chain, in order."""
        return [c.name for c in self._core.candidates]

    @property
    def policy_in_force(self) -> Policy:
        """The policy after ``timeout`` / ``max_retries`` overrides."""
        return self._core.policy

    def health(self) -> Health:
        """Each model's health: breaker state (and when it reopens), failures in a row, recent error rate
        and latency, the last error (redacted), and rate-limit headroom."""
        return picker_health(self._core.candidates)

    @property
    def candidates(self) -> list[Candidate]:
        return list(self._core.candidates)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"models": self.model_names, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "coffee_nb"
        params["ls_model_name"] = kwargs.get("model") or self._core.candidates[0].name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = stop
        return params

    def __repr__(self) -> str:
        return f"AutoPicker({self.model_names!r})"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Bind tools; each candidate formats them its own way when it is tried."""
        tool_kwargs = dict(kwargs)
        if tool_choice is not None:
            tool_kwargs["tool_choice"] = tool_choice
        return self.bind(coffee_tools=(tuple(tools), tool_kwargs))

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable[Any, Any]:
        """Structured output, forwarded to each candidate's own ``with_structured_output`` (same kwargs)."""
        so_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            traced = {"kwargs": so_kwargs, "schema": convert_to_json_schema(schema)}
        except Exception:  # noqa: BLE001 - tracing detail only; the candidates validate the schema
            traced = {"kwargs": so_kwargs, "schema": {}}
        bound = self.bind(coffee_structured=(schema, so_kwargs), ls_structured_output_format=traced)
        return bound | _pick_structured(include_raw)

    # -- the drivers (``_attempt.py``): only the I/O differs ------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = run(Call(self, messages, stop, run_manager, kwargs))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await arun(Call(self, messages, stop, run_manager, kwargs, is_async=True))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def invoke(self, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:  # noqa: A002 - LangChain's signature
        fast = fast_prompt(self, input, config, kwargs)
        if fast is not None:  # nobody listening: skip our own layer of LangChain machinery
            message: AIMessage = run(Call(self, fast, stop, None, kwargs))
            return message
        config, parent = own_run(self, config)  # LangChain's invoke-by-streaming won't tell _stream our run
        token, held = RESTARTED.set([]), PARENT.set(parent)
        try:
            message = super().invoke(input, config, stop=stop, **kwargs)
            restarted = RESTARTED.get()
        finally:
            PARENT.reset(held)
            RESTARTED.reset(token)
        return restarted[-1] if restarted else message  # LangChain's ``+`` can't honour a restart marker

    async def ainvoke(
        self,
        input: Any,  # noqa: A002 - LangChain's signature
        config: Any = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        fast = fast_prompt(self, input, config, kwargs)
        if fast is not None:
            message: AIMessage = await arun(Call(self, fast, stop, None, kwargs))
            return message
        config, parent = own_run(self, config)
        token, held = RESTARTED.set([]), PARENT.set(parent)
        try:
            message = await super().ainvoke(input, config, stop=stop, **kwargs)
            restarted = RESTARTED.get()
        finally:
            PARENT.reset(held)
            RESTARTED.reset(token)
        return restarted[-1] if restarted else message

    def stream(
        self,
        input: Any,  # noqa: A002 - LangChain's signature
        config: Any = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        # LangChain's stream doesn't hand _stream our run: choose its id, so the candidates' runs nest in it
        config, parent = own_run(self, config)
        return scoped(super().stream(input, config, stop=stop, **kwargs), parent)

    def astream(
        self,
        input: Any,  # noqa: A002 - LangChain's signature
        config: Any = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, parent = own_run(self, config)
        return scoped_async(super().astream(input, config, stop=stop, **kwargs), parent)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if "coffee_structured" in kwargs:  # parsed objects don't stream as message chunks
            yield as_chunk(run(Call(self, messages, stop, run_manager, kwargs)))
            return
        for chunk in drive(Call(self, messages, stop, run_manager, kwargs, streaming=True)):
            if run_manager and not is_summary(chunk):
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if "coffee_structured" in kwargs:
            yield as_chunk(await arun(Call(self, messages, stop, run_manager, kwargs, is_async=True)))
            return
        async for chunk in adrive(Call(self, messages, stop, run_manager, kwargs, streaming=True, is_async=True)):
            if run_manager and not is_summary(chunk):
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


AutoPickerLLM = AutoPicker  # the seed design's name
AutoPickerLLMRefactored = AutoPicker  # the seed design's name for the refactored invoker
