"""Prompt interpolation for ``%%llm``: ``{name}``, ``{name.attr}``, ``{name[key]}``, ``{In[3]}``, ``{Out[3]}``.

Done exactly once, left to right. Only fields that look like a Python name followed by ``.attr`` /
``[index]`` are candidates, so code, JSON and tracebacks full of braces pass through untouched; a
candidate whose root name is not defined is left as is and reported. ``{{name}}`` is the escape for a
literal ``{name}``; other doubled braces (JSON's ``}}``, Jinja's ``{{ x }}``) are left alone. No
expression is evaluated: attributes and items are looked up one by one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["interpolate"]

# {name(.attr | [int] | ['key'] | ["key"])*} — nothing else is a field; {{field}} is its escape
_PATH = r"""[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:-?\d+|'[^'\]]*'|"[^"\]]*")\])*"""
_FIELD = re.compile(r"\{\{(?P<esc>" + _PATH + r")\}\}|\{(?P<expr>" + _PATH + r")\}")
_PART = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+|'[^']*'|"[^"]*")\]""")


class _Missing(Exception):  # noqa: N818 - internal signal, never leaves this module
    pass


def _resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    root = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr)
    assert root is not None
    name = root.group(0)
    if name not in namespace:
        raise _Missing(name)
    value = namespace[name]
    for attr, index in _PART.findall(expr[root.end() :]):
        if attr:
            if attr.startswith("__"):
                raise _Missing(expr)  # no dunder access from a prompt
            try:
                value = getattr(value, attr)
            except AttributeError:
                raise _Missing(expr) from None
        else:
            key: Any = int(index) if index.lstrip("-").isdigit() else index[1:-1]
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise _Missing(expr) from None
    return value


def interpolate(text: str, namespace: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``text`` with fields filled from ``namespace``, and the fields that could not be filled."""
    unresolved: list[str] = []

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if match.group("esc") is not None:
            return "{" + match.group("esc") + "}"
        expr = match.group("expr")
        try:
            return str(_resolve(expr, namespace))
        except _Missing:
            unresolved.append(expr)
            return token

    return _FIELD.sub(fill, text), unresolved
