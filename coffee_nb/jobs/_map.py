"""``map_rows``: one prompt template over every row of a DataFrame, resumable and budget-safe.

Everything is checked before anything is sent (the frame, the template's fields, options, the schema);
then each row is a call of the same AutoPicker (retries, fallbacks, budget reservations, records), run
by the async scheduler on its own event loop in a worker thread, so it works the same in a script and in
a notebook whose loop is already running, and a kernel interrupt reaches us in the calling thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._validate import positive_int
from coffee_nb.errors._errors import ConfigError
from coffee_nb.jobs._job import Job
from coffee_nb.jobs._local import DEFAULT_CONCURRENCY, REFRESH, finish, job_spans, prepare, run_in_thread
from coffee_nb.jobs._options import caller_namespace, is_dask
from coffee_nb.jobs._progress import JobStatus, View, make_view
from coffee_nb.jobs._scheduler import Scheduler
from coffee_nb.replay._cassette import cassette as scope

if TYPE_CHECKING:
    from coffee_nb.replay._cassette import Cassette

__all__ = ["DEFAULT_CONCURRENCY", "amap_rows", "map_rows"]


def map_rows(
    df: Any,
    template: str,
    *,
    models: Any = None,
    out: str | None = None,
    schema: Any = None,
    concurrency: int | None = None,
    budget: Any = None,
    cache: Any = True,
    on_error: str = "record",
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    context_tokens: int | None = None,
    dry_run: bool = False,
    progress: Any = True,
    on_progress: Callable[[JobStatus], Any] | None = None,
    namespace: Mapping[str, Any] | None = None,
    compute: bool = False,
    cassette: str | os.PathLike[str] | Cassette | None = None,
) -> Any:
    """Run ``template`` over every row of ``df``; return ``df`` with the answers and their cost appended.

    ``{column}`` fields fill from each row (``{row['odd name']}`` for any column), other ``{name}`` fields
    from your variables, with ``%%llm``'s rules (``{{name}}`` is a literal). Appended columns: ``answer``
    (named by ``out``; with ``schema=`` the schema's fields instead, typed), ``model``, ``fallback_from``,
    ``input_tokens``, ``output_tokens``, ``cost`` (Decimal; None when unpriced or not run), ``latency_s``,
    ``cached``, ``error``. The index and row order are kept; a failed row has its ``error`` and never
    stops the others (``on_error="raise"`` does).

    ``models``: a chain of specs, or an AutoPicker (default: the session's chain). ``budget``: a Budget
    enforced on top of the session's. ``cache``: answers come from (and go to) the response cache, so
    re-running after an interrupt or a budget stop resumes at $0 for finished rows. ``dry_run=True``
    returns the :class:`Projection` (rows cached, to call, expected and worst-case cost, budget left)
    without calling. ``progress``: a live bar (the widget in a notebook, tqdm elsewhere), False, or your
    own view; ``on_progress(status)`` hears every finished row. A Dask DataFrame runs per partition on the
    cluster, every worker charging the budget's Redis ledger; it returns a lazy Dask DataFrame, or a
    pandas one with ``compute=True`` (then with the workers' progress summed in one view, and
    ``on_progress`` hearing each of their reports that finished rows, a few times a second, then the end).
    ``context_tokens``: the most tokens a table in the prompt may take (``{row}``, a DataFrame variable),
    cut with a note saying how much is shown. ``cassette``: the job's own cassette, a path (``replay``:
    answered from it when recorded, else called and recorded) or a :class:`~coffee_nb.Cassette` in any
    mode; without it, the cassette in force (``with coffee_nb.cassette(...)``, ``%llm_cassette``) applies.
    """
    if namespace is None:
        namespace = caller_namespace()
    options: dict[str, Any] = {
        "models": models,
        "out": out,
        "schema": schema,
        "concurrency": concurrency,
        "budget": budget,
        "cache": cache,
        "on_error": on_error,
        "system": system,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "context_tokens": positive_int("context_tokens", context_tokens) if context_tokens is not None else None,
    }
    if is_dask(df):
        from coffee_nb.jobs._dask import map_dask  # lazy: %load_ext path

        if cassette is not None:
            raise ConfigError(
                "cassette= records and replays in this process, and a Dask job's calls run on the workers: "
                "run the job on a pandas DataFrame to record it (df.compute()), or leave cassette out"
            )
        return map_dask(
            df,
            template,
            dry_run=dry_run,
            progress=progress,
            on_progress=on_progress,
            namespace=namespace,
            compute=compute,
            **options,
        )
    with _tape(cassette):
        return _map_here(
            df, template, dry_run=dry_run, progress=progress, namespace=namespace, on_progress=on_progress, **options
        )


def _tape(cassette: str | os.PathLike[str] | Cassette | None) -> AbstractContextManager[Any]:
    """The job's cassette in force while it runs (the worker thread gets it with the caller's context)."""
    if cassette is None:
        return nullcontext()
    return scope(cassette, "replay")


def _map_here(
    df: Any, template: str, *, dry_run: bool, progress: Any, namespace: Mapping[str, Any], **options: Any
) -> Any:
    """``map_rows`` on a pandas DataFrame, in this process (``options``: map_rows' own)."""
    job, frame, dtypes, opened = prepare(df, template, namespace=namespace, **options)
    concurrency = options["concurrency"]
    try:
        if dry_run:
            return job.progress.projection
        view = make_view(progress, len(frame))
        scheduler = Scheduler(job, concurrency=concurrency or DEFAULT_CONCURRENCY)
        with job_spans(job.picker, len(frame)):  # an OpenTelemetry sink: the rows' calls in one job span
            run_in_thread(scheduler, view)
        return finish(job, scheduler, frame, dtypes, view)
    finally:
        job.close()  # answers stored before anyone re-runs (idempotent; finish() already did)
        if opened is not None:
            opened.close()


async def amap_rows(df: Any, template: str, *, progress: Any = False, **kwargs: Any) -> Any:
    """``map_rows`` for async code: runs on the running event loop (``await amap_rows(df, "...")``)."""
    with _tape(kwargs.pop("cassette", None)):
        return await _amap_here(df, template, progress=progress, **kwargs)


async def _amap_here(df: Any, template: str, *, progress: Any, **kwargs: Any) -> Any:
    namespace = kwargs.pop("namespace", None)
    if namespace is None:
        namespace = caller_namespace()
    if is_dask(df):
        raise ConfigError("amap_rows takes a pandas DataFrame; for a Dask DataFrame call map_rows")
    concurrency = kwargs.get("concurrency")
    job, frame, dtypes, opened = prepare(df, template, namespace=namespace, **kwargs)
    try:
        view = make_view(progress, len(frame))
        scheduler = Scheduler(job, concurrency=concurrency or DEFAULT_CONCURRENCY)
        if view is not None:
            view.start(job.progress.projection)
        refresher = asyncio.get_running_loop().create_task(_refresh(job, view)) if view is not None else None
        try:
            await scheduler.run()
        finally:
            if refresher is not None:
                refresher.cancel()
        await asyncio.to_thread(job.close)  # the cache writer drains without holding up the loop
        return finish(job, scheduler, frame, dtypes, view)
    finally:
        job.close()
        if opened is not None:
            opened.close()


async def _refresh(job: Job, view: View) -> None:
    while True:
        await asyncio.sleep(REFRESH)
        view.update(job.progress.snapshot())
