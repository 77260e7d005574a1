"""One row of a table as a prompt carries it (``{row}`` in ``map_rows`` / ``%%llm_map``): its columns and
values as a two-column markdown table, cut to a token limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coffee_nb.pricing._tokens import count_tokens

__all__ = ["render_row"]

_CELL_CHARS = 200  # a value longer than this is shortened (a row is context, not the document itself)


def _cell(value: Any) -> str:
    text = "NaN" if value is None or value != value else str(value)  # NaN != NaN; as the tables show it
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def render_row(row: Mapping[Any, Any], *, max_tokens: int, encoding: str = "o200k_base") -> str:
    """``row`` as ``| column | value |`` lines within ``max_tokens``; columns that don't fit are left out,
    and a last line says how many."""
    lines = ["| column | value |", "|---|---|"]
    used = count_tokens("\n".join(lines), encoding)
    items = list(row.items())
    for shown, (name, value) in enumerate(items):
        line = f"| {_cell(name)} | {_cell(value)} |"
        cost = count_tokens(line, encoding) + 1
        if used + cost > max_tokens - 16:  # room for the note below
            lines.append(f"(showing {shown} of {len(items)} columns: the rest did not fit the context limit)")
            break
        lines.append(line)
        used += cost
    return "\n".join(lines)
