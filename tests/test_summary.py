"""The summary on a message is plain data (it survives every store that persists messages); CallSummary is
its typed view, with exact Decimal money."""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
from decimal import Decimal

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.load import dumpd, dumps, load, loads
from langchain_core.messages import AIMessage, messages_from_dict, messages_to_dict

from coffee_nb import AutoPicker, CallSummary, register_price
from coffee_nb.testing import ScriptedChatModel, http_error

_PLAIN = (str, int, float, bool, type(None))


def _only_plain(value: object, where: str = "coffee_nb") -> None:
    """Every value is a built-in JSON type, all the way down."""
    if isinstance(value, dict):
        assert type(value) is dict, where
        for k, v in value.items():
            assert type(k) is str, f"{where}: key {k!r}"
            _only_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        assert type(value) is list, where
        for i, v in enumerate(value):
            _only_plain(v, f"{where}[{i}]")
    else:
        assert type(value) in _PLAIN, f"{where} is a {type(value).__name__}"


@pytest.fixture
def message() -> AIMessage:
    register_price("fake/a", input=1, output=2)
    register_price("fake/b", input=3, output=7)
    primary = ScriptedChatModel(model_name="a", script=[http_error(500)])
    fallback = ScriptedChatModel(model_name="b", script=["four words of answer"])
    picker = AutoPicker(primary, [fallback], max_retries=0)
    return picker.invoke("hi")


def test_the_summary_on_a_message_is_plain_data(message):
    meta = message.response_metadata["coffee_nb"]
    _only_plain(meta)
    assert meta["model"] == "fake/b" and meta["fallback_reason"] == "server" and meta["role"] == "fallback"
    assert meta["attempts"][0]["outcome"] == "error" and meta["attempts"][1]["outcome"] == "ok"
    assert meta["tokens"]["output"] == 4 and type(meta["cost"]) is float and meta["priced"] is True
    json.dumps(meta)  # no default= needed


def test_typed_view_gives_exact_decimals(message):
    s = CallSummary.of(message)
    tokens_in = s.tokens.input
    assert s.cost == (Decimal(tokens_in) * 3 + Decimal(4) * 7) / Decimal(1_000_000)
    assert isinstance(s.cost, Decimal) and s.cost == s.total_cost  # the failed attempt cost nothing
    assert s.primary_cost == (Decimal(tokens_in) * 1 + Decimal(4) * 2) / Decimal(1_000_000)
    assert s.saved == s.primary_cost - s.cost
    assert s.model == s["model"] == "fake/b" and s.attempts[0].error_class == "server"
    assert s.primary_model == "fake/a" and s.finish_reason is None and not s.truncated
    assert (
        CallSummary.of(message.response_metadata) == CallSummary.of(message) == message.response_metadata["coffee_nb"]
    )


@pytest.mark.parametrize("pico", [1, 7, 123_456_789, 999_999_999_999_999, 21_300_000, 10**12 + 1])
def test_money_floats_give_the_exact_decimal_back(pico):
    """Below $1,000 a cost has at most 15 significant digits: the float's repr is that decimal."""
    from coffee_nb.invoke._summary import _decimal
    from coffee_nb.pricing._pricing import from_pico

    exact = from_pico(pico)
    assert _decimal(float(exact)) == exact


def test_round_trips_keep_the_summary_readable(message, tmp_path):
    before = CallSummary.of(message)
    # pydantic JSON, LangChain's serializer, message dicts, a chat history
    again = [
        AIMessage.model_validate_json(message.model_dump_json()),
        loads(dumps(message)),
        load(dumpd(message)),
        messages_from_dict(json.loads(json.dumps(messages_to_dict([message]))))[0],
    ]
    history = InMemoryChatMessageHistory()
    history.add_message(message)
    again.append(history.messages[0])
    for m in again:
        s = CallSummary.of(m)
        assert s == before and s.cost == before.cost and s.attempts[0].outcome == "error"
    # and through a store on disk (sqlite: what SqliteSaver and SQL chat histories do)
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("CREATE TABLE m (j TEXT)")
    db.execute("INSERT INTO m VALUES (?)", (json.dumps(messages_to_dict([message])),))
    stored = messages_from_dict(json.loads(db.execute("SELECT j FROM m").fetchone()[0]))[0]
    assert CallSummary.of(stored).saved == before.saved


def test_frozen(message):
    s = CallSummary.of(message)
    with pytest.raises(AttributeError):
        s.model = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s["cost"] = 0  # type: ignore[index]


def test_copy_and_pickle(message):
    s = CallSummary.of(message)
    assert copy.deepcopy(s) == s and pickle.loads(pickle.dumps(s)) == s
    assert s.as_dict() == message.response_metadata["coffee_nb"] and s.as_dict() is not s._d


def test_of_says_when_there_is_no_summary():
    with pytest.raises(ValueError, match="AutoPicker"):
        CallSummary.of(AIMessage("not ours"))
