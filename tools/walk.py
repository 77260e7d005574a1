"""How far one AutoPicker call walks through the package: moves between modules, and climbs back up.

Traces one call (after a warm-up call) and follows where it is: the module of the innermost
``coffee_nb`` frame, after every Python call and return. It counts

- *moves*: the walk enters another module (by a call or by a return);
- *climbs*: the module it enters sits higher than the one it leaves (layers from import-linter's
  contract, and inside ``invoke/`` the walk's own order: invoker > fast path > drivers > hedge >
  attempt runner > replay > plan > spend > the leaves). A return is a climb, so a walk that goes down
  the layers once and comes back once climbs as often as it went down; every extra round trip
  (attempt -> plan -> attempt -> plan ...) adds to both numbers;
- *calls up*: calls (not returns) from a lower module into a higher one: a lower room calling back up.

Run: ``python tools/walk.py`` (offline: scripted chat models, an in-memory budget). ``--edges`` prints
every module pair with its count.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

import coffee_nb
from coffee_nb import AutoPicker, Budget, Policy
from coffee_nb.testing import ScriptedChatModel

LAYERS = [  # top to bottom, as in pyproject's [tool.importlinter] layers contract
    ("coffee_nb.notebook",),
    ("coffee_nb.jobs", "coffee_nb.comparison"),
    ("coffee_nb.session", "coffee_nb.sandbox"),
    ("coffee_nb.invoke",),
    ("coffee_nb.budget", "coffee_nb.metrics", "coffee_nb.providers", "coffee_nb.replay"),
    ("coffee_nb.pricing", "coffee_nb.errors"),
    ("coffee_nb._shared",),
]
INVOKE = [  # the walk's order inside invoke/, top to bottom; anything else there is a leaf
    "_invoker",
    "_fastpath",
    "_drivers",
    "_hedge",
    "_attempt",
    "_replay",
    "_plan",
    "_spend",
]


def rank(module: str) -> tuple[int, int]:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            if names == ("coffee_nb.invoke",):
                leaf = module.rsplit(".", 1)[-1]
                return i, INVOKE.index(leaf) if leaf in INVOKE else len(INVOKE)
            return i, 0
    return -1, 0  # coffee_nb/__init__, testing: above everything


def _ours(frame: FrameType | None) -> str | None:
    """The module of the innermost coffee_nb frame (the scripted test models are not the package)."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("coffee_nb") and name != "coffee_nb.testing":
            return str(name)
        frame = frame.f_back
    return None


def trace(run: Callable[[], Any]) -> tuple[list[str], Counter[tuple[str, str]]]:
    """The walk (modules in the order visited) and the calls between modules (caller, callee)."""
    walk: list[str] = []
    calls: Counter[tuple[str, str]] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            here = _ours(frame)
            caller = _ours(frame.f_back)
            if here is not None and caller is not None and here != caller and here == frame.f_globals["__name__"]:
                calls[(caller, here + ":" + frame.f_code.co_name)] += 1
        elif event == "return":
            here = _ours(frame.f_back)
        else:
            return
        if here is not None and (not walk or walk[-1] != here):
            walk.append(here)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return walk, calls


def scenarios() -> dict[str, Callable[[], Any]]:
    def picker(script: list[Any]) -> AutoPicker:
        return AutoPicker(
            ScriptedChatModel(script=script, model_name="primary"),
            [ScriptedChatModel(script=["fallback answer"], model_name="backup")],
            budget=Budget(total=10),
        )

    ok = picker(["an answer"])
    failing = picker([ConnectionError("connection reset")])
    streaming = picker(["a streamed answer of several words"])
    hedged = AutoPicker(
        ScriptedChatModel(script=["slow answer"], model_name="primary", delay=0.3),
        [ScriptedChatModel(script=["hedge answer"], model_name="backup")],
        budget=Budget(total=10),
        policy=Policy(hedge_after=0.05),
    )

    async def astream() -> None:
        async for _ in streaming.astream("hi"):
            pass

    return {
        "ainvoke, primary answers": lambda: asyncio.run(ok.ainvoke("hi")),
        "ainvoke, falls back": lambda: asyncio.run(failing.ainvoke("hi")),
        "astream, primary answers": lambda: asyncio.run(astream()),
        "ainvoke, hedge wins": lambda: asyncio.run(hedged.ainvoke("hi")),
    }


def main() -> None:
    show_edges = "--edges" in sys.argv
    print(f"coffee_nb {coffee_nb.__version__}: module moves and climbs in one call (after a warm-up call)")
    for name, run in scenarios().items():
        run()  # warm-up: first-use imports and clients
        walk, calls = trace(run)
        moves = len(walk) - 1
        climbs = sum(1 for a, b in itertools.pairwise(walk) if rank(b) < rank(a))
        up = sum(n for (a, b), n in calls.items() if rank(b.split(":")[0]) < rank(a))
        rooms = [m.split(".")[1] if m.count(".") > 1 else m for m in walk]
        folder_moves = sum(1 for a, b in itertools.pairwise(rooms) if a != b)
        counts = f"module moves {moves:4d}  climbs {climbs:4d}  calls up {up:3d}  folder moves {folder_moves:3d}"
        print(f"  {name:26s} {counts}")
        if show_edges:
            short = [m.removeprefix("coffee_nb.") for m in walk]
            print("      walk: " + " > ".join(short))
            for (a, b), n in sorted(calls.items(), key=lambda e: -e[1]):
                mark = "  UP" if rank(b) < rank(a) else ""
                print(f"      {n:4d}  {a.removeprefix('coffee_nb.')} -> {b.removeprefix('coffee_nb.')}{mark}")


if __name__ == "__main__":
    main()
