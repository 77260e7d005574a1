"""DataFrames, Series and arrays as a prompt carries them: a compact text within a token limit.

``str(df)`` is pandas' console layout: cut at 60 rows and 20 columns with ``...``, no dtypes, no shape,
and as long as it happens to be. :func:`render_table` says what the value is (its shape and dtypes), then
shows its first and last rows as a GitHub pipe table, as many as fit in ``max_tokens`` counted with the
model's encoding; or, in ``describe`` mode, a summary row per column (``_table_describe``). Only the rows
shown are ever formatted: a million-row frame costs what its forty shown rows cost.

Recognising a value imports nothing (:func:`is_table` looks at what is already loaded), so importing
this module loads neither pandas nor numpy; rendering uses the one the value came from.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from coffee_nb._shared._exceptions import ConfigError
from coffee_nb._shared._validate import positive_int, text
from coffee_nb.content._array_text import render_array
from coffee_nb.content._table_describe import describe_frame
from coffee_nb.content._table_fit import Fitter, Rendered
from coffee_nb.content._table_text import cell, count, label, pipe_row, rule

__all__ = ["DEFAULT_CONTEXT_TOKENS", "MIN_ROWS", "MODES", "Rendered", "is_table", "render_table"]

# A table in a prompt is context for a question about it, not the payload. 2,000 tokens show a 10-column
# frame's shape, dtypes and some 40 to 80 rows (enough to see its structure and typical values), cost
# half a cent at $2.50 per million input tokens, and leave most of even an 8k-token context window to the
# question, the rest of the prompt and the answer.
DEFAULT_CONTEXT_TOKENS = 2000
MODES = ("table", "describe")
# Columns are cut as far as it takes for this many rows (head and tail) to fit: two rows of 300 columns
# say less about a frame than ten rows of its first 40.
MIN_ROWS = 10
_GAP = "| ... |"  # the row between the head and the tail


def is_table(value: object) -> bool:
    """True for a pandas DataFrame or Series or a numpy ndarray (or a subclass). Imports nothing: such a
    value can only exist once its package is loaded, so a package not in ``sys.modules`` means False."""
    kinds = [
        getattr(sys.modules.get(package), name, None)
        for package, names in (("pandas", ("DataFrame", "Series")), ("numpy", ("ndarray",)))
        for name in names
    ]
    return isinstance(value, tuple(kind for kind in kinds if isinstance(kind, type)))


def render_table(
    value: Any, *, max_tokens: int = DEFAULT_CONTEXT_TOKENS, mode: str = "table", encoding: str = "o200k_base"
) -> Rendered:
    """``value`` (a DataFrame, Series or ndarray) as text of at most ``max_tokens`` tokens in ``encoding``.

    ``mode="table"``: the shape and dtypes, then the first and last rows as a pipe table, as many as fit
    (and as many columns, from the first, as leave room for :data:`MIN_ROWS` rows), with a note saying
    what was left out. ``mode="describe"``: the shape, then a summary row per column (dtype, missing
    values, ``describe()``'s statistics). An array of other than 1 or 2 dimensions: its shape and dtype,
    then its leading values (or, in ``describe`` mode, their min, max, mean and std).

    Raises ConfigError when ``max_tokens`` can't hold even the shortest rendering (the message says the
    minimum), TypeError when ``value`` is not a table (see :func:`is_table`).
    """
    positive_int("max_tokens", max_tokens)
    text("encoding", encoding, empty=False)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if not is_table(value):
        raise TypeError(f"render_table takes a pandas DataFrame or Series or a numpy array, not {type(value).__name__}")
    fitter = Fitter(max_tokens, encoding)
    if value.ndim not in (1, 2):  # only an ndarray has other dimensions
        return render_array(value, mode, fitter)
    shape = _shape(value)
    if mode == "describe":
        return describe_frame(shape.frame, shape.title, shape.what, fitter)
    return _render_rows(shape, fitter)


@dataclass(frozen=True, slots=True)
class _Shape:
    """A value seen as a frame, with what its rendering says about it."""

    frame: Any  # a pandas DataFrame: the value's rows and columns (a Series or 1-D array as one column)
    title: str  # the first line: the kind of value and its shape (and dtype, if it has one)
    what: str  # "this DataFrame", for messages
    unit: str  # what a row is called in the notes: "rows", or "values" for a 1-D array
    dtypes: bool  # a line naming each column and its dtype (a DataFrame's; the others have one dtype)
    index: bool  # the index is shown: it says something (it is not 0, 1, 2, ...)


def _shape(value: Any) -> _Shape:
    import pandas as pd  # lazy: pandas

    kind = type(value).__name__
    if isinstance(value, pd.DataFrame):
        rows, cols = value.shape
        title = f"{kind}: {count(rows, 'rows')} x {count(cols, 'columns')}"
        return _Shape(value, title, f"this {kind}", "rows", True, _telling(value.index, pd))
    if isinstance(value, pd.Series):
        name = "" if value.name is None else f" {label(value.name)!r}"
        frame = value.to_frame(name="value" if value.name is None else value.name)
        title = f"{kind}{name}: {count(len(value), 'rows')}, dtype {value.dtype}"
        return _Shape(frame, title, f"this {kind}", "rows", False, _telling(value.index, pd))
    if value.dtype.names:  # a structured array: its fields are the columns
        frame = pd.DataFrame(value)
        title = f"{kind}: {count(len(value), 'rows')} x {count(frame.shape[1], 'fields')}"
        return _Shape(frame, title, f"this {kind}", "rows", True, False)
    if value.ndim == 1:
        frame = pd.DataFrame(value, columns=["value"], copy=False)
        title = f"{kind}: {count(len(value), 'values')}, dtype {value.dtype}"
        return _Shape(frame, title, f"this {kind}", "values", False, False)
    frame = pd.DataFrame(value, copy=False)
    rows, cols = value.shape
    title = f"{kind}: {count(rows, 'rows')} x {count(cols, 'columns')}, dtype {value.dtype}"
    return _Shape(frame, title, f"this {kind}", "rows", False, False)


def _telling(index: Any, pd: Any) -> bool:
    """Whether an index says more than the rows' positions."""
    plain = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None
    return not plain


class _Cells:
    """A frame's cell texts by column (-1: the index), formatted only as far as a rendering asks: the
    first rows from the top down, the last from the bottom up."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        self.rows = len(frame)
        self._head: dict[int, list[str]] = {}
        self._tail: dict[int, list[str]] = {}

    def _format(self, column: int, start: int, stop: int) -> list[str]:
        if column < 0:
            part = self.frame.index[start:stop]
            if part.nlevels > 1:
                return [cell(label(v)) for v in part.tolist()]  # tuples, each "level/level"
        else:
            part = self.frame.iloc[start:stop, column]
        return [cell(v, gone) for v, gone in zip(part.tolist(), part.isna().tolist(), strict=True)]

    def head(self, column: int, rows: int) -> list[str]:
        have = self._head.setdefault(column, [])
        if len(have) < rows:
            have += self._format(column, len(have), rows)
        return have[:rows]

    def tail(self, column: int, rows: int) -> list[str]:
        have = self._tail.setdefault(column, [])
        if len(have) < rows:
            have[:0] = self._format(column, self.rows - rows, self.rows - len(have))
        return have[len(have) - rows :]

    def header(self, column: int) -> str:
        if column >= 0:
            return cell(label(self.frame.columns[column]))
        return cell("/".join("" if name is None else label(name) for name in self.frame.index.names))


def _index_line(index: Any) -> str:
    names = "/".join("" if name is None else label(name) for name in index.names)
    if index.nlevels > 1:
        dtypes = ", ".join(str(level.dtype) for level in index.levels)
        return f"Index of {index.nlevels} levels: {names} ({dtypes})"
    return f"Index: {names} ({index.dtype})" if names else f"Index: {index.dtype}"


def _render_rows(shape: _Shape, fitter: Fitter) -> Rendered:
    """``mode="table"``: the head and tail rows of as many columns as leave room for MIN_ROWS rows."""
    frame = shape.frame
    total_rows, total_cols = frame.shape
    cells = _Cells(frame)
    dtypes = frame.dtypes
    index_line = [_index_line(frame.index)] if shape.index else []

    def columns_line(cols: int) -> list[str]:
        if total_cols == 0:
            return []
        cut = f"the first {count(cols)} of {count(total_cols)}; {count(total_cols - cols)} more not shown"
        if shape.dtypes:
            names = ", ".join(f"{label(frame.columns[j])} ({dtypes.iloc[j]})" for j in range(cols))
            return [f"Columns ({cut}): {names}" if cols < total_cols else f"Columns: {names}"]
        return [f"Columns: {cut}"] if cols < total_cols else []

    def build(cols: int, rows: int) -> str:
        lines = [shape.title, *index_line, *columns_line(cols)]
        if total_cols == 0:
            return "\n".join([*lines, "(no columns)"])
        head, tail = (rows, 0) if rows >= total_rows else ((rows + 1) // 2, rows // 2)
        shown = ([-1] if shape.index else []) + list(range(cols))
        lines += [pipe_row([cells.header(j) for j in shown]), rule(len(shown))]
        lines += map(pipe_row, zip(*(cells.head(j, head) for j in shown), strict=True))
        if tail:
            lines.append(_GAP)
            lines += map(pipe_row, zip(*(cells.tail(j, tail) for j in shown), strict=True))
        if total_rows == 0:
            lines.append(f"(no {shape.unit})")
        elif rows < total_rows:
            which = f"the first {count(head)} and the last {count(tail)}" if tail else f"the first {count(head)}"
            lines.append(f"(showing {count(rows)} of {count(total_rows)} {shape.unit}: {which})")
        return "\n".join(lines)

    if total_cols == 0:
        text = build(0, 0)
        fitter.need(text, shape.what, "its shape")
        return Rendered(text, fitter.measure(text), 0, total_rows, 0, 0, False)
    fitter.need(build(1, 0), shape.what, "the shape, one column, no rows")
    least_rows = min(total_rows, MIN_ROWS)
    cols = 1
    if fitter.fits(build(1, least_rows))[0]:
        cols = fitter.largest(lambda c: build(c, least_rows), 1, total_cols)[0]
    else:
        least_rows = 0
    rows, text, tokens = fitter.largest(lambda r: build(cols, r), least_rows, total_rows)
    return Rendered(text, tokens, rows, total_rows, cols, total_cols, rows < total_rows or cols < total_cols)
