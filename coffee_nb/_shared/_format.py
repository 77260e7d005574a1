"""Small text helpers shared by the core, the sandbox and the notebook views: money, message text, JSON.

Pure functions with no coffee_nb imports, so any layer may use them.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

__all__ = ["content_text", "money", "parse_json"]

_MICRO = Decimal("0.000001")


def money(amount: Decimal | None) -> str:
    """``$4.999978``: up to 6 decimals (more for sub-micro amounts), no trailing zeros past the cents."""
    if amount is None:
        return "unpriced"
    places = 6
    if 0 < abs(amount) < _MICRO:  # never show a real (tiny) cost as $0.00
        places = min(12, -amount.adjusted() + 1)
    text = f"{amount:.{places}f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string as is; from a list of blocks (LangChain/OpenAI/
    Anthropic), the strings and every dict block's ``"text"``, joined. Images, tool calls and other
    blocks without text contribute nothing."""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        return ""
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def parse_json(text: str) -> Any:
    """Parse a JSON answer, fenced (```json ... ```) or bare; raise ValueError saying what was wrong."""
    fenced = re.search(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
