"""The judge of a comparison: its request for one pair of answers (shown as A and B), how its verdict is
read, and :class:`JudgeReport`, the verdicts.

Judges favour the answer in one position (often the first) strongly enough that a verdict from one order
can be that bias alone. So by default each pair is judged both ways round (``judge_order="both"``): a
winner counts when both orders name it, otherwise the pair is a tie, and how often the two orders agree
(the judge's consistency) is reported. ``"random"`` asks once per pair, in a seeded random order, at half
the judge's cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money, parse_json
from coffee_nb.comparison._usage import usage

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.comparison._comparison import Call

__all__ = ["JUDGE_MAX_TOKENS", "JUDGE_MODES", "JUDGE_ORDERS", "JudgeReport", "judge_messages", "read_verdict"]

JUDGE_MODES = ("pick", "score")
JUDGE_ORDERS = ("both", "random")  # each pair judged both ways round, or once in a seeded random order
JUDGE_MAX_TOKENS = 300  # a verdict is a line of JSON: its worst case stays small
VERDICT_COLUMNS = [  # JudgeReport.frame: one row per pair and row
    "row",
    "model_a",
    "model_b",
    "shown_first",
    "winner",
    "score_a",
    "score_b",
    "consistent",
    "reason",
    "error",
    "cost",
    "cache_hit",
    "call_id",
]
CALL_COLUMNS = [  # JudgeReport.calls: one row per request to the judge
    "row",
    "model_a",
    "model_b",
    "shown_first",
    "winner",
    "score_a",
    "score_b",
    "reason",
    "error_class",
    "error",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_s",
    "ttft_s",
    "cache_hit",
    "call_id",
]
_JUDGE_SYSTEM = (
    "You judge answers written by AI assistants, impartially. Judge what matters to the request: correctness, "
    "helpfulness, clarity. The order the answers are shown in means nothing; neither does length by itself."
)
_ASK = {
    "pick": 'Which answer is better? Reply with JSON only: {"winner": "A" or "B" or "tie", "reason": "one sentence"}',
    "score": (
        "Score each answer from 1 (useless) to 10 (excellent). Reply with JSON only: "
        '{"score_a": <1-10>, "score_b": <1-10>, "reason": "one sentence"}'
    ),
}


def judge_messages(prompt: str, first: str, second: str, mode: str) -> list[Any]:
    """The judge's request for one pair: ``first`` is shown as answer A, ``second`` as answer B."""
    from langchain_core.messages import HumanMessage, SystemMessage  # lazy: langchain_core

    body = (
        f"The request:\n<request>\n{prompt}\n</request>\n\n"
        f"Answer A:\n<answer_a>\n{first}\n</answer_a>\n\n"
        f"Answer B:\n<answer_b>\n{second}\n</answer_b>\n\n{_ASK[mode]}"
    )
    return [SystemMessage(_JUDGE_SYSTEM), HumanMessage(body)]


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_WINNER = re.compile(r"winner\W{0,4}(A|B|tie)\b", re.IGNORECASE)


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = parse_json(text)
    except ValueError:
        found = _OBJECT.search(text)
        try:
            data = json.loads(found.group(0)) if found else None
        except ValueError:
            data = None
    return data if isinstance(data, dict) else {}


def _score(value: Any) -> float | None:
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0 <= score <= 10 else None


def read_verdict(call: Call, mode: str) -> None:
    """Read the judge's answer into ``call.verdict`` (winner or scores per model, in the pair's order)."""
    assert call.pair is not None and call.shown is not None
    verdict: dict[str, Any] = {"winner": None, "score_a": None, "score_b": None, "reason": None}
    call.verdict = verdict
    if not call.ok:
        return
    text = call.answer or ""
    data = _json_object(text)
    verdict["reason"] = str(data["reason"]) if data.get("reason") is not None else None
    first, second = call.shown
    if mode == "pick":
        pick = str(data.get("winner", "")).strip().upper()
        if pick not in ("A", "B", "TIE"):
            found = _WINNER.search(text)
            pick = found.group(1).upper() if found else ""
        verdict["winner"] = {"A": first, "B": second, "TIE": "tie"}.get(pick)
    else:
        scores = {first: _score(data.get("score_a")), second: _score(data.get("score_b"))}
        verdict["score_a"], verdict["score_b"] = scores[call.pair[0]], scores[call.pair[1]]
    if verdict["winner"] is None and verdict["score_a"] is None and verdict["score_b"] is None:
        call.error = "the verdict could not be read: " + text[:120]


class JudgeReport:
    """The judge's verdicts.

    ``frame``: one row per pair and row: the winner (pick) or the scores in the pair's order (score), and
    ``consistent``, whether the two orders agreed (None when judged in one order, or when an order gave
    no verdict). Judged both ways round, a pick counts when both orders name the same winner, otherwise
    the pair is a ``"tie"`` (its reason says how the orders disagreed); scores are the mean of the two
    orders, consistent when both orders prefer the same answer (or neither). ``calls``: one row per
    request to the judge, what it was shown first and what it said. ``consistency``: the share of pairs
    read in both orders on which they agreed. ``cost``: what the judging calls cost (the compared models'
    answers aside); ``usage``: their calls, tokens, cost and latencies, as a model's row of the summary.
    """

    def __init__(self, model: str, mode: str, calls: Sequence[Call], order: str = "random") -> None:
        import pandas as pd  # lazy: pandas

        self.model, self.mode, self.order = model, mode, order
        self.calls = pd.DataFrame([_call_row(c) for c in calls], columns=CALL_COLUMNS)
        for col in ("latency_s", "ttft_s"):
            self.calls[col] = self.calls[col].astype("float64")  # None → NaN
        if order == "both":
            rows = [_both_orders(first, second, mode) for first, second in _by_pair(calls)]
        else:
            rows = [{**_call_row(c), "consistent": None} for c in calls]
        self.frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
        self.frame["consistent"] = self.frame["consistent"].astype(object)  # True, False or None, never NaN
        costs = [c.cost for c in calls if c.ok]
        self.cost: Decimal | None = None if None in costs else sum((c.cost or Decimal(0) for c in calls), Decimal(0))
        self.usage: dict[str, Any] = usage(self.calls)
        read = [v for v in self.frame.consistent if isinstance(v, bool)]
        self.agreed, self.read_both = sum(read), len(read)

    @property
    def consistency(self) -> float | None:
        """The share of pairs (read in both orders) whose two verdicts agreed; None in one order."""
        return self.agreed / self.read_both if self.read_both else None

    def standings(self, models: Sequence[str]) -> pd.DataFrame:
        """Per model: pairs judged, wins, losses, ties (pick) or the mean score (score); judged both ways
        round, ``consistency``: the share of its pairs on which the two orders agreed."""
        import pandas as pd  # lazy: pandas

        out = []
        for m in models:
            mine = self.frame[(self.frame.model_a == m) | (self.frame.model_b == m)]
            judged = mine[mine.winner.notna() | mine.score_a.notna()]
            row: dict[str, Any] = {"judged": len(judged)}
            if self.mode == "pick":
                row["wins"] = int((judged.winner == m).sum())
                row["ties"] = int((judged.winner == "tie").sum())
                row["losses"] = len(judged) - row["wins"] - row["ties"]
            else:
                scores = [r.score_a if r.model_a == m else r.score_b for r in judged.itertuples()]
                scores = [s for s in scores if s is not None and s == s]
                row["score"] = sum(scores) / len(scores) if scores else None
            if self.order == "both":
                read = [v for v in mine.consistent if isinstance(v, bool)]
                row["consistency"] = sum(read) / len(read) if read else None
            out.append(row)
        return pd.DataFrame(out, index=pd.Index(list(models), name="model"))

    def consistency_line(self) -> str:
        """How the verdicts were asked for and, both ways round, how often the orders agreed."""
        if self.order != "both":
            return "pairs shown in random order, one order each"
        if not self.read_both:
            return "each pair judged both ways round"
        share = f"{self.agreed / self.read_both:.0%}"
        return f"each pair judged both ways round: the orders agreed on {self.agreed} of {self.read_both} ({share})"

    def __repr__(self) -> str:
        verdicts = len(self.frame)
        consistency = "" if self.consistency is None else f", consistency={self.consistency:.0%}"
        return (
            f"JudgeReport(model={self.model!r}, mode={self.mode!r}, order={self.order!r}, verdicts={verdicts}"
            f"{consistency}, cost={money(self.cost)})"
        )


def _call_row(c: Call) -> dict[str, Any]:
    assert c.pair is not None and c.shown is not None
    return {
        "row": c.row,
        "model_a": c.pair[0],
        "model_b": c.pair[1],
        "shown_first": c.shown[0],
        "winner": None,
        "score_a": None,
        "score_b": None,
        "reason": None,
        **c.verdict,
        "error_class": c.error_class,
        "error": c.error,
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
        "cost": c.cost,
        "latency_s": c.latency_s,
        "ttft_s": c.ttft_s,
        "cache_hit": c.cache_hit,
        "call_id": c.call_id,
    }


def _by_pair(calls: Sequence[Call]) -> list[tuple[Call, Call]]:
    """The calls of a both-orders judging, two by two: the pair shown in its order, then reversed."""
    out = []
    for first, second in zip(calls[0::2], calls[1::2], strict=True):
        assert first.pair is not None and first.shown == first.pair and second.shown == first.pair[::-1]
        out.append((first, second))
    return out


def _both_orders(first: Call, second: Call, mode: str) -> dict[str, Any]:
    """One pair's verdict from its two orders (``first``: model_a shown first; ``second``: model_b)."""
    assert first.pair is not None
    a, b = first.pair
    costs = [first.cost, second.cost]
    out: dict[str, Any] = {
        "row": first.row,
        "model_a": a,
        "model_b": b,
        "shown_first": None,  # both: see .calls
        "winner": None,
        "score_a": None,
        "score_b": None,
        "consistent": None,
        "reason": None,
        "error": None,
        "cost": None if None in costs else sum((c or Decimal(0) for c in costs), Decimal(0)),
        "cache_hit": first.cache_hit and second.cache_hit,
        "call_id": None,  # two calls: see .calls
    }
    failed = [c for c in (first, second) if c.error is not None]
    if failed:  # a verdict needs both orders: one alone may be the position bias
        out["error"] = "; ".join(f"with {c.shown[0] if c.shown else '?'} shown first, {c.error}" for c in failed)
        return out
    one, two = first.verdict, second.verdict
    if mode == "pick":
        agree = one["winner"] == two["winner"]
        out["consistent"] = agree
        out["winner"] = one["winner"] if agree else "tie"
        out["reason"] = (
            one["reason"]
            if agree
            else (
                f"a tie: the orders disagree (with {a} shown first it picked {one['winner']}, "
                f"with {b} shown first {two['winner']})"
            )
        )
        return out
    out["score_a"] = _mean(one["score_a"], two["score_a"])
    out["score_b"] = _mean(one["score_b"], two["score_b"])
    scores = (one["score_a"], one["score_b"], two["score_a"], two["score_b"])
    if None not in scores:
        agree = _sign(one["score_a"] - one["score_b"]) == _sign(two["score_a"] - two["score_b"])
        out["consistent"] = agree
        out["reason"] = (
            one["reason"]
            if agree
            else (
                f"the orders disagree ({a} : {b} scored {_pair(one)} with {a} shown first, {_pair(two)} with {b} "
                "shown first): scores averaged"
            )
        )
    return out


def _mean(x: float | None, y: float | None) -> float | None:
    present = [v for v in (x, y) if v is not None]
    return sum(present) / len(present) if present else None


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _pair(verdict: dict[str, Any]) -> str:
    return f"{verdict['score_a']:g} : {verdict['score_b']:g}"
