"""A user's own chat model on more than one event loop.

An async HTTP client's connections belong to the event loop that opened them: the same instance called
from a second loop (a second ``asyncio.run``, a second ``map_rows`` job, a worker thread's loop) fails with
"Event loop is closed", or reads a socket of a loop that still runs elsewhere. Models coffee_nb builds from
specs are built per loop. A user's instance is used as it is on the loop its async client belongs to (the
first loop coffee_nb calls it on), and on any other loop through a copy that is the same in everything
(model, key, URL, timeout, headers, ``max_tokens``, callbacks) but a fresh async client on coffee_nb's pool
for that loop. How to make that copy depends on the chat model class: a provider that knows declares it as
:class:`AsyncClients` (``register_provider(..., async_clients=...)``, for the ``classes`` it names);
instances of other classes are used as they are.

A client the user gave the model (``http_async_client=``) stays theirs: it is never swapped for another.
When it still holds connections of another event loop, the attempt fails with :class:`ClientLoopError`,
which says so (an httpx client can't move between event loops).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coffee_nb.errors._errors import CoffeeError, MissingAPIKeyError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["AsyncClients", "ClientLoopError", "connections", "for_loop"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncClients:
    """How instances of a chat model class hold their async HTTP connections, and how to renew them.

    ``held_by(model)``: the HTTP client whose pool holds the model's async connections (None: it has none);
    ``theirs(model)``: the user gave the model that client (then it is never replaced);
    ``renew(model, loop)``: a copy of ``model``, the same but for a fresh async client for ``loop``.
    """

    held_by: Callable[[Any], Any]
    theirs: Callable[[Any], bool]
    renew: Callable[[Any, asyncio.AbstractEventLoop], Any]


class ClientLoopError(MissingAPIKeyError):
    """A chat model's own async HTTP client (one the user gave it) holds connections of another event loop,
    so it can't serve a call on this one. Like a missing setting, an error of that attempt (classified as
    ``auth``): the chain falls back past it, and the message says how to fix it."""

    def __init__(self, model: Any, closed: bool) -> None:
        self.provider = type(model).__name__
        self.env_var = ""
        where = "an event loop that has closed" if closed else "another event loop, still running"
        CoffeeError.__init__(
            self,
            f"{self.provider}'s own async HTTP client (the http_async_client you gave it) holds connections of "
            f"{where}, and an httpx client can't move between event loops: leave http_async_client out "
            "(coffee_nb then gives each event loop a fresh client of its own) or give the model one made on "
            "the event loop that runs the call.",
        )


_LOCK = threading.Lock()
# the event loop each async HTTP client we have used belongs to; weak both ways (a dead reference: its loop
# is gone, and connections it still holds can't be used again)
_HOMES: weakref.WeakKeyDictionary[Any, weakref.ref[asyncio.AbstractEventLoop]] = weakref.WeakKeyDictionary()


def for_loop(
    model: BaseChatModel, loop: asyncio.AbstractEventLoop, declared: Callable[[Any], AsyncClients | None]
) -> BaseChatModel:
    """The chat model to call on ``loop`` for a user's ``model``: itself on the loop its async connections
    belong to (or when it holds none); on another loop a copy with a fresh async client, for classes a
    provider knows how to renew (``declared(model)``: the registry's ``async_clients_of``); else ``model``
    as it is. A client of the user's that holds another loop's connections raises :class:`ClientLoopError`.
    Call once per loop and keep the answer (``Candidate`` does, weakly per loop)."""
    inner, wrap = _unwrapped(model)
    clients = declared(inner)
    if clients is None:
        return model
    holder = clients.held_by(inner)
    if holder is None or not _weakly_keyed(holder):
        return model
    theirs = bool(clients.theirs(inner))
    with _LOCK:
        ref = _HOMES.get(holder)
        home = ref() if ref is not None else None
        if ref is not None and home is loop:
            return model
        held = connections(holder)
        # the first loop keeps the instance, unless its client already holds connections (of a loop we never
        # saw: the user's own calls); a client of the user's moves on when its old loop left nothing behind
        if (ref is None and (theirs or not held)) or (theirs and not held):
            _HOMES[holder] = weakref.ref(loop)
            return model
    if theirs:
        raise ClientLoopError(inner, closed=home is None or home.is_closed())
    renewed: BaseChatModel = wrap(clients.renew(inner, loop))
    return renewed


def connections(client: Any) -> int | None:
    """How many connections ``client``'s pools hold (httpx or httpx2; None: a transport we can't see into,
    such as a mock or coffee_nb's pooled ones, which belong to no loop)."""
    transports = [getattr(client, "_transport", None), *(getattr(client, "_mounts", None) or {}).values()]
    counts = [
        len(held)
        for transport in transports
        if isinstance(held := getattr(getattr(transport, "_pool", None), "connections", None), list)
    ]
    return sum(counts) if counts else None


def _weakly_keyed(client: Any) -> bool:
    """Can ``client`` key the weak table of homes? (httpx's and httpx2's clients can; a stranger may not.)"""
    try:
        weakref.ref(client)
        hash(client)
    except TypeError:
        return False
    return True


def _unwrapped(model: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The chat model inside ``.bind(...)`` / ``.with_config(...)`` wrappers, and how to wrap a copy the same."""
    from langchain_core.runnables.base import RunnableBindingBase  # lazy: langchain_core

    if isinstance(model, RunnableBindingBase):
        inner, wrap = _unwrapped(model.bound)
        return inner, lambda copy: model.model_copy(update={"bound": wrap(copy)})
    return model, lambda copy: copy
