"""map_rows on Dask: two worker processes charging one Redis ledger; a hard cap holds; a re-run resumes."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from decimal import Decimal

import dask.dataframe as dd
import pandas as pd
import pytest

from coffee_nb import Budget, ConfigError
from coffee_nb.jobs import Projection, map_rows


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"question {i}" for i in range(n)]}, index=[f"r{i:03d}" for i in range(n)])


class Recorder:
    """A progress view that keeps what it was shown."""

    def __init__(self) -> None:
        self.projection: Projection | None = None
        self.updates: list = []
        self.final = None

    def start(self, projection):
        self.projection = projection

    def update(self, status):
        self.updates.append(status)

    def finish(self, status, note):
        self.final = status


def test_two_worker_processes_share_one_hard_cap_and_a_rerun_resumes(redis_url, monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setenv("COFFEE_NB_SANDBOX_LATENCY_SCALE", "0")  # the worker processes inherit it
    ddf = dd.from_pandas(frame(120), npartitions=4)
    cap = Decimal("0.0012")  # about 50 of the 120 rows
    budget = Budget(total=cap, ledger=redis_url, name="dask-team")
    args = {"models": ["sandbox/fast"], "max_tokens": 60, "concurrency": 4, "compute": True}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        view = Recorder()
        first = map_rows(ddf, "Answer: {q}", budget=budget, progress=view, **args)
        assert isinstance(first, pd.DataFrame) and list(first.index) == list(frame(120).index)
        done = first["error"].isna()
        assert 0 < done.sum() < 120
        assert set(first.loc[~done, "error"]) == {"not run (budget)"}
        assert budget.spent() <= cap  # one cap across both workers
        assert sum(c for c in first["cost"] if c is not None) == budget.spent()
        assert first.attrs["coffee_nb"]["status"] == "budget"
        assert view.projection is not None and view.projection.to_call == 120  # shown before any call
        assert view.final.answered == done.sum()  # the workers' reports, summed

        more = Budget(total=1, ledger=redis_url, name="dask-more")
        second = map_rows(ddf, "Answer: {q}", budget=more, progress=False, **args)
        assert second["error"].isna().all()
        assert (second["cached"] == done).all()  # finished rows came from the cache...
        assert all(c == 0 for c in second.loc[done, "cost"])  # ...at $0
        assert sum(c for c in second["cost"] if c is not None) == more.spent()

        lazy = map_rows(ddf, "Answer: {q}", budget=more, models=["sandbox/fast"], max_tokens=60, concurrency=4)
        assert isinstance(lazy, dd.DataFrame) and "answer" in lazy.columns
        third = lazy.compute()
        assert third["cached"].all() and more.spent() == sum(c for c in second["cost"] if c is not None)


def test_an_interrupt_stops_every_partition_and_keeps_what_finished(redis_url):
    from coffee_nb import sandbox

    sandbox.set_latency_scale(2)  # no distributed client: partitions run in threads here, slowly enough
    ddf = dd.from_pandas(frame(400), npartitions=4)
    budget = Budget(total=1, ledger=redis_url, name="dask-interrupt")

    def interrupt_when_running() -> None:
        import redis

        r = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until this job's partitions report 40 rows answered
            keys = set(r.keys("coffee_nb:job:*:progress")) - before
            reports = [json.loads(v) for k in keys for v in r.hgetall(k).values()]
            if sum(rep["answered"] for rep in reports) >= 40:
                break
            time.sleep(0.02)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    import redis

    before = set(redis.Redis.from_url(redis_url).keys("coffee_nb:job:*:progress"))
    threading.Thread(target=interrupt_when_running, daemon=True).start()
    result = map_rows(ddf, "Answer: {q}", models=["sandbox/fast"], budget=budget, concurrency=2, compute=True)
    info = result.attrs["coffee_nb"]
    assert info["status"] == "interrupted" and 0 < info["not_run"] < 400
    assert set(result.loc[result["error"].notna(), "error"]) <= {"not run (interrupted)"}
    assert budget.status()["total"]["reserved"] == 0
    assert sum(c for c in result["cost"] if c is not None) == budget.spent()


def test_dask_needs_specs_and_a_shared_budget(redis_url):
    ddf = dd.from_pandas(frame(4), npartitions=2)
    with pytest.raises(ConfigError, match="needs a budget every worker can share"):
        map_rows(ddf, "{q}", models=["sandbox/fast"], budget=Budget(total=1, ledger="memory"))
    from coffee_nb.testing import ScriptedChatModel

    shared = Budget(total=1, ledger=redis_url, name="dask-checks")
    with pytest.raises(ConfigError, match="give models as 'provider/model' specs"):
        map_rows(ddf, "{q}", models=[ScriptedChatModel()], budget=shared)
    with pytest.raises(ConfigError, match="neither a column nor a variable"):
        map_rows(ddf, "{nope}", models=["sandbox/fast"], budget=shared)
    projection = map_rows(ddf, "{q}", models=["sandbox/fast"], budget=shared, dry_run=True)
    assert isinstance(projection, Projection) and projection.to_call == 4 and projection.budget_left == 1


def test_on_progress_hears_the_workers_reports_as_rows_finish_and_the_end(redis_url):
    """The hook runs on the client, fed by the partitions' Redis reports: the rows after the first few wait
    until it has heard a running job with rows finished (so the test needs no timing), then one final call."""
    import asyncio

    from coffee_nb import register_price, register_provider
    from coffee_nb.testing import ScriptedChatModel

    heard, unheard = threading.Event(), threading.Event()

    class Gated(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            # no partition finishes before the client has heard rows finish (the bound only keeps a broken
            # hook from hanging the test: then the rows go on, and the assertions below say what went wrong)
            if self.steps_taken >= 4 and not await asyncio.to_thread(heard.wait, 30):
                unheard.set()
                heard.set()
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    gated = Gated(script=["fine"], model_name="gated")
    register_provider("gated", lambda model, key, settings: gated)
    register_price("gated/m", input=1, output=1)
    statuses: list = []

    def on_progress(status) -> None:
        statuses.append(status)
        if status.status == "running" and status.finished:
            heard.set()

    ddf = dd.from_pandas(frame(24), npartitions=2)  # no distributed client: partitions run in threads here
    budget = Budget(total=1, ledger=redis_url, name="dask-hook")
    result = map_rows(
        ddf,
        "{q}",
        models=["gated/m"],
        budget=budget,
        concurrency=2,
        compute=True,
        progress=False,
        on_progress=on_progress,
    )
    assert result["error"].isna().all() and not unheard.is_set()
    running, last = statuses[:-1], statuses[-1]
    assert running and all(s.status == "running" and s.total == 24 for s in running)
    assert all(0 < a.finished < b.finished for a, b in itertools.pairwise(running))  # called as more rows finished
    assert (last.status, last.total, last.answered, last.finished, last.failed) == ("done", 24, 24, 24, 0)
    assert last.spent == budget.spent() > 0 and last.price_source == "custom"


def test_on_progress_on_a_lazy_dask_result_is_refused_up_front(redis_url):
    ddf = dd.from_pandas(frame(4), npartitions=2)
    shared = Budget(total=1, ledger=redis_url, name="dask-lazy-hook")
    with pytest.raises(ConfigError, match="on_progress on a Dask DataFrame needs compute=True"):
        map_rows(ddf, "{q}", models=["sandbox/fast"], budget=shared, on_progress=print)
