"""The pins behind `make lint`'s verdict: constraints/lint.txt.

`make lint`'s verdict depends on more than the code: on the lint tools' versions (ruff, mypy, import-linter,
deptry and what they run on) and on the type information mypy reads from installed packages (numpy 2.5's
stubs turned a clean `mypy --strict` into two errors). Every venv the Makefile builds installs with
`-c constraints/lint.txt`, so the verdict is the same on every Python we support and on every day. The pins
constrain the dev venvs only: `pip install coffee_nb` still gets current releases.

    .venv/bin/python tools/pin_lint.py           # re-pin from this venv (runs mypy to see what it reads)
    .venv/bin/python tools/pin_lint.py --check   # `make lint`, after mypy: all it read is pinned, as installed

To move the pins forward: upgrade the venv without them, re-pin, lint, commit the file. Do it in the venv of the
oldest Python we support (.venv, 3.11): a release that dropped it (numpy 2.5 needs 3.12) can't be pinned, and
`make test-only PYTHON=python3.13 VENV=.venv-3.13` shows the pins still install on the newest.

    .venv/bin/python -m pip install --upgrade --upgrade-strategy eager -e ".[dev]"
    .venv/bin/python tools/pin_lint.py && make lint
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "constraints" / "lint.txt"
TOOLS = ["ruff", "mypy", "import-linter", "deptry"]
HEADER = """\
# What `make lint`'s verdict depends on, pinned: the lint tools with everything they run on, and every package
# mypy reads type information from (coffee_nb's imports, followed). Written by tools/pin_lint.py (its docstring
# says how to move them forward); `make lint` checks that the venv matches. Used as `pip install -c` by the
# Makefile's venvs only: these are not coffee_nb's requirements (pyproject.toml's lower bounds are).
"""


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tool_closure() -> set[str]:
    """The lint tools and, recursively, what they require (markers evaluated here, extras not followed)."""
    seen: set[str] = set()
    todo = list(TOOLS)
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement for another Python or platform
        seen.add(name)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def module_owners() -> dict[str, str]:
    """Module path as mypy's cache names it ('numpy/_typing/_array_like') -> the distribution that installs it."""
    owners: dict[str, str] = {}
    for dist in metadata.distributions():
        name = norm(dist.metadata["Name"])
        if name == "coffee-nb":
            continue
        for f in dist.files or []:
            if f.suffix in (".py", ".pyi"):
                parts = list(f.with_suffix("").parts)
                if parts[0].endswith("-stubs"):  # stub-only packages (types-*, *-stubs) stand for the module
                    parts[0] = parts[0].removesuffix("-stubs")
                owners.setdefault("/".join(parts), name)
    return owners


def cached_modules(cache: Path) -> set[str]:
    """The modules in a mypy cache (SQLite cache.*.db of mypy ≥ 2, or the *.meta.json files of older ones)."""
    paths: set[str] = set()
    for db in cache.glob("cache*.db"):
        with sqlite3.connect(db) as con:
            paths.update(row[0] for row in con.execute("SELECT path FROM files2"))
    paths.update(p.relative_to(cache).as_posix() for p in cache.rglob("*.meta.json"))
    return {p.split(".", 1)[0] for p in paths}


def mypy_reads(cache_root: Path) -> set[str]:
    """Distributions whose modules are in mypy's cache for the configured python_version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    cache = cache_root / version
    if not cache.is_dir():
        sys.exit(f"pin_lint: no mypy cache in {cache}: run mypy first")
    modules = cached_modules(cache)
    if not modules:
        sys.exit(f"pin_lint: no modules found in {cache}: has mypy's cache format changed?")
    owners = module_owners()
    return {owners[m] for m in modules if m in owners}


def installed(names: set[str]) -> dict[str, str]:
    versions = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {n: versions[n] for n in names if n in versions}


def read_pins() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[norm(name)] = version.strip()
    return pins


def write(tools: dict[str, str], typed: dict[str, str]) -> None:
    lines = [HEADER, "# The lint tools and what they run on"]
    lines += [f"{n}=={v}" for n, v in sorted(tools.items())]
    lines += ["", "# Packages mypy reads type information from"]
    lines += [f"{n}=={v}" for n, v in sorted(typed.items()) if n not in tools]
    PINS.parent.mkdir(exist_ok=True)
    PINS.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="check the venv against the pins (after mypy ran)")
    args = parser.parse_args()
    tools = installed(tool_closure())
    if args.check:
        needed = tools | installed(mypy_reads(ROOT / ".mypy_cache"))
        pins = read_pins()
        unpinned = sorted(f"{n}=={v}" for n, v in needed.items() if n not in pins)
        differ = sorted(f"{n} {v} (pinned {pins[n]})" for n, v in needed.items() if n in pins and pins[n] != v)
        if differ:
            print(f"pin_lint: installed versions differ from {PINS.relative_to(ROOT)}: {', '.join(differ)}")
            venv = Path(sys.prefix).resolve()
            venv_arg = venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv
            print(f"  rebuild the venv: rm {venv_arg}/.installed-stamp && make venv VENV={venv_arg}")
        if unpinned:
            print(f"pin_lint: the lint verdict depends on unpinned packages: {', '.join(unpinned)}")
            print("  re-pin: .venv/bin/python tools/pin_lint.py (and commit constraints/lint.txt)")
        return 1 if differ or unpinned else 0
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", cache], cwd=ROOT, check=False)
        typed = installed(mypy_reads(Path(cache)))
    write(tools, typed)
    print(f"pin_lint: {len(tools)} tool packages, {len(set(typed) - set(tools))} typed packages -> {PINS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
