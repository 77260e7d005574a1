"""OpenTelemetry export end to end, into a receiver nobody here wrote (Arize Phoenix, started on 127.0.0.1 by
the ``otlp_receiver`` fixture), read back through Phoenix's own API:

- a notebook kernel with ``%llm_config --metrics otel`` whose ``%%llm`` cell retried then fell back is one
  trace (the call span, an attempt span each), there as soon as the kernel has stopped: nothing was lost
  with the process;
- ``map_rows`` on Dask: the job's span in this process, every row's call exported by the worker process
  that made it, as the job span's children.

Each test sends its spans to a Phoenix project of its own (``openinference.project.name``).
"""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.otlp_receiver, pytest.mark.timeout(600)]


def _exporting_to(receiver, monkeypatch) -> str:
    """Point every OpenTelemetryMetrics made from now on (in this process and its children) at the receiver,
    under a project of its own; metrics off (Phoenix takes traces only)."""
    project = f"coffee-nb-{uuid.uuid4().hex[:8]}"
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    monkeypatch.setenv("COFFEE_NB_SANDBOX_LATENCY_SCALE", "0")  # child processes inherit it
    return project


def _tree(spans: list[dict]) -> dict[str, list[dict]]:
    """parent span id -> its children (None: the roots)."""
    out: dict = {}
    for span in spans:
        out.setdefault(span["parent_id"], []).append(span)
    return out


def test_a_cell_is_one_trace_in_phoenix_and_a_stopped_kernel_lost_none(otlp_receiver, monkeypatch, tmp_path):
    from tests._kernels import run_cells

    project = _exporting_to(otlp_receiver, monkeypatch)
    # the kernel stops right after the last cell: spans still in the exporter's queue must reach Phoenix
    _, answered = run_cells(
        [
            "%load_ext coffee_nb\n"
            "import coffee_nb\n"
            "from coffee_nb import sandbox\n"
            "coffee_nb.configure(ledger='memory')\n"
            "%llm_config --metrics otel\n"
            "sandbox.inject('sandbox/fast', ['server_error', 'server_error', 'server_error'])",
            "%%llm sandbox/fast sandbox/smart --no-cache\nWhere did the seconds go?",
        ],
        tmp_path,
    )
    assert "sandbox/smart" in answered[-1]["data"]["text/plain"]

    spans = otlp_receiver.wait_for_spans(4, project=project, timeout=30)
    tree = _tree(spans)
    (call,) = tree[None]  # one trace: the cell's call is its root
    assert call["name"] == "chat fast"
    attrs = call["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "sandbox"
    assert attrs["gen_ai.response.model"] == "smart" and attrs["coffee_nb.fallback_reason"] == "server"
    assert attrs["coffee_nb.cost_usd"] > 0
    children = sorted(tree[call["context"]["span_id"]], key=lambda s: s["start_time"])
    assert [(c["name"], c["attributes"]["coffee_nb.outcome"]) for c in children] == [
        ("chat fast", "error"),
        ("chat fast", "error"),
        ("chat fast", "error"),
        ("chat smart", "ok"),
    ]
    assert all(c["context"]["trace_id"] == call["context"]["trace_id"] for c in children)
    assert [c["attributes"].get("error.type") for c in children[:3]] == ["server"] * 3


def test_dask_workers_export_their_calls_beneath_the_jobs_span(otlp_receiver, redis_url, monkeypatch):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import coffee_nb
    from coffee_nb.jobs import map_rows

    project = _exporting_to(otlp_receiver, monkeypatch)
    coffee_nb.configure(ledger=redis_url, metrics="otel")  # the workers charge one Redis ledger
    rows = 6
    ddf = dd.from_pandas(pd.DataFrame({"q": [f"question {i}" for i in range(rows)]}), npartitions=2)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        out = map_rows(ddf, "Answer: {q}", models=["sandbox/fast"], max_tokens=20, compute=True, progress=False)
    assert out["error"].isna().all()
    coffee_nb.get_session().exporters[0].flush()  # the job span, from this process

    spans = otlp_receiver.wait_for_spans(1 + 2 * rows, project=project, timeout=60)
    tree = _tree(spans)
    (job,) = [s for s in spans if s["name"] == "map_rows 2 partitions"]
    calls = tree[job["context"]["span_id"]]
    assert len(calls) == rows and {c["name"] for c in calls} == {"chat fast"}  # made in the worker processes
    assert all(c["context"]["trace_id"] == job["context"]["trace_id"] for c in calls)
    attempts = [a for c in calls for a in tree.get(c["context"]["span_id"], [])]
    assert len(attempts) == rows and {a["attributes"]["coffee_nb.outcome"] for a in attempts} == {"ok"}
