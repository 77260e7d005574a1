"""The sandbox as an LLM judge: a well-formed, deterministic verdict for a judge's request, so comparisons
can show judging offline (without it every verdict of a sandbox judge would be unreadable text).

A judge's request is recognised by its shape, the one ``coffee_nb.compare`` sends: the two answers inside
``<answer_a>…</answer_a>`` and ``<answer_b>…</answer_b>``, then a request for JSON with ``"winner"``
(pick) or ``"score_a"`` (score). The rule, which makes no claim to judge anything:

* each answer gets a **rating** from 0 to 99 from its text alone: the first four bytes of the SHA-256 of
  the stripped answer, modulo 100. The same answer always rates the same, whatever it is compared with;
* like a real judge with **position bias**, the answer shown first (A) gets :data:`FIRST_BONUS` (25)
  points more;
* pick: the higher total wins (``"A"`` or ``"B"``; ``"tie"`` when equal). So when the two ratings are more
  than 25 apart the better-rated answer wins in either order (a consistent verdict); when they are
  closer, whichever answer is shown first wins, and the two orders disagree;
* score: each answer scores ``1 + rating * 9 // 100`` (1-9), the first shown one point more (up to 10).

The reason says so: ``"sandbox rule: A rates 62, B rates 41, +25 to A for being shown first"``. A reply
scripted with ``sandbox.script_replies`` comes first, and ``sandbox/echo`` still repeats the prompt.
"""

from __future__ import annotations

import hashlib
import json
import re

__all__ = ["FIRST_BONUS", "judge_reply", "rating"]

FIRST_BONUS = 25  # rating points the answer shown first gets: the sandbox judge's position bias
_PAIR = re.compile(
    r"<answer_a>\n(?P<a>.*?)\n</answer_a>\s*Answer B:\s*<answer_b>\n(?P<b>.*)\n</answer_b>(?P<ask>.*)\Z", re.DOTALL
)


def rating(answer: str) -> int:
    """The sandbox judge's rating of ``answer`` (0-99), from a hash of its text alone."""
    digest = hashlib.sha256(answer.strip().encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def judge_reply(prompt: str) -> str | None:
    """The verdict (a line of JSON) when ``prompt`` is a judge's request for one pair; None otherwise."""
    found = _PAIR.search(prompt) if "<answer_a>" in prompt else None
    if found is None:
        return None
    ask = found.group("ask")
    a, b = rating(found.group("a")), rating(found.group("b"))
    if '"score_a"' in ask:
        first, second = 1 + a * 9 // 100, 1 + b * 9 // 100
        why = f"sandbox rule: A rates {a} (score {first}, +1 for being shown first), B rates {b} (score {second})"
        return json.dumps({"score_a": first + 1, "score_b": second, "reason": why})
    if '"winner"' in ask:
        total = a + FIRST_BONUS
        winner = "A" if total > b else ("B" if b > total else "tie")
        why = f"sandbox rule: A rates {a}, B rates {b}, +{FIRST_BONUS} to A for being shown first"
        return json.dumps({"winner": winner, "reason": why})
    return None
