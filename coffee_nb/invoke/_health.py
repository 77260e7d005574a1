"""Router health: per model, is it cooling down and why, how it has been doing lately, and what headroom
its rate limits leave. ``picker.health()`` for one AutoPicker, ``coffee_nb.health()`` for the session.

Each candidate keeps a small ring of its recent attempts (fed by the plan as it settles them); a
:class:`ModelHealth` is a frozen reading of that and of the breaker, taken on request.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from coffee_nb._shared._records import CallRecord, Outcome

if TYPE_CHECKING:
    import pandas as pd

    from coffee_nb.invoke._models import Candidate

__all__ = ["Health", "ModelHealth", "RecentAttempts", "picker_health"]

RECENT = 100  # attempts remembered per model


class RecentAttempts:
    """The last attempts of one model: (ok, latency) and the last error. Cheap to feed on the hot path."""

    __slots__ = ("_lock", "attempts", "first_tokens", "last_error", "last_error_class", "last_error_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts: deque[tuple[bool, float]] = deque(maxlen=RECENT)
        self.first_tokens: deque[float] = deque(maxlen=RECENT)  # time to first token of answered streams
        self.last_error: str | None = None
        self.last_error_class: str | None = None
        self.last_error_at: datetime | None = None

    def add(self, record: CallRecord) -> None:
        """Count an attempt that reached the model (skips don't: the model wasn't asked)."""
        outcome = record.outcome
        if outcome is Outcome.SKIPPED or outcome is Outcome.CANCELLED:
            return
        if outcome is Outcome.OK:
            self.attempts.append((True, record.latency_s))  # a deque append is atomic: no lock on the hot path
            if record.ttft_s is not None:
                self.first_tokens.append(record.ttft_s)
            return
        with self._lock:
            self.attempts.append((False, record.latency_s))
            self.last_error = record.error_message  # redacted when the record was made
            self.last_error_class = record.error_class
            self.last_error_at = record.started_at

    def latencies(self) -> list[float]:
        """Latencies of the recent answered attempts (what ``Policy(hedge_after="p95")`` reads)."""
        return [latency for ok, latency in list(self.attempts) if ok]

    def ttfts(self) -> list[float]:
        """Times to first token of the recent answered streams (what a streamed ``hedge_after="p95"`` reads)."""
        return list(self.first_tokens)

    def snapshot(self) -> tuple[list[tuple[bool, float]], str | None, str | None, datetime | None]:
        with self._lock:
            return list(self.attempts), self.last_error, self.last_error_class, self.last_error_at


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """One model's health. ``state`` is "closed" (in use), "open" (skipped until ``reopens_at``) or
    "half-open" (the next call probes it); rates and latencies are over its last attempts."""

    model: str
    state: str
    reopens_at: datetime | None
    reopens_in_s: float | None
    consecutive_failures: int
    recent_attempts: int
    error_rate: float | None
    p50_latency_s: float | None
    p95_latency_s: float | None
    last_error_class: str | None
    last_error: str | None
    last_error_at: datetime | None
    rpm_headroom: int | None
    tpm_headroom: int | None

    @classmethod
    def of(cls, cand: Candidate, now: float | None = None) -> ModelHealth:
        now = time.monotonic() if now is None else now
        breaker = cand.breaker
        state = breaker.state_at(now)
        if state == "closed":
            reopens_at, reopens_in = None, None
        elif state == "open":
            reopens_in = max(0.0, breaker.open_until() - now)
            reopens_at = datetime.now(UTC) + timedelta(seconds=reopens_in)
        else:  # half-open: the next call probes it (or one is probing it now)
            reopens_at, reopens_in = None, 0.0
        attempts, last_error, last_class, last_at = cand.recent.snapshot()
        ok_latencies = sorted(latency for ok, latency in attempts if ok)
        rpm, tpm = cand.limiter.headroom(now) if cand.limiter is not None else (None, None)
        return cls(
            model=cand.name,
            state=state,
            reopens_at=reopens_at,
            reopens_in_s=reopens_in,
            consecutive_failures=breaker.failures,
            recent_attempts=len(attempts),
            error_rate=(sum(not ok for ok, _ in attempts) / len(attempts)) if attempts else None,
            p50_latency_s=_percentile(ok_latencies, 0.50),
            p95_latency_s=_percentile(ok_latencies, 0.95),
            last_error_class=last_class,
            last_error=last_error,
            last_error_at=last_at,
            rpm_headroom=rpm,
            tpm_headroom=tpm,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on a sorted sequence."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class Health(Sequence[ModelHealth]):
    """Every model's :class:`ModelHealth`, in chain order; a table in notebooks, a DataFrame on request."""

    def __init__(self, rows: Iterable[ModelHealth]) -> None:
        self.rows = tuple(rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            for row in self.rows:
                if row.model == index:
                    return row
            raise KeyError(index)
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ModelHealth]:
        return iter(self.rows)

    def __repr__(self) -> str:
        parts = [
            f"{r.model}: {r.state}" + (f" ({r.reopens_in_s:.0f}s)" if r.state == "open" else "") for r in self.rows
        ]
        return f"Health({'; '.join(parts)})"

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd  # lazy: pandas

        columns = [f.name for f in fields(ModelHealth)]
        return pd.DataFrame([r.as_dict() for r in self.rows], columns=columns).set_index("model")

    def _repr_html_(self) -> str:
        head = (
            "<tr><th>model</th><th>state</th><th>fails in a row</th><th>errors</th><th>p50 / p95</th>"
            "<th>last error</th></tr>"
        )
        body = []
        for r in self.rows:
            state = r.state + (f", reopens in {r.reopens_in_s:.0f} s" if r.state == "open" and r.reopens_in_s else "")
            rate = "–" if r.error_rate is None else f"{r.error_rate:.0%} of {r.recent_attempts}"
            lat = "–" if r.p50_latency_s is None else f"{r.p50_latency_s:.2f} / {r.p95_latency_s or 0:.2f} s"
            err = "" if r.last_error_class is None else f"{r.last_error_class}: {r.last_error or ''}"
            body.append(
                f"<tr><td>{html.escape(r.model)}</td><td>{html.escape(state)}</td><td>{r.consecutive_failures}</td>"
                f"<td>{rate}</td><td>{lat}</td><td>{html.escape(err[:120])}</td></tr>"
            )
        return f"<table><caption>coffee_nb router health</caption>{head}{''.join(body)}</table>"


def picker_health(candidates: Iterable[Candidate]) -> Health:
    now = time.monotonic()
    return Health(ModelHealth.of(c, now) for c in candidates)
