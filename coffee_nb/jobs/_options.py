"""Checks shared by ``map_rows`` on pandas and on Dask: the options and the columns a job appends."""

from __future__ import annotations

import sys
from collections import ChainMap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coffee_nb.errors._errors import ConfigError
from coffee_nb.jobs._columns import output_dtypes
from coffee_nb.jobs._schema import Schema

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["ON_ERROR", "caller_namespace", "check_options", "is_dask"]

ON_ERROR = ("record", "raise")


def check_options(
    columns: Sequence[Any], *, concurrency: Any, on_error: Any, out: Any, schema: Any
) -> tuple[str, Schema | None, dict[str, Any]]:
    """The answer column's name, the checked schema and the appended columns' dtypes; ConfigError otherwise."""
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0
    ):
        raise ConfigError(f"concurrency must be a positive whole number of rows in flight, got {concurrency!r}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'record' (a failed row gets its error) or 'raise', got {on_error!r}")
    if out is not None and schema is not None:
        raise ConfigError("out= names the answer column; with schema= the schema's fields are the columns")
    if out is not None and (not isinstance(out, str) or not out):
        raise ConfigError(f"out must be a column name, got {out!r}")
    answer = out or "answer"
    checked = None if schema is None else (schema if isinstance(schema, Schema) else Schema(schema))
    dtypes = output_dtypes(answer, checked)
    clash = [c for c in dtypes if c in columns]
    if clash:
        raise ConfigError(
            f"the DataFrame already has column{'s' if len(clash) > 1 else ''} {', '.join(map(repr, clash))}, "
            "which map_rows appends: rename or drop them first"
            + (" (or name the answer column with out=...)" if answer in clash else "")
        )
    return answer, checked, dtypes


def caller_namespace() -> Mapping[str, Any]:
    """The variables where map_rows was called (locals over globals): a notebook's are its globals."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("coffee_nb."):
        frame = frame.f_back
    if frame is None:
        return {}
    return ChainMap(frame.f_locals, frame.f_globals)


def is_dask(df: Any) -> bool:
    """A Dask DataFrame? (By its type's module: dask is not imported to ask.)"""
    return type(df).__module__.split(".", 1)[0] in ("dask", "dask_expr") and hasattr(df, "map_partitions")
