"""``make demo`` as a newcomer sees it: only the demo's own lines, nothing from the kernel it starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_the_demo_prints_only_its_own_output(tmp_path):
    pytest.importorskip("nbclient", reason="the demo extra: pip install -e '.[demo]'")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "coffee_nb.demo", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    # over TCP ipykernel logs "[IPKernelApp] WARNING | Kernel is running over TCP without encryption"
    assert "[IPKernelApp]" not in done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("coffee_nb demo: running notebooks/01_quickstart.ipynb")
    assert "Summary (sandbox prices, not real money)" in lines
    assert (tmp_path / "out" / "01_quickstart.executed.ipynb").is_file()
    assert (tmp_path / "out" / "01_quickstart.html").is_file()
    assert list(tmp_path.glob("kernel*")) == []  # no sockets or connection files left where it ran
