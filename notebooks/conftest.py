"""nbval runs of the tutorials: a fresh coffee_nb data dir (ledger, cache) per run; the real-provider
notebook only when keys are present."""

from __future__ import annotations

import os
import tempfile

import pytest

_DATA = tempfile.mkdtemp(prefix="coffee_nb-nbval-")
os.environ["COFFEE_NB_DATA_DIR"] = _DATA  # kernels started by nbval inherit it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keys = [v for v in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY") if os.environ.get(v)]
    if keys:
        return
    skip = pytest.mark.skip(reason="06_real_providers needs OPENAI_API_KEY or ANTHROPIC_API_KEY (none set)")
    for item in items:
        if "06_real_providers" in str(item.path):
            item.add_marker(skip)
