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
            self._codes = {name: _Codes() for name in (*_CATEGORIES, "call_id")}
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
                **{name: array("i") for name in (*_CATEGORIES, "call_id")},
            }
            self._col_list = list(self._cols.values())  # the order of ``row`` in emit()
            self._code_fns = [self._codes[name].code for name in (*_CATEGORIES, "call_id")]
            self._next = 0  # ring position once full
            self._size = 0
            self._requests: Counter[tuple[str, str, str]] = Counter()  # (model, role, outcome)
            self._errors: Counter[tuple[str, str]] = Counter()  # (model, error_class)
            self._cost: dict[str, Decimal] = {}
            self._unpriced: Counter[str] = Counter()
            self._tokens: Counter[tuple[str, str]] = Counter()  # (model, type)
            self._fallbacks: Counter[tuple[str, str, str]] = Counter()  # (from, to, reason)
            self._cache_hits = 0

    # -- the sink ------------------------------------------------------------------------------
    def emit(self, record: CallRecord) -> None:
        model = record.model
        cost = record.cost
        outcome = record.outcome
        ttft = record.ttft_s
        row = (
            record.started_at.timestamp(),
            record.latency_s,
            _NAN if ttft is None else ttft,
            record.attempt if record.attempt < 32767 else 32767,
            record.input_tokens,
            record.output_tokens,
            record.cached_tokens,
            record.reasoning_tokens,
            _NAN if cost is None else float(cost),
            record.tokens_estimated | (record.streamed << 1) | (record.cache_hit << 2),
        )
        with self._lock:
            codes = self._code_fns
            row += (
                codes[0](model),
                codes[1](record.provider),
                codes[2](record.role),
                codes[3](outcome),
                codes[4](record.error_class),
                codes[5](record.price_source),
                codes[6](record.call_id),
            )
            if self.capacity is not None and self._size >= self.capacity:
                i = self._next
                for col, value in zip(self._col_list, row, strict=True):
                    col[i] = value
                self._next = (i + 1) % self.capacity
                if len(self._codes["call_id"].values) > 4 * self.capacity:
                    self._compact_call_ids()
            else:
                for col, value in zip(self._col_list, row, strict=True):
                    col.append(value)
                self._size += 1
            # exact counters, whatever the capacity
            if record.cache_hit:  # answered from the cache: no request was sent
                self._cache_hits += 1
            else:
                self._count(record, model, cost, outcome)
        for listener in self._listeners:
            listener(record)

    def _count(self, record: CallRecord, model: str, cost: Decimal | None, outcome: Outcome) -> None:
        """Exact counters (the caller holds the lock)."""
        self._requests[(model, record.role, outcome)] += 1
        if outcome is Outcome.ERROR and record.error_class:
            self._errors[(model, record.error_class)] += 1
        if cost is not None:
            self._cost[model] = self._cost.get(model, _ZERO) + cost
        elif outcome is Outcome.OK:
            self._unpriced[model] += 1
        if outcome is not Outcome.SKIPPED:
            tokens = self._tokens
            if record.input_tokens:
                tokens[(model, "input")] += record.input_tokens
            if record.output_tokens:
                tokens[(model, "output")] += record.output_tokens
            if record.cached_tokens:
                tokens[(model, "cached")] += record.cached_tokens
            if record.reasoning_tokens:
                tokens[(model, "reasoning")] += record.reasoning_tokens
        if record.role is Role.FALLBACK and outcome is Outcome.OK and record.fallback_from:
            self._fallbacks[(record.fallback_from, model, record.fallback_reason or "unknown")] += 1

    def _compact_call_ids(self) -> None:
        """Ring buffer: re-encode call ids so codes of overwritten rows don't pile up."""
        old = self._codes["call_id"]
        col = self._cols["call_id"]
        fresh = _Codes()
        for i, code in enumerate(col):
            col[i] = fresh.code(old.values[code])
        self._codes["call_id"] = fresh
        self._code_fns[-1] = fresh.code

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
    def _ordered(self, last: int | None = None) -> tuple[dict[str, array[Any]], dict[str, list[str | None]]]:
        """A consistent copy of the columns (the ``last`` N rows, or all), oldest first."""
        with self._lock:
            start = self._next if self.capacity is not None and self._size >= self.capacity else 0
            if last is not None and last < self._size and not start:
                cols = {k: v[-last:] if last else v[:0] for k, v in self._cols.items()}
            else:
                cols = {k: array(v.typecode, v) for k, v in self._cols.items()}
            cats = {k: list(c.values) for k, c in self._codes.items()}
        if start:
            cols = {k: v[start:] + v[:start] for k, v in cols.items()}
            if last is not None:
                cols = {k: v[-last:] if last else v[:0] for k, v in cols.items()}
        return cols, cats

    def _ok_latencies(self, column: str = "latency_s") -> dict[str, Any]:
        """Per model, the numpy array of ``column`` over answered attempts in the window."""
        import numpy as np

        cols, cats = self._ordered()
        if "ok" not in cats["outcome"]:
            return {}
        values = np.frombuffer(cols[column], dtype=np.float64)
        models = np.frombuffer(cols["model"], dtype=np.int32)
        ok = np.frombuffer(cols["outcome"], dtype=np.int32) == cats["outcome"].index("ok")
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
        with self._lock:
            requests = Counter(self._requests)
            errors = Counter(self._errors)
            cost = dict(self._cost)
            unpriced = Counter(self._unpriced)
            tokens = Counter(self._tokens)
            fallbacks = Counter(self._fallbacks)
            cache_hits = self._cache_hits
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
        data["call_id"] = _categorical(cols["call_id"], cats["call_id"])
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


def _categorical(codes: array[Any], values: list[str | None]) -> Any:
    import numpy as np
    import pandas as pd

    arr = np.frombuffer(codes, dtype=np.int32)
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
