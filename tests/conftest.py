from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

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


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path, monkeypatch):
    """The default SQLite ledger lives under COFFEE_NB_DATA_DIR: never the user's real one in tests."""
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(tmp_path / "coffee_nb_data"))


def _need_service(what: str, how: str) -> None:
    """Outside CI a missing service skips with a reason; under CI=true it fails."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: required, not skipped)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url():
    """A throwaway redis-server on a free loopback port, stopped after the session."""
    exe = shutil.which("redis-server")
    if exe is None:
        _need_service("redis-server", "install Debian's redis-server (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
