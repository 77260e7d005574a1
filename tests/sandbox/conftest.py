from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):
    """Every sandbox test: no simulated latency (tests that measure it turn it on), no leftover faults."""
    yield
