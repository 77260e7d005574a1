"""CallSummary: typed and frozen, and a read-only mapping for code written against the plain dicts."""

from __future__ import annotations

import copy
import json
import pickle
from decimal import Decimal

import pytest

from coffee_nb import AutoPicker, CallSummary, register_price
from coffee_nb.testing import ScriptedChatModel, http_error


@pytest.fixture
def answered():
    register_price("fake/a", input=1, output=2)
    register_price("fake/b", input=1, output=2)
    primary = ScriptedChatModel(model_name="a", script=[http_error(500)])
    fallback = ScriptedChatModel(model_name="b", script=["four words of answer"])
    picker = AutoPicker(primary, [fallback], max_retries=0)
    return picker.invoke("hi").response_metadata["coffee_nb"]


def test_typed_and_mapping_views_agree(answered):
    s = answered
    assert isinstance(s, CallSummary)
    assert s.model == s["model"] == "fake/b"
    assert s.fallback_reason == s["fallback_reason"] == "server"
    assert s.tokens.output == s["tokens"]["output"] == 4
    assert s["attempts"][0]["outcome"] == s.attempts[0].outcome == "error"
    assert s.cost == s["cost"] and isinstance(s.cost, Decimal) and s["priced"] is True
    assert s.get("missing", "default") == "default" and "structured" not in s
    assert set(s) == {
        "call_id",
        "model",
        "provider",
        "role",
        "fallback_reason",
        "attempts",
        "tokens",
        "cost",
        "priced",
        "price_source",
        "latency_s",
        "ttft_s",
        "cache_hit",
        "primary_model",
        "primary_cost",
        "saved",
    }
    assert s.primary_model == "fake/a" and s.primary_cost is not None and s.saved == s.primary_cost - s.cost


def test_frozen(answered):
    with pytest.raises(AttributeError):
        answered.model = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        answered.cost = Decimal(0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        answered["cost"] = 0  # type: ignore[index]


def test_as_dict_is_plain_and_json_ready(answered):
    d = answered.as_dict()
    assert type(d) is dict and type(d["tokens"]) is dict and type(d["attempts"][0]) is dict
    assert d["attempts"] == [dict(a) for a in answered["attempts"]] and d["tokens"] == dict(answered["tokens"])
    json.dumps(d, default=str)
    assert answered == d  # equal to its plain form, like the dict it replaces


def test_survives_copy_and_pickle(answered):
    assert copy.deepcopy(answered) is answered
    again = pickle.loads(pickle.dumps(answered))
    assert again.as_dict() == answered.as_dict()
