"""Global state lives in coffee_nb._shared._config: one reset_defaults(), one isolated(), nothing at import.

Every test here already runs inside conftest's ``isolated()``; these check that machinery itself.
"""

from __future__ import annotations

import ast
import socket
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import coffee_nb
from coffee_nb import sandbox
from coffee_nb._shared import _config, _http, _records
from coffee_nb._shared._records import capture_records, global_sinks
from coffee_nb.invoke import _models
from coffee_nb.pricing import _pricing
from coffee_nb.pricing._pricing import generation, model_info, price_for, register_price, reset_prices
from coffee_nb.session import _session
from coffee_nb.session._session import get_session
from coffee_nb.testing import ScriptedChatModel, isolated

PACKAGE = Path(coffee_nb.__file__).parent


def _listening(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return False
    return True


# -- one reset ------------------------------------------------------------------------------------------
def test_reset_defaults_forgets_registrations_but_keeps_provider_prices():
    register_price("openai/my-finetune", input=1, output=2, context_window=1000)
    register_price("sandbox/fast", input=9, output=9)  # a user's override of a provider's own price
    assert price_for("sandbox", "fast").source == "custom"
    before = generation()
    _config.reset_defaults()
    assert generation() > before  # holders of resolved facts re-resolve
    assert price_for("openai", "my-finetune") is None
    fast = model_info("sandbox", "fast")
    assert fast.price.source == "sandbox" and fast.price.input == Decimal("0.10") and fast.context_window == 16_000


def test_reset_prices_keeps_the_sandbox_prices():
    register_price("sandbox/smart", input=1, output=1)
    reset_prices()
    assert price_for("sandbox", "smart").source == "sandbox"
    assert price_for("ollama", "llama3.2").source == "local"  # ollama's own resolver, also a default


def test_reset_defaults_restores_the_provider_registry():
    _models.register_provider("mine", lambda model, key, settings: ScriptedChatModel())
    assert "mine" in _models.PROVIDERS
    _config.reset_defaults()
    assert _models.PROVIDERS is _config.PROVIDERS  # an alias, never rebound
    assert _models.parse_spec("sandbox/fast") == ("sandbox", "fast")  # defaults load again on use
    assert {"openai", "anthropic", "ollama", "sandbox"} <= set(_models.PROVIDERS)  # the defaults, back
    with pytest.raises(coffee_nb.ConfigError, match="unknown provider 'mine'"):
        _models.parse_spec("mine/x")


def test_reset_defaults_removes_global_sinks_and_closes_http_clients():
    seen = []
    with capture_records() as records:
        _config.SINKS.add(seen.append)
        assert len(global_sinks()) == 2 and isinstance(global_sinks(), tuple)
        coffee_nb.configure_http(max_connections=7)
        client = _http.get_http_client()
        _config.reset_defaults()
        assert global_sinks() == ()
        assert client.is_closed and _http._sync_client is None
        assert _config.HTTP.settings == _config.DEFAULT_HTTP_SETTINGS
    assert records == []


def test_reset_defaults_stops_the_sandbox_server_and_restores_latency_and_models(monkeypatch):
    monkeypatch.setenv("COFFEE_NB_SANDBOX_LATENCY_SCALE", "0.5")
    sandbox.set_latency_scale(0)
    sandbox.add_model(sandbox.SandboxModel(name="extra", description="x"))
    url = sandbox.server().url
    assert _listening(url)
    _config.reset_defaults()
    assert not _listening(url) and _config.SANDBOX.server is None
    assert "extra" not in sandbox.MODELS and "fast" in sandbox.MODELS
    assert sandbox.server().latency_scale == 0.5  # back to the environment's


def test_reset_defaults_closes_the_session_and_makes_a_new_one():
    session = get_session()
    ledger = session.budget.ledger
    cache = session.cache
    _config.reset_defaults()
    assert get_session() is not session
    for db in (ledger._db, cache._db):
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")


# -- isolated() -----------------------------------------------------------------------------------------
def test_isolated_gives_a_clean_state_and_brings_the_old_one_back():
    register_price("openai/outer", input=1, output=1)
    coffee_nb.configure_http(max_connections=11)
    outer_client = _http.get_http_client()
    outer_session = get_session()
    outer_server = sandbox.server()
    sandbox.set_latency_scale(0)
    with capture_records():
        with isolated():
            assert price_for("openai", "outer") is None
            assert global_sinks() == ()
            assert _config.HTTP.settings["max_connections"] == 100 and _http._sync_client is None
            assert get_session() is not outer_session
            inner_server = sandbox.server()
            assert inner_server is not outer_server
            register_price("openai/inner", input=2, output=2)
            inner_client = _http.get_http_client()
        assert not _listening(inner_server.url) and inner_client.is_closed  # closed what the block opened
        assert len(global_sinks()) == 1  # the outer capture's sink is back
    assert price_for("openai", "outer") is not None and price_for("openai", "inner") is None
    assert _http.get_http_client() is outer_client and not outer_client.is_closed
    assert get_session() is outer_session
    assert sandbox.server() is outer_server and _listening(outer_server.url)
    assert outer_server.latency_scale == 0


def test_isolated_nests():
    register_price("openai/a", input=1, output=1)
    with isolated():
        register_price("openai/b", input=1, output=1)
        with isolated():
            assert price_for("openai", "a") is None and price_for("openai", "b") is None
        assert price_for("openai", "b") is not None and price_for("openai", "a") is None
    assert price_for("openai", "a") is not None and price_for("openai", "b") is None


def test_isolated_restores_even_when_the_block_raises():
    register_price("openai/kept", input=1, output=1)
    with pytest.raises(RuntimeError), isolated():
        register_price("openai/dropped", input=1, output=1)
        raise RuntimeError("boom")
    assert price_for("openai", "kept") is not None and price_for("openai", "dropped") is None


def test_a_picker_survives_a_reset_and_talks_to_the_new_sandbox():
    llm = coffee_nb.AutoPicker("sandbox/echo")
    sandbox.set_latency_scale(0)
    assert llm.invoke("one").content.endswith("one")
    _config.reset_defaults()  # stops the server, closes the pooled client the model was built on
    sandbox.set_latency_scale(0)
    assert llm.invoke("two").content.endswith("two")


# -- nothing at import; imports follow the layers ---------------------------------------------------------
def test_importing_registers_and_starts_nothing():
    code = (
        "import sys, coffee_nb\n"
        "from coffee_nb import sandbox\n"
        "from coffee_nb._shared import _config\n"
        "from coffee_nb.invoke import _models\n"
        "from coffee_nb.pricing import _pricing\n"
        "assert not _config.PROVIDERS._loaded and not _config.PROVIDERS, dict(_config.PROVIDERS)\n"
        "assert _config.SANDBOX.server is None\n"
        "assert 'coffee_nb.sandbox._server' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def _imports(relative: str) -> set[str]:
    """Every module a source file imports (at top level or inside functions)."""
    tree = ast.parse((PACKAGE / relative).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("replay/_cache.py", "coffee_nb.budget"),
        ("pricing/_pricing.py", "coffee_nb.sandbox"),
        ("pricing/_tokens.py", "coffee_nb.sandbox"),
        ("invoke/_models.py", "coffee_nb.sandbox"),
        ("budget/_budget.py", "coffee_nb.session._session"),
        ("sandbox/__init__.py", "coffee_nb.invoke._models._build_openai"),
        ("sandbox/_provider.py", "coffee_nb.invoke._models._build_openai"),
        ("_shared/_config.py", "coffee_nb."),  # the bottom layer: it names its loaders, never imports them at top
    ],
)
def test_imports_follow_the_layers(module, forbidden):
    if module == "_shared/_config.py":
        tree = ast.parse((PACKAGE / module).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not [n for n in top if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("coffee_nb")]
        return
    assert not [m for m in _imports(module) if m.startswith(forbidden)]


def test_old_module_level_names_still_work():
    assert _records.global_sinks is global_sinks
    assert _session.get_session() is get_session()
    assert isinstance(_pricing.generation(), int)
    assert isinstance(_http.get_http_client(), httpx.Client)
    coffee_nb.reset()  # the session reset, still
    assert get_session().models is None
