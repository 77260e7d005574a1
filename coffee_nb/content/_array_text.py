"""An array that is no table (0-D, or 3-D and up): its shape, dtype and leading values.

A table of a 3-D array would need a choice of which two axes to show; a model reading the shape and the
first values in C order (the order ``reshape`` and ``flat`` use) can tell what the array holds. Only
the values shown are copied (``ndarray.flat`` slices a strided array without flattening all of it).
"""

from __future__ import annotations

from typing import Any

from coffee_nb.content._table_fit import Fitter, Rendered
from coffee_nb.content._table_text import cell, count, number

__all__ = ["render_array"]


def _texts(values: Any) -> list[str]:
    # tolist() of datetime64[ns] / timedelta64 arrays gives bare integers; their scalars print as dates
    if values.dtype.kind in "mM":
        return [str(v) for v in values]
    return [cell(v) for v in values.tolist()]


def render_array(value: Any, mode: str, fitter: Fitter) -> Rendered:
    """``value``'s shape and dtype, then as many of its leading values as fit, or (``describe``) their
    statistics."""
    size = int(value.size)
    title = f"{type(value).__name__}: shape {tuple(value.shape)}, dtype {value.dtype} ({count(size, 'values')})"
    what = f"this {type(value).__name__}"
    if mode == "describe":
        stats = _statistics(value)
        text = "\n".join([title, stats]) if stats else title
        if stats and not fitter.fits(text)[0]:
            text = title
        fitter.need(text, what, "its shape and dtype")
        return Rendered(text, fitter.measure(text), 0, size, 1, 1, False)

    shown: list[str] = []

    def build(values: int) -> str:
        if len(shown) < values:
            shown.extend(_texts(value.flat[len(shown) : values]))
        if size == 0:
            return f"{title}\n(no values)"
        first = "Values" if values == size else "First values"
        lines = [title, f"{first}, in C order: {', '.join(shown[:values])}"] if values else [title]
        if values < size:
            lines.append(f"(showing {count(values)} of {count(size)} values)")
        return "\n".join(lines)

    fitter.need(build(0), what, "its shape and dtype")
    values, text, tokens = fitter.largest(build, 0, size)
    return Rendered(text, tokens, values, size, 1, 1, values < size)


def _statistics(value: Any) -> str:
    """``Values: min 0, max 1, mean 0.5, std 0.288675, NaN 3`` for a numeric array ("" for others)."""
    import numpy as np  # lazy: numpy

    if value.dtype.kind not in "iuf" or value.size == 0:
        return ""
    missing = int(np.isnan(value).sum()) if value.dtype.kind == "f" else 0
    if missing == value.size:
        return f"Values: all NaN ({count(missing)})"
    parts = [
        f"{name} {number(float(func(value)))}"
        for name, func in (("min", np.nanmin), ("max", np.nanmax), ("mean", np.nanmean), ("std", np.nanstd))
    ]
    return "Values: " + ", ".join(parts) + (f", NaN {count(missing)}" if missing else "")
