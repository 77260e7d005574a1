"""The columns ``map_rows`` appends, filled row by row and turned into typed pandas columns once.

Row results go into preallocated Python lists (a few list stores per row); the frame is built at the
end, column by column: the model names as categories, tokens as integers, ``cost`` as ``Decimal``
(one shared object per distinct amount), ``latency_s`` as floats, ``cached`` as booleans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.jobs._schema import Schema

__all__ = ["BOOKKEEPING", "Columns", "output_dtypes"]

BOOKKEEPING = ("model", "fallback_from", "input_tokens", "output_tokens", "cost", "latency_s", "cached", "error")
_ERROR_CHARS = 300
_ZERO = Decimal(0)


def _string_dtype() -> Any:
    """What pandas makes of a column of text (``str`` on pandas 3, ``object`` before)."""
    import pandas as pd  # lazy: pandas

    return pd.Series(["x"]).dtype


def _names_dtype() -> Any:
    """Categories of text, with their categories always of the text dtype: partitions (some with no value
    at all) concatenate."""
    import pandas as pd  # lazy: pandas

    return pd.CategoricalDtype(pd.Index([], dtype=_string_dtype()))


def output_dtypes(answer: str, schema: Schema | None) -> dict[str, Any]:
    """The appended columns and their dtypes (also the ``meta`` of a Dask result)."""
    text = _string_dtype()
    names = _names_dtype()
    out: dict[str, Any] = {}
    if schema is None:
        out[answer] = text
    else:
        out.update({k: {"str": text, "category": names}.get(v, v) for k, v in schema.dtypes().items()})
    out.update(
        {
            "model": names,
            "fallback_from": names,
            "input_tokens": "int64",
            "output_tokens": "int64",
            "cost": "object",
            "latency_s": "float64",
            "cached": "bool",
            "error": text,
        }
    )
    return out


class Columns:
    """Per-row outputs of one job, by row position."""

    __slots__ = (
        "n",
        "answer",
        "schema",
        "values",
        "model",
        "fallback_from",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency_s",
        "cached",
        "error",
        "_costs",
    )

    def __init__(self, n: int, answer: str, schema: Schema | None) -> None:
        self.n = n
        self.answer = answer
        self.schema = schema
        names = schema.fields if schema is not None else (answer,)
        self.values: dict[str, list[Any]] = {name: [None] * n for name in names}
        self.model: list[str | None] = [None] * n
        self.fallback_from: list[str | None] = [None] * n
        self.input_tokens = [0] * n
        self.output_tokens = [0] * n
        self.cost: list[Decimal | None] = [None] * n
        self.latency_s = [math.nan] * n
        self.cached = [False] * n
        self.error: list[str | None] = [None] * n
        self._costs: dict[Decimal, Decimal] = {_ZERO: _ZERO}

    def answered(
        self,
        i: int,
        values: dict[str, Any] | str,
        model: str,
        fallback_from: str | None,
        tokens: tuple[int, int],
        cost: Decimal | None,
        latency: float,
        cached: bool,
    ) -> None:
        if isinstance(values, str):
            self.values[self.answer][i] = values
        else:
            for name, value in values.items():
                self.values[name][i] = value
        self.model[i] = model
        self.fallback_from[i] = fallback_from
        self.input_tokens[i], self.output_tokens[i] = tokens
        # equal amounts share one Decimal: thousands of rows cost the same few amounts
        self.cost[i] = None if cost is None else self._costs.setdefault(cost, cost)
        self.latency_s[i] = latency
        self.cached[i] = cached

    def failed(
        self, i: int, error: str, *, model: str | None, tokens: tuple[int, int], cost: Decimal | None, latency: float
    ) -> None:
        self.model[i] = model
        self.input_tokens[i], self.output_tokens[i] = tokens
        self.cost[i] = None if cost is None else self._costs.setdefault(cost, cost)
        self.latency_s[i] = latency
        self.error[i] = error[:_ERROR_CHARS]

    def not_run(self, i: int, reason: str) -> None:
        self.error[i] = f"not run ({reason})"

    def frame(self, index: Any, dtypes: dict[str, Any]) -> pd.DataFrame:
        import numpy as np  # lazy: numpy
        import pandas as pd  # lazy: pandas

        data: dict[str, Any] = {}
        for name, values in self.values.items():
            data[name] = _series(values, dtypes[name], index)
        data["model"] = _categorical(self.model, index)
        data["fallback_from"] = _categorical(self.fallback_from, index)
        data["input_tokens"] = np.asarray(self.input_tokens, dtype=np.int64)
        data["output_tokens"] = np.asarray(self.output_tokens, dtype=np.int64)
        data["cost"] = pd.Series(self.cost, index=index, dtype=object)
        data["latency_s"] = np.asarray(self.latency_s, dtype=np.float64)
        data["cached"] = np.asarray(self.cached, dtype=bool)
        data["error"] = _series(self.error, dtypes["error"], index)
        return pd.DataFrame(data, index=index)


def _categorical(values: Sequence[Any], index: Any) -> Any:
    import pandas as pd  # lazy: pandas

    categories = pd.Index(sorted({v for v in values if v is not None}), dtype=_string_dtype())
    return pd.Series(pd.Categorical(values, categories=categories), index=index)


def _series(values: Sequence[Any], dtype: Any, index: Any) -> Any:
    import pandas as pd  # lazy: pandas

    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical(values, index)
    if dtype == "object":
        return pd.Series(values, index=index, dtype=object)
    if not isinstance(dtype, str):  # text: pandas' own string dtype, built from the values
        if all(v is None for v in values):
            return pd.Series(values, index=index, dtype=dtype)
        return pd.Series(values, index=index)
    return pd.Series(values, index=index, dtype=dtype)
