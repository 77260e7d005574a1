"""The ``%%llm`` cell magic (its line-magic companions: ``session_magics``)."""

from __future__ import annotations

import keyword
import sys
import time
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import magics_class
from IPython.display import display

from coffee_nb._shared._records import capture_records
from coffee_nb._shared._validate import max_tokens, temperature
from coffee_nb.errors._errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CoffeeError,
    ConfigError,
    ErrorClass,
    classify,
)
from coffee_nb.notebook._advice import cell_budget_message
from coffee_nb.notebook._cell import CellInterrupted, RequestRefusedError, charged, shown, warnings_as_notices
from coffee_nb.notebook._options import ShellMagics, _cell_key, _sendable
from coffee_nb.notebook._options import _argument as _argument
from coffee_nb.notebook._options import _cell_magic as _cell_magic
from coffee_nb.notebook._options import _context_tokens as _context_tokens
from coffee_nb.notebook._options import _magic_arguments as _magic_arguments
from coffee_nb.notebook._options import _models as _models
from coffee_nb.notebook._options import _parse as _parse
from coffee_nb.notebook._options import _positive_money as _positive_money
from coffee_nb.notebook.interpolate import fill

# "x as x": re-exported for the other magic modules (map_magic), which import them from here
from coffee_nb.replay._cassette import CELL
from coffee_nb.session._answer import AnswerError
from coffee_nb.session._interpolate import Prompt, prompt_text
from coffee_nb.session._session import FORMATS, Session, get_session

if TYPE_CHECKING:
    import argparse
    from decimal import Decimal

    from coffee_nb._shared._records import CallRecord
    from coffee_nb.budget import Budget
    from coffee_nb.notebook.render import AnswerView
    from coffee_nb.session._session import Answer

__all__ = ["LLMMagics"]


@magics_class
class LLMMagics(ShellMagics):
    @_magic_arguments()
    @_argument("models", nargs="*", help="models for this cell, in order (e.g. openai/gpt-4o-mini sandbox/fast)")
    @_argument("-s", "--system", default=None, help="system prompt for this cell")
    @_argument("-t", "--temperature", type=float, default=None, help="sampling temperature, 0 to 2")
    @_argument("-m", "--max-tokens", type=int, default=None, help="cap on output tokens")
    @_argument("-f", "--format", default="markdown", help=f"how to show the answer: {', '.join(FORMATS)}")
    @_argument("-o", "--out", default=None, help="store the answer object in this variable")
    @_argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming it")
    @_argument(
        "--chat", nargs="?", const="", default=None, help="keep a conversation (re-running a cell replaces its turn)"
    )
    @_argument("--no-cache", action="store_true", help="call the model even if this exact request was answered before")
    @_argument("--dry-run", action="store_true", help="show tokens, worst-case cost and budget left per model; no call")
    @_argument(
        "--show-prompt", action="store_true", help="show the prompt as it will be sent (images, tables), and its cost"
    )
    @_argument(
        "--context-tokens", type=int, default=None, help="the most tokens a table ({df}) may take (default 2000)"
    )
    @_argument("--budget", default=None, help="a hard cap in USD for this cell, on top of the session budget")
    @_argument("--next-cell", action="store_true", help="with --format code: offer the code as the next cell")
    @_argument(
        "--allow-missing", action="store_true", help="send {fields} naming nothing defined as written (else an error)"
    )
    @_cell_magic("llm")
    def llm(self, line: str, cell: str) -> None:
        """Ask a language model; the cell body is the prompt.

        ``{name}``, ``{name.attr}``, ``{name[key]}``, ``{In[3]}`` and ``{Out[3]}`` are filled from the
        notebook's variables (a figure, an image or an image file's path is sent as an image; a DataFrame
        as a compact table within ``--context-tokens``; ``{df:describe}`` as a summary), ``{err}`` /
        ``{Err[3]}`` with the last exception / cell 3's (``{{name}}`` keeps a literal ``{name}``); a field
        naming nothing is an error unless ``--allow-missing``. ``--show-prompt`` shows what would be sent
        (thumbnails of the images), its tokens and worst-case cost, and calls nothing. The
        answer streams into the cell, then shows with a footer: model, fallbacks, tokens, cost, latency,
        budget left. It is stored in ``_`` / ``Out`` (and ``-o VAR``) with the full message and attempt
        trace. An identical request is answered from the cache at $0 unless ``--no-cache``.
        """
        args = _parse(self.llm, line)
        _sendable(cell, "the cell")
        if args.format not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
        try:
            if args.temperature is not None:
                temperature(args.temperature, "--temperature")
            if args.max_tokens is not None:
                max_tokens(args.max_tokens, "--max-tokens")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"--out needs a Python variable name, got {args.out!r}")
        cap = _positive_money(args.budget, "--budget")
        models = _models(args.models)
        context = _context_tokens(args.context_tokens)
        prompt = fill(cell, self._shell.user_ns, allow_missing=args.allow_missing, context_tokens=context)
        if not prompt_text(prompt).strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%llm")
        session = get_session()
        chat = None
        if args.chat is not None:
            chat = args.chat or _cell_key(self.shell, cell)
        if args.dry_run or args.show_prompt:
            self._dry_run(session, prompt, models, args, chat)
            return
        budget = None
        if cap is not None:
            from coffee_nb.budget import Budget  # lazy: %load_ext path

            budget = Budget(total=cap, ledger="memory", name="cell")
        from coffee_nb.notebook.render import AnswerView, Notice  # lazy: %load_ext path

        view = AnswerView(stream=not args.no_stream)
        said: list[str] = []  # budget warnings raised during the call, shown as notices under it
        try:
            key = _cell_key(self.shell, cell)
            answer, warning = self._ask(session, view, prompt, models, args, chat, budget, cap, said, key)
            view.final(answer, warning)
            self._store(answer, args.out)
        finally:
            if said:
                for text in dict.fromkeys(said):
                    display(Notice(text))
        if args.format == "code" and args.next_cell:
            from coffee_nb.notebook.render import _fenced  # lazy: %load_ext path

            self._shell.set_next_input(_fenced(answer.text)[1], replace=False)

    def _ask(
        self,
        session: Session,
        view: AnswerView,
        prompt: Prompt,
        models: list[str] | None,
        args: argparse.Namespace,
        chat: str | None,
        budget: Budget | None,
        cap: Decimal | None,
        said: list[str],
        key: str,
    ) -> tuple[Answer, str | None]:
        """The answer and a one-line warning to show with it; an error is shown (once) and raised."""
        from coffee_nb.invoke._events import listening  # lazy: %load_ext path

        started = time.monotonic()
        records: list[CallRecord] = []
        cell_token = CELL.set(key)  # a cassette re-recording this cell replaces its entry
        try:
            with warnings_as_notices(said), listening(view.event), capture_records() as records:
                return (
                    session.ask(
                        prompt,
                        models=models,
                        system=args.system,
                        temperature=args.temperature,
                        max_tokens=args.max_tokens,
                        cache=not args.no_cache,
                        chat=chat,
                        budget=budget,
                        on_token=view.token if view.stream else None,
                        on_restart=view.restart if view.stream else None,
                        format=args.format,
                    ),
                    None,
                )
        except AnswerError as exc:  # --format json and the answer isn't JSON: paid for, so kept and shown
            kept = f"kept in _ and {args.out}" if args.out else "kept in _"
            return exc.answer, f"{str(exc).split(';')[0]}: shown as it came, {kept}"
        except BudgetExceededError as exc:
            said_so = cell_budget_message(str(exc), cap) if cap is not None else None
            if said_so is not None:  # the cell's own --budget refused: say that, not "a total budget"
                error = BudgetExceededError(said_so)
                view.error(error)
                raise shown(self.shell, error) from exc
            view.error(exc)
            shown(self.shell, exc)
            raise  # one box, nothing more; "Run all" still stops here (see notebook/_cell.py)
        except AllModelsFailedError as exc:
            view.error(exc)
            shown(self.shell, exc)
            raise
        except CoffeeError as exc:  # a bad option, a ledger that can't be used (names the file), ...
            view.clear()
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            text = f"interrupted after {time.monotonic() - started:.1f} s; {charged(records)}"
            view.notice(text, icon="■", color="#666")
            raise shown(self.shell, CellInterrupted(text)) from None
        except Exception as exc:
            failure = classify(exc)  # also takes any key out of it
            if failure.error_class is ErrorClass.UNKNOWN:
                view.clear()
                raise  # not a provider's answer: a bug somewhere, its traceback helps
            # the provider refused the request itself (bad request, content filter): one box says so
            view.error(exc, kind=f"{failure.error_class.value}: {type(exc).__name__}")
            refused = RequestRefusedError(f"{failure.error_class.value}: {type(exc).__name__}: {failure.message}")
            raise shown(self.shell, refused) from None
        finally:
            CELL.reset(cell_token)

    def _dry_run(
        self, session: Session, prompt: Prompt, models: list[str] | None, args: argparse.Namespace, chat: str | None
    ) -> None:
        """Tokens, worst-case cost and budget left per model (with ``--show-prompt``, under the prompt as it
        will be sent); works without the ledger (budget left: ?)."""
        from coffee_nb.notebook.render import dry_run_table  # lazy: %load_ext path

        try:
            session.budget.status()
        except ConfigError as exc:
            print(f"coffee_nb: budget left is unknown: {exc}", file=sys.stderr)
        try:
            rows = session.dry_run(prompt, models=models, system=args.system, max_tokens=args.max_tokens, chat=chat)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        table = dry_run_table(rows)
        if args.show_prompt:
            from coffee_nb.notebook._prompt_view import PromptView  # lazy: %load_ext path

            display(PromptView(session.messages(prompt, system=args.system, chat=chat), table))
        else:
            display(table)

    def _store(self, answer: Answer, out: str | None) -> None:
        ns = self._shell.user_ns
        if out:
            ns[out] = answer
        ns["_"] = answer
        count = getattr(self.shell, "execution_count", None)
        if isinstance(ns.get("Out"), dict) and count is not None:
            ns["Out"][count] = answer
