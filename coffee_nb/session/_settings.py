"""The configuration half of the notebook session: defaults (model chain, system prompt, sampling),
the budget and its ledger, metrics, the response cache and the AutoPickers built from them. The
asking half (``ask``, the cache path, ``dry_run``) is ``Session`` in ``_session``.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from contextlib import suppress
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from coffee_nb._shared._format import money
from coffee_nb._shared._paths import StorageError
from coffee_nb._shared._validate import max_tokens as check_max_tokens
from coffee_nb._shared._validate import optional_flag, text
from coffee_nb._shared._validate import temperature as check_temperature
from coffee_nb.errors._errors import ConfigError
from coffee_nb.providers._aliases import resolve
from coffee_nb.session._answer import Conversation

if TYPE_CHECKING:
    from coffee_nb._shared._records import CallRecord
    from coffee_nb.budget import Budget, Ledger
    from coffee_nb.invoke._health import Health
    from coffee_nb.invoke._invoker import AutoPicker
    from coffee_nb.invoke._policy import Policy
    from coffee_nb.metrics import LocalMetrics
    from coffee_nb.replay._cache import ResponseCache

__all__ = ["DEFAULT_DAILY_BUDGET", "KEYED_DEFAULTS", "KNOWN_MODELS", "SANDBOX_CHAIN", "SessionSettings"]

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
PROMPTS_KEPT = 10_000  # prompts remembered for %llm_history (oldest forgotten first)
# the prompt being asked in this thread/task (Session.ask sets it): its records are noted with it
ASKING: ContextVar[str | None] = ContextVar("coffee_nb_asking", default=None)
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
    from coffee_nb.invoke._invoker import AutoPicker  # lazy: langchain_core

    AutoPicker(chain[0], chain[1:])  # validates every spec now, with a clear error
    return chain


def _policy_class() -> type:
    from coffee_nb.invoke._policy import Policy  # lazy: %load_ext path

    return Policy


_PERIODS = ("hourly", "daily", "weekly", "monthly", "total")


def _model_name(model: Any) -> str:
    """A chain entry as text: a spec as written, an instance by its class and model name (no repr: no key)."""
    if isinstance(model, str):
        return model
    spec = getattr(model, "model", None)
    if isinstance(spec, str):  # a ModelSpec
        return spec
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return f"{type(model).__name__}({name})" if isinstance(name, str) else type(model).__name__


class SessionSettings:
    """The session's configuration and the parts built from it (budget, metrics, cache, pickers)."""

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
        # where else calls go (configure(metrics="otel")): sinks that follow whole calls too
        self.exporters: list[Any] = []
        self.conversation = Conversation()
        self.prompts: dict[str, str] = {}  # call id → the prompt it answered (%llm_history), newest last
        self._noticed = False
        self._cache_warned = False  # a failing response cache is said once (until it works again)

    def __repr__(self) -> str:
        """What the session will use, on one line (``configure(...)`` returns the session: a cell ending in
        it shows this). Opens nothing; names models, never keys."""
        models = "the default chain" if self.models is None else ", ".join(_model_name(m) for m in self.models)
        if self._budget is not None:
            rules = self._budget.rules
            limits = ", ".join(f"{r.label} {money(r.amount)}{'' if r.hard else ' (soft)'}" for r in rules) or "none"
        else:
            args = self._budget_args or {"daily": DEFAULT_DAILY_BUDGET}
            limits = ", ".join(f"{k} {money(Decimal(str(v)))}" for k, v in args.items() if k in _PERIODS) or "none"
        cache = "on" if self.cache_enabled else "off"
        return f"coffee_nb session: models {models} · budget {limits} · cache {cache}"

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
    ) -> Self:
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
            exporters = _exporters(metrics)
            if exporters is not None:
                metrics = None  # the session's table stays: these go beside it
            elif metrics is not None and not all(callable(getattr(metrics, m, None)) for m in _METRICS_METHODS):
                raise ConfigError(
                    "metrics must be a coffee_nb.LocalMetrics (the session's table), 'otel' or an "
                    f"OpenTelemetryMetrics (export beside it), or 'local' (stop exporting), got {metrics!r}"
                )
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
            if exporters is not None:
                self.exporters = exporters
            if any(v is not None for v in (chain, policy, budget, new_budget, metrics, exporters, base_url)):
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
        """Close the connections this session opened: its budgets' ledger and the response cache.

        Spend a failed write left waiting is written first: its ledger, when the session opened it, writes
        it before closing (or says loudly what is lost); a budget of yours is asked to write it now, and
        otherwise keeps it waiting (retried in the background, and at exit)."""
        with self._lock:
            flush = getattr(self._budget, "flush", None)
            if callable(flush):
                # still failing: it waits for its ledger (whose close, if the session's, says what is lost)
                with suppress(StorageError):
                    flush()
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
        from coffee_nb.budget import Budget, open_ledger  # lazy: %load_ext path

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
                from coffee_nb.metrics import LocalMetrics  # lazy: %load_ext path

                self._metrics = LocalMetrics()
            return self._metrics

    @property
    def cache(self) -> ResponseCache:
        """The response cache (opened on first use); a ``StorageError`` naming the file if it can't be."""
        with self._lock:
            if self._cache is None:
                from coffee_nb.replay._cache import ResponseCache  # lazy: %load_ext path

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
        from coffee_nb.replay._cache import CacheWarning  # lazy: %load_ext path

        if not self._cache_warned:
            self._cache_warned = True
            warnings.warn(
                f"coffee_nb: answering without the response cache: {exc}. Answers are shown as usual "
                "(and billed: they can't be stored); the cache is tried again on every call.",
                CacheWarning,
                stacklevel=4,
            )

    def _note_prompt(self, record: CallRecord) -> None:
        """A record sink: which prompt each call was asked (while ``ask`` runs), for ``%llm_history``."""
        prompt = ASKING.get()
        if prompt is None or record.call_id in self.prompts:
            return
        self.prompts[record.call_id] = prompt[:500]
        if len(self.prompts) > PROMPTS_KEPT:
            self.prompts.pop(next(iter(self.prompts)), None)

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
        from coffee_nb.invoke._health import picker_health  # lazy: %load_ext path

        with self._lock:
            pickers = list(self._pickers.values())
        seen: dict[str, Any] = {}
        for picker in pickers or [self.picker()]:
            for cand in picker.candidates:
                seen.setdefault(cand.name, cand)
        return picker_health(seen.values())

    def picker(self, models: Sequence[Any] | None = None, budget: Budget | None = None) -> AutoPicker:
        """The AutoPicker for ``models`` (default chain when None); cached so cooldowns persist across cells."""
        from coffee_nb.invoke._invoker import AutoPicker  # lazy: langchain_core

        chain = [resolve(m) for m in (list(models) if models else self.chain()[0])]  # an alias: its model now
        key = tuple(m if isinstance(m, str) else id(m) for m in chain)
        if self.base_url is not None:  # the session's OpenAI-compatible server, for specs that name none
            chain = [_with_base_url(m, self.base_url) for m in chain]
        with self._lock:
            base = self._pickers.get(key)
            if base is None:
                sinks = [self.metrics, *self.sinks, *self.exporters, self._note_prompt]
                base = AutoPicker(chain[0], chain[1:], budget=self.budget, metrics=sinks, policy=self.policy)
                self._pickers[key] = base
        if budget is None:
            return base
        from coffee_nb.budget import BudgetStack  # lazy: %load_ext path

        return base.model_copy(update={"budget": BudgetStack(self.budget, budget)})  # shares breakers, clients


def _with_base_url(model: Any, base_url: str) -> Any:
    if isinstance(model, str) and model.startswith("openai-compatible/"):
        from coffee_nb.invoke._models import ModelSpec  # lazy: %load_ext path

        return ModelSpec(model=model, params={"base_url": base_url})
    return model


def _exporters(metrics: Any) -> list[Any] | None:
    """What ``configure(metrics=...)`` says to export to besides the session's table: ``"otel"`` (a new
    ``OpenTelemetryMetrics``), one given, ``"local"`` (nothing); None when it is about the table itself."""
    if isinstance(metrics, str):
        key = metrics.strip().lower()
        if key in ("otel", "opentelemetry"):
            from coffee_nb.metrics import OpenTelemetryMetrics  # lazy: %load_ext path

            return [OpenTelemetryMetrics()]
        if key == "local":
            return []
        raise ConfigError(f"metrics must be 'otel' or 'local' (or a metrics object), got {metrics!r}")
    if metrics is not None and callable(getattr(metrics, "call_started", None)):
        return [metrics]
    return None
