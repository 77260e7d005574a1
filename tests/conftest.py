from __future__ import annotations

import pytest

from coffee_nb import _pricing


@pytest.fixture(autouse=True)
def _clean_prices():
    """Registered prices are global: each test starts and ends without any."""
    _pricing.reset_prices()
    yield
    _pricing.reset_prices()


@pytest.fixture
def no_keys(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
