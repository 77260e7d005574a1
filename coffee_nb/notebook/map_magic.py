"""``%%llm_map DF``: the cell body is a prompt template run over every row of ``DF``; and its live progress bar."""

from __future__ import annotations

import html
import sys
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.display import display

from coffee_nb._shared._format import money
from coffee_nb.errors._errors import BudgetExceededError, ConfigError
from coffee_nb.jobs import map_rows
from coffee_nb.jobs._progress import use_in_kernel
from coffee_nb.jobs._template import Template
from coffee_nb.notebook.magics import (
    _argument,
    _cell_magic,
    _context_tokens,
    _magic_arguments,
    _models,
    _parse,
    _positive_money,
)
from coffee_nb.session._session import get_session

if TYPE_CHECKING:
    from coffee_nb.jobs import JobStatus, Projection
    from coffee_nb.jobs._progress import View

__all__ = ["MapMagics", "progress_view"]


def progress_view(total: int) -> View:
    """The live view of a ``map_rows`` job: a bar of rows finished, then counts, spend, projection, ETA,
    concurrency and rate-limit waits. The job only bumps counters; the waiting cell refreshes this view a
    few times a second, each time replacing its output in place (static HTML: a saved notebook keeps the
    last state)."""
    from coffee_nb.notebook._live import HTML, Bar, Box, _View  # lazy: %load_ext path

    class MapProgressView(_View):
        _label = "coffee_nb map_rows progress"

        def __init__(self, total: int) -> None:
            super().__init__(rate=0, watch=False)  # driven by the job's own clock, not by records
            self.head = HTML()
            self.bar = Bar(0, min=0, max=max(total, 1), width=420, bar_style="info")
            self.count = HTML()
            self.stats = HTML()
            self.children = [self.head, Box([self.bar, self.count], row=True), self.stats]

        def redraw(self) -> None:
            pass  # the job sets the parts' values in update()

        def start(self, projection: Projection) -> None:
            self.head.value = f"<span style='opacity:.75'>{html.escape(projection.line())}</span>"
            display(self)

        def update(self, status: JobStatus) -> None:
            self.bar.value = status.finished
            self.count.value = f"<span class='coffee-nb-rows'>{status.finished:,} / {status.total:,} rows</span>"
            self.stats.value = html.escape(status.line())
            if status.failed:
                self.bar.bar_style = "warning"
            self._show_update()

        def finish(self, status: JobStatus, note: str | None) -> None:
            self.bar.value = status.finished
            self.count.value = f"<span class='coffee-nb-rows'>{status.finished:,} / {status.total:,} rows</span>"
            self.stats.value = html.escape(status.line())
            if status.status == "done":
                self.bar.bar_style = "success" if not status.failed else "warning"
            else:
                self.bar.bar_style = "danger"
            if note:
                self.stats.value += f"<br><b>{html.escape(note)}</b>"
            self._show_update()
            self.close()

    view: View = MapProgressView(total)
    return view


def _lookup(ns: dict[str, Any], name: str, what: str, hint: str = "") -> Any:
    """``name`` or ``name.attr.attr`` from the notebook's variables."""
    root, *attrs = name.split(".")
    if not root.isidentifier() or root not in ns:
        raise UsageError(f"{what} {name!r} is not a variable of this notebook{hint}")
    value = ns[root]
    for attr in attrs:
        if not attr.isidentifier() or attr.startswith("_") or not hasattr(value, attr):
            raise UsageError(f"{what} {name!r}: {attr!r} not found")
        value = getattr(value, attr)
    return value


use_in_kernel(progress_view)  # map_rows(progress=True) in this kernel shows this view


@magics_class
class MapMagics(Magics):
    @_magic_arguments()
    @_argument("df", help="the DataFrame (a variable name): one call per row")
    @_argument("models", nargs="*", help="models for this job, in order (e.g. openai/gpt-4o-mini sandbox/fast)")
    @_argument("-o", "--out", default=None, help="store the result DataFrame in this variable")
    @_argument("--schema", default=None, help="typed columns: a variable (pydantic model / dict) or 'label:str,n:int'")
    @_argument("--column", default=None, help="name of the answer column (default: answer)")
    @_argument("-s", "--system", default=None, help="system prompt for every row")
    @_argument("-t", "--temperature", type=float, default=None, help="sampling temperature, 0 to 2")
    @_argument("-m", "--max-tokens", type=int, default=None, help="cap on output tokens per row")
    @_argument("-c", "--concurrency", type=int, default=None, help="most rows in flight (default 32; adapts to 429s)")
    @_argument("--on-error", default="record", help="record: a failed row gets its error (default); raise: stop")
    @_argument("--no-cache", action="store_true", help="call every row even if it was answered before")
    @_argument("--dry-run", action="store_true", help="show the projected cost (expected, worst case); no call")
    @_argument("--budget", default=None, help="a hard cap in USD for this job, on top of the session budget")
    @_argument("--no-progress", action="store_true", help="no progress bar")
    @_argument("--compute", action="store_true", help="Dask DataFrame: compute now (default: a lazy result)")
    @_argument("--show-prompt", action="store_true", help="show the first row's prompt as it will be sent and the cost")
    @_argument("--context-tokens", type=int, default=None, help="the most tokens a table ({row}, {df}) may take")
    @_cell_magic("llm_map")
    def llm_map(self, line: str, cell: str) -> Any:
        """Run the cell body as a prompt template over every row of a DataFrame: ``%%llm_map tickets -o labelled``.

        ``{column}`` fills from each row (``{row['Odd name']}`` for any column), other ``{name}`` fields from
        the notebook's variables (``{{name}}`` keeps a literal brace). Appends ``answer`` (or the schema's
        typed fields), ``model``, ``fallback_from``, tokens, ``cost``, ``latency_s``, ``cached``, ``error``.
        A live bar shows rows done / failed / cached, spend, projected cost, ETA and concurrency. Re-running
        an interrupted or budget-stopped cell resumes: finished rows come from the cache at $0. A column of
        image paths (or images) in a field sends each row's image; ``{row}`` alone is the row as a table.
        ``--show-prompt`` shows the first row's prompt as it will be sent and the job's projected cost.
        """
        args = _parse(self.llm_map, line)
        shell = self.shell
        if shell is None:  # never, once registered through load_ipython_extension
            raise UsageError("coffee_nb's magics need an IPython shell")
        ns = shell.user_ns
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out needs a Python variable name, got {args.out!r}")
        if not cell.strip():
            raise UsageError("the cell is empty: write the prompt template on the lines below %%llm_map DF")
        df = _lookup(ns, args.df, "DF")
        schema: Any = None
        if args.schema is not None:
            spec = args.schema.strip()
            if len(spec) > 1 and spec[0] == spec[-1] and spec[0] in "'\"":  # quoted: inline (IPython keeps quotes)
                schema = spec[1:-1]
            else:  # a variable's name, or inline text like label:str,score:float
                hint = " (inline, give each field a type: 'label:str, score:float')"
                schema = _lookup(ns, spec, "--schema", hint) if spec.replace(".", "").isidentifier() else spec
        budget = None
        context = _context_tokens(args.context_tokens)
        cap = _positive_money(args.budget, "--budget")
        if cap is not None:
            from coffee_nb.budget import Budget  # lazy: %load_ext path

            budget = Budget(total=cap, ledger="memory", name="cell")
        try:
            result = map_rows(
                df,
                cell,
                models=_models(args.models),
                out=args.column,
                schema=schema,
                concurrency=args.concurrency,
                budget=budget,
                cache=not args.no_cache,
                on_error=args.on_error,
                system=args.system,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                dry_run=args.dry_run or args.show_prompt,
                progress=not args.no_progress,
                namespace=ns,
                compute=args.compute,
                context_tokens=context,
            )
            if args.show_prompt:
                return _first_prompt(df, cell, ns, args.system, context, result)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        except BudgetExceededError:
            raise  # its short _render_traceback_ says which limit
        if args.dry_run:
            return result
        if args.out:
            ns[args.out] = result
            info = getattr(result, "attrs", {}).get("coffee_nb")
            if info is not None:
                spent = money(info["spent"])
                print(
                    f"{args.out}: {info['rows']:,} rows · {info['answered']:,} answered · {info['failed']:,} failed · "
                    f"{info['cached']:,} cached · {spent} spent",
                    file=sys.stdout,
                )
            return None
        return result


def _first_prompt(df: Any, template: str, ns: Any, system: str | None, context: int | None, projection: Any) -> Any:
    """The first row's prompt as it will be sent, above the job's projection (``--show-prompt``)."""
    from coffee_nb.notebook._prompt_view import PromptView  # lazy: %load_ext path

    head = df.head(1)  # a Dask DataFrame computes its first partition's first row only
    prompt, _ = next(Template.compile(template, list(head.columns), ns, context_tokens=context).prompts(head))
    session = get_session()
    return PromptView(session.messages(prompt, system=system), projection, "The first row's prompt as it will be sent")
