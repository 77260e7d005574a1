"""One ``map_rows`` job: its rows' prompts and cache keys, the projection, and each row's outcome.

Preparation runs before anything is sent: every row's prompt is rendered, looked up in the response
cache (a hit is that row's answer at $0, recorded like ``%%llm``'s), and the rest are costed. While the
job runs, :meth:`Job.answered` / :meth:`Job.failed` turn a call's result into the row's columns;
answers go to the cache from a writer thread, so the event loop never waits for SQLite.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from coffee_nb._shared._format import content_text
from coffee_nb._shared._records import CallRecord, Outcome, Role, publish
from coffee_nb.invoke._summary import CallSummary
from coffee_nb.jobs._columns import Columns
from coffee_nb.jobs._progress import JobStatus, Progress, Projection
from coffee_nb.pricing._pricing import from_pico

if TYPE_CHECKING:
    from coffee_nb.jobs._schema import Schema
    from coffee_nb.replay._cache import ResponseCache
    from coffee_nb.session._interpolate import Prompt

__all__ = ["CacheWriter", "Job", "KeyMessage", "describe_error"]

ASSUMED_OUTPUT_TOKENS = 200  # the expected answer length before any row (or cached answer) says otherwise
_ZERO = Decimal(0)


class KeyMessage(NamedTuple):
    """A message as the cache key and the token bound read it (type and content), without building one."""

    type: str
    content: Any  # text, or content blocks (a row with an image)


def describe_error(exc: BaseException) -> str:
    """``Class: short message`` for the ``error`` column (the last attempt's error for a failed chain)."""
    name = type(exc).__name__
    attempts = getattr(exc, "attempts", None)
    if attempts:
        last = next((r for r in reversed(attempts) if r.error_class), attempts[-1])
        detail = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}, last {last.model}: {last.error_class}"
        if last.error_message:
            detail += f" ({last.error_message.splitlines()[0][:160]})"
        return f"{name}: {detail}"
    lines = str(exc).strip().splitlines()
    return f"{name}: {lines[0] if lines else ''}"


class CacheWriter:
    """Puts answers into the response cache from one background thread.

    ``ResponseCache.put`` commits each answer on its own, an fsync each: at hundreds of answers a second
    that costs the machine more than the calls. So the answers of the next ``GATHER`` seconds share one
    transaction on the cache's connection. A crash loses at most that moment's answers: those rows are
    called again on resume.
    """

    BATCH = 256  # answers per transaction at most
    GATHER = 0.2  # seconds an answer may wait for others to share its commit (what a crash could lose)

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self._queue: queue.SimpleQueue[tuple[str, Any, dict[str, Any]] | None] = queue.SimpleQueue()
        self._failed = False
        self._thread = threading.Thread(target=self._drain, name="coffee_nb-cache-writer", daemon=True)
        self._thread.start()

    def put(self, key: str, message: Any, meta: dict[str, Any]) -> None:
        self._queue.put((key, message, meta))

    def _drain(self) -> None:
        done = False
        while not done:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            until = time.monotonic() + self.GATHER
            while len(batch) < self.BATCH:  # answers of the next moment go in the same transaction
                left = until - time.monotonic()
                try:
                    more = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch.append(more)
            if not self._failed:
                self._write(batch)

    def _write(self, batch: list[tuple[str, Any, dict[str, Any]]]) -> None:
        try:
            with self._transaction(len(batch) > 1):
                for item in batch:
                    self.cache.put(*item)
        except Exception as exc:  # noqa: BLE001 - a cache is a convenience: the job goes on without it
            self._failed = True  # said once; the answers are in the result either way
            warnings.warn(
                f"coffee_nb: the response cache can't store answers ({exc}); this job's rows won't resume from it",
                UserWarning,
                stacklevel=1,
            )

    @contextlib.contextmanager
    def _transaction(self, wanted: bool) -> Iterator[None]:
        """One transaction around several puts, on the cache's own connection when it has one we can use."""
        db, lock = getattr(self.cache, "_db", None), getattr(self.cache, "_lock", None)
        if not wanted or db is None or lock is None:
            yield
            return
        try:
            with lock:
                db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # e.g. a transaction already open on that connection: plain puts then
            yield
            return
        try:
            yield
        finally:
            with lock:
                db.execute("COMMIT")

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()


class Job:
    """The rows of one ``map_rows`` call and what became of each."""

    def __init__(
        self,
        *,
        picker: Any,
        prompts: list[Prompt | None],
        system: str | None,
        keys: list[str | None],
        columns: Columns,
        schema: Schema | None,
        call_kwargs: dict[str, Any],
        cache: ResponseCache | None,
        on_error: str,
        on_progress: Callable[[JobStatus], Any] | None,
    ) -> None:
        self.picker = picker
        self.names = list(picker.model_names)
        self.prompts = prompts
        self.system = system
        self.keys = keys
        self.columns = columns
        self.schema = schema
        self.call_kwargs = call_kwargs
        self.on_error = on_error
        self.on_progress = on_progress
        self.cache = cache
        self.writer: CacheWriter | None = None  # started with the first answer to store
        self.todo: list[int] = []
        self.progress: Progress  # set by prepare()

    # -- before the job --------------------------------------------------------------------------------
    def prepare(self, sinks: tuple[Callable[[CallRecord], Any], ...]) -> Projection:
        """Fill the rows the cache answers (hits are published to ``sinks``), list the rest, and cost them."""
        from coffee_nb.pricing._tokens import estimate_prompt, images_tokens, text_bound  # lazy: %load_ext path

        cache = self.cache
        cached = unfilled = 0
        cached_output = 0
        for i, prompt in enumerate(self.prompts):
            if prompt is None:
                unfilled += 1
                continue
            key = self.keys[i]  # re-read: a cache that fails is dropped for the rest
            if key is not None and cache is not None:
                hit = self._from_cache(i, cache, key, sinks)
                if hit is not None:
                    cached += 1
                    cached_output += hit
                    continue
            self.todo.append(i)
        cands = self.picker.candidates
        max_tokens = self.call_kwargs.get("max_tokens")
        from coffee_nb.invoke._invoker import DEFAULT_OUTPUT_ESTIMATE  # lazy: langchain_core

        caps = [max_tokens or c.output_cap or DEFAULT_OUTPUT_ESTIMATE for c in cands]
        prices = [c.facts.price for c in cands]
        measured = cached > 0
        out = cached_output // cached if measured else min(caps[0], ASSUMED_OUTPUT_TOKENS)
        primary = prices[0]
        priced = None not in prices
        worst: int | None = 0 if priced else None  # a row's worst case: its dearest model, every output token
        expected: int | None = 0 if primary is not None else None
        for i in self.todo:
            messages = self._key_messages(i)
            if worst is not None:
                bound = text_bound(messages)  # what a reservation holds: no tokenizer needed (images by rule)
                worst += max(
                    p.pico(bound + images_tokens(messages, c.provider, c.catalog_model)[0], cap)
                    for p, cap, c in zip(prices, caps, cands, strict=True)
                    if p is not None
                )
            if expected is not None and primary is not None:
                expected += primary.pico(estimate_prompt(messages), out)
        left, label = budget_left(self.picker.budget)
        projection = Projection(
            rows=len(self.prompts),
            cached=cached,
            to_call=len(self.todo),
            unfilled=unfilled,
            models=tuple(self.names),
            worst=None if worst is None else from_pico(worst),
            expected=None if expected is None else from_pico(expected),
            output_tokens=out,
            measured=measured,
            budget_left=left,
            budget_label=label,
            price_source=primary.source if primary is not None else "unpriced",
        )
        progress = self.progress = Progress(projection)
        progress.answered = progress.cached = cached
        progress.failed = unfilled
        return projection

    def _key_messages(self, i: int) -> list[KeyMessage]:
        prompt = self.prompts[i] or ""
        if self.system:
            return [KeyMessage("system", self.system), KeyMessage("human", prompt)]
        return [KeyMessage("human", prompt)]

    def _from_cache(
        self, i: int, cache: ResponseCache, key: str, sinks: tuple[Callable[[CallRecord], Any], ...]
    ) -> int | None:
        """Fill row ``i`` from the cache; its output tokens, or None on a miss."""
        start = time.perf_counter()
        try:
            found = cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache is a convenience: call the rows instead
            warnings.warn(f"coffee_nb: the response cache can't be read ({exc}); calling every row", stacklevel=4)
            self.keys = [None] * len(self.keys)  # nothing more to look up, nothing to store
            return None
        if found is None:
            return None
        message, meta = found
        text = content_text(message.content)
        values: dict[str, Any] | str = text
        if self.schema is not None:
            try:
                values = self.schema.parse(text)
            except ValueError:
                return None  # stored by someone else and not valid here: ask again
        tokens = meta.get("tokens") or {}
        n_in, n_out = int(tokens.get("input", 0)), int(tokens.get("output", 0))
        model, provider = str(meta.get("model", "?")), str(meta.get("provider", "?"))
        latency = time.perf_counter() - start
        self.columns.answered(i, values, model, meta.get("fallback_from"), (n_in, n_out), _ZERO, latency, True)
        record = CallRecord(
            call_id=uuid.uuid4().hex,
            attempt=0,
            role=Role.PRIMARY,
            provider=provider,
            model=model,
            outcome=Outcome.OK,
            started_at=datetime.now(UTC),
            latency_s=latency,
            input_tokens=n_in,
            output_tokens=n_out,
            cost=_ZERO,
            price_source="cache",
            cache_hit=True,
        )
        publish(sinks, record)  # like a %%llm cache hit: counted by metrics and dashboards, at $0
        return n_out

    # -- while it runs ------------------------------------------------------------------------------
    def input(self, i: int) -> Any:
        """What row ``i`` sends: its prompt, after the system message when there is one."""
        prompt = self.prompts[i] or ""
        if not self.system and isinstance(prompt, str):
            return prompt  # AutoPicker's fast path takes the string as it is
        from langchain_core.messages import HumanMessage, SystemMessage  # lazy: langchain_core

        if not self.system:  # content blocks (a row with an image): one message of them
            return [HumanMessage(prompt)]
        return [SystemMessage(self.system), HumanMessage(prompt)]

    def answered(self, i: int, message: Any, latency: float) -> bool:
        """Record row ``i``'s answer; False when it doesn't fit the schema (then it is the row's error)."""
        summary = CallSummary.of(message)
        cost = summary.cost
        if cost is not None and len(summary["attempts"]) > 1:  # a broken stream's partial is billed too
            cost = summary.total_cost
        model = summary.model
        fallback_from = summary.primary_model if summary.role == "fallback" else None
        tokens = (summary.tokens.input, summary.tokens.output)
        text = content_text(message.content)
        progress = self.progress
        if cost is None:
            progress.unpriced += 1
        else:
            progress.spent += cost
        if self.schema is not None:
            try:
                values: dict[str, Any] | str = self.schema.parse(text)
            except ValueError as exc:
                self.columns.failed(i, f"InvalidAnswer: {exc}", model=model, tokens=tokens, cost=cost, latency=latency)
                progress.failed += 1
                return False
        else:
            values = text
        self.columns.answered(i, values, model, fallback_from, tokens, cost, latency, False)
        progress.answered += 1
        progress.called += 1
        if cost is not None:
            progress.called_cost += cost
        key = self.keys[i]
        if key is not None and self.cache is not None:
            if self.writer is None:
                self.writer = CacheWriter(self.cache)
            meta = {
                "model": model,
                "provider": summary.provider,
                "tokens": {"input": tokens[0], "output": tokens[1]},
                "fallback_from": fallback_from,
            }
            self.writer.put(key, message, meta)
        return True

    def failed(self, i: int, exc: BaseException, latency: float) -> None:
        attempts = getattr(exc, "attempts", None) or []
        cost = sum((r.cost for r in attempts if r.cost is not None), _ZERO)  # failed attempts are not billed
        tokens = (sum(r.input_tokens for r in attempts), sum(r.output_tokens for r in attempts))
        tried = [r for r in attempts if r.outcome != "skipped"]
        model = tried[-1].model if tried else None
        self.columns.failed(i, describe_error(exc), model=model, tokens=tokens, cost=cost, latency=latency)
        self.progress.failed += 1
        self.progress.spent += cost

    def not_run(self, i: int, reason: str) -> None:
        self.columns.not_run(i, reason)
        self.progress.not_run += 1

    def close(self) -> None:
        """Store what is queued for the cache (idempotent)."""
        writer, self.writer, self.cache = self.writer, None, None
        if writer is not None:
            writer.close()


def budget_left(budget: Any) -> tuple[Decimal | None, str | None]:
    """The least any hard limit has left (after reservations), and its period; (None, None) when unlimited."""
    budgets = getattr(budget, "budgets", None)
    if budgets is None:
        budgets = [] if budget is None else [budget]
    best: tuple[Decimal, str] | None = None
    for b in budgets:
        status = getattr(b, "status", None)
        if status is None:
            continue
        try:
            periods = status()
        except Exception:  # noqa: BLE001 - a projection must not fail the job (a ledger may be away)
            continue
        for name, s in periods.items():
            if s["hard"]:
                left = max(s["remaining"] - s["reserved"], _ZERO)
                if best is None or left < best[0]:
                    best = (left, name)
    return (None, None) if best is None else best


def held_elsewhere(budget: Any) -> bool:
    """Does someone else (another kernel, a Dask worker) hold reservations on a hard limit right now?"""
    budgets = getattr(budget, "budgets", None)
    if budgets is None:
        budgets = [] if budget is None else [budget]
    for b in budgets:
        status = getattr(b, "status", None)
        if status is None:
            continue
        try:
            if any(s["hard"] and s["reserved"] > 0 for s in status().values()):
                return True
        except Exception:  # noqa: BLE001 - can't tell: don't wait
            return False
    return False
