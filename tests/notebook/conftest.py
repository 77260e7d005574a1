from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

import coffee_nb
from coffee_nb import sandbox


@pytest.fixture
def ip():
    """A real InteractiveShell with coffee_nb loaded, a fresh session and a quiet sandbox."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.reset()
    sandbox.set_latency_scale(0)
    sandbox.clear_faults()
    yield shell
    sandbox.clear_faults()
    coffee_nb.reset()
