"""The public surface and what importing coffee_nb does (and doesn't) load."""

from __future__ import annotations

import subprocess
import sys

import coffee_nb


def test_all_names_exist():
    for name in coffee_nb.__all__:
        assert hasattr(coffee_nb, name), name
    assert len(set(coffee_nb.__all__)) == len(coffee_nb.__all__)


def test_import_loads_no_notebook_libraries_or_sdks():
    code = (
        "import sys, coffee_nb; "
        "heavy = ['IPython', 'ipywidgets', 'matplotlib', 'pandas', 'openai', 'anthropic', 'langchain_openai', "
        "'bpe_openai', 'genai_prices', 'httpx', 'redis', 'prometheus_client']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


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
