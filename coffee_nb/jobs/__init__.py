"""Bulk work on the same spine: ``map_rows`` runs one prompt template over every row of a DataFrame.

>>> import coffee_nb, pandas as pd
>>> tickets = pd.DataFrame({"text": ["My order never came", "Love the new mug"]})
>>> coffee_nb.map_rows(tickets, "Classify this support ticket in one word: {text}")

Every row is an AutoPicker call (retries, fallbacks, budget reservations, CallRecords), answered from
the response cache when it was answered before, so an interrupted or budget-stopped job re-run with the
same arguments resumes at $0 for the finished rows. A Dask DataFrame runs per partition on the cluster,
every worker charging one Redis ledger (``pip install 'coffee_nb[dask]'``).
"""

from __future__ import annotations

from coffee_nb.jobs._job import describe_error
from coffee_nb.jobs._local import DEFAULT_CONCURRENCY
from coffee_nb.jobs._map import amap_rows, map_rows
from coffee_nb.jobs._progress import JobStatus, Projection, TqdmView
from coffee_nb.jobs._schema import Schema
from coffee_nb.jobs._template import SamePromptWarning

__all__ = [
    "DEFAULT_CONCURRENCY",
    "JobStatus",
    "Projection",
    "SamePromptWarning",
    "Schema",
    "TqdmView",
    "amap_rows",
    "describe_error",
    "map_rows",
]
