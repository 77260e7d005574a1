"""LocalMetrics: every attempt in memory, column by column (not a list of dicts), thread-safe.

Columns are ``array`` buffers (8-byte floats/ints, small integer category codes), so a million
attempts cost a few dozen MB and ``to_dataframe()`` wraps them without a Python loop. With
``capacity=N`` the columns become a ring buffer of the last N attempts; the counters stay exact.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coffee_nb._records import CallRecord, Outcome, Role

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocalMetrics"]

_NAN = float("nan")
_ZERO = Decimal(0)
_CATEGORIES = ("model", "provider", "role", "outcome", "error_class", "price_source")
_GROUP_KEY = (*_CATEGORIES, "fallback_from", "fallback_reason")
_OK, _ERROR, _SKIPPED = Outcome.OK, Outcome.ERROR, Outcome.SKIPPED
_FALLBACK = Role.FALLBACK


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

    __slots__ = ("code", "key", "requests", "input", "output", "cached", "reasoning", "cost", "unpriced")

    def __init__(self, code: int, key: tuple[Any, ...]) -> None:
        self.code = code
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
            self._call_ids = _Codes()
            self._groups: dict[tuple[Any, ...], _Group] = {}
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
                "flags": array("b"),  # bit 0: tokens estimated, 1: streamed, 2: cache hit
                "group": array("i"),  # the record's _Group: its model, provider, role, outcome, ...
                "call_id": array("i"),
            }
            self._appends = tuple(col.append for col in self._cols.values())  # the order of a row in emit()
            self._next = 0  # ring position once full
            self._size = 0
            self._cache_hits = 0

    # -- the sink ------------------------------------------------------------------------------
    def emit(self, record: CallRecord) -> None:
        cost = record.cost
        outcome = record.outcome
        ttft = record.ttft_s
        attempt = record.attempt
        key = (record.model, record.provider, record.role, outcome, record.error_class, record.price_source,
               record.fallback_from, record.fallback_reason)
        call_id = record.call_id
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._new_group(key)
            call_ids = self._call_ids.index
            call_code = call_ids.get(call_id)
            if call_code is None:  # a new call (every call but retries and fallbacks)
                call_code = call_ids[call_id] = len(call_ids)
                self._call_ids.values.append(call_id)
            row = (
                record.started_at.timestamp(),
                record.latency_s,
                _NAN if ttft is None else ttft,
                attempt if attempt < 32767 else 32767,
                record.input_tokens,
                record.output_tokens,
                record.cached_tokens,
                record.reasoning_tokens,
                _NAN if cost is None else float(cost),
                record.tokens_estimated | (record.streamed << 1) | (record.cache_hit << 2),
                group.code,
                call_code,
            )
            if self.capacity is not None and self._size >= self.capacity:
                self._overwrite(row)
            else:
                a = self._appends
                a[0](row[0]), a[1](row[1]), a[2](row[2]), a[3](row[3]), a[4](row[4]), a[5](row[5])
                a[6](row[6]), a[7](row[7]), a[8](row[8]), a[9](row[9]), a[10](row[10]), a[11](row[11])
                self._size += 1
            # exact counters, whatever the capacity
            if record.cache_hit:  # answered from the cache: no request was sent
                self._cache_hits += 1
            else:
                group.requests += 1
                if cost is not None:
                    group.cost = cost if group.cost is None else group.cost + cost
                elif outcome is _OK:
                    group.unpriced += 1
                if outcome is not _SKIPPED:
                    group.input += record.input_tokens
                    group.output += record.output_tokens
                    group.cached += record.cached_tokens
                    group.reasoning += record.reasoning_tokens
        for listener in self._listeners:
            listener(record)

    def _new_group(self, key: tuple[Any, ...]) -> _Group:
        group = self._groups[key] = _Group(len(self._group_list), key)
        self._group_list.append(group)
        return group

    def _overwrite(self, row: tuple[Any, ...]) -> None:
        """Ring buffer: the oldest row makes way (the caller holds the lock)."""
        i = self._next
        for col, value in zip(self._cols.values(), row, strict=True):
            col[i] = value
        self._next = (i + 1) % self.capacity  # type: ignore[operator]
        if len(self._call_ids.values) > 4 * self.capacity:  # type: ignore[operator]
            self._compact_call_ids()

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
        return self._size

    def __repr__(self) -> str:
        m = self.get_metrics()
        return (f"LocalMetrics(requests={m['requests']['total']}, errors={m['errors']['total']}, "
                f"cost=${m['costs']['total']}, capacity={self.capacity})")

    def _repr_html_(self) -> str:
        """The per-model summary, so ``metrics`` alone in a cell shows well even without widgets."""
        if not self._size:
            return "<i>coffee_nb metrics: no calls yet</i>"
        return self.summary().to_html(float_format=lambda x: f"{x:.6g}", na_rep="-")

    # -- views -------------------------------------------------------------------------------------
    def _ordered(self, last: int | None = None) -> tuple[dict[str, Any], dict[str, list[str | None]]]:
        """A consistent copy of the columns (the ``last`` N rows, or all), oldest first, with the
        group column decoded into one category-code column per category (numpy arrays)."""
        import numpy as np

        with self._lock:
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
        ok &= (np.frombuffer(cols["flags"], dtype=np.int8) & 4) == 0  # cache hits sent no request
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
        flags = np.frombuffer(cols["flags"], dtype=np.int8)
        data["tokens_estimated"] = (flags & 1).astype(bool)
        data["streamed"] = (flags & 2).astype(bool)
        data["cache_hit"] = (flags & 4).astype(bool)
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
