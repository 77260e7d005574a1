"""Notebook integration: the ``%%llm`` magics, rendering and (later) widgets. Only this package imports IPython."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coffee_nb.notebook._warm import warm_up

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from coffee_nb.notebook._dashboard import Dashboard

__all__ = ["dashboard", "load_ipython_extension"]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics. Cheap: LangChain, pandas and provider SDKs load in a background thread
    (``notebook._warm``; ``COFFEE_NB_WARM=0``: on the first ``%%llm``)."""
    from coffee_nb.notebook.cassette_magic import CassetteMagics  # lazy: IPython
    from coffee_nb.notebook.compare_magic import CompareMagics  # lazy: IPython
    from coffee_nb.notebook.magics import LLMMagics  # lazy: IPython
    from coffee_nb.notebook.map_magic import MapMagics  # lazy: IPython
    from coffee_nb.notebook.session_magics import SessionMagics  # lazy: IPython

    ipython.register_magics(LLMMagics, CassetteMagics, MapMagics)
    ipython.register_magics(CompareMagics, SessionMagics)
    warm_up()  # a background thread readies the first %%llm (imports, ledger, sandbox); never blocks this


def dashboard(*, display: bool = True, **kwargs: Any) -> Dashboard:
    """The live dashboard of the notebook session (budget, latency, costs, counters, last calls)."""
    from coffee_nb.notebook._dashboard import dashboard as board  # lazy: %load_ext path

    return board(display=display, **kwargs)
