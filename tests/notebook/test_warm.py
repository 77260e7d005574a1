"""Warm start after ``%load_ext coffee_nb``: each case in a fresh interpreter (the thread works on the
process-wide session, which the in-process tests isolate per test; ``tests/conftest.py`` turns it off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import json, socket, sys, threading
connects = []
_connect = socket.socket.connect
def connect(self, address):
    connects.append(address[0] if isinstance(address, tuple) else str(address))
    return _connect(self, address)
socket.socket.connect = connect
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from coffee_nb.notebook import _warm
ip = InteractiveShell.instance()
"""


def run(tmp_path, body, **env):
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environ.update({"HOME": str(tmp_path), "COFFEE_NB_DATA_DIR": str(tmp_path / "data"), "COFFEE_NB_WARM": "1"})
    environ.update({"COFFEE_NB_SANDBOX_LATENCY_SCALE": "0", **env})
    code = PRELUDE + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_load_ext_returns_while_warming_then_the_first_cell_finds_everything_ready(tmp_path):
    found = run(
        tmp_path,
        """
        gate = threading.Event()
        _warm.STEPS = (gate.wait, *_warm.STEPS)  # hold the thread: load_ext must not wait for it
        ip.run_line_magic("load_ext", "coffee_nb")
        thread = _warm.last_thread()
        returned_while_warming = thread.is_alive()
        before = set(sys.modules)
        gate.set()
        thread.join(60)
        from coffee_nb._shared import _config
        from coffee_nb.session._session import get_session
        server = _config.SANDBOX.server
        session = get_session()
        warmed = {
            "returned_while_warming": returned_while_warming,
            "done": not thread.is_alive(),
            "sandbox_up": server is not None,
            "requests_while_warming": dict(server.requests) if server else None,
            "imported": sorted(
                m for m in ("langchain_openai", "openai", "coffee_nb.invoke._invoker") if m in sys.modules
            ),
            "pickers": len(session._pickers),
            "ledger_open": session._ledger is not None,
        }
        with capture_output() as cap:
            ip.run_cell_magic("llm", "--no-cache", "first question")
        warmed["answer"] = ip.user_ns["_"].text
        warmed["model"] = ip.user_ns["_"].model
        warmed["connects"] = sorted(set(connects))
        print(json.dumps(warmed))
        """,
    )
    assert found["returned_while_warming"] and found["done"]
    assert found["sandbox_up"] and sum(found["requests_while_warming"].values()) == 0  # no model was called
    assert found["imported"] == ["coffee_nb.invoke._invoker", "langchain_openai", "openai"]
    assert found["pickers"] == 1 and found["ledger_open"]
    assert found["model"] == "sandbox/fast" and "first question" in found["answer"]
    assert set(found["connects"]) <= {"127.0.0.1", "::1", "localhost"}  # loopback only, ever


def test_with_a_key_the_client_is_built_but_nothing_is_sent(tmp_path):
    found = run(
        tmp_path,
        """
        ip.run_line_magic("load_ext", "coffee_nb")
        _warm.last_thread().join(60)
        from coffee_nb._shared import _config
        from coffee_nb.session._session import get_session
        picker = next(iter(get_session()._pickers.values()))
        print(json.dumps({
            "built": [c.name for c in picker.candidates if c._sync is not None],
            "sandbox": _config.SANDBOX.server is not None,
            "connects": connects,
        }))
        """,
        OPENAI_API_KEY="sk-test-" + "x" * 40,
    )
    assert found["connects"] == [] and not found["sandbox"]  # the chain is OpenAI's: no sandbox, no request
    assert found["built"] == ["openai/gpt-4o-mini"]


def test_off_by_environment(tmp_path):
    found = run(
        tmp_path,
        """
        ip.run_line_magic("load_ext", "coffee_nb")
        invoker = "coffee_nb.invoke._invoker" in sys.modules
        print(json.dumps({"thread": _warm.last_thread() is not None, "invoker": invoker}))
        """,
        COFFEE_NB_WARM="0",
    )
    assert found == {"thread": False, "invoker": False}


@pytest.mark.parametrize("broken", ["_session_parts", "_clients"])
def test_a_failing_step_is_harmless(tmp_path, broken):
    found = run(
        tmp_path,
        f"""
        def boom():
            raise RuntimeError("warming failed")
        _warm.STEPS = tuple(boom if s.__name__ == {broken!r} else s for s in _warm.STEPS)
        ip.run_line_magic("load_ext", "coffee_nb")
        _warm.last_thread().join(60)
        with capture_output() as cap:
            ip.run_cell_magic("llm", "--no-cache", "still fine")
        print(json.dumps({{"answer": ip.user_ns["_"].text, "stderr": cap.stderr}}))
        """,
    )
    assert "still fine" in found["answer"] and "warming failed" not in found["stderr"]
