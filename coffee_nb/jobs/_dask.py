"""``map_rows`` on a Dask DataFrame: each partition is a local job on a Dask worker.

Every worker builds its own AutoPicker from a picklable :class:`JobSpec` (model specs, policy, the
budget's limits and its Redis ledger's URL, the response cache's path) and charges the same Redis
ledger, so one hard budget holds across workers and machines (reservations are atomic there). Workers
report progress to Redis a couple of times a second; the notebook sums the partitions into one view
(and an ``on_progress`` hook) and, on an interrupt, raises a stop flag there that every worker's job
obeys (rows in flight cancelled, their reservations released, the rest "not run"). The cache file must
be reachable from the workers (the same machine, or a shared disk) for a re-run to resume at $0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from coffee_nb._shared._validate import positive_int
from coffee_nb._shared._validate import temperature as check_temperature
from coffee_nb.budget import Budget, Limit
from coffee_nb.budget._redis import RedisLedger
from coffee_nb.errors._errors import ConfigError
from coffee_nb.invoke._models import ModelSpec
from coffee_nb.jobs._job import budget_left
from coffee_nb.jobs._options import check_options
from coffee_nb.jobs._progress import JobStatus, Projection, View, make_view
from coffee_nb.jobs._template import Template
from coffee_nb.jobs._worker import KEY_TTL, STATUS_FIELDS, JobSpec, partition, project
from coffee_nb.pricing._pricing import from_pico
from coffee_nb.replay._cache import ResponseCache
from coffee_nb.session._session import get_session

__all__ = ["JobSpec", "map_dask"]

_INSTALL = "map_rows on a Dask DataFrame needs dask, distributed and redis: pip install 'coffee_nb[dask]'"
_REFRESH = 0.25  # seconds between progress view refreshes
log = logging.getLogger("coffee_nb.jobs")


def map_dask(
    ddf: Any,
    template: str,
    *,
    models: Any,
    out: str | None,
    schema: Any,
    concurrency: int | None,
    budget: Any,
    cache: Any,
    on_error: str,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
    dry_run: bool,
    context_tokens: int | None = None,
    progress: Any,
    namespace: Any,
    compute: bool,
    on_progress: Callable[[JobStatus], Any] | None = None,
) -> Any:
    """The Dask side of ``map_rows``: checks on the client, a lazy ``map_partitions``, computed on request."""
    try:
        import dask.dataframe  # noqa: F401  # lazy: dask (here only to check the extra is installed, up front)
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    if on_progress is not None and not callable(on_progress):
        raise ConfigError(f"on_progress must be a function of a JobStatus, got {on_progress!r}")
    if on_progress is not None and not compute and not dry_run:
        raise ConfigError(
            "on_progress on a Dask DataFrame needs compute=True: progress is read while map_rows computes the "
            "job, and a lazy result is computed later, by you (or leave on_progress out)"
        )
    import pandas as pd  # lazy: pandas

    _, _, dtypes = check_options(list(ddf.columns), concurrency=concurrency, on_error=on_error, out=out, schema=schema)
    tmpl = Template.compile(template, list(ddf.columns), namespace, stacklevel=4, context_tokens=context_tokens)
    session = get_session()
    spec = JobSpec(
        job_id=uuid.uuid4().hex,
        template=tmpl.text,
        variables=tmpl.variables,
        models=_chain(models, session),
        budget=_budget_spec(budget if budget is not None else session.budget),
        redis_url="",
        cache_path=_cache_path(cache, session),
        schema=schema,
        out=out,
        system=system if system is not None else session.system,
        temperature=check_temperature(temperature) if temperature is not None else session.temperature,
        max_tokens=positive_int("max_tokens", max_tokens) if max_tokens is not None else session.max_tokens,
        concurrency=concurrency,
        on_error=on_error,
        policy=session.policy,
        context_tokens=context_tokens,
    )
    spec = replace(spec, redis_url=spec.budget["ledger"], report=compute)
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
    meta = pd.concat([ddf._meta, empty], axis=1)
    if dry_run:
        return _projection(ddf, spec)
    tracers = [e for e in session.exporters if callable(getattr(e, "job_span", None))]
    with contextlib.ExitStack() as spans:  # OpenTelemetry: one job span, its trace context sent to the workers
        attrs = {"coffee_nb.partitions": ddf.npartitions, "coffee_nb.models": [str(m) for m in spec.models]}
        carriers = [spans.enter_context(t.job_span(f"map_rows {ddf.npartitions} partitions", attrs)) for t in tracers]
        if carriers:
            spec = replace(spec, otel=True, trace=carriers[0])
        result = ddf.map_partitions(partition, spec, meta=meta)
        if not compute:
            return result
        # shown before anything is called (and the total an on_progress hook's statuses count to)
        projection = _projection(ddf, spec) if progress or on_progress is not None else None
        view = make_view(progress, projection.rows) if projection is not None else None
        return _compute(result, spec, view, projection, on_progress)


def _chain(models: Any, session: Any) -> list[Any]:
    chain: list[Any]
    if models is None:
        chain = list(session.chain()[0])
    elif isinstance(models, (str, ModelSpec)):
        chain = [models]
    elif isinstance(models, (list, tuple)):
        chain = list(models)
    else:
        chain = [models]
    for item in chain:
        inner = item.model if isinstance(item, ModelSpec) else item
        if not isinstance(inner, str):
            raise ConfigError(
                "on a Dask DataFrame give models as 'provider/model' specs (or ModelSpec of one): each worker "
                f"builds its own AutoPicker; got {item!r}"
            )
    if not chain:
        raise ConfigError("models must name at least one model, e.g. ['sandbox/fast']")
    return chain


def _budget_spec(budget: Any) -> dict[str, Any]:
    """Budget(...) arguments that rebuild ``budget`` on a worker, on the same Redis ledger."""
    if not isinstance(budget, Budget) or not isinstance(budget.ledger, RedisLedger):
        raise ConfigError(
            "map_rows on a Dask DataFrame needs a budget every worker can share: "
            "budget=Budget(total=50, ledger='redis://host:6379/0', name='team') "
            f"(or a session budget on Redis: %llm_config --ledger redis://...); got {budget!r}"
        )
    args: dict[str, Any] = {}
    per_model: dict[str, dict[str, Any]] = {}
    for rule in budget.rules:
        limit = Limit(rule.amount, hard=rule.hard, warn_at=rule.warn_at)
        if rule.scope == "global":
            args[rule.period.value] = limit
        else:
            per_model.setdefault(rule.scope.removeprefix("model:"), {})[rule.period.value] = limit
    return {
        **args,
        "per_model": per_model or None,
        "timezone": budget.tz,
        "ledger": budget.ledger.url,
        "name": budget.ledger.ns,
        "strict": budget.strict,
        "lease_ttl": budget.lease_ttl,
    }


def _cache_path(cache: Any, session: Any) -> str | None:
    if cache is True:
        return str(session.cache.path) if session.cache_enabled else None
    if cache is False or cache is None:
        return None
    if isinstance(cache, ResponseCache):
        return str(cache.path)
    if isinstance(cache, (str, Path)):
        return str(cache)
    raise ConfigError(f"cache must be True, False, a ResponseCache or a path to one, got {cache!r}")


def _projection(ddf: Any, spec: JobSpec) -> Projection:
    import pandas as pd  # lazy: pandas

    meta = pd.DataFrame(
        {
            "rows": pd.Series(dtype="int64"),
            **{k: pd.Series(dtype="int64") for k in ("cached", "to_call", "unfilled", "worst", "expected")},
            "out_tokens": pd.Series(dtype="int64"),
            "source": pd.Series(dtype=object),
        }
    )
    parts = ddf.map_partitions(project, spec, meta=meta).compute()
    rows = int(parts["rows"].sum())

    def total(column: str) -> Decimal | None:
        values = parts.loc[parts["rows"] > 0, column]
        return None if (values < 0).any() else from_pico(int(values.sum()))

    budget = Budget(**spec.budget)
    try:
        left, label = budget_left(budget)
    finally:
        budget.close()
    sources = [s for s in parts["source"] if isinstance(s, str)]
    return Projection(
        rows=rows,
        cached=int(parts["cached"].sum()),
        to_call=int(parts["to_call"].sum()),
        unfilled=int(parts["unfilled"].sum()),
        models=tuple(str(m.name if hasattr(m, "name") and m.name else getattr(m, "model", m)) for m in spec.models),
        worst=total("worst"),
        expected=total("expected"),
        output_tokens=int(parts["out_tokens"].sum()) // max(rows, 1),
        measured=int(parts["cached"].sum()) > 0,
        budget_left=left,
        budget_label=label,
        price_source=sources[0] if sources else "unpriced",
    )


# -- on the client --------------------------------------------------------------------------------------------
class _Hook:
    """``on_progress`` on the client: called with the summed status when the workers' reports show more
    rows finished (each worker reports a couple of times a second), and once at the end. A hook that
    raises is logged and switched off, as on a pandas job; a KeyboardInterrupt from it interrupts the job."""

    def __init__(self, hook: Callable[[JobStatus], Any] | None) -> None:
        self.hook = hook
        self.finished = 0

    def __call__(self, status: JobStatus, *, last: bool = False) -> None:
        hook = self.hook
        if hook is None or (not last and status.finished <= self.finished):
            return
        self.finished = status.finished
        try:
            hook(status)
        except Exception:
            log.exception("coffee_nb: map_rows on_progress hook failed; it is switched off")
            self.hook = None


def _compute(
    result: Any,
    spec: JobSpec,
    view: View | None,
    projection: Projection | None,
    on_progress: Callable[[JobStatus], Any] | None = None,
) -> Any:
    """Compute ``result``, showing the workers' progress summed; an interrupt stops every worker's job."""
    import redis  # lazy: redis

    r = redis.Redis.from_url(spec.redis_url, socket_timeout=5, socket_connect_timeout=5)
    box: dict[str, Any] = {}
    finished = threading.Event()  # waited on, not Thread.join: an interrupted join can lose the thread's state

    def work() -> None:
        try:
            box["frame"] = result.compute()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=work, name="coffee_nb-map_rows-dask", daemon=True)
    if view is not None and projection is not None:
        view.start(projection)
    total = projection.rows if projection is not None else 0
    source = projection.price_source if projection is not None else "unpriced"
    hook = _Hook(on_progress)
    started = time.monotonic()
    interrupted = False
    try:
        thread.start()
        try:
            while not finished.wait(_REFRESH):
                if view is not None or hook.hook is not None:
                    running = _summed(r, spec, total, "running", started, source)
                    if view is not None:
                        view.update(running)
                    hook(running)
        except KeyboardInterrupt:  # Ctrl-C, a kernel interrupt, or one the hook raised
            interrupted = True
            r.set(spec.key("stop"), 1, ex=KEY_TTL)  # every worker's job stops at its next tick
            finished.wait()
        status = _summed(r, spec, total, "interrupted" if interrupted else "done", started, source)
    finally:
        r.delete(spec.key("progress"), spec.key("stop"))
        r.close()
    if "error" in box:
        hook(replace(status, status="error"), last=True)
        raise box["error"]
    frame = box["frame"]
    not_run = int(frame["error"].astype(str).str.startswith("not run").sum()) if len(frame) else 0
    note = None
    if not_run:
        why = "interrupted" if interrupted else "stopped at the budget"
        note = (
            f"{not_run:,} of {len(frame):,} rows not run ({why}); "
            "run the same call again to resume: answered rows come from the cache at $0."
        )
        print(f"coffee_nb: {note}", file=sys.stderr)
        if not interrupted:
            status = replace(status, status="budget")
    if view is not None:
        view.finish(status, note)
    hook(status, last=True)
    frame.attrs["coffee_nb"] = {
        "status": "interrupted" if interrupted else ("budget" if not_run else "done"),
        "rows": len(frame),
        "answered": status.answered,
        "failed": status.failed,
        "cached": status.cached,
        "not_run": not_run,
        "spent": status.spent,
        "note": note,
    }
    return frame


def _summed(r: Any, spec: JobSpec, total: int, state: str, started: float, source: str = "unpriced") -> JobStatus:
    """The partitions' latest reports, added up."""
    raw = r.hgetall(spec.key("progress"))
    sums = dict.fromkeys(STATUS_FIELDS, 0)
    spent = Decimal(0)
    eta: float | None = None
    waited = 0.0
    for value in raw.values():
        data = json.loads(value)
        for k in STATUS_FIELDS:
            sums[k] += int(data.get(k, 0))
        spent += Decimal(data.get("spent", "0"))
        if data.get("eta") is not None:
            eta = max(eta or 0.0, float(data["eta"]))
        waited += float(data.get("waited", 0.0))
    return JobStatus(
        status=state,
        total=total,
        answered=sums["answered"],
        failed=sums["failed"],
        cached=sums["cached"],
        not_run=sums["not_run"],
        in_flight=sums["in_flight"],
        spent=spent,
        unpriced=sums["unpriced"],
        projected=None,
        eta_s=eta,
        elapsed_s=time.monotonic() - started,
        concurrency=sums["concurrency"],
        rate_limits=sums["rate_limits"],
        waited_s=waited,
        price_source=source,
    )
