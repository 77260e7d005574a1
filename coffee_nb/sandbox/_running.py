"""This process's sandbox server: started on first use, stopped at exit (``coffee_nb.sandbox.server``).

The handle lives in ``coffee_nb._shared._config`` (``reset_defaults()`` stops the server); the provider
(``_provider``) and the package's helpers both start it from here.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

from coffee_nb._shared import _config

if TYPE_CHECKING:
    from coffee_nb.sandbox._catalog import SandboxModel
    from coffee_nb.sandbox._server import SandboxServer

__all__ = ["server", "stop"]

_SANDBOX: _config.SandboxState[SandboxServer, SandboxModel] = _config.SANDBOX


def server() -> SandboxServer:
    """This process's sandbox server, started on first use."""
    srv = _SANDBOX.server
    if srv is not None:
        return srv
    from coffee_nb.sandbox._server import SandboxServer  # lazy: h11

    with _SANDBOX.lock:
        if _SANDBOX.server is None:
            _SANDBOX.server = SandboxServer(latency_scale=_SANDBOX.scale()).start()
            if not _SANDBOX.exit_hook:  # once, not once per server started
                atexit.register(stop)
                _SANDBOX.exit_hook = True
        return _SANDBOX.server


def stop() -> None:
    """Stop this process's sandbox server (a later use starts a new one)."""
    _SANDBOX.stop()
