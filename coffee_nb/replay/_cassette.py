"""Cassettes: record every model call of a notebook to a file that lives beside it, and replay it.

A cassette is a JSON Lines file (``<notebook>.llm-cassette.jsonl``): one call per line, keys sorted,
in the order first recorded, answers as readable text. An entry is keyed by the normalised request
(the model chain, the messages, the parameters, tools and schema) and holds the answer (text, tool
calls, usage, the model that answered, what it cost, the attempts).

Modes:

- ``record``: call as usual and store every answer (an entry for the same request is replaced in
  place; a cell re-run with a changed prompt replaces that cell's stale entry);
- ``replay``: answer from the cassette when the request matches, else call and record;
- ``strict``: answer only from the cassette; a miss is :class:`CassetteMissError` naming the request
  and the nearest entry, and nothing is sent (how CI re-runs a notebook with no keys);
- ``off``.

Replayed answers are marked ``replayed`` in records and summaries, cost $0 and are never charged to a
budget; the recorded cost is kept. No secret is ever written: every text is redacted first.

>>> with coffee_nb.cassette("analysis.llm-cassette.jsonl", mode="replay"):
...     llm.invoke("Summarise the findings")
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from coffee_nb._shared import _config
from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import digests
from coffee_nb._shared._redact import redact
from coffee_nb.errors._errors import CoffeeError, ConfigError

__all__ = ["MODES", "Cassette", "CassetteError", "CassetteMissError", "active", "cassette", "use_cassette"]

MODES = ("record", "replay", "strict", "off")
SUFFIX = ".llm-cassette.jsonl"

# the cassette of a ``with cassette(...)`` block (None: the process-wide one, if any)
_CURRENT: ContextVar[Cassette | None] = ContextVar("coffee_nb_cassette", default=None)
# what the running notebook cell is (set by the magics), so re-recording a cell replaces its entry
CELL: ContextVar[str | None] = ContextVar("coffee_nb_cell", default=None)


class CassetteError(CoffeeError):
    """A cassette file can't be used: corrupt, unwritable, or a bad mode. Names the file and what to do."""


class CassetteMissError(CassetteError):
    """Strict mode: the request is not in the cassette. Names the request and the nearest entry."""


@dataclass(frozen=True, slots=True)
class Tape:
    """A recorded answer, ready to replay."""

    model: str
    provider: str
    content: str
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int]
    cost: Decimal | None
    attempts: list[dict[str, Any]]


def request_of(models: Sequence[str], messages: Sequence[Any] | str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised request: what must match for a replay (secrets redacted, stable JSON types)."""
    # text is compared without the whitespace at its ends (a cell body ends with a newline, a string doesn't)
    if isinstance(messages, str):
        msgs = [{"role": "human", "content": redact(messages.strip())}]
    else:
        msgs = []
        for m in messages:
            entry: dict[str, Any] = {
                "role": getattr(m, "type", "?"),
                "content": redact(content_text(getattr(m, "content", m)).strip()),
            }
            images = digests(getattr(m, "content", None))
            if images:  # by the SHA-256 of their bytes: a cassette never holds an image itself
                entry["images"] = images
            tool_calls = getattr(m, "tool_calls", None)
            if tool_calls:
                entry["tool_calls"] = [{"name": c.get("name"), "args": c.get("args")} for c in tool_calls]
            msgs.append(entry)
    clean = {k: _plain(v) for k, v in sorted(params.items()) if v is not None}
    return {"models": list(models), "messages": msgs, "params": clean}


def _plain(value: Any) -> Any:
    """JSON-stable form of a parameter (tools and schemas included), secrets redacted."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, str):
        return redact(value)
    schema = getattr(value, "model_json_schema", None)  # a pydantic model class
    if callable(schema):
        return _plain(schema())
    return redact(repr(value))


def key_of(request: Mapping[str, Any]) -> str:
    raw = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class Cassette:
    """One cassette file and its mode. Thread-safe; the file is rewritten atomically on every change."""

    def __init__(self, path: str | os.PathLike[str] | None = None, mode: str = "replay") -> None:
        if mode not in MODES:
            raise CassetteError(f"unknown cassette mode {mode!r}: expected one of {', '.join(MODES)}")
        self.path = Path(path) if path is not None else default_path()
        self.mode = mode
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self.replays = 0
        self.recorded = 0
        self._load()
        if mode in ("record", "replay"):
            self._check_writable()

    def _check_writable(self) -> None:
        """Fail now, before any call is paid for, if answers could not be kept."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CassetteError(
                f"can't write the cassette at {self.path}: {exc.strerror or exc}; choose a writable path with "
                "%llm_cassette record PATH or coffee_nb.cassette(PATH)"
            ) from None
        if not os.access(parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise CassetteError(
                f"can't write the cassette at {self.path}: permission denied; choose a writable path with "
                "%llm_cassette record PATH or coffee_nb.cassette(PATH)"
            )

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, mode={self.mode!r}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    # -- the file ----------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CassetteError(f"can't read the cassette at {self.path}: {exc.strerror or exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
                entry["request"], entry["response"]
            except (ValueError, KeyError, TypeError) as exc:
                backup = self.path.with_name(self.path.name + ".bak")
                with contextlib.suppress(OSError):
                    shutil.copy2(self.path, backup)
                raise CassetteError(
                    f"the cassette at {self.path} is corrupt at line {number} ({exc}); it is left as it is "
                    f"(a copy is at {backup}): fix or delete that line, or record a new cassette elsewhere"
                ) from None
            self._entries[key] = entry

    def _save(self) -> None:
        lines = [json.dumps(e, sort_keys=True, ensure_ascii=False) for e in self._entries.values()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CassetteError(
                f"can't write the cassette at {self.path}: {exc.strerror or exc}; choose a writable path with "
                "%llm_cassette record PATH or coffee_nb.cassette(PATH)"
            ) from None

    # -- what the runner asks ------------------------------------------------------------------------
    def find(self, request: dict[str, Any]) -> Tape | None:
        """The recorded answer for ``request``; in strict mode a miss raises :class:`CassetteMissError`."""
        if self.mode in ("off", "record"):
            return None
        with self._lock:
            entry = self._entries.get(key_of(request))
        if entry is None:
            if self.mode == "strict":
                raise CassetteMissError(self._miss(request))
            return None
        self.replays += 1
        r = entry["response"]
        cost = r.get("cost")
        return Tape(
            model=r["model"],
            provider=r.get("provider", ""),
            content=r.get("content", ""),
            tool_calls=r.get("tool_calls") or [],
            usage={k: int(v) for k, v in (r.get("usage") or {}).items()},
            cost=None if cost is None else Decimal(cost),
            attempts=r.get("attempts") or [],
        )

    def store(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Record an answer (record and replay modes), replacing the entry of the same request, and a
        stale entry of the same notebook cell."""
        if self.mode not in ("record", "replay"):
            return
        key = key_of(request)
        cell = CELL.get()
        entry = {"key": key, "request": request, "response": _redacted(response)}
        if cell is not None:
            entry["cell"] = cell
        with self._lock:
            if cell is not None and key not in self._entries:  # the cell's previous request, now changed
                mine = (k for k, e in self._entries.items() if e.get("cell") == cell and _same_shape(e, request))
                stale = next(mine, None)
                if stale is not None:  # replaced where it stood: the file keeps its order
                    self._entries = {(key if k == stale else k): e for k, e in self._entries.items()}
            self._entries[key] = entry
            self.recorded += 1
            self._save()

    def _miss(self, request: dict[str, Any]) -> str:
        cell = CELL.get()
        where = f"cell {cell}" if cell else "this request"
        last = request["messages"][-1]["content"] if request["messages"] else ""
        head = (
            f"strict cassette {self.path}: {where} is not recorded (models {request['models']}, "
            f"prompt {last[:80]!r}); no model was called."
        )
        nearest = self._nearest(request)
        if nearest is None:
            return f"{head} The cassette has no entries: record it with %llm_cassette record."
        diff = "\n".join(
            difflib.unified_diff(
                _lines(nearest["request"]), _lines(request), "recorded", "this request", lineterm="", n=0
            )
        )
        return f"{head}\nThe nearest entry differs:\n{diff}\nRe-record it with %llm_cassette record (or mode='replay')."

    def _nearest(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if not self._entries:
            return None
        target = "\n".join(_lines(request))

        def closeness(entry: dict[str, Any]) -> float:
            return difflib.SequenceMatcher(None, "\n".join(_lines(entry["request"])), target).ratio()

        cell = CELL.get()
        same_cell = [e for e in self._entries.values() if cell is not None and e.get("cell") == cell]
        return same_cell[0] if same_cell else max(self._entries.values(), key=closeness)


def _same_shape(entry: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
    return bool(entry["request"].get("models") == request.get("models"))


def _lines(request: Mapping[str, Any]) -> list[str]:
    return json.dumps(request, sort_keys=True, indent=1, ensure_ascii=False).splitlines()


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def default_path() -> Path:
    """``<notebook>.llm-cassette.jsonl`` beside the running notebook (JupyterLab tells the kernel its
    path), else ``coffee_nb.llm-cassette.jsonl`` in the working directory."""
    notebook = os.environ.get("JPY_SESSION_NAME") or _ipython_session()
    if notebook and notebook.endswith(".ipynb"):
        return Path(notebook[: -len(".ipynb")] + SUFFIX)
    return Path("coffee_nb" + SUFFIX)


def _ipython_session() -> str | None:
    """The running IPython's ``__session__`` (the notebook's path), asking only an IPython already loaded."""
    ipython = sys.modules.get("IPython")
    ip = ipython.get_ipython() if ipython is not None else None
    value = ip.user_ns.get("__session__") if ip is not None else None
    return value if isinstance(value, str) else None


def active() -> Cassette | None:
    """The cassette in force here: a ``with cassette(...)`` block's, else the process-wide one."""
    current = _CURRENT.get()
    return current if current is not None else _config.CASSETTE.cassette


def use_cassette(mode: str, path: str | os.PathLike[str] | None = None) -> Cassette | None:
    """Set the process-wide cassette (``%llm_cassette``, ``configure(cassette=...)``); ``off`` removes it."""
    if mode not in MODES:
        raise ConfigError(f"unknown cassette mode {mode!r}: expected one of {', '.join(MODES)}")
    tape = None if mode == "off" else Cassette(path, mode)
    with _config.CASSETTE.lock:
        _config.CASSETTE.cassette = tape
    return tape


@contextlib.contextmanager
def cassette(path: str | os.PathLike[str] | Cassette | None = None, mode: str = "replay") -> Iterator[Cassette]:
    """Record or replay every model call inside the block (``with coffee_nb.cassette("x.jsonl"): ...``);
    ``path`` may also be a :class:`Cassette` already opened (its own mode then)."""
    tape = path if isinstance(path, Cassette) else Cassette(path, mode)
    token = _CURRENT.set(tape)
    try:
        yield tape
    finally:
        _CURRENT.reset(token)
