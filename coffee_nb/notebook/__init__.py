"""Notebook integration: the ``%%llm`` magics, rendering and (later) widgets. Only this package imports IPython."""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics. Cheap: LangChain, pandas and provider SDKs load on the first ``%%llm``."""
    from coffee_nb.notebook.magics import LLMMagics

    ipython.register_magics(LLMMagics)
