"""``%%llm_compare MODEL MODEL [...]``: the cell's prompt to each model, the answers side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import magics_class
from IPython.display import display

from coffee_nb.errors._errors import BudgetExceededError, ConfigError
from coffee_nb.notebook._options import ShellMagics, _context_tokens
from coffee_nb.notebook.interpolate import fill
from coffee_nb.notebook.magics import _argument, _cell_magic, _magic_arguments, _models, _parse, _positive_money
from coffee_nb.session._session import get_session

if TYPE_CHECKING:
    from coffee_nb.comparison._comparison import Comparison

__all__ = ["CompareMagics"]


def _progress(total_hint: str) -> Any:
    """A small live bar of calls finished (static HTML updated in place); its plain text is empty (nothing
    for nbval to compare)."""
    from coffee_nb.notebook._live import HTML, Bar, Box, _View  # lazy: %load_ext path

    class CompareProgress(_View):
        _label = ""

        def __init__(self) -> None:
            super().__init__(rate=0, watch=False)
            self.bar = Bar(0, min=0, max=1, width=300, bar_style="info")
            self.label = HTML(total_hint)
            self.children = [Box([self.bar, self.label], row=True)]

        def redraw(self) -> None:
            pass

        def update(self, done: int, total: int) -> None:
            self.bar.max = max(total, 1)
            self.bar.value = done
            self.label.value = f"{done} / {total} calls"
            self._show_update()

        def hide(self) -> None:
            """Leave nothing behind once the comparison is shown (an empty output, not a live widget)."""
            self.children = []
            self._show_update()
            self.close()

    return CompareProgress()


@magics_class
class CompareMagics(ShellMagics):
    @_magic_arguments()
    @_argument("models", nargs="+", help="the models to compare, one column each (e.g. sandbox/fast sandbox/smart)")
    @_argument("--runs", type=int, default=1, help="calls per model (and row): latency p50/p95 are over these")
    @_argument("--judge", default=None, help="a model that picks the better answer of each pair (see --judge-order)")
    @_argument("--judge-mode", default="pick", choices=["pick", "score"], help="pick a winner, or score 1-10 each")
    @_argument(
        "--judge-order",
        default="both",
        choices=["both", "random"],
        help="both: each pair judged both ways round, a tie where the orders disagree (default); "
        "random: once per pair, in a random order (half the judge's cost)",
    )
    @_argument("--over", default=None, help="a DataFrame variable: the cell is a template run over its rows")
    @_argument("-s", "--system", default=None, help="system prompt")
    @_argument("-t", "--temperature", type=float, default=None, help="sampling temperature, 0 to 2")
    @_argument("-m", "--max-tokens", type=int, default=None, help="cap on output tokens (bounds the worst case)")
    @_argument("-o", "--out", default=None, help="store the Comparison in this variable")
    @_argument("--no-cache", action="store_true", help="call the models even for requests answered before")
    @_argument("--budget", default=None, help="a hard cap in USD for this comparison, on top of the session budget")
    @_argument("--diff", action="store_true", help="mark the words where each answer differs from the first model's")
    @_argument("--rows", type=int, default=10, help="with --over: how many rows show their answers")
    @_argument("--concurrency", type=int, default=4, help="calls in flight at once")
    @_argument("--seed", type=int, default=0, help="seeds the order pairs are shown in (--judge-order random)")
    @_argument(
        "--allow-missing", action="store_true", help="send {fields} naming nothing defined as written (else an error)"
    )
    @_argument("--show-prompt", action="store_true", help="show the prompt as each model gets it and its cost; no call")
    @_argument("--context-tokens", type=int, default=None, help="the most tokens a table ({df}) may take")
    @_cell_magic("llm_compare")
    def llm_compare(self, line: str, cell: str) -> None:
        """Send the cell's prompt to each model (no fallback: a column is one model) and compare.

        Shows the answers side by side and, per model, tokens, cost, latency and time to first token
        (p50/p95 over ``--runs``) and errors; ``--judge MODEL`` adds a judge's verdict on each pair, asked
        both ways round (a tie where the two orders disagree; the judge's consistency and its own cost are
        shown), or once in a random order with ``--judge-order random``.
        ``--over DF`` runs the cell as a template over the rows of ``DF`` (``{column}`` fields) and
        summarises models × metrics. Before any call the worst case of every call is projected: a hard
        budget that can't cover it refuses the comparison, and nothing is sent. Identical requests come
        from the cache at $0 unless ``--no-cache``. The result (``-o VAR``, ``_``) is a ``Comparison``:
        ``.frame``, ``.summary``, ``.answers``, ``.judge``.
        """
        args = _parse(self.llm_compare, line)
        for option in ("runs", "rows", "concurrency"):
            if getattr(args, option) <= 0:
                raise UsageError(f"--{option} must be a positive integer, got {getattr(args, option)}")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out needs a Python variable name, got {args.out!r}")
        models = _models(args.models) or []
        if args.judge is not None:
            _models([args.judge])
        cap = _positive_money(args.budget, "--budget")
        context = _context_tokens(args.context_tokens)
        ns = self._shell.user_ns
        if not cell.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%llm_compare")
        source: Any
        template = None
        if args.over is not None:
            if args.over not in ns:
                raise UsageError(f"--over {args.over!r} is not a variable of this notebook")
            source, template = ns[args.over], cell
        else:
            # an undefined {name}: nothing is sent
            source = fill(cell, ns, allow_missing=args.allow_missing, context_tokens=context)
        if args.show_prompt:
            self._show_prompt(source, template, ns, models, args, context)
            return
        from coffee_nb.comparison._compare import compare  # lazy: %load_ext path

        progress = _progress(f"{len(models)} models")
        display(progress)
        try:
            comparison = compare(
                source,
                models,
                template=template,
                runs=args.runs,
                judge=args.judge,
                judge_mode=args.judge_mode,
                judge_order=args.judge_order,
                system=args.system,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                budget=cap,
                cache=not args.no_cache,
                concurrency=args.concurrency,
                seed=args.seed,
                namespace=ns,
                on_progress=progress.update,
                context_tokens=context,
            )
        except BudgetExceededError as exc:
            from coffee_nb.notebook.render import ErrorBox  # lazy: %load_ext path

            display(ErrorBox(exc))
            raise  # "Run all" stops here; IPython prints the short message, not a wall
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        finally:
            progress.hide()
        display(comparison.view(diff=args.diff, rows=args.rows))
        self._store(comparison, args.out)

    def _show_prompt(
        self, source: Any, template: str | None, ns: Any, models: list[str], args: Any, context: int | None
    ) -> None:
        """The prompt (the first row's, over a DataFrame) as each model gets it, and its dry run; no call."""
        from coffee_nb.comparison._comparison import read_prompts  # lazy: %load_ext path
        from coffee_nb.notebook._prompt_view import PromptView  # lazy: %load_ext path
        from coffee_nb.notebook.render import dry_run_table  # lazy: %load_ext path

        try:
            label, prompt = read_prompts(source, template, ns, context_tokens=context)[0]
            session = get_session()
            rows = session.dry_run(prompt, models=models or None, system=args.system, max_tokens=args.max_tokens)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        title = "Prompt as each model gets it" + (f" (row {label!r})" if template is not None else "")
        display(PromptView(session.messages(prompt, system=args.system), dry_run_table(rows), title))

    def _store(self, comparison: Comparison, out: str | None) -> None:
        ns = self._shell.user_ns
        if out:
            ns[out] = comparison
        ns["_"] = comparison
        count = getattr(self.shell, "execution_count", None)
        if isinstance(ns.get("Out"), dict) and count is not None:
            ns["Out"][count] = comparison
