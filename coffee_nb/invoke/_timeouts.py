"""Time limits for sync calls that can't bound themselves: a worker thread does the blocking call, the
caller waits for it with a timeout and walks away when it runs out.

Async calls use ``asyncio.wait_for`` (a cancelled await really stops the request). A sync call can't
be interrupted from outside, so for models without a native per-call timeout the call runs in a worker
thread and the caller stops waiting at the limit; the abandoned call finishes (or hits its client's own
timeout) in the background, where ``on_late`` settles it: a provider bills an answer nobody waited for,
so its cost is charged when it ends. Sync streams are pumped the same way, chunk by chunk, so the time
to the first chunk and the gaps between chunks are bounded too.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import partial
from typing import Any, Generic, TypeVar

from coffee_nb._shared._http import RESPONSES, abort

__all__ = ["AttemptTimeoutError", "FirstTokenTimeoutError", "IdleTimeoutError", "Pump", "call_within", "submit"]

T = TypeVar("T")
log = logging.getLogger("coffee_nb")
_IDLE_EXIT = 60.0  # seconds a spare worker waits for work before it exits


class AttemptTimeoutError(TimeoutError):
    """An attempt ran past one of coffee_nb's limits (classified as ``timeout``: the call moves on).

    ``settles_later``: the call goes on in the background and is settled when it ends (its reservation
    is held until then)."""

    def __init__(self, what: str, seconds: float, model: str) -> None:
        self.seconds = seconds
        self.model = model
        self.settles_later = False
        super().__init__(f"{model}: {what} after {seconds:.3g}s")


class FirstTokenTimeoutError(AttemptTimeoutError):
    """No first chunk within the first-token limit."""


class IdleTimeoutError(AttemptTimeoutError):
    """A stream stalled: no chunk within the idle limit."""


Late = Callable[[Any, "BaseException | None"], None]  # (value, error) of a call that ended after its caller left


class _Job:
    __slots__ = ("fn", "done", "value", "error", "abandoned", "ended", "late")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.ended = False
        self.late: Late | None = None


# Taken only where a caller walks away as its job ends: who settles the result (the caller, or the late
# handler on the worker) is decided under it, so neither both nor none do.
_handover = threading.Lock()


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
            with _handover:
                job.ended = True
                late = job.late
            with self._lock:  # idle again before the caller wakes: its next submit reuses this worker
                self._idle += 1
            job.done.release()
            if late is not None:  # the caller left: settle here (on this worker, after the fact)
                _settle_late(late, job)


def _done() -> None:
    return None


def _settle_late(late: Late, job: _Job) -> None:
    value, error = job.value, job.error
    job.value = job.error = None
    try:
        late(value, error)
    except Exception:  # on a worker nobody waits for: say so, never kill the worker
        log.exception("coffee_nb: settling a call that ended after its timeout failed")


_workers = _Workers()


def submit(fn: Callable[[], Any]) -> _Job:
    """Run ``fn()`` on a worker thread; the job's ``done`` lock is released when it returns."""
    return _workers.submit(fn)


def _wait(job: _Job, timeout: float | None) -> bool:
    if timeout is None:
        job.done.acquire()
        return True
    return job.done.acquire(timeout=max(0.0, timeout))


def call_within(
    fn: Callable[[], T], timeout: float, on_timeout: Callable[[], BaseException], on_late: Late | None = None
) -> T:
    """``fn()`` in a worker thread; raise ``on_timeout()`` if it hasn't returned within ``timeout`` seconds.

    The call goes on in the background; ``on_late(value, error)`` gets its result when it ends (on the
    worker), and the timeout error says so (``settles_later``). A KeyboardInterrupt while waiting abandons
    the call and propagates (the caller settles the attempt as cancelled; no late settlement then).
    """
    job = _workers.submit(fn)
    try:
        finished = _wait(job, timeout)
    except BaseException:  # interrupted: the caller's attempt is settled as cancelled there, so no late one
        _walk_away(job, None)
        raise
    if not finished:
        if _walk_away(job, on_late):
            error = on_timeout()
            if on_late is not None and isinstance(error, AttemptTimeoutError):
                error.settles_later = True
            raise error
        job.done.acquire()  # it ended as we gave up: its result is ours after all
    if job.error is not None:
        raise job.error
    value: T = job.value
    return value


def _walk_away(job: _Job, on_late: Late | None) -> bool:
    """Leave ``job`` to ``on_late``; False when it has ended already (the caller takes its result)."""
    with _handover:
        if job.ended:
            return False
        job.abandoned = True
        job.late = on_late
    return True


_END = object()


class Pump(Generic[T]):
    """Iterate a blocking iterator in a worker thread; :meth:`next` waits with a timeout.

    ``close()`` (or a timeout) tells the worker to stop and close the iterator at its next chunk,
    which closes the HTTP response of a streaming model call.
    """

    def __init__(self, make: Callable[[], Iterator[T]], notify: queue.SimpleQueue[Pump[T]] | None = None) -> None:
        self._items: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._responses: list[Any] = []  # what the stream opened through the pooled client (see close)
        self._notify = notify  # told (this pump put on it) after each item: one waiter can watch several pumps
        self._job = _workers.submit(lambda: self._run(make))
        self.finished = False

    def _put(self, item: Any, error: BaseException | None) -> None:
        self._items.put((item, error))
        if self._notify is not None:
            self._notify.put(self)

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        iterator: Any = None
        RESPONSES.set(self._responses)  # in this worker's own copy of the caller's context
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
        """Stop the stream: the worker closes it at its next chunk, or at once when it was opened through
        coffee_nb's pooled client (its socket is shut down: a losing hedge or a stalled stream frees its
        worker and connection now, not at its next chunk or read timeout)."""
        if not self._stop.is_set():
            self._stop.set()
            if self._responses:
                abort(self._responses)
