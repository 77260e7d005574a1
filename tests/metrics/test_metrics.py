"""snapshot(), get_metrics(), the DataFrame and a real /metrics scrape agree with each other and with the
scripted truth."""

from __future__ import annotations

import dataclasses
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from coffee_nb import (
    AllModelsFailedError,
    AutoPicker,
    Budget,
    CallRecord,
    LocalMetrics,
    NoOpMetrics,
    Outcome,
    Policy,
    PrometheusMetrics,
    Role,
    create_metrics_strategy,
    register_price,
)
from coffee_nb.metrics import FallbackRoute, LatencyStats, MetricsSnapshot, ModelStats
from coffee_nb.metrics._snapshot import _percentiles
from coffee_nb.testing import ScriptedChatModel, http_error

POLICY = Policy(backoff_base=0.001, backoff_cap=0.002, max_retries=1, cooldown_after=100)


def scripted_run(*sinks):
    """Truth: 4 calls. (1) primary ok; (2) primary 429 then retry ok; (3) primary 500 ×2 → fallback ok;
    (4) primary 401 → fallback 500 ×2 → AllModelsFailedError."""
    register_price("fake/primary", input=1_000_000, output=2_000_000)  # $1 / $2 per token
    primary = ScriptedChatModel(
        model_name="primary",
        script=["a b", http_error(429), "c d e", http_error(500), http_error(500), http_error(401)],
    )
    fallback = ScriptedChatModel(model_name="fallback", script=["f g", http_error(500), http_error(500)])
    llm = AutoPicker(primary, [fallback], metrics=list(sinks), policy=POLICY)
    llm.invoke("one")
    llm.invoke("two")
    llm.invoke("three")
    with pytest.raises(AllModelsFailedError):
        llm.invoke("four")


# scripted usage: input = words + 3 = 4 for every prompt; output = words of the answer
TRUTH = {
    "requests": 9,  # 1 + 2 + 3 + 3
    "successful": 3,
    "errors_by_class": {"rate_limit": 1, "server": 4, "auth": 1},
    "errors_by_model": {"fake/primary": 4, "fake/fallback": 2},
    "fallbacks": {"fake/primary -> fake/fallback": 1},
    "primary_cost": Decimal(4 * 1 + 2 * 2) + Decimal(4 * 1 + 3 * 2),  # calls 1 and 2
    "output_tokens": 2 + 3 + 2,
}


def test_local_metrics_match_the_script():
    local = LocalMetrics()
    scripted_run(local)
    m = local.get_metrics()
    assert m["requests"]["total"] == TRUTH["requests"] and m["requests"]["successful"] == TRUTH["successful"]
    assert m["requests"]["primary"] == 4 and m["requests"]["retry"] == 3 and m["requests"]["fallback"] == 2
    assert m["errors"]["by_class"] == TRUTH["errors_by_class"]
    assert m["errors"]["by_model"] == TRUTH["errors_by_model"]
    assert m["fallbacks"]["by_route"] == TRUTH["fallbacks"] and m["fallbacks"]["by_reason"] == {"server": 1}
    assert m["costs"]["by_model"] == {"fake/primary": TRUTH["primary_cost"]}
    assert m["costs"]["unpriced_calls"] == 1  # the fallback's answer has no price
    assert m["tokens"]["output"] == TRUTH["output_tokens"]
    assert m["latency"]["count"] == 3 and m["latency"]["p50"] is not None
    assert m["total_requests"] == 9 and m["total_cost"] == TRUTH["primary_cost"]  # the seed's keys


def test_dataframe_agrees_with_get_metrics():
    local = LocalMetrics()
    scripted_run(local)
    df = local.to_dataframe()
    m = local.get_metrics()
    assert len(df) == TRUTH["requests"]
    assert str(df["started_at"].dtype) == "datetime64[ns, UTC]"
    for col in ("model", "provider", "role", "outcome", "error_class", "call_id"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    assert df["cost_usd"].dtype == "float64" and df["input_tokens"].dtype == "int64"
    assert df["error_class"].value_counts().to_dict() == {**TRUTH["errors_by_class"]}
    assert df["error_class"].isna().sum() == TRUTH["successful"]
    assert df.loc[df.priced, "cost_usd"].sum() == pytest.approx(float(m["costs"]["total"]))
    assert df["call_id"].nunique() == 4
    assert df["output_tokens"].sum() == m["tokens"]["output"]
    assert (df.loc[df.outcome == "ok", "latency_s"] > 0).all()
    summary = local.summary()
    assert summary.loc["fake/primary", "calls"] == 6 and summary.loc["fake/primary", "errors"] == 4
    assert summary.loc["fake/primary", "cost_share"] == 1.0
    assert summary.loc["fake/fallback", "unpriced_calls"] == 1


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_prometheus_scrape_agrees():
    local, prom = LocalMetrics(), PrometheusMetrics()
    scripted_run(local, prom)
    port = prom.serve(0)
    try:
        s = _scrape(port)
    finally:
        prom.stop()
    m = local.get_metrics()

    def total(name, **labels):
        return sum(v for (n, ls), v in s.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))

    assert total("coffee_nb_requests_total") == m["requests"]["total"]
    assert total("coffee_nb_requests_total", outcome="ok") == m["requests"]["successful"]
    for cls, n in TRUTH["errors_by_class"].items():
        assert total("coffee_nb_errors_total", error_class=cls) == n
    assert total("coffee_nb_fallbacks_total", from_model="fake/primary", to_model="fake/fallback", reason="server") == 1
    assert total("coffee_nb_cost_usd_total", model="fake/primary") == pytest.approx(float(TRUTH["primary_cost"]))
    assert total("coffee_nb_tokens_total", type="output") == TRUTH["output_tokens"]
    assert total("coffee_nb_request_duration_seconds_count") == m["latency"]["count"]
    assert total("coffee_nb_unpriced_requests_total") == 1
    assert all("Error code" not in str(k) for k in s)  # labels hold classes, never messages


def test_prometheus_twice_in_one_process_and_shared_registry():
    a, b = PrometheusMetrics(), PrometheusMetrics()  # a re-run notebook cell
    assert a.registry is not b.registry
    shared = CollectorRegistry()
    PrometheusMetrics(registry=shared)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry=shared)  # same registry twice is the caller's explicit choice


def test_prometheus_model_labels_are_capped():
    prom = PrometheusMetrics(max_models=2)
    for i in range(5):
        AutoPicker(ScriptedChatModel(model_name=f"m{i}"), metrics=prom).invoke("x")
    models = {dict(ls)["model"] for (n, ls), _ in _families(prom).items() if n == "coffee_nb_requests_total"}
    assert models == {"fake/m0", "fake/m1", "other"}


def _families(prom):
    out = {}
    for family in text_string_to_metric_families(prom.exposition()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_budget_remaining_gauge():
    budget = Budget(daily=2, total=10, ledger="memory")
    budget.record("0.5")
    prom = PrometheusMetrics(budget=budget)
    s = _families(prom)
    assert s[("coffee_nb_budget_remaining_usd", (("period", "daily"),))] == 1.5
    assert s[("coffee_nb_budget_remaining_usd", (("period", "total"),))] == 9.5


def test_push_to_a_local_gateway():
    import http.server

    got = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            got.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.handle_request, daemon=True).start()
    prom = PrometheusMetrics()
    prom.emit(_ok_record())
    prom.push(f"127.0.0.1:{server.server_port}", job="nb")
    server.server_close()
    assert got and got[0][0] == "/metrics/job/nb" and b"coffee_nb_requests_total" in got[0][1]


def _ok_record():
    from datetime import UTC, datetime

    from coffee_nb import CallRecord, Outcome, Role

    return CallRecord(
        call_id="c",
        attempt=0,
        role=Role.PRIMARY,
        provider="p",
        model="p/m",
        outcome=Outcome.OK,
        started_at=datetime.now(UTC),
        latency_s=0.1,
    )


def test_capacity_keeps_counters_exact():
    local = LocalMetrics(capacity=10)
    llm = AutoPicker(ScriptedChatModel(model_name="m", script=["a b c"]), metrics=local)
    for _ in range(25):
        llm.invoke("x")
    m = local.get_metrics()
    assert m["requests"]["total"] == 25 and m["tokens"]["output"] == 75  # exact
    df = local.to_dataframe()
    assert len(df) == 10 and df["started_at"].is_monotonic_increasing  # the last 10, oldest first
    assert m["latency"]["count"] == 10  # percentiles come from the window (documented)


def test_reset_and_threads():
    local = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="m"), metrics=local)
    threads = [threading.Thread(target=lambda: [llm.invoke("x") for _ in range(25)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert local.get_metrics()["requests"]["total"] == 200 == len(local.to_dataframe())
    local.reset()
    assert local.get_metrics()["requests"]["total"] == 0 and local.to_dataframe().empty


def test_noop_and_factory():
    assert isinstance(create_metrics_strategy("local"), LocalMetrics)
    assert isinstance(create_metrics_strategy("prometheus"), PrometheusMetrics)
    noop = create_metrics_strategy("noop")
    assert isinstance(noop, NoOpMetrics)
    AutoPicker(ScriptedChatModel(), metrics=noop).invoke("x")
    assert noop.get_metrics() == {}
    with pytest.raises(ValueError, match=r"unknown metrics strategy 'statsd'.*'local', 'prometheus', 'otel', 'noop'"):
        create_metrics_strategy("statsd")
    with pytest.raises(ValueError, match="capacity"):
        LocalMetrics(capacity=0)
    with pytest.raises(ValueError, match="max_models"):
        PrometheusMetrics(max_models=0)


def test_seed_usage():
    metrics = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="m"), metrics=metrics)
    llm.invoke("x")
    printed = str(metrics.get_metrics())
    assert "total_requests" in printed and "'requests'" in printed


_attempt_kind = st.tuples(
    st.sampled_from(["p/a", "p/b", "p/c"]),
    st.sampled_from(list(Role)),
    st.sampled_from(list(Outcome)),
    st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=1, places=9)),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 10)),
)


def _record(i, kind):
    model, role, outcome, tokens, cost, hit, ttft = kind
    skipped = outcome is Outcome.SKIPPED
    return CallRecord(
        call_id=f"call-{i // 2}",
        attempt=i % 2,
        role=role,
        provider="p",
        model=model,
        outcome=outcome,
        started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        latency_s=i / 1000,
        error_class="server" if outcome is Outcome.ERROR else ("budget" if skipped else None),
        ttft_s=ttft,
        input_tokens=0 if skipped else tokens[0],
        output_tokens=0 if skipped else tokens[1],
        cost=cost,
        cache_hit=hit,
        price_source="custom" if cost is not None else "unpriced",
        fallback_from="p/a" if role is Role.FALLBACK else None,
        fallback_reason="server" if role is Role.FALLBACK else None,
    )


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(_attempt_kind, min_size=1, max_size=12),
    n=st.integers(0, 1200),
    capacity=st.one_of(st.none(), st.integers(1, 600)),
    read_at=st.lists(st.integers(0, 1200), max_size=3),
)
def test_batched_intake_agrees_with_a_record_by_record_count(kinds, n, capacity, read_at):
    """Records are taken in by the batch (and on every read); counters and the window must equal a plain count."""
    records = [_record(i, kinds[i % len(kinds)]) for i in range(n)]
    local = LocalMetrics(capacity=capacity)
    for i, r in enumerate(records):
        local.emit(r)
        if i in read_at:  # a read in the middle takes in whatever is queued
            assert len(local) == min(i + 1, capacity or i + 1)
    sent = [r for r in records if not r.cache_hit]
    m = local.get_metrics()
    assert m["requests"]["total"] == sum(1 for r in sent if r.outcome is not Outcome.SKIPPED)
    assert m["requests"]["cache_hits"] == len(records) - len(sent)
    assert m["errors"]["total"] == sum(1 for r in sent if r.outcome is Outcome.ERROR)
    for model in ("p/a", "p/b", "p/c"):
        costs = [r.cost for r in sent if r.model == model and r.cost is not None]
        assert m["costs"]["by_model"].get(model) == (sum(costs, Decimal(0)) if costs else None)
    assert m["costs"]["unpriced_calls"] == sum(1 for r in sent if r.cost is None and r.outcome is Outcome.OK)
    assert m["tokens"]["output"] == sum(r.output_tokens for r in sent)
    assert m["fallbacks"]["total"] == sum(1 for r in sent if r.role is Role.FALLBACK and r.outcome is Outcome.OK)
    window = records[-capacity:] if capacity else records
    df = local.to_dataframe()
    assert list(df["latency_s"]) == [r.latency_s for r in window]  # the newest rows, oldest first
    assert list(df["call_id"].astype(str)) == [r.call_id for r in window]
    assert list(df["model"].astype(str)) == [r.model for r in window]
    assert list(df["cache_hit"]) == [r.cache_hit for r in window]
    assert df["ttft_s"].isna().tolist() == [r.ttft_s is None for r in window]


def test_a_record_that_cannot_be_stored_is_dropped_alone(caplog):
    local = LocalMetrics()
    good = [_record(i, ("p/a", Role.PRIMARY, Outcome.OK, (10, 5), Decimal("0.001"), False, None)) for i in range(300)]
    bad = good[0]._replace(call_id="bad", input_tokens="many")  # hand-made, with text for a count
    for r in good[:100]:
        local.emit(r)
    local.emit(bad)
    for r in good[100:]:
        local.emit(r)
    m = local.get_metrics()
    assert m["requests"]["total"] == 300 and m["tokens"]["input"] == 3000  # every good record counted once
    assert len(local.to_dataframe()) == 300 and "bad" not in set(local.to_dataframe()["call_id"].astype(str))
    assert "could not store" in caplog.text
    with pytest.raises(TypeError, match=r"takes a coffee_nb\.CallRecord"):
        local.emit({"model": "p/a"})


def test_snapshot_is_typed_and_matches_the_script():
    local = LocalMetrics()
    scripted_run(local)
    snap = local.snapshot()
    assert isinstance(snap, MetricsSnapshot)
    assert (snap.calls, snap.attempts, snap.ok, snap.errors, snap.cache_hits, snap.skipped) == (4, 9, 3, 6, 0, 0)
    assert (snap.primary_attempts, snap.retry_attempts, snap.fallback_attempts) == (4, 3, 2)
    assert snap.cost == TRUTH["primary_cost"] and isinstance(snap.cost, Decimal) and snap.unpriced == 1
    assert snap.fallbacks == {FallbackRoute("fake/primary", "fake/fallback", "server"): 1}
    (route,) = snap.fallbacks
    assert (route.from_model, route.to_model, route.reason) == ("fake/primary", "fake/fallback", "server")
    assert snap.routes() == {("fake/primary", "fake/fallback"): 1} and snap.fallback_count == 1
    assert snap.error_classes == TRUTH["errors_by_class"]
    primary, fallback = snap.model("fake/primary"), snap.model("fake/fallback")
    assert isinstance(primary, ModelStats) and snap.model("fake/nothing") is None
    assert (primary.attempts, primary.ok, primary.errors, primary.fallbacks) == (6, 2, 4, 0)
    assert primary.errors_by_class == {"rate_limit": 1, "server": 2, "auth": 1}
    assert primary.cost == TRUTH["primary_cost"] and primary.unpriced == 0
    assert (primary.input_tokens, primary.output_tokens) == (4 * 2, 2 + 3)
    assert (fallback.attempts, fallback.ok, fallback.errors, fallback.fallbacks) == (3, 1, 2, 1)
    assert fallback.cost is None and fallback.unpriced == 1
    assert (
        primary.latency.count == 2
        and primary.latency.p50 is not None
        and primary.ttft == LatencyStats(0, None, None, None, None)
    )
    assert snap.latency.count == 3 and snap.latency.p95 >= snap.latency.p50
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.calls = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        primary.ok = 0  # type: ignore[misc]


def test_as_dict_is_get_metrics_with_the_old_shape():
    local = LocalMetrics()
    scripted_run(local)
    m = local.get_metrics()
    assert local.snapshot().as_dict() == m
    shape = {
        "requests": {"total", "successful", "by_model", "primary", "retry", "fallback", "skipped", "cache_hits"},
        "errors": {"total", "by_model", "by_class"},
        "costs": {"total", "by_model", "unpriced_calls", "unpriced_by_model"},
        "latency": {"count", "mean", "p50", "p95", "p99", "by_model"},
        "tokens": {"input", "output", "cached", "reasoning", "by_model"},
        "fallbacks": {"total", "by_route", "by_reason"},
        "totals": {"requests", "successful", "errors", "fallbacks", "cost", "tokens"},
    }
    flat = {
        "total_requests",
        "successful_requests",
        "failed_requests",
        "total_cost",
        "average_latency",
        "fallback_count",
    }
    assert set(m) == set(shape) | flat
    for key, inner in shape.items():
        assert set(m[key]) == inner, key
    assert set(m["latency"]["by_model"]["fake/primary"]) == {"count", "mean", "p50", "p95", "p99"}
    assert m["tokens"]["by_model"]["fake/primary"] == {"input": 8, "output": 5}


def test_ttft_stats_come_from_streamed_answers():
    local = LocalMetrics()
    llm = AutoPicker(ScriptedChatModel(model_name="m", script=["a b", "c d", "e f"]), metrics=local)
    llm.invoke("x")
    assert "".join(chunk.content for chunk in llm.stream("y")) == "c d"
    assert "".join(chunk.content for chunk in llm.stream("z")) == "e f"
    stats = local.snapshot().model("fake/m")
    assert stats.latency.count == 3 and stats.ttft.count == 2 and stats.ttft.p50 is not None
    assert local.samples().ttft["fake/m"].tolist() == local.latencies("fake/m", ttft=True)


def _plain_count(records: list[CallRecord], window: list[CallRecord]) -> dict:
    """What get_metrics() says, counted record by record (latency aside: see the caller)."""
    sent = [r for r in records if not r.cache_hit]
    attempts = [r for r in sent if r.outcome is not Outcome.SKIPPED]
    failed = [r for r in sent if r.outcome is Outcome.ERROR and r.error_class]
    fallbacks = [r for r in sent if r.role is Role.FALLBACK and r.outcome is Outcome.OK and r.fallback_from]
    models = {r.model for r in sent}

    def count(rs, key):
        out = {}
        for r in rs:
            out[key(r)] = out.get(key(r), 0) + 1
        return out

    costs = {
        m: sum((r.cost for r in sent if r.model == m and r.cost is not None), Decimal(0))
        for m in models
        if any(r.model == m and r.cost is not None for r in sent)
    }
    unpriced = [r for r in sent if r.outcome is Outcome.OK and r.cost is None]
    kinds = ("input", "output", "cached", "reasoning")
    tokens = {k: sum(getattr(r, f"{k}_tokens") for r in sent) for k in kinds}
    by_model_tokens = {}
    for m in models:
        t = {k: sum(getattr(r, f"{k}_tokens") for r in sent if r.model == m) for k in kinds}
        if t := {k: n for k, n in t.items() if n}:
            by_model_tokens[m] = t
    total_cost = sum(costs.values(), Decimal(0))
    return {
        "requests": {
            "total": len(attempts),
            "successful": sum(r.outcome is Outcome.OK for r in sent),
            "by_model": count(attempts, lambda r: r.model),
            "primary": sum(r.role is Role.PRIMARY for r in attempts),
            "retry": sum(r.role is Role.RETRY for r in attempts),
            "fallback": sum(r.role is Role.FALLBACK for r in attempts),
            "skipped": sum(r.outcome is Outcome.SKIPPED for r in sent),
            "cache_hits": len(records) - len(sent),
        },
        "errors": {
            "total": len(failed),
            "by_model": count(failed, lambda r: r.model),
            "by_class": count(failed, lambda r: r.error_class),
        },
        "costs": {
            "total": total_cost,
            "by_model": costs,
            "unpriced_calls": len(unpriced),
            "unpriced_by_model": count(unpriced, lambda r: r.model),
        },
        "tokens": {**tokens, "by_model": by_model_tokens},
        "fallbacks": {
            "total": len(fallbacks),
            "by_route": count(fallbacks, lambda r: f"{r.fallback_from} -> {r.model}"),
            "by_reason": count(fallbacks, lambda r: r.fallback_reason or "unknown"),
        },
        "calls": len({r.call_id for r in records}),
        "routes": count(fallbacks, lambda r: FallbackRoute(r.fallback_from, r.model, r.fallback_reason or "unknown")),
        "answered": {
            m: [r.latency_s for r in window if r.model == m and r.outcome is Outcome.OK and not r.cache_hit]
            for m in {r.model for r in window}
        },
    }


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(_attempt_kind, min_size=1, max_size=12),
    n=st.integers(0, 700),
    capacity=st.one_of(st.none(), st.integers(1, 300)),
)
def test_snapshot_agrees_with_a_plain_count(kinds, n, capacity):
    records = [_record(i, kinds[i % len(kinds)]) for i in range(n)]
    local = LocalMetrics(capacity=capacity)
    for r in records:
        local.emit(r)
    want = _plain_count(records, records[-capacity:] if capacity else records)
    snap = local.snapshot()
    m = snap.as_dict()
    assert m == local.get_metrics()
    for section in ("requests", "errors", "costs", "tokens", "fallbacks"):
        assert m[section] == want[section], section
    assert snap.calls == want["calls"]  # call ids here are adjacent, so exact even with a capacity
    assert dict(snap.fallbacks) == want["routes"]
    assert snap.error_classes == want["errors"]["by_class"]
    assert (snap.attempts, snap.ok, snap.errors, snap.cache_hits, snap.cost, snap.unpriced) == (
        want["requests"]["total"],
        want["requests"]["successful"],
        want["errors"]["total"],
        want["requests"]["cache_hits"],
        want["costs"]["total"],
        want["costs"]["unpriced_calls"],
    )
    for model in snap.models:
        answered = want["answered"].get(model.model, [])
        assert model.latency.count == len(answered)
        if answered:
            p50, p95, p99 = np.percentile(answered, [50, 95, 99])
            assert (model.latency.p50, model.latency.p95, model.latency.p99) == (p50, p95, p99)
            assert model.latency.mean == pytest.approx(np.mean(answered))
        assert model.attempts == want["requests"]["by_model"].get(model.model, 0)
    everything = [x for xs in want["answered"].values() for x in xs]
    assert snap.latency.count == len(everything)
    assert snap.latency.p95 == (np.percentile(everything, 95) if everything else None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False) | st.sampled_from([0.0, 0.1, 0.25, 1.0]), min_size=1, max_size=400))
def test_percentiles_are_numpys_to_the_last_bit(values):
    array = np.array(values, dtype=np.float64)
    assert _percentiles(array) == np.percentile(array, [50, 95, 99]).tolist()
