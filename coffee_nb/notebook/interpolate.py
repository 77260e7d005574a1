"""The prompt interpolation rules (``coffee_nb.session._interpolate``) as the magics use them: a field that
can't be filled is a ``UsageError``, which IPython shows as one line, without a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

from coffee_nb.session import _interpolate as _rules
from coffee_nb.session._interpolate import (
    ENVIRON,
    NO_ERROR,
    NOT_DEFINED,
    PRIVATE,
    SECRET,
    ErrorLog,
    FieldError,
    Prompt,
    Unfilled,
    describe,
    last_error,
)

__all__ = [
    "ENVIRON",
    "NOT_DEFINED",
    "NO_ERROR",
    "PRIVATE",
    "SECRET",
    "ErrorLog",
    "FieldError",
    "Unfilled",
    "describe",
    "fill",
    "interpolate",
    "last_error",
]


def interpolate(
    text: str, namespace: Mapping[str, Any], *, context_tokens: int | None = None
) -> tuple[Prompt, list[Unfilled]]:
    try:
        return _rules.interpolate(text, namespace, context_tokens=context_tokens)
    except FieldError as exc:
        raise UsageError(str(exc)) from None


def fill(
    text: str, namespace: Mapping[str, Any], *, allow_missing: bool = False, context_tokens: int | None = None
) -> Prompt:
    try:
        return _rules.fill(text, namespace, allow_missing=allow_missing, context_tokens=context_tokens)
    except FieldError as exc:
        raise UsageError(str(exc)) from None


interpolate.__doc__ = _rules.interpolate.__doc__
fill.__doc__ = _rules.fill.__doc__
