"""``describe`` mode: a frame as one summary row per column instead of its rows.

What ``df.describe(include="all")`` says, transposed (a row per column reads like the frame's own
header), with each column's dtype and count of missing values, as a pipe table cut to the token limit.
Statistics are computed only for the columns that may be shown, a growing chunk at a time, so a frame
with thousands of columns costs what the shown ones cost. A statistic that doesn't apply to a column
(the mean of a text column) or came out missing is an empty cell.
"""

from __future__ import annotations

from typing import Any

from coffee_nb.content._table_fit import Fitter, Rendered
from coffee_nb.content._table_text import cell, count, label, pipe_row, rule

__all__ = ["describe_frame"]

# describe()'s own order mixes these by dtype; one fixed order reads the same for every frame
_ORDER = ("unique", "top", "freq", "mean", "std", "min", "25%", "50%", "75%", "max")


class _Summaries:
    """Each column's summary cells (stat name -> text), computed on demand in chunks from the left."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        self.rows: list[tuple[str, dict[str, str]]] = []  # (dtype, stats) per column, from the first

    def upto(self, columns: int) -> list[tuple[str, dict[str, str]]]:
        start = len(self.rows)
        if columns > start:
            part = self.frame.iloc[:, start:columns]
            nulls = part.isna().sum().tolist()
            for j, stats in enumerate(_stats(part)):
                stats["nulls"] = str(nulls[j])
                self.rows.append((str(part.dtypes.iloc[j]), stats))
        return self.rows[:columns]


def _stats(part: Any) -> list[dict[str, str]]:
    """describe()'s statistics of each column of ``part`` (without ``count``: the nulls say it); a column
    describe() can't summarise (lists or dicts in its cells are unhashable) has none."""
    try:
        described = [part.describe(include="all")]
    except (TypeError, ValueError):  # one bad column spoils the chunk: then one at a time
        described = []
        for j in range(part.shape[1]):
            try:
                described.append(part.iloc[:, [j]].describe(include="all"))
            except (TypeError, ValueError):
                described.append(None)
    out: list[dict[str, str]] = []
    for table in described:
        if table is None:
            out.append({})
            continue
        names = [str(stat) for stat in table.index]
        for j in range(table.shape[1]):
            column = table.iloc[:, j]
            missing = column.isna().tolist()
            out.append(
                {
                    name: cell(value)
                    for name, value, gone in zip(names, column.tolist(), missing, strict=True)
                    if not gone and name != "count"
                }
            )
    return out


def describe_frame(frame: Any, title: str, what: str, fitter: Fitter) -> Rendered:
    """``title``, then a summary row for as many of ``frame``'s columns (from the first) as fit."""
    total = frame.shape[1]
    labels = frame.columns
    summaries = _Summaries(frame)

    def build(columns: int) -> str:
        lines = [title]
        if total == 0:
            return "\n".join([*lines, "(no columns)"])
        rows = summaries.upto(columns)
        seen = {stat for _, stats in rows for stat in stats}
        stats = [s for s in _ORDER if s in seen] + sorted(seen - set(_ORDER) - {"nulls"})
        lines.append("One row per column: its dtype, missing values (nulls) and describe() statistics")
        lines.append(pipe_row(["column", "dtype", "nulls", *stats]))
        lines.append(rule(3 + len(stats)))
        for j, (dtype, values) in enumerate(rows):
            name = cell(label(labels[j]))
            lines.append(pipe_row([name, dtype, values["nulls"], *(values.get(s, "") for s in stats)]))
        if columns < total:
            left = count(total - columns)
            lines.append(f"(summary of the first {count(columns)} of {count(total)} columns; {left} more not shown)")
        return "\n".join(lines)

    if total == 0:
        text = build(0)
        fitter.need(text, what, "its shape")
        return Rendered(text, fitter.measure(text), 0, len(frame), 0, 0, False)
    fitter.need(build(1), what, "the shape and one column's summary")
    shown, text, tokens = fitter.largest(build, 1, total)
    return Rendered(text, tokens, 0, len(frame), shown, total, shown < total)
