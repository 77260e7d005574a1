"""LocalMetrics: every attempt kept in memory (see ``_store``), read back as a typed snapshot, a dict or DataFrames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coffee_nb.metrics._snapshot import MetricsSnapshot, Samples, build_snapshot, model_frame
from coffee_nb.metrics._store import CATEGORIES, COLUMNS, ColumnStore, Counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocalMetrics"]

_SAMPLED = ("latency_s", "ttft_s", "cache_hit", "group")  # the columns latency stats are drawn from


class LocalMetrics(ColumnStore):
    """In-memory metrics: ``snapshot()``, ``get_metrics()``, ``to_dataframe()``, ``summary()``, ``reset()``.

    >>> metrics = LocalMetrics()
    >>> llm = AutoPicker("sandbox/fast", metrics=metrics)
    >>> metrics.snapshot().attempts, metrics.get_metrics()["requests"]["total"]

    ``capacity`` keeps only the last N attempts for the DataFrame and the latency percentiles;
    every counter (requests, errors, tokens, costs, fallbacks) stays exact regardless.
    """

    def __repr__(self) -> str:
        s = self.snapshot()
        return f"LocalMetrics(requests={s.attempts}, errors={s.errors}, cost=${s.cost}, capacity={self.capacity})"

    def _repr_html_(self) -> str:
        """The per-model summary, so ``metrics`` alone in a cell shows well even without widgets."""
        if not len(self):
            return "<i>coffee_nb metrics: no calls yet</i>"
        return str(self.summary().to_html(float_format=lambda x: f"{x:.6g}", na_rep="-"))

    def snapshot(self) -> MetricsSnapshot:
        """Totals, per-model stats, fallback routes and error classes now, as frozen typed values."""
        counts = self._read(_SAMPLED)
        return build_snapshot(counts.groups, counts.cache_hits, counts.calls, _samples(counts))

    def get_metrics(self) -> dict[str, Any]:
        """Requests, errors, costs, latency, tokens, fallbacks and totals, as plain Python values.

        Costs are ``Decimal`` USD (exact); latency in seconds over the retained window.
        The same numbers, typed: ``snapshot()``.
        """
        return self.snapshot().as_dict()

    def samples(self) -> Samples:
        """Per model, latencies and times to first token of the answered attempts in the window (numpy arrays)."""
        return _samples(self._read(_SAMPLED))

    def latencies(self, model: str | None = None, *, ttft: bool = False) -> list[float]:
        """Latencies (or times to first token) of answered attempts in the window."""
        import numpy as np  # lazy: numpy

        samples = self.samples()
        by_model = samples.ttft if ttft else samples.latency
        arrays = list(by_model.values()) if model is None else [by_model.get(model, np.empty(0))]
        values: list[float] = np.concatenate(arrays).tolist() if arrays else []
        return values

    def to_dataframe(self, *, last: int | None = None) -> pd.DataFrame:
        """One row per attempt (oldest first); ``last=N``: only the N most recent.

        dtypes: ``started_at`` datetime64[ns, UTC]; ``model``, ``provider``, ``role``, ``outcome``,
        ``error_class``, ``price_source``, ``call_id`` category; ``latency_s``/``ttft_s`` float64
        (NaN: none); token columns int64; ``cost_usd`` float64 with NaN for unpriced attempts (exact
        Decimal totals: ``snapshot().cost``); ``priced``, ``tokens_estimated``, ``streamed``,
        ``cache_hit`` bool.
        """
        import numpy as np  # lazy: numpy
        import pandas as pd  # lazy: pandas

        counts = self._read(COLUMNS, last)
        cols = counts.columns
        keys = [group[0] for group in counts.groups]
        groups = np.frombuffer(cols["group"], dtype=np.int32)
        data: dict[str, Any] = {}
        data["started_at"] = pd.to_datetime(np.frombuffer(cols["started_at"], dtype=np.float64) * 1e9, utc=True)
        data["call_id"] = _categorical(np.frombuffer(cols["call_id"], dtype=np.int32), counts.call_ids)
        data["attempt"] = np.frombuffer(cols["attempt"], dtype=np.int16)
        for name in CATEGORIES:  # the group column, decoded into one category column each
            values = list(dict.fromkeys(getattr(key, name) for key in keys))
            index = {v: j for j, v in enumerate(values)}
            lookup = np.array([index[getattr(key, name)] for key in keys], dtype=np.int32)
            data[name] = _categorical(lookup[groups] if keys else np.zeros(0, dtype=np.int32), values)
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
        """Per model: calls, errors, fallbacks, tokens, cost, share of cost, unpriced answers, p50/p95 latency."""
        return model_frame(self.snapshot())


def _samples(counts: Counts) -> Samples:
    """Split the window's answered latencies and TTFTs by model (models in the order first seen)."""
    import numpy as np  # lazy: numpy

    keys = [group[0] for group in counts.groups]
    if not keys:
        return Samples({}, {})
    models: dict[Any, int] = {}
    model_of = np.array([models.setdefault(key.model, len(models)) for key in keys], dtype=np.int32)
    answered = np.array([key.outcome == "ok" for key in keys], dtype=bool)  # StrEnum equality
    cols = counts.columns
    groups = np.frombuffer(cols["group"], dtype=np.int32)
    row_model = model_of[groups]
    ok = answered[groups] & (np.frombuffer(cols["cache_hit"], dtype=np.int8) == 0)  # cache hits sent no request
    names = [str(m) for m in models]
    found: list[dict[str, Any]] = []
    for column in ("latency_s", "ttft_s"):
        values = np.frombuffer(cols[column], dtype=np.float64)
        mask = ok & ~np.isnan(values)
        present = np.flatnonzero(np.bincount(row_model[mask], minlength=len(names)))
        found.append({names[code]: values[mask & (row_model == code)] for code in present})
    return Samples(*found)


def _categorical(arr: Any, values: list[Any]) -> Any:
    import numpy as np  # lazy: numpy
    import pandas as pd  # lazy: pandas

    values = [None if v is None else str(v) for v in values]  # StrEnum members → plain strings
    if None not in values:
        return pd.Categorical.from_codes(arr, categories=values)
    # None is a value of ours (e.g. no error class); in pandas it is a missing value (code -1)
    kept = [v for v in values if v is not None]
    lookup = {v: i for i, v in enumerate(kept)}
    remap = np.array([-1 if v is None else lookup[v] for v in values], dtype=np.int32)
    return pd.Categorical.from_codes(remap[arr], categories=kept)
