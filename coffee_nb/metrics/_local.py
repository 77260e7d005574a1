"""LocalMetrics: every attempt in memory, column by column (not a list of dicts), thread-safe.

Columns are ``array`` buffers (8-byte floats/ints, small integer category codes), so a million
attempts cost a few dozen MB and ``to_dataframe()`` wraps them without a Python loop. With
``capacity=N`` the columns become a ring buffer of the last N attempts; the counters stay exact.

``emit`` only queues the record; records are taken into the columns and counters in batches
(every ``_BATCH`` records, and before anything is read), column by column with C-level loops,
which costs a fraction of doing it record by record on the caller's hot path.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from datetime import datetime
from decimal import Decimal
from itertools import compress
from typing import TYPE_CHECKING, Any

from coffee_nb._records import CallRecord, Outcome, Role, log

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocalMetrics"]

_NAN = float("nan")
_ZERO = Decimal(0)
_CATEGORIES = ("model", "provider", "role", "outcome", "error_class", "price_source")
_GROUP_KEY = (*_CATEGORIES, "fallback_from", "fallback_reason")
_OK, _ERROR, _SKIPPED = Outcome.OK, Outcome.ERROR, Outcome.SKIPPED
_FALLBACK = Role.FALLBACK
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

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.requests = self.input = self.output = self.cached = self.reasoning = self.unpriced = 0
        self.cost: Decimal | None = None


class LocalMetrics:
    """In-memory metrics: ``get_metrics()``, ``to_dataframe()``, ``summary()``, ``reset()``.

    >>> metrics = LocalMetrics()
    >>> llm = AutoPicker("sandbox/fast", metrics=metrics)
    >>> metrics.get_metrics()["requests"]["total"]

    ``capacity`` keeps only the last N attempts for the DataFrame and the latency percentiles;
    every counter (requests, errors, tokens, costs, fallbacks) stays exact regardless.
    """

    def __init__(self, *, capacity: int | None = None) -> None:
        from coffee_nb._errors import ConfigError

        if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0):
            raise ConfigError(f"capacity must be a positive number of attempts or None, got {capacity!r}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._listeners: list[Any] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        with getattr(self, "_lock", threading.Lock()):
            self._pending: list[CallRecord] = []
            self._call_ids = _Codes()
            self._group_codes: dict[tuple[Any, ...], int] = {}
            self._group_list: list[_Group] = []
            self._cols: dict[str, array[Any]] = {
                "started_at": array("d"),
                "latency_s": array("d"),
                "ttft_s": array("d"),
                "attempt": array("h"),
                "input_tokens": array("q"),
                "output_tokens": array("q"),
                "cached_tokens": array("q"),
                "reasoning_tokens": array("q"),
                "cost_usd": array("d"),
                "tokens_estimated": array("b"),
                "streamed": array("b"),
                "cache_hit": array("b"),
                "group": array("i"),  # the record's _Group: its model, provider, role, outcome, ...
                "call_id": array("i"),
            }
            self._next = 0  # ring position once full
            self._size = 0
            self._cache_hits = 0

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
        new = [
            array("d", map(_TIMESTAMP, fields[_F["started_at"]])),
            array("d", fields[_F["latency_s"]]),
            array("d", ttft) if None not in ttft else array("d", [_NAN if x is None else x for x in ttft]),
            array("h", attempt) if max(attempt) < 32767 else array("h", [min(a, 32767) for a in attempt]),
            array("q", fields[_F["input_tokens"]]),
            array("q", fields[_F["output_tokens"]]),
            array("q", fields[_F["cached_tokens"]]),
            array("q", fields[_F["reasoning_tokens"]]),
            array("d", map(float, cost)) if None not in cost else array("d", [_NAN if c is None else float(c) for c in cost]),
            array("b", fields[_F["tokens_estimated"]]),
            array("b", fields[_F["streamed"]]),
            array("b", fields[_F["cache_hit"]]),
        ]
        codes = list(map(self._group_codes.get, keys))
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
            if group.key[3] is _OK:
                group.unpriced += unpriced
            if group.key[3] is not _SKIPPED:
                group.input += t_in
                group.output += t_out
                group.cached += t_cached
                group.reasoning += t_reasoning

    def _group_code(self, key: tuple[Any, ...]) -> int:
        code = self._group_codes.get(key)
        if code is None:
            code = self._group_codes[key] = len(self._group_list)
            self._group_list.append(_Group(key))
        return code

    def _store(self, new: tuple[array[Any], ...]) -> None:
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

    def subscribe(self, listener: Any) -> Any:
        """Call ``listener(record)`` after each record is counted; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __len__(self) -> int:
        with self._lock:
            self._take_in()
            return self._size

    def __repr__(self) -> str:
        m = self.get_metrics()
        return (f"LocalMetrics(requests={m['requests']['total']}, errors={m['errors']['total']}, "
                f"cost=${m['costs']['total']}, capacity={self.capacity})")

    def _repr_html_(self) -> str:
        """The per-model summary, so ``metrics`` alone in a cell shows well even without widgets."""
        if not len(self):
            return "<i>coffee_nb metrics: no calls yet</i>"
        return self.summary().to_html(float_format=lambda x: f"{x:.6g}", na_rep="-")

    # -- views -------------------------------------------------------------------------------------
    def _ordered(self, last: int | None = None) -> tuple[dict[str, Any], dict[str, list[str | None]]]:
        """A consistent copy of the columns (the ``last`` N rows, or all), oldest first, with the
        group column decoded into one category-code column per category (numpy arrays)."""
        import numpy as np

        with self._lock:
            self._take_in()
            start = self._next if self.capacity is not None and self._size >= self.capacity else 0
            if last is not None and last < self._size and not start:
                cols = {k: v[-last:] if last else v[:0] for k, v in self._cols.items()}
            else:
                cols = {k: array(v.typecode, v) for k, v in self._cols.items()}
            keys = [g.key for g in self._group_list]
            call_ids = list(self._call_ids.values)
        if start:
            cols = {k: v[start:] + v[:start] for k, v in cols.items()}
            if last is not None:
                cols = {k: v[-last:] if last else v[:0] for k, v in cols.items()}
        out: dict[str, Any] = dict(cols)
        cats: dict[str, list[str | None]] = {"call_id": call_ids}
        groups = np.frombuffer(cols["group"], dtype=np.int32)
        for i, name in enumerate(_CATEGORIES):
            codes = _Codes()
            lookup = np.array([codes.code(k[i]) for k in keys], dtype=np.int32)
            out[name] = lookup[groups] if len(keys) else np.zeros(0, dtype=np.int32)
            cats[name] = codes.values
        return out, cats

    def _ok_latencies(self, column: str = "latency_s") -> dict[str, Any]:
        """Per model, the numpy array of ``column`` over answered attempts in the window."""
        import numpy as np

        cols, cats = self._ordered()
        if "ok" not in cats["outcome"]:
            return {}
        values = np.frombuffer(cols[column], dtype=np.float64)
        models = cols["model"]
        ok = cols["outcome"] == cats["outcome"].index("ok")
        ok &= ~np.isnan(values)
        ok &= np.frombuffer(cols["cache_hit"], dtype=np.int8) == 0  # cache hits sent no request
        out = {}
        for code in np.unique(models[ok]):
            out[str(cats["model"][code])] = values[ok & (models == code)]
        return out

    def latencies(self, model: str | None = None, *, ttft: bool = False) -> list[float]:
        """Latencies (or times to first token) of answered attempts in the window."""
        import numpy as np

        by_model = self._ok_latencies("ttft_s" if ttft else "latency_s")
        if model is not None:
            return by_model.get(model, np.empty(0)).tolist()
        return np.concatenate(list(by_model.values())).tolist() if by_model else []

    def get_metrics(self) -> dict[str, Any]:
        """Requests, errors, costs, latency, tokens, fallbacks and totals, as plain Python values.

        Costs are ``Decimal`` USD (exact); latency in seconds over the retained window.
        """
        requests: Counter[tuple[str, str, str]] = Counter()  # (model, role, outcome)
        errors: Counter[tuple[str, str]] = Counter()  # (model, error_class)
        cost: dict[str, Decimal] = {}
        unpriced: Counter[str] = Counter()
        tokens: Counter[tuple[str, str]] = Counter()  # (model, type)
        fallbacks: Counter[tuple[str, str, str]] = Counter()  # (from, to, reason)
        with self._lock:
            self._take_in()
            groups = [(g.key, g.requests, g.input, g.output, g.cached, g.reasoning, g.cost, g.unpriced)
                      for g in self._group_list]
            cache_hits = self._cache_hits
        for key, n, t_in, t_out, t_cached, t_reasoning, g_cost, g_unpriced in groups:
            model, _, role, outcome, error_class, _, fallback_from, fallback_reason = key
            if not n:
                continue
            requests[(model, str(role), str(outcome))] += n
            if outcome is _ERROR and error_class:
                errors[(model, error_class)] += n
            if g_cost is not None:
                cost[model] = cost.get(model, _ZERO) + g_cost
            if g_unpriced:
                unpriced[model] += g_unpriced
            for kind, value in (("input", t_in), ("output", t_out), ("cached", t_cached), ("reasoning", t_reasoning)):
                if value:
                    tokens[(model, kind)] += value
            if role is _FALLBACK and outcome is _OK and fallback_from:
                fallbacks[(fallback_from, model, fallback_reason or "unknown")] += n
        import numpy as np

        lat_by_model = self._ok_latencies()

        def stats(values: Any) -> dict[str, float | int | None]:
            if not len(values):
                return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None}
            p50, p95, p99 = np.percentile(values, [50, 95, 99])  # linear interpolation
            return {"count": int(len(values)), "mean": float(values.mean()), "p50": float(p50),
                    "p95": float(p95), "p99": float(p99)}

        sent = {k: n for k, n in requests.items() if k[2] != Outcome.SKIPPED.value}
        by_model: Counter[str] = Counter()
        by_role: Counter[str] = Counter()
        for (model, role, _), n in sent.items():
            by_model[model] += n
            by_role[role] += n
        ok = sum(n for (_, _, outcome), n in requests.items() if outcome == Outcome.OK.value)
        err_by_model: Counter[str] = Counter()
        err_by_class: Counter[str] = Counter()
        for (model, cls), n in errors.items():
            err_by_model[model] += n
            err_by_class[cls] += n
        skipped = Counter()
        for (_, _, outcome), n in requests.items():
            if outcome == Outcome.SKIPPED.value:
                skipped["total"] += n
        tok_tot: Counter[str] = Counter()
        for (_, kind), n in tokens.items():
            tok_tot[kind] += n
        all_lat = np.concatenate(list(lat_by_model.values())) if lat_by_model else np.empty(0)
        total_cost = sum(cost.values(), Decimal(0))
        fb_total = sum(fallbacks.values())
        return {
            "requests": {
                "total": sum(sent.values()),
                "successful": ok,
                "by_model": dict(by_model),
                "primary": by_role.get("primary", 0),
                "retry": by_role.get("retry", 0),
                "fallback": by_role.get("fallback", 0),
                "skipped": skipped.get("total", 0),
                "cache_hits": cache_hits,
            },
            "errors": {"total": sum(errors.values()), "by_model": dict(err_by_model), "by_class": dict(err_by_class)},
            "costs": {
                "total": total_cost,
                "by_model": cost,
                "unpriced_calls": sum(unpriced.values()),
                "unpriced_by_model": dict(unpriced),
            },
            "latency": {**stats(all_lat), "by_model": {m: stats(v) for m, v in lat_by_model.items()}},
            "tokens": {
                "input": tok_tot.get("input", 0),
                "output": tok_tot.get("output", 0),
                "cached": tok_tot.get("cached", 0),
                "reasoning": tok_tot.get("reasoning", 0),
                "by_model": {
                    m: {k: n for (mm, k), n in tokens.items() if mm == m} for m in {m for m, _ in tokens}
                },
            },
            "fallbacks": {
                "total": fb_total,
                "by_route": {f"{a} -> {b}": n for (a, b, _), n in _sum_routes(fallbacks).items()},
                "by_reason": dict(_sum_reasons(fallbacks)),
            },
            "totals": {
                "requests": sum(sent.values()),
                "successful": ok,
                "errors": sum(errors.values()),
                "fallbacks": fb_total,
                "cost": total_cost,
                "tokens": sum(tok_tot.values()),
            },
            # the seed's flat keys
            "total_requests": sum(sent.values()),
            "successful_requests": ok,
            "failed_requests": sum(errors.values()),
            "total_cost": total_cost,
            "average_latency": stats(all_lat)["mean"],
            "fallback_count": fb_total,
        }

    def to_dataframe(self, *, last: int | None = None) -> pd.DataFrame:
        """One row per attempt (oldest first); ``last=N``: only the N most recent.

        dtypes: ``started_at`` datetime64[ns, UTC]; ``model``, ``provider``, ``role``, ``outcome``,
        ``error_class``, ``price_source``, ``call_id`` category; ``latency_s``/``ttft_s`` float64
        (NaN: none); token columns int64; ``cost_usd`` float64 with NaN for unpriced attempts (exact
        Decimal totals: ``get_metrics()["costs"]``); ``priced``, ``tokens_estimated``, ``streamed``,
        ``cache_hit`` bool.
        """
        import numpy as np
        import pandas as pd

        cols, cats = self._ordered(last)
        data: dict[str, Any] = {}
        data["started_at"] = pd.to_datetime(np.frombuffer(cols["started_at"], dtype=np.float64) * 1e9, utc=True)
        data["call_id"] = _categorical(np.frombuffer(cols["call_id"], dtype=np.int32), cats["call_id"])
        data["attempt"] = np.frombuffer(cols["attempt"], dtype=np.int16)
        for name in _CATEGORIES:
            data[name] = _categorical(cols[name], cats[name])
        data["latency_s"] = np.frombuffer(cols["latency_s"], dtype=np.float64)
        data["ttft_s"] = np.frombuffer(cols["ttft_s"], dtype=np.float64)
        for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
            data[name] = np.frombuffer(cols[name], dtype=np.int64)
        cost = np.frombuffer(cols["cost_usd"], dtype=np.float64)
        data["cost_usd"] = cost
        data["priced"] = ~np.isnan(cost)
        for name in ("tokens_estimated", "streamed", "cache_hit"):
            data[name] = np.frombuffer(cols[name], dtype=np.int8).astype(bool)
        return pd.DataFrame(data, copy=False)

    def summary(self) -> pd.DataFrame:
        """Per model: calls, errors, tokens, cost, share of cost, p50/p95 latency (from exact counters and the window)."""
        import pandas as pd

        m = self.get_metrics()
        rows = []
        total_cost = m["costs"]["total"]
        models = sorted(set(m["requests"]["by_model"]) | set(m["costs"]["by_model"]))
        for model in models:
            lat = m["latency"]["by_model"].get(model, {})
            cost = m["costs"]["by_model"].get(model)
            toks = m["tokens"]["by_model"].get(model, {})
            rows.append(
                {
                    "model": model,
                    "calls": m["requests"]["by_model"].get(model, 0),
                    "errors": m["errors"]["by_model"].get(model, 0),
                    "input_tokens": toks.get("input", 0),
                    "output_tokens": toks.get("output", 0),
                    "cost_usd": float(cost) if cost is not None else float("nan"),
                    "cost_share": float(cost / total_cost) if cost is not None and total_cost else 0.0,
                    "unpriced_calls": m["costs"]["unpriced_by_model"].get(model, 0),
                    "p50_latency_s": lat.get("p50"),
                    "p95_latency_s": lat.get("p95"),
                }
            )
        columns = ["model", "calls", "errors", "input_tokens", "output_tokens", "cost_usd", "cost_share",
                   "unpriced_calls", "p50_latency_s", "p95_latency_s"]
        return pd.DataFrame(rows, columns=columns).set_index("model")


def _categorical(arr: Any, values: list[str | None]) -> Any:
    import numpy as np
    import pandas as pd

    values = [None if v is None else str(v) for v in values]  # StrEnum members → plain strings
    if None not in values:
        return pd.Categorical.from_codes(arr, categories=values)
    # None is a value of ours (e.g. no error class); in pandas it is a missing value (code -1)
    kept = [v for v in values if v is not None]
    lookup = {v: i for i, v in enumerate(kept)}
    remap = np.array([-1 if v is None else lookup[v] for v in values], dtype=np.int32)
    return pd.Categorical.from_codes(remap[arr], categories=kept)


def _sum_routes(fallbacks: Counter[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for (a, b, _), n in fallbacks.items():
        out[(a, b, "")] += n
    return out


def _sum_reasons(fallbacks: Counter[tuple[str, str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, _, reason), n in fallbacks.items():
        out[reason] += n
    return out
