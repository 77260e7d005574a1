"""Prompt templates over rows: ``{column}`` fields, filled with the same rules as ``%%llm``.

A field's root name is looked up in the row first (its columns), then ``row`` (the whole row as a dict,
for column names that are not identifiers: ``{row['Ticket text']}``), then the caller's variables.
Which names are which is settled once, before any call: a name that is none of these is an error.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coffee_nb.errors._errors import ConfigError
from coffee_nb.session import _interpolate as _rules  # %%llm's interpolation rules, imported, not copied
from coffee_nb.session._interpolate import Prompt, Row, interpolate

__all__ = ["NOT_DEFINED", "SamePromptWarning", "Template", "unfilled_field"]

_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NOT_DEFINED = getattr(_rules, "NOT_DEFINED", "is not defined here")


def unfilled_field(item: Any) -> tuple[str, str | None]:
    """(field, why) of a field ``interpolate`` left as written."""
    return str(getattr(item, "field", item)), getattr(item, "reason", None)


class SamePromptWarning(UserWarning):
    """The template reads no column: every row would get the same prompt."""


def _list(names: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")


@dataclass(frozen=True, slots=True)
class Template:
    """A prompt template checked against a frame's columns and the caller's variables."""

    text: str
    columns: tuple[str, ...]  # the columns it reads, in order of first use
    variables: dict[str, Any] = field(default_factory=dict)  # other names it reads, resolved once
    whole_row: bool = False  # reads ``{row[...]}``
    context_tokens: int | None = None  # the most a table (a DataFrame variable, ``{row}``) may take

    @classmethod
    def compile(
        cls,
        text: Any,
        columns: Sequence[Any],
        namespace: Mapping[str, Any],
        *,
        stacklevel: int = 2,
        context_tokens: int | None = None,
    ) -> Template:
        """Check ``text`` against ``columns`` and ``namespace``; ConfigError naming any unknown field."""
        if not isinstance(text, str):
            raise ConfigError(f"the template must be a string with {{column}} fields, got {type(text).__name__}")
        if not text.strip():
            raise ConfigError("the template is empty: write the prompt, with {column} where each row's value goes")
        _, fields = interpolate(text, {})  # against nothing: every field comes back unfilled
        roots: dict[str, None] = {}
        for item in fields:
            expr, why = unfilled_field(item)
            if why is not None and why != NOT_DEFINED:  # refused whatever the row holds (a private attribute)
                raise ConfigError(f"template field {{{expr}}} {why}")
            match = _ROOT.match(expr)
            if match is not None:
                roots[match.group(0)] = None
        names = {c for c in columns if isinstance(c, str)}
        used = tuple(r for r in roots if r in names)
        whole_row = "row" in roots and "row" not in names
        variables: dict[str, Any] = {}
        missing: list[str] = []
        for root in roots:
            if root in names or (root == "row" and whole_row):
                continue
            if root in namespace:
                variables[root] = namespace[root]
            else:
                missing.append(root)
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise ConfigError(
                f"template field{plural} {', '.join('{' + m + '}' for m in missing)} name{'' if plural else 's'} "
                f"neither a column nor a variable. Columns: {_list(list(columns))}. "
                "Write {{name}} for a literal {name}."
            )
        if not used and not whole_row:
            warnings.warn(
                "the template reads no column: every row gets the same prompt (use {column} for each row's value)",
                SamePromptWarning,
                stacklevel=stacklevel + 1,
            )
        return cls(text, used, variables, whole_row, context_tokens)

    def prompts(self, frame: Any) -> Iterator[tuple[Prompt, list[Any]]]:
        """Each row's prompt, with the fields that row could not fill (e.g. ``{meta[key]}`` missing). A
        row whose field holds an image (a path to an image file, bytes, a figure) gets content blocks;
        ``{row}`` alone is the whole row as a table."""
        text, variables, limit = self.text, self.variables, self.context_tokens
        if self.whole_row:
            for record in frame.to_dict("records"):
                fields = {**variables, "row": Row(record), **{c: record[c] for c in self.columns}}
                yield interpolate(text, fields, context_tokens=limit)
            return
        cols = self.columns
        if not cols:  # the same prompt for every row (warned when compiled)
            same = interpolate(text, variables, context_tokens=limit)
            for _ in range(len(frame)):
                yield same
            return
        values = [frame[c].tolist() for c in cols]  # plain Python values: str() of them reads naturally
        for row in zip(*values, strict=True):
            yield interpolate(text, {**variables, **dict(zip(cols, row, strict=True))}, context_tokens=limit)
