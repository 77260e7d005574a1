"""map_rows against the sandbox (and a scripted model): columns, faults, budget stop and resume, interrupts."""

from __future__ import annotations

import signal
import threading
from decimal import Decimal

import pandas as pd
import pytest

from coffee_nb import Budget, ModelSpec, Policy, capture_records, sandbox
from coffee_nb.jobs import map_rows
from coffee_nb.jobs._columns import BOOKKEEPING
from coffee_nb.testing import ScriptedChatModel, http_error


def spend_matches(result: pd.DataFrame, budget: Budget) -> None:
    """The frame's costs add up to what the ledger was charged."""
    assert sum(c for c in result["cost"] if c is not None) == budget.spent()


def test_answers_in_order_with_index_kept_and_typed_columns(tickets):
    budget = Budget(total=10, ledger="memory")
    result = map_rows(tickets, "Summarise: {text}", models=["sandbox/echo"], budget=budget, progress=False)
    assert list(result.index) == list(tickets.index)
    assert list(result.columns) == ["text", "n", "answer", *BOOKKEEPING]
    assert list(result["answer"]) == [f"Summarise: {t}" for t in tickets["text"]]  # echo: row i got row i's prompt
    assert result["model"].dtype == "category" and set(result["model"]) == {"sandbox/echo"}
    assert result["input_tokens"].dtype == "int64" and (result["input_tokens"] > 0).all()
    assert result["output_tokens"].dtype == "int64" and (result["output_tokens"] > 0).all()
    assert all(isinstance(c, Decimal) and c > 0 for c in result["cost"])
    assert result["latency_s"].dtype == "float64"
    assert not result["cached"].any() and result["error"].isna().all() and result["fallback_from"].isna().all()
    assert result.attrs["coffee_nb"]["status"] == "done" and result.attrs["coffee_nb"]["answered"] == 40
    spend_matches(result, budget)


def test_a_thousand_rows_with_faults_every_row_answered_or_failed_and_spend_adds_up():
    frame = pd.DataFrame({"q": [f"question {i}" for i in range(1000)]})
    sandbox.inject("sandbox/fast", rates={"rate_limit": 0.02, "server_error": 0.03, "context_overflow": 0.02}, seed=1)
    sandbox.inject("sandbox/smart", rates={"server_error": 0.5}, seed=2)
    budget = Budget(total=100, ledger="memory")
    seen: list = []
    with capture_records() as records:
        result = map_rows(
            frame,
            "Answer: {q}",
            models=["sandbox/fast", "sandbox/smart"],
            budget=budget,
            concurrency=64,
            progress=False,
            on_progress=seen.append,
        )
    assert len(result) == 1000
    answered, failed = result["error"].isna(), result["error"].notna()
    assert (answered == result["answer"].notna()).all()  # every row: an answer or an error, never both
    assert (answered | failed).all()
    assert (result.loc[failed, "error"].str.match(r"^\w+(Error|Exceeded\w*): ")).all()
    assert (result["fallback_from"] == "sandbox/fast").sum() > 0  # context overflows moved on to smart
    faults = {a["fault"] for a in sandbox.attempts()}
    assert {"rate_limit", "server_error", "context_overflow"} <= faults
    # failed attempts are never charged: only answering attempts commit, one per answered row
    assert all(r.cost in (None, 0) for r in records if r.outcome != "ok" and not r.cache_hit)
    assert len(budget.calls()) == answered.sum()
    spend_matches(result, budget)
    assert seen[-1].rate_limits > 0 and seen[-1].answered == answered.sum()


@pytest.mark.filterwarnings("ignore::coffee_nb.BudgetWarning")  # the 80% warning, expected here
def test_budget_stop_keeps_finished_rows_and_a_rerun_makes_exactly_the_missing_calls(capsys):
    frame = pd.DataFrame({"q": [f"question {i}" for i in range(120)]})
    cap = Decimal("0.0012")
    budget = Budget(total=cap, ledger="memory")
    args = {"models": ["sandbox/fast"], "max_tokens": 60, "concurrency": 8, "progress": False}
    first = map_rows(frame, "Answer: {q}", budget=budget, **args)
    info = first.attrs["coffee_nb"]
    assert info["status"] == "budget"
    done = first["error"].isna()
    assert 0 < done.sum() < 120 and info["not_run"] == 120 - done.sum()
    assert set(first.loc[~done, "error"]) == {"not run (budget)"}
    assert budget.spent() <= cap
    spend_matches(first, budget)
    note = capsys.readouterr().err
    assert f"{done.sum()} of 120 rows answered" in note and "run the same call again to resume" in note

    sandbox.clear_log()
    more = Budget(total=1, ledger="memory")
    second = map_rows(frame, "Answer: {q}", budget=more, **args)
    assert len(sandbox.attempts()) == (~done).sum()  # only the rows that were not run were called
    assert second["error"].isna().all()
    assert (second["cached"] == done).all()
    assert all(c == 0 for c in second.loc[done, "cost"])  # finished rows cost $0 the second time
    assert (second.loc[done, "answer"] == first.loc[done, "answer"]).all()
    spend_matches(second, more)


def _interrupt_after(n: int, how):
    fired: list[bool] = []

    def hook(status):
        if status.answered >= n and not fired:  # once, like one Ctrl-C (a second one stops the waiting too)
            fired.append(True)
            how()

    return hook


def _raise_interrupt():
    raise KeyboardInterrupt


def _sigint_main_thread():
    """What Ctrl-C or a kernel interrupt does: SIGINT to the main thread, which waits for the job."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.mark.parametrize("how", [_raise_interrupt, _sigint_main_thread], ids=["from the progress hook", "SIGINT"])
def test_interrupt_returns_the_partial_frame_and_releases_reservations(how, capsys):
    sandbox.set_latency_scale(0.3)  # rows take a few ms each: some are in flight when the interrupt comes
    frame = pd.DataFrame({"q": [f"question {i}" for i in range(400)]})
    budget = Budget(total=10, ledger="memory")
    with capture_records() as records:
        result = map_rows(
            frame,
            "Answer: {q}",
            models=["sandbox/fast"],
            budget=budget,
            concurrency=16,
            progress=False,
            on_progress=_interrupt_after(40, how),
        )
    info = result.attrs["coffee_nb"]
    assert info["status"] == "interrupted"
    assert info["answered"] >= 40 and info["not_run"] > 0
    assert info["answered"] + info["failed"] + info["not_run"] == 400
    assert any(r.outcome == "cancelled" for r in records)  # rows in flight were cancelled...
    assert budget.status()["total"]["reserved"] == 0  # ...and gave their reservations back
    assert len(budget.calls()) == info["answered"]
    spend_matches(result, budget)
    assert "interrupted:" in capsys.readouterr().err


def test_schema_from_the_sandbox_gives_typed_columns(tickets):
    from typing import Literal

    from pydantic import BaseModel

    class Ticket(BaseModel):
        topic: Literal["refund", "delivery"]
        priority: int
        urgent: bool

    template = "Ticket about 'delivery', priority {n}: {text}"
    result = map_rows(tickets.head(5), template, models=["sandbox/fast"], schema=Ticket, progress=False)
    assert "answer" not in result.columns
    assert result["topic"].dtype == "category" and set(result["topic"]) == {"refund"}  # the first allowed value
    assert result["priority"].dtype == "Int64" and list(result["priority"]) == list(tickets["n"].head(5))
    assert result["urgent"].dtype == "boolean"
    assert result["error"].isna().all()

    as_dict = map_rows(tickets.head(3), template, models=["sandbox/fast"], schema={"topic": str, "p": float})
    assert list(as_dict["topic"]) == ["delivery"] * 3 and as_dict["p"].dtype == "Float64"
    json_schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    assert list(map_rows(tickets.head(2), template, models=["sandbox/fast"], schema=json_schema)["topic"]) == [
        "delivery",
        "delivery",
    ]
    as_text = map_rows(tickets.head(2), template, models=["sandbox/fast"], schema="topic:str, priority:int")
    assert list(as_text["priority"]) == list(tickets["n"].head(2))


def test_invalid_json_rows_are_errors_not_crashes_and_are_asked_again_on_resume():
    model = ScriptedChatModel(
        script=[
            '{"label": "a", "score": 1}',
            "not json at all",
            '{"label": "b"}',
            '{"label": "c", "score": "x"}',
            '```json\n{"label": "d", "score": 2.5}\n```',
        ]
    )
    frame = pd.DataFrame({"text": list("vwxyz")})
    result = map_rows(frame, "Label {text}", models=[model], schema={"label": str, "score": float}, concurrency=1)
    assert "JSON schema" in model.calls[0]["messages"][-1].content  # no structured output here: asked in the prompt
    assert list(result["label"].isna()) == [False, True, True, True, False]
    assert result.loc[4, "score"] == 2.5 and result["score"].dtype == "Float64"
    errors = list(result["error"].dropna())
    assert len(errors) == 3 and all(e.startswith("InvalidAnswer: ") for e in errors)
    assert "not valid JSON" in errors[0] and "score" in errors[1] and "score" in errors[2]
    again = map_rows(frame, "Label {text}", models=[model], schema={"label": str, "score": float}, concurrency=1)
    assert model.steps_taken == 8  # the three invalid rows were asked again; the two valid ones came from the cache
    assert again["error"].isna().all() and list(again["cached"]) == [True, False, False, False, True]


def test_template_variables_escapes_odd_columns_and_rows_that_cannot_fill():
    frame = pd.DataFrame({"text": ["a", "b"], "odd col": ["x", "y"], "meta": [{"k": 1}, {}]})
    tone = "polite"
    result = map_rows(
        frame, "Be {tone}: {text} {row['odd col']} {meta['k']} {{text}}", models=["sandbox/echo"], progress=False
    )
    assert result.loc[0, "answer"] == "Be polite: a x 1 {text}"
    assert result.loc[1, "error"].startswith("TemplateError: {meta['k']} could not be filled")
    assert len(sandbox.attempts()) == 1  # the row that could not fill was not sent
    del tone


def test_dry_run_projects_cost_and_calls_nothing(tickets):
    projection = map_rows(tickets, "Summarise: {text}", models=["sandbox/fast", "sandbox/smart"], dry_run=True)
    assert (projection.rows, projection.cached, projection.to_call) == (40, 0, 40)
    assert projection.expected is not None and projection.worst is not None
    assert 0 < projection.expected < projection.worst
    assert projection.budget_left == Decimal(5) and projection.budget_label == "daily"  # the session's cap
    assert "40 to call" in repr(projection) and "worst case" in repr(projection)
    assert sandbox.attempts() == []
    map_rows(tickets, "Summarise: {text}", models=["sandbox/fast", "sandbox/smart"], progress=False)
    again = map_rows(tickets, "Summarise: {text}", models=["sandbox/fast", "sandbox/smart"], dry_run=True)
    assert (again.cached, again.to_call, again.measured) == (40, 0, True)


def test_cache_hits_are_zero_cost_records():
    frame = pd.DataFrame({"q": ["one", "two", "three"]})
    map_rows(frame, "Say {q}", models=["sandbox/fast"], progress=False)
    with capture_records() as records:
        again = map_rows(frame, "Say {q}", models=["sandbox/fast"], progress=False)
    assert again["cached"].all() and all(c == 0 for c in again["cost"])
    assert [(r.cache_hit, r.cost, r.price_source) for r in records] == [(True, 0, "cache")] * 3
    calls = len(sandbox.attempts())
    map_rows(frame, "Say {q}", models=["sandbox/fast"], progress=False, cache=False)
    assert len(sandbox.attempts()) == calls + 3


def test_on_error_raise_stops_with_the_rows_error():
    import openai

    model = ScriptedChatModel(script=["fine", http_error(400, "that is not allowed"), "fine"])
    frame = pd.DataFrame({"q": ["a", "b", "c"]})
    with pytest.raises(openai.BadRequestError) as info:
        map_rows(frame, "Do {q}", models=[model], concurrency=1, on_error="raise", progress=False)
    assert any("stopped after an error" in note for note in info.value.__notes__)
    assert model.steps_taken == 2  # stopped at the failing row


def test_unpriced_models_cost_none_and_are_counted():
    frame = pd.DataFrame({"q": ["a", "b"]})
    seen: list = []
    result = map_rows(frame, "Do {q}", models=[ScriptedChatModel(script=["ok"])], on_progress=seen.append)
    assert list(result["cost"]) == [None, None]
    assert seen[-1].unpriced == 2


def test_rate_limits_halve_concurrency_and_hold_new_rows_back():
    sandbox.inject("sandbox/fast", ["429", "429"])  # fewer than a row's retries: every row is answered
    frame = pd.DataFrame({"q": [f"q{i}" for i in range(80)]})
    seen: list = []
    result = map_rows(frame, "Say {q}", models=["sandbox/fast"], concurrency=16, on_progress=seen.append)
    assert result["error"].isna().all()
    assert min(s.concurrency for s in seen) < 16
    assert seen[-1].rate_limits >= 1 and seen[-1].waited_s > 0


def test_declared_rpm_paces_row_starts():
    import time

    frame = pd.DataFrame({"q": [f"q{i}" for i in range(11)]})
    start = time.monotonic()
    map_rows(frame, "Say {q}", models=[ModelSpec(model="sandbox/fast", rpm=1200)], progress=False)
    times = [a["t"] for a in sandbox.attempts()]
    assert len(times) == 11 and max(times) >= start + 10 * 60 / 1200  # rows started 50 ms apart, at the least


def test_an_autopicker_is_used_as_given():
    from coffee_nb import AutoPicker

    picker = AutoPicker("sandbox/fast", policy=Policy(max_retries=0), budget=Budget(total=1, ledger="memory"))
    frame = pd.DataFrame({"q": ["a", "b"]})
    result = map_rows(frame, "Say {q}", models=picker, progress=False)
    spend_matches(result, picker.budget)


async def test_amap_rows_runs_on_the_running_loop(tickets):
    from coffee_nb.jobs import amap_rows

    result = await amap_rows(tickets.head(4), "Echo {text}", models=["sandbox/echo"])
    assert list(result["answer"]) == [f"Echo {t}" for t in tickets["text"].head(4)]


def test_a_cache_that_fails_is_dropped_with_a_warning_and_every_row_is_called(tmp_path):
    from coffee_nb.replay._cache import ResponseCache

    broken = ResponseCache(tmp_path / "cache.sqlite3")
    broken.close()  # every read now fails
    frame = pd.DataFrame({"q": ["a", "b", "c"]})
    with pytest.warns(UserWarning, match="response cache can't be read"):
        result = map_rows(frame, "Say {q}", models=["sandbox/fast"], cache=broken, progress=False)
    assert result["error"].isna().all() and len(sandbox.attempts()) == 3


def test_a_row_holding_an_api_key_is_not_sent(monkeypatch):
    secret = "sk-proj-" + "abcdefghij" * 4
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    frame = pd.DataFrame({"text": ["fine", f"my key is {secret}"]})
    result = map_rows(frame, "Echo {text}", models=["sandbox/echo"], progress=False)
    assert result.loc[0, "answer"] == "Echo fine"
    assert result.loc[1, "error"].startswith("TemplateError: {text} could not be filled from this row")
    assert "API key" in result.loc[1, "error"] and secret not in result.loc[1, "error"]
    assert len(sandbox.attempts()) == 1


@pytest.mark.parametrize("how", ["argument", "block"])
def test_a_job_records_its_cassette_and_replays_it_in_a_fresh_process_without_the_sandbox(tmp_path, how):
    """map_rows' calls run in a worker thread: they record into the job's cassette (``cassette=``) or the
    ``with coffee_nb.cassette(...)`` block around the job, and replay from it with nothing sent."""
    import json
    import subprocess
    import sys
    import textwrap

    import coffee_nb
    from coffee_nb import Cassette, map_rows, sandbox

    path = tmp_path / "job.llm-cassette.jsonl"
    df = pd.DataFrame({"word": ["alpha", "beta", "gamma"]})
    sandbox.clear_log()
    if how == "argument":
        out = map_rows(
            df, "Say {word}", models=["sandbox/echo"], cache=False, progress=False, cassette=Cassette(path, "record")
        )
    else:
        with coffee_nb.cassette(path, mode="record"):
            out = map_rows(df, "Say {word}", models=["sandbox/echo"], cache=False, progress=False)
    assert list(out["answer"]) == ["Say alpha", "Say beta", "Say gamma"] and len(sandbox.attempts()) == 3
    assert len(path.read_text().splitlines()) == 3  # one entry per row
    code = textwrap.dedent(
        f"""
        import json
        import pandas as pd
        import coffee_nb
        from coffee_nb import Cassette, map_rows
        df = pd.DataFrame({{"word": ["alpha", "beta", "gamma"]}})
        out = map_rows(df, "Say {{word}}", models=["sandbox/echo"], cache=False, progress=False,
                       cassette=Cassette({str(path)!r}, "strict"))
        started = coffee_nb.sandbox._SANDBOX.server is not None
        print(json.dumps({{"answers": list(out["answer"]), "costs": [str(c) for c in out["cost"]],
                          "errors": [e for e in out["error"] if isinstance(e, str)], "sandbox_started": started}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["answers"] == ["Say alpha", "Say beta", "Say gamma"] and data["errors"] == []
    assert data["costs"] == ["0", "0", "0"] and data["sandbox_started"] is False  # $0, no server, no request


def test_a_dask_job_refuses_a_cassette_with_what_to_do_instead():
    dd = pytest.importorskip("dask.dataframe")
    from coffee_nb import ConfigError, map_rows

    ddf = dd.from_pandas(pd.DataFrame({"word": ["a", "b"]}), npartitions=1)
    with pytest.raises(ConfigError, match=r"Dask.*df\.compute\(\)"):
        map_rows(ddf, "Say {word}", models=["sandbox/echo"], cassette="job.jsonl")
