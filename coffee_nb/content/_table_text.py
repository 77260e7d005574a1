"""The text of a table's parts, as a model reads it: cells, pipe rows, counts.

Pure functions over Python values (no pandas, no numpy: what they hand us is already ``tolist()``-ed), so
the renderers can format only the rows they show. A cell is one line of at most :data:`CELL_CHARS`
characters whatever it holds: a newline or a ``|`` in a value would otherwise break the table's rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["CELL_CHARS", "MISSING", "cell", "count", "label", "number", "pipe_row", "rule"]

# Long enough for a sentence, a URL or a path to say what it is; longer text in a table is a payload,
# better sent on its own than cut mid-table.
CELL_CHARS = 80
# One marker for every kind of missing value (None, NaN, NaT, pd.NA), as pandas prints floats: an empty
# cell could be an empty string.
MISSING = "NaN"

_NEWLINES = re.compile(r"\r\n|\r|\n")


def count(n: int, unit: str = "") -> str:
    """``10,000``: thousands separated, as a shape reads at a glance; with a (plural) ``unit``, ``1 row``
    or ``10,000 rows``."""
    if not unit:
        return f"{n:,}"
    return f"{n:,} {unit.removesuffix('s') if n == 1 else unit}"


def number(x: float) -> str:
    """A float in at most about 7 characters' worth of digits: ``2.5``, ``0.333333``, ``1234568``, ``1e-07``.

    Six significant digits, as pandas shows them; a whole number as an integer (``3``, not ``3.0``), and
    a large one in full rather than ``1.23457e+06`` (the digits a model can compare)."""
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    text = f"{x:.6g}"
    if "e+" in text and abs(x) < 1e15:
        return f"{x:.0f}"
    return text


def _line(text: str) -> str:
    text = _NEWLINES.sub(r"\\n", text)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def cell(value: object, missing: bool = False) -> str:
    """One cell's text: shortened to :data:`CELL_CHARS`, newlines as ``\\n``, ``|`` escaped."""
    if missing or value is None:
        return MISSING
    if isinstance(value, float):
        return number(value)
    return _line(str(value)).replace("|", "\\|")


def label(name: object) -> str:
    """A column's or an index's name (or a MultiIndex's value) as one short line, a tuple joined with ``/``."""
    if isinstance(name, tuple):
        return _line("/".join(str(part) for part in name))
    return _line(str(name))


def pipe_row(cells: Sequence[str]) -> str:
    """``| a | b |``: a row of a GitHub (pipe) table, its cells already made safe by :func:`cell`."""
    return "| " + " | ".join(cells) + " |"


def rule(columns: int) -> str:
    """The line under a pipe table's header."""
    return "|" + "---|" * columns
