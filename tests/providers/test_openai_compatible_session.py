"""``%llm_config --base-url`` / ``configure(base_url=...)``: the session's server for openai-compatible specs."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import sandbox


def test_llm_config_base_url_points_openai_compatible_specs_at_a_local_server(quiet_sandbox):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "coffee_nb")
    coffee_nb.reset()
    try:
        url = sandbox.server().url  # an OpenAI-compatible server on loopback, like vLLM or LM Studio
        ip.run_line_magic("llm_config", f"--models openai-compatible/fast --base-url {url}")
        with capture_output():
            ip.run_cell_magic("llm", "--no-cache", "hello local server")
        answer = ip.user_ns["_"]
        assert answer.model == "openai-compatible/fast" and "You said: 'hello local server'" in answer.text
        assert len(sandbox.attempts("sandbox/fast")) == 1
        with pytest.raises(UsageError, match="base_url must be an http"):
            ip.run_line_magic("llm_config", "--base-url ftp://nope")
    finally:
        coffee_nb.reset()
