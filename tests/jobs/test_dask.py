"""map_rows on Dask: two worker processes charging one Redis ledger; a hard cap holds; a re-run resumes."""

from __future__ import annotations

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
