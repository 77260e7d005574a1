"""Time limits for sync calls that can't bound themselves: a worker thread does the blocking call, the
caller waits for it with a timeout and walks away when it runs out.

Async calls use ``asyncio.wait_for`` (a cancelled await really stops the request). A sync call can't
be interrupted from outside, so for models without a native per-call timeout the call runs in a worker
thread and the caller stops waiting at the limit; the abandoned call finishes (or hits its client's own
timeout) in the background, and its result is dropped. Sync streams are pumped the same way, chunk
by chunk, so the time to the first chunk and the gaps between chunks are bounded too.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import partial
from typing import Any, Generic, TypeVar

__all__ = ["AttemptTimeoutError", "FirstTokenTimeoutError", "IdleTimeoutError", "Pump", "call_within", "submit"]

T = TypeVar("T")
_IDLE_EXIT = 60.0  # seconds a spare worker waits for work before it exits


class AttemptTimeoutError(TimeoutError):
    """An attempt ran past one of coffee_nb's limits (classified as ``timeout``: the call moves on)."""

    def __init__(self, what: str, seconds: float, model: str) -> None:
        self.seconds = seconds
        self.model = model
        super().__init__(f"{model}: {what} after {seconds:.3g}s")


class FirstTokenTimeoutError(AttemptTimeoutError):
    """No first chunk within the first-token limit."""


class IdleTimeoutError(AttemptTimeoutError):
    """A stream stalled: no chunk within the idle limit."""


class _Job:
    __slots__ = ("fn", "done", "value", "error", "abandoned")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class _Workers:
    """Daemon threads that run blocking calls; grows when every worker is busy (an abandoned call
    keeps its worker until it returns), shrinks when idle."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, fn: Callable[[], Any]) -> _Job:
        # in the caller's context: what it set (a cassette block, LangSmith's parent run, the cell) holds there
        job = _Job(partial(contextvars.copy_context().run, fn))
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        if spawn:
            threading.Thread(target=self._work, name="coffee_nb-call", daemon=True).start()
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody counts on this worker: leave
                        self._idle -= 1
                        return
                continue
            try:
                job.value = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.error = exc
            job.fn = _done
            with self._lock:  # idle again before the caller wakes: its next submit reuses this worker
                self._idle += 1
            job.done.release()


def _done() -> None:
    return None


_workers = _Workers()


def submit(fn: Callable[[], Any]) -> _Job:
    """Run ``fn()`` on a worker thread; the job's ``done`` lock is released when it returns."""
    return _workers.submit(fn)


def _wait(job: _Job, timeout: float | None) -> bool:
    if timeout is None:
        job.done.acquire()
        return True
    return job.done.acquire(timeout=max(0.0, timeout))


def call_within(fn: Callable[[], T], timeout: float, on_timeout: Callable[[], BaseException]) -> T:
    """``fn()`` in a worker thread; raise ``on_timeout()`` if it hasn't returned within ``timeout`` seconds.

    A KeyboardInterrupt while waiting abandons the call the same way and propagates.
    """
    job = _workers.submit(fn)
    try:
        finished = _wait(job, timeout)
    except BaseException:
        job.abandoned = True
        raise
    if not finished:
        job.abandoned = True
        raise on_timeout()
    if job.error is not None:
        raise job.error
    value: T = job.value
    return value


_END = object()


class Pump(Generic[T]):
    """Iterate a blocking iterator in a worker thread; :meth:`next` waits with a timeout.

    ``close()`` (or a timeout) tells the worker to stop and close the iterator at its next chunk,
    which closes the HTTP response of a streaming model call.
    """

    def __init__(self, make: Callable[[], Iterator[T]], notify: queue.SimpleQueue[Pump[T]] | None = None) -> None:
        self._items: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._notify = notify  # told (this pump put on it) after each item: one waiter can watch several pumps
        self._job = _workers.submit(lambda: self._run(make))
        self.finished = False

    def _put(self, item: Any, error: BaseException | None) -> None:
        self._items.put((item, error))
        if self._notify is not None:
            self._notify.put(self)

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        iterator: Any = None
        try:
            iterator = make()
            for item in iterator:
                if self._stop.is_set():
                    break
                self._put(item, None)
            else:
                self._put(_END, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_END, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None and self._stop.is_set():
                with suppress(Exception):  # the consumer is gone: nothing to tell
                    close()

    def next(self, timeout: float | None, on_timeout: Callable[[], BaseException]) -> T | None:
        """The next item, None at the end; raises the iterator's error, or ``on_timeout()`` after ``timeout`` s."""
        try:
            item, error = self._items.get(timeout=None if timeout is None else max(0.0, timeout))
        except queue.Empty:
            self.close()
            raise on_timeout() from None
        except BaseException:
            self.close()
            raise
        if item is _END:
            self.finished = True
            if error is not None:
                raise error
            return None
        value: T = item
        return value

    def close(self) -> None:
        self._stop.set()
