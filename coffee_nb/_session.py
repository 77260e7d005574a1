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
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coffee_nb import _config
from coffee_nb._errors import ConfigError
from coffee_nb._format import content_text, money, parse_json
from coffee_nb._validate import positive_int
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

__all__ = ["Answer", "Session", "ask", "configure", "get_session", "money", "parse_json", "reset"]

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


@dataclass
class Answer:
    """What one ``%%llm`` cell (or ``coffee_nb.ask``) got back: the text, the full message, the trace."""

    message: AIMessage
    model: str
    provider: str
    attempts: list[dict[str, Any]]
    cost: Decimal | None
    price_source: str
    tokens: dict[str, Any]
    latency_s: float
    cache_hit: bool = False
    fallback_reason: str | None = None
    format: str = "markdown"
    parsed: Any = None
    budget_left: dict[str, Decimal] = field(default_factory=dict)
    notice: str | None = None

    @property
    def text(self) -> str:
        return content_text(self.message.content)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        tokens = f"{self.tokens.get('input')}→{self.tokens.get('output')}"
        return f"Answer(model={self.model!r}, cost={self.cost_text()}, tokens={tokens})"

    def cost_text(self) -> str:
        if self.cache_hit:
            return "$0 (cache hit)"
        if self.cost is None:
            return "unpriced"
        label = " (sandbox prices)" if self.price_source == "sandbox" else ""
        return f"{money(self.cost)}{label}"

    def footer(self) -> str:
        """One line: model, fallbacks taken, tokens, cost, latency, budget remaining."""
        parts = [self.model]
        tried = [a["model"] for a in self.attempts if a["outcome"] != "ok"]
        if self.fallback_reason:
            parts.append(f"fallback from {tried[0]} ({self.fallback_reason})")
        elif len(self.attempts) > 1:
            parts.append(f"{len(self.attempts) - 1} retr{'y' if len(self.attempts) == 2 else 'ies'}")
        est = "~" if self.tokens.get("estimated") else ""
        parts.append(f"{est}{self.tokens.get('input', 0)}→{self.tokens.get('output', 0)} tokens")
        parts.append(self.cost_text())
        parts.append(f"{self.latency_s:.2f} s")
        for period, left in self.budget_left.items():
            parts.append(f"{period} budget left {money(left)}")
            break
        return " · ".join(parts)

    def _repr_markdown_(self) -> str:
        # "$" starts LaTeX math in Jupyter's markdown: MathJax skips elements with these classes
        return f"{self.text}\n\n<sub class='tex2jax_ignore mathjax_ignore'>{self.footer()}</sub>"


class Conversation:
    """Chat memory for ``--chat``: one exchange per cell; re-running a cell replaces its exchange."""

    def __init__(self) -> None:
        self.exchanges: OrderedDict[str, tuple[BaseMessage, BaseMessage]] = OrderedDict()

    def history(self, key: str) -> list[BaseMessage]:
        """The exchanges before ``key``'s (all of them when ``key`` is new)."""
        out: list[BaseMessage] = []
        for k, (human, ai) in self.exchanges.items():
            if k == key:
                break
            out += [human, ai]
        return out

    def record(self, key: str, human: BaseMessage, ai: BaseMessage) -> None:
        self.exchanges[key] = (human, ai)  # same key: replaced in place, order kept

    def clear(self) -> None:
        self.exchanges.clear()

    def __len__(self) -> int:
        return len(self.exchanges)


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
        self._budget: Budget | None = None
        self._budget_args: dict[str, Any] = {}
        self._ledger: tuple[str | os.PathLike[str] | None, Ledger] | None = None  # (spec, ledger) opened here
        self._metrics: LocalMetrics | None = None
        self._cache: ResponseCache | None = None
        self._pickers: dict[tuple[Any, ...], AutoPicker] = {}
        self.sinks: list[Callable[[CallRecord], object]] = []
        self.conversation = Conversation()
        self._noticed = False

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
    ) -> Session:
        """Change the defaults. Budget limits given here replace the session budget (same ledger)."""
        with self._lock:
            if models is not None:
                chain = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
                chain = [m for m in chain if m != ""]
                if not chain:
                    raise ConfigError("models must name at least one model, e.g. 'openai/gpt-4o-mini,sandbox/fast'")
                from coffee_nb._invoker import AutoPicker

                AutoPicker(chain[0], chain[1:])  # validates every spec now, with a clear error
                self.models = chain
                self._pickers.clear()
            if temperature is not None:
                self.temperature = check_temperature(temperature)
            if max_tokens is not None:
                self.max_tokens = positive_int("max_tokens", max_tokens)
            if system is not None:
                self.system = system or None
            if policy is not None:
                self.policy = policy
                self._pickers.clear()
            if cache is not None:
                self.cache_enabled = bool(cache)
            limits = {"hourly": hourly, "daily": daily, "weekly": weekly, "monthly": monthly, "total": total}
            limits = {k: v for k, v in limits.items() if v is not None}
            if budget is not None:
                self._budget = budget
                self._budget_args = {}  # limits given later start from the defaults, not from this object
                self._pickers.clear()
            elif limits or hard is not None or ledger is not None:
                # given limits are added to (or replace) the current ones; Budget(...) via budget= for full control
                args = dict(self._budget_args or {"daily": DEFAULT_DAILY_BUDGET})
                args.update(limits)
                if hard is not None:
                    args["hard"] = hard
                if ledger is not None:
                    args["ledger"] = ledger
                self._budget = self._new_budget(args)
                self._budget_args = args
                self._pickers.clear()
            if metrics is not None:
                self._metrics = metrics
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
        shared by the session's budgets until ``reset()`` closes it. A ledger object stays the caller's."""
        from coffee_nb.budget import Budget, open_ledger

        spec = args.get("ledger")
        if spec is not None and not isinstance(spec, (str, os.PathLike)):
            return Budget(**args)
        if self._ledger is None or self._ledger[0] != spec:
            ledger = open_ledger(spec if spec is None or isinstance(spec, str) else Path(spec), "default")
            self._opened.append(ledger)
            self._ledger = (spec, ledger)
        return Budget(**{**args, "ledger": self._ledger[1]})

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
        with self._lock:
            if self._cache is None:
                from coffee_nb._cache import ResponseCache

                self._cache = ResponseCache()
                self._opened.append(self._cache)
            return self._cache

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
                return hit
        picker = self.picker(chain, budget)
        call_kwargs: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        start = time.perf_counter()
        if on_token is not None:
            from coffee_nb._streams import Collector, is_restart

            collector = Collector()
            for chunk in picker.stream(messages, **call_kwargs):
                if is_restart(chunk) and on_restart is not None:
                    on_restart(chunk.response_metadata["coffee_nb"])  # the answer starts over on another model
                collector.add(chunk)
                if chunk.content:
                    on_token(chunk.text)
            message = collector.result()
        else:
            message = picker.invoke(messages, **call_kwargs)
        answer = self._answer(message, format, time.perf_counter() - start)
        answer.notice = notice
        if key is not None:
            self.cache.put(key, message, {"model": answer.model, "provider": answer.provider, "tokens": answer.tokens})
        if chat is not None:
            self.conversation.record(chat, messages[-1], message)
        return answer

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
        )
        if format == "json":
            answer.parsed = parse_json(answer.text)
        return answer

    def _from_cache(self, key: str, format: str) -> Answer | None:  # noqa: A002
        start = time.perf_counter()
        found = self.cache.get(key)
        if found is None:
            return None
        message, stored = found
        from coffee_nb._records import CallRecord, Outcome, Role, global_sinks, publish

        latency = time.perf_counter() - start
        tokens = stored.get("tokens", {})
        record = CallRecord(
            call_id=uuid.uuid4().hex,
            attempt=0,
            role=Role.PRIMARY,
            provider=stored.get("provider", "?"),
            model=stored.get("model", "?"),
            outcome=Outcome.OK,
            started_at=datetime.now(UTC),
            latency_s=latency,
            input_tokens=int(tokens.get("input", 0)),
            output_tokens=int(tokens.get("output", 0)),
            cost=Decimal(0),
            price_source="cache",
            cache_hit=True,
        )
        publish([self.metrics.emit, *self.sinks], record)
        publish(global_sinks(), record)
        meta = {
            "call_id": record.call_id,
            "model": record.model,
            "provider": record.provider,
            "role": "primary",
            "fallback_reason": None,
            "attempts": [
                {"model": record.model, "role": "primary", "outcome": "ok", "error_class": None, "latency_s": latency}
            ],
            "tokens": tokens,
            "cost": Decimal(0),
            "priced": True,
            "price_source": "cache",
            "latency_s": latency,
            "ttft_s": None,
            "cache_hit": True,
        }
        message = message.model_copy(update={"response_metadata": {**message.response_metadata, "coffee_nb": meta}})
        answer = self._answer(message, format, latency)
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
        """Per candidate: estimated input tokens, context window, worst-case cost, and budget left after. No call."""
        from coffee_nb._invoker import DEFAULT_OUTPUT_ESTIMATE
        from coffee_nb._tokens import count_message_tokens

        picker = self.picker(models)
        messages = self.messages(prompt, system=system, chat=chat)
        cap = max_tokens or self.max_tokens
        status = self.budget.status()
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


def configure(**kwargs: Any) -> Session:
    """Set session defaults from Python: ``coffee_nb.configure(models=[...], daily=5, system="...")``."""
    return get_session().configure(**kwargs)


def reset() -> None:
    """Reset the session to its defaults (chain, budget object, metrics, chat memory)."""
    get_session().reset()


def ask(prompt: str, **kwargs: Any) -> Answer:
    """Ask the session's chain from Python (same cache, budget and metrics as ``%%llm``)."""
    return get_session().ask(prompt, **kwargs)
