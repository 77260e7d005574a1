"""All of coffee_nb's process-global state, in one place, with one reset.

=============================  =============  =================================================
state                          held in        read and changed through (names unchanged)
=============================  =============  =================================================
registered prices, resolved    ``PRICES``     ``_pricing``: register_price, reset_prices,
model facts, their generation                 model_info, price_for, generation
providers (name → builder)     ``PROVIDERS``  ``_models``: register_provider, PROVIDERS
global record sinks            ``SINKS``      ``_records``: global_sinks, capture_records
HTTP settings, pooled clients  ``HTTP``       ``_http``: configure_http, get_http_client, close
the notebook session           ``SESSION``    ``_session``: get_session, configure, reset
model aliases                  ``ALIASES``    ``_aliases``: set_alias, remove_alias, resolve
sandbox server, latency scale, ``SANDBOX``    ``coffee_nb.sandbox``: server, stop,
served models                                 set_latency_scale, add_model, MODELS
=============================  =============  =================================================

:func:`reset_defaults` puts every piece back as a fresh process would have it, closing what was
opened (pooled HTTP clients, the session's ledger and cache connections, the sandbox server we
started). :func:`isolated` sets the current state aside for a block and brings it back after
(``coffee_nb.testing.isolated``).

Rules that keep the hot path cheap: readers take no lock (a sink tuple is replaced, never mutated;
the price generation is an int), and the containers here are never rebound, only changed in place,
so modules may keep a direct reference (``_models.PROVIDERS is _config.PROVIDERS``).

Nothing here runs at import and nothing here imports the rest of coffee_nb, not even to name a type:
the containers are generic over what they hold, and each owner reads its own through a typed alias
(``_pricing.PRICES: PriceState[Price, ModelFacts]``); what this module calls on a held object (a
session's ``reset``, a server's ``stop``) is a protocol declared here. Defaults that live elsewhere come
in on first use: the provider registry calls its *loaders* (``"module:function"`` paths, which the
package root declares: the built-in providers, the sandbox's own entry), each registering through the
public ``register_provider`` hook, and again on first use after a reset; the sandbox's served models
are registered by ``coffee_nb.sandbox._catalog`` when it is imported.

Over ~400 lines by design: it is the one home of process-global state, so that nothing else keeps any.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio

    import httpx

    from coffee_nb._shared._records import CallRecord

__all__ = [
    "ALIASES",
    "HTTP",
    "PRICES",
    "PROVIDERS",
    "SANDBOX",
    "SESSION",
    "SINKS",
    "Registry",
    "isolated",
    "reset_defaults",
]

log = logging.getLogger("coffee_nb")
_Saved = TypeVar("_Saved")


class Resets(Protocol):
    """A held object that closes what it opened on :func:`reset_defaults` (the notebook session)."""

    def reset(self) -> None: ...


class Stops(Protocol):
    """A held server this process started, stopped on reset (the sandbox server)."""

    def stop(self) -> None: ...


_Price = TypeVar("_Price")  # pricing's Price
_Facts = TypeVar("_Facts")  # pricing's ModelFacts
_Entry = TypeVar("_Entry")  # a provider registry's Provider
_Session = TypeVar("_Session", bound=Resets)
_Server = TypeVar("_Server", bound=Stops)
_Model = TypeVar("_Model")  # a sandbox model


# -- prices ------------------------------------------------------------------------------------------
class PriceState(Generic[_Price, _Facts]):
    """User-registered prices and windows (by spec or name), resolved facts, and their generation."""

    __slots__ = ("lock", "custom", "windows", "resolved", "generation")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.custom: dict[str, _Price] = {}  # by spec or name
        self.windows: dict[str, int] = {}  # spec or name -> context window
        self.resolved: dict[tuple[str, str], _Facts] = {}  # by (name, spec)
        # Bumped on every change, never reset: holders of resolved facts compare it to know they're stale.
        self.generation = 0

    def changed(self) -> None:
        """Resolved facts may be stale: drop them and bump the generation."""
        with self.lock:
            self.resolved.clear()
            self.generation += 1

    def reset(self) -> None:
        with self.lock:
            self.custom.clear()
            self.windows.clear()
            self.resolved.clear()
            self.generation += 1

    def take(self) -> tuple[dict[str, _Price], dict[str, int]]:
        with self.lock:
            saved = (dict(self.custom), dict(self.windows))
        self.reset()
        return saved

    def put(self, saved: tuple[dict[str, _Price], dict[str, int]]) -> None:
        with self.lock:
            self.custom.clear()
            self.custom.update(saved[0])
            self.windows.clear()
            self.windows.update(saved[1])
            self.resolved.clear()
            self.generation += 1


# -- registries with lazily loaded defaults ------------------------------------------------------------
class Registry(dict[str, _Entry]):
    """A name → entry dict whose default entries are registered on first :meth:`ready` by the loaders
    (``"module:function"`` paths, imported then), and again on first use after :meth:`reset`. The
    loaders are declared by whoever composes the package (``coffee_nb/__init__``), never here.

    Readers call ``ready()`` before looking up; it is one attribute test once loaded. Every change bumps
    ``generation``, so a reader's derived tables (error slices, key variables) check one int, not the entries.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self.generation = 0

    def __setitem__(self, key: str, value: _Entry) -> None:
        super().__setitem__(key, value)
        self.generation += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.generation += 1

    def __ior__(self, other: Any) -> Registry[_Entry]:  # type: ignore[override,misc]  # dict's |= would skip the count
        self.update(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.generation += 1

    def pop(self, *args: Any) -> Any:
        self.generation += 1
        return super().pop(*args)

    def popitem(self) -> tuple[str, _Entry]:
        self.generation += 1
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.generation += 1
        return super().setdefault(key, default)

    def clear(self) -> None:
        super().clear()
        self.generation += 1

    def ready(self) -> Registry[_Entry]:
        if self._loaded:
            return self
        with self._lock:
            # _loading: a loader registering through the public hook re-enters here on this thread
            if not self._loaded and not self._loading:
                self._loading = True
                try:
                    for path in _root_loaders():
                        module, _, function = path.partition(":")
                        getattr(importlib.import_module(module), function)()
                    self._loaded = True
                finally:
                    self._loading = False
        return self

    def reset(self) -> None:
        with self._lock:
            self.clear()
            self._loaded = False

    def take(self) -> tuple[dict[str, _Entry], bool]:
        with self._lock:
            saved = (dict(self), self._loaded)
            self.reset()
        return saved

    def put(self, saved: tuple[dict[str, _Entry], bool]) -> None:
        with self._lock:
            self.clear()
            self.update(saved[0])
            self._loaded = saved[1]


def _root_loaders() -> tuple[str, ...]:
    """The default loaders, declared by the package root (``coffee_nb/__init__``, which composes the
    layers; always imported before anything in it)."""
    root = sys.modules.get(__name__.partition(".")[0])
    return tuple(getattr(root, "_PROVIDER_LOADERS", ()))


# -- record sinks --------------------------------------------------------------------------------------
class SinkState:
    """Sinks every AutoPicker publishes to: a tuple replaced (never mutated) under the lock, read without."""

    __slots__ = ("lock", "sinks")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sinks: tuple[Callable[[CallRecord], object], ...] = ()

    def add(self, sink: Callable[[CallRecord], object]) -> None:
        with self.lock:
            self.sinks = (*self.sinks, sink)

    def remove(self, sink: Callable[[CallRecord], object]) -> None:
        with self.lock:
            self.sinks = tuple(s for s in self.sinks if s is not sink)

    def reset(self) -> None:
        with self.lock:
            self.sinks = ()

    def take(self) -> tuple[Callable[[CallRecord], object], ...]:
        with self.lock:
            saved, self.sinks = self.sinks, ()
        return saved

    def put(self, saved: tuple[Callable[[CallRecord], object], ...]) -> None:
        with self.lock:
            self.sinks = saved


# -- HTTP ---------------------------------------------------------------------------------------------
DEFAULT_HTTP_SETTINGS: dict[str, float | int] = {
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 30.0,
    "timeout": 60.0,
}


# settings, the sync client, (event loop, async client) pairs
_HttpSaved = tuple[
    dict[str, float | int], "httpx.Client | None", list[tuple["asyncio.AbstractEventLoop", "httpx.AsyncClient"]]
]


class HttpState:
    """Pool settings, the shared sync client and one async client per event loop."""

    __slots__ = ("lock", "settings", "sync_client", "async_clients")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settings: dict[str, float | int] = dict(DEFAULT_HTTP_SETTINGS)
        self.sync_client: httpx.Client | None = None
        self.async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def close_clients(self) -> None:
        """Close every pooled client (async ones on their own loop when it still runs)."""
        with self.lock:
            sync, self.sync_client = self.sync_client, None
            pairs = list(self.async_clients.items())
            self.async_clients.clear()
        _close_http(sync, pairs)

    def reset(self) -> None:
        self.close_clients()
        with self.lock:
            self.settings.clear()
            self.settings.update(DEFAULT_HTTP_SETTINGS)

    def take(self) -> _HttpSaved:
        with self.lock:
            saved = (dict(self.settings), self.sync_client, list(self.async_clients.items()))
            self.sync_client = None
            self.async_clients.clear()
            self.settings.clear()
            self.settings.update(DEFAULT_HTTP_SETTINGS)
        return saved

    def put(self, saved: _HttpSaved) -> None:
        settings, sync, pairs = saved
        with self.lock:
            self.settings.clear()
            self.settings.update(settings)
            self.sync_client = sync
            self.async_clients.clear()
            for loop, client in pairs:
                self.async_clients[loop] = client


def _close_http(sync: httpx.Client | None, pairs: list[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]]) -> None:
    if sync is not None:
        sync.close()
    if not pairs:
        return
    import asyncio  # lazy: asyncio

    for loop, client in pairs:
        if loop.is_closed():
            continue
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(client.aclose())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        else:
            loop.run_until_complete(client.aclose())


# -- the notebook session ----------------------------------------------------------------------------
class SessionState(Generic[_Session]):
    """The process-wide ``Session`` (created on first ``get_session()``)."""

    __slots__ = ("lock", "session")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.session: _Session | None = None

    def reset(self) -> None:
        with self.lock:
            session, self.session = self.session, None
        if session is not None:
            session.reset()  # closes its ledger and cache connections; a stale reference still works

    def take(self) -> _Session | None:
        with self.lock:
            saved, self.session = self.session, None
        return saved

    def put(self, saved: _Session | None) -> None:
        with self.lock:
            self.session = saved


# -- the sandbox ---------------------------------------------------------------------------------------
def env_latency_scale() -> float:
    """``COFFEE_NB_SANDBOX_LATENCY_SCALE`` slows (or, at 0, removes) simulated latency, e.g. for demos."""
    raw = os.environ.get("COFFEE_NB_SANDBOX_LATENCY_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if value >= 0 else 1.0


class SandboxState(Generic[_Server, _Model]):
    """The sandbox server this process started, its latency scale, and the models it serves."""

    __slots__ = ("lock", "server", "latency_scale", "models", "builtin_models", "exit_hook")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server: _Server | None = None  # started by coffee_nb.sandbox.server()
        self.latency_scale: float | None = None  # None: read the environment on first use
        self.models: dict[str, _Model] = {}  # by name; filled when the catalog is imported
        self.builtin_models: dict[str, _Model] = {}  # what a reset brings back
        self.exit_hook = False  # atexit registered once, not once per started server

    def scale(self) -> float:
        scale = self.latency_scale
        if scale is None:
            scale = self.latency_scale = env_latency_scale()
        return scale

    def stop(self) -> None:
        with self.lock:
            server, self.server = self.server, None
        if server is not None:
            server.stop()

    def reset(self) -> None:
        self.stop()
        with self.lock:
            self.latency_scale = None
            self.models.clear()
            self.models.update(self.builtin_models)

    def take(self) -> tuple[_Server | None, float | None, dict[str, _Model]]:
        with self.lock:
            saved = (self.server, self.latency_scale, dict(self.models))
            self.server = None
            self.latency_scale = None
            self.models.clear()
            self.models.update(self.builtin_models)
        return saved

    def put(self, saved: tuple[_Server | None, float | None, dict[str, _Model]]) -> None:
        with self.lock:
            self.server, self.latency_scale, models = saved
            self.models.clear()
            # the built-ins too: the catalog may have been imported (and registered them) since take()
            self.models.update(self.builtin_models)
            self.models.update(models)


# -- the notebook's cassette --------------------------------------------------------------------------
class CassetteState:
    """The process-wide cassette (``%llm_cassette``, ``configure(cassette=...)``); a ``with cassette(...)``
    block overrides it for its own context."""

    __slots__ = ("cassette", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cassette: Any = None

    def reset(self) -> None:
        with self.lock:
            self.cassette = None

    def take(self) -> Any:
        with self.lock:
            saved, self.cassette = self.cassette, None
        return saved

    def put(self, saved: Any) -> None:
        with self.lock:
            self.cassette = saved


# -- model aliases -----------------------------------------------------------------------------------
class AliasState:
    """Model aliases (name → spec), read without a lock: the dict is replaced, never mutated (``_aliases``)."""

    __slots__ = ("lock", "names")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}

    def reset(self) -> None:
        with self.lock:
            self.names = {}

    def take(self) -> dict[str, str]:
        with self.lock:
            saved, self.names = self.names, {}
        return saved

    def put(self, saved: dict[str, str]) -> None:
        with self.lock:
            self.names = saved


class _State(Protocol[_Saved]):
    """What every piece of global state above offers: reset, and take/put for :func:`isolated`."""

    def reset(self) -> None: ...
    def take(self) -> _Saved: ...
    def put(self, saved: _Saved, /) -> None: ...


# -- the one instance of each ------------------------------------------------------------------------
# Typed Any here: each owner reads its own through an alias typed with its classes.
PRICES: PriceState[Any, Any] = PriceState()
PROVIDERS: Registry[Any] = Registry()  # its default loaders: declared by coffee_nb/__init__
SINKS = SinkState()
HTTP = HttpState()
SESSION: SessionState[Any] = SessionState()
SANDBOX: SandboxState[Any, Any] = SandboxState()
CASSETTE = CassetteState()
ALIASES = AliasState()

# closing order: the session first (its pickers use HTTP clients and the sandbox), prices last
_STATES: tuple[_State[Any], ...] = (SESSION, CASSETTE, SANDBOX, HTTP, SINKS, PROVIDERS, PRICES, ALIASES)


def reset_defaults() -> None:
    """Every piece of global state back to a fresh process's: registered prices and providers forgotten,
    global sinks removed, HTTP settings back to defaults and pooled clients closed, the session's ledger
    and cache connections closed (a new session is made on next use), the sandbox server stopped.

    Everything is reset even when closing one part fails; the first failure is raised after.
    """
    first: BaseException | None = None
    for state in _STATES:
        try:
            state.reset()
        except Exception as exc:  # reset the rest, then report
            log.exception("coffee_nb: resetting %s failed", type(state).__name__)
            first = first or exc
    if first is not None:
        raise first


@contextmanager
def isolated() -> Iterator[None]:
    """Run a block with a clean global state, then close what it opened and bring the previous state back.

    >>> with isolated():
    ...     register_price("openai/x", input=1, output=2)   # gone after the block
    """
    saved = [(state, state.take()) for state in _STATES]
    try:
        yield
    finally:
        try:
            reset_defaults()
        finally:
            for state, value in reversed(saved):
                state.put(value)
