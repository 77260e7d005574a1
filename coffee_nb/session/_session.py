"""The notebook session: the defaults ``%%llm`` uses (model chain, budget, metrics, cache, chat), in one
object with ``configure()`` / ``reset()`` (its configuration half: ``_settings``; dry runs: ``_dry_run``).
Nothing here imports a notebook library; nothing runs at import.

>>> import coffee_nb
>>> coffee_nb.configure(models=["openai/gpt-4o-mini", "sandbox/fast"], daily=5)
>>> coffee_nb.ask("Why is the sky blue?").text
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from coffee_nb._shared import _config
from coffee_nb._shared._format import money, parse_json
from coffee_nb._shared._paths import StorageError
from coffee_nb._shared._records import global_sinks, publish
from coffee_nb.errors._errors import CoffeeError, ConfigError, is_clean, redact, scrub
from coffee_nb.invoke._summary import CallSummary
from coffee_nb.providers._aliases import resolve
from coffee_nb.replay._cassette import active
from coffee_nb.session._answer import Answer, AnswerError
from coffee_nb.session._interpolate import Prompt, prompt_text
from coffee_nb.session._settings import ASKING, SessionSettings

# "x as x": the session's constants, importable from here as before
from coffee_nb.session._settings import DEFAULT_DAILY_BUDGET as DEFAULT_DAILY_BUDGET
from coffee_nb.session._settings import KEYED_DEFAULTS as KEYED_DEFAULTS
from coffee_nb.session._settings import KNOWN_MODELS as KNOWN_MODELS
from coffee_nb.session._settings import SANDBOX_CHAIN as SANDBOX_CHAIN

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage, BaseMessage

    from coffee_nb.budget import Budget
    from coffee_nb.invoke._health import Health

__all__ = [
    "Answer",
    "AnswerError",
    "Session",
    "ask",
    "configure",
    "get_session",
    "health",
    "money",
    "parse_json",
    "reset",
]

FORMATS = ("markdown", "text", "code", "json", "html")


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _noting(method: Callable[Concatenate[Session, Prompt, _P], _T]) -> Callable[Concatenate[Session, Prompt, _P], _T]:
    """While ``method`` runs, the session's records are noted with its prompt (``%llm_history``)."""

    @functools.wraps(method)
    def wrapper(self: Session, prompt: Prompt, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        token = ASKING.set(prompt_text(prompt) if isinstance(prompt, (str, list)) else None)
        try:
            return method(self, prompt, *args, **kwargs)
        finally:
            ASKING.reset(token)

    return wrapper


def _parsed(answer: Answer) -> Answer:
    """``answer`` with its JSON parsed (``format="json"``); an answer that isn't JSON is an AnswerError
    that still carries it (it was paid for)."""
    if answer.format == "json":
        try:
            answer.parsed = parse_json(answer.text)
        except ValueError as exc:
            raise AnswerError(f"{exc}; the answer is kept, as text, in the error's .answer", answer) from None
    return answer


class Session(SessionSettings):
    """Defaults for the magics and ``coffee_nb.ask``: model chain, budget, metrics, cache, chat."""

    # -- asking ------------------------------------------------------------------------------------------
    def messages(self, prompt: Prompt, *, system: str | None = None, chat: str | None = None) -> list[BaseMessage]:
        from langchain_core.messages import HumanMessage, SystemMessage  # lazy: langchain_core

        out: list[BaseMessage] = []
        system = system if system is not None else self.system
        if system:
            out.append(SystemMessage(system))
        if chat is not None:
            out += self.conversation.history(chat)
        out.append(HumanMessage(prompt))
        return out

    @_noting
    def ask(
        self,
        prompt: Prompt,
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
        starts over on another model). Identical requests come from the cache at $0.

        ``prompt`` is text, or LangChain content blocks (text and images: see ``coffee_nb.content_blocks``)."""
        if format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        chain, notice = (list(models), None) if models else self.chain()
        chain = [resolve(m) for m in chain]  # an alias: the model it names now (cache keys, records)
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
            use_cache = active() is None  # a cassette records and replays every call itself
        key = None
        if use_cache:
            from coffee_nb.replay._cache import request_key  # lazy: %load_ext path

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
        from coffee_nb.invoke._streams import Collector, handles_restarts, is_restart  # lazy: langchain_core

        collector = Collector()
        with handles_restarts():  # the cell clears what it showed at a restart marker
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
        meta = message.response_metadata.get("coffee_nb") or {}  # plain data (also from the cache)
        summary = CallSummary(meta)  # its money as Decimal
        answer = Answer(
            message=message,
            model=meta.get("model", "?"),
            provider=meta.get("provider", "?"),
            attempts=meta.get("attempts", []),
            cost=summary.cost,
            price_source=meta.get("price_source", "unpriced"),
            tokens=dict(meta.get("tokens") or {}),  # plain dict: JSON-able, stored in the cache
            latency_s=meta.get("latency_s", latency),
            fallback_reason=meta.get("fallback_reason"),
            format=format,
            budget_left=self._budget_left(),
            role=meta.get("role", "primary"),
            primary_model=meta.get("primary_model"),
            saved=summary.saved,
            replayed=summary.replayed,
            recorded_cost=summary.recorded_cost,
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
        from coffee_nb.replay._cache import replay  # lazy: %load_ext path

        record, message = replay(message, stored, time.perf_counter() - start)
        publish([self.metrics.emit, *self.sinks, *(e.emit for e in self.exporters), self._note_prompt], record)
        publish(global_sinks(), record)
        answer = self._answer(message, format, record.latency_s)
        answer.cache_hit = True
        return answer

    def dry_run(
        self,
        prompt: Prompt,
        *,
        models: Sequence[Any] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        chat: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per candidate: estimated input tokens, context window, worst-case cost, and budget left after
        (empty when the ledger can't be used). No call."""
        from coffee_nb.session._dry_run import dry_run  # lazy: %load_ext path

        return dry_run(self, prompt, models=models, system=system, max_tokens=max_tokens, chat=chat)


# the process-wide session lives in _config (reset_defaults() closes it): the same object, typed
_SESSION: _config.SessionState[Session] = _config.SESSION


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


def ask(prompt: Prompt, **kwargs: Any) -> Answer:
    """Ask the session's chain from Python (same cache, budget and metrics as ``%%llm``). ``prompt`` is
    text or content blocks; to fill ``{fields}`` from your variables as ``%%llm`` does (figures and
    images sent as images, DataFrames as tables), use ``coffee_nb.prompt("... {df}", locals())``."""
    return get_session().ask(prompt, **kwargs)


def health() -> Health:
    """The session's router health (``%%llm`` and ``coffee_nb.ask`` chains)."""
    return get_session().health()
