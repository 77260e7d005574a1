"""constraints/lint.txt: the pins behind `make lint`'s verdict (tools/pin_lint.py writes and checks them)."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints" / "lint.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9][0-9A-Za-z.+]*)", line)
            assert m, f"one exact pin a line: {line!r}"
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            assert name not in pins, f"pinned twice: {name}"
            pins[name] = m.group(2)
    return pins


def test_the_lint_tools_and_the_stubs_that_broke_are_pinned():
    pins = _pins()
    for name in ("ruff", "mypy", "import-linter", "deptry", "grimp", "numpy", "pydantic", "langchain-core"):
        assert name in pins, f"{name} decides the lint verdict: pin it (tools/pin_lint.py)"


def test_the_pins_meet_pyprojects_lower_bounds():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = list(data["project"]["dependencies"])
    for items in data["project"]["optional-dependencies"].values():
        deps += [d for d in items if not d.startswith("coffee_nb")]
    pins = _pins()
    for dep in map(Requirement, deps):
        name = re.sub(r"[-_.]+", "-", dep.name).lower()
        if name in pins:
            assert dep.specifier.contains(Version(pins[name])), f"{name}=={pins[name]} breaks {dep}"


def test_the_makefile_builds_its_venvs_with_the_pins():
    makefile = (ROOT / "Makefile").read_text()
    assert "PINS := constraints/lint.txt" in makefile
    assert '-e ".[dev]" -c $(PINS)' in makefile
    assert "$(STAMP): pyproject.toml $(PINS)" in makefile  # a change of pins rebuilds the venv
