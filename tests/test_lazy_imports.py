"""Imports inside functions are for import cost only (issue 25), and each one proves it.

Every import statement inside a function body in ``coffee_nb/`` ends its (first) line with one reason:

- ``# lazy: pandas`` (one or more packages of :data:`HEAVY`, comma-separated, then any note in parentheses):
  with its module imported, the import newly loads one of the packages it names;
- ``# lazy: %load_ext path``: ``%load_ext coffee_nb`` loads its module, and not what it imports;
- ``# lazy: import coffee_nb``: a bare ``import coffee_nb`` loads its module, and not what it imports.

A reason is checked for real, in forks of a Python that imported nothing heavy: the module imported, then
the import run and what it loads watched. No timing: which modules load is the test (benchmarks/ time them).
An import of something already loaded or light has no true reason and fails here; one to dodge a circle
fails test_no_import_circle (which follows imports in functions too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import coffee_nb

PACKAGE = Path(coffee_nb.__file__).parent
ROOT = PACKAGE.parent

# What a `# lazy:` reason may name: packages worth keeping out of a module that doesn't need them yet (each
# costs from about 10 ms to seconds to import, measured). asyncio is stdlib but about 30 ms: _shared/_config
# keeps it out (coffee_nb.errors, .budget, .pricing and .metrics load without it). tenacity and tornado come
# with LangSmith's run helpers (langchain_core.tracers.context), which nothing else needs at import.
HEAVY = frozenset(
    {
        "IPython",
        "PIL",
        "anthropic",
        "asyncio",
        "boto3",
        "botocore",
        "bpe_openai",
        "dask",
        "distributed",
        "genai_prices",
        "h11",
        "httpx",
        "httpx2",
        "ipywidgets",
        "langchain_anthropic",
        "langchain_aws",
        "langchain_core",
        "langchain_google_genai",
        "langchain_groq",
        "langchain_mistralai",
        "langchain_ollama",
        "langchain_openai",
        "langsmith",
        "matplotlib",
        "nbclient",
        "nbconvert",
        "nbformat",
        "numpy",
        "openai",
        "opentelemetry",
        "pandas",
        "platformdirs",
        "prometheus_client",
        "pydantic",
        "pygments",
        "redis",
        "tenacity",
        "tornado",
        "tqdm",
    }
)
PATHS = ("%load_ext path", "import coffee_nb")


@dataclass(frozen=True)
class Lazy:
    where: str  # coffee_nb/x/_y.py:LINE
    file: str
    module: str  # the module holding the import
    statement: str
    comment: str | None  # what its `# lazy:` comment says

    @property
    def reason(self) -> str | None:
        return self.comment

    @property
    def names(self) -> list[str]:
        """The packages the reason names (none for a reason of PATHS)."""
        if self.reason is None or self.reason.startswith(PATHS):
            return []
        return [n.strip() for n in self.reason.split("(")[0].split(",")]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_in_functions(node: ast.AST, in_function: bool = False) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        found += _imports_in_functions(child, inner)
    return found


def _function_level_imports() -> list[Lazy]:
    found: list[Lazy] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        file = str(path.relative_to(ROOT))
        for node in _imports_in_functions(ast.parse(source)):
            line = lines[node.lineno - 1]
            comment = line.split("# lazy:", 1)[1].strip() if "# lazy:" in line else None
            found.append(Lazy(f"{file}:{node.lineno}", file, _module(path), ast.unparse(node), comment))
    return found


IMPORTS = _function_level_imports()


def test_every_function_level_import_says_why():
    missing = [f"{i.where}: {i.statement}" for i in IMPORTS if i.reason is None]
    assert not missing, "an import inside a function needs '# lazy: <what it keeps out>' on its line:\n" + "\n".join(
        missing
    )


def test_each_reason_is_one_of_the_forms():
    bad = [
        f"{i.where}: '# lazy: {i.reason}' names {sorted(set(i.names) - HEAVY)}: not in HEAVY (nor one of {PATHS})"
        for i in IMPORTS
        if i.reason is not None and not set(i.names) <= HEAVY
    ]
    assert not bad, "\n".join(bad)


# Runs in a fresh Python: for each module holding lazy imports, a fork imports it, then one fork per import
# runs it. A named package: a finder first on sys.meta_path reports the first of them Python looks for
# (and ends the fork: it needn't load). A path: the coffee_nb modules the import loads.
_CHECK = r"""
import importlib, json, os, sys

checks = json.loads(sys.stdin.read())


def in_fork(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = work(write)
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data or '{"error": "the fork said nothing"}')


def coffee_nb_modules():
    return sorted(m for m in sys.modules if m == "coffee_nb" or m.startswith("coffee_nb."))


def load_ext(_write):
    os.environ["COFFEE_NB_WARM"] = "0"  # no warm-up thread: only what %load_ext itself loads
    from IPython.core.interactiveshell import InteractiveShell

    import coffee_nb

    coffee_nb.load_ipython_extension(InteractiveShell.instance())
    return coffee_nb_modules()


def bare_import(_write):
    import coffee_nb

    return coffee_nb_modules()


class Watch:
    def __init__(self, names, write):
        self.names, self.write = set(names), write

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.names and top not in sys.modules:
            os.write(self.write, json.dumps({"loads": top}).encode())
            os._exit(0)
        return None


def one(check):
    def work(write):
        before = set(sys.modules)
        if check["names"]:
            sys.meta_path.insert(0, Watch(check["names"], write))
        exec(compile(check["statement"], check["where"], "exec"), {})
        new = set(sys.modules) - before
        return {"loads": None, "new": sorted({m.partition(".")[0] for m in new}), "coffee_nb": sorted(
            m for m in new if m.startswith("coffee_nb."))}
    return work


def holder(module, items):
    def work(_write):
        importlib.import_module(module)
        return [in_fork(one(check)) for check in items]
    return work


by_module = {}
for check in checks:
    by_module.setdefault(check["module"], []).append(check)
out = {"%load_ext path": in_fork(load_ext), "import coffee_nb": in_fork(bare_import), "results": {}}
for module, items in by_module.items():
    results = in_fork(holder(module, items))
    if isinstance(results, dict):  # the module itself failed to import
        results = [results] * len(items)
    for check, result in zip(items, results):
        out["results"][check["where"]] = result
print(json.dumps(out))
"""


def test_each_lazy_import_keeps_out_what_it_says():
    items = [i for i in IMPORTS if i.reason is not None]  # the others fail test_every_function_level_import_says_why
    assert len(items) > 100  # the scan found them
    checks = [{"where": i.where, "module": i.module, "statement": i.statement, "names": i.names} for i in items]
    run = subprocess.run(
        [sys.executable, "-c", _CHECK], input=json.dumps(checks), capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    paths = {p: set(out[p]) for p in PATHS}
    assert "coffee_nb.notebook.magics" in paths["%load_ext path"] and paths["import coffee_nb"] == {"coffee_nb"}
    wrong = []
    for item in items:
        result = out["results"][item.where]
        said = f"{item.where}: {item.statement}  # lazy: {item.reason}"
        if "error" in result:
            wrong.append(f"{said}\n    failed: {result['error']}")
        elif item.names:
            if result["loads"] is None:
                heavy = sorted(set(result["new"]) & HEAVY) or "none"
                wrong.append(f"{said}\n    loads none of {item.names} (heavy packages it loads: {heavy})")
        else:
            path = next(paths[p] for p in PATHS if str(item.reason).startswith(p))
            if item.module not in path:
                wrong.append(f"{said}\n    {item.module} is not on that path")
            elif not set(result["coffee_nb"]) - path:
                wrong.append(f"{said}\n    everything it loads is on that path already")
    assert not wrong, "function-level imports that don't keep out what they say:\n" + "\n".join(wrong)


def _import_graph() -> dict[str, set[str]]:
    """coffee_nb module -> the coffee_nb modules it imports at run time (module level or in functions; not
    under ``if TYPE_CHECKING:``)."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}

    def visit(module: str, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(module, other)
                continue
            if isinstance(child, ast.Import):
                graph[module] |= {a.name for a in child.names if a.name in files}
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("coffee_nb"):
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    graph[module].add(target if target in files else child.module)
            visit(module, child)

    for module, path in files.items():
        visit(module, ast.parse(path.read_text()))
    return {m: targets - {m} for m, targets in graph.items()}


def test_no_import_circle():
    """No module reaches itself through imports, module-level or inside functions (a function-level import
    is not a way around a circle: cut it, see issue 25)."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                circles.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert sum(len(t) for t in graph.values()) > 300  # the scan found the imports
    assert not circles, f"import circles: {circles}"
