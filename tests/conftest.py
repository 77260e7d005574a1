from __future__ import annotations

import os

import pytest

from coffee_nb.testing import isolated

# %load_ext's warm-start thread works on the process-wide session, which every test here isolates: off
# in tests (and the kernels they start); tests/notebook/test_warm.py runs it in fresh interpreters.
os.environ.setdefault("COFFEE_NB_WARM", "0")


@pytest.fixture
def no_keys(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path, monkeypatch):
    """The default SQLite ledger lives under COFFEE_NB_DATA_DIR: never the user's real one in tests."""
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(tmp_path / "coffee_nb_data"))


@pytest.fixture(autouse=True)
def _isolated(_private_data_dir):
    """Global state (prices, providers, sinks, HTTP pool, session, sandbox) is fresh in every test and
    closed after it; set up after the private data dir, so the session's files land there."""
    with isolated():
        yield


def _need_service(what: str, how: str) -> None:
    """Outside CI a missing service skips with a reason; under CI=true it fails."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: required, not skipped)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url():
    """A throwaway redis-server on a free loopback port, stopped after the session."""
    from coffee_nb.testing import redis_server

    try:
        server = redis_server()
        url = server.__enter__()
    except FileNotFoundError as exc:
        _need_service("redis-server", str(exc))
    yield url
    server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def otlp_receiver():
    """A throwaway Arize Phoenix: a real OTLP/HTTP trace receiver on free loopback ports, with its own API to
    read back what it stored (coffee_nb.testing.PhoenixServer), stopped after the session. Spans from every
    test of the session land in it: read back by trace id or by a project of the test's own."""
    from coffee_nb.testing import phoenix_server

    try:
        server = phoenix_server()
        receiver = server.__enter__()
    except (FileNotFoundError, RuntimeError) as exc:
        _need_service("Phoenix (the OTLP receiver)", str(exc))
    yield receiver
    server.__exit__(None, None, None)


@pytest.fixture
def quiet_sandbox():
    """No simulated sandbox latency and no leftover faults, before and after the test."""
    from coffee_nb import sandbox

    sandbox.set_latency_scale(0)
    sandbox.clear_faults()
    yield sandbox
    sandbox.clear_faults()


@pytest.fixture
def ip(quiet_sandbox):
    """A real InteractiveShell with coffee_nb loaded, a fresh session and a quiet sandbox."""
    from IPython.core.interactiveshell import InteractiveShell

    import coffee_nb

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.reset()
    yield shell
    coffee_nb.reset()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.endswith("test_langchain_standard.py::TestAutoPickerStandard::test_serdes"):
            item.add_marker(
                pytest.mark.xfail(
                    strict=True,
                    reason="langchain-core's load(allowed_objects='all') allows only classes in its own mapping; "
                    "the same case with AutoPicker allowed runs as test_serdes_with_autopicker_allowed",
                )
            )
