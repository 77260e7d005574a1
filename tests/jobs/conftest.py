from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _quiet(quiet_sandbox):
    """Every job test: no simulated sandbox latency (a test that needs rows in flight turns it on), no faults."""
    yield


@pytest.fixture
def tickets() -> pd.DataFrame:
    """A small frame with a non-default index, so order and index are checked everywhere."""
    texts = [f"ticket {i}: my order {i} never came" for i in range(40)]
    return pd.DataFrame({"text": texts, "n": range(40)}, index=[f"t{i:03d}" for i in reversed(range(40))])
