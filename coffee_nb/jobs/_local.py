"""A ``map_rows`` job in this process: :func:`prepare` checks and costs it, :func:`run_in_thread` runs it on
its own event loop in a worker thread, :func:`finish` makes the result frame. ``map_rows`` on a pandas
DataFrame uses them here, and a Dask worker on each partition (``_worker``), so neither imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money
from coffee_nb._shared._records import global_sinks
from coffee_nb._shared._validate import positive_int
from coffee_nb._shared._validate import temperature as check_temperature
from coffee_nb.errors._errors import ConfigError
from coffee_nb.jobs._columns import Columns
from coffee_nb.jobs._job import Job, KeyMessage
from coffee_nb.jobs._options import check_options
from coffee_nb.jobs._progress import JobStatus, View
from coffee_nb.jobs._scheduler import Scheduler
from coffee_nb.jobs._schema import Schema
from coffee_nb.jobs._template import NOT_DEFINED, Template, unfilled_field
from coffee_nb.session._interpolate import Prompt, with_text
from coffee_nb.session._session import get_session

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_CONCURRENCY", "REFRESH", "finish", "job_spans", "prepare", "run_in_thread"]

DEFAULT_CONCURRENCY = 32
REFRESH = 0.25  # seconds between progress view refreshes


def prepare(
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
    namespace: Mapping[str, Any],
    on_progress: Callable[[JobStatus], Any] | None = None,
    picker: Any = None,
) -> tuple[Job, pd.DataFrame, dict[str, Any], Any]:
    """Check everything, render and look up every row, cost the rest: a Job ready to run. No call is made.

    Returns the job, the input frame, the output dtypes, and a cache this call opened (to close after).
    """
    import pandas as pd  # lazy: pandas

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"map_rows needs a pandas (or Dask) DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ConfigError("the DataFrame is empty: there are no rows to map")
    if not df.columns.is_unique:
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise ConfigError(f"the DataFrame has duplicate column names: {', '.join(dupes)}; rename them first")
    answer, checked, dtypes = check_options(
        list(df.columns), concurrency=concurrency, on_error=on_error, out=out, schema=schema
    )
    tmpl = Template.compile(template, list(df.columns), namespace, stacklevel=3, context_tokens=context_tokens)
    session = get_session()
    if temperature is not None:
        temperature = check_temperature(temperature)
    if max_tokens is not None:
        max_tokens = positive_int("max_tokens", max_tokens)
    temperature = temperature if temperature is not None else session.temperature
    max_tokens = max_tokens if max_tokens is not None else session.max_tokens
    system = system if system is not None else session.system
    if picker is None:
        picker = _picker(models, budget, session)
    store, opened = _cache(cache, session)
    params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    call_kwargs = {k: v for k, v in params.items() if v is not None}
    suffix = ""
    if checked is not None:
        params["schema"] = checked.key
        if Schema.native(picker.candidates):
            call_kwargs["response_format"] = checked.response_format()
            params["schema_mode"] = "native"
        else:
            suffix = checked.instruction()
    columns = Columns(len(df), answer, checked)
    prompts: list[Prompt | None] = []
    for i, (prompt, unresolved) in enumerate(tmpl.prompts(df)):
        if unresolved:
            field, why = unfilled_field(unresolved[0])
            columns.failed(
                i,
                f"TemplateError: {{{field}}} could not be filled from this row"
                + (f" ({why})" if why and why != NOT_DEFINED else ""),
                model=None,
                tokens=(0, 0),
                cost=None,
                latency=0.0,
            )
            prompts.append(None)
        else:
            prompts.append(with_text(prompt, suffix))
    keys: list[str | None] = [None] * len(prompts)
    if store is not None:
        from coffee_nb.replay._cache import request_key  # lazy: %load_ext path

        names = list(picker.model_names)
        head = [KeyMessage("system", system)] if system else []
        for i, filled in enumerate(prompts):
            if filled is not None:
                keys[i] = request_key(names, [*head, KeyMessage("human", filled)], params)
    job = Job(
        picker=picker,
        prompts=prompts,
        system=system,
        keys=keys,
        columns=columns,
        schema=checked,
        call_kwargs=call_kwargs,
        cache=store,
        on_error=on_error,
        on_progress=on_progress,
    )
    sinks = (session.metrics.emit, *session.sinks, *global_sinks())
    job.prepare(sinks)
    return job, df, dtypes, opened


def finish(job: Job, scheduler: Scheduler, frame: Any, dtypes: dict[str, Any], view: View | None) -> Any:
    """The result frame (input columns, then ours), with a note when the job stopped early."""
    import pandas as pd  # lazy: pandas

    job.close()  # answers are in the cache before anyone re-runs
    reason = scheduler.stop_reason
    status = job.progress.snapshot()
    note = _note(reason, status, scheduler.error, cache=job.keys.count(None) < len(job.keys))
    if view is not None:
        view.finish(status, note)
    if reason in ("error", "fatal") and scheduler.error is not None:
        error = scheduler.error
        if note:
            error.add_note(note)
        raise error
    if note:
        print(f"coffee_nb: {note}", file=sys.stderr)
    out = job.columns.frame(frame.index, dtypes)
    result = pd.concat([frame, out], axis=1)
    result.attrs["coffee_nb"] = {
        "status": reason or "done",
        "rows": status.total,
        "answered": status.answered,
        "failed": status.failed,
        "cached": status.cached,
        "not_run": status.not_run,
        "spent": status.spent,
        "note": note,
    }
    return result


def _note(reason: str | None, status: JobStatus, error: BaseException | None, *, cache: bool) -> str | None:
    if reason is None or reason == "done":
        return None
    done = (
        f"{status.answered:,} of {status.total:,} rows answered ({money(status.spent)} spent), "
        f"{status.not_run:,} not run"
    )
    again = (
        "run the same call again to resume: answered rows come from the cache at $0"
        if cache
        else "the cache is off, so running it again calls every row again"
    )
    if reason == "budget":
        why = str(error).split(". ")[0] if error is not None else "budget reached"  # its first sentence: which limit
        return f"stopped at the budget ({why}). {done}. Raise the limit (or wait for its reset), then {again}."
    if reason == "interrupted":
        return f"interrupted: {done}; {again}."
    return f"stopped after an error: {done}; {again}."


def _picker(models: Any, budget: Any, session: Any) -> Any:
    from coffee_nb.invoke._invoker import AutoPicker  # lazy: langchain_core

    if isinstance(models, AutoPicker):
        if budget is None:
            return models
        from coffee_nb.budget import BudgetStack  # lazy: %load_ext path

        return models.model_copy(update={"budget": BudgetStack(models.budget, budget)})
    if models is None:
        chain = None
    elif isinstance(models, str) or not isinstance(models, Sequence):
        chain = [models]
    else:
        chain = list(models)
    if chain is not None and not chain:
        raise ConfigError("models must name at least one model, e.g. ['sandbox/fast']")
    return session.picker(chain, budget)


def _cache(cache: Any, session: Any) -> tuple[Any, Any]:
    """The response cache to use, and the one this call opened (closed after the job)."""
    from coffee_nb.replay._cache import ResponseCache  # lazy: %load_ext path

    if cache is True:
        return (session.cache if session.cache_enabled else None), None
    if cache is False or cache is None:
        return None, None
    if isinstance(cache, ResponseCache):
        return cache, None
    if isinstance(cache, (str, Path)):
        opened = ResponseCache(cache)
        return opened, opened
    raise ConfigError(f"cache must be True, False, a ResponseCache or a path to one, got {cache!r}")


def run_in_thread(scheduler: Scheduler, view: View | None) -> None:
    """Run the scheduler on a fresh event loop in a worker thread; refresh the view from this one.

    A KeyboardInterrupt here (Ctrl-C, a kernel interrupt) stops the job cleanly: rows in flight are
    cancelled (their reservations released) and what finished is kept.
    """
    failure: list[BaseException] = []
    finished = threading.Event()  # waited on, not Thread.join: an interrupted join can lose the thread's state

    def work() -> None:
        try:
            asyncio.run(_run_and_close(scheduler))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)
        finally:
            finished.set()

    # with the caller's context: a `with coffee_nb.cassette(...)` block, the notebook cell, ... apply in the job
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(work,), name="coffee_nb-map_rows", daemon=True)
    if view is not None:
        view.start(scheduler.job.progress.projection)
    thread.start()
    try:
        while not finished.wait(REFRESH):
            if view is not None:
                view.update(scheduler.job.progress.snapshot())
    except KeyboardInterrupt:
        scheduler.interrupt()
        finished.wait()  # rows in flight are being cancelled: quick
    if failure:
        raise failure[0]


async def _run_and_close(scheduler: Scheduler) -> None:
    from coffee_nb._shared._http import get_async_http_client  # lazy: %load_ext path

    try:
        await scheduler.run()
    finally:
        await get_async_http_client().aclose()  # this loop's pooled connections end with it


@contextlib.contextmanager
def job_spans(picker: Any, rows: int) -> Iterator[list[dict[str, str]]]:
    """A span over the job for each of the picker's sinks that traces (OpenTelemetry), current while the
    job runs: every row's call is its child. Yields their trace carriers (for Dask workers)."""
    core = getattr(picker, "_core", None)
    tracers = [o for o in getattr(core, "observers", ()) if callable(getattr(o, "job_span", None))]
    with contextlib.ExitStack() as stack:
        attrs = {"coffee_nb.rows": rows, "coffee_nb.models": list(picker.model_names)}
        yield [stack.enter_context(t.job_span(f"map_rows {rows} rows", attrs)) for t in tracers]
