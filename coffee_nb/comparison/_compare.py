"""``compare``: one prompt (or a template over a DataFrame's rows) sent to several models, side by side.

>>> cmp = coffee_nb.compare("Explain p95 latency in one sentence.", ["sandbox/fast", "sandbox/smart"], runs=3)
>>> cmp.summary   # per model: calls, errors, tokens, cost, latency and time to first token (p50/p95)
>>> cmp.frame     # one row per call, with the numbers of its CallRecords
>>> cmp           # in a notebook: the answers side by side, the metrics, the judge's verdicts

Each model is a column of its own: ``AutoPicker(model)`` alone (no fallback), with the session's budget,
metrics, breakers and response cache (or the cassette in force, as for ``%%llm``). Before anything is
sent, the worst case of every call (the judge's included) is projected; when a hard budget can't cover
it, the comparison is refused and no call is made.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import sys
import threading
import warnings
from collections import ChainMap
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from coffee_nb._shared._format import content_text
from coffee_nb._shared._http import get_async_http_client
from coffee_nb._shared._paths import StorageError
from coffee_nb._shared._records import global_sinks, publish
from coffee_nb._shared._validate import max_tokens as check_max_tokens
from coffee_nb._shared._validate import positive_int
from coffee_nb._shared._validate import temperature as check_temperature
from coffee_nb.comparison._comparison import Call, Comparison, cap_budget, model_list, name_of, read_prompts
from coffee_nb.comparison._judge import (
    JUDGE_MAX_TOKENS,
    JUDGE_MODES,
    JUDGE_ORDERS,
    JudgeReport,
    judge_messages,
    read_verdict,
)
from coffee_nb.comparison._projection import Projection, project, worst_case
from coffee_nb.errors._errors import AllModelsFailedError, BudgetExceededError, CoffeeError, ConfigError
from coffee_nb.invoke._summary import CallSummary
from coffee_nb.replay._cache import CacheWarning, replay, request_key
from coffee_nb.replay._cassette import active
from coffee_nb.session._interpolate import Prompt, prompt_text
from coffee_nb.session._session import get_session

if TYPE_CHECKING:
    from types import FrameType

    from coffee_nb.replay._cache import ResponseCache

__all__ = ["DEFAULT_CONCURRENCY", "Comparison", "JudgeReport", "Projection", "acompare", "compare"]

DEFAULT_CONCURRENCY = 4
_T = TypeVar("_T")


def compare(
    prompt_or_df: Any,
    models: Any,
    *,
    template: str | None = None,
    runs: int = 1,
    judge: Any = None,
    judge_mode: str = "pick",
    judge_order: str = "both",
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    budget: Any = None,
    cache: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    seed: int | None = 0,
    namespace: Mapping[str, Any] | None = None,
    on_progress: Callable[[int, int], Any] | None = None,
    context_tokens: int | None = None,
) -> Comparison:
    """Send the same request to each of ``models`` (``runs`` times each) and compare the answers.

    ``prompt_or_df``: a prompt (text, or content blocks with images: ``coffee_nb.prompt(...)``), or a
    DataFrame with ``template`` (``{column}`` fields filled from each row, other ``{name}`` fields from
    your variables; a table among them cut to ``context_tokens``). ``judge``: a model that compares each pair of answers
    (the first answer of each model per row); ``judge_mode`` "pick" (a winner or a tie) or "score" (1-10
    each). ``judge_order``: "both" (default) asks the judge both ways round, against position bias: a
    winner counts when both orders name it, otherwise the pair is a tie, and ``judge.consistency`` says how
    often the orders agreed; "random" asks once per pair, in a random order (``seed``), at half the
    judge's cost. What judging cost is ``judge.cost``, apart from the answers' ``summary.cost``.
    ``budget``: a hard cap in USD (or a Budget) on top of the session's. ``cache``: identical requests come
    from the response cache at $0 (the run number is part of the request, so every run is a call of its
    own the first time).

    Refused with :class:`BudgetExceededError` before any call when a hard budget can't cover the worst
    case of every call. A failed call is a row with its error, never the end of the comparison.
    """
    if namespace is None and not isinstance(prompt_or_df, (str, list)):
        namespace = _caller_namespace()
    job = _Job(
        prompt_or_df,
        models,
        template=template,
        runs=runs,
        judge=judge,
        judge_mode=judge_mode,
        judge_order=judge_order,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        budget=budget,
        cache=cache,
        concurrency=concurrency,
        seed=seed,
        namespace=namespace or {},
        on_progress=on_progress,
        context_tokens=context_tokens,
    )
    _run_in_thread(job.run)
    return job.result()


async def acompare(prompt_or_df: Any, models: Any, **kwargs: Any) -> Comparison:
    """:func:`compare` for async code, on the running event loop."""
    if kwargs.get("namespace") is None and not isinstance(prompt_or_df, (str, list)):
        kwargs["namespace"] = _caller_namespace()
    job = _Job(prompt_or_df, models, **kwargs)
    await job.run()
    return job.result()


class _Job:
    """One comparison: checked and projected when made (nothing sent), then ``run()``, then ``result()``."""

    def __init__(
        self,
        source: Any,
        models: Any,
        *,
        template: str | None = None,
        runs: int = 1,
        judge: Any = None,
        judge_mode: str = "pick",
        judge_order: str = "both",
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        budget: Any = None,
        cache: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        seed: int | None = 0,
        namespace: Mapping[str, Any] | None = None,
        on_progress: Callable[[int, int], Any] | None = None,
        context_tokens: int | None = None,
    ) -> None:
        self.session = session = get_session()
        self.runs = positive_int("runs", runs)
        self.concurrency = positive_int("concurrency", concurrency)
        if judge_mode not in JUDGE_MODES:
            raise ConfigError(f"judge_mode must be one of {', '.join(JUDGE_MODES)}, got {judge_mode!r}")
        if judge_order not in JUDGE_ORDERS:
            raise ConfigError(
                f"judge_order must be one of {', '.join(JUDGE_ORDERS)}, got {judge_order!r}: 'both' asks the judge"
                " both ways round (ties where the orders disagree), 'random' once per pair in a random order"
            )
        self.judge_mode, self.judge_order = judge_mode, judge_order
        self.rng = random.Random(seed)
        self.on_progress = on_progress
        self.source_text = template if template is not None else prompt_text(source)
        self.prompts = read_prompts(source, template, namespace or {}, context_tokens=context_tokens)
        self.extra_budget = cap_budget(budget)
        specs = model_list(models)
        if judge is not None and len(specs) < 2:
            raise ConfigError("a judge compares answers: give at least two models")
        self.columns = [(name_of(session, m), m) for m in specs]
        names = [n for n, _ in self.columns]
        if len(set(names)) != len(names):
            raise ConfigError(f"each model once, please: {names}")
        self.judge = None if judge is None else (name_of(session, judge), judge)
        params: dict[str, Any] = {
            "temperature": check_temperature(temperature) if temperature is not None else session.temperature,
            "max_tokens": check_max_tokens(max_tokens) if max_tokens is not None else session.max_tokens,
        }
        self.params = params
        self.system = system
        # a cassette records and replays every call itself (as for %%llm): the response cache stands aside
        use_cache = cache and session.cache_enabled and active() is None
        self.cache: ResponseCache | None = session.cache if use_cache else None
        self._cache_warned = False
        self._pickers: dict[Any, Any] = {}
        self.calls = [
            self._call(name, spec, prompt, params, row=label, run=run)
            for label, prompt in self.prompts
            for run in range(1, self.runs + 1)
            for name, spec in self.columns
        ]
        for call in self.calls:
            self._lookup(call)
        self.verdicts: list[Call] = []
        self.done = 0
        self.projection = self._project()

    # -- before any call -----------------------------------------------------------------------------
    def _call(self, name: str, spec: Any, prompt: Prompt, params: dict[str, Any], *, row: Any, run: int) -> Call:
        messages = self.session.messages(prompt, system=self.system)
        key = None
        if self.cache is not None and isinstance(spec, str):
            # run 1 is the request %%llm would make; later runs are requests of their own, so each is a call
            keyed = {**params, "compare_run": run if run > 1 else None}
            key = request_key([spec], messages, keyed)
        kwargs = {k: v for k, v in params.items() if v is not None}
        return Call(model=name, picker=self._picker(spec), messages=messages, key=key, kwargs=kwargs, row=row, run=run)

    def _picker(self, spec: Any) -> Any:
        """The session's AutoPicker of ``spec`` alone (its breaker and cooldowns), with this comparison's cap."""
        key = spec if isinstance(spec, str) else id(spec)
        if key not in self._pickers:
            self._pickers[key] = self.session.picker([spec], self.extra_budget)
        return self._pickers[key]

    def _lookup(self, call: Call) -> None:
        if self.cache is None or call.key is None:
            return
        try:
            call.hit = self.cache.get(call.key)
        except StorageError as exc:
            self._cache_failed(exc)

    def _cache_failed(self, exc: StorageError) -> None:
        self.cache = None
        if not self._cache_warned:
            self._cache_warned = True
            warnings.warn(f"coffee_nb: comparing without the response cache: {exc}", CacheWarning, stacklevel=4)

    def _project(self) -> Projection:
        """The worst case of every call to be made; BudgetExceededError when a hard limit can't cover it."""
        candidates = {name: self.session.picker([spec]).candidates[0] for name, spec in self.columns}
        judge = None if self.judge is None else (self.judge[0], self.session.picker([self.judge[1]]).candidates[0])
        budgets = [b for b in (self.session.budget, self.extra_budget) if b is not None]

        def make(exact: bool) -> Projection:
            return worst_case(
                self.calls,
                candidates,
                max_tokens=self.params["max_tokens"],
                judge=judge,
                judge_prompts=[prompt_text(p) for _, p in self.prompts],
                judge_mode=self.judge_mode,
                judge_orders=2 if self.judge_order == "both" else 1,
                budgets=budgets,
                exact=exact,
            )

        return project(make, budgets)

    # -- the calls -----------------------------------------------------------------------------------
    async def run(self) -> None:
        total = self.projection.calls + self.projection.judge_calls
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(call: Call) -> None:
            async with semaphore:
                await self._one(call)
            self.done += 1
            if self.on_progress is not None:
                self.on_progress(self.done, total)

        await asyncio.gather(*(one(c) for c in self.calls))
        if self.judge is not None:
            self.verdicts = self._judge_calls()
            await asyncio.gather(*(one(c) for c in self.verdicts))
            for call in self.verdicts:
                read_verdict(call, self.judge_mode)

    async def _one(self, call: Call) -> None:
        if call.hit is not None:
            self._replay(call)
            return
        from coffee_nb.invoke._streams import acollect  # lazy: langchain_core

        try:
            # streamed, so each answer has its time to first token
            message = await acollect(call.picker.astream(call.messages, **call.kwargs))
        except AllModelsFailedError as exc:
            call.failed(exc.attempts, str(exc))
            return
        except BudgetExceededError as exc:
            call.failed([], str(exc), "budget")
            return
        except CoffeeError as exc:
            call.failed([], str(exc), type(exc).__name__)
            return
        summary = message.response_metadata.get("coffee_nb")
        call.answered(content_text(message.content), None if summary is None else CallSummary.of(summary))
        self._store(call, message, summary)

    def _replay(self, call: Call) -> None:
        assert call.hit is not None
        message, stored = call.hit
        record, message = replay(message, stored, 0.0)
        publish([self.session.metrics.emit, *self.session.sinks], record)
        publish(global_sinks(), record)
        call.replayed(content_text(message.content), record, stored)

    def _store(self, call: Call, message: Any, summary: Any) -> None:
        if self.cache is None or call.key is None or summary is None:
            return
        meta = dict(summary)
        stored = {
            "model": meta.get("model"),
            "provider": meta.get("provider"),
            "tokens": meta.get("tokens"),
            "latency_s": call.latency_s,  # what was measured, shown again when a re-run replays the answer
            "ttft_s": call.ttft_s,
        }
        try:
            self.cache.put(call.key, message, stored)
        except StorageError as exc:
            self._cache_failed(exc)

    def _judge_calls(self) -> list[Call]:
        assert self.judge is not None
        name, spec = self.judge
        out = []
        names = [n for n, _ in self.columns]
        for label, prompt in self.prompts:
            firsts = {c.model: c.answer for c in sorted(self.calls, key=lambda c: c.run) if c.row == label and c.ok}
            for a, b in itertools.combinations(names, 2):
                if firsts.get(a) is None or firsts.get(b) is None:
                    continue  # a model that never answered this row has nothing to be judged on
                for shown in self._orders(a, b):
                    request = prompt_text(prompt)  # the judge reads the request as text ([image] where one was)
                    messages = judge_messages(request, firsts[shown[0]] or "", firsts[shown[1]] or "", self.judge_mode)
                    call = self._judge_call(name, spec, messages)
                    call.row, call.pair, call.shown = label, (a, b), shown
                    out.append(call)
        return out

    def _orders(self, a: str, b: str) -> list[tuple[str, str]]:
        """The orders a pair is shown in: both ways round (the pair's order first), or one at random."""
        if self.judge_order == "both":
            return [(a, b), (b, a)]
        return [(a, b) if self.rng.random() < 0.5 else (b, a)]

    def _judge_call(self, name: str, spec: Any, messages: list[Any]) -> Call:
        params = {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS}
        key = None
        if self.cache is not None and isinstance(spec, str):
            key = request_key([spec], messages, params)
        call = Call(
            model=name,
            picker=self._picker(spec),
            messages=messages,
            key=key,
            kwargs=params,
        )
        self._lookup(call)
        return call

    def result(self) -> Comparison:
        return Comparison(
            source=self.source_text,
            over=len(self.prompts) > 1 or self.prompts[0][0] != 0,
            models=[n for n, _ in self.columns],
            runs=self.runs,
            calls=self.calls,
            verdicts=self.verdicts,
            judge_model=self.judge[0] if self.judge else None,
            judge_mode=self.judge_mode,
            projection=self.projection,
            judge_order=self.judge_order,
        )


# -- helpers -------------------------------------------------------------------------------------------
def _caller_namespace() -> Mapping[str, Any]:
    """The variables where compare was called (locals over globals): a notebook's are its globals."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("coffee_nb."):
        frame = frame.f_back
    return {} if frame is None else ChainMap(frame.f_locals, frame.f_globals)


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine on a fresh event loop in a worker thread: the same in a script and in a notebook
    whose loop is already running. Ctrl-C (a kernel interrupt) cancels it: calls in flight release
    their reservations."""
    box: dict[str, Any] = {}

    async def main() -> _T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await make()
        finally:
            await get_async_http_client().aclose()  # this loop's pooled connections end with it

    def work() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["error"] = exc

    context = contextvars.copy_context()  # the caller's `with coffee_nb.cassette(...)` holds in the worker
    thread = threading.Thread(target=context.run, args=(work,), name="coffee_nb-compare", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.25)
    except KeyboardInterrupt:
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    value: _T = box["value"]
    return value
