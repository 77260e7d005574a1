from __future__ import annotations

import pytest

from coffee_nb import sandbox


@pytest.fixture(autouse=True)
def quiet_sandbox():
    """No simulated latency (tests that measure it turn it back on) and no leftover faults."""
    sandbox.set_latency_scale(0)
    sandbox.clear_faults()
    yield
    sandbox.clear_faults()
    sandbox.set_latency_scale(0)
