"""What a job is doing: the projection before it starts, live counters while it runs, and the views.

The scheduler only bumps counters (a few additions per row); views read a :class:`JobStatus` snapshot
on their own clock (a few times a second), so progress costs the rows nothing. In a notebook the view
is a static HTML bar replaced in place (``coffee_nb.notebook.map_magic``); elsewhere a ``tqdm.auto`` bar.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from coffee_nb._shared._format import money
from coffee_nb.errors._errors import ConfigError

__all__ = ["JobStatus", "Progress", "Projection", "TqdmView", "View", "make_view"]


def _amount(value: Decimal | None, source: str) -> str:
    if value is None:
        return "unpriced"
    return money(value) + (" (sandbox prices)" if source == "sandbox" else "")


@dataclass(frozen=True, slots=True)
class Projection:
    """The job's cost before it starts: per-row worst cases summed, and an expected cost."""

    rows: int
    cached: int  # answered from the response cache at $0
    to_call: int
    unfilled: int  # rows whose template could not be filled (errors, not called)
    models: tuple[str, ...]
    worst: Decimal | None  # every row at its dearest model's worst case; None: a model is unpriced
    expected: Decimal | None  # every row on the first model, ``output_tokens`` out
    output_tokens: int
    measured: bool  # ``output_tokens`` is the average of cached answers (else an assumption)
    budget_left: Decimal | None  # the tightest hard limit's remaining amount (None: no hard limit)
    budget_label: str | None
    price_source: str = "unpriced"

    def line(self) -> str:
        chain = " → ".join(self.models)
        basis = "measured on cached rows" if self.measured else "assumed"
        parts = [
            f"map_rows: {self.rows:,} rows on {chain}: {self.cached:,} cached, {self.to_call:,} to call",
            f"expected ~{_amount(self.expected, self.price_source)} (~{self.output_tokens} output tokens a row, "
            f"{basis}), worst case {_amount(self.worst, self.price_source)}",
        ]
        if self.unfilled:
            parts.append(f"{self.unfilled:,} rows can't fill the template")
        if self.budget_left is not None:
            parts.append(f"{self.budget_label} budget left {money(self.budget_left)}")
            if self.expected is not None and self.expected > self.budget_left:
                parts.append("likely to stop at the budget (re-run later to resume)")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return self.line()

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A snapshot of a running (or finished) job, for views and ``on_progress`` hooks."""

    status: str  # "running", "done", "budget", "interrupted", "error"
    total: int
    answered: int  # including cached
    failed: int
    cached: int
    not_run: int
    in_flight: int
    spent: Decimal  # priced spend of this job so far (cached rows cost $0)
    unpriced: int  # rows answered by a model without a price
    projected: Decimal | None  # spent + the rows left at the average cost so far
    eta_s: float | None
    elapsed_s: float
    concurrency: int
    rate_limits: int  # 429s (and local rpm/tpm skips) seen on the chain's models
    waited_s: float  # time new rows were held back after rate limits or by rpm/tpm pacing
    price_source: str = "unpriced"

    @property
    def finished(self) -> int:
        return self.answered + self.failed + self.not_run

    def line(self) -> str:
        parts = [f"{self.finished:,}/{self.total:,} rows", f"{self.failed:,} failed", f"{self.cached:,} cached"]
        parts.append(f"{_amount(self.spent, self.price_source)} spent")
        if self.unpriced:
            parts.append(f"{self.unpriced:,} unpriced")
        if self.status == "running":
            if self.projected is not None:
                parts.append(f"~{money(self.projected)} projected")
            if self.eta_s is not None:
                parts.append(f"ETA {_duration(self.eta_s)}")
            parts.append(f"concurrency {self.concurrency}")
        else:
            parts.append(f"{self.elapsed_s:.1f} s")
        if self.not_run:
            parts.append(f"{self.not_run:,} not run")
        if self.rate_limits:
            parts.append(f"{self.rate_limits:,} rate limits ({self.waited_s:.1f} s held back)")
        return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 90 else f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """Live counters of one job, bumped by the scheduler (one thread: the job's event loop)."""

    __slots__ = (
        "projection",
        "total",
        "answered",
        "failed",
        "cached",
        "not_run",
        "in_flight",
        "spent",
        "unpriced",
        "called",
        "called_cost",
        "started",
        "first_launch",
        "concurrency",
        "rate_limits",
        "waited_s",
        "status",
        "price_source",
    )

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.total = projection.rows
        self.answered = self.failed = self.not_run = self.in_flight = self.unpriced = self.called = 0
        self.cached = 0
        self.spent = Decimal(0)
        self.called_cost = Decimal(0)  # priced spend of rows answered by a call (the average's numerator)
        self.started = time.monotonic()
        self.first_launch: float | None = None
        self.concurrency = 0
        self.rate_limits = 0
        self.waited_s = 0.0
        self.status = "running"
        self.price_source = projection.price_source

    def snapshot(self) -> JobStatus:
        now = time.monotonic()
        left = self.total - self.answered - self.failed - self.not_run
        projected: Decimal | None = self.spent
        eta: float | None = None
        if left > 0:
            if self.called:
                projected = self.spent + self.called_cost / self.called * left
                if self.first_launch is not None and now > self.first_launch:
                    eta = left / (self.called / (now - self.first_launch))
            elif self.projection.expected is not None and self.projection.to_call:
                projected = self.spent + self.projection.expected * left / self.projection.to_call
            else:
                projected = None
        return JobStatus(
            status=self.status,
            total=self.total,
            answered=self.answered,
            failed=self.failed,
            cached=self.cached,
            not_run=self.not_run,
            in_flight=self.in_flight,
            spent=self.spent,
            unpriced=self.unpriced,
            projected=projected,
            eta_s=eta,
            elapsed_s=now - self.started,
            concurrency=self.concurrency,
            rate_limits=self.rate_limits,
            waited_s=self.waited_s,
            price_source=self.price_source,
        )


class View(Protocol):
    """A progress display: told the projection, then polled with snapshots, then the end."""

    def start(self, projection: Projection) -> None: ...
    def update(self, status: JobStatus) -> None: ...
    def finish(self, status: JobStatus, note: str | None) -> None: ...


class TqdmView:
    """A ``tqdm.auto`` bar (outside notebooks): rows, with failures, cache hits, spend and ETA after it."""

    def __init__(self, total: int, *, file: Any = None) -> None:
        self.total = total
        self.file = file if file is not None else sys.stderr
        self.bar: Any = None

    def start(self, projection: Projection) -> None:
        # tqdm.auto's notebook bar needs ipywidgets (the `widgets` extra); without it, the text bar, which
        # tqdm.auto would fall back to anyway, but only after an "IProgress not found" warning in the cell
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]  # lazy: tqdm (it ships no type information)
        else:
            from tqdm.std import tqdm  # type: ignore[import-untyped]  # lazy: tqdm (it ships no type information)

        print(projection.line(), file=self.file)
        self.bar = tqdm(total=self.total, unit="row", desc="map_rows", file=self.file, mininterval=0.2, leave=True)

    def update(self, status: JobStatus) -> None:
        bar = self.bar
        if bar is None:
            return
        bar.n = status.finished
        postfix = f"{status.failed} failed, {status.cached} cached, {_amount(status.spent, status.price_source)}"
        if status.projected is not None:
            postfix += f", ~{money(status.projected)} projected"
        postfix += f", conc {status.concurrency}"
        if status.rate_limits:
            postfix += f", {status.rate_limits} rate limits"
        bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def finish(self, status: JobStatus, note: str | None) -> None:
        self.update(status)
        if self.bar is not None:
            self.bar.close()
        print(status.line(), file=self.file)


def in_kernel() -> bool:
    """Running inside a Jupyter kernel? (Looks only at what is already loaded: imports nothing.)"""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# The live view a notebook offers for a job (``coffee_nb.notebook.map_magic`` registers it when the extension
# loads: the notebook layer sits above jobs, so it hands its view down instead of being imported from here).
_KERNEL_VIEW: list[Callable[[int], View]] = []


def use_in_kernel(factory: Callable[[int], View]) -> None:
    """Show jobs run in a Jupyter kernel with ``factory(total_rows)`` (the notebook's live view)."""
    _KERNEL_VIEW[:] = [factory]


def make_view(progress: Any, total: int) -> View | None:
    """``True``: the notebook's view in a kernel (tqdm there too until ``%load_ext coffee_nb`` offers it), tqdm
    elsewhere; ``False``/None: none; or a View object."""
    if progress is None or progress is False:
        return None
    if progress is True:
        if _KERNEL_VIEW and in_kernel():
            return _KERNEL_VIEW[0](total)
        return TqdmView(total)
    if all(hasattr(progress, m) for m in ("start", "update", "finish")):
        view: View = progress
        return view
    raise ConfigError(f"progress must be True, False or a view with start/update/finish, got {progress!r}")
