"""Fixtures for the hardening tests: canary keys, and real storage faults (a read-only directory, a tiny
full disk) where this machine allows them. The IPython shell ``ip`` is the suite's (tests/conftest.py)."""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

# Canary keys: unique strings that must never show up in any artifact. The second has no known key
# prefix ("sk-", "Bearer"): only redaction by value can catch it.
CANARY_OPENAI = "sk-proj-CANARYopenai0123456789abcdefXYZ"
CANARY_ANTHROPIC = "CANARYanthropicNoPrefix9876543210zyx"
CANARY_PARAM = "CANARYparamKey_5555aaaa6666bbbb"
CANARIES = (CANARY_OPENAI, CANARY_ANTHROPIC, CANARY_PARAM)


@pytest.fixture
def canaries(monkeypatch):
    """Canary keys in the environment, as a user with real keys would have them."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_OPENAI)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_ANTHROPIC)
    return CANARIES


def _need(reason: str) -> None:
    """Outside CI a fault this machine can't make skips with the reason; under CI=true it fails."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written in (chmod, or a read-only tmpfs as root)."""
    from coffee_nb.testing import read_only_dir

    stack = ExitStack()
    try:
        path = stack.enter_context(read_only_dir(tmp_path))
    except OSError as exc:
        _need(f"no read-only directory can be made here: {exc}")
    with stack:
        yield path


@pytest.fixture
def tiny_disk(tmp_path):
    """A directory on its own 512 KiB filesystem (root only: elsewhere the injected-SQLite-error tests
    cover a full disk)."""
    from coffee_nb.testing import tiny_disk

    stack = ExitStack()
    try:
        path = stack.enter_context(tiny_disk(512, tmp_path))
    except OSError as exc:
        pytest.skip(f"no tiny filesystem here ({exc}); the injected-SQLite-error tests cover a full disk")
    with stack:
        yield path
