"""The async scheduler of a ``map_rows`` job: how many rows are in flight, when the next one starts, when to stop.

- **Concurrency** is additive-increase / multiplicative-decrease: a 429 (or a local rpm/tpm skip) on any of
  the chain's models halves the limit, at most once a second, and holds new rows back for a short,
  jittered, growing pause, so in-flight rows retry on their own jittered backoff while nothing new piles
  on (no thundering herd); a full window of answers raises the limit by one, up to ``concurrency``.
- **Pacing**: when the first model declares ``rpm`` / ``tpm`` (``ModelSpec``), rows start no faster than
  those allow.
- **Budget**: a row the budget can't cover while other rows of ours are in flight (their reservations
  are the worst case, their costs rarely are) goes back to the queue, the limit shrinks to what is in
  flight, and nothing new starts until one of them settles. When every row in flight was refused, one
  row is tried alone: if even that one can't be covered (and nobody else holds reservations that may
  settle low), the job stops: the next row can't be covered.
- **Stopping**: an interrupt (or ``on_error="raise"``) cancels the rows in flight (AutoPicker releases
  their reservations) and marks the rest "not run"; a budget stop lets rows in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from coffee_nb._shared import _config
from coffee_nb.errors._errors import BudgetExceededError, ConfigError
from coffee_nb.jobs._job import held_elsewhere

if TYPE_CHECKING:
    from coffee_nb._shared._records import CallRecord
    from coffee_nb.jobs._job import Job
    from coffee_nb.jobs._progress import JobStatus

__all__ = ["Scheduler"]

log = logging.getLogger("coffee_nb")

_CANCEL = frozenset({"interrupted", "error", "fatal"})  # stops that cancel the rows in flight
_CUT_EVERY = 1.0  # seconds: at most one halving per burst of 429s
_PAUSE_BASE = 0.25  # seconds held back after the first burst; doubles per burst in a row
_PAUSE_MAX_DOUBLINGS = 5
_BUDGET_RETRY = 0.25  # seconds between tries while others hold reservations
_BUDGET_RETRIES = 40


class Scheduler:
    """Runs a job's rows on the current event loop; ``run()`` returns why it ended."""

    def __init__(
        self,
        job: Job,
        *,
        concurrency: int,
        tick: Callable[[JobStatus], bool] | None = None,
        tick_every: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.job = job
        self.max = concurrency
        self.limit = concurrency
        self.queue: deque[int] = deque(job.todo)
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self.hold = False  # a refused row waits for a reservation of ours to settle
        self.probe = False  # every row in flight was refused: try one alone
        self.paused_until = 0.0
        self.next_slot = 0.0
        self.interval = _pacing(job)
        self.tick = tick
        self.tick_every = tick_every
        self._rng = rng or random.Random()
        self._names = frozenset(job.names)
        self._hits = 0  # rate limits seen by the record sink (any thread)
        self._seen = 0
        self._cut_at = float("-inf")
        self._pauses = 0
        self._streak = 0
        self._budget_waits = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._interrupt_early = False
        self._sink = self._on_record  # one bound method: the sink registry removes it by identity

    # -- control, from any thread -------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop: cancel rows in flight, leave the rest not run. Safe from any thread."""
        loop = self._loop
        if loop is None:
            self._interrupt_early = True
        elif not loop.is_closed():
            with suppress(RuntimeError):  # the loop just ended: nothing left to stop
                loop.call_soon_threadsafe(self._stop, "interrupted", None)

    def _on_record(self, record: CallRecord) -> None:
        if record.error_class == "rate_limit" and record.model in self._names:
            self._hits += 1

    # -- the loop ---------------------------------------------------------------------------------------
    async def run(self) -> str:
        loop = self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        progress = self.job.progress
        progress.concurrency = self.limit
        if self._interrupt_early:
            self._stop("interrupted")
        _config.SINKS.add(self._sink)
        ticker = loop.create_task(self._ticker()) if self.tick is not None else None
        try:
            await self._launch(loop)
        except asyncio.CancelledError:  # our caller was cancelled: stop the rows, then let it through
            self._stop("interrupted")
            raise
        finally:
            if self.stop_reason in _CANCEL:
                for task in self.tasks:
                    task.cancel()
            if self.tasks:  # after a budget stop rows in flight finish; cancelled ones settle their budget
                await asyncio.gather(*self.tasks, return_exceptions=True)
            _config.SINKS.remove(self._sink)
            if ticker is not None:
                ticker.cancel()
                with suppress(asyncio.CancelledError):
                    await ticker
            reason = self.stop_reason or "interrupted"
            while self.queue:
                self.job.not_run(self.queue.popleft(), reason)
            progress.in_flight = 0
            progress.status = self.stop_reason or "done"
        return self.stop_reason or "done"

    async def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        wake = self._wake
        assert wake is not None
        progress = self.job.progress
        tasks, queue = self.tasks, self.queue
        while self.stop_reason is None:
            if not queue:
                if not tasks:
                    return
                await wake.wait()
                wake.clear()
                continue
            self._react(loop.time())
            if self.hold and not tasks:  # every row in flight was refused: one alone decides
                self.hold = False
                self.probe = True
            if self.hold or len(tasks) >= (1 if self.probe else self.limit):
                await wake.wait()
                wake.clear()
                continue
            now = loop.time()
            delay = max(self.paused_until, self.next_slot) - now
            if delay > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
                wake.clear()
                progress.waited_s += loop.time() - now
                continue
            if self.interval:
                self.next_slot = max(now, self.next_slot) + self.interval
            if progress.first_launch is None:
                progress.first_launch = time.monotonic()
            task = loop.create_task(self._row(queue.popleft()))
            tasks.add(task)
            task.add_done_callback(self._done)
            progress.in_flight = len(tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.job.progress.in_flight = len(self.tasks)
        if self._wake is not None:
            self._wake.set()

    def _stop(self, reason: str, error: BaseException | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.error = error
        if self._wake is not None:
            self._wake.set()

    # -- one row -------------------------------------------------------------------------------------
    async def _row(self, i: int) -> None:
        job = self.job
        start = time.perf_counter()
        try:
            message = await job.picker.ainvoke(job.input(i), **job.call_kwargs)
        except asyncio.CancelledError:
            job.not_run(i, self.stop_reason or "interrupted")
            raise
        except BudgetExceededError as exc:
            self._refused(i, exc)
            return
        except ConfigError as exc:  # the caller's mistake, the same for every row: stop and say so
            job.not_run(i, "stopped")
            self._stop("fatal", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a row's failure is that row's error; the job goes on
            job.failed(i, exc, time.perf_counter() - start)
            self._settled(ok=False)
            if job.on_error == "raise":
                self._stop("error", exc)
            return
        ok = job.answered(i, message, time.perf_counter() - start)
        self._settled(ok)
        if not ok and job.on_error == "raise":
            self._stop("error", ValueError(job.columns.error[i]))

    def _settled(self, ok: bool) -> None:
        self.hold = self.probe = False  # a reservation of ours was settled: a held-back row may fit now
        if ok:
            self._streak += 1
            if self._streak >= self.limit:
                self._streak = 0
                self._pauses = 0
                if self.limit < self.max:
                    self.limit += 1
                    self.job.progress.concurrency = self.limit
        hook = self.job.on_progress
        if hook is not None:
            try:
                hook(self.job.progress.snapshot())
            except KeyboardInterrupt:
                self._stop("interrupted")
            except Exception:
                log.exception("coffee_nb: map_rows on_progress hook failed; it is switched off")
                self.job.on_progress = None

    def _refused(self, i: int, exc: BudgetExceededError) -> None:
        if self.stop_reason is not None:
            self.job.not_run(i, self.stop_reason)
            return
        others = len(self.tasks) - 1  # this row's task is still in the set
        if others > 0:  # their worst cases are held: wait for one to settle, with no more in flight than now
            self.queue.appendleft(i)
            self.hold = True
            self.limit = max(1, min(self.limit, others))
            self.job.progress.concurrency = self.limit
            return
        if self._budget_waits < _BUDGET_RETRIES and held_elsewhere(self.job.picker.budget):
            self._budget_waits += 1  # another kernel or worker holds reservations: they may settle low
            self.queue.appendleft(i)
            self.probe = True
            if self._loop is not None:
                self.paused_until = self._loop.time() + _BUDGET_RETRY
            return
        self.job.not_run(i, "budget")  # nothing of ours in flight, and still it can't be covered
        self._stop("budget", exc)

    # -- rate limits ---------------------------------------------------------------------------------
    def _react(self, now: float) -> None:
        hits = self._hits
        if hits == self._seen:
            return
        progress = self.job.progress
        progress.rate_limits += hits - self._seen
        self._seen = hits
        if now - self._cut_at < _CUT_EVERY:
            return
        self._cut_at = now
        self._streak = 0
        self.limit = max(1, self.limit // 2)
        progress.concurrency = self.limit
        self._pauses = min(self._pauses + 1, _PAUSE_MAX_DOUBLINGS)
        pause = _PAUSE_BASE * 2 ** (self._pauses - 1) * (0.5 + self._rng.random() / 2)
        self.paused_until = max(self.paused_until, now + pause)

    async def _ticker(self) -> None:
        """Every ``tick_every`` seconds, hand a snapshot to ``tick`` (in a thread: it may do I/O); True stops."""
        tick = self.tick
        assert tick is not None
        while True:
            await asyncio.sleep(self.tick_every)
            try:
                stop = await asyncio.to_thread(tick, self.job.progress.snapshot())
            except Exception:
                log.exception("coffee_nb: map_rows progress report failed")
                continue
            if stop:
                self._stop("interrupted")


def _pacing(job: Job) -> float:
    """Seconds between row starts that the first model's declared rpm / tpm allow (0: no limit)."""
    cands = job.picker.candidates
    limiter = cands[0].limiter if cands else None
    if limiter is None:
        return 0.0
    rpm, tpm = limiter.limit.rpm, limiter.limit.tpm
    interval = 60.0 / rpm if rpm else 0.0
    if tpm:
        proj = job.progress.projection
        per_row = proj.output_tokens + (sum(len(p or "") for p in job.prompts) // max(1, 4 * len(job.prompts)))
        interval = max(interval, 60.0 * per_row / tpm)
    return interval
