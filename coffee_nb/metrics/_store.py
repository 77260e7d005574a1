"""LocalMetrics' storage: every attempt in memory, column by column (not a list of dicts), thread-safe.

Columns are ``array`` buffers (8-byte floats/ints, small integer category codes), so a million
attempts cost a few dozen MB and ``to_dataframe()`` wraps them without a Python loop. With
``capacity=N`` the columns become a ring buffer of the last N attempts; the counters stay exact.

``emit`` only queues the record; records are taken into the columns and counters in batches
(every ``_BATCH`` records, and before anything is read), column by column with C-level loops,
which costs a fraction of doing it record by record on the caller's hot path.

This module only takes records in and hands out consistent copies; ``_local`` answers questions.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from itertools import compress
from typing import Any, NamedTuple

from coffee_nb._shared._records import CallRecord, Outcome, log
from coffee_nb.errors._errors import ConfigError

__all__ = ["CATEGORIES", "COLUMNS", "ColumnStore", "Counts", "GroupKey"]

_NAN = float("nan")
CATEGORIES = ("model", "provider", "role", "outcome", "error_class", "price_source")
_GROUP_KEY = (*CATEGORIES, "fallback_from", "fallback_reason")


class GroupKey(NamedTuple):
    """What a group of attempts shares: a record's values of ``_GROUP_KEY``, by name."""

    model: str
    provider: str
    role: Any  # Role
    outcome: Any  # Outcome
    error_class: str | None
    price_source: str
    fallback_from: str | None
    fallback_reason: str | None


assert GroupKey._fields == _GROUP_KEY  # the key is built by position from these record fields
_OK, _SKIPPED = Outcome.OK, Outcome.SKIPPED
# column -> array typecode; "group" is the record's _Group (its model, provider, role, outcome, ...)
_COLUMNS = {
    "started_at": "d",
    "latency_s": "d",
    "ttft_s": "d",
    "attempt": "h",
    "input_tokens": "q",
    "output_tokens": "q",
    "cached_tokens": "q",
    "reasoning_tokens": "q",
    "cost_usd": "d",
    "tokens_estimated": "b",
    "streamed": "b",
    "cache_hit": "b",
    "group": "i",
    "call_id": "i",
}
COLUMNS = tuple(_COLUMNS)
_BATCH = 256  # records queued before they are taken in
_F = {name: i for i, name in enumerate(CallRecord._fields)}  # field positions in a record
_KEY_FIELDS = tuple(_F[name] for name in _GROUP_KEY)
_TIMESTAMP = datetime.timestamp


class _Codes:
    """Dictionary encoding for a string column."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.index: dict[str | None, int] = {}
        self.values: list[str | None] = []

    def code(self, value: str | None) -> int:
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.values)
            self.values.append(value)
        return code


class _Group:
    """Exact counters of every attempt sharing one (model, provider, role, outcome, error class,
    price source, fallback origin and reason): one dictionary lookup per record counts them all."""

    __slots__ = ("key", "requests", "input", "output", "cached", "reasoning", "cost", "unpriced")

    def __init__(self, key: GroupKey) -> None:
        self.key = key
        self.requests = self.input = self.output = self.cached = self.reasoning = self.unpriced = 0
        self.cost: Decimal | None = None


class Counts(NamedTuple):
    """One consistent read of the store: exact counters, and copies of columns over the window."""

    # per group code: key, requests, input, output, cached, reasoning tokens, cost, unpriced
    groups: list[tuple[Any, ...]]
    cache_hits: int
    calls: int  # distinct call ids taken in
    columns: dict[str, array[Any]]  # the asked-for columns, oldest row first
    call_ids: list[str | None]  # call_id codes -> ids, when the call_id column was asked for


class ColumnStore:
    """Records in, exact counters and a window of columns out (the intake half of ``LocalMetrics``)."""

    def __init__(self, *, capacity: int | None = None) -> None:
        if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0):
            raise ConfigError(f"capacity must be a positive number of attempts or None, got {capacity!r}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._listeners: list[Callable[[CallRecord], Any]] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        with getattr(self, "_lock", threading.Lock()):
            self._pending: list[CallRecord] = []
            self._call_ids = _Codes()
            self._group_codes: dict[tuple[Any, ...], int] = {}  # plain tuples (as zipped) find GroupKeys
            self._group_list: list[_Group] = []
            self._cols: dict[str, array[Any]] = {name: array(code) for name, code in _COLUMNS.items()}
            self._next = 0  # ring position once full
            self._size = 0
            self._cache_hits = 0
            self._calls = 0  # distinct call ids; with a capacity, ids already out of the window count again

    # -- the sink ------------------------------------------------------------------------------
    def emit(self, record: CallRecord) -> None:
        if not isinstance(record, CallRecord):
            raise TypeError(f"LocalMetrics.emit takes a coffee_nb.CallRecord, got {type(record).__name__}")
        with self._lock:
            pending = self._pending
            pending.append(record)
            if len(pending) >= _BATCH:
                self._take_in()
        for listener in self._listeners:
            listener(record)

    def _take_in(self) -> None:
        """Move queued records into the columns and the exact counters (the caller holds the lock).

        A record whose fields can't be stored (say, a hand-made one with text for tokens) is logged
        and dropped on its own; the rest of its batch is kept.
        """
        batch = self._pending
        if not batch:
            return
        self._pending = []
        try:
            self._take_in_batch(batch)
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            for record in batch:
                try:
                    self._take_in_batch([record])
                except (TypeError, ValueError, OverflowError, ArithmeticError):
                    log.exception("coffee_nb: LocalMetrics dropped a record it could not store: %r", record)

    def _take_in_batch(self, batch: list[CallRecord]) -> None:
        """Everything that can fail happens before anything is changed."""
        fields = list(zip(*batch, strict=True))  # one tuple per record field
        keys = list(zip(*(fields[i] for i in _KEY_FIELDS), strict=True))
        ttft, cost, attempt = fields[_F["ttft_s"]], fields[_F["cost"]], fields[_F["attempt"]]
        new = [  # in _COLUMNS order: _store() pairs them up by position
            array("d", map(_TIMESTAMP, fields[_F["started_at"]])),
            array("d", fields[_F["latency_s"]]),
            array("d", ttft) if None not in ttft else array("d", [_NAN if x is None else x for x in ttft]),
            array("h", attempt) if max(attempt) < 32767 else array("h", [min(a, 32767) for a in attempt]),
            array("q", fields[_F["input_tokens"]]),
            array("q", fields[_F["output_tokens"]]),
            array("q", fields[_F["cached_tokens"]]),
            array("q", fields[_F["reasoning_tokens"]]),
            array("d", map(float, cost))
            if None not in cost
            else array("d", [_NAN if c is None else float(c) for c in cost]),
            array("b", fields[_F["tokens_estimated"]]),
            array("b", fields[_F["streamed"]]),
            array("b", fields[_F["cache_hit"]]),
        ]
        codes: list[Any] = list(map(self._group_codes.get, keys))  # None: a group not seen before
        if None in codes:
            for i, code in enumerate(codes):
                if code is None:
                    codes[i] = self._group_code(keys[i])
        hits, deltas = self._deltas(fields, codes)
        call_ids = fields[_F["call_id"]]
        index = self._call_ids.index
        fresh = [c for c in dict.fromkeys(call_ids) if c not in index]
        if fresh:
            index.update(zip(fresh, range(len(index), len(index) + len(fresh)), strict=True))
            self._call_ids.values.extend(fresh)
            self._calls += len(fresh)
        new.append(array("i", codes))
        new.append(array("i", map(index.__getitem__, call_ids)))
        self._store(new)
        self._cache_hits += hits
        groups = self._group_list
        for code, (n, cost_sum, unpriced, t_in, t_out, t_cached, t_reasoning) in deltas.items():
            group = groups[code]
            group.requests += n
            if cost_sum is not None:
                group.cost = cost_sum if group.cost is None else group.cost + cost_sum
            if group.key.outcome is _OK:
                group.unpriced += unpriced
            if group.key.outcome is not _SKIPPED:
                group.input += t_in
                group.output += t_out
                group.cached += t_cached
                group.reasoning += t_reasoning

    def _group_code(self, key: tuple[Any, ...]) -> int:
        code = self._group_codes.get(key)
        if code is None:
            code = self._group_codes[key] = len(self._group_list)
            self._group_list.append(_Group(GroupKey._make(key)))
        return code

    def _store(self, new: list[array[Any]]) -> None:
        """Append the batch's columns; once ``capacity`` is reached, overwrite the oldest rows."""
        cols = self._cols.values()
        n = len(new[0])
        room = n if self.capacity is None else min(n, self.capacity - self._size)
        if room > 0:
            for col, values in zip(cols, new, strict=True):
                col.extend(values if room == n else values[:room])
            self._size += room
        done = max(room, 0)
        while done < n:  # ring buffer: overwrite from the oldest row on
            assert self.capacity is not None
            i = self._next
            k = min(n - done, self.capacity - i)
            for col, values in zip(cols, new, strict=True):
                col[i : i + k] = values[done : done + k]
            self._next = (i + k) % self.capacity
            done += k
        if self.capacity is not None and len(self._call_ids.values) > 4 * self.capacity:
            self._compact_call_ids()

    @staticmethod
    def _deltas(fields: list[tuple[Any, ...]], codes: list[int]) -> tuple[int, dict[int, list[Any]]]:
        """What a batch adds to the exact counters, per group: (requests, cost or None, unpriced,
        input, output, cached, reasoning tokens); and its cache hits, which sent no request."""
        hits = fields[_F["cache_hit"]]
        cost = fields[_F["cost"]]
        tokens = [fields[_F[name]] for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")]
        n_hits = 0
        if any(hits):
            n_hits = sum(map(bool, hits))
            sent = [not h for h in hits]
            codes, cost = list(compress(codes, sent)), tuple(compress(cost, sent))
            tokens = [tuple(compress(t, sent)) for t in tokens]
        if not codes:
            return n_hits, {}
        if len(set(codes)) == 1:  # the usual batch: one model answering
            priced = cost if None not in cost else [c for c in cost if c is not None]
            cost_sum = sum(priced[1:], priced[0]) if priced else None
            return n_hits, {codes[0]: [len(codes), cost_sum, len(cost) - len(priced), *map(sum, tokens)]}
        out: dict[int, list[Any]] = {}
        for code, c, t_in, t_out, t_cached, t_reasoning in zip(codes, cost, *tokens, strict=True):
            d = out.get(code)
            if d is None:
                d = out[code] = [0, None, 0, 0, 0, 0, 0]
            d[0] += 1
            if c is None:
                d[2] += 1
            else:
                d[1] = c if d[1] is None else d[1] + c
            d[3] += t_in
            d[4] += t_out
            d[5] += t_cached
            d[6] += t_reasoning
        return n_hits, out

    def _compact_call_ids(self) -> None:
        """Ring buffer: re-encode call ids so codes of overwritten rows don't pile up."""
        old = self._call_ids
        col = self._cols["call_id"]
        fresh = _Codes()
        for i, code in enumerate(col):
            col[i] = fresh.code(old.values[code])
        self._call_ids = fresh

    def subscribe(self, listener: Callable[[CallRecord], Any]) -> Callable[[], None]:
        """Call ``listener(record)`` after each record is counted; returns an unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def __len__(self) -> int:
        with self._lock:
            self._take_in()
            return self._size

    def _read(self, names: tuple[str, ...], last: int | None = None) -> Counts:
        """Under one lock: take in what is queued, read the counters, copy columns ``names`` (the ``last``
        N rows, or the whole window), then put ring-buffer rows back in age order outside the lock."""
        with self._lock:
            self._take_in()
            start = self._next if self.capacity is not None and self._size >= self.capacity else 0
            if last is not None and last < self._size and not start:
                cols = {k: self._cols[k][-last:] if last else self._cols[k][:0] for k in names}
            else:
                cols = {k: array(self._cols[k].typecode, self._cols[k]) for k in names}
            groups = [
                (g.key, g.requests, g.input, g.output, g.cached, g.reasoning, g.cost, g.unpriced)
                for g in self._group_list
            ]
            cache_hits, calls = self._cache_hits, self._calls
            call_ids = list(self._call_ids.values) if "call_id" in names else []
        if start:
            cols = {k: v[start:] + v[:start] for k, v in cols.items()}
            if last is not None:
                cols = {k: v[-last:] if last else v[:0] for k, v in cols.items()}
        return Counts(groups, cache_hits, calls, cols, call_ids)
