"""compare(): models side by side through the sandbox; the frame's numbers are the records' numbers, the
judge sees each pair both ways round (or once in random order), its consistency and own cost are shown,
and a budget that can't cover the worst case stops it before any call."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import coffee_nb
from coffee_nb import (
    BudgetExceededError,
    ConfigError,
    ModelSpec,
    acompare,
    capture_records,
    compare,
    register_price,
    sandbox,
)
from coffee_nb._shared._format import money
from coffee_nb.sandbox import SandboxModel, add_model
from coffee_nb.sandbox._judge import FIRST_BONUS, rating
from coffee_nb.testing import ScriptedChatModel

pytestmark = pytest.mark.usefixtures("quiet_sandbox")

PRICES = {  # USD per 1M tokens (input, output), and a median latency in ms
    "cmp_quick": (Decimal("0.10"), Decimal("0.40"), 2),
    "cmp_mid": (Decimal("1.00"), Decimal("3.00"), 8),
    "cmp_slow": (Decimal("5.00"), Decimal("15.00"), 20),
}
MODELS = [f"sandbox/{name}" for name in PRICES]
VERDICT_A = '{"winner": "A", "reason": "A is better"}'


@pytest.fixture
def three_models(no_keys):
    for name, (inp, out, ms) in PRICES.items():
        add_model(SandboxModel(name=name, description="compare test", input_price=inp, output_price=out, latency_ms=ms))
    sandbox.set_latency_scale(1)  # the declared latencies (a few ms): streamed, so each call has a first token
    coffee_nb.configure(ledger="memory", daily=5)
    sandbox.clear_log()
    return MODELS


def test_frame_and_summary_match_the_records(three_models):
    with capture_records() as records:
        cmp = compare("Explain p95 latency in one sentence.", three_models, runs=3)
    frame = cmp.frame
    assert len(frame) == 9 and list(frame.model.unique()) == three_models and set(frame.run) == {1, 2, 3}
    assert len(sandbox.attempts()) == 9 and all(a["stream"] for a in sandbox.attempts())
    by_call = {r.call_id: r for r in records}
    assert len(by_call) == 9  # one attempt per call: no retries, no fallback
    for row in frame.itertuples():
        record = by_call[row.call_id]
        assert record.model == row.model and record.role.value == "primary" and record.streamed
        assert (row.input_tokens, row.output_tokens) == (record.input_tokens, record.output_tokens)
        assert row.cost == record.cost and isinstance(row.cost, Decimal)
        inp, out, _ = PRICES[row.model.removeprefix("sandbox/")]
        assert row.cost == (inp * row.input_tokens + out * row.output_tokens) / 1_000_000  # the declared prices
        assert row.latency_s == record.latency_s and row.ttft_s == record.ttft_s is not None
        assert row.answer and row.error_class is None and not row.cache_hit and row.attempts == 1
    for model in three_models:
        mine = [r for r in records if r.model == model]
        s = cmp.summary.loc[model]
        assert s.calls == 3 and s.errors == 0
        assert s.cost == sum(r.cost for r in mine) and s.output_tokens == sum(r.output_tokens for r in mine)
        latencies = pd.Series([r.latency_s for r in mine])
        assert s.latency_p50 == pytest.approx(latencies.quantile(0.5))
        assert s.latency_p95 == pytest.approx(latencies.quantile(0.95))
        assert s.ttft_p95 == pytest.approx(pd.Series([r.ttft_s for r in mine]).quantile(0.95))
    assert cmp.cost == sum(r.cost for r in records)
    assert list(cmp.answers.columns) == three_models and len(cmp.answers) == 1
    assert (
        cmp.answers.loc[0, "sandbox/cmp_quick"] == frame[(frame.run == 1) & (frame.model == MODELS[0])].answer.iloc[0]
    )
    assert "sandbox/cmp_slow" in repr(cmp) and "latency p50 / p95" in repr(cmp)
    assert cmp.projection.calls == 9 and cmp.projection.cached == 0 and cmp.projection.worst > cmp.cost


def test_each_model_alone_and_failures_are_rows(three_models):
    sandbox.inject("sandbox/cmp_mid", ["auth"])  # not retried, and no fallback to another column
    with capture_records() as records:
        cmp = compare("Hello", three_models)
    failed = cmp.frame[cmp.frame.model == "sandbox/cmp_mid"].iloc[0]
    assert failed.error_class == "auth" and pd.isna(failed.answer) and failed.cost == 0
    assert {r.model for r in records if r.call_id == failed.call_id} == {"sandbox/cmp_mid"}
    assert (
        cmp.summary.loc["sandbox/cmp_mid", "errors"] == 1
        and "auth ×1" in cmp.summary.loc["sandbox/cmp_mid"].error_classes
    )
    assert cmp.summary.loc["sandbox/cmp_quick", "errors"] == 0 and pd.isna(cmp.answers.loc[0, "sandbox/cmp_mid"])


def test_a_rerun_is_answered_by_the_cache_at_zero(three_models):
    first = compare("Same question", three_models, runs=2)
    sandbox.clear_log()
    with capture_records() as records:
        again = compare("Same question", three_models, runs=2)
    assert sandbox.attempts() == []  # every run of every model replayed
    assert again.frame.cache_hit.all() and (again.frame.cost == 0).all() and again.cost == 0
    assert all(r.cache_hit for r in records) and len(records) == 6
    assert list(again.frame.answer) == list(first.frame.answer)
    assert list(again.frame.latency_s) == list(first.frame.latency_s)  # as measured when fetched
    assert again.projection.cached == 6 and again.projection.priced_worst == 0
    fresh = compare("Same question", three_models, runs=2, cache=False)
    assert not fresh.frame.cache_hit.any() and len(sandbox.attempts()) == 6


def test_a_cassette_records_every_call_and_replays_them_all(three_models, tmp_path):
    tape = tmp_path / "compare.llm-cassette.jsonl"
    with coffee_nb.cassette(tape, mode="record"):  # set in this thread, honoured by compare's worker
        recorded = compare("Taped question", three_models[:2])
    assert len(tape.read_text().splitlines()) == 2 and len(sandbox.attempts()) == 2
    sandbox.clear_log()
    with coffee_nb.cassette(tape, mode="strict"):
        replayed = compare("Taped question", three_models[:2])
    assert sandbox.attempts() == []
    assert list(replayed.frame.answer) == list(recorded.frame.answer)
    assert replayed.frame.cache_hit.all() and replayed.cost == 0


def test_judge_sees_each_pair_in_random_order_and_its_cost_is_shown(three_models):
    df = pd.DataFrame({"topic": ["latency", "budgets", "retries", "fallbacks", "breakers", "caches"]})
    sandbox.script_replies("sandbox/smart", [VERDICT_A] * 6)  # a judge that always prefers what it sees first
    with capture_records() as records:
        cmp = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart", judge_order="random")
    verdicts = cmp.judge.frame
    assert len(verdicts) == 6 and list(verdicts.row) == list(df.index)
    assert set(verdicts.shown_first) == set(three_models[:2])  # order randomised (seeded) across rows
    assert (verdicts.winner == verdicts.shown_first).all()  # "A" read as the model shown first
    standings = cmp.summary[["wins", "ties", "losses"]]
    assert standings.wins.sum() == 6 and standings.ties.sum() == 0 and standings.wins.min() > 0
    judge_records = [r for r in records if r.model == "sandbox/smart"]
    assert len(judge_records) == 6 and cmp.judge.cost == sum(r.cost for r in judge_records) > 0
    assert set(verdicts.call_id) == {r.call_id for r in judge_records}
    assert cmp.cost == sum(r.cost for r in records)
    assert cmp.projection.judge_calls == 6 and "sandbox/smart" in repr(cmp)
    assert verdicts.consistent.isna().all() and cmp.judge.consistency is None  # one order can't tell
    again = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart", judge_order="random")
    assert list(again.judge.frame.shown_first) == list(verdicts.shown_first)  # same seed, same order


def test_by_default_the_judge_sees_each_pair_both_ways_round_and_a_disagreement_is_a_tie(three_models):
    df = pd.DataFrame({"topic": ["latency", "budgets", "retries"]})
    sandbox.script_replies("sandbox/smart", [VERDICT_A] * 6)  # pure position bias: whatever is shown first wins
    cmp = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart")
    calls, verdicts = cmp.judge.calls, cmp.judge.frame
    assert len(calls) == 6 and len(verdicts) == 3 and cmp.projection.judge_calls == 6
    for i, v in enumerate(verdicts.itertuples()):
        one, two = calls.iloc[2 * i], calls.iloc[2 * i + 1]
        assert (one.shown_first, two.shown_first) == (v.model_a, v.model_b)  # the pair, then the pair reversed
        assert (one.winner, two.winner) == (v.model_a, v.model_b)  # "A" both times: the orders disagree
        assert v.winner == "tie" and v.consistent is False and "the orders disagree" in v.reason
    assert (cmp.summary.ties == 3).all() and (cmp.summary.wins == 0).all() and (cmp.summary.consistency == 0).all()
    assert (cmp.judge.agreed, cmp.judge.read_both, cmp.judge.consistency) == (0, 3, 0.0)
    assert "tie (orders disagree)" in cmp._repr_markdown_()
    assert "the orders agreed on 0 of 3 (0%)" in repr(cmp)


def test_a_sandbox_judge_gives_deterministic_verdicts_offline_by_its_rule(three_models):
    df = pd.DataFrame({"topic": ["latency", "budgets", "retries", "fallbacks", "breakers", "caches"]})
    cmp = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart")
    verdicts = cmp.judge.frame
    assert verdicts.error.isna().all() and verdicts.winner.notna().all()  # every verdict read
    for v in verdicts.itertuples():
        ra, rb = (rating(cmp.answers.loc[v.row, m]) for m in (v.model_a, v.model_b))
        assert v.consistent is (abs(ra - rb) > FIRST_BONUS)  # far apart: the same winner both ways round
        assert v.winner == ((v.model_a if ra > rb else v.model_b) if v.consistent else "tie")
    assert 0 < cmp.judge.agreed < cmp.judge.read_both == 6  # some verdicts hold, some are ties
    assert cmp.judge.consistency == cmp.judge.agreed / 6
    assert cmp.summary.ties.sum() == 2 * (6 - cmp.judge.agreed)  # each tie counts for both models
    again = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart", cache=False)
    assert list(again.judge.frame.winner) == list(verdicts.winner)  # the same requests, the same verdicts


def test_scores_judged_both_ways_round_are_averaged(three_models):
    df = pd.DataFrame({"topic": ["latency", "budgets", "retries", "fallbacks", "breakers", "caches"]})
    cmp = compare(df, three_models[:2], template="Explain {topic}.", judge="sandbox/smart", judge_mode="score")
    assert 0 < cmp.judge.agreed < cmp.judge.read_both == 6, cmp.judge.frame
    calls = cmp.judge.calls
    for i, v in enumerate(cmp.judge.frame.itertuples()):
        one, two = calls.iloc[2 * i], calls.iloc[2 * i + 1]
        base = {m: 1 + rating(cmp.answers.loc[v.row, m]) * 9 // 100 for m in (v.model_a, v.model_b)}
        assert (one.score_a, one.score_b) == (base[v.model_a] + 1, base[v.model_b])  # shown first: +1
        assert (two.score_a, two.score_b) == (base[v.model_a], base[v.model_b] + 1)
        assert (v.score_a, v.score_b) == ((one.score_a + two.score_a) / 2, (one.score_b + two.score_b) / 2)
        prefers = [int(c.score_a > c.score_b) - int(c.score_a < c.score_b) for c in (one, two)]
        assert v.consistent is (prefers[0] == prefers[1])
    mine = cmp.judge.frame[cmp.judge.frame.model_a == three_models[0]]
    assert cmp.summary.loc[three_models[0], "score"] == pytest.approx(mine.score_a.mean())
    assert "scores (mean of both orders)" in cmp._repr_markdown_()


def test_a_pair_whose_other_order_failed_has_no_verdict(three_models):
    sandbox.inject("sandbox/smart", ["auth"])  # one of the pair's two judge calls is refused
    cmp = compare("Hi", three_models[:2], judge="sandbox/smart")
    verdict = cmp.judge.frame.iloc[0]
    assert pd.isna(verdict.winner) and pd.isna(verdict.consistent) and "shown first" in verdict.error
    assert cmp.summary.wins.sum() == cmp.summary.ties.sum() == 0  # one order alone may be the bias: not counted
    assert cmp.judge.consistency is None and cmp.judge.usage["errors"] == 1 and cmp.judge.usage["calls"] == 2


def test_the_judges_own_cost_is_shown_apart_from_the_answers(three_models):
    with capture_records() as records:
        cmp = compare("Explain p95.", three_models, judge="sandbox/smart")
    judged = [r for r in records if r.model == "sandbox/smart"]
    assert len(judged) == 6  # 3 pairs, both ways round
    assert cmp.judge.cost == sum(r.cost for r in judged) > 0
    assert cmp.summary.cost.sum() == sum(r.cost for r in records if r.model != "sandbox/smart")
    assert cmp.cost == cmp.summary.cost.sum() + cmp.judge.cost
    usage = cmp.judge.usage
    assert usage["calls"] == 6 and usage["cost"] == cmp.judge.cost and usage["errors"] == 0
    assert usage["input_tokens"] == sum(r.input_tokens for r in judged) and usage["latency_p50"] > 0
    text = repr(cmp)
    assert f"(judge {money(cmp.judge.cost)})" in text and "sandbox/smart (judge)  6" in text
    shown = cmp._repr_markdown_()
    assert "sandbox/smart (judge)" in shown and f"(judge {money(cmp.judge.cost)})".replace("$", "&#36;") in shown
    assert f"6 calls · cost {money(cmp.judge.cost)}".replace("$", "&#36;") in shown
    once = compare("Explain p95.", three_models, judge="sandbox/smart", judge_order="random")
    assert once.projection.judge_calls == 3 and cmp.projection.judge_calls == 6
    assert cmp.projection.judge_worst == 2 * once.projection.judge_worst  # both orders: twice the judge's worst


def test_judge_scores_are_read_back_into_the_pairs_order(three_models):
    judge = ScriptedChatModel(script=['{"score_a": 9, "score_b": 4, "reason": "A is clearer"}'], model_name="judge")
    cmp = compare(
        "Explain p95.",
        ["sandbox/cmp_quick", "sandbox/echo"],
        judge=ModelSpec(model=judge, name="fake/judge"),
        judge_mode="score",
        judge_order="random",
        seed=1,
    )
    verdict = cmp.judge.frame.iloc[0]
    sent = judge.calls[0]["messages"][-1].content
    first_answer = cmp.answers.loc[0, verdict.shown_first]
    assert sent.index(first_answer) < sent.index("Answer B")  # the model shown first was answer A
    score_of = {verdict.shown_first: 9.0}
    other = next(m for m in cmp.models if m != verdict.shown_first)
    score_of[other] = 4.0
    assert (verdict.score_a, verdict.score_b) == (score_of[verdict.model_a], score_of[verdict.model_b])
    assert cmp.summary.loc[verdict.shown_first, "score"] == 9.0 and cmp.judge.cost is None  # the judge is unpriced
    register_price("fake/judge", input=1, output=1)
    priced = compare(
        "Explain p95.", ["sandbox/cmp_quick", "sandbox/echo"], judge=ModelSpec(model=judge, name="fake/judge")
    )
    assert priced.judge.cost is not None and priced.judge.cost > 0


def test_an_unreadable_verdict_is_said_not_guessed(three_models):
    sandbox.script_replies("sandbox/smart", ["I cannot decide."])
    cmp = compare("Hi", three_models[:2], judge="sandbox/smart")
    verdict = cmp.judge.frame.iloc[0]
    assert pd.isna(verdict.winner) and "could not be read" in verdict.error
    assert cmp.summary.wins.sum() == 0


def test_the_budget_projection_refuses_before_any_call(three_models):
    coffee_nb.configure(daily=Decimal("0.05"))
    with pytest.raises(BudgetExceededError, match=r"refused before any call.*daily budget has \$0\.05") as info:
        compare("Explain p95.", ["sandbox/cmp_slow", "sandbox/cmp_quick"], runs=3)  # 3 × up to 4096 tokens at $15/M
    assert "6 calls may cost up to $0.18" in str(info.value)
    assert sandbox.attempts() == []  # nothing was sent
    with pytest.raises(BudgetExceededError, match="the total budget"):
        compare("Explain p95.", ["sandbox/cmp_quick"], budget="0.0001")  # this comparison's own cap
    with pytest.raises(BudgetExceededError, match="judge calls"):  # the judge's worst case counts too
        compare("Explain p95.", three_models[:2], max_tokens=100, judge="sandbox/smart", budget="0.0005")
    assert sandbox.attempts() == []
    cmp = compare("Explain p95.", ["sandbox/cmp_slow", "sandbox/cmp_quick"], runs=3, max_tokens=200)
    assert len(sandbox.attempts()) == 6 and cmp.projection.worst <= Decimal("0.05")


def test_a_prompt_bound_that_does_not_fit_is_counted_before_refusing(three_models):
    prompt = "word " * 2000  # 10,000 bytes: the byte bound says up to $0.05 of input; counted, about $0.01
    coffee_nb.configure(daily=Decimal("0.03"))
    cmp = compare(prompt, ["sandbox/cmp_slow"], max_tokens=10)
    assert cmp.frame.error_class.isna().all() and cmp.projection.per_model["sandbox/cmp_slow"] < Decimal("0.03")


def test_checked_before_anything_is_sent(three_models):
    df = pd.DataFrame({"topic": ["a"]})
    for call, message in [
        (lambda: compare("x", ["sandbox/cmp_quick", "sandbox/cmp_quick"]), "each model once"),
        (lambda: compare("x", ["sandbox/cmp_quick"], judge="sandbox/smart"), "at least two models"),
        (lambda: compare("x", []), "at least one model"),
        (lambda: compare("x", MODELS, template="{topic}"), "template= goes with a DataFrame"),
        (lambda: compare(df, MODELS), "needs template="),
        (lambda: compare(df, MODELS, template="{nope}"), r"\{nope\}"),
        (lambda: compare("x", MODELS, runs=0), "runs must be a positive integer"),
        (lambda: compare("x", MODELS, judge_mode="vote"), "judge_mode"),
        (lambda: compare("x", MODELS, judge="sandbox/smart", judge_order="twice"), "judge_order must be one of both"),
        (lambda: compare("x", [coffee_nb.AutoPicker("sandbox/fast")]), "one model"),
    ]:
        with pytest.raises(ConfigError, match=message):
            call()
    assert sandbox.attempts() == []


def test_template_reads_columns_row_and_variables(three_models):
    suffix = "Be brief."  # noqa: F841 - read by the template through the caller's variables
    df = pd.DataFrame({"word": ["alpha", "beta"], "odd name": ["x", "y"]}, index=["r1", "r2"])
    cmp = compare(df, ["sandbox/echo", "sandbox/cmp_quick"], template="Say {word} ({row['odd name']}). {suffix}")
    assert list(cmp.answers.index) == ["r1", "r2"]
    assert list(cmp.answers["sandbox/echo"]) == ["Say alpha (x). Be brief.", "Say beta (y). Be brief."]
    assert "template over 2 rows" in cmp._repr_markdown_()


async def test_acompare_runs_on_the_running_loop(three_models):
    cmp = await acompare("Hello from async", three_models[:2], runs=2)
    assert len(cmp.frame) == 4 and cmp.frame.error_class.isna().all() and len(sandbox.attempts()) == 4
