"""What a user waits for at the start of a notebook, each round in a fresh Python, variants interleaved.

1. ``load_ext + first sandbox answer``: ``%load_ext coffee_nb``, a pause (the user typing the first
   cell: 0 s or 2.5 s), then a first ``%%llm`` answered by the offline sandbox (simulated latency off,
   so only coffee_nb's own start-up counts). Cold (``COFFEE_NB_WARM=0``: imports, ledger, sandbox start
   on the first call) vs warm (the background thread ``%load_ext`` starts). The pause is not counted.
2. ``%load_ext coffee_nb`` vs ``%load_ext jupyter_ai_magics`` (the ``%load_ext`` line alone, imports
   included). jupyter-ai-magics pins LangChain versions that clash with coffee_nb's, so it lives in its
   own venv: ``make bench-deps`` creates ``.venv-bench``; without it this part is skipped.

    .venv/bin/python benchmarks/load_ext.py [--rounds 7] [--pause 2.5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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
FIRST = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
ip = InteractiveShell.instance()
t0 = time.perf_counter()
ip.run_line_magic("load_ext", "coffee_nb")
t1 = time.perf_counter()
time.sleep({pause})
t2 = time.perf_counter()
with capture_output():
    ip.run_cell_magic("llm", "--no-cache", "What is a ristretto?")
t3 = time.perf_counter()
assert ip.user_ns["_"].model.startswith("sandbox/")
print(json.dumps({{"load_ext": t1 - t0, "first": t3 - t2}}))
"""


def once(python: str, module: str) -> float:
    out = subprocess.run([python, "-c", SNIPPET.format(mod=module)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def first_answer(warm: bool, pause: float) -> dict[str, float]:
    """load_ext and first-answer seconds in a fresh interpreter with a fresh data dir and no API keys."""
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(
            HOME=home,
            COFFEE_NB_DATA_DIR=str(Path(home) / "data"),
            COFFEE_NB_SANDBOX_LATENCY_SCALE="0",
            COFFEE_NB_WARM="1" if warm else "0",
        )
        out = subprocess.run(
            [sys.executable, "-c", FIRST.format(pause=pause)], capture_output=True, text=True, check=True, env=env
        )
    found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def bench_first(rounds: int, pauses: list[float]) -> None:
    results: dict[tuple[str, float], list[dict[str, float]]] = {}
    for _ in range(rounds):  # interleaved: a noisy moment hits every variant alike
        for pause in pauses:
            for name in ("cold", "warm"):
                results.setdefault((name, pause), []).append(first_answer(name == "warm", pause))
    print(f"load_ext + first sandbox answer, median of {rounds} fresh interpreters (the pause itself not counted)")
    print(f"  {'pause':>6}  {'variant':<5}  {'load_ext':>9}  {'first %%llm':>11}  {'total':>9}")
    for pause in pauses:
        totals = {}
        for name in ("cold", "warm"):
            runs = results[(name, pause)]
            load = statistics.median(r["load_ext"] for r in runs)
            first = statistics.median(r["first"] for r in runs)
            total = statistics.median(r["load_ext"] + r["first"] for r in runs)
            totals[name] = total
            print(f"  {pause:>5.1f}s  {name:<5}  {load * 1000:>7.0f}ms  {first * 1000:>9.0f}ms  {total * 1000:>7.0f}ms")
        print(f"          ratio warm / cold (total): {totals['warm'] / totals['cold']:.2f}")


def bench_load_ext(rounds: int) -> None:
    other = ROOT / ".venv-bench" / "bin" / "python"
    if not other.exists():
        print("\n%load_ext vs jupyter_ai_magics: skipped (run `make bench-deps` to install it in .venv-bench)")
        return
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(once(sys.executable, "coffee_nb"))
        theirs.append(once(str(other), "jupyter_ai_magics"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\n%load_ext, cold, median of {rounds} fresh interpreters")
    print(f"  coffee_nb          {a * 1000:8.1f} ms")
    print(f"  jupyter_ai_magics  {b * 1000:8.1f} ms")
    print(f"  ratio coffee_nb / jupyter_ai_magics: {a / b:.3f}  (target <= 0.30)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pause", type=float, default=2.5, help="seconds the user takes to type the first cell")
    args = parser.parse_args()
    bench_first(args.rounds, [0.0, args.pause])
    bench_load_ext(args.rounds)


if __name__ == "__main__":
    main()
