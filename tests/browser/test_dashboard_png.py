"""tools/dashboard_png.py, which redraws the README's docs/dashboard.png from the current views, still works."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys

from tests.browser._lab import ROOT
from tests.conftest import _need_service


def test_dashboard_png_draws_the_current_dashboard(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _need_service("Chromium", "install Debian's chromium (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError as exc:
        _need_service("Playwright", f"pip install -e '.[dev]' ({exc})")
    png, page = tmp_path / "dashboard.png", tmp_path / "dashboard.html"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "dashboard_png.py"), "--out", str(png), "--html", str(page)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 1000 and height >= 1000, (width, height)  # the whole board, at twice its CSS size
    html = page.read_text(encoding="utf-8")
    for part in ("coffee-nb-dashboard", "Costs", "Last calls", "Router health", "data:image/png;base64,"):
        assert part in html, part  # each part of today's dashboard, the histogram drawn
    assert "sandbox/limited -&gt; sandbox/fast (3)" in html  # the fallbacks the script makes
    assert "$0 (cache)" in html
