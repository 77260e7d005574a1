"""Every touch of LangChain, LangSmith and pydantic internals, behind named functions.

An upgrade that renames one of these must fail loudly, not silently skip callbacks or tracing the
user turned on: :func:`internals_missing` lists what is gone (``tests/test_compat.py`` asserts it is
empty), and the fast path switches itself off (with one warning) when anything is missing.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeVar

import langchain_core.globals as lc_globals
from langchain_core.callbacks import (
    AsyncCallbackHandler,
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
)
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.config import var_child_runnable_config as _child_config_var
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer
from langchain_core.utils.uuid import uuid7

from coffee_nb.invoke._plan import Usage

# Private internals: an upgrade that moves one turns the fast path off (with one warning; internals_missing()
# names it), it doesn't break the import.
try:
    from langsmith import utils as ls_utils
    from langsmith._internal import _context as ls_context
except ImportError as exc:
    _LANGSMITH_MOVED: str | None = str(exc)
else:
    _LANGSMITH_MOVED = None
try:
    from langchain_core.tracers import _streaming
except ImportError:
    _STREAMING_HANDLERS: tuple[type, ...] = ()
else:
    _STREAMING_HANDLERS = tuple(
        c
        for n in ("_StreamingCallbackHandler", "_V2StreamingCallbackHandler")
        if isinstance(c := getattr(_streaming, n, None), type)
    )

__all__ = [
    "PARENT",
    "InConfig",
    "RunParent",
    "as_chunk",
    "as_message",
    "child_config",
    "internals_missing",
    "nothing_listening",
    "own_run",
    "private_state",
    "read_answer",
    "restart_event",
    "scoped",
    "scoped_async",
    "shared_output",
    "usage_of",
]


def private_state(model: Any, name: str) -> Any:
    """A pydantic private attribute, read directly (pydantic's ``__getattr__`` is slow on the hot path)."""
    return model.__pydantic_private__[name]


class _Switches:
    """Where LangChain and LangSmith keep their global "is anyone listening" switches; resolved once."""

    def __init__(self) -> None:
        if _LANGSMITH_MOVED is not None:
            raise ImportError(_LANGSMITH_MOVED)
        from langchain_core.tracers.context import (  # lazy: tenacity, tornado (langsmith.run_helpers)
            _configure_hooks,
            tracing_v2_callback_var,
        )

        self.lc_globals = lc_globals
        self.tracing_var = tracing_v2_callback_var
        self.ls_context = ls_context
        self.get_env_var = ls_utils.get_env_var
        self.hooks = _configure_hooks
        self.environ = os.environ
        for name in ("_debug", "_verbose", "_llm_cache"):
            getattr(lc_globals, name)  # AttributeError now, not a silent skip later
        for name in ("_TRACING_ENABLED", "_PARENT_RUN_TREE_REF", "_GLOBAL_TRACING_ENABLED"):
            getattr(ls_context, name)

    def quiet(self, cache_off: bool) -> bool:
        g = self.lc_globals
        if g._debug or g._verbose or (not cache_off and g._llm_cache is not None):
            return False
        if self.tracing_var.get() is not None:
            return False
        ctx = self.ls_context
        enabled = ctx._TRACING_ENABLED.get()  # an explicit tracing_context(enabled=...) wins
        if enabled:
            return False
        parent = ctx._PARENT_RUN_TREE_REF.get()
        if parent is not None and parent() is not None:  # inside a traced run
            return False
        if enabled is None:
            if ctx._GLOBAL_TRACING_ENABLED:
                return False
            if ctx._GLOBAL_TRACING_ENABLED is None:
                env = self.get_env_var
                if env("TRACING_V2", default=env("TRACING", default="")) == "true":
                    return False
        environ = self.environ
        for var, _inheritable, handler_class, env_var in self.hooks:
            if var.get() is not None:
                return False
            if (
                env_var is not None
                and handler_class is not None
                and environ.get(env_var, "") not in ("", "0", "false", "False")
            ):
                return False
        return True


_switches: _Switches | None = None
_broken: str | None = None


def internals_missing() -> list[str]:
    """The LangChain/LangSmith/pydantic internals coffee_nb reads that this installation lacks."""
    missing: list[str] = []
    try:
        _Switches()
    except (ImportError, AttributeError) as exc:
        missing.append(f"listening switches: {exc}")
    try:
        from coffee_nb.testing import ScriptedChatModel  # lazy: httpx

        if not isinstance(getattr(ScriptedChatModel(), "__pydantic_private__", None), dict):
            missing.append("pydantic: BaseModel.__pydantic_private__ is not a dict")
        if not hasattr(BaseChatModel, "_convert_input"):
            missing.append("langchain_core: BaseChatModel._convert_input")
    except ImportError as exc:
        missing.append(str(exc))
    manager = CallbackManager(handlers=[])
    try:
        for name in ("set_handlers", "add_tags", "add_metadata", "parent_run_id", "configure"):
            getattr(manager, name)
    except AttributeError as exc:
        missing.append(f"callback managers: {exc}")
    if _STREAMING_HANDLERS == ():
        missing.append("langchain_core.tracers._streaming: _StreamingCallbackHandler")
    return missing


def nothing_listening(cache_off: bool) -> bool:
    """No global LLM cache, debug/verbose mode, LangSmith tracing, parent trace or configure hook is active.

    The same switches LangChain's callback manager looks at, read directly (this runs on every call).
    When they can't be read (a LangChain upgrade moved them), answers False: the slow, safe path.
    """
    global _switches, _broken
    switches = _switches
    if switches is None:
        if _broken is not None:
            return False
        try:
            switches = _switches = _Switches()
        except (ImportError, AttributeError) as exc:
            _broken = str(exc)
            warnings.warn(
                f"coffee_nb: LangChain internals moved ({exc}); AutoPicker's fast path is off. "
                "Calls still work, a little slower. Please report your langchain-core version.",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
    return switches.quiet(cache_off)


# -- one run tree -----------------------------------------------------------------------------------------
# LangChain's ``stream``/``astream`` and its invoke-by-streaming call ``_stream`` without the run manager
# (langchain-core 1.x), so a candidate called from there would start a run of its own beside AutoPicker's
# (or under whatever graph node is current). AutoPicker's own entry points choose their run's id and hold
# it here while LangChain's machinery runs, so the candidates' runs become children of it.


class RunParent(NamedTuple):
    """AutoPicker's own run: its id and the config it was started with."""

    picker: Any
    run_id: Any
    config: dict[str, Any]


PARENT: ContextVar[RunParent | None] = ContextVar("coffee_nb_parent_run", default=None)


def own_run(picker: Any, config: Any) -> tuple[dict[str, Any], RunParent]:
    """``config`` with the id AutoPicker's run will have (the caller's, or a new one), and that run."""
    config = dict(ensure_config(config))
    run_id = config.get("run_id") or uuid7()
    config["run_id"] = run_id
    return config, RunParent(picker, run_id, config)


_T = TypeVar("_T")


def scoped(inner: Iterator[_T], parent: RunParent) -> Iterator[_T]:
    """``inner``'s items, with ``parent`` current while each is produced (never across a yield)."""
    return _each_with(PARENT, parent, inner)


def scoped_async(inner: AsyncIterator[_T], parent: RunParent) -> AsyncIterator[_T]:
    """:func:`scoped` for an async iterator."""
    return _aeach_with(PARENT, parent, inner)


def _each_with(var: ContextVar[Any], value: Any, inner: Iterator[_T]) -> Iterator[_T]:
    """``inner``'s items, each produced with ``var`` set to ``value`` (reset before it is handed on)."""
    try:
        while True:
            token = var.set(value)
            try:
                item = next(inner)
            except StopIteration:
                return
            finally:
                var.reset(token)
            yield item
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


async def _aeach_with(var: ContextVar[Any], value: Any, inner: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """:func:`_each_with` for an async iterator."""
    try:
        while True:
            token = var.set(value)
            try:
                item = await anext(inner)
            except StopAsyncIteration:
                return
            finally:
                var.reset(token)
            yield item
    finally:
        close = getattr(inner, "aclose", None)
        if close is not None:
            await close()


_NO_TOKENS = (BaseCallbackHandler.on_llm_new_token, AsyncCallbackHandler.on_llm_new_token)


def hears_tokens(handler: Any) -> bool:
    """Does ``handler`` consume streamed tokens (LangGraph's messages stream, astream_events, a printer)?

    Tracers record runs (and may note tokens): they are not consumers and see every run.
    """
    if _STREAMING_HANDLERS and isinstance(handler, _STREAMING_HANDLERS):
        return True
    if isinstance(handler, (BaseTracer, AsyncBaseTracer)):
        return False
    return getattr(type(handler), "on_llm_new_token", None) not in _NO_TOKENS


class InConfig:
    """A candidate called with its config current (``var_child_runnable_config``), as LangChain's own
    runnables call their children: inside a LangGraph node that variable holds the node's config, and a
    candidate that merges configs (a ``bind_tools`` binding) would otherwise add the node's handlers to
    its run beside ours."""

    __slots__ = ("model",)

    def __init__(self, model: Any) -> None:
        self.model = model

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:  # noqa: A002 - LangChain's names
        token = _child_config_var.set(config)
        try:
            return self.model.invoke(input, config, **kwargs)
        finally:
            _child_config_var.reset(token)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        token = _child_config_var.set(config)
        try:
            return await self.model.ainvoke(input, config, **kwargs)
        finally:
            _child_config_var.reset(token)

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        token = _child_config_var.set(config)
        try:
            inner = self.model.stream(input, config, **kwargs)
        finally:
            _child_config_var.reset(token)
        return _each_with(_child_config_var, config, inner)

    def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:  # noqa: A002
        return _aeach_with(_child_config_var, config, self.model.astream(input, config, **kwargs))


class Untokened:
    """A token consumer as a candidate's run sees it: every event but the tokens.

    LangGraph's messages stream, astream_events and printing handlers see the candidates' runs start and
    end (one tree), but hear the answer's tokens once, from AutoPicker's own run, which relays only the
    chosen model's: never a losing hedge's, nor an abandoned stream's before a restart.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def __getattr__(self, name: str) -> Any:
        if name in _TOKEN_EVENTS:  # awaited in place for an async handler (no executor hop per token)
            return _aignore if inspect.iscoroutinefunction(getattr(self.handler, name, None)) else _ignore
        if name in _STREAM_TAPS:  # not a streaming handler itself: the candidate's invoke is not turned into a stream
            raise AttributeError(name)
        return getattr(self.handler, name)

    def __repr__(self) -> str:
        return f"Untokened({self.handler!r})"


_TOKEN_EVENTS = frozenset({"on_llm_new_token", "on_stream_event"})
NOSTREAM = "nostream"  # LangGraph's TAG_NOSTREAM: its messages stream skips a run tagged so
_STREAM_TAPS = frozenset({"tap_output_aiter", "tap_output_iter"})


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


async def _aignore(*args: Any, **kwargs: Any) -> None:
    return None


def _untokened(handlers: list[Any]) -> list[Any]:
    return [Untokened(h) if hears_tokens(h) else h for h in handlers]


def child_config(
    run_manager: Any, parent: RunParent | None = None, *, is_async: bool = False
) -> tuple[dict[str, Any] | None, bool]:
    """Config for a candidate's run, nested under ours so callbacks and traces propagate; and whether a
    token consumer listens to our run.

    Token consumers see the child's run without its tokens (:class:`Untokened`): AutoPicker's own run
    relays the answer's tokens, once, so LangGraph's ``stream_mode="messages"``, astream_events and
    printing handlers hear each token once.
    """
    if run_manager is not None:
        is_async = isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        cls: type[BaseCallbackManager] = AsyncCallbackManager if is_async else CallbackManager
        manager = cls(handlers=[], parent_run_id=run_manager.run_id)
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        heard = any(hears_tokens(h) for h in run_manager.handlers)
    elif parent is not None:
        config = parent.config
        configure = AsyncCallbackManager.configure if is_async else CallbackManager.configure
        manager = configure(
            inheritable_callbacks=config.get("callbacks"),
            inheritable_tags=config.get("tags"),
            inheritable_metadata=config.get("metadata"),
        )
        manager.parent_run_id = parent.run_id
        heard = any(hears_tokens(h) for h in manager.handlers)
    else:
        return None, False
    if heard or any(hears_tokens(h) for h in manager.handlers):
        manager.handlers = _untokened(manager.handlers)
        manager.inheritable_handlers = _untokened(manager.inheritable_handlers)
        # LangGraph's messages stream also emits a run's final message when it ends; the candidate's run can
        # end (on its worker thread) before our run has relayed its tokens: "nostream" is how LangGraph is told
        # to leave a run to its parent
        manager.add_tags([NOSTREAM])
    return {"callbacks": manager}, heard


RESTART_EVENT = "coffee_nb_restart"


def restart_event(config: dict[str, Any] | None, data: dict[str, Any]) -> Any:
    """Tell callback handlers a stream starts over on another model (a LangChain custom event).

    ``config`` is the child config of :func:`child_config`; returns an awaitable for async managers.
    """
    manager = (config or {}).get("callbacks")
    if manager is None:
        return None
    return manager.on_custom_event(RESTART_EVENT, data, run_id=manager.parent_run_id)


def usage_of(message: Any) -> Usage | None:
    """The usage a provider reported on ``message`` (LangChain's ``usage_metadata``), or None."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    in_details = usage.get("input_token_details") or {}
    out_details = usage.get("output_token_details") or {}
    return Usage(
        input=int(usage.get("input_tokens") or 0),
        output=int(usage.get("output_tokens") or 0),
        cached=int(in_details.get("cache_read") or 0),
        reasoning=int(out_details.get("reasoning") or 0),
        cache_write=int(in_details.get("cache_creation") or 0),
    )


def as_message(output: Any) -> tuple[AIMessage, dict[str, Any] | None]:
    """A candidate's output as a message: plain, or the ``include_raw`` dict of structured output."""

    if isinstance(output, BaseMessage):
        if not isinstance(output, AIMessage):
            output = AIMessage(content=output.content, response_metadata=output.response_metadata)
        return output, None
    if isinstance(output, dict) and isinstance(output.get("raw"), BaseMessage):
        raw, _ = as_message(output["raw"])
        return raw, {"parsed": output.get("parsed"), "parsing_error": output.get("parsing_error")}
    raise TypeError(f"a candidate returned {type(output).__name__}, expected a chat message")


def as_chunk(message: BaseMessage) -> ChatGenerationChunk:
    """A whole message as one stream chunk (structured output doesn't stream)."""

    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            response_metadata=message.response_metadata,
            usage_metadata=getattr(message, "usage_metadata", None),
            tool_calls=getattr(message, "tool_calls", []),
            id=message.id,
        )
    )


def read_answer(output: Any, instance: Any) -> tuple[AIMessage, dict[str, Any] | None, Usage | None, bool]:
    """Everything the runner reads off a candidate's answer, in one step: the message (see
    :func:`as_message`), the parsed structured output, the reported usage, and whether the message may be
    held elsewhere too (:func:`shared_output`)."""
    message, structured = as_message(output)
    return message, structured, usage_of(message), shared_output(instance)


def shared_output(instance: Any) -> bool:
    """Might the message a candidate returned also be held elsewhere (a cache, or a runnable that
    hands out the same object)? Then we annotate a copy. LangChain chat models set fields on the
    message of every call themselves, so theirs is ours to annotate when no cache is involved."""

    if instance is None:  # built by us: a LangChain chat model without a cache of its own
        return get_llm_cache() is not None
    if not isinstance(instance, BaseChatModel):
        return True
    cache = instance.cache
    if cache is False:
        return False
    return cache is not None or get_llm_cache() is not None
