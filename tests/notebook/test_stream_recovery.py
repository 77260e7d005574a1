"""A ``%%llm`` whose stream breaks mid-answer ends as one answer: continued by prefill, or cleared and
re-rendered after a restart — never the broken text plus the new one."""

from __future__ import annotations

from IPython.utils.capture import capture_output

import coffee_nb
from coffee_nb import Policy, sandbox


def _cell(ip, cell):
    with capture_output() as cap:
        ip.run_cell_magic("llm", "--no-cache", cell)
    return cap, ip.user_ns["_"]


def test_restarted_stream_clears_and_rerenders_the_fallbacks_answer(ip, monkeypatch):
    from coffee_nb.notebook import render

    restarts: list[dict] = []
    real = render.AnswerView.restart
    monkeypatch.setattr(render.AnswerView, "restart", lambda self, info: (restarts.append(info), real(self, info)))
    coffee_nb.configure(
        models=["sandbox/fast", "sandbox/echo"], policy=Policy(stream_recovery="restart", max_retries=0)
    )
    sandbox.inject("sandbox/fast", ["cut:3"])
    cap, answer = _cell(ip, "tell me about espresso")
    assert answer.model == "sandbox/echo"
    assert answer.text == "tell me about espresso"  # the echo model's whole answer, nothing of the cut one
    assert [r["to_model"] for r in restarts] == ["sandbox/echo"]
    assert "[sandbox/fast]" not in cap.outputs[-1].data["text/plain"]


def test_continued_stream_is_one_answer(ip):
    coffee_nb.configure(models=["sandbox/fast", "sandbox/echo"], policy=Policy(max_retries=0))
    clean = coffee_nb.ask("tell me about crema", cache=False).text
    sandbox.inject("sandbox/fast", ["cut:3"])
    _, answer = _cell(ip, "tell me about crema")
    assert answer.model == "sandbox/echo"
    assert answer.text.startswith(" ".join(clean.split(" ")[:3]))  # the delivered words, then the rest
    assert sandbox.attempts("sandbox/echo")[-1]["prefill"] is True
