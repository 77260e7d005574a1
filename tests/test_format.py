"""Shared text helpers: money, message content as text, JSON answers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from coffee_nb._shared import _format
from coffee_nb._shared._format import content_text, money, parse_json
from coffee_nb.session import _session
from coffee_nb.session._session import Answer


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "unpriced"),
        (Decimal(0), "$0.00"),
        (Decimal(5), "$5.00"),
        (Decimal("4.999978"), "$4.999978"),
        (Decimal("0.1"), "$0.10"),
        (Decimal("0.0000036"), "$0.000004"),
        (Decimal("0.00000036"), "$0.00000036"),  # sub-micro: never shown as $0.00
        (Decimal("1E-12"), "$0.000000000001"),
    ],
)
def test_money(amount, text):
    assert money(amount) == text


IMAGE = {"type": "image_url", "image_url": {"url": "data:,"}}


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("plain", "plain"),
        ("", ""),
        (None, ""),
        ([], ""),
        (["a", "b"], "ab"),
        ([{"type": "text", "text": "hello "}, IMAGE, {"type": "text", "text": "world"}], "hello world"),
        ([{"type": "tool_use", "id": "t", "input": {}}, "x"], "x"),  # Anthropic tool blocks have no text
        ([{"type": "text", "text": None}, {"text": 3}], ""),  # text that isn't a string is not text
        (("a", {"text": "b"}), "ab"),
    ],
)
def test_content_text(content, text):
    assert content_text(content) == text


def test_one_flattening_for_tokens_server_and_answers():
    """The token counter, the sandbox server and Answer.text all read content the same way."""
    import importlib

    from coffee_nb.pricing import _tokens

    _server = importlib.import_module("coffee_nb.sandbox._replies")  # where the sandbox reads messages
    assert _tokens.content_text is content_text and _server.content_text is content_text
    blocks = [{"type": "text", "text": "hi "}, IMAGE, "there"]
    answer = Answer(AIMessage(content=blocks), "m", "p", [], None, "unpriced", {}, 0.0)
    assert answer.text == "hi there"
    assert _tokens.count_prompt([HumanMessage(content=blocks)], "o200k_base") == _tokens.count_prompt(
        [{"role": "user", "content": "hi there"}], "o200k_base"
    )


def test_parse_json_bare_fenced_and_bad():
    assert parse_json('{"a": 1}') == {"a": 1}
    assert parse_json("Here:\n```json\n[1, 2]\n```\nDone.") == [1, 2]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json("nope")


def test_old_homes_still_export_them():
    assert _session.money is _format.money and _session.parse_json is _format.parse_json
