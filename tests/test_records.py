"""CallRecord and its sinks: immutable records, sinks as objects or callables, publishing never breaks a call."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from coffee_nb import ConfigError
from coffee_nb._shared._records import (
    CallRecord,
    Outcome,
    RecordSink,
    Role,
    as_sinks,
    capture_records,
    global_sinks,
    publish,
)


def record(**changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": "c1",
        "attempt": 0,
        "role": Role.PRIMARY,
        "provider": "p",
        "model": "p/m",
        "outcome": Outcome.OK,
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "latency_s": 0.1,
    }
    fields.update(changes)
    return CallRecord(**fields)


def test_a_record_is_immutable_and_unpriced_until_it_has_a_cost():
    r = record()
    with pytest.raises(AttributeError):
        r.cost = Decimal(1)
    assert not r.priced and r.price_source == "unpriced" and r.ok
    assert record(cost=Decimal(0)).priced  # $0 is a price; None is not
    assert not record(outcome=Outcome.ERROR).ok


def test_as_dict_has_every_field():
    d = record(cost=Decimal("0.5")).as_dict()
    assert list(d) == list(CallRecord._fields) and d["cost"] == Decimal("0.5") and d["role"] == "primary"


def test_sinks_are_emit_objects_or_callables():
    seen: list[CallRecord] = []

    class Sink:
        def emit(self, r: CallRecord) -> None:
            seen.append(r)

    assert isinstance(Sink(), RecordSink)
    assert as_sinks(None) == ()
    sinks = as_sinks([Sink(), seen.append])
    assert len(sinks) == 2 and all(callable(s) for s in sinks)
    assert len(as_sinks(Sink())) == 1 and as_sinks(seen.append) == (seen.append,)
    publish(sinks, record())
    assert len(seen) == 2
    for bad, named in (([42], "42"), (42, "42"), ("emit", "'emit'")):
        with pytest.raises(ConfigError, match=re.escape(f"not a record sink: {named} ")):
            as_sinks(bad)


def test_a_failing_sink_is_logged_and_the_others_still_see_the_record(caplog):
    seen: list[CallRecord] = []

    def broken(r: CallRecord) -> None:
        raise RuntimeError("sink down")

    with caplog.at_level(logging.ERROR, logger="coffee_nb"):
        publish([broken, seen.append], record())
    assert len(seen) == 1 and "record sink" in caplog.text


def test_capture_records_sees_what_is_published_globally_only_inside_the_block():
    assert global_sinks() == ()
    with capture_records() as outer, capture_records() as inner:
        assert len(global_sinks()) == 2
        publish(global_sinks(), record(attempt=1))
    publish(global_sinks(), record(attempt=2))
    assert [r.attempt for r in outer] == [r.attempt for r in inner] == [1]
    assert global_sinks() == ()
