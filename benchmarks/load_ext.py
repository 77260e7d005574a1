"""``%load_ext coffee_nb`` vs ``%load_ext jupyter_ai_magics``: cold, each in a fresh Python, interleaved.

jupyter-ai-magics pins LangChain versions that clash with coffee_nb's, so it lives in its own venv:
``make bench-deps`` creates ``.venv-bench`` with it. Each round starts a new interpreter, builds an
IPython shell and times only the ``%load_ext`` line (imports included: that is what users wait for).

    .venv/bin/python benchmarks/load_ext.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = (
    "import time\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "t = time.perf_counter()\n"
    "ip.run_line_magic('load_ext', {mod!r})\n"
    "print(time.perf_counter() - t)\n"
)


def once(python: str, module: str) -> float:
    out = subprocess.run([python, "-c", SNIPPET.format(mod=module)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    other = ROOT / ".venv-bench" / "bin" / "python"
    if not other.exists():
        raise SystemExit("jupyter-ai-magics is not installed: run `make bench-deps` first")
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(once(sys.executable, "coffee_nb"))
        theirs.append(once(str(other), "jupyter_ai_magics"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"%load_ext, cold, median of {args.rounds} fresh interpreters")
    print(f"  coffee_nb          {a * 1000:8.1f} ms")
    print(f"  jupyter_ai_magics  {b * 1000:8.1f} ms")
    print(f"  ratio coffee_nb / jupyter_ai_magics: {a / b:.3f}  (target <= 0.30)")


if __name__ == "__main__":
    main()
