"""The judge of a comparison: its request for one pair of answers (shown as A and B, in an order chosen
at random against position bias), how its verdict is read, and :class:`JudgeReport` (the verdicts)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._format import money, parse_json

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.comparison._comparison import Call

__all__ = ["JUDGE_MAX_TOKENS", "JUDGE_MODES", "JudgeReport", "judge_messages", "read_verdict"]

JUDGE_MODES = ("pick", "score")
JUDGE_MAX_TOKENS = 300  # a verdict is a line of JSON: its worst case stays small
VERDICT_COLUMNS = [
    "row",
    "model_a",
    "model_b",
    "shown_first",
    "winner",
    "score_a",
    "score_b",
    "reason",
    "error",
    "cost",
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
    """The judge's verdicts: ``frame`` (one row per pair and row), ``standings()`` per model, ``cost``."""

    def __init__(self, model: str, mode: str, calls: Sequence[Call]) -> None:
        import pandas as pd  # lazy: pandas

        self.model, self.mode = model, mode
        rows = []
        for c in calls:
            assert c.pair is not None and c.shown is not None
            rows.append(
                {
                    "row": c.row,
                    "model_a": c.pair[0],
                    "model_b": c.pair[1],
                    "shown_first": c.shown[0],
                    **c.verdict,
                    "error": c.error,
                    "cost": c.cost,
                    "cache_hit": c.cache_hit,
                    "call_id": c.call_id,
                }
            )
        self.frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
        costs = [c.cost for c in calls if c.ok]
        self.cost: Decimal | None = None if None in costs else sum((c.cost or Decimal(0) for c in calls), Decimal(0))

    def standings(self, models: Sequence[str]) -> pd.DataFrame:
        """Per model: pairs judged, wins, losses, ties (pick) or the mean score (score)."""
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
            out.append(row)
        return pd.DataFrame(out, index=pd.Index(list(models), name="model"))

    def __repr__(self) -> str:
        verdicts = len(self.frame)
        return f"JudgeReport(model={self.model!r}, mode={self.mode!r}, verdicts={verdicts}, cost={money(self.cost)})"
