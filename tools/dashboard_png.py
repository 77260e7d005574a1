"""Regenerate docs/dashboard.png, the README's picture of the live dashboard, from the current views.

    .venv/bin/python tools/dashboard_png.py [--out docs/dashboard.png] [--html page.html] [--chromium PATH]

A few calls on the offline sandbox (one fallback past a rate-limited model, one cache hit, a budget that
shows), in a fresh session with its own data directory (your ledger and cache are never touched); then
``coffee_nb.dashboard()``'s HTML, the exact snapshot a notebook shows, is drawn by a headless Chromium
(Playwright; Debian's ``chromium`` unless ``--chromium`` says where one is) and screenshot. No keys, no
network beyond 127.0.0.1. Run it after changing a view, and look at the picture before committing it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

import coffee_nb

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "dashboard.png"
WIDTH = 1000  # CSS pixels: about a notebook's output area on a laptop
# Debian's chromium in a container (no setuid sandbox, no GPU), kept off the network: the same flags as
# the browser tests (tests/browser/_lab.py)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What JupyterLab's output area gives an HTML output; the views bring everything else inline.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #fff; color: rgba(0, 0, 0, 0.87);
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }}
#board {{ display: inline-block; padding: 12px 16px; width: {width}px; }}
table {{ border-collapse: collapse; }}
</style></head><body><div id="board">{body}</div></body></html>
"""


def session_calls() -> None:
    """What the picture shows: a fallback past a rate-limited model (whose breaker opens), answers from
    two models, two of them streamed (as in ``%%llm``: a time to first token), a cache hit, a budget a
    third used. The last calls table shows the last eight attempts: the varied ones come last."""

    def streamed(token: str) -> None:
        pass

    coffee_nb.configure(models=["sandbox/fast", "sandbox/smart"], daily=0.005)
    for topic in ("retries", "fallbacks", "deadlines"):
        coffee_nb.ask(f"One sentence on {topic}.", models=["sandbox/limited", "sandbox/fast"])
    coffee_nb.ask("What does p95 latency mean?", on_token=streamed)
    coffee_nb.ask("What does p95 latency mean?")  # the same request: from the cache, $0
    smart = "Explain cold brew to a data scientist in three sentences."
    coffee_nb.ask(smart, models=["sandbox/smart"], max_tokens=200, on_token=streamed)  # a worst case to reserve
    coffee_nb.ask("Say hello.", models=["sandbox/echo"])


def dashboard_html() -> str:
    """The dashboard of the session above, every part drawn (the histogram too), as a notebook shows it."""
    board = coffee_nb.dashboard(display=False)
    try:
        board.refresh()
        return board.html()
    finally:
        board.close()


def render(html: str, out: Path, chromium: str) -> None:
    """Draw ``html`` in Chromium and save a PNG of the dashboard (device pixels: twice the CSS ones)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH + 64, "height": 800}, device_scale_factor=2)
            page.route("**/*", lambda route: route.abort())  # the page is self-contained: nothing to fetch
            page.set_content(PAGE.format(width=WIDTH, body=html), wait_until="load")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#board").screenshot(path=str(out), animations="disabled")
        finally:
            browser.close()


def find_chromium(given: str | None) -> str:
    chromium = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("No Chromium found: install Debian's chromium (apt-get install chromium) or pass --chromium")
    return chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/dashboard_png.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("--html", type=Path, help="also write the dashboard's HTML page here")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    with tempfile.TemporaryDirectory(prefix="coffee_nb-dashboard-") as data:
        os.environ["COFFEE_NB_DATA_DIR"] = data  # a fresh ledger and cache, removed afterwards
        for name in [n for n in os.environ if n.endswith("_API_KEY")]:
            del os.environ[name]  # the sandbox answers, whatever keys this shell has
        try:
            session_calls()
            html = dashboard_html()
        finally:
            coffee_nb.get_session().close()
            coffee_nb.close_http_clients()
    if args.html is not None:
        args.html.write_text(PAGE.format(width=WIDTH, body=html), encoding="utf-8")
    render(html, args.out, chromium)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
