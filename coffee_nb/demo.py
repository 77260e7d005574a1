"""``make demo``: run the quickstart notebook headlessly on the offline sandbox, save it executed and as
HTML, and print what happened. No API keys, no network beyond 127.0.0.1.

    python -m coffee_nb.demo [--out artifacts]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"
_SUMMARY_TAG = "coffee_nb-demo-summary"
_SUMMARY_CODE = """
import json, coffee_nb
_s = coffee_nb.get_session()
_m = _s.metrics.get_metrics()
print(json.dumps({
    "requests": _m["requests"]["total"], "answered": _m["requests"]["successful"],
    "cache_hits": _m["requests"]["cache_hits"], "fallbacks": _m["fallbacks"]["by_route"],
    "errors": _m["errors"]["by_class"], "cost": str(_m["costs"]["total"]),
    "budget": {k: str(v["remaining"]) for k, v in _s.budget.status().items()},
}))
"""


def _local_transport(client: Any, where: Path) -> None:
    """Talk to the kernel over Unix sockets in ``where`` (a private temporary directory: only this user can
    connect), not TCP on 127.0.0.1, so the kernel has nothing to warn about: over TCP without CurveZMQ
    keys, ipykernel logs "[IPKernelApp] WARNING | Kernel is running over TCP without encryption" to the
    demo's terminal. Windows keeps TCP."""
    if os.name != "posix":
        return
    km = client.create_kernel_manager()  # the client's own manager: it still starts and stops the kernel
    km.transport = "ipc"
    # an absolute path: a relative one would be taken from each side's working directory (the kernel's is
    # notebooks/), and the client would wait for sockets it never finds
    km.ip = str(where / "kernel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffee_nb.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "artifacts"), help="where to write the executed notebook and HTML")
    args = parser.parse_args(argv)
    try:
        import nbformat  # lazy: nbformat
        from nbclient import NotebookClient  # lazy: nbclient
        from nbconvert import HTMLExporter  # lazy: nbconvert
    except ImportError:
        print("The demo needs its notebook runner: pip install -e '.[demo]' (make demo does this).", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(QUICKSTART, as_version=4)
    summary_cell = nbformat.v4.new_code_cell(_SUMMARY_CODE.strip())
    summary_cell.metadata["tags"] = [_SUMMARY_TAG]
    nb.cells.append(summary_cell)
    print("coffee_nb demo: running notebooks/01_quickstart.ipynb on the offline sandbox …", flush=True)
    with tempfile.TemporaryDirectory(prefix="coffee_nb-demo-") as data:
        env_before = os.environ.get("COFFEE_NB_DATA_DIR")
        os.environ["COFFEE_NB_DATA_DIR"] = data  # a fresh ledger and cache: the demo never touches yours
        try:
            client = NotebookClient(
                nb,
                timeout=300,
                kernel_name="python3",
                resources={"metadata": {"path": str(QUICKSTART.parent)}},
                store_widget_state=True,
            )
            _local_transport(client, Path(data))
            client.execute()
        finally:
            if env_before is None:
                os.environ.pop("COFFEE_NB_DATA_DIR", None)
            else:
                os.environ["COFFEE_NB_DATA_DIR"] = env_before
    last = nb.cells.pop()
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    summary = json.loads(text.strip().splitlines()[-1])
    executed = out / "01_quickstart.executed.ipynb"
    nbformat.write(nb, executed)
    html_path = out / "01_quickstart.html"
    body, _ = HTMLExporter().from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")
    fallbacks = ", ".join(f"{k} ×{n}" for k, n in summary["fallbacks"].items()) or "none"
    print()
    print("Summary (sandbox prices, not real money)")
    print(
        f"  calls answered   {summary['answered']}  "
        f"(requests sent: {summary['requests']}, cache hits: {summary['cache_hits']})"
    )
    print(f"  fallbacks        {fallbacks}")
    print(f"  errors           {summary['errors'] or 'none'}")
    print(f"  cost             ${summary['cost']}")
    for period, left in summary["budget"].items():
        print(f"  budget left      {period}: ${left}")
    print()
    print(f"Executed notebook: {executed}")
    print(f"HTML export:       {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
