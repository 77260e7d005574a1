"""Every touch of LangChain, LangSmith and pydantic internals, behind named functions.

An upgrade that renames one of these must fail loudly, not silently skip callbacks or tracing the
user turned on: :func:`internals_missing` lists what is gone (``tests/test_compat.py`` asserts it is
empty), and the fast path switches itself off (with one warning) when anything is missing.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, AsyncCallbackManagerForLLMRun, CallbackManager
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from coffee_nb._plan import Usage

__all__ = [
    "as_chunk",
    "as_message",
    "child_config",
    "internals_missing",
    "nothing_listening",
    "private_state",
    "restart_event",
    "shared_output",
    "usage_of",
]


def private_state(model: Any, name: str) -> Any:
    """A pydantic private attribute, read directly (pydantic's ``__getattr__`` is slow on the hot path)."""
    return model.__pydantic_private__[name]


class _Switches:
    """Where LangChain and LangSmith keep their global "is anyone listening" switches; resolved once."""

    def __init__(self) -> None:
        import langchain_core.globals as lc_globals
        from langchain_core.tracers.context import _configure_hooks, tracing_v2_callback_var
        from langsmith import utils as ls_utils
        from langsmith._internal import _context as ls_context

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
        from coffee_nb.testing import ScriptedChatModel

        if not isinstance(getattr(ScriptedChatModel(), "__pydantic_private__", None), dict):
            missing.append("pydantic: BaseModel.__pydantic_private__ is not a dict")
        if not hasattr(BaseChatModel, "_convert_input"):
            missing.append("langchain_core: BaseChatModel._convert_input")
    except ImportError as exc:
        missing.append(str(exc))
    manager = CallbackManager(handlers=[])
    try:
        for name in ("set_handlers", "add_tags", "add_metadata", "parent_run_id"):
            getattr(manager, name)
    except AttributeError as exc:
        missing.append(f"callback managers: {exc}")
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


def child_config(run_manager: Any) -> dict[str, Any] | None:
    """Config for a candidate's run, nested under ours so callbacks and traces propagate."""
    if run_manager is None:
        return None

    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


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
