"""The sandbox as a judge: a judge's request (as compare sends it) gets a well-formed, deterministic verdict
by the documented rule, position bias included; other requests are answered as before."""

from __future__ import annotations

import json

import openai
import pytest

from coffee_nb import sandbox
from coffee_nb.comparison._comparison import Call
from coffee_nb.comparison._judge import judge_messages, read_verdict
from coffee_nb.sandbox._judge import FIRST_BONUS, rating

CANDIDATES = [f"Answer number {i}: brew at 93 degrees." for i in range(40)]


@pytest.fixture
def client(no_keys):
    return openai.OpenAI(base_url=sandbox.server().url, api_key="sandbox", max_retries=0)


def _ask(client, first: str, second: str, mode: str = "pick", model: str = "smart") -> str:
    messages = judge_messages("How hot should coffee be brewed?", first, second, mode)
    sent = [{"role": "system" if m.type == "system" else "user", "content": m.content} for m in messages]
    reply = client.chat.completions.create(model=model, messages=sent, temperature=0, max_tokens=300)
    return str(reply.choices[0].message.content)


def _pair(close: bool) -> tuple[str, str]:
    """Two answers whose ratings are within the first-shown bonus (close) or well beyond it."""
    for x in CANDIDATES:
        for y in CANDIDATES:
            gap = abs(rating(x) - rating(y))
            if x != y and (gap < FIRST_BONUS if close else gap > FIRST_BONUS):
                return x, y
    raise AssertionError("no such pair among the candidates")


def test_a_judge_request_gets_a_well_formed_deterministic_verdict_and_others_are_as_before(client):
    x, y = CANDIDATES[:2]
    pick = _ask(client, x, y)
    assert set(json.loads(pick)) == {"winner", "reason"} and json.loads(pick)["winner"] in ("A", "B", "tie")
    assert _ask(client, x, y) == pick and _ask(client, x, y, model="fast") == pick  # a function of the request
    assert f"A rates {rating(x)}, B rates {rating(y)}" in json.loads(pick)["reason"]
    score = json.loads(_ask(client, x, y, mode="score"))
    assert set(score) == {"score_a", "score_b", "reason"}
    assert score["score_a"] == 1 + rating(x) * 9 // 100 + 1 and score["score_b"] == 1 + rating(y) * 9 // 100
    call = Call(model="sandbox/smart", picker=None, messages=[], key=None, kwargs={}, answer=pick)
    call.pair = call.shown = ("m1", "m2")
    read_verdict(call, "pick")  # compare reads it: no more "the verdict could not be read"
    assert call.error is None and call.verdict["winner"] in ("m1", "m2", "tie")
    # other requests are answered as before: a mere mention of the tags, the echo model, a scripted reply
    plain = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "What is <answer_a>?"}])
    assert plain.choices[0].message.content.startswith("[sandbox/fast] You said:")
    echoed = _ask(client, x, y, model="echo")
    assert echoed.startswith("The request:") and "<answer_b>" in echoed
    sandbox.script_replies("sandbox/smart", ["scripted verdict"])
    assert _ask(client, x, y) == "scripted verdict"


def test_far_apart_answers_get_the_same_winner_both_ways_round(client):
    x, y = _pair(close=False)
    better = x if rating(x) > rating(y) else y
    one, two = json.loads(_ask(client, x, y))["winner"], json.loads(_ask(client, y, x))["winner"]
    assert {"A": x, "B": y}[one] == better and {"A": y, "B": x}[two] == better


def test_close_answers_go_to_whichever_is_shown_first(client):
    x, y = _pair(close=True)
    assert json.loads(_ask(client, x, y))["winner"] == "A" and json.loads(_ask(client, y, x))["winner"] == "A"
