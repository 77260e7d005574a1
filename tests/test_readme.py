"""The README's examples run, so they cannot drift from the code.

* Every ```python block of README.md runs, offline, each in a namespace of its own (a reader copies one
  block, not the page), as it is written: nothing is swapped. With every provider's key and settings
  removed from the environment, a spec like ``openai/gpt-4o-mini`` fails its attempt ("a missing key is
  an error of that attempt") and the chain falls back to the ``sandbox/...`` model the example names, as
  the README says it does. A block in IPython syntax (``%load_ext``) runs as a cell of a real
  InteractiveShell. Tracebacks point at README.md's own lines.
* A block right after ``<!-- not run: <why> -->`` is only compiled (its magics translated first); the
  reason is required. Keep them few: an example that can run offline should.
* Inline examples (```ModelSpec(model=..., params={...})``` in the prose and tables) that call coffee_nb's
  public API bind to the signature they name: a positional argument to a keyword-only parameter or a
  misspelt keyword fails here. Those building a settings object (``ModelSpec``, ``Policy``, ``Budget``,
  ``Limit``) from literal values are built, so a value the object refuses fails too.
* Every public exception and warning class is named in the README's "Errors and warnings" section.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import coffee_nb

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```\s*(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<why>.*?)\s*-->\s*$")
# What a provider reads from the environment (README, "Providers"): removed, so no example reaches a real
# provider whatever the machine running the tests has set.
_PROVIDER_ENV = re.compile(
    r"_API_KEY$|^(OPENAI|AZURE_OPENAI|ANTHROPIC|GOOGLE|GEMINI|MISTRAL|GROQ|OPENROUTER|DEEPSEEK|XAI|TOGETHER"
    r"|FIREWORKS|AWS|OLLAMA|COFFEE_NB_OPENAI_COMPATIBLE)_"
)


@dataclass(frozen=True)
class Block:
    line: int  # README.md line of the block's first code line (1-based)
    code: str
    not_run: str | None  # the reason given in a `<!-- not run: ... -->` marker, else None

    @property
    def ipython(self) -> bool:
        """A notebook cell rather than plain Python: a line magic, cell magic or shell escape."""
        return any(line.lstrip().startswith(("%", "!")) for line in self.code.splitlines())


def _python_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"README.md:{i + 1}: a code block that is never closed"
        if fence.group(1) == "python":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = _NOT_RUN.match(before.strip())
            blocks.append(Block(i + 2, "\n".join(lines[i + 1 : end]) + "\n", marker.group("why") if marker else None))
        i = end + 1
    return blocks


BLOCKS = _python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 5, "the README's ```python blocks were not found: has the fence syntax changed?"
    for block in BLOCKS:
        if block.not_run is not None:
            assert block.not_run, f"README.md:{block.line}: `<!-- not run: ... -->` must say why"


def _compiled(block: Block) -> Any:
    """The block as Python (magics translated as IPython would), with README.md's line numbers."""
    source = block.code
    if block.ipython:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    return compile("\n" * (block.line - 1) + source, str(README), "exec")


@pytest.fixture
def offline(monkeypatch, quiet_sandbox):
    """No provider key or setting in the environment; the sandbox without its simulated latency."""
    for name in list(os.environ):
        if _PROVIDER_ENV.search(name):
            monkeypatch.delenv(name)
    # no OTLP receiver listens here: OpenTelemetry's own off switch (tests/metrics/test_otel*.py export for real)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    return quiet_sandbox


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_python_block_runs(block: Block, offline):
    code = _compiled(block)  # every block, run or not, is at least valid (IPython) Python
    if block.not_run is not None:
        return
    if block.ipython:
        from IPython.core.interactiveshell import InteractiveShell

        result = InteractiveShell.instance().run_cell(block.code)
        result.raise_error()
        assert result.success
        return
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    try:
        exec(code, namespace)
    finally:
        _close(namespace)


def _close(namespace: dict[str, Any]) -> None:
    """What an example leaves running and the test's isolation does not stop: a /metrics server."""
    from coffee_nb.metrics import PrometheusMetrics

    for value in namespace.values():
        if isinstance(value, PrometheusMetrics):
            value.stop()


# -- inline examples ------------------------------------------------------------------------------------


def _prose(text: str) -> str:
    """The README without its fenced blocks (blanked, so line numbers stay)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def _inline_calls() -> list[tuple[int, str, ast.Call]]:
    """(line, span, call) for every call in an inline code span that parses as a Python expression."""
    prose = _prose(README.read_text(encoding="utf-8"))
    found = []
    for m in re.finditer(r"`([^`]+)`", prose):
        span = m.group(1)
        if "\n\n" in span:
            continue  # not a span: code spans end at a paragraph's end
        source = " ".join(span.split()).replace("…", "...")
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            continue
        line = prose.count("\n", 0, m.start()) + 1
        found += [(line, source, node) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    return found


def _resolve(func: ast.expr) -> Any:
    """The coffee_nb object a call names, or None: ``Name``, ``coffee_nb.Name``, ``Name.attr``, and
    ``llm.attr`` / ``picker.attr`` (the README's names for an AutoPicker)."""
    path: list[str] = []
    while isinstance(func, ast.Attribute):
        path.insert(0, func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    root, names = func.id, path
    if root == "coffee_nb":
        if not names:
            return None
        root, names = names[0], names[1:]
    if root in ("llm", "picker") and names:
        obj: Any = coffee_nb.AutoPicker("sandbox/fast")
    elif root in coffee_nb.__all__:
        obj = getattr(coffee_nb, root)
    else:
        return None
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj if callable(obj) else None


_BUILT = ("ModelSpec", "Policy", "Budget", "Limit")


def _literal(node: ast.expr) -> Any:
    """The value of a literal argument without a placeholder (``...``, ``"..."``); raises ValueError."""
    value = ast.literal_eval(node)
    if any(isinstance(n, ast.Constant) and (n.value is ... or "..." in str(n.value)) for n in ast.walk(node)):
        raise ValueError("a placeholder")
    return value


def test_readme_inline_calls_match_the_api():
    calls = _inline_calls()
    checked, problems = [], []
    for line, span, call in calls:
        target = _resolve(call.func)
        if target is None:
            continue  # not coffee_nb's (ChatOpenAI(timeout=2), create_agent(...)) or a bare method name
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            continue
        where = f"README.md:{line}: `{span}`"
        checked.append(where)
        try:
            inspect.signature(target).bind_partial(*call.args, **{k.arg: k.value for k in call.keywords if k.arg})
        except TypeError as exc:
            problems.append(f"{where}: {exc}")
            continue
        name = getattr(target, "__name__", "")
        if name in _BUILT and getattr(coffee_nb, name) is target:
            try:
                args = [_literal(a) for a in call.args]
                kwargs = {k.arg: _literal(k.value) for k in call.keywords if k.arg}
            except ValueError:
                continue  # placeholders: the binding above is all that can be checked
            try:
                built = target(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any refusal is the README's problem, reported with its line
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
            else:
                getattr(built, "close", lambda: None)()
    assert not problems, "\n".join(problems)
    # the check itself still finds what it is for: the inline ModelSpec and Policy examples
    assert sum("ModelSpec(" in w for w in checked) >= 3 and sum("Policy(" in w for w in checked) >= 5, checked


# -- errors and warnings --------------------------------------------------------------------------------


def test_every_public_exception_and_warning_is_documented():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Errors and warnings\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section is not None, "README.md has no '## Errors and warnings' section"
    public = [n for n in coffee_nb.__all__ if isinstance(getattr(coffee_nb, n), type)]
    raised = [n for n in public if issubclass(getattr(coffee_nb, n), BaseException)]
    assert {"StorageError", "CacheWarning", "BudgetWarning", "AllModelsFailedError"} <= set(raised)
    missing = [n for n in raised if f"`{n}`" not in section.group(1)]
    assert not missing, f"not in the README's 'Errors and warnings': {missing}"
