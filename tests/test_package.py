"""The public surface and what importing coffee_nb does (and doesn't) load."""

from __future__ import annotations

import subprocess
import sys

import coffee_nb


def test_all_names_exist():
    for name in coffee_nb.__all__:
        assert hasattr(coffee_nb, name), name
    assert len(set(coffee_nb.__all__)) == len(coffee_nb.__all__)
    lazy = set(coffee_nb._EXPORTS) | {"__version__", "load_ipython_extension", "sandbox"}
    assert set(coffee_nb.__all__) == lazy  # the literal list and the lazy table name the same things


def test_import_loads_no_notebook_libraries_or_sdks():
    code = (
        "import sys, coffee_nb; "
        "heavy = ['IPython', 'ipywidgets', 'matplotlib', 'pandas', 'openai', 'anthropic', 'langchain_openai', "
        "'bpe_openai', 'genai_prices', 'httpx', 'redis', 'prometheus_client']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_core_never_imports_notebook_libraries():
    code = (
        "import sys, coffee_nb\n"
        "from coffee_nb import AutoPicker, Budget, LocalMetrics, sandbox, configure, ask\n"
        "llm = AutoPicker('sandbox/fast')\n"
        "print([m for m in ('IPython', 'ipywidgets', 'matplotlib') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


_PER_MODULE = """
import importlib, json, os, pkgutil, sys
import coffee_nb
names = sorted(m.name for m in pkgutil.walk_packages(coffee_nb.__path__, "coffee_nb."))
core = {n for n in names if not n.startswith(("coffee_nb.notebook", "coffee_nb.demo", "coffee_nb.testing"))}
heavy = ("IPython", "ipywidgets", "matplotlib", "pandas")
found = {}
for name in names:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fresh copy of this process: import the one module, say what it loaded
        os.close(read)
        try:
            importlib.import_module(name)
        except Exception as exc:  # a module that can't be imported alone (an import circle): say so
            os.write(write, json.dumps([f"import failed: {exc!r}"]).encode())
            os._exit(0)
        loaded = [m for m in heavy if m in sys.modules] if name in core else []
        os.write(write, json.dumps(loaded).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        loaded = json.loads(pipe.read() or "[]")
    os.waitpid(pid, 0)
    if loaded:
        found[name] = loaded
print(json.dumps({"checked": len(core), "found": found}))
"""


def test_no_core_module_loads_the_notebook_stack_or_pandas_at_import():
    """Every module imports alone (no import circle). Those outside ``notebook/`` (and the demo and test
    helpers) load no pandas and no notebook stack at module level (function bodies don't run)."""
    import json

    out = subprocess.run([sys.executable, "-c", _PER_MODULE], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["checked"] > 80 and result["found"] == {}, result["found"]


def test_import_does_no_network(monkeypatch):
    code = (
        "import socket\n"
        "def boom(*a, **k): raise AssertionError('network at import')\n"
        "socket.socket.connect = boom\n"
        "socket.create_connection = boom\n"
        "import coffee_nb\n"
        "coffee_nb.AutoPicker('openai/gpt-4o-mini', ['anthropic/claude-3-5-haiku-latest'])\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def _lower_bounds_pyproject() -> dict[str, str]:
    import re
    import tomllib
    from pathlib import Path

    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    deps = list(data["project"]["dependencies"])
    for items in data["project"]["optional-dependencies"].values():
        deps += [d for d in items if not d.startswith("coffee_nb")]
    out = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([0-9.]+)(?:,<[0-9.]+)?", dep)  # a cap only where a comment says why
        assert m, f"every dependency pins a lower bound: {dep!r}"
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_mirrors_pyproject_lower_bounds():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "environment.yml").read_text()
    found = {}
    for name, version in re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)>=([0-9.]+)(?:,<[0-9.]+)?\s*$", text, re.MULTILINE):
        found[name.lower().replace("_", "-")] = version
    found["redis"] = found.pop("redis-py", None)  # conda's name for redis
    expected = _lower_bounds_pyproject()
    assert {k: found.get(k) for k in expected} == expected


def test_aliases_are_public_and_name_a_model_everywhere():
    import pytest

    from coffee_nb import AutoPicker, ConfigError, capture_records
    from coffee_nb.testing import isolated

    with isolated():
        assert coffee_nb.set_alias("quick", "sandbox/fast") == "sandbox/fast"
        assert coffee_nb.aliases() == {"quick": "sandbox/fast"}
        with capture_records() as records:
            AutoPicker("quick").invoke("Hi")
        assert [r.model for r in records] == ["sandbox/fast"]  # records carry the real model
        with pytest.raises(ConfigError, match="provider/model"):
            coffee_nb.set_alias("bad", "no-such-thing")
        coffee_nb.remove_alias("quick")
        assert coffee_nb.aliases() == {}


def test_storage_error_and_cache_warning_are_public(tmp_path, monkeypatch):
    """What a full disk or a damaged file raises or warns can be caught by its public name."""
    import warnings

    import pytest

    from coffee_nb._shared._paths import StorageError
    from coffee_nb.replay._cache import CacheWarning

    assert coffee_nb.StorageError is StorageError and coffee_nb.CacheWarning is CacheWarning
    assert {"StorageError", "CacheWarning"} <= set(coffee_nb.__all__)
    assert issubclass(coffee_nb.StorageError, coffee_nb.ConfigError) and issubclass(coffee_nb.CacheWarning, UserWarning)

    garbage = tmp_path / "ledger.sqlite3"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(coffee_nb.StorageError, match="not a SQLite database") as info:
        coffee_nb.Budget(daily=1, ledger=garbage)
    assert info.value.path == garbage

    data = tmp_path / "data"
    data.mkdir()
    (data / "cache.sqlite3").write_bytes(b"not a database" * 100)
    monkeypatch.setenv("COFFEE_NB_DATA_DIR", str(data))
    coffee_nb.configure(models=["sandbox/fast"], ledger="memory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert coffee_nb.ask("answered without the cache").text
    assert [w.category for w in caught if issubclass(w.category, coffee_nb.CacheWarning)] == [coffee_nb.CacheWarning]
