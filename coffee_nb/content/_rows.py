"""One row of a table as a prompt carries it (``{row}`` in ``map_rows`` / ``%%llm_map``): its columns and
values as a two-column markdown table, cut to a token limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coffee_nb.content._table_text import cell, count, label, pipe_row, rule
from coffee_nb.pricing._tokens import count_tokens

__all__ = ["render_row"]


def render_row(row: Mapping[Any, Any], *, max_tokens: int, encoding: str = "o200k_base") -> str:
    """``row`` as ``| column | value |`` lines within ``max_tokens``; columns that don't fit are left out,
    and a last line says how many."""
    lines = [pipe_row(["column", "value"]), rule(2)]
    used = count_tokens("\n".join(lines), encoding)
    items = list(row.items())
    for shown, (name, value) in enumerate(items):
        line = pipe_row([label(name), cell(value)])
        cost = count_tokens(line, encoding) + 1
        if used + cost > max_tokens - 16:  # room for the note below
            total = count(len(items), "columns")
            lines.append(f"(showing {shown} of {total}: the rest did not fit the context limit)")
            break
        lines.append(line)
        used += cost
    return "\n".join(lines)
