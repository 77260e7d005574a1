"""The notebook session: the defaults ``%%llm`` uses (model chain, budget, metrics, cache, chat), in one
object with ``configure()`` / ``reset()``. Nothing here imports a notebook library; nothing runs at import.

>>> import coffee_nb
>>> coffee_nb.configure(models=["openai/gpt-4o-mini", "sandbox/fast"], daily=5)
>>> coffee_nb.ask("Why is the sky blue?").text
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coffee_nb import _config
from coffee_nb._answer import Answer, AnswerError, Conversation
from coffee_nb._errors import CoffeeError, ConfigError, is_clean, redact, scrub
from coffee_nb._format import money, parse_json
from coffee_nb._paths import StorageError
from coffee_nb._validate import max_tokens as check_max_tokens
from coffee_nb._validate import optional_flag, text
from coffee_nb._validate import temperature as check_temperature

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage

    from coffee_nb._cache import ResponseCache
    from coffee_nb._health import Health
    from coffee_nb._invoker import AutoPicker
    from coffee_nb._policy import Policy
    from coffee_nb._records import CallRecord
    from coffee_nb.budget import Budget, Ledger
    from coffee_nb.metrics import LocalMetrics

__all__ = ["Answer", "AnswerError", "Session", "ask", "configure", "get_session", "money", "parse_json", "reset"]

DEFAULT_DAILY_BUDGET = Decimal(5)  # a hard daily cap unless configured: no surprise bills
SANDBOX_CHAIN = ("sandbox/fast", "sandbox/smart")
KEYED_DEFAULTS = (("OPENAI_API_KEY", "openai/gpt-4o-mini"), ("ANTHROPIC_API_KEY", "anthropic/claude-3-5-haiku-latest"))
KNOWN_MODELS = (
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "openai/gpt-4.1-mini",
    "openai/o3-mini",
    "anthropic/claude-3-5-haiku-latest",
    "anthropic/claude-sonnet-4-5",
    "ollama/llama3.2",
)
FORMATS = ("markdown", "text", "code", "json", "html")
_BUDGET_METHODS = ("reserve", "commit", "release", "status")
_METRICS_METHODS = ("emit", "summary", "to_dataframe")


def _chain(models: Any) -> list[Any]:
    """A model chain from a list or a comma-separated string, each model checked now."""
    if isinstance(models, str):
        chain: list[Any] = [m.strip() for m in models.split(",")]
    elif isinstance(models, (list, tuple)):
        chain = list(models)
    else:
        raise ConfigError(
            f"models must be a list of models or a comma-separated string like 'openai/gpt-4o-mini,sandbox/fast', "
            f"got {models!r}"
        )
    chain = [m for m in chain if m != ""]
    if not chain:
        raise ConfigError("models must name at least one model, e.g. 'openai/gpt-4o-mini,sandbox/fast'")
    from coffee_nb._invoker import AutoPicker

    AutoPicker(chain[0], chain[1:])  # validates every spec now, with a clear error
    return chain


def _parsed(answer: Answer) -> Answer:
    """``answer`` with its JSON parsed (``format="json"``); an answer that isn't JSON is an AnswerError
    that still carries it (it was paid for)."""
    if answer.format == "json":
        try:
            answer.parsed = parse_json(answer.text)
        except ValueError as exc:
            raise AnswerError(f"{exc}; the answer is kept, as text, in the error's .answer", answer) from None
    return answer


def _policy_class() -> type:
    from coffee_nb._policy import Policy

    return Policy


class Session:
    """Defaults for the magics and ``coffee_nb.ask``: model chain, budget, metrics, cache, chat."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._opened: list[Ledger | ResponseCache] = []  # what this session opened and closes
        self._defaults()

    def _defaults(self) -> None:
        """Every field at its default: what a new session has, and what ``reset()`` rebuilds."""
        self.models: list[Any] | None = None  # None: the default chain (keys present → real; else sandbox)
        self.system: str | None = None
        self.temperature: float | None = None
        self.max_tokens: int | None = None
        self.policy: Policy | None = None
        self.cache_enabled = True
        self.base_url: str | None = None  # the server of openai-compatible/<model> specs (configure(base_url=))
        self._budget: Budget | None = None
        self._budget_args: dict[str, Any] = {}
        self._ledger: tuple[str | os.PathLike[str] | None, Ledger] | None = None  # (spec, ledger) opened here
        self._metrics: LocalMetrics | None = None
        self._cache: ResponseCache | None = None
        self._pickers: dict[tuple[Any, ...], AutoPicker] = {}
        self.sinks: list[Callable[[CallRecord], object]] = []
        self.conversation = Conversation()
        self._noticed = False
        self._cache_warned = False  # a failing response cache is said once (until it works again)

    # -- configuration -------------------------------------------------------------------------
    def configure(
        self,
        *,
        models: Sequence[Any] | str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        policy: Policy | None = None,
        budget: Budget | None = None,
        hourly: Any = None,
        daily: Any = None,
        weekly: Any = None,
        monthly: Any = None,
        total: Any = None,
        hard: bool | None = None,
        ledger: Any = None,
        metrics: Any = None,
        cache: bool | None = None,
        base_url: str | None = None,
    ) -> Session:
        """Change the defaults. Budget limits given here replace the session budget (same ledger).
        ``base_url`` is the server of ``openai-compatible/<model>`` specs (vLLM, LM Studio, llama.cpp, ...).

        All or nothing: every value is checked (and a new ledger opened) before anything changes, so a
        refused value leaves the session as it was.
        """
        with self._lock:
            chain = _chain(models) if models is not None else None
            if temperature is not None:
                temperature = check_temperature(temperature)
            if max_tokens is not None:
                max_tokens = check_max_tokens(max_tokens)
            if system is not None:
                text("system", system)
            if policy is not None and not isinstance(policy, _policy_class()):
                raise ConfigError(f"policy must be a coffee_nb.Policy, e.g. Policy(deadline=60), got {policy!r}")
            if budget is not None and not all(callable(getattr(budget, m, None)) for m in _BUDGET_METHODS):
                raise ConfigError(f"budget must be a coffee_nb.Budget, e.g. Budget(daily=5), got {budget!r}")
            if metrics is not None and not all(callable(getattr(metrics, m, None)) for m in _METRICS_METHODS):
                raise ConfigError(f"metrics must be a coffee_nb.LocalMetrics (the session's table), got {metrics!r}")
            cache = optional_flag("cache", cache)
            if base_url is not None and (
                not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
            ):
                raise ConfigError(f"base_url must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}")
            hard = optional_flag("hard", hard, " (block) or False (warn only)")
            limits = {"hourly": hourly, "daily": daily, "weekly": weekly, "monthly": monthly, "total": total}
            limits = {k: v for k, v in limits.items() if v is not None}
            new_budget, args = None, None
            if budget is None and (limits or hard is not None or ledger is not None):
                # given limits are added to (or replace) the current ones; Budget(...) via budget= for full control
                args = dict(self._budget_args or {"daily": DEFAULT_DAILY_BUDGET})
                args.update(limits)
                if hard is not None:
                    args["hard"] = hard
                if ledger is not None:
                    args["ledger"] = ledger
                new_budget = self._new_budget(args)  # the last step that may fail: nothing has changed yet
            # -- everything checked: apply
            if chain is not None:
                self.models = chain
            if temperature is not None:
                self.temperature = temperature
            if max_tokens is not None:
                self.max_tokens = max_tokens
            if system is not None:
                self.system = system or None
            if policy is not None:
                self.policy = policy
            if cache is not None:
                self.cache_enabled = cache
            if base_url is not None:
                self.base_url = base_url or None
            if budget is not None:
                self._budget = budget
                self._budget_args = {}  # limits given later start from the defaults, not from this object
            elif new_budget is not None and args is not None:
                self._budget, self._budget_args = new_budget, args
            if metrics is not None:
                self._metrics = metrics
            if any(v is not None for v in (chain, policy, budget, new_budget, metrics, base_url)):
                self._pickers.clear()
        return self

    def reset(self) -> None:
        """Back to defaults: a fresh budget object, metrics, chat memory and model chain.

        Connections the session opened (its budget's ledger, the response cache) are closed; spend
        stays in the ledger file. Budgets and ledgers you passed in are yours and stay open.
        """
        with self._lock:
            self.close()
            self._defaults()

    def close(self) -> None:
        """Close the connections this session opened: its budgets' ledger and the response cache."""
        with self._lock:
            opened, self._opened = self._opened, []
            if self._ledger is not None and getattr(self._budget, "ledger", None) is self._ledger[1]:
                self._budget = None  # rebuilt from the same arguments (and a fresh connection) on next use
                self._pickers.clear()
            self._ledger = None
            self._cache = None
        first: BaseException | None = None
        for resource in opened:
            try:
                resource.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report
                first = first or exc
        if first is not None:
            raise first

    def _new_budget(self, args: dict[str, Any]) -> Budget:
        """A Budget from ``args``; a ledger given by spec (or the default SQLite one) is opened once and
        shared by the session's budgets until ``reset()`` closes it. A ledger object stays the caller's.
        Nothing changes unless the budget is made (a ledger opened for it is closed again)."""
        from coffee_nb.budget import Budget, open_ledger

        spec = args.get("ledger")
        if spec is not None and not isinstance(spec, (str, os.PathLike)):
            return Budget(**args)
        if self._ledger is not None and self._ledger[0] == spec:
            return Budget(**{**args, "ledger": self._ledger[1]})
        Budget(**{**args, "ledger": "memory"})  # the limits first: a bad one must not open (or create) a file
        ledger = open_ledger(spec if spec is None or isinstance(spec, str) else Path(spec), "default")
        try:
            budget = Budget(**{**args, "ledger": ledger})
        except BaseException:
            ledger.close()
            raise
        self._opened.append(ledger)
        self._ledger = (spec, ledger)
        return budget

    # -- parts -------------------------------------------------------------------------------------
    @property
    def budget(self) -> Budget:
        """The session budget: a hard daily cap of $5 on the per-user SQLite ledger unless configured."""
        with self._lock:
            if self._budget is None:
                self._budget_args = self._budget_args or {"daily": DEFAULT_DAILY_BUDGET}
                self._budget = self._new_budget(self._budget_args)
            return self._budget

    @property
    def metrics(self) -> LocalMetrics:
        with self._lock:
            if self._metrics is None:
                from coffee_nb.metrics import LocalMetrics

                self._metrics = LocalMetrics()
            return self._metrics

    @property
    def cache(self) -> ResponseCache:
        """The response cache (opened on first use); a ``StorageError`` naming the file if it can't be."""
        with self._lock:
            if self._cache is None:
                from coffee_nb._cache import ResponseCache

                self._cache = ResponseCache()
                self._opened.append(self._cache)
            return self._cache

    def _cache_or_none(self) -> ResponseCache | None:
        """The cache, or None when it can't be opened (said once; answers go on without it)."""
        try:
            return self.cache
        except StorageError as exc:
            self._cache_failed(exc)
            return None

    def _cache_failed(self, exc: StorageError) -> None:
        from coffee_nb._cache import CacheWarning

        if not self._cache_warned:
            self._cache_warned = True
            warnings.warn(
                f"coffee_nb: answering without the response cache: {exc}. Answers are shown as usual "
                "(and billed: they can't be stored); the cache is tried again on every call.",
                CacheWarning,
                stacklevel=4,
            )

    def chain(self) -> tuple[list[Any], str | None]:
        """The model chain to use and, for the default sandbox chain, a notice saying so."""
        if self.models:
            return list(self.models), None
        keyed = [spec for var, spec in KEYED_DEFAULTS if os.environ.get(var)]
        if keyed:
            return keyed, None
        notice = (
            "No API keys found (OPENAI_API_KEY, ANTHROPIC_API_KEY): answering offline with the built-in sandbox "
            f"({' → '.join(SANDBOX_CHAIN)}, sandbox prices). Set a key, or choose models with "
            "%llm_config --models openai/gpt-4o-mini,sandbox/fast"
        )
        return list(SANDBOX_CHAIN), notice

    def health(self) -> Health:
        """The health of every model the session's chains use (the default chain's before any call)."""
        from coffee_nb._health import picker_health

        with self._lock:
            pickers = list(self._pickers.values())
        seen: dict[str, Any] = {}
        for picker in pickers or [self.picker()]:
            for cand in picker.candidates:
                seen.setdefault(cand.name, cand)
        return picker_health(seen.values())

    def picker(self, models: Sequence[Any] | None = None, budget: Budget | None = None) -> AutoPicker:
        """The AutoPicker for ``models`` (default chain when None); cached so cooldowns persist across cells."""
        from coffee_nb._invoker import AutoPicker

        chain = list(models) if models else self.chain()[0]
        key = tuple(m if isinstance(m, str) else id(m) for m in chain)
        if self.base_url is not None:  # the session's OpenAI-compatible server, for specs that name none
            chain = [_with_base_url(m, self.base_url) for m in chain]
        with self._lock:
            base = self._pickers.get(key)
            if base is None:
                sinks = [self.metrics, *self.sinks]
                base = AutoPicker(chain[0], chain[1:], budget=self.budget, metrics=sinks, policy=self.policy)
                self._pickers[key] = base
        if budget is None:
            return base
        from coffee_nb.budget import BudgetStack

        return base.model_copy(update={"budget": BudgetStack(self.budget, budget)})  # shares breakers, clients

    # -- asking ------------------------------------------------------------------------------------------
    def messages(self, prompt: str, *, system: str | None = None, chat: str | None = None) -> list[BaseMessage]:
        from langchain_core.messages import HumanMessage, SystemMessage

        out: list[BaseMessage] = []
        system = system if system is not None else self.system
        if system:
            out.append(SystemMessage(system))
        if chat is not None:
            out += self.conversation.history(chat)
        out.append(HumanMessage(prompt))
        return out

    def ask(
        self,
        prompt: str,
        *,
        models: Sequence[Any] | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool | None = None,
        chat: str | None = None,
        budget: Budget | None = None,
        on_token: Callable[[str], Any] | None = None,
        on_restart: Callable[[dict[str, Any]], Any] | None = None,
        format: str = "markdown",  # noqa: A002 - matches the magic's option
    ) -> Answer:
        """Ask the chain; stream through ``on_token`` when given (``on_restart`` hears when a broken stream
        starts over on another model). Identical requests come from the cache at $0."""
        if format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        chain, notice = (list(models), None) if models else self.chain()
        if notice and self._noticed:
            notice = None
        self._noticed = self._noticed or notice is not None
        messages = self.messages(prompt, system=system, chat=chat)
        params = {
            "temperature": temperature if temperature is not None else self.temperature,
            "max_tokens": max_tokens if max_tokens is not None else self.max_tokens,
        }
        names = [m if isinstance(m, str) else repr(m) for m in chain]
        use_cache = self.cache_enabled if cache is None else cache
        if use_cache:
            from coffee_nb._cassette import active

            use_cache = active() is None  # a cassette records and replays every call itself
        key = None
        if use_cache:
            from coffee_nb._cache import request_key

            key = request_key(names, messages, params)
            hit = self._from_cache(key, format)
            if hit is not None:
                hit.notice = notice
                if on_token is not None:
                    on_token(hit.text)
                if chat is not None:
                    self.conversation.record(chat, messages[-1], hit.message)
                return _parsed(hit)
        start = time.perf_counter()
        try:
            message = self._call(messages, chain, budget, params, on_token, on_restart)
        except Exception as exc:
            if is_clean(scrub(exc)):
                raise
            # a text of its own making that still holds a key: say what it was, without it
            raise CoffeeError(redact(f"{type(exc).__name__}: {exc}")) from None
        # the call is paid: from here on nothing may lose the answer
        answer = self._answer(message, format, time.perf_counter() - start)
        answer.notice = notice
        if key is not None:
            self._store(key, message, answer)
        if chat is not None:
            self.conversation.record(chat, messages[-1], message)
        return _parsed(answer)

    def _call(
        self,
        messages: list[BaseMessage],
        chain: list[Any],
        budget: Budget | None,
        params: dict[str, Any],
        on_token: Callable[[str], Any] | None,
        on_restart: Callable[[dict[str, Any]], Any] | None,
    ) -> AIMessage:
        picker = self.picker(chain, budget)
        call_kwargs: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        if on_token is None:
            return picker.invoke(messages, **call_kwargs)
        from coffee_nb._streams import Collector, is_restart

        collector = Collector()
        for chunk in picker.stream(messages, **call_kwargs):
            if is_restart(chunk) and on_restart is not None:
                on_restart(chunk.response_metadata["coffee_nb"])  # the answer starts over on another model
            collector.add(chunk)
            if chunk.content:
                on_token(chunk.text)
        return collector.result()

    def _store(self, key: str, message: AIMessage, answer: Answer) -> None:
        """Keep a paid answer in the cache; a cache that fails is warned about once, never fatal."""
        cache = self._cache_or_none()
        if cache is None:
            return
        try:
            cache.put(key, message, {"model": answer.model, "provider": answer.provider, "tokens": answer.tokens})
        except StorageError as exc:
            self._cache_failed(exc)
        else:
            self._cache_warned = False  # working again: a new failure is worth saying

    def _budget_left(self) -> dict[str, Decimal]:
        try:
            status = self.budget.status()
        except Exception:  # noqa: BLE001 - a footer must not fail a call
            return {}
        return {name: s["remaining"] for name, s in status.items()}

    def _answer(self, message: AIMessage, format: str, latency: float) -> Answer:  # noqa: A002
        summary = message.response_metadata.get("coffee_nb")
        as_dict = getattr(summary, "as_dict", None)  # a CallSummary; from the cache, already a dict
        meta = as_dict() if as_dict is not None else (summary or {})  # plain values for JSON
        answer = Answer(
            message=message,
            model=meta.get("model", "?"),
            provider=meta.get("provider", "?"),
            attempts=meta.get("attempts", []),
            cost=meta.get("cost"),
            price_source=meta.get("price_source", "unpriced"),
            tokens=dict(meta.get("tokens") or {}),  # plain dict: JSON-able, stored in the cache
            latency_s=meta.get("latency_s", latency),
            fallback_reason=meta.get("fallback_reason"),
            format=format,
            budget_left=self._budget_left(),
            role=meta.get("role", "primary"),
            primary_model=meta.get("primary_model"),
            saved=meta.get("saved"),
            replayed=bool(meta.get("replayed", False)),
            recorded_cost=meta.get("recorded_cost"),
        )
        return answer

    def _from_cache(self, key: str, format: str) -> Answer | None:  # noqa: A002
        start = time.perf_counter()
        cache = self._cache_or_none()
        try:
            found = cache.get(key) if cache is not None else None
        except StorageError as exc:
            self._cache_failed(exc)
            return None
        if found is None:
            return None
        message, stored = found
        from coffee_nb._cache import replay
        from coffee_nb._records import global_sinks, publish

        record, message = replay(message, stored, time.perf_counter() - start)
        publish([self.metrics.emit, *self.sinks], record)
        publish(global_sinks(), record)
        answer = self._answer(message, format, record.latency_s)
        answer.cache_hit = True
        return answer

    def dry_run(
        self,
        prompt: str,
        *,
        models: Sequence[Any] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        chat: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per candidate: estimated input tokens, context window, worst-case cost, and budget left after
        (empty when the ledger can't be used). No call."""
        from coffee_nb._invoker import DEFAULT_OUTPUT_ESTIMATE, AutoPicker
        from coffee_nb._tokens import count_message_tokens

        chain = list(models) if models else self.chain()[0]
        picker = AutoPicker(chain[0], chain[1:])  # no budget: a dry run works even when the ledger can't be used
        messages = self.messages(prompt, system=system, chat=chat)
        cap = max_tokens or self.max_tokens
        try:
            status = self.budget.status()
        except StorageError:  # budget left unknown ("?"); %%llm --dry-run says why
            status = {}
        rows = []
        for cand in picker.candidates:
            count = count_message_tokens(messages, cand.provider, cand.model)
            out_cap = cap or cand.max_output_tokens or DEFAULT_OUTPUT_ESTIMATE
            price = cand.facts.price
            worst = price.cost(count.tokens, out_cap) if price is not None else None
            window = cand.context_window
            rows.append(
                {
                    "model": cand.name,
                    "input_tokens": count.tokens,
                    "exact": count.exact,
                    "context_window": window,
                    "fits": None if window is None else count.tokens + (cap or 0) <= window,
                    "max_output_tokens": out_cap,
                    "worst_case_cost": worst,
                    "price_source": price.source if price is not None else "unpriced",
                    "budget_left_after": {
                        name: (s["remaining"] - worst if worst is not None else None) for name, s in status.items()
                    },
                }
            )
        return rows


_SESSION = _config.SESSION  # the process-wide session lives in _config (reset_defaults() closes it)


def get_session() -> Session:
    """The process-wide notebook session (created on first use)."""
    session = _SESSION.session
    if session is None:
        with _SESSION.lock:
            session = _SESSION.session
            if session is None:
                session = _SESSION.session = Session()
    return session


def _with_base_url(model: Any, base_url: str) -> Any:
    if isinstance(model, str) and model.startswith("openai-compatible/"):
        from coffee_nb._models import ModelSpec

        return ModelSpec(model=model, params={"base_url": base_url})
    return model


def configure(**kwargs: Any) -> Session:
    """Set session defaults from Python: ``coffee_nb.configure(models=[...], daily=5, system="...")``."""
    return get_session().configure(**kwargs)


def reset() -> None:
    """Reset the session to its defaults (chain, budget object, metrics, chat memory)."""
    get_session().reset()


def ask(prompt: str, **kwargs: Any) -> Answer:
    """Ask the session's chain from Python (same cache, budget and metrics as ``%%llm``)."""
    return get_session().ask(prompt, **kwargs)
