"""The worker side of ``map_rows`` on Dask: each partition is a local job on this worker.

The worker builds its own AutoPicker from the :class:`JobSpec` (model specs, policy, the budget's limits
and its Redis ledger's URL, the response cache's path), runs the partition's rows, and (when the client
computes the job) reports its counters to Redis a couple of times a second and obeys the stop flag there.
"""

from __future__ import annotations

import json
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coffee_nb.budget import Budget
from coffee_nb.jobs._columns import output_dtypes
from coffee_nb.jobs._local import DEFAULT_CONCURRENCY, finish, prepare, run_in_thread
from coffee_nb.jobs._scheduler import Scheduler
from coffee_nb.jobs._schema import Schema
from coffee_nb.jobs._template import SamePromptWarning
from coffee_nb.metrics._otel import OpenTelemetryMetrics, traced_by
from coffee_nb.pricing._pricing import to_pico
from coffee_nb.replay._cache import ResponseCache

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.jobs._progress import JobStatus, Projection

__all__ = ["KEY_TTL", "STATUS_FIELDS", "JobSpec", "partition", "project"]

KEY_TTL = 86_400  # seconds the progress and stop keys live in Redis
STATUS_FIELDS = ("answered", "failed", "cached", "not_run", "in_flight", "unpriced", "concurrency", "rate_limits")


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run its partitions, picklable (no connections, no clients)."""

    job_id: str
    template: str
    variables: dict[str, Any]
    models: list[Any]
    budget: dict[str, Any]
    redis_url: str
    cache_path: str | None
    schema: Any
    out: str | None
    system: str | None
    temperature: float | None
    max_tokens: int | None
    concurrency: int | None
    on_error: str
    policy: Any = None
    context_tokens: int | None = None
    otel: bool = False  # the client exports OpenTelemetry: so does every worker (OTEL_EXPORTER_OTLP_* there)
    trace: dict[str, str] | None = None  # the job span's W3C trace context: the workers' spans are its children
    report: bool = False  # computed by map_rows: report progress to Redis and obey its stop flag

    def __dask_tokenize__(self) -> str:
        return self.job_id  # unique per call; hashing the variables could be slow or impossible

    def key(self, what: str) -> str:
        return f"coffee_nb:job:{self.job_id}:{what}"


# -- on the workers -------------------------------------------------------------------------------------------
def _open(spec: JobSpec) -> tuple[Any, Any, Any]:
    from coffee_nb.invoke._invoker import AutoPicker  # lazy: langchain_core

    budget = Budget(**spec.budget)
    metrics = [OpenTelemetryMetrics()] if spec.otel else None
    picker = AutoPicker(spec.models[0], spec.models[1:], budget=budget, policy=spec.policy, metrics=metrics)
    cache = ResponseCache(spec.cache_path) if spec.cache_path else None
    return picker, budget, cache


def _prepared(pdf: pd.DataFrame, spec: JobSpec, picker: Any, cache: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamePromptWarning)  # the client warned once already
        return prepare(
            pdf,
            spec.template,
            picker=picker,
            out=spec.out,
            schema=spec.schema,
            concurrency=spec.concurrency,
            cache=cache if cache is not None else False,
            on_error=spec.on_error,
            system=spec.system,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            context_tokens=spec.context_tokens,
            namespace=spec.variables,
        )


def partition(pdf: pd.DataFrame, spec: JobSpec, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    """One partition, as a local job on this worker."""
    number = (partition_info or {}).get("number")
    if number is None:  # a scheduler that doesn't say which partition: any unique name keeps reports apart
        number = uuid.uuid4().hex
    if len(pdf) == 0:
        return _empty(pdf, spec)
    picker, budget, cache = _open(spec)
    report = _Reporter(spec, number) if spec.report else None
    try:
        job, frame, dtypes, _ = _prepared(pdf, spec, picker, cache)
        scheduler = Scheduler(job, concurrency=spec.concurrency or DEFAULT_CONCURRENCY, tick=report)
        if report is not None and report(job.progress.snapshot()):
            scheduler.interrupt()  # stopped before this partition began
        with traced_by(spec.trace):  # this partition's calls join the job's trace
            run_in_thread(scheduler, None)
        result = finish(job, scheduler, frame, dtypes, None)
        if report is not None:
            report(job.progress.snapshot())
        return result
    finally:
        if report is not None:
            report.close()
        budget.close()
        if cache is not None:
            cache.close()
        for exporter in picker.metrics or ():  # this worker's spans leave now, not at its exit
            exporter.flush()


def _empty(pdf: pd.DataFrame, spec: JobSpec) -> pd.DataFrame:
    import pandas as pd  # lazy: pandas

    dtypes = output_dtypes(spec.out or "answer", None if spec.schema is None else Schema(spec.schema))
    return pd.concat([pdf, pd.DataFrame({n: pd.Series(dtype=d) for n, d in dtypes.items()}, index=pdf.index)], axis=1)


def project(pdf: pd.DataFrame, spec: JobSpec) -> pd.DataFrame:
    """One partition's projection, as a one-row frame the client sums."""
    import pandas as pd  # lazy: pandas

    picker, budget, cache = _open(spec)
    try:
        job, *_ = _prepared(pdf, spec, picker, cache) if len(pdf) else (None,)
        if job is None:
            return pd.DataFrame([{"rows": 0, "cached": 0, "to_call": 0, "unfilled": 0, "worst": 0, "expected": 0}])
        job.close()
        p: Projection = job.progress.projection
        row = {
            "rows": p.rows,
            "cached": p.cached,
            "to_call": p.to_call,
            "unfilled": p.unfilled,
            "worst": -1 if p.worst is None else to_pico(p.worst),
            "expected": -1 if p.expected is None else to_pico(p.expected),
            "out_tokens": p.output_tokens * p.rows,
            "source": p.price_source,
        }
        return pd.DataFrame([row])
    finally:
        budget.close()
        if cache is not None:
            cache.close()


class _Reporter:
    """A worker's job reports its counters to Redis and reads the stop flag (in the scheduler's ticker)."""

    def __init__(self, spec: JobSpec, number: int | str) -> None:
        import redis  # lazy: redis

        self.spec = spec
        self.field = str(number)
        self.r = redis.Redis.from_url(spec.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def __call__(self, status: JobStatus) -> bool:
        data = {k: getattr(status, k) for k in STATUS_FIELDS}
        data.update(total=status.total, spent=str(status.spent), eta=status.eta_s, waited=status.waited_s)
        pipe = self.r.pipeline()
        pipe.hset(self.spec.key("progress"), self.field, json.dumps(data))
        pipe.expire(self.spec.key("progress"), KEY_TTL)
        pipe.exists(self.spec.key("stop"))
        return bool(pipe.execute()[-1])

    def close(self) -> None:
        self.r.close()
