"""Record notebooks/06_real_providers.llm-cassette.jsonl.

With OPENAI_API_KEY and ANTHROPIC_API_KEY set, the real providers answer. Without them, the sandbox
poses as both (its server gets models named like theirs, and the ``openai`` / ``anthropic`` providers
are re-registered to build sandbox clients): the cassette then holds sandbox text, and the notebook
says so. Either way the requests are exactly the notebook's, so its strict replay matches.

    .venv/bin/python tools/record_real_providers.py
"""

from __future__ import annotations

import os
from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import AutoPicker, register_provider, sandbox
from coffee_nb.sandbox import SandboxModel, add_model, build_chat_model

CASSETTE = Path(__file__).resolve().parents[1] / "notebooks" / "06_real_providers.llm-cassette.jsonl"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


def pose_as_providers() -> None:
    """The sandbox answers for openai/... and anthropic/... specs (no key needed)."""
    for provider, model in MODELS.items():
        add_model(SandboxModel(name=model, description=f"the sandbox posing as {provider}/{model}"))
        register_provider(provider, lambda m, key, settings: build_chat_model(m, settings), timeout_kwarg=True)


def main() -> None:
    if not (os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")):
        pose_as_providers()
        print("no keys: the sandbox poses as the providers")
    sandbox.set_latency_scale(0)
    CASSETTE.unlink(missing_ok=True)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "coffee_nb")
    os.chdir(CASSETTE.parent)
    ip.run_line_magic("llm_cassette", f"record {CASSETTE.name}")
    llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "sandbox/fast"], max_tokens=50)
    llm.invoke("Say hello in French.")
    with capture_output():
        ip.run_cell_magic("llm", "openai/gpt-4o-mini anthropic/claude-3-5-haiku-latest -m 50", "Say hello in Spanish.")
    ip.run_line_magic("llm_cassette", "off")
    coffee_nb.reset()
    print("wrote", CASSETTE, len(CASSETTE.read_text().splitlines()), "entries")


if __name__ == "__main__":
    main()
