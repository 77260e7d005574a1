"""nbval runs of the tutorials: each notebook gets a fresh coffee_nb data dir (ledger, cache), as
tools/make_notebooks.py gives it when it writes the outputs. The real-provider notebook replays its
committed cassette in strict mode, so it needs no keys."""

from __future__ import annotations

import os
import tempfile

import pytest

_CURRENT: list[object] = [None]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    notebook = item.parent
    if notebook is not _CURRENT[0]:  # the first cell of a notebook: its kernel starts after this hook
        _CURRENT[0] = notebook
        os.environ["COFFEE_NB_DATA_DIR"] = tempfile.mkdtemp(prefix="coffee_nb-nbval-")
