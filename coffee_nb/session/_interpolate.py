"""Prompt interpolation (``%%llm``, ``%%llm_map``, ``compare`` and ``map_rows`` share these rules): ``{name}``,
``{name.attr}``, ``{name[key]}``, ``{In[3]}``, ``{Out[3]}``,
and the notebook's exceptions: ``{err}`` (the last one; a variable named ``err`` wins) and ``{Err[3]}``
(the one cell 3 raised), as type, message and the traceback's frames in the notebook's own code.

What a field holds decides what is sent: a matplotlib figure or axes, a PIL or IPython image, image
bytes or the path of an image file go as an image (the prompt becomes a list of LangChain content
blocks, text and images in the order they appear); a DataFrame, Series or array as a compact table cut to
``context_tokens`` (``{df:describe}``: a summary instead of rows); anything else as ``str(value)``.
``{name:text}`` sends ``str(value)`` whatever it is.

Done exactly once, left to right. Only fields that look like a Python name followed by ``.attr`` /
``[index]`` are candidates, so code, JSON and tracebacks full of braces pass through untouched; a
candidate that can't be filled is left as is and reported with the reason. ``{{name}}`` is the escape
for a literal ``{name}``; other doubled braces (JSON's ``}}``, Jinja's ``{{ x }}``) are left alone. No
expression is evaluated: attributes and items are looked up one by one.

A prompt leaves the machine, so what it may reach is limited: no private or dunder attributes (the
kernel's signing key is ``exit._ip.kernel.session.key``), no root name starting with ``__``, nothing
read through ``os.environ``, and no value holding an API key in use. An exception raised by the
user's own object (a property that raises) is a :class:`FieldError` naming the field (the magics show it
as a one-line ``UsageError``: ``coffee_nb.notebook.interpolate``).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NamedTuple

from coffee_nb._shared._format import content_text
from coffee_nb._shared._images import is_image
from coffee_nb._shared._redact import redact
from coffee_nb.content._objects import as_image
from coffee_nb.errors._errors import ConfigError

__all__ = [
    "ErrorLog",
    "FieldError",
    "Prompt",
    "Row",
    "Unfilled",
    "describe",
    "fill",
    "interpolate",
    "last_error",
    "prompt",
    "prompt_text",
    "with_text",
]

# A filled prompt: text, or LangChain content blocks when a field held an image
Prompt = str | list[str | dict[Any, Any]]  # (LangChain's type of a message's content)


class FieldError(ConfigError):
    """A ``{field}`` of a prompt that can't be filled as asked (says which, and why)."""


# {name(.attr | [int] | ['key'] | ["key"])*} — nothing else is a field; {{field}} is its escape
_PATH = r"""[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:-?\d+|'[^'\]]*'|"[^"\]]*")\])*"""
_MODIFIERS = ("describe", "text")  # {df:describe}: a summary of a table; {x:text}: str(x), whatever x is
_FIELD = re.compile(
    r"\{\{(?P<esc>" + _PATH + r"(?::(?:describe|text))?)\}\}|\{(?P<expr>" + _PATH + r")(?::(?P<mod>describe|text))?\}"
)
_PART = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+|'[^']*'|"[^"]*")\]""")

# why a field is left as written, read as "{field} <reason>; left as written."
NOT_DEFINED = "is not defined here"
NO_ERROR = "is not set: no cell has raised an exception yet"
PRIVATE = "is not read: private attributes are not interpolated"
ENVIRON = "is not read: environment variables are not interpolated"
SECRET = "is not used: its value holds an API key"


class Unfilled(NamedTuple):
    """A field left as written, and why."""

    field: str
    reason: str


class _Refused(Exception):  # noqa: N818 - internal signal, never leaves this module
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    root = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr)
    assert root is not None
    name = root.group(0)
    if name.startswith("__"):
        raise _Refused(PRIVATE)
    parts = _PART.findall(expr[root.end() :])
    if any(attr.startswith("_") for attr, _ in parts):  # checked before any lookup runs user code
        raise _Refused(PRIVATE)
    if name not in namespace:
        if name != "err":
            raise _Refused(NOT_DEFINED)
        value: Any = last_error(namespace)
        if value is None:
            raise _Refused(NO_ERROR)
    else:
        value = namespace[name]
    for attr, index in parts:
        if isinstance(value, os._Environ):
            raise _Refused(ENVIRON)
        if attr:
            try:
                value = getattr(value, attr)
            except AttributeError:
                raise _Refused(NOT_DEFINED) from None
        else:
            key: Any = int(index) if index.lstrip("-").isdigit() else index[1:-1]
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise _Refused(NOT_DEFINED) from None
    if isinstance(value, os._Environ):
        raise _Refused(ENVIRON)
    if isinstance(value, BaseException):
        return describe(value)
    return value


def last_error(namespace: Mapping[str, Any]) -> BaseException | None:
    """The exception the most recent failing cell raised (``Err``, kept by ``ErrorLog``), if any."""
    errors = namespace.get("Err")
    if not isinstance(errors, Mapping) or not errors:
        return None
    found = errors[max(errors)]
    return found if isinstance(found, BaseException) else None


def describe(exc: BaseException, frames: int = 8) -> str:
    """An exception as a prompt needs it: its last frames (the notebook's code, not IPython's), then
    ``Type: message``. Keys are taken out."""
    summary = traceback.extract_tb(exc.__traceback__)
    own = [f for f in summary if "/IPython/" not in f.filename.replace("\\", "/")]
    lines = traceback.format_list(own[-frames:])
    text = "".join(["Traceback (most recent call last):\n", *lines] if lines else [])
    text += "".join(traceback.format_exception_only(type(exc), exc))
    return redact(text.rstrip("\n"))


class ErrorLog:
    """A ``post_run_cell`` hook keeping each failing cell's exception in the user's ``Err`` dict (by
    execution count), as ``In`` / ``Out`` keep cells: ``{Err[3]}`` / ``{err}`` in a prompt."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    def __call__(self, result: Any) -> None:
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if exc is None:
            return
        ns = self.shell.user_ns
        errors = ns.get("Err")
        if not isinstance(errors, dict):
            if "Err" in ns:
                return  # the user's own Err: left alone
            errors = ns["Err"] = {}
        count = getattr(result, "execution_count", None) or getattr(self.shell, "execution_count", 0)
        errors[count] = exc

    @classmethod
    def install(cls, shell: Any) -> None:
        """Register once per shell (a reloaded extension does not add a second hook)."""
        events = getattr(shell, "events", None)
        if events is None:
            return
        if not any(isinstance(cb, cls) for cb in events.callbacks.get("post_run_cell", [])):
            events.register("post_run_cell", cls(shell))


def interpolate(
    text: str, namespace: Mapping[str, Any], *, context_tokens: int | None = None
) -> tuple[Prompt, list[Unfilled]]:
    """``text`` with fields filled from ``namespace`` (a string, or content blocks when a field held an
    image), and the fields left as written (with why). Tables are cut to ``context_tokens`` each.

    Raises :class:`FieldError` naming the field when the user's own object raises while being read (or
    can't be sent: an image too large)."""
    unfilled: list[Unfilled] = []
    images: list[dict[str, Any]] = []
    mark = f"\x00{secrets.token_hex(4)}:"  # where an image goes, until the text is cut into blocks

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if match.group("esc") is not None:
            return "{" + match.group("esc") + "}"
        expr, modifier = match.group("expr"), match.group("mod")
        try:
            value = _resolve(expr, namespace)
            if modifier == "text":
                text = str(value)
            elif (block := as_image(value, f"{{{expr}}}")) is not None:
                images.append(block)
                return f"{mark}{len(images) - 1}\x00"
            elif isinstance(value, Row) or _maybe_table(value):
                text = _table(value, modifier, context_tokens)
            else:
                text = str(value)
        except _Refused as refused:
            unfilled.append(Unfilled(expr, refused.reason))
            return token
        except ConfigError as exc:  # coffee_nb's own word on the value (an image too large): as it is
            raise FieldError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the user's object raised: say which field, in one line
            detail = redact(f"{type(exc).__name__}: {exc}").splitlines()[0] if str(exc) else type(exc).__name__
            raise FieldError(f"{{{expr}}} could not be filled: reading it raised {detail}") from None
        if redact(text) != text:
            unfilled.append(Unfilled(expr, SECRET))
            return token
        return text

    filled = _FIELD.sub(fill, text)
    if not images:
        return filled, unfilled
    blocks: list[str | dict[Any, Any]] = []
    for i, part in enumerate(re.split(re.escape(mark) + r"(\d+)\x00", filled)):
        if i % 2:
            blocks.append(images[int(part)])
        elif part:
            blocks.append({"type": "text", "text": part})
    return blocks, unfilled


def with_text(prompt: Prompt, text: str) -> Prompt:
    """``prompt`` with ``text`` after it (a last text block when it is content blocks)."""
    if not text:
        return prompt
    if isinstance(prompt, str):
        return prompt + text
    return [*prompt, {"type": "text", "text": text}]


class Row(dict[str, Any]):
    """A row's values by column, as ``{row}`` fills in ``map_rows`` and ``compare`` (sent as a table;
    ``{row['a b']}`` reads one value, as from a dict)."""


def _maybe_table(value: Any) -> bool:
    """Could ``value`` be a DataFrame, Series or array (without loading pandas or numpy to find out)?"""
    return type(value).__module__.startswith(("pandas", "numpy", "dask"))


def _table(value: Any, modifier: str | None, context_tokens: int | None) -> str:
    """A table as a prompt carries it (``str(value)`` when it turns out not to be one)."""
    from coffee_nb.content import _rows, _tables  # lazy: %load_ext path

    limit = context_tokens or _tables.DEFAULT_CONTEXT_TOKENS
    if isinstance(value, Row):
        return _rows.render_row(value, max_tokens=limit)
    if not _tables.is_table(value):  # a numpy scalar, a pandas Timestamp: as it prints
        return str(value)
    return _tables.render_table(value, max_tokens=limit, mode=modifier or "table").text


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one line of text for notes and history: its text, ``[image]`` where an image goes."""
    if isinstance(prompt, str):
        return prompt
    return "".join("[image]" if is_image(b) else content_text([b]) for b in prompt)


def fill(
    text: str, namespace: Mapping[str, Any], *, allow_missing: bool = False, context_tokens: int | None = None
) -> Prompt:
    """``text`` interpolated for sending. A field naming nothing defined is a :class:`FieldError` (nothing is
    sent) unless ``allow_missing``: then it is left as written, like refused fields, with a note each."""
    filled, unfilled = interpolate(text, namespace, context_tokens=context_tokens)
    missing = [u for u in unfilled if u.reason in (NOT_DEFINED, NO_ERROR)]
    if missing and not allow_missing:
        first = missing[0].field
        names = ", ".join(f"{{{u.field}}} {u.reason}" for u in missing)
        raise FieldError(
            f"{names}: nothing was sent. Define it, write {{{{{first}}}}} for a literal {{{first}}}, "
            "or add --allow-missing to send such fields as written"
        )
    for field, reason in unfilled:
        print(f"coffee_nb: {{{field}}} {reason}; left as written.", file=sys.stderr)
    return filled


def prompt(
    text: str,
    namespace: Mapping[str, Any] | None = None,
    /,
    *,
    context_tokens: int | None = None,
    allow_missing: bool = False,
    **values: Any,
) -> Prompt:
    """``text`` with its ``{fields}`` filled as ``%%llm`` fills them, for ``coffee_nb.ask``, an AutoPicker or
    any LangChain chat model: figures and images become image blocks, DataFrames compact tables (at most
    ``context_tokens`` each). Fields are looked up in ``values``, then ``namespace`` (by default the
    caller's variables, local then global).

    >>> llm.invoke([HumanMessage(coffee_nb.prompt("What does this plot show? {fig}"))])
    >>> coffee_nb.ask(coffee_nb.prompt("Which columns look wrong? {df}", context_tokens=4000))
    """
    if not isinstance(text, str):
        raise ConfigError(f"prompt() takes the prompt's text with {{fields}}, got {type(text).__name__}")
    if namespace is None:
        caller = sys._getframe(1)
        namespace = {**caller.f_globals, **caller.f_locals}
    return fill(text, {**namespace, **values}, allow_missing=allow_missing, context_tokens=context_tokens)
